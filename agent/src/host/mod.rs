//! The host probe: what this machine offers a cloud node — CPU and its virtualization
//! extension, whether KVM really runs guests (and so `kvm` or `qemu` domains), loaded KVM
//! modules and nested virtualization, memory and hugepages, NICs and disks. It reads through
//! [`HostFs`] so tests run it against fixture trees; the KVM run test comes through
//! [`KvmTester`].

pub mod setup;

use crate::sys::hostfs::HostFs;
use crate::sys::kvm::{KvmRun, KvmTester};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The CPU's hardware virtualization extension, from /proc/cpuinfo flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtExt {
    Vmx,
    Svm,
    None,
}

/// How guests will run: hardware-assisted, or emulated by QEMU (TCG).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Qemu,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    pub vendor: String,
    pub model: String,
    pub count: usize,
    pub virtualization: VirtExt,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kvm {
    pub device: bool,
    pub run_test: KvmRun,
    /// KVM modules present in /sys/module (kvm, kvm_intel, kvm_amd, kvm_pvm, …).
    pub modules: Vec<String>,
    /// The vendor module's `nested` parameter, when it has one.
    pub nested: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub hugepages_total: u64,
    pub hugepage_size_kib: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub link: String,
    /// Mb/s when the driver reports it.
    pub speed_mbps: Option<u64>,
    /// None for virtual devices (bridges, veth, …) without a bus device.
    pub driver: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    pub rotational: bool,
    /// The disk or one of its partitions is mounted or held (LVM, RAID, dm).
    pub in_use: bool,
}

/// Everything the probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpu: Cpu,
    pub kvm: Kvm,
    pub accel: Accel,
    /// Why `accel` is what it is, in a sentence.
    pub accel_reason: String,
    pub memory: Memory,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    (k.trim() == key).then(|| v.trim())
}

fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu { vendor: String::new(), model: String::new(), count: 0, virtualization: VirtExt::None };
    for line in text.lines() {
        if field(line, "processor").is_some() {
            cpu.count += 1;
        } else if let Some(v) = field(line, "vendor_id").filter(|_| cpu.vendor.is_empty()) {
            cpu.vendor = v.into();
        } else if let Some(v) = field(line, "model name").filter(|_| cpu.model.is_empty()) {
            cpu.model = v.into();
        } else if let Some(flags) = field(line, "flags").filter(|_| cpu.count <= 1) {
            let has = |f| flags.split_whitespace().any(|x| x == f);
            cpu.virtualization = if has("vmx") {
                VirtExt::Vmx
            } else if has("svm") {
                VirtExt::Svm
            } else {
                VirtExt::None
            };
        }
    }
    cpu
}

