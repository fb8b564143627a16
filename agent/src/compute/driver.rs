//! The hypervisor side of a server on this node (blocking; callers run it off the async
//! threads): its instance directory (`<data_dir>/instances/<id>`: the root disk, a qcow2
//! overlay of the cached image; the config drive, ISO 9660 labelled `config-2`; the console
//! log), and its libvirt domain built from typed structs (`kvm` when this node's guests run
//! under KVM, else `qemu`), started, stopped, and removed with everything it had.

use crate::model::compute::{page_size_kib, CpuDetails, Diagnostics, DiskDetails, MemoryDetails, NicDetails, Server};
use crate::model::image::DiskFormat;
use crate::model::storage::VolumeFormat;
use crate::sys::libvirt::{xml, DomainState, Libvirt, LibvirtError};
use crate::sys::tool;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GIB: u64 = 1 << 30;

/// A NIC of a server: a tap on a network's bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub mac: String,
    pub bridge: String,
    pub tap: String,
    /// The device tag the create gave it, for the config drive's devices.
    pub tag: Option<String>,
}

/// A server's root disk: an overlay on an image, or a volume.
#[derive(Clone, Debug)]
pub enum Root {
    /// The image file in the image store and its format.
    Image { path: PathBuf, format: DiskFormat },
    /// A volume in one of this node's pools.
    Volume(VolumeRef),
}

/// A volume in a pool of this node, and the format of its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRef {
    pub pool: String,
    pub name: String,
    pub format: VolumeFormat,
}

/// What a new server boots from and is told.
#[derive(Clone, Debug)]
pub struct Boot {
    pub root: Root,
    /// Root disk size (0: the image's own).
    pub disk_bytes: u64,
    /// `(name, public key)` of the keypair, for the config drive.
    pub key: Option<(String, String)>,
    pub user_data: Option<Vec<u8>>,
    /// Written to the config drive's meta_data.json as `admin_pass`, as Nova does.
    pub admin_pass: Option<String>,
    pub nics: Vec<Nic>,
}

/// The libvirt domain of a server.
pub fn domain_name(id: &str) -> String {
    format!("cairn-{id}")
}

/// A virtio disk of a file or, for a path under `/dev`, a block device.
pub fn disk(path: &Path, format: &str, dev: &str, readonly: bool) -> xml::Disk {
    let p = Some(path.to_string_lossy().into_owned());
    let block = path.starts_with("/dev");
    xml::Disk {
        kind: if block { "block" } else { "file" }.into(),
        device: "disk".into(),
        driver: xml::DiskDriver { name: "qemu".into(), kind: format.into() },
        source: if block { xml::DiskSource { file: None, dev: p } } else { xml::DiskSource { file: p, dev: None } },
        target: xml::DiskTarget { dev: dev.trim_start_matches("/dev/").into(), bus: "virtio".into() },
        readonly: readonly.then(xml::Empty::default),
    }
}

