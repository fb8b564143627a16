//! `cairn-image`: builds the agent in release mode, stages it into the image tree, runs mkosi
//! (non-interactive, cached outside the repository) and writes to `out/`:
//!
//! - `cairn-<version>.raw` — UEFI disk image for USB sticks and disks, and `.raw.zst`;
//! - `vmlinuz`, `initrd` (the whole root as a zstd cpio) and `boot.ipxe` — PXE artifacts;
//! - `SHA256SUMS` and `manifest.json` (version, sizes, packages, build time).
//!
//! It checks the host tools first and names the Debian package of any that is missing.

use clap::Parser;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(name = "cairn-image", about = "Build the Cairn appliance image")]
struct Args {
    /// Where the artifacts go.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// mkosi's caches (incremental image and packages); outside the repository.
    #[arg(long, default_value = "/var/cache/cairn-mkosi")]
    cache: PathBuf,
    /// Use the already built target/release/cairn instead of building it.
    #[arg(long)]
    no_agent_build: bool,
    /// Build only the disk image (skip the PXE artifacts).
    #[arg(long)]
    disk_only: bool,
}

#[derive(Debug, thiserror::Error)]
enum ImageError {
    #[error("{tool} is missing: install the Debian package {package}{note}")]
    MissingTool { tool: &'static str, package: &'static str, note: &'static str },
    #[error("{what} failed with {status}")]
    Failed { what: String, status: std::process::ExitStatus },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mkosi produced no {0}")]
    NoOutput(&'static str),
}

type Result<T> = std::result::Result<T, ImageError>;

const BPO: &str = " (from bookworm-backports: `make deps` adds it)";

/// Host tools mkosi needs here, with the package that has each.
const TOOLS: [(&str, &str, &str); 11] = [
    ("mkosi", "mkosi", BPO),
    ("systemd-repart", "systemd", BPO),
    ("bwrap", "bubblewrap", ""),
    ("depmod", "kmod", ""),
    ("mcopy", "mtools", ""),
    ("mkfs.vfat", "dosfstools", ""),
    ("mkfs.ext4", "e2fsprogs", ""),
    ("cpio", "cpio", ""),
    ("zstd", "zstd", ""),
    ("cargo", "a Rust toolchain (rustup)", ""),
    ("apt-get", "apt", ""),
];

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(tool).is_file())
        })
        .unwrap_or(false)
}

