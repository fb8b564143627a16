//! Runs a test binary inside a throwaway QEMU guest booted from Debian's kernel, for tests the
//! host kernel cannot run (802.1Q VLANs here). The guest's root is a busybox initramfs holding
//! the binary, the host tools it needs (with their libraries, found by `ldd`), the kernel
//! modules to load, and a tiny `/init` that runs the binary and prints its exit code on the
//! serial console. The kernel package is fetched once with `apt-get download` (never
//! installed on the host) into `~/.cache/cairn/guest-kernel`.

use crate::{io, HarnessError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

type Result<T> = std::result::Result<T, HarnessError>;

const EXIT_MARK: &str = "CAIRN-GUEST-EXIT ";

fn failed(what: impl Into<String>, console: impl Into<String>) -> HarnessError {
    HarnessError::Boot { what: what.into(), console: console.into() }
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(io(what.to_owned()))?;
    if !out.status.success() {
        return Err(failed(format!("{what}: {}", out.status), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Debian kernel unpacked for guests: its image and its module tree.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl GuestKernel {
    /// The kernel `linux-image-amd64` points to on this machine's mirror, downloaded and
    /// unpacked on first use.
    pub fn debian() -> Result<Self> {
        let deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]), "apt-cache depends")?;
        let pkg = deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
            .ok_or_else(|| failed("no linux-image-*-amd64 behind linux-image-amd64", deps.clone()))?
            .to_owned();
        let version = pkg.trim_start_matches("linux-image-").to_owned();
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
        let dir = home.join(".cache/cairn/guest-kernel").join(&pkg);
        let root = dir.join("root");
        let k = GuestKernel {
            vmlinuz: root.join(format!("boot/vmlinuz-{version}")),
            modules: root.join(format!("lib/modules/{version}")),
        };
        if k.vmlinuz.exists() && k.modules.exists() {
            return Ok(k);
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        run(Command::new("apt-get").args(["download", "-q", &pkg]).current_dir(&dir), "apt-get download")?;
        let deb = std::fs::read_dir(&dir)
            .map_err(io("listing the download"))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| failed("apt-get download left no .deb", ""))?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root), "dpkg -x")?;
        let _ = std::fs::remove_file(&deb);
        if !k.vmlinuz.exists() {
            return Err(failed(format!("{} missing after unpacking {pkg}", k.vmlinuz.display()), ""));
        }
        Ok(k)
    }

    /// The file of a module by name (`8021q` → `.../net/8021q/8021q.ko`).
    fn module(&self, name: &str) -> Result<PathBuf> {
        fn walk(dir: &Path, file: &str) -> Option<PathBuf> {
            for e in std::fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if let Some(f) = walk(&p, file) {
                        return Some(f);
                    }
                } else if p.file_name().is_some_and(|n| n == file) {
                    return Some(p);
                }
            }
            None
        }
        walk(&self.modules.join("kernel"), &format!("{name}.ko"))
            .ok_or_else(|| failed(format!("module {name} not in {}", self.modules.display()), ""))
    }
}

/// What a guest run produced.
#[derive(Debug)]
pub struct GuestOutcome {
    /// The binary's exit code; `None` when the guest never reported one.
    pub code: Option<i32>,
    pub console: String,
}

/// One binary to run in a guest.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub kernel: GuestKernel,
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Modules loaded in order before the binary runs.
    pub modules: Vec<String>,
    /// Host programs copied to the same path in the guest, with their libraries.
    pub tools: Vec<PathBuf>,
    pub memory_mib: u32,
    pub timeout: Duration,
}

impl GuestRun {
    pub fn new(kernel: GuestKernel, binary: PathBuf) -> Self {
        Self {
            kernel,
            binary,
            args: vec![],
            env: vec![],
            modules: vec![],
            tools: vec![],
            memory_mib: 768,
            timeout: Duration::from_secs(600),
        }
    }

