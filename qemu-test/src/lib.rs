//! Boots Cairn appliance images in QEMU — KVM when this host's /dev/kvm really runs guests
//! (the agent's own probe decides), else TCG — waits for "cairn: ready" on the serial console,
//! forwards the API port to the host, fetches the CA certificate pinned by the fingerprint the
//! console shows, and tears everything down when dropped. Every failure carries the console log.

pub mod guest;
pub mod iscsi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0} is missing: run `make image` first (or set CAIRN_IMAGE_DIR)")]
    NoImage(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}\n--- console log ---\n{console}")]
    Boot { what: String, console: String },
    #[error("TLS: {0}")]
    Tls(String),
}

type Result<T> = std::result::Result<T, HarnessError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Where the image artifacts are (`make image` writes them to `out/`).
pub fn image_dir() -> PathBuf {
    std::env::var_os("CAIRN_IMAGE_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("out"))
}

/// The disk image built for this version.
pub fn disk_image() -> Result<PathBuf> {
    let p = image_dir().join(format!("cairn-{}.raw", env!("CARGO_PKG_VERSION")));
    if p.exists() {
        Ok(p)
    } else {
        Err(HarnessError::NoImage(p))
    }
}

/// `kvm` when the host's /dev/kvm runs guests (by the agent's KVM run test), else `tcg`.
pub fn host_accel() -> &'static str {
    let bin =
        ["release", "debug"].iter().map(|p| workspace().join("target").join(p).join("cairn")).find(|p| p.exists());
    let Some(bin) = bin else { return "tcg" };
    let out = Command::new(bin).args(["probe", "--json"]).output();
    let accel = out
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["accel"].as_str().map(str::to_owned));
    if accel.as_deref() == Some("kvm") {
        "kvm"
    } else {
        "tcg"
    }
}

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading the port"))?.port())
}

/// How to boot.
#[derive(Clone, Debug)]
pub enum Media {
    /// The disk image under UEFI (OVMF), as from a USB stick; the image is not modified.
    Disk(PathBuf),
    /// Network boot: QEMU's built-in DHCP/TFTP serves `dir`, the NIC's iPXE ROM fetches
    /// `boot.ipxe` and through it the kernel and the initrd.
    Pxe { dir: PathBuf },
}

