//! Libvirt's XML as typed structs, written and read with serde (quick-xml): domains (disks,
//! bridge NICs, a serial console to a file, huge pages), pools
//! (`dir`, `logical`, `iscsi`, `rbd`), volumes (raw, qcow2, vmdk; a qcow2 may have a backing
//! store) and secrets (Ceph keys). Never assembled from strings; golden files in
//! `agent/tests/data/libvirt/` show the output.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("writing libvirt XML")]
    Write(#[from] quick_xml::SeError),
    #[error("reading libvirt XML")]
    Read(#[from] quick_xml::DeError),
}

/// Serialises a root element.
pub fn to_xml<T: Serialize>(root: &str, v: &T) -> Result<String, XmlError> {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::with_root(&mut out, Some(root))?;
    ser.indent(' ', 2);
    v.serialize(ser)?;
    Ok(out)
}

pub fn from_xml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, XmlError> {
    Ok(quick_xml::de::from_str(text)?)
}

/// `<pool type='…'>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    #[serde(rename = "@type")]
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PoolSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PoolTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSource {
    /// iSCSI portals or Ceph monitors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<Host>,
    /// Block devices of an LVM pool; the IQN of an iSCSI target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device: Vec<Device>,
    /// The volume group (logical) or Ceph pool (rbd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(rename = "@path")]
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    #[serde(rename = "@type")]
    pub kind: String,
}

/// Ceph authentication: a user and the libvirt secret holding its key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    #[serde(rename = "@type")]
    pub kind: String,
    #[serde(rename = "@username")]
    pub username: String,
    pub secret: SecretRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    #[serde(rename = "@uuid")]
    pub uuid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTarget {
    pub path: String,
}

/// A size with its unit (libvirt accepts `bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    #[serde(rename = "@unit")]
    pub unit: String,
    #[serde(rename = "$text")]
    pub value: u64,
}

impl Size {
    pub fn bytes(n: u64) -> Self {
        Self { unit: "bytes".into(), value: n }
    }
}

/// `<volume>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub capacity: Size,
    /// Allocate nothing up front (0) for sparse volumes; omitted: the pool's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<VolumeTarget>,
    #[serde(rename = "backingStore", skip_serializing_if = "Option::is_none")]
    pub backing_store: Option<BackingStore>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingStore {
    pub path: String,
    pub format: Format,
}

/// `<secret>` for a Ceph key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(rename = "@ephemeral")]
    pub ephemeral: String,
    #[serde(rename = "@private")]
    pub private: String,
    pub uuid: String,
    pub usage: SecretUsage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUsage {
    #[serde(rename = "@type")]
    pub kind: String,
    pub name: String,
}

/// An empty element (`<acpi/>`, `<readonly/>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `<domain type='kvm|qemu'>`: a server's virtual machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    #[serde(rename = "@type")]
    pub kind: String,
    pub name: String,
    pub uuid: String,
    pub memory: Size,
    pub vcpu: u32,
    #[serde(rename = "memoryBacking", skip_serializing_if = "Option::is_none")]
    pub memory_backing: Option<MemoryBacking>,
    pub os: DomainOs,
    pub features: Features,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<DomainCpu>,
    pub clock: Clock,
    pub on_poweroff: String,
    pub on_reboot: String,
    pub on_crash: String,
    pub devices: Devices,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBacking {
    pub hugepages: Hugepages,
}

/// `<hugepages/>` (the default huge page size) or with one `<page size unit>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hugepages {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    #[serde(rename = "@size")]
    pub size: u64,
    #[serde(rename = "@unit")]
    pub unit: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainOs {
    #[serde(rename = "type")]
    pub kind: OsType,
    pub boot: BootDev,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsType {
    #[serde(rename = "@arch")]
    pub arch: String,
    #[serde(rename = "@machine")]
    pub machine: String,
    #[serde(rename = "$text")]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootDev {
    #[serde(rename = "@dev")]
    pub dev: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub acpi: Empty,
    pub apic: Empty,
}

/// `<cpu mode='host-passthrough'/>` under KVM (the guest sees the host's CPU, nested
/// virtualization included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCpu {
    #[serde(rename = "@mode")]
    pub mode: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    #[serde(rename = "@offset")]
    pub offset: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk: Vec<Disk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interface: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serial: Vec<Serial>,
}

/// A virtio disk: a file (`type="file"`, `source file=`) or a block device (`type="block"`,
/// `source dev=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    #[serde(rename = "@type")]
    pub kind: String,
    #[serde(rename = "@device")]
    pub device: String,
    pub driver: DiskDriver,
    pub source: DiskSource,
    pub target: DiskTarget,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<Empty>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskDriver {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSource {
    #[serde(rename = "@file", default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(rename = "@dev", default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// What is read of a domain's XML as libvirt reports it: its type, its disks' targets and its
/// NICs (the rest is not read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DomainLive {
    #[serde(rename = "@type", default)]
    pub kind: String,
    #[serde(default)]
    pub devices: LiveDevices,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct LiveDevices {
    #[serde(default)]
    pub disk: Vec<DiskTargetOnly>,
    #[serde(default)]
    pub interface: Vec<LiveInterface>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DiskTargetOnly {
    pub target: DiskTarget,
}

/// A NIC of a domain; a running one has a target (its tap device).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct LiveInterface {
    pub mac: MacAddress,
    #[serde(default)]
    pub target: Option<TapTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskTarget {
    #[serde(rename = "@dev")]
    pub dev: String,
    #[serde(rename = "@bus")]
    pub bus: String,
}

/// A NIC on a Linux bridge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(rename = "@type")]
    pub kind: String,
    pub mac: MacAddress,
    pub source: BridgeSource,
    pub target: TapTarget,
    pub model: Model,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacAddress {
    #[serde(rename = "@address")]
    pub address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeSource {
    #[serde(rename = "@bridge")]
    pub bridge: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapTarget {
    #[serde(rename = "@dev")]
    pub dev: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    #[serde(rename = "@type")]
    pub kind: String,
}

/// The serial console, written to a file (`console log show` reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serial {
    #[serde(rename = "@type")]
    pub kind: String,
    pub source: SerialSource,
    pub target: SerialTarget,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSource {
    #[serde(rename = "@path")]
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialTarget {
    #[serde(rename = "@port")]
    pub port: u32,
}
