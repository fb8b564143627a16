//! Boots Cairn appliance images in QEMU — KVM when this host's /dev/kvm really runs guests
//! (the agent's own probe decides), else TCG — waits for "cairn: ready" on the serial console,
//! forwards the API port to the host, fetches the CA certificate pinned by the fingerprint the
//! console shows, and tears everything down when dropped. Every failure carries the console log.

use base64::Engine;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0} is missing: run `make image` first (or set CAIRN_IMAGE_DIR)")]
    NoImage(PathBuf),
    #[error("{what}: {source}")]
    Io { what: String, #[source] source: std::io::Error },
    #[error("{what}\n--- console log ---\n{console}")]
    Boot { what: String, console: String },
    #[error("TLS: {0}")]
    Tls(String),
}

type Result<T> = std::result::Result<T, HarnessError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
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
    let bin = ["release", "debug"].iter().map(|p| workspace().join("target").join(p).join("cairn")).find(|p| p.exists());
    let Some(bin) = bin else { return "tcg" };
    let out = Command::new(bin).args(["probe", "--json"]).output();
    let accel = out.ok().and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()).and_then(|v| v["accel"].as_str().map(str::to_owned));
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
    pub timeout: Duration,
}

impl Boot {
    pub fn new(media: Media) -> Self {
        Boot { media, cpu: "max".into(), memory_mib: 2048, extra: Vec::new(), timeout: Duration::from_secs(600) }
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
                let vars = dir.path().join("OVMF_VARS.fd");
                std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).map_err(io("copying OVMF_VARS_4M.fd (package ovmf)"))?;
                args.extend([
                    "-drive".into(),
                    "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,file={}", vars.display()),
                    "-drive".into(),
                    format!("if=virtio,format=raw,file={},snapshot=on", image.display()),
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
                app.password = field_after(&console, "admin / ").and_then(|r| r.split_whitespace().next()).unwrap_or_default().to_owned();
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
        let chain = rt.block_on(peer_chain(self.api))?;
        for der in chain {
            let digest: String = ring::digest::digest(&ring::digest::SHA256, &der).as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if digest == self.fingerprint {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
                let body: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
                return Ok(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n")));
            }
        }
        Err(self.fail(&format!("no certificate in the API's chain has the console's fingerprint {}", self.fingerprint)))
    }

    /// The directory holding the console log and the CA.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Accepts any server certificate, recording the chain; used only to fetch the CA, which is
/// then checked against the fingerprint from the console.
#[derive(Debug)]
struct Recorder(std::sync::Mutex<Vec<Vec<u8>>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.0.lock() {
            c.push(end_entity.to_vec());
            c.extend(intermediates.iter().map(|i| i.to_vec()));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

async fn peer_chain(addr: SocketAddr) -> Result<Vec<Vec<u8>>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder(std::sync::Mutex::default(), provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HarnessError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(io(format!("connecting to {addr}")))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.map_err(io("TLS handshake"))?;
    let chain = recorder.0.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(chain)
}