/// The domain XML: the root disk (`root`, else the overlay in `dir`) and config drive on
/// virtio, the NICs on their bridges, the serial console into a file, huge pages when the
/// flavor asks for them.
pub fn domain_xml(s: &Server, dir: &Path, accel: &str, nics: &[Nic], root: Option<xml::Disk>) -> xml::Domain {
    let memory_backing = match s.flavor.extra_specs.get("hw:mem_page_size").map(String::as_str) {
        Some("large") => Some(xml::MemoryBacking { hugepages: xml::Hugepages { page: None } }),
        Some(v) => page_size_kib(v).filter(|k| *k > 4).map(|k| xml::MemoryBacking {
            hugepages: xml::Hugepages { page: Some(xml::Page { size: k, unit: "KiB".into() }) },
        }),
        None => None,
    };
    xml::Domain {
        kind: accel.into(),
        name: domain_name(&s.id),
        uuid: s.id.clone(),
        memory: xml::Size { unit: "MiB".into(), value: s.flavor.ram_mb },
        vcpu: s.flavor.vcpus,
        memory_backing,
        os: xml::DomainOs {
            kind: xml::OsType { arch: "x86_64".into(), machine: "pc".into(), value: "hvm".into() },
            boot: xml::BootDev { dev: "hd".into() },
        },
        features: xml::Features::default(),
        cpu: (accel == "kvm").then(|| xml::DomainCpu { mode: "host-passthrough".into() }),
        clock: xml::Clock { offset: "utc".into() },
        on_poweroff: "destroy".into(),
        on_reboot: "restart".into(),
        on_crash: "destroy".into(),
        devices: xml::Devices {
            disk: vec![
                root.unwrap_or_else(|| disk(&dir.join("disk"), "qcow2", "vda", false)),
                disk(&dir.join("config.iso"), "raw", "vdb", true),
            ],
            interface: nics
                .iter()
                .map(|n| xml::Interface {
                    kind: "bridge".into(),
                    mac: xml::MacAddress { address: n.mac.clone() },
                    source: xml::BridgeSource { bridge: n.bridge.clone() },
                    target: xml::TapTarget { dev: n.tap.clone() },
                    model: xml::Model { kind: "virtio".into() },
                })
                .collect(),
            serial: vec![xml::Serial {
                kind: "file".into(),
                source: xml::SerialSource { path: dir.join("console.log").to_string_lossy().into() },
                target: xml::SerialTarget { port: 0 },
            }],
        },
    }
}

/// The config drive's `openstack/latest/meta_data.json`, as Nova writes it: with `devices`
/// for the NICs and volumes given a tag (2.32, 2.42; without PCI addresses, which this cloud
/// does not pin).
pub fn meta_data(s: &Server, boot: &Boot) -> serde_json::Value {
    use serde_json::json;
    let key = boot.key.as_ref();
    let keys: serde_json::Map<String, serde_json::Value> =
        key.iter().map(|(n, k)| (n.clone(), serde_json::Value::String(k.clone()))).collect();
    let hostname = if s.hostname.is_empty() { crate::model::compute::hostname(&s.name) } else { s.hostname.clone() };
    let nics = boot
        .nics
        .iter()
        .filter_map(|n| n.tag.as_ref().map(|t| json!({"type": "nic", "bus": "pci", "mac": n.mac, "tags": [t]})));
    let disks = s.volumes.iter().filter_map(|v| {
        v.tag
            .as_ref()
            .map(|t| json!({"type": "disk", "bus": "virtio", "serial": v.volume_id, "path": v.device, "tags": [t]}))
    });
    let mut meta = json!({
        "uuid": s.id, "name": s.name, "hostname": hostname, "launch_index": s.launch_index,
        "availability_zone": s.availability_zone, "project_id": s.project_id, "meta": s.metadata,
        "public_keys": keys,
        "keys": key.iter().map(|(n, k)| json!({"name": n, "type": "ssh", "data": k})).collect::<Vec<_>>(),
        "devices": nics.chain(disks).collect::<Vec<_>>(),
    });
    if let Some(p) = &boot.admin_pass {
        meta["admin_pass"] = serde_json::Value::String(p.clone());
    }
    meta
}

/// Why the hypervisor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Tool(#[from] tool::ToolError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// What the guest needs is not there (a bridge, a local volume).
    #[error("{0}")]
    Missing(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Io { what, source }
}

/// Makes `disk`, a qcow2 overlay backed by `image`, of `bytes` (0: the image's size). Its cost
/// does not grow with the image.
pub fn overlay(image: &Path, format: DiskFormat, disk: &Path, bytes: u64) -> Result<(), DriverError> {
    let size = bytes.to_string();
    let mut args: Vec<&OsStr> =
        ["create", "-q", "-f", "qcow2", "-F", format.qemu_format(), "-b"].map(OsStr::new).to_vec();
    args.extend([image.as_os_str(), disk.as_os_str()]);
    if bytes > 0 {
        args.push(OsStr::new(&size));
    }
    Ok(tool::run("qemu-img", args)?)
}

/// This node's hypervisor.
pub struct Driver {
    lv: Arc<dyn Libvirt>,
    instances: PathBuf,
    accel: String,
}

