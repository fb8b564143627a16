//! What the agent needs of libvirt: storage pools (define, build, start, refresh, destroy,
//! undefine, autostart, info), volumes (create from XML, create from another volume, resize,
//! delete, upload, info), secrets, and domains (define, start, state, destroy, undefine), as a blocking trait ([`Libvirt`]; callers run it off the
//! async threads) with the real implementation over the `virt` crate ([`Virt`], against
//! `qemu:///system`) and an in-memory fake ([`FakeLibvirt`]). XML comes from [`xml`].

pub mod xml;

pub use crate::model::storage::PoolInfo;
use crate::model::storage::{PoolSpec, VolumeFormat};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("libvirt: {0}")]
    Virt(String),
    #[error("{0}")]
    Xml(#[from] xml::XmlError),
    #[error("storage pool {0} does not exist")]
    NoPool(String),
    #[error("volume {name} does not exist in pool {pool}")]
    NoVolume { pool: String, name: String },
    #[error("volume {name} already exists in pool {pool}")]
    VolumeExists { pool: String, name: String },
    #[error("storage pool {pool} has {available} bytes free; {wanted} needed")]
    Full { pool: String, available: u64, wanted: u64 },
    #[error("storage pool {0} is not active")]
    Inactive(String),
    #[error("libvirt already has a storage pool {0} for other storage; undefine it or name the pool differently")]
    Mismatch(String),
    #[error("reading upload data")]
    Io(#[from] std::io::Error),
    #[error("Ceph key file {path}: {why}")]
    Key { path: String, why: String },
}

impl From<virt::error::Error> for LibvirtError {
    fn from(e: virt::error::Error) -> Self {
        LibvirtError::Virt(e.to_string())
    }
}

type R<T> = Result<T, LibvirtError>;

/// A domain's run state, as far as Nova cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    Running,
    Paused,
    Shutoff,
    Crashed,
}

/// A domain's live figures: libvirt's, and the kernel's for the time of each vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainStats {
    /// `kvm` or `qemu`.
    pub kind: String,
    pub state: DomainState,
    pub max_memory_kib: u64,
    /// Host memory the guest occupies (QEMU's resident set), while it runs.
    pub used_memory_kib: Option<u64>,
    pub vcpus: u32,
    /// CPU time of each vCPU (ns), while it runs and its QEMU process can be read.
    pub vcpu_time_ns: Vec<u64>,
    pub disks: Vec<DiskCounters>,
    pub nics: Vec<NicCounters>,
}

/// A disk's I/O since its guest started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub dev: String,
    pub read_bytes: i64,
    pub read_requests: i64,
    pub write_bytes: i64,
    pub write_requests: i64,
    pub errors: i64,
}

/// A NIC's traffic since its guest started (libvirt counts from the guest's side).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub mac: String,
    pub rx_bytes: i64,
    pub rx_packets: i64,
    pub rx_errors: i64,
    pub rx_drop: i64,
    pub tx_bytes: i64,
    pub tx_packets: i64,
    pub tx_errors: i64,
    pub tx_drop: i64,
}

/// A volume's size and where it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeInfo {
    pub path: String,
    pub capacity: u64,
    pub allocation: u64,
}

/// The libvirt pool XML for a configured pool.
pub fn pool_xml(name: &str, spec: &PoolSpec) -> xml::Pool {
    let mut p = xml::Pool { kind: spec.kind().into(), name: name.into(), source: None, target: None };
    match spec {
        PoolSpec::Dir { path, .. } => p.target = Some(xml::PoolTarget { path: path.clone() }),
        PoolSpec::Logical { vg, devices, .. } => {
            p.source = Some(xml::PoolSource {
                device: devices.iter().map(|d| xml::Device { path: d.clone() }).collect(),
                name: Some(vg.clone()),
                format: Some(xml::Format { kind: "lvm2".into() }),
                ..Default::default()
            });
            p.target = Some(xml::PoolTarget { path: format!("/dev/{vg}") });
        }
        PoolSpec::Iscsi { host, port, iqn } => {
            p.source = Some(xml::PoolSource {
                host: vec![xml::Host { name: host.clone(), port: *port }],
                device: vec![xml::Device { path: iqn.clone() }],
                ..Default::default()
            });
            p.target = Some(xml::PoolTarget { path: "/dev/disk/by-path".into() });
        }
        PoolSpec::Rbd { monitors, pool, user, secret_uuid, .. } => {
            p.source = Some(xml::PoolSource {
                host: monitors
                    .iter()
                    .map(|m| match m.rsplit_once(':').and_then(|(h, port)| Some((h, port.parse().ok()?))) {
                        Some((h, port)) => xml::Host { name: h.into(), port: Some(port) },
                        None => xml::Host { name: m.clone(), port: None },
                    })
                    .collect(),
                name: Some(pool.clone()),
                auth: Some(xml::Auth {
                    kind: "ceph".into(),
                    username: user.clone(),
                    secret: xml::SecretRef { uuid: secret_uuid.clone() },
                }),
                ..Default::default()
            });
        }
    }
    p
}

/// Whether two pool definitions are the same storage: the same directory, volume group, iSCSI
/// target (IQN and portal) or Ceph pool. Libvirt's own XML carries more (its uuid, the devices
/// it found); those do not count.
pub fn same_storage(a: &xml::Pool, b: &xml::Pool) -> bool {
    let (sa, sb) = (a.source.clone().unwrap_or_default(), b.source.clone().unwrap_or_default());
    let hosts = |s: &xml::PoolSource| s.host.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    a.kind == b.kind
        && match a.kind.as_str() {
            "dir" => a.target.as_ref().map(|t| &t.path) == b.target.as_ref().map(|t| &t.path),
            "iscsi" => sa.device == sb.device && hosts(&sa) == hosts(&sb),
            _ => sa.name == sb.name,
        }
}