fn parse_meminfo(text: &str) -> Memory {
    let num =
        |key| text.lines().find_map(|l| field(l, key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    Memory {
        total_bytes: num("MemTotal").unwrap_or(0) * 1024,
        hugepages_total: num("HugePages_Total").unwrap_or(0),
        hugepage_size_kib: num("Hugepagesize").unwrap_or(0),
    }
}

fn read_trim(fs: &dyn HostFs, path: &str) -> Option<String> {
    fs.read(path).ok().map(|s| s.trim().to_owned())
}

fn nested(fs: &dyn HostFs, modules: &[String]) -> Option<bool> {
    modules.iter().filter(|m| m.as_str() != "kvm").find_map(|m| {
        read_trim(fs, &format!("sys/module/{m}/parameters/nested")).map(|v| matches!(v.as_str(), "Y" | "y" | "1"))
    })
}

fn nics(fs: &dyn HostFs) -> Vec<Nic> {
    let names = fs.list("sys/class/net").unwrap_or_default();
    names
        .into_iter()
        .filter(|n| n != "lo")
        .map(|name| {
            let base = format!("sys/class/net/{name}");
            let driver = fs
                .read(&format!("{base}/device/uevent"))
                .ok()
                .and_then(|u| u.lines().find_map(|l| l.strip_prefix("DRIVER=")).map(str::to_owned));
            Nic {
                mac: read_trim(fs, &format!("{base}/address")).unwrap_or_default(),
                link: read_trim(fs, &format!("{base}/operstate")).unwrap_or_else(|| "unknown".into()),
                // Reading `speed` fails (EINVAL) on a link that is down; negative means unknown.
                speed_mbps: read_trim(fs, &format!("{base}/speed"))
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|s| u64::try_from(s).ok()),
                driver,
                name,
            }
        })
        .collect()
}

fn disks(fs: &dyn HostFs) -> Vec<Disk> {
    let mounts = fs.read("proc/mounts").unwrap_or_default();
    let mounted: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().next()?.strip_prefix("/dev/")).collect();
    let skip = ["loop", "ram", "zram", "sr", "fd"];
    fs.list("sys/block")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !skip.iter().any(|p| n.starts_with(p)))
        .map(|name| {
            let base = format!("sys/block/{name}");
            let parts: Vec<String> = fs
                .list(&base)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.starts_with(name.as_str()) && p != &name)
                .collect();
            let held = |dir: &str| fs.list(&format!("{dir}/holders")).map(|h| !h.is_empty()).unwrap_or(false);
            let in_use = mounted.contains(&name.as_str())
                || held(&base)
                || parts.iter().any(|p| mounted.contains(&p.as_str()) || held(&format!("{base}/{p}")));
            Disk {
                size_bytes: read_trim(fs, &format!("{base}/size")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
                    * 512,
                rotational: read_trim(fs, &format!("{base}/queue/rotational")).as_deref() == Some("1"),
                in_use,
                name,
            }
        })
        .collect()
}

/// Decides between `kvm` and `qemu` domains, and says why.
fn decide(cpu: &Cpu, kvm: &Kvm) -> (Accel, String) {
    let ext = match cpu.virtualization {
        VirtExt::Vmx => "the CPU has vmx",
        VirtExt::Svm => "the CPU has svm",
        VirtExt::None => "the CPU has no vmx/svm flag",
    };
    match &kvm.run_test {
        KvmRun::Passed => {
            (Accel::Kvm, format!("{ext}; test guests ran on /dev/kvm (real-mode hlt; mode switches and an exception through the guest's IDT)"))
        }
        KvmRun::Failed(why) => {
            (Accel::Qemu, format!("{ext}; /dev/kvm does not run guests ({why}): guests are emulated"))
        }
        KvmRun::NotRun(why) => (Accel::Qemu, format!("{ext}; {why}: guests are emulated")),
    }
}

/// Probes the host.
pub fn probe(fs: &dyn HostFs, kvm: &dyn KvmTester) -> HostFacts {
    let cpu = parse_cpuinfo(&fs.read("proc/cpuinfo").unwrap_or_default());
    let modules: Vec<String> =
        fs.list("sys/module").unwrap_or_default().into_iter().filter(|m| m == "kvm" || m.starts_with("kvm_")).collect();
    let device = fs.exists("dev/kvm");
    let run_test = if device { kvm.run() } else { KvmRun::NotRun("/dev/kvm does not exist".into()) };
    let kvm = Kvm { device, run_test, nested: nested(fs, &modules), modules };
    let (accel, accel_reason) = decide(&cpu, &kvm);
    HostFacts {
        memory: parse_meminfo(&fs.read("proc/meminfo").unwrap_or_default()),
        nics: nics(fs),
        disks: disks(fs),
        cpu,
        kvm,
        accel,
        accel_reason,
    }
}

/// Where the agent keeps its state, and how much room it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDir {
    pub path: String,
    pub size_bytes: u64,
    pub available_bytes: u64,
    /// On tmpfs or ramfs (a PXE node without a disk): lost at power-off.
    pub in_memory: bool,
}