fn check_tools() -> Result<()> {
    for (tool, package, note) in TOOLS {
        if !have(tool) {
            return Err(ImageError::MissingTool { tool, package, note });
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("+ {what}");
    let status = cmd.status().map_err(|source| ImageError::Io { op: "running", path: what.into(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::Failed { what: what.into(), status })
    }
}

fn io<T>(op: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| ImageError::Io { op, path: path.into(), source })
}

fn sha256(path: &Path) -> Result<String> {
    let mut f = io("opening", path, fs::File::open(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io("reading", path, f.read(&mut buf))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Allocated size on disk (a raw image is sparse).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Runs mkosi for one output format into `dir`, with extra mkosi arguments.
fn mkosi(root: &Path, args: &Args, stage: &Path, dir: &Path, format: &str, extra: &[&str]) -> Result<()> {
    io("creating", dir, fs::create_dir_all(dir))?;
    let mut cmd = Command::new("mkosi");
    cmd.current_dir(root)
        .arg("--force")
        .arg(format!("--format={format}"))
        .arg(format!("--output-dir={}", dir.display()))
        .arg(format!("--cache-dir={}", args.cache.join("cache").display()))
        .arg(format!("--package-cache-dir={}", args.cache.join("pkgcache").display()))
        .arg(format!("--extra-tree={}:/", stage.display()))
        .arg("--manifest-format=json")
        .args(extra)
        .arg("build")
        .stdin(std::process::Stdio::null());
    run(&mut cmd, &format!("mkosi --format={format} build"))
}

const IPXE: &str = r#"#!ipxe
# Cairn appliance over the network. Set before chaining this script (or edit here):
#   cairn_join  a join token from `cairn token create` (empty: this node starts a new cluster)
#   cairn_ip    ADDR/PREFIX[,GATEWAY[,DNS[,INTERFACE]]] for a static address (empty: DHCP)
isset ${cairn_join} || set cairn_join
isset ${cairn_ip} || set cairn_ip
kernel vmlinuz console=tty0 console=ttyS0,115200 cairn.join=${cairn_join} cairn.ip=${cairn_ip}
initrd initrd
boot
"#;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match build(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("cairn-image: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn build(args: &Args) -> Result<()> {
    let started = Instant::now();
    check_tools()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = io("resolving", &root, root.canonicalize())?;
    let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
    let version = env!("CARGO_PKG_VERSION");
    if !args.no_agent_build {
        run(
            Command::new("cargo").current_dir(&root).args(["build", "--release", "--bin", "cairn"]),
            "cargo build --release --bin cairn",
        )?;
    }
    let stage = out.join("stage");
    let bin = stage.join("usr/bin");
    io("creating", &bin, fs::create_dir_all(&bin))?;
    let agent = root.join("target/release/cairn");
    io("staging", &agent, fs::copy(&agent, bin.join("cairn")))?;

    let disk_dir = out.join("mkosi/disk");
    mkosi(&root, args, &stage, &disk_dir, "disk", &[])?;
    let raw = out.join(format!("cairn-{version}.raw"));
    io("moving", &raw, fs::rename(disk_dir.join("cairn.raw"), &raw))?;
    run(
        Command::new("zstd").args(["-q", "-f", "-T0", "-10"]).arg(&raw).arg("-o").arg(raw.with_extension("raw.zst")),
        "zstd the disk image",
    )?;
    let mut artifacts = vec![raw.clone(), raw.with_extension("raw.zst")];
    let manifest_src = disk_dir.join("cairn.manifest");

    if !args.disk_only {
        let pxe_dir = out.join("mkosi/pxe");
        // A network-booted root needs no boot loader, /boot or initrd of its own: it is the
        // initrd, and the kernel is the disk build's.
        // Nor a data partition: it keeps state in memory and says so.
        mkosi(
            &root,
            args,
            &stage,
            &pxe_dir,
            "cpio",
            &["--bootable=no", "--remove-files=/etc/fstab", "--remove-files=/usr/lib/repart.d"],
        )?;
        let kernel = disk_dir.join("cairn.vmlinuz");
        let cpio = fs::read_dir(&pxe_dir)
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with(".cpio.zst") || p.extension().is_some_and(|x| x == "cpio"))
            })
            .ok_or(ImageError::NoOutput("cpio archive"))?;
        io("moving", &kernel, fs::rename(&kernel, out.join("vmlinuz")))?;
        io("moving", &cpio, fs::rename(&cpio, out.join("initrd")))?;
        io("writing", &out, fs::write(out.join("boot.ipxe"), IPXE))?;
        artifacts.extend([out.join("vmlinuz"), out.join("initrd"), out.join("boot.ipxe")]);
    }

    let mut sums = String::new();
    let mut files = Vec::new();
    for a in &artifacts {
        let name = a.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let digest = sha256(a)?;
        sums.push_str(&format!("{digest}  {name}\n"));
        let size = io("reading", a, fs::metadata(a))?.len();
        files.push(serde_json::json!({"name": name, "bytes": size, "allocated_bytes": allocated(a), "sha256": digest}));
    }
    io("writing", &out, fs::write(out.join("SHA256SUMS"), &sums))?;
    let packages: serde_json::Value = fs::read(&manifest_src)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m.get("packages").cloned())
        .map(|p| {
            p.as_array()
                .map(|a| a.iter().map(|x| serde_json::json!({"name": x["name"], "version": x["version"]})).collect())
                .unwrap_or_default()
        })
        .unwrap_or(serde_json::Value::Array(vec![]));
    let built = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let manifest = serde_json::json!({
        "version": version,
        "built_at_unix": built,
        "build_seconds": started.elapsed().as_secs(),
        "files": files,
        "packages": packages,
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    io("writing", &out, fs::write(out.join("manifest.json"), text))?;

    println!("Cairn {version} image in {} ({} s):", out.display(), started.elapsed().as_secs());
    for a in &artifacts {
        let size = fs::metadata(a).map(|m| m.len()).unwrap_or(0);
        let alloc = allocated(a);
        let name = a.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if alloc + (1 << 20) < size {
            println!("  {name:<24} {:>12} ({} allocated)", mib(size), mib(alloc));
        } else {
            println!("  {name:<24} {:>12}", mib(size));
        }
    }
    println!("  SHA256SUMS, manifest.json");
    Ok(())
}