/// Reads a Ceph key file (`ceph auth get-key` output, base64) into the secret's value; the file
/// must not be readable by group or others.
pub fn read_ceph_key(path: &str) -> R<Vec<u8>> {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let err = |why: String| LibvirtError::Key { path: path.into(), why };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!("mode {:o} lets others read it; make it 0600", meta.permissions().mode() & 0o777)));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| err("not a base64 key as `ceph auth get-key` prints it".into()))
}

/// The secret XML holding a Ceph user's key (the value is set separately, never in XML).
pub fn ceph_secret_xml(uuid: &str, user: &str) -> xml::Secret {
    xml::Secret {
        ephemeral: "no".into(),
        private: "yes".into(),
        uuid: uuid.into(),
        usage: xml::SecretUsage { kind: "ceph".into(), name: format!("client.{user} secret") },
    }
}

/// The XML of a new volume; `backing` makes a qcow2 overlay of that file.
pub fn volume_xml(name: &str, bytes: u64, format: VolumeFormat, backing: Option<(&str, VolumeFormat)>) -> xml::Volume {
    xml::Volume {
        name: name.into(),
        capacity: xml::Size::bytes(bytes),
        allocation: Some(xml::Size::bytes(0)),
        target: Some(xml::VolumeTarget { path: None, format: Some(xml::Format { kind: format.as_str().into() }) }),
        backing_store: backing
            .map(|(path, f)| xml::BackingStore { path: path.into(), format: xml::Format { kind: f.as_str().into() } }),
    }
}

/// The storage operations the agent uses. Blocking.
pub trait Libvirt: Send + Sync {
    fn pool_names(&self) -> R<Vec<String>>;
    /// Defines (persistently) a pool from XML.
    fn define_pool(&self, xml: &xml::Pool) -> R<()>;
    /// A defined pool's XML as libvirt has it.
    fn pool_definition(&self, name: &str) -> R<xml::Pool>;
    /// Builds the pool's backing storage (makes the directory, the volume group).
    fn build_pool(&self, name: &str) -> R<()>;
    fn start_pool(&self, name: &str) -> R<()>;
    fn set_autostart(&self, name: &str, on: bool) -> R<()>;
    fn refresh_pool(&self, name: &str) -> R<()>;
    fn pool_info(&self, name: &str) -> R<PoolInfo>;
    fn destroy_pool(&self, name: &str) -> R<()>;
    fn undefine_pool(&self, name: &str) -> R<()>;
    fn volume_names(&self, pool: &str) -> R<Vec<String>>;
    fn create_volume(&self, pool: &str, xml: &xml::Volume) -> R<VolumeInfo>;
    /// Creates a volume with the content of another (`from` in `from_pool`), converted to the
    /// new volume's format.
    fn clone_volume(&self, pool: &str, xml: &xml::Volume, from_pool: &str, from: &str) -> R<VolumeInfo>;
    fn volume_info(&self, pool: &str, name: &str) -> R<VolumeInfo>;
    /// Grows a volume to `bytes` (never shrinks).
    fn resize_volume(&self, pool: &str, name: &str, bytes: u64) -> R<()>;
    fn delete_volume(&self, pool: &str, name: &str) -> R<()>;
    /// Writes `len` bytes from `data` into the volume, from its start.
    fn upload(&self, pool: &str, name: &str, data: &mut dyn Read, len: u64) -> R<()>;
    /// Defines a private secret and sets its value.
    fn define_secret(&self, xml: &xml::Secret, value: &[u8]) -> R<()>;
    /// Defines (persistently) a domain from XML.
    fn define_domain(&self, xml: &xml::Domain) -> R<()>;
    fn start_domain(&self, name: &str) -> R<()>;
    /// A domain's state; None when there is no such domain.
    fn domain_state(&self, name: &str) -> R<Option<DomainState>>;
    /// Stops a domain at once (pulls the plug); a stopped one is fine.
    fn destroy_domain(&self, name: &str) -> R<()>;
    /// Removes a stopped domain's definition (and a saved state); a missing one is fine.
    fn undefine_domain(&self, name: &str) -> R<()>;
    /// Freezes a running domain's vCPUs.
    fn pause_domain(&self, name: &str) -> R<()>;
    /// Lets a paused domain run again.
    fn resume_domain(&self, name: &str) -> R<()>;
    /// Saves a running domain's memory to disk and stops it (libvirt's managed save); the next
    /// start restores it.
    fn save_domain(&self, name: &str) -> R<()>;
    /// Sends the guest a non-maskable interrupt (a kernel set up for it writes a crash dump).
    fn inject_nmi(&self, name: &str) -> R<()>;
    /// Adds a disk to the domain's definition and, when it runs, to the guest (hot-plug).
    fn attach_disk(&self, name: &str, disk: &xml::Disk) -> R<()>;
    /// Removes a disk from the definition and, when it runs, from the guest: returns once the
    /// guest let go of it, or fails when it does not within `wait`.
    fn detach_disk(&self, name: &str, disk: &xml::Disk, wait: std::time::Duration) -> R<()>;
    /// The target devices (`vda`, …) of the domain's disks, live when it runs.
    fn domain_disks(&self, name: &str) -> R<Vec<String>>;
    /// The domain's live figures; None when it is not defined.
    fn domain_stats(&self, name: &str) -> R<Option<DomainStats>>;
}