    /// Builds the initramfs, boots it, waits for the guest to power off.
    pub fn run(&self) -> Result<GuestOutcome> {
        let work = tempfile::tempdir().map_err(io("temp dir"))?;
        let (root, busybox) = initramfs_root(
            work.path(),
            &["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "etc", "mods", "test"],
        )?;
        let mut copied = BTreeSet::new();
        copy_with_libs(&busybox, &root, &mut copied)?;
        if busybox != Path::new("/bin/busybox") {
            std::fs::copy(&busybox, root.join("bin/busybox")).map_err(io("copying busybox"))?;
        }
        for t in &self.tools {
            copy_with_libs(t, &root, &mut copied)?;
        }
        let bin = root.join("test/bin");
        run(Command::new("strip").arg("-o").arg(&bin).arg(&self.binary), "strip")?;
        copy_libs_of(&self.binary, &root, &mut copied)?;
        for m in &self.modules {
            let src = self.kernel.module(m)?;
            std::fs::copy(&src, root.join("mods").join(format!("{m}.ko"))).map_err(io(format!("copying {m}")))?;
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .map_err(io("writing passwd"))?;
        std::fs::write(root.join("etc/group"), "root:x:0:\ndip:x:30:\nnogroup:x:65534:\n")
            .map_err(io("writing group"))?;
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={} ", sh_quote(v))).collect();
        let args: String = self.args.iter().map(|a| format!(" {}", sh_quote(a))).collect();
        let modules = self.modules.join(" ");
        let init = format!(
            "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
             mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
             mount -t tmpfs run /run; mount -t tmpfs tmp /tmp\n\
             for m in {modules}; do insmod /mods/$m.ko || echo \"insmod $m failed\"; done\n\
             cd /tmp\necho CAIRN-GUEST-START\n\
             env HOME=/tmp RUST_BACKTRACE=1 {env}/test/bin{args}\necho \"{EXIT_MARK}$?\"\npoweroff -f\n"
        );
        let init_path = root.join("init");
        std::fs::write(&init_path, init).map_err(io("writing init"))?;
        std::fs::set_permissions(&init_path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("chmod init"))?;
        let initrd = work.path().join("initrd.gz");
        pack_initramfs(&root, &initrd)?;

        let console = work.path().join("console.log");
        let status = Command::new("timeout")
            .arg(self.timeout.as_secs().to_string())
            .args([
                "qemu-system-x86_64",
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-nographic",
                "-no-reboot",
            ])
            .args(["-m", &self.memory_mib.to_string(), "-kernel"])
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&console).map_err(io("console log"))?)
            .stderr(Stdio::null())
            .status()
            .map_err(io("starting qemu-system-x86_64"))?;
        let text =
            String::from_utf8_lossy(&std::fs::read(&console).map_err(io("reading the console"))?).replace('\r', "");
        let code = text.lines().find_map(|l| l.trim().strip_prefix(EXIT_MARK)?.trim().parse().ok());
        if code.is_none() && !status.success() {
            return Err(failed(format!("guest did not finish ({status})"), text));
        }
        Ok(GuestOutcome { code, console: text })
    }
}

/// An initramfs tree under `work` with these directories, and the host's busybox to put in it.
fn initramfs_root(work: &Path, dirs: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let root = work.join("root");
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).map_err(io(format!("creating {d}")))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| failed("busybox is missing on the host (apt-get install busybox)", ""))?;
    Ok((root, busybox))
}

/// Packs `root` as a gzipped newc cpio archive at `out`.
fn pack_initramfs(root: &Path, out: &Path) -> Result<()> {
    let pack = format!("cd {} && find . | cpio -o -H newc 2>/dev/null | gzip -6 > {}", root.display(), out.display());
    run(Command::new("sh").args(["-c", &pack]), "packing the initramfs").map(|_| ())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Copies `file` to the same path under `root`, and the libraries it needs.
fn copy_with_libs(file: &Path, root: &Path, done: &mut BTreeSet<PathBuf>) -> Result<()> {
    copy_same_path(file, root, done)?;
    copy_libs_of(file, root, done)
}

fn copy_same_path(file: &Path, root: &Path, done: &mut BTreeSet<PathBuf>) -> Result<()> {
    if !done.insert(file.to_path_buf()) {
        return Ok(());
    }
    let dest = root.join(file.strip_prefix("/").unwrap_or(file));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::copy(file, &dest).map_err(io(format!("copying {}", file.display())))?;
    Ok(())
}

/// The shared libraries `ldd` lists for `file`, copied to their paths under `root`.
fn copy_libs_of(file: &Path, root: &Path, done: &mut BTreeSet<PathBuf>) -> Result<()> {
    let out = Command::new("ldd").arg(file).output().map_err(io("running ldd"))?;
    // A static binary makes ldd fail; it needs nothing.
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in text.split_whitespace().filter(|w| w.starts_with('/')) {
        copy_same_path(Path::new(lib), root, done)?;
    }
    Ok(())
}

/// The executable cargo built for an integration test target (building it if needed).
pub fn cargo_test_binary(package: &str, test: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(
        Command::new(cargo)
            .args(["test", "-p", package, "--test", test, "--no-run", "--message-format=json", "-q"])
            .current_dir(crate::workspace()),
        "cargo test --no-run",
    )?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == test && v["profile"]["test"] == true)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| failed(format!("cargo reported no executable for test {test}"), out.clone()))
}