impl Driver {
    pub fn new(lv: Arc<dyn Libvirt>, instances: PathBuf, accel: &str) -> Self {
        Self { lv, instances, accel: accel.into() }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.instances.join(id)
    }

    /// Builds the disk and config drive, defines and starts the domain. On failure nothing of
    /// it is left.
    pub fn spawn(&self, s: &Server, boot: &Boot) -> Result<(), DriverError> {
        let r = self.try_spawn(s, boot);
        if r.is_err() {
            let _ = self.destroy(&s.id);
        }
        r
    }

    fn try_spawn(&self, s: &Server, boot: &Boot) -> Result<(), DriverError> {
        let dir = self.dir(&s.id);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        // QEMU runs as libvirt's user: it must reach the disk, the config drive and the log.
        for d in [&self.instances, &dir] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .map_err(io(format!("chmod {}", d.display())))?;
        }
        let root = match &boot.root {
            Root::Image { path, format } => {
                overlay(path, *format, &dir.join("disk"), boot.disk_bytes)?;
                None
            }
            Root::Volume(v) => Some(self.volume_disk(v, "/dev/vda")?),
        };
        // The config drive.
        let cd = dir.join("config-drive");
        let latest = cd.join("openstack/latest");
        std::fs::create_dir_all(&latest).map_err(io(format!("creating {}", latest.display())))?;
        let write = |name: &str, data: &[u8]| {
            std::fs::write(latest.join(name), data).map_err(io(format!("writing the config drive's {name}")))
        };
        write("meta_data.json", meta_data(s, boot).to_string().as_bytes())?;
        write("network_data.json", br#"{"links": [], "networks": [], "services": []}"#)?;
        if let Some(u) = &boot.user_data {
            write("user_data", u)?;
        }
        let iso = dir.join("config.iso");
        tool::run(
            "xorriso",
            ["-as", "mkisofs", "-quiet", "-J", "-r", "-V", "config-2", "-o"]
                .map(OsStr::new)
                .into_iter()
                .chain([iso.as_os_str(), cd.as_os_str()]),
        )?;
        let _ = std::fs::remove_dir_all(&cd);
        // The node's network agent builds the bridges of ports bound here; give it a minute.
        for n in &boot.nics {
            let dev = Path::new("/sys/class/net").join(&n.bridge);
            let mut waited = 0;
            while !dev.exists() {
                if waited >= 600 {
                    return Err(DriverError::Missing(format!("bridge {} did not appear within 60 s", n.bridge)));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                waited += 1;
            }
        }
        self.lv.define_domain(&domain_xml(s, &dir, &self.accel, &boot.nics, root))?;
        Ok(self.lv.start_domain(&domain_name(&s.id))?)
    }

    /// Stops and removes the domain and the instance directory; what is already gone is fine.
    pub fn destroy(&self, id: &str) -> Result<(), DriverError> {
        let name = domain_name(id);
        self.lv.destroy_domain(&name)?;
        self.lv.undefine_domain(&name)?;
        match std::fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing the instance directory")(e)),
            _ => Ok(()),
        }
    }