/// libvirt's flags for a device change: the definition always, the guest when it runs.
fn affect(d: &virt::domain::Domain) -> R<u32> {
    let live = if d.is_active()? { virt::sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
    Ok(virt::sys::VIR_DOMAIN_AFFECT_CONFIG | live)
}

fn disk_targets(text: &str) -> R<Vec<String>> {
    let d: xml::DomainLive = xml::from_xml(text)?;
    Ok(d.devices.disk.into_iter().map(|d| d.target.dev).collect())
}

fn state_of(state: virt::sys::virDomainState) -> DomainState {
    match state {
        virt::sys::VIR_DOMAIN_RUNNING | virt::sys::VIR_DOMAIN_BLOCKED => DomainState::Running,
        virt::sys::VIR_DOMAIN_PAUSED | virt::sys::VIR_DOMAIN_PMSUSPENDED => DomainState::Paused,
        virt::sys::VIR_DOMAIN_CRASHED => DomainState::Crashed,
        _ => DomainState::Shutoff,
    }
}

/// Where libvirt's QEMU driver keeps a running domain's pid.
const QEMU_RUN_DIR: &str = "/run/libvirt/qemu";
/// How long a guest has to act on a disk unplug request before it is sent again.
const DETACH_RESEND: std::time::Duration = std::time::Duration::from_secs(8);

/// The CPU time (ns) of each vCPU of domain `name`, from its QEMU process's threads (named
/// `CPU <n>/KVM` or `CPU <n>/TCG`); empty when they cannot be read.
fn vcpu_times(name: &str) -> Vec<u64> {
    let Some(pid) = std::fs::read_to_string(format!("{QEMU_RUN_DIR}/{name}.pid")).ok() else { return Vec::new() };
    let tick_ns = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => 1_000_000_000 / hz.unsigned_abs(),
        _ => return Vec::new(),
    };
    let task_dir = format!("/proc/{}/task", pid.trim());
    let Ok(tasks) = std::fs::read_dir(&task_dir) else { return Vec::new() };
    let mut times: Vec<(u32, u64)> = tasks
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let n = comm.trim().strip_prefix("CPU ")?.split('/').next()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            Some((n, thread_ticks(&stat)? * tick_ns))
        })
        .collect();
    times.sort_unstable();
    times.into_iter().map(|(_, ns)| ns).collect()
}

/// A thread's user + system time in clock ticks, from its `/proc/…/stat` line (fields 14 and
/// 15; the command name before them may hold spaces and parentheses).
fn thread_ticks(stat: &str) -> Option<u64> {
    let mut after = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(11);
    Some(after.next()?.parse::<u64>().ok()? + after.next()?.parse::<u64>().ok()?)
}

// ---- the real libvirt

/// libvirt over `qemu:///system` (one connection, used from blocking threads).
pub struct Virt {
    conn: Mutex<virt::connect::Connect>,
}

impl Virt {
    pub fn connect(uri: &str) -> R<Self> {
        // libvirt prints every error to stderr unless told not to; errors come back as values.
        virt::error::clear_error_callback();
        Ok(Self { conn: Mutex::new(virt::connect::Connect::open(Some(uri))?) })
    }

    fn with<T>(&self, f: impl FnOnce(&virt::connect::Connect) -> R<T>) -> R<T> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn)
    }

    fn pool(conn: &virt::connect::Connect, name: &str) -> R<virt::storage_pool::StoragePool> {
        virt::storage_pool::StoragePool::lookup_by_name(conn, name).map_err(|_| LibvirtError::NoPool(name.into()))
    }

    fn vol(
        conn: &virt::connect::Connect,
        pool: &str,
        name: &str,
    ) -> R<(virt::storage_pool::StoragePool, virt::storage_vol::StorageVol)> {
        let p = Self::pool(conn, pool)?;
        let v = virt::storage_vol::StorageVol::lookup_by_name(&p, name)
            .map_err(|_| LibvirtError::NoVolume { pool: pool.into(), name: name.into() })?;
        Ok((p, v))
    }

    fn vol_info(v: &virt::storage_vol::StorageVol) -> R<VolumeInfo> {
        let i = v.get_info()?;
        Ok(VolumeInfo { path: v.get_path()?, capacity: i.capacity, allocation: i.allocation })
    }

    /// Refuses a volume the pool has no room for (libvirt would make a half volume).
    fn check_room(p: &virt::storage_pool::StoragePool, pool: &str, wanted: u64) -> R<()> {
        let i = p.get_info()?;
        if i.state != virt::sys::VIR_STORAGE_POOL_RUNNING {
            return Err(LibvirtError::Inactive(pool.into()));
        }
        if wanted > i.available {
            return Err(LibvirtError::Full { pool: pool.into(), available: i.available, wanted });
        }
        Ok(())
    }
}

impl Libvirt for Virt {
    fn pool_names(&self) -> R<Vec<String>> {
        self.with(|c| {
            let mut names = c.list_storage_pools()?;
            names.extend(c.list_defined_storage_pools()?);
            Ok(names)
        })
    }

    fn define_pool(&self, x: &xml::Pool) -> R<()> {
        let text = xml::to_xml("pool", x)?;
        self.with(|c| {
            virt::storage_pool::StoragePool::define_xml(c, &text, 0)?;
            Ok(())
        })
    }

    fn pool_definition(&self, name: &str) -> R<xml::Pool> {
        let text = self.with(|c| Ok(Self::pool(c, name)?.get_xml_desc(0)?))?;
        Ok(xml::from_xml(&text)?)
    }

    fn build_pool(&self, name: &str) -> R<()> {
        self.with(|c| {
            Self::pool(c, name)?.build(0)?;
            Ok(())
        })
    }

    fn start_pool(&self, name: &str) -> R<()> {
        self.with(|c| {
            let p = Self::pool(c, name)?;
            if !p.is_active()? {
                p.create(0)?;
            }
            Ok(())
        })
    }