/// Reads the file system under `dir`.
pub fn data_dir(dir: &std::path::Path) -> DataDir {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let in_memory =
        statfs(dir).map(|s| s.filesystem_type() == TMPFS_MAGIC || s.filesystem_type() == RAMFS_MAGIC).unwrap_or(false);
    let (size_bytes, available_bytes) = nix::sys::statvfs::statvfs(dir)
        .map(|v| (v.blocks() * v.fragment_size(), v.blocks_available() * v.fragment_size()))
        .unwrap_or((0, 0));
    DataDir { path: dir.display().to_string(), size_bytes, available_bytes, in_memory }
}

/// A node's probe taken on request (a node call): the host's facts and its data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProbe {
    pub facts: HostFacts,
    pub data_dir: DataDir,
}

/// Probes this host anew, as the agent did at start (the KVM run test included).
#[derive(Clone, Debug)]
pub struct Prober {
    pub kvm_timeout: std::time::Duration,
    pub data_dir: std::path::PathBuf,
}

impl Prober {
    pub async fn run(&self) -> Result<NodeProbe, tokio::task::JoinError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let kvm = crate::sys::kvm::ChildKvmTester { timeout: this.kvm_timeout };
            NodeProbe {
                facts: probe(&crate::sys::hostfs::RootedFs::new("/"), &kvm),
                data_dir: data_dir(&this.data_dir),
            }
        })
        .await
    }
}