    pub fn start(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.start_domain(&domain_name(id))?)
    }

    pub fn stop(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.destroy_domain(&domain_name(id))?)
    }

    pub fn pause(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.pause_domain(&domain_name(id))?)
    }

    pub fn unpause(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.resume_domain(&domain_name(id))?)
    }

    /// Sends the running guest a non-maskable interrupt (Nova's trigger_crash_dump).
    pub fn inject_nmi(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.inject_nmi(&domain_name(id))?)
    }

    /// Saves the guest's memory and stops it; [`Driver::start`] restores it.
    pub fn suspend(&self, id: &str) -> Result<(), DriverError> {
        Ok(self.lv.save_domain(&domain_name(id))?)
    }

    /// The disk of a volume of this node's pools as guest device `dev`.
    pub fn volume_disk(&self, v: &VolumeRef, dev: &str) -> Result<xml::Disk, DriverError> {
        let info = self.lv.volume_info(&v.pool, &v.name)?;
        if !info.path.starts_with('/') {
            return Err(DriverError::Missing(format!(
                "volume {} is not a local file or device ({}): not attachable yet",
                v.name, info.path
            )));
        }
        Ok(disk(Path::new(&info.path), v.format.as_str(), dev, false))
    }

    /// Plugs a volume into the server (its definition, and the guest when it runs).
    pub fn attach(&self, id: &str, disk: &xml::Disk) -> Result<(), DriverError> {
        Ok(self.lv.attach_disk(&domain_name(id), disk)?)
    }

    /// Unplugs a volume; a running guest has a minute to let go of it.
    pub fn detach(&self, id: &str, disk: &xml::Disk) -> Result<(), DriverError> {
        let wait = std::time::Duration::from_secs(60);
        Ok(self.lv.detach_disk(&domain_name(id), disk, wait)?)
    }

    pub fn state(&self, id: &str) -> Result<Option<DomainState>, DriverError> {
        Ok(self.lv.domain_state(&domain_name(id))?)
    }

    /// The live figures of a running server (`uptime`: seconds since it was launched); None
    /// when it does not run here.
    pub fn diagnostics(&self, id: &str, uptime: u64) -> Result<Option<Diagnostics>, DriverError> {
        let stats = self.lv.domain_stats(&domain_name(id))?;
        let Some(st) = stats.filter(|s| s.state == DomainState::Running) else { return Ok(None) };
        let cpu = |(id, time): (usize, &u64)| CpuDetails { id: id as u32, time: *time, utilisation: None };
        let disk = |d: &crate::sys::libvirt::DiskCounters| DiskDetails {
            read_bytes: d.read_bytes,
            read_requests: d.read_requests,
            write_bytes: d.write_bytes,
            write_requests: d.write_requests,
            errors_count: d.errors,
        };
        let nic = |n: &crate::sys::libvirt::NicCounters| NicDetails {
            mac_address: n.mac.clone(),
            rx_octets: n.rx_bytes,
            rx_errors: n.rx_errors,
            rx_drop: n.rx_drop,
            rx_packets: n.rx_packets,
            rx_rate: None,
            tx_octets: n.tx_bytes,
            tx_errors: n.tx_errors,
            tx_drop: n.tx_drop,
            tx_packets: n.tx_packets,
            tx_rate: None,
        };
        Ok(Some(Diagnostics {
            state: crate::model::compute::PowerState::Running.as_str().into(),
            driver: "libvirt".into(),
            hypervisor: st.kind,
            hypervisor_os: "linux".into(),
            uptime,
            config_drive: true,
            num_cpus: st.vcpus,
            num_disks: st.disks.len(),
            num_nics: st.nics.len(),
            memory_details: MemoryDetails {
                maximum: st.max_memory_kib / 1024,
                used: st.used_memory_kib.map(|k| k / 1024),
            },
            cpu_details: st.vcpu_time_ns.iter().enumerate().map(cpu).collect(),
            disk_details: st.disks.iter().map(disk).collect(),
            nic_details: st.nics.iter().map(nic).collect(),
        }))
    }

    /// The last `lines` lines of the console log (all when None).
    pub fn console(&self, id: &str, lines: Option<usize>) -> Result<String, DriverError> {
        let path = self.dir(id).join("console.log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        Ok(match lines {
            None => text,
            Some(n) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(n)..].join("\n")
            }
        })
    }

    /// Root disk size for a flavor disk (GiB; 0: the image's size).
    pub fn disk_bytes(flavor_disk_gb: u64) -> u64 {
        flavor_disk_gb * GIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compute::{default_flavors, PowerState, Resources, TaskState, VmState};
    use crate::sys::libvirt::{golden, FakeLibvirt};

    fn server(extra: &[(&str, &str)]) -> Server {
        let mut flavor = default_flavors()[0].clone();
        for (k, v) in extra {
            flavor.extra_specs.insert((*k).into(), (*v).into());
        }
        Server {
            id: "6f2c1d3e-0000-4000-8000-000000000001".into(),
            name: "Web Server 1".into(),
            project_id: "p".into(),
            user_id: "u".into(),
            resources: Resources::of(&flavor),
            flavor,
            image_id: "img".into(),
            ports: vec![],
            volumes: vec![],
            node: "n1".into(),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Spawning),
            power_state: PowerState::NoState,
            fault: None,
            key_name: Some("k1".into()),
            user_data: None,
            admin_pass: None,
            availability_zone: "nova".into(),
            metadata: [("role".to_string(), "web".to_string())].into_iter().collect(),
            access_ipv4: None,
            access_ipv6: None,
            reservation_id: String::new(),
            launch_index: 0,
            hostname: String::new(),
            description: None,
            tags: vec![],
            created_at: 0,
            updated_at: 0,
            launched_at: None,
        }
    }

    #[test]
    fn domain_xml_matches_golden_files() {
        let dir = Path::new("/var/lib/cairn/instances/6f2c1d3e-0000-4000-8000-000000000001");
        let nic = Nic {
            mac: "fa:16:3e:00:00:01".into(),
            bridge: "brq-0a1b2c3d-4e".into(),
            tap: "tap0a1b2c3d-4e".into(),
            tag: Some("uplink".into()),
        };
        let nics = std::slice::from_ref(&nic);
        let plain = xml::to_xml("domain", &domain_xml(&server(&[]), dir, "qemu", nics, None)).unwrap();
        golden("domain-plain.xml", &plain);
        let huge = domain_xml(&server(&[("hw:mem_page_size", "2MB")]), dir, "kvm", &[], None);
        golden("domain-hugepages-kvm.xml", &xml::to_xml("domain", &huge).unwrap());
        assert_eq!(domain_xml(&server(&[("hw:mem_page_size", "small")]), dir, "kvm", &[], None).memory_backing, None);
        // Booted from a logical volume: the root disk is the block device.
        let lv_root = disk(Path::new("/dev/cairn-vg/6f2c1d3e-0000-4000-8000-00000000000a"), "raw", "/dev/vda", false);
        let from_volume = domain_xml(&server(&[]), dir, "qemu", nics, Some(lv_root));
        golden("domain-boot-from-volume.xml", &xml::to_xml("domain", &from_volume).unwrap());
        // A volume of a directory pool, hot-plugged as the third disk.
        let attached =
            disk(Path::new("/var/lib/cairn/volumes/6f2c1d3e-0000-4000-8000-00000000000b"), "qcow2", "/dev/vdc", false);
        golden("disk-attached-volume.xml", &xml::to_xml("disk", &attached).unwrap());
        let mut boot = Boot {
            root: Root::Image { path: dir.join("image"), format: DiskFormat::Qcow2 },
            disk_bytes: 0,
            key: Some(("k1".into(), "ssh-ed25519 AAAA k".into())),
            user_data: None,
            admin_pass: Some("pw".into()),
            nics: vec![nic.clone()],
        };
        let meta = meta_data(&server(&[]), &boot);
        assert_eq!(
            (meta["hostname"].as_str(), meta["public_keys"]["k1"].as_str(), meta["admin_pass"].as_str()),
            (Some("web-server-1"), Some("ssh-ed25519 AAAA k"), Some("pw"))
        );
        assert_eq!(
            meta["devices"],
            serde_json::json!([{"type": "nic", "bus": "pci", "mac": "fa:16:3e:00:00:01", "tags": ["uplink"]}])
        );
        boot.admin_pass = None;
        assert!(meta_data(&server(&[]), &boot).get("admin_pass").is_none());
    }

    #[test]
    fn a_failed_spawn_leaves_nothing() {
        let lv = FakeLibvirt::default();
        let dir = tempfile::tempdir().unwrap();
        let d = Driver::new(Arc::new(lv.clone()), dir.path().join("instances"), "qemu");
        let s = server(&[]);
        let boot = Boot {
            root: Root::Image { path: dir.path().join("no-such-image"), format: DiskFormat::Qcow2 },
            disk_bytes: 1 << 30,
            key: None,
            user_data: None,
            admin_pass: None,
            nics: vec![],
        };
        let e = d.spawn(&s, &boot).unwrap_err();
        assert!(e.to_string().contains("qemu-img create failed"), "{e}");
        assert!(!dir.path().join("instances").join(&s.id).exists(), "the instance directory is removed");
        assert_eq!(lv.domain(&domain_name(&s.id)), None);
    }

    #[test]
    fn volumes_plug_in_and_out() {
        let lv = FakeLibvirt::default();
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::sys::libvirt::pool_xml(
            "vols",
            &crate::model::storage::PoolSpec::Dir { path: dir.path().to_string_lossy().into(), format: None },
        );
        lv.define_pool(&pool).unwrap();
        lv.start_pool("vols").unwrap();
        lv.create_volume("vols", &crate::sys::libvirt::volume_xml("v1", 1 << 20, VolumeFormat::Qcow2, None)).unwrap();
        let d = Driver::new(Arc::new(lv.clone()), dir.path().join("instances"), "qemu");
        let s = server(&[]);
        lv.define_domain(&domain_xml(&s, dir.path(), "qemu", &[], None)).unwrap();
        let v = VolumeRef { pool: "vols".into(), name: "v1".into(), format: VolumeFormat::Qcow2 };
        let disk = d.volume_disk(&v, "/dev/vdc").unwrap();
        assert_eq!((disk.kind.as_str(), disk.target.dev.as_str(), disk.driver.kind.as_str()), ("file", "vdc", "qcow2"));
        d.attach(&s.id, &disk).unwrap();
        assert_eq!(lv.domain_disks(&domain_name(&s.id)).unwrap(), ["vda", "vdb", "vdc"]);
        assert!(d.attach(&s.id, &disk).is_err(), "one disk per target");
        d.detach(&s.id, &disk).unwrap();
        assert_eq!(lv.domain_disks(&domain_name(&s.id)).unwrap(), ["vda", "vdb"]);
        let missing = VolumeRef { name: "nope".into(), ..v };
        assert!(d.volume_disk(&missing, "/dev/vdd").is_err());
    }

    #[test]
    fn diagnostics_follow_the_domain() {
        let lv = FakeLibvirt::default();
        let dir = tempfile::tempdir().unwrap();
        let d = Driver::new(Arc::new(lv.clone()), dir.path().join("instances"), "qemu");
        let s = server(&[]);
        assert_eq!(d.diagnostics(&s.id, 5).unwrap(), None, "no domain");
        let nic = Nic { mac: "fa:16:3e:00:00:01".into(), bridge: "br0".into(), tap: "tap0".into(), tag: None };
        lv.define_domain(&domain_xml(&s, dir.path(), "qemu", &[nic], None)).unwrap();
        assert_eq!(d.diagnostics(&s.id, 5).unwrap(), None, "defined but not running");
        lv.start_domain(&domain_name(&s.id)).unwrap();
        let g = d.diagnostics(&s.id, 5).unwrap().unwrap();
        assert_eq!((g.state.as_str(), g.driver.as_str(), g.hypervisor.as_str()), ("running", "libvirt", "qemu"));
        assert_eq!((g.uptime, g.num_cpus, g.num_disks, g.num_nics), (5, s.flavor.vcpus, 2, 1));
        assert_eq!(g.memory_details.maximum, s.flavor.ram_mb);
        assert_eq!(g.cpu_details.len(), s.flavor.vcpus as usize);
        assert_eq!(g.disk_details.len(), 2);
        assert_eq!(g.nic_details[0].mac_address, "fa:16:3e:00:00:01");
        // Nova's field names, as clients read them.
        let j = serde_json::to_value(&g).unwrap();
        for k in ["config_drive", "cpu_details", "disk_details", "memory_details", "nic_details", "num_cpus", "uptime"]
        {
            assert!(j.get(k).is_some(), "{k} in {j}");
        }
        assert!(j["nic_details"][0].get("rx_octets").is_some() && j["disk_details"][0].get("errors_count").is_some());
    }
}