    fn set_autostart(&self, name: &str, on: bool) -> R<()> {
        self.with(|c| {
            Self::pool(c, name)?.set_autostart(on)?;
            Ok(())
        })
    }

    fn refresh_pool(&self, name: &str) -> R<()> {
        self.with(|c| {
            Self::pool(c, name)?.refresh(0)?;
            Ok(())
        })
    }

    fn pool_info(&self, name: &str) -> R<PoolInfo> {
        self.with(|c| {
            let i = Self::pool(c, name)?.get_info()?;
            Ok(PoolInfo {
                active: i.state == virt::sys::VIR_STORAGE_POOL_RUNNING,
                capacity: i.capacity,
                allocation: i.allocation,
                available: i.available,
            })
        })
    }

    fn destroy_pool(&self, name: &str) -> R<()> {
        self.with(|c| {
            let p = Self::pool(c, name)?;
            if p.is_active()? {
                p.destroy()?;
            }
            Ok(())
        })
    }

    fn undefine_pool(&self, name: &str) -> R<()> {
        self.with(|c| {
            Self::pool(c, name)?.undefine()?;
            Ok(())
        })
    }

    fn volume_names(&self, pool: &str) -> R<Vec<String>> {
        self.with(|c| Ok(Self::pool(c, pool)?.list_volumes()?))
    }

    fn create_volume(&self, pool: &str, x: &xml::Volume) -> R<VolumeInfo> {
        let text = xml::to_xml("volume", x)?;
        self.with(|c| {
            let p = Self::pool(c, pool)?;
            if virt::storage_vol::StorageVol::lookup_by_name(&p, &x.name).is_ok() {
                return Err(LibvirtError::VolumeExists { pool: pool.into(), name: x.name.clone() });
            }
            // A sparse file or an overlay needs little now, but the pool must hold it grown.
            Self::check_room(&p, pool, if x.backing_store.is_some() { 0 } else { x.capacity.value })?;
            let v = virt::storage_vol::StorageVol::create_xml(&p, &text, 0)?;
            Self::vol_info(&v)
        })
    }

    fn clone_volume(&self, pool: &str, x: &xml::Volume, from_pool: &str, from: &str) -> R<VolumeInfo> {
        let text = xml::to_xml("volume", x)?;
        self.with(|c| {
            let p = Self::pool(c, pool)?;
            if virt::storage_vol::StorageVol::lookup_by_name(&p, &x.name).is_ok() {
                return Err(LibvirtError::VolumeExists { pool: pool.into(), name: x.name.clone() });
            }
            let (_, src) = Self::vol(c, from_pool, from)?;
            Self::check_room(&p, pool, x.capacity.value)?;
            let v = virt::storage_vol::StorageVol::create_xml_from(&p, &text, &src, 0)?;
            Self::vol_info(&v)
        })
    }

    fn volume_info(&self, pool: &str, name: &str) -> R<VolumeInfo> {
        self.with(|c| Self::vol_info(&Self::vol(c, pool, name)?.1))
    }

    fn resize_volume(&self, pool: &str, name: &str, bytes: u64) -> R<()> {
        self.with(|c| {
            let (p, v) = Self::vol(c, pool, name)?;
            let grow = bytes.saturating_sub(v.get_info()?.capacity);
            Self::check_room(&p, pool, grow)?;
            v.resize(bytes, 0)?;
            Ok(())
        })
    }

    fn delete_volume(&self, pool: &str, name: &str) -> R<()> {
        self.with(|c| {
            Self::vol(c, pool, name)?.1.delete(0)?;
            Ok(())
        })
    }