#[derive(Clone, Debug)]
pub struct Boot {
    pub media: Media,
    /// QEMU `-cpu` model (`max` offers svm under TCG).
    pub cpu: String,
    pub memory_mib: u32,
    /// Extra QEMU arguments (a second NIC on a virtual LAN, …).
    pub extra: Vec<String>,
    /// Boot the disk image from a copy-on-write overlay of this size (a bigger disk, as a USB
    /// stick or a server's disk is), instead of the image's own size.
    pub disk_bytes: Option<u64>,
    /// Empty raw disks of these sizes after the boot disk (`/dev/vdb`, `/dev/vdc`, …).
    pub data_disks: Vec<u64>,
    /// systemd credentials (name, content) passed through QEMU's fw_cfg, e.g. `cairn.config`.
    pub credentials: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Boot {
    pub fn new(media: Media) -> Self {
        Boot {
            media,
            cpu: "max".into(),
            memory_mib: 2048,
            extra: Vec::new(),
            disk_bytes: None,
            data_disks: Vec::new(),
            credentials: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// A running appliance.
pub struct Appliance {
    child: Child,
    dir: tempfile::TempDir,
    pub api: SocketAddr,
    /// First-boot admin password, as the console showed it.
    pub password: String,
    /// The cluster CA fingerprint, as the console showed it.
    pub fingerprint: String,
    /// Host wall time from QEMU start to the ready line.
    pub ready_after: Duration,
    /// The pinned CA certificate (PEM), written next to the console log.
    pub ca_path: PathBuf,
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field_after<'a>(console: &'a str, label: &str) -> Option<&'a str> {
    console.lines().rev().find_map(|l| l.trim_end_matches('\r').split_once(label).map(|(_, rest)| rest.trim()))
}

impl Appliance {
    pub fn boot(boot: &Boot) -> Result<Appliance> {
        let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
        let serial = dir.path().join("console.log");
        let port = free_port()?;
        let accel = host_accel();
        let mut args: Vec<String> = vec![
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            accel.into(),
            "-cpu".into(),
            boot.cpu.clone(),
            "-m".into(),
            boot.memory_mib.to_string(),
            "-smp".into(),
            "2".into(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-user-config".into(),
            "-serial".into(),
            format!("file:{}", serial.display()),
        ];
        let hostfwd = format!("hostfwd=tcp:127.0.0.1:{port}-:443");
        match &boot.media {
            Media::Disk(image) => {
                let drive = match boot.disk_bytes {
                    None => format!("if=virtio,format=raw,file={},snapshot=on", image.display()),
                    Some(bytes) => {
                        let overlay = dir.path().join("disk.qcow2");
                        let status = Command::new("qemu-img")
                            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                            .arg(image)
                            .arg(&overlay)
                            .arg(bytes.to_string())
                            .status()
                            .map_err(io("running qemu-img (package qemu-utils)"))?;
                        if !status.success() {
                            return Err(HarnessError::Io {
                                what: "qemu-img create".into(),
                                source: std::io::Error::other(status.to_string()),
                            });
                        }
                        format!("if=virtio,format=qcow2,file={}", overlay.display())
                    }
                };
                let vars = dir.path().join("OVMF_VARS.fd");
                std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
                    .map_err(io("copying OVMF_VARS_4M.fd (package ovmf)"))?;
                args.extend([
                    "-drive".into(),
                    "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,file={}", vars.display()),
                    "-drive".into(),
                    drive,
                    "-netdev".into(),
                    format!("user,id=mgmt,{hostfwd}"),
                    "-device".into(),
                    "virtio-net-pci,netdev=mgmt,addr=0x3".into(),
                ]);
            }
            Media::Pxe { dir: tftp } => {
                args.extend([
                    "-netdev".into(),
                    format!("user,id=mgmt,{hostfwd},tftp={},bootfile=boot.ipxe", tftp.display()),
                    "-device".into(),
                    "virtio-net-pci,netdev=mgmt,addr=0x3,bootindex=1".into(),
                    "-boot".into(),
                    "n".into(),
                ]);
            }
        }
        for (i, bytes) in boot.data_disks.iter().enumerate() {
            let path = dir.path().join(format!("data{i}.raw"));
            std::fs::File::create(&path)
                .and_then(|f| f.set_len(*bytes))
                .map_err(io(format!("creating {}", path.display())))?;
            args.extend(["-drive".into(), format!("if=virtio,format=raw,file={}", path.display())]);
        }
        for (name, content) in &boot.credentials {
            let path = dir.path().join(format!("credential-{name}"));
            std::fs::write(&path, content).map_err(io(format!("writing {}", path.display())))?;
            args.extend(["-fw_cfg".into(), format!("name=opt/io.systemd.credentials/{name},file={}", path.display())]);
        }
        args.extend(boot.extra.iter().cloned());
        let started = Instant::now();
        let child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("qemu.err")).map_err(io("qemu stderr file"))?)
            .spawn()
            .map_err(io("starting qemu-system-x86_64 (package qemu-system-x86)"))?;
        let mut app = Appliance {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            password: String::new(),
            fingerprint: String::new(),
            ready_after: Duration::ZERO,
            ca_path: dir.path().join("ca.pem"),
            dir,
        };
        loop {
            let console = app.console();
            if console.contains("cairn: ready") && console.contains("====================") {
                app.ready_after = started.elapsed();
                app.password = field_after(&console, "admin / ")
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or_default()
                    .to_owned();
                app.fingerprint = field_after(&console, "CA fingerprint sha256").unwrap_or_default().to_owned();
                break;
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                let err = std::fs::read_to_string(app.dir.path().join("qemu.err")).unwrap_or_default();
                return Err(app.fail(&format!("QEMU exited with {status}: {err}")));
            }
            if started.elapsed() > boot.timeout {
                return Err(app.fail(&format!("no \"cairn: ready\" within {:?}", boot.timeout)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let pem = app.fetch_ca()?;
        std::fs::write(&app.ca_path, pem).map_err(io("writing the CA"))?;
        Ok(app)
    }

    /// What the serial console printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join("console.log")).unwrap_or_default()).into_owned()
    }

    /// An error carrying the console log.
    pub fn fail(&self, what: &str) -> HarnessError {
        HarnessError::Boot { what: what.into(), console: self.console() }
    }

    /// Reads the certificate chain the API presents and keeps the CA certificate whose SHA-256
    /// is the fingerprint the console showed: pinned, not trusted on first use.
    fn fetch_ca(&self) -> Result<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("runtime"))?;
        let chain =
            rt.block_on(cairn_agent::pki::peer_chain(self.api)).map_err(|e| HarnessError::Tls(e.to_string()))?;
        for der in chain {
            if cairn_agent::pki::der_fingerprint(&der) == self.fingerprint {
                return Ok(cairn_agent::pki::der_to_pem(&der));
            }
        }
        Err(self.fail(&format!("no certificate in the API's chain has the console's fingerprint {}", self.fingerprint)))
    }

    /// The directory holding the console log and the CA.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