/// A readable table of the facts.
pub fn render_table(f: &HostFacts) -> String {
    let mut s = String::new();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let _ = writeln!(s, "CPU          {} ({}), {} CPUs", f.cpu.model, f.cpu.vendor, f.cpu.count);
    let _ = writeln!(
        s,
        "Extension    {}",
        serde_json::to_value(f.cpu.virtualization).unwrap_or_default().as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "/dev/kvm     {}", if f.kvm.device { "present" } else { "absent" });
    let run = match &f.kvm.run_test {
        KvmRun::Passed => "passed (guest reached hlt)".to_owned(),
        KvmRun::Failed(w) => format!("failed: {w}"),
        KvmRun::NotRun(w) => format!("not run: {w}"),
    };
    let _ = writeln!(s, "KVM run test {run}");
    let _ =
        writeln!(s, "KVM modules  {}", if f.kvm.modules.is_empty() { "none".into() } else { f.kvm.modules.join(", ") });
    let nested = match f.kvm.nested {
        Some(true) => "on",
        Some(false) => "off",
        None => "n/a",
    };
    let _ = writeln!(s, "Nested       {nested}");
    let accel = if f.accel == Accel::Kvm { "kvm" } else { "qemu (emulation)" };
    let _ = writeln!(s, "Guests run   {accel}: {}", f.accel_reason);
    let _ = writeln!(
        s,
        "Memory       {:.1} GiB, hugepages {} x {} KiB",
        gib(f.memory.total_bytes),
        f.memory.hugepages_total,
        f.memory.hugepage_size_kib
    );
    for n in &f.nics {
        let speed = n.speed_mbps.map(|v| format!("{v} Mb/s")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "NIC          {:<12} {} {:<8} {:<10} {}",
            n.name,
            n.mac,
            n.link,
            speed,
            n.driver.as_deref().unwrap_or("virtual")
        );
    }
    for d in &f.disks {
        let kind = if d.rotational { "hdd" } else { "ssd" };
        let _ = writeln!(
            s,
            "Disk         {:<12} {:>8.1} GiB {} {}",
            d.name,
            gib(d.size_bytes),
            kind,
            if d.in_use { "in use" } else { "free" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::hostfs::RootedFs;
    use crate::sys::kvm::FixedKvm;

    fn fixture(name: &str, kvm: KvmRun) -> HostFacts {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hosts/");
        probe(&RootedFs::new(format!("{root}{name}")), &FixedKvm(kvm))
    }

    #[test]
    fn data_dir_on_tmpfs_is_in_memory() {
        let d = data_dir(std::path::Path::new("/dev/shm"));
        assert!(d.in_memory, "/dev/shm is tmpfs");
        let here = data_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(!here.in_memory && here.size_bytes > 0 && here.available_bytes <= here.size_bytes);
    }

    #[test]
    fn intel_with_vmx_and_nested() {
        let f = fixture("intel-vmx-nested", KvmRun::Passed);
        assert_eq!(f.cpu.vendor, "GenuineIntel");
        assert_eq!(f.cpu.count, 4);
        assert_eq!(f.cpu.virtualization, VirtExt::Vmx);
        assert_eq!(f.kvm.modules, ["kvm", "kvm_intel"]);
        assert_eq!(f.kvm.nested, Some(true));
        assert_eq!(f.accel, Accel::Kvm);
        assert_eq!(f.memory.total_bytes, 65_779_784 * 1024);
        assert_eq!((f.memory.hugepages_total, f.memory.hugepage_size_kib), (512, 2048));
        let names: Vec<_> = f.nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["eno1", "eno2"], "lo is left out");
        assert_eq!(f.nics[0].speed_mbps, Some(10_000));
        assert_eq!(f.nics[0].driver.as_deref(), Some("ixgbe"));
        assert_eq!((f.nics[1].link.as_str(), f.nics[1].speed_mbps), ("down", None));
        let disks: Vec<_> = f.disks.iter().map(|d| (d.name.as_str(), d.rotational, d.in_use)).collect();
        // sda has mounted partitions, sdb is free, sdc is held by device-mapper.
        assert_eq!(disks, [("sda", false, true), ("sdb", true, false), ("sdc", true, true)]);
        assert_eq!(f.disks[0].size_bytes, 937_703_088 * 512);
    }

    #[test]
    fn amd_with_svm_module_not_loaded() {
        let f = fixture("amd-svm", KvmRun::Passed);
        assert_eq!(f.cpu.virtualization, VirtExt::Svm);
        assert_eq!(f.kvm.modules, ["kvm"]);
        assert_eq!(f.kvm.nested, None);
        assert_eq!(f.disks[0].name, "nvme0n1");
        assert!(f.disks[0].in_use, "partition nvme0n1p2 is mounted");
    }

    #[test]
    fn no_extension_no_device_means_emulation() {
        let f = fixture("no-virt", KvmRun::Passed);
        assert_eq!(f.cpu.virtualization, VirtExt::None);
        assert!(!f.kvm.device);
        assert!(matches!(f.kvm.run_test, KvmRun::NotRun(_)), "the test is not run without /dev/kvm");
        assert_eq!(f.accel, Accel::Qemu);
        assert!(f.accel_reason.contains("no vmx/svm"), "{}", f.accel_reason);
    }

    #[test]
    fn paravirtual_kvm_without_flag_is_judged_by_the_run_test() {
        // This build machine: no vmx/svm flag, /dev/kvm from kvm_pvm.
        let hung = KvmRun::Failed("KVM_RUN did not return within 5s: the guest hangs".into());
        let f = fixture("pvm-no-flag", hung);
        assert_eq!(f.cpu.virtualization, VirtExt::None);
        assert!(f.kvm.device);
        assert_eq!(f.kvm.modules, ["kvm", "kvm_pvm"]);
        assert_eq!(f.accel, Accel::Qemu, "a device that hangs guests is not KVM");
        assert_eq!(f.nics.iter().find(|n| n.name == "eth0").and_then(|n| n.driver.as_deref()), Some("virtio_net"));
        assert_eq!(f.nics.iter().find(|n| n.name == "ifb0").map(|n| n.driver.clone()), Some(None));
        assert_eq!(f.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["vda"], "loop devices left out");
        assert!(f.disks[0].in_use);
        let passed = fixture("pvm-no-flag", KvmRun::Passed);
        assert_eq!(passed.accel, Accel::Kvm, "a device that runs the test guest is used");
        assert!(render_table(&passed).contains("kvm_pvm"));
    }
}