    fn upload(&self, pool: &str, name: &str, data: &mut dyn Read, len: u64) -> R<()> {
        self.with(|c| {
            let (_, v) = Self::vol(c, pool, name)?;
            let stream = virt::stream::Stream::new(c, 0)?;
            v.upload(&stream, 0, len, 0)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let mut off = 0;
                while off < n {
                    off += stream.send(&buf[off..n])?;
                }
            }
            stream.finish()?;
            Ok(())
        })
    }

    fn define_secret(&self, x: &xml::Secret, value: &[u8]) -> R<()> {
        let text = xml::to_xml("secret", x)?;
        self.with(|c| {
            let s = virt::secret::Secret::define_xml(c, &text, 0)?;
            s.set_value(value, 0)?;
            Ok(())
        })
    }

    fn define_domain(&self, x: &xml::Domain) -> R<()> {
        let text = xml::to_xml("domain", x)?;
        self.with(|c| {
            virt::domain::Domain::define_xml(c, &text)?;
            Ok(())
        })
    }

    fn start_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            let d = virt::domain::Domain::lookup_by_name(c, name)?;
            if !d.is_active()? {
                d.create()?;
            }
            Ok(())
        })
    }

    fn domain_state(&self, name: &str) -> R<Option<DomainState>> {
        self.with(|c| {
            let Ok(d) = virt::domain::Domain::lookup_by_name(c, name) else { return Ok(None) };
            Ok(Some(state_of(d.get_state()?.0)))
        })
    }

    fn destroy_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            let Ok(d) = virt::domain::Domain::lookup_by_name(c, name) else { return Ok(()) };
            if d.is_active()? {
                d.destroy()?;
            }
            Ok(())
        })
    }

    fn undefine_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            let Ok(d) = virt::domain::Domain::lookup_by_name(c, name) else { return Ok(()) };
            d.undefine_flags(virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)?;
            Ok(())
        })
    }

    fn pause_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            virt::domain::Domain::lookup_by_name(c, name)?.suspend()?;
            Ok(())
        })
    }

    fn resume_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            virt::domain::Domain::lookup_by_name(c, name)?.resume()?;
            Ok(())
        })
    }

    fn save_domain(&self, name: &str) -> R<()> {
        self.with(|c| {
            virt::domain::Domain::lookup_by_name(c, name)?.managed_save(0)?;
            Ok(())
        })
    }

    fn inject_nmi(&self, name: &str) -> R<()> {
        self.with(|c| {
            let d = virt::domain::Domain::lookup_by_name(c, name)?;
            // SAFETY: `d` holds a live domain reference for the call; the binding the `virt`
            // crate does not wrap takes it and flags (none are defined) and keeps nothing.
            if unsafe { virt::sys::virDomainInjectNMI(d.as_ptr(), 0) } < 0 {
                return Err(virt::error::Error::last_error().into());
            }
            Ok(())
        })
    }

    fn attach_disk(&self, name: &str, disk: &xml::Disk) -> R<()> {
        let text = xml::to_xml("disk", disk)?;
        self.with(|c| {
            let d = virt::domain::Domain::lookup_by_name(c, name)?;
            d.attach_device_flags(&text, affect(&d)?)?;
            Ok(())
        })
    }

    fn detach_disk(&self, name: &str, disk: &xml::Disk, wait: std::time::Duration) -> R<()> {
        let text = xml::to_xml("disk", disk)?;
        let dev = &disk.target.dev;
        // Detached from where it still is: a retry after the guest was slow to let go finds the
        // disk gone from the definition already (and maybe from the guest), which is success.
        let live = self.with(|c| {
            let d = virt::domain::Domain::lookup_by_name(c, name)?;
            let in_live = d.is_active()? && disk_targets(&d.get_xml_desc(0)?)?.contains(dev);
            let in_config = disk_targets(&d.get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?)?.contains(dev);
            let flags = (if in_live { virt::sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 })
                | (if in_config { virt::sys::VIR_DOMAIN_AFFECT_CONFIG } else { 0 });
            if flags != 0 {
                d.detach_device_flags(&text, flags)?;
            }
            Ok(in_live)
        })?;
        // The guest is asked; it lets go when its kernel has released the device. A guest
        // still booting misses the request (its hotplug driver is not up yet), so the request
        // is sent again every few seconds, as Nova does.
        let start = std::time::Instant::now();
        let mut asked = start;
        while live && self.domain_disks(name)?.contains(&disk.target.dev) {
            if start.elapsed() > wait {
                return Err(LibvirtError::Virt(format!(
                    "the guest did not release disk {} within {} s",
                    disk.target.dev,
                    wait.as_secs()
                )));
            }
            if asked.elapsed() >= DETACH_RESEND {
                asked = std::time::Instant::now();
                let again = self.with(|c| {
                    let d = virt::domain::Domain::lookup_by_name(c, name)?;
                    d.detach_device_flags(&text, virt::sys::VIR_DOMAIN_AFFECT_LIVE)?;
                    Ok(())
                });
                if let Err(e) = again {
                    log::debug!("detach of {dev} from {name} sent again: {e}");
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok(())
    }

    fn domain_disks(&self, name: &str) -> R<Vec<String>> {
        self.with(|c| disk_targets(&virt::domain::Domain::lookup_by_name(c, name)?.get_xml_desc(0)?))
    }

    fn domain_stats(&self, name: &str) -> R<Option<DomainStats>> {
        self.with(|c| {
            let Ok(d) = virt::domain::Domain::lookup_by_name(c, name) else { return Ok(None) };
            let info = d.get_info()?;
            let live: xml::DomainLive = xml::from_xml(&d.get_xml_desc(0)?)?;
            let mut stats = DomainStats {
                kind: live.kind,
                state: state_of(info.state),
                max_memory_kib: info.max_mem,
                used_memory_kib: None,
                vcpus: info.nr_virt_cpu,
                vcpu_time_ns: Vec::new(),
                disks: Vec::new(),
                nics: Vec::new(),
            };
            if !d.is_active()? {
                return Ok(Some(stats));
            }
            stats.used_memory_kib =
                d.memory_stats(0)?.iter().find(|m| m.tag == virt::sys::VIR_DOMAIN_MEMORY_STAT_RSS).map(|m| m.val);
            for disk in live.devices.disk {
                let b = d.get_block_stats(&disk.target.dev)?;
                stats.disks.push(DiskCounters {
                    dev: disk.target.dev,
                    read_bytes: b.rd_bytes,
                    read_requests: b.rd_req,
                    write_bytes: b.wr_bytes,
                    write_requests: b.wr_req,
                    errors: b.errs,
                });
            }
            for nic in live.devices.interface {
                let Some(tap) = nic.target else { continue };
                let n = d.interface_stats(&tap.dev)?;
                stats.nics.push(NicCounters {
                    mac: nic.mac.address,
                    rx_bytes: n.rx_bytes,
                    rx_packets: n.rx_packets,
                    rx_errors: n.rx_errs,
                    rx_drop: n.rx_drop,
                    tx_bytes: n.tx_bytes,
                    tx_packets: n.tx_packets,
                    tx_errors: n.tx_errs,
                    tx_drop: n.tx_drop,
                });
            }
            stats.vcpu_time_ns = vcpu_times(name);
            Ok(Some(stats))
        })
    }
}

// ---- the fake

/// In-memory pools and volumes with libvirt's rules the callers rely on: names unique per pool,
/// no volume bigger than the free space, an inactive pool refuses work.
#[derive(Clone, Default)]
pub struct FakeLibvirt {
    inner: Arc<Mutex<BTreeMap<String, FakePool>>>,
    /// Secret UUID → value.
    secrets: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    /// Domain name → its XML and state.
    domains: Arc<Mutex<BTreeMap<String, (xml::Domain, DomainState)>>>,
}

#[derive(Clone, Debug)]
struct FakePool {
    xml: xml::Pool,
    active: bool,
    autostart: bool,
    capacity: u64,
    volumes: BTreeMap<String, FakeVolume>,
}

#[derive(Clone, Debug)]
struct FakeVolume {
    info: VolumeInfo,
    data: Vec<u8>,
    xml: xml::Volume,
}

impl FakeLibvirt {
    /// A fake whose pools each offer `capacity` bytes.
    pub fn with_capacity(capacity: u64) -> Self {
        let f = Self::default();
        f.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
            "\0capacity".into(),
            FakePool { xml: xml::Pool::default(), active: false, autostart: false, capacity, volumes: BTreeMap::new() },
        );
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FakePool>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pool<T>(&self, name: &str, f: impl FnOnce(&mut FakePool) -> R<T>) -> R<T> {
        let mut pools = self.lock();
        let p = pools.get_mut(name).ok_or_else(|| LibvirtError::NoPool(name.into()))?;
        f(p)
    }

    fn active_pool<T>(&self, name: &str, f: impl FnOnce(&mut FakePool) -> R<T>) -> R<T> {
        self.pool(name, |p| if p.active { f(p) } else { Err(LibvirtError::Inactive(name.into())) })
    }

    /// The bytes of a volume (uploads land here).
    pub fn data(&self, pool: &str, name: &str) -> Option<Vec<u8>> {
        self.lock().get(pool)?.volumes.get(name).map(|v| v.data.clone())
    }

    /// The XML a volume was created from.
    pub fn volume_xml(&self, pool: &str, name: &str) -> Option<xml::Volume> {
        self.lock().get(pool)?.volumes.get(name).map(|v| v.xml.clone())
    }

    fn doms(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (xml::Domain, DomainState)>> {
        self.domains.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_domain(&self, name: &str, to: DomainState) -> R<()> {
        match self.doms().get_mut(name) {
            Some(d) => {
                d.1 = to;
                Ok(())
            }
            None => Err(LibvirtError::Virt(format!("no domain with matching name '{name}'"))),
        }
    }

    /// A domain's XML as defined.
    pub fn domain(&self, name: &str) -> Option<xml::Domain> {
        self.doms().get(name).map(|(x, _)| x.clone())
    }

    /// A secret's value.
    pub fn secret(&self, uuid: &str) -> Option<Vec<u8>> {
        self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uuid).cloned()
    }

    pub fn autostart(&self, pool: &str) -> Option<bool> {
        self.lock().get(pool).map(|p| p.autostart)
    }
}

impl FakePool {
    fn used(&self) -> u64 {
        self.volumes.values().map(|v| v.info.capacity).sum()
    }
    fn room(&self, pool: &str, wanted: u64) -> R<()> {
        let available = self.capacity.saturating_sub(self.used());
        if wanted > available {
            return Err(LibvirtError::Full { pool: pool.into(), available, wanted });
        }
        Ok(())
    }
    fn add(&mut self, pool: &str, x: &xml::Volume) -> R<VolumeInfo> {
        if self.volumes.contains_key(&x.name) {
            return Err(LibvirtError::VolumeExists { pool: pool.into(), name: x.name.clone() });
        }
        self.room(pool, x.capacity.value)?;
        let path = match &self.xml.target {
            Some(t) => format!("{}/{}", t.path, x.name),
            None => format!("{pool}/{}", x.name),
        };
        let info = VolumeInfo { path, capacity: x.capacity.value, allocation: 0 };
        self.volumes.insert(x.name.clone(), FakeVolume { info: info.clone(), data: Vec::new(), xml: x.clone() });
        Ok(info)
    }
}

impl Libvirt for FakeLibvirt {
    fn pool_names(&self) -> R<Vec<String>> {
        Ok(self.lock().keys().filter(|k| !k.starts_with('\0')).cloned().collect())
    }

    fn define_pool(&self, x: &xml::Pool) -> R<()> {
        let mut pools = self.lock();
        let capacity = pools.get("\0capacity").map(|p| p.capacity).unwrap_or(u64::MAX / 2);
        let entry = pools.entry(x.name.clone()).or_insert_with(|| FakePool {
            xml: x.clone(),
            active: false,
            autostart: false,
            capacity,
            volumes: BTreeMap::new(),
        });
        entry.xml = x.clone();
        Ok(())
    }

    fn pool_definition(&self, name: &str) -> R<xml::Pool> {
        self.pool(name, |p| Ok(p.xml.clone()))
    }

    fn build_pool(&self, name: &str) -> R<()> {
        self.pool(name, |_| Ok(()))
    }

    fn start_pool(&self, name: &str) -> R<()> {
        self.pool(name, |p| {
            p.active = true;
            Ok(())
        })
    }

    fn set_autostart(&self, name: &str, on: bool) -> R<()> {
        self.pool(name, |p| {
            p.autostart = on;
            Ok(())
        })
    }

    fn refresh_pool(&self, name: &str) -> R<()> {
        self.active_pool(name, |_| Ok(()))
    }

    fn pool_info(&self, name: &str) -> R<PoolInfo> {
        self.pool(name, |p| {
            let used = p.used();
            Ok(PoolInfo { active: p.active, capacity: p.capacity, allocation: used, available: p.capacity - used })
        })
    }

    fn destroy_pool(&self, name: &str) -> R<()> {
        self.pool(name, |p| {
            p.active = false;
            Ok(())
        })
    }

    fn undefine_pool(&self, name: &str) -> R<()> {
        self.lock().remove(name).map(|_| ()).ok_or_else(|| LibvirtError::NoPool(name.into()))
    }

    fn volume_names(&self, pool: &str) -> R<Vec<String>> {
        self.active_pool(pool, |p| Ok(p.volumes.keys().cloned().collect()))
    }

    fn create_volume(&self, pool: &str, x: &xml::Volume) -> R<VolumeInfo> {
        self.active_pool(pool, |p| p.add(pool, x))
    }

    fn clone_volume(&self, pool: &str, x: &xml::Volume, from_pool: &str, from: &str) -> R<VolumeInfo> {
        let data = self
            .data(from_pool, from)
            .ok_or_else(|| LibvirtError::NoVolume { pool: from_pool.into(), name: from.into() })?;
        self.active_pool(pool, |p| {
            let info = p.add(pool, x)?;
            if let Some(v) = p.volumes.get_mut(&x.name) {
                v.data = data;
            }
            Ok(info)
        })
    }

    fn volume_info(&self, pool: &str, name: &str) -> R<VolumeInfo> {
        self.active_pool(pool, |p| {
            p.volumes
                .get(name)
                .map(|v| v.info.clone())
                .ok_or_else(|| LibvirtError::NoVolume { pool: pool.into(), name: name.into() })
        })
    }

    fn resize_volume(&self, pool: &str, name: &str, bytes: u64) -> R<()> {
        self.active_pool(pool, |p| {
            let cur = p
                .volumes
                .get(name)
                .map(|v| v.info.capacity)
                .ok_or_else(|| LibvirtError::NoVolume { pool: pool.into(), name: name.into() })?;
            p.room(pool, bytes.saturating_sub(cur))?;
            if let Some(v) = p.volumes.get_mut(name) {
                v.info.capacity = v.info.capacity.max(bytes);
            }
            Ok(())
        })
    }

    fn delete_volume(&self, pool: &str, name: &str) -> R<()> {
        self.active_pool(pool, |p| {
            p.volumes
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| LibvirtError::NoVolume { pool: pool.into(), name: name.into() })
        })
    }

    fn upload(&self, pool: &str, name: &str, data: &mut dyn Read, len: u64) -> R<()> {
        let mut buf = Vec::new();
        data.take(len).read_to_end(&mut buf)?;
        self.active_pool(pool, |p| match p.volumes.get_mut(name) {
            Some(v) => {
                v.data = buf;
                Ok(())
            }
            None => Err(LibvirtError::NoVolume { pool: pool.into(), name: name.into() }),
        })
    }

    fn define_secret(&self, x: &xml::Secret, value: &[u8]) -> R<()> {
        self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(x.uuid.clone(), value.to_vec());
        Ok(())
    }

    fn define_domain(&self, x: &xml::Domain) -> R<()> {
        let mut d = self.doms();
        let state = d.get(&x.name).map_or(DomainState::Shutoff, |(_, s)| *s);
        d.insert(x.name.clone(), (x.clone(), state));
        Ok(())
    }

    fn start_domain(&self, name: &str) -> R<()> {
        self.set_domain(name, DomainState::Running)
    }

    fn domain_state(&self, name: &str) -> R<Option<DomainState>> {
        Ok(self.doms().get(name).map(|(_, s)| *s))
    }

    fn destroy_domain(&self, name: &str) -> R<()> {
        match self.set_domain(name, DomainState::Shutoff) {
            Err(LibvirtError::Virt(_)) => Ok(()),
            r => r,
        }
    }

    fn undefine_domain(&self, name: &str) -> R<()> {
        self.doms().remove(name);
        Ok(())
    }

    fn pause_domain(&self, name: &str) -> R<()> {
        self.set_domain(name, DomainState::Paused)
    }

    fn resume_domain(&self, name: &str) -> R<()> {
        self.set_domain(name, DomainState::Running)
    }

    fn inject_nmi(&self, name: &str) -> R<()> {
        match self.doms().get(name) {
            Some((_, DomainState::Running)) => Ok(()),
            Some(_) => Err(LibvirtError::Virt(format!("domain '{name}' is not running"))),
            None => Err(LibvirtError::Virt(format!("no domain with matching name '{name}'"))),
        }
    }

    fn save_domain(&self, name: &str) -> R<()> {
        self.set_domain(name, DomainState::Shutoff)
    }

    fn attach_disk(&self, name: &str, disk: &xml::Disk) -> R<()> {
        match self.doms().get_mut(name) {
            Some((d, _)) if d.devices.disk.iter().any(|x| x.target.dev == disk.target.dev) => {
                Err(LibvirtError::Virt(format!("target {} already exists", disk.target.dev)))
            }
            Some((d, _)) => {
                d.devices.disk.push(disk.clone());
                Ok(())
            }
            None => Err(LibvirtError::Virt(format!("no domain with matching name '{name}'"))),
        }
    }

    fn detach_disk(&self, name: &str, disk: &xml::Disk, _wait: std::time::Duration) -> R<()> {
        match self.doms().get_mut(name) {
            Some((d, _)) => {
                d.devices.disk.retain(|x| x.target.dev != disk.target.dev);
                Ok(())
            }
            None => Err(LibvirtError::Virt(format!("no domain with matching name '{name}'"))),
        }
    }

    fn domain_disks(&self, name: &str) -> R<Vec<String>> {
        let d = self.doms();
        let (x, _) = d.get(name).ok_or_else(|| LibvirtError::Virt(format!("no domain with matching name '{name}'")))?;
        Ok(x.devices.disk.iter().map(|d| d.target.dev.clone()).collect())
    }

    /// The definition's shape (its memory in MiB, as the driver writes it), every counter
    /// at zero; counters only while it runs, as libvirt.
    fn domain_stats(&self, name: &str) -> R<Option<DomainStats>> {
        let d = self.doms();
        let Some((x, state)) = d.get(name) else { return Ok(None) };
        let running = *state == DomainState::Running;
        let max_memory_kib = x.memory.value * 1024;
        let mut stats = DomainStats {
            kind: x.kind.clone(),
            state: *state,
            max_memory_kib,
            used_memory_kib: None,
            vcpus: x.vcpu,
            vcpu_time_ns: Vec::new(),
            disks: Vec::new(),
            nics: Vec::new(),
        };
        if running {
            stats.used_memory_kib = Some(max_memory_kib);
            stats.vcpu_time_ns = vec![0; x.vcpu as usize];
            let disk = |d: &xml::Disk| DiskCounters { dev: d.target.dev.clone(), ..Default::default() };
            stats.disks = x.devices.disk.iter().map(disk).collect();
            let nic = |n: &xml::Interface| NicCounters { mac: n.mac.address.clone(), ..Default::default() };
            stats.nics = x.devices.interface.iter().map(nic).collect();
        }
        Ok(Some(stats))
    }
}

/// Compares libvirt XML with its golden file in `agent/tests/data/libvirt/`;
/// `CAIRN_UPDATE_GOLDEN=1` rewrites it.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) fn golden(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/libvirt").join(name);
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
    assert_eq!(text, want, "{name} differs from its golden file");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_volume_and_secret_xml_match_golden_files() {
        let specs = [
            ("pool-dir.xml", "default", PoolSpec::Dir { path: "/var/lib/cairn/volumes".into(), format: None }),
            (
                "pool-logical.xml",
                "lvm",
                PoolSpec::Logical { vg: "cairn".into(), devices: vec!["/dev/loop7".into()], format: None },
            ),
            (
                "pool-iscsi.xml",
                "san",
                PoolSpec::Iscsi { host: "192.0.2.10".into(), port: Some(3260), iqn: "iqn.2026-11.org.cairn:t1".into() },
            ),
            (
                "pool-rbd.xml",
                "ceph",
                PoolSpec::Rbd {
                    monitors: vec!["192.0.2.21:6789".into(), "192.0.2.22".into()],
                    pool: "volumes".into(),
                    user: "cinder".into(),
                    secret_uuid: "6f1b6e2e-3a52-4b7c-9d0e-2a4c1b1f0a11".into(),
                    key_file: Some("/etc/cairn/ceph.key".into()),
                    format: None,
                },
            ),
        ];
        for (file, name, spec) in &specs {
            let x = pool_xml(name, spec);
            let text = xml::to_xml("pool", &x).unwrap();
            golden(file, &text);
            assert_eq!(xml::from_xml::<xml::Pool>(&text).unwrap(), x, "{file} reads back");
        }
        let vol =
            volume_xml("vol-1", 2 << 30, VolumeFormat::Qcow2, Some(("/var/lib/cairn/images/img", VolumeFormat::Qcow2)));
        golden("volume-overlay.xml", &xml::to_xml("volume", &vol).unwrap());
        golden(
            "volume-raw.xml",
            &xml::to_xml("volume", &volume_xml("vol-2", 1 << 30, VolumeFormat::Raw, None)).unwrap(),
        );
        let secret = ceph_secret_xml("6f1b6e2e-3a52-4b7c-9d0e-2a4c1b1f0a11", "cinder");
        let text = xml::to_xml("secret", &secret).unwrap();
        golden("secret-ceph.xml", &text);
        assert!(!text.contains("key"), "the key itself never goes into XML");
        // Names with XML metacharacters are escaped, not spliced.
        let odd = xml::to_xml("volume", &volume_xml("a<b>&'\"", 1, VolumeFormat::Raw, None)).unwrap();
        assert!(odd.contains("a&lt;b&gt;&amp;"), "{odd}");
        assert_eq!(xml::from_xml::<xml::Volume>(&odd).unwrap().name, "a<b>&'\"");
    }

    #[test]
    fn fake_enforces_room_names_and_activity() {
        let lv = FakeLibvirt::with_capacity(10 << 20);
        lv.define_pool(&pool_xml("p", &PoolSpec::Dir { path: "/x".into(), format: None })).unwrap();
        let v = volume_xml("a", 4 << 20, VolumeFormat::Raw, None);
        assert!(matches!(lv.create_volume("p", &v), Err(LibvirtError::Inactive(_))));
        lv.start_pool("p").unwrap();
        assert_eq!(lv.create_volume("p", &v).unwrap().path, "/x/a");
        assert!(matches!(lv.create_volume("p", &v), Err(LibvirtError::VolumeExists { .. })));
        let big = volume_xml("b", 8 << 20, VolumeFormat::Raw, None);
        assert!(matches!(lv.create_volume("p", &big), Err(LibvirtError::Full { .. })));
        assert!(matches!(lv.resize_volume("p", "a", 12 << 20), Err(LibvirtError::Full { .. })));
        lv.resize_volume("p", "a", 6 << 20).unwrap();
        assert_eq!(lv.pool_info("p").unwrap().available, 4 << 20);
        lv.upload("p", "a", &mut &b"hello"[..], 5).unwrap();
        lv.clone_volume("p", &volume_xml("c", 1 << 20, VolumeFormat::Raw, None), "p", "a").unwrap();
        assert_eq!(lv.data("p", "c").unwrap(), b"hello");
        lv.delete_volume("p", "a").unwrap();
        assert_eq!(lv.volume_names("p").unwrap(), ["c"]);
    }

    #[test]
    fn thread_times_are_read_past_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "4242 (CPU 0/TCG) S 1 4240 4240 0 -1 4194368 900 0 0 0 1500 250 0 0 20 0 5 0";
        assert_eq!(thread_ticks(stat), Some(1750));
        let odd = "77 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14";
        assert_eq!(thread_ticks(odd), Some(11 + 12));
        assert_eq!(thread_ticks("no parenthesis"), None);
        assert_eq!(thread_ticks("1 (x) S 1 2"), None);
    }
}