/// What the test guest prints on its serial console, one `CAIRN-TEST-GUEST <what>` line each.
pub const TEST_GUEST_MARK: &str = "CAIRN-TEST-GUEST";

/// Modules the test guest loads (with their dependencies, found by `modinfo`).
const TEST_GUEST_MODULES: [&str; 5] = ["virtio_pci", "virtio_net", "virtio_blk", "isofs", "af_packet"];

/// The test guest's `/init`: says it booted and which virtualization flags its CPU shows, asks
/// for an address by DHCP on every NIC, reads a config drive (ISO 9660 labelled `config-2`) if
/// one is attached, prints what it found, and stays up, printing its disks whenever they change
/// (volumes plugged in or out).
const TEST_GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in $(cat /mods/order); do insmod /mods/$m.ko 2>/dev/null; done
M=CAIRN-TEST-GUEST
echo "$M booted"
echo "$M cpu-flags: $(grep -o -w -E 'vmx|svm|hypervisor' /proc/cpuinfo | sort -u | tr '\n' ' ')"
sleep 1
mkdir -p /cfg
for d in /dev/vd? /dev/sr?; do
  [ -b "$d" ] || continue
  if mount -t iso9660 -o ro "$d" /cfg 2>/dev/null; then
    if [ -f /cfg/openstack/latest/meta_data.json ]; then break; fi
    umount /cfg
  fi
done
if [ -f /cfg/openstack/latest/meta_data.json ]; then
  META=/cfg/openstack/latest/meta_data.json
  H=$(sed -n 's/.*"hostname": *"\([^"]*\)".*/\1/p' $META)
  [ -n "$H" ] && hostname "$H"
  echo "$M config-drive hostname: $H"
  K=$(grep -o 'ssh-[a-z0-9-]* [A-Za-z0-9+/=]*' $META | head -1 | cut -c1-40)
  echo "$M config-drive key: $K"
  [ -f /cfg/openstack/latest/user_data ] && echo "$M config-drive user-data: $(head -c 200 /cfg/openstack/latest/user_data | tr '\n' ' ')"
else
  echo "$M config-drive: none"
fi
ip link set lo up
for n in /sys/class/net/eth*; do
  i=$(basename $n)
  ip link set $i up
  udhcpc -i $i -n -q -t 15 -T 2 -s /etc/udhcpc.script 2>/dev/null || echo "$M dhcp $i: none"
done
echo "$M ready"
OLD=""
while true; do
  D=$(cd /sys/block && ls -d vd* 2>/dev/null | tr '\n' ' ')
  [ "$D" != "$OLD" ] && echo "$M disks: $D" && OLD="$D"
  sleep 1
done
"#;

/// udhcpc's script: configures the lease, says which address it got, and pings the DHCP server.
const TEST_GUEST_DHCP: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "CAIRN-TEST-GUEST dhcp $interface: $ip"
    # The DHCP server sits on the same network: reaching it proves the path both ways.
    if [ -n "$serverid" ]; then
      if ping -c 1 -W 3 "$serverid" >/dev/null 2>&1; then R=ok; else R=failed; fi
      echo "CAIRN-TEST-GUEST ping $serverid: $R"
    fi
    ;;
esac
exit 0
"#;

/// A module and the modules it needs, dependencies first (`modinfo -F depends`).
fn with_deps(k: &GuestKernel, name: &str, out: &mut Vec<String>) -> Result<()> {
    if out.iter().any(|m| m == name) {
        return Ok(());
    }
    let Ok(file) = k.module(name) else {
        // Built into the kernel: nothing to load.
        return Ok(());
    };
    let deps = run(Command::new("modinfo").args(["-F", "depends"]).arg(&file), "modinfo")?;
    for d in deps.trim().split(',').filter(|d| !d.is_empty()) {
        with_deps(k, d, out)?;
    }
    out.push(name.to_owned());
    Ok(())
}

/// The test guest for compute tests: a small bootable disk (syslinux on a FAT disk, Debian's
/// kernel, a busybox initramfs running [`TEST_GUEST_INIT`]) as compressed qcow2, built from
/// Debian packages (the kernel, busybox, syslinux) and cached in
/// `~/.cache/cairn/test-guest/` until the kernel changes. No image comes from the internet.
pub fn test_guest_image() -> Result<PathBuf> {
    let kernel = GuestKernel::debian()?;
    let version = kernel.modules.file_name().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
    let dir = home.join(".cache/cairn/test-guest");
    // The recipe's version: bump when the guest changes.
    let out = dir.join(format!("guest-{version}-v5.qcow2"));
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let work = tempfile::tempdir().map_err(io("temp dir"))?;
    let (root, busybox) =
        initramfs_root(work.path(), &["bin", "sbin", "proc", "sys", "dev", "tmp", "etc", "mods", "cfg"])?;
    // Debian's busybox is static (ldd lists nothing); a dynamic one brings its libraries.
    copy_libs_of(&busybox, &root, &mut BTreeSet::new())?;
    std::fs::copy(&busybox, root.join("bin/busybox")).map_err(io("copying busybox"))?;
    let mut order = vec![];
    for m in TEST_GUEST_MODULES {
        with_deps(&kernel, m, &mut order)?;
    }
    for m in &order {
        std::fs::copy(kernel.module(m)?, root.join("mods").join(format!("{m}.ko")))
            .map_err(io(format!("copying {m}")))?;
    }
    let write = |path: &str, text: &str, mode: u32| -> Result<()> {
        let p = root.join(path);
        std::fs::write(&p, text).map_err(io(format!("writing {path}")))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(io("chmod"))
    };
    write("mods/order", &order.join("\n"), 0o644)?;
    write("init", TEST_GUEST_INIT, 0o755)?;
    write("etc/udhcpc.script", TEST_GUEST_DHCP, 0o755)?;
    write("etc/passwd", "root:x:0:0:root:/:/bin/sh\n", 0o644)?;
    let initrd = work.path().join("initrd.gz");
    pack_initramfs(&root, &initrd)?;

    // A FAT file system over the whole disk with syslinux in its boot sector: SeaBIOS boots it
    // as it would a USB stick.
    let fat = work.path().join("disk.raw");
    let kib = (std::fs::metadata(&kernel.vmlinuz).map_err(io("kernel size"))?.len()
        + std::fs::metadata(&initrd).map_err(io("initrd size"))?.len())
        / 1024
        + 4096;
    run(
        Command::new("mkfs.vfat").args(["-n", "CAIRNGUEST", "-C"]).arg(&fat).arg(kib.to_string()),
        "mkfs.vfat (package dosfstools)",
    )?;
    run(Command::new("syslinux").arg("--install").arg(&fat), "syslinux --install (package syslinux)")?;
    let cfg = work.path().join("syslinux.cfg");
    std::fs::write(
        &cfg,
        "SERIAL 0 115200\nDEFAULT guest\nTIMEOUT 0\nPROMPT 0\nLABEL guest\n  KERNEL vmlinuz\n  INITRD initrd.gz\n  APPEND console=tty0 console=ttyS0,115200 panic=-1 quiet\n",
    )
    .map_err(io("writing syslinux.cfg"))?;
    let img = format!("{}", fat.display());
    for (src, name) in [(&kernel.vmlinuz, "vmlinuz"), (&initrd, "initrd.gz"), (&cfg, "syslinux.cfg")] {
        run(
            Command::new("mcopy").args(["-o", "-i", &img]).arg(src).arg(format!("::{name}")),
            "mcopy (package mtools)",
        )?;
    }
    let tmp = dir.join(format!(".guest-{}.qcow2", std::process::id()));
    run(
        Command::new("qemu-img").args(["convert", "-c", "-f", "raw", "-O", "qcow2"]).arg(&fat).arg(&tmp),
        "qemu-img convert",
    )?;
    std::fs::rename(&tmp, &out).map_err(io("placing the test guest image"))?;
    Ok(out)
}
