//! Plain data of Nova: flavors (with extra specs), keypairs, each compute node's inventory as
//! its agent reports it, the resources a server claims on a node, and servers with Nova's three
//! states (vm, task, power) and the status clients see. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComputeModelError {
    #[error("Invalid input for field/attribute {field}. Value: {value}. {why}")]
    Field { field: &'static str, value: String, why: String },
    #[error("Invalid extra spec {key}={value}: {why}")]
    ExtraSpec { key: String, value: String, why: String },
}

fn field(field: &'static str, value: impl ToString, why: &str) -> ComputeModelError {
    ComputeModelError::Field { field, value: value.to_string(), why: why.into() }
}

/// A flavor: the size of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    /// Root disk, GiB (0: the image's size).
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    /// Tenths: 10 is 1.0.
    pub rxtx_factor_tenths: u32,
    pub is_public: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
    /// Projects that may use a private flavor.
    pub projects: Vec<String>,
}

impl Flavor {
    /// A public flavor without extra specs, checked.
    pub fn new(id: &str, name: &str, vcpus: u32, ram_mb: u64, disk_gb: u64) -> Result<Self, ComputeModelError> {
        let f = Flavor {
            id: id.into(),
            name: name.into(),
            vcpus,
            ram_mb,
            disk_gb,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor_tenths: 10,
            is_public: true,
            description: None,
            extra_specs: BTreeMap::new(),
            projects: vec![],
        };
        f.validate()?;
        Ok(f)
    }

    /// Nova's limits on a flavor's fields.
    pub fn validate(&self) -> Result<(), ComputeModelError> {
        let name_ok = |s: &str| !s.trim().is_empty() && s.chars().count() <= 255 && s.trim() == s;
        if !name_ok(&self.name) {
            return Err(field("name", &self.name, "A name of 1 to 255 characters without surrounding spaces."));
        }
        if !name_ok(&self.id) || self.id.chars().any(|c| !(c.is_ascii_alphanumeric() || "-_. ".contains(c))) {
            return Err(field("id", &self.id, "An id of letters, digits, '-', '_', '.' and spaces."));
        }
        if self.vcpus == 0 || self.vcpus > 4096 {
            return Err(field("vcpus", self.vcpus, "Must be 1 to 4096."));
        }
        if self.ram_mb == 0 || self.ram_mb > 16 << 20 {
            return Err(field("ram", self.ram_mb, "Must be 1 to 16777216 MiB."));
        }
        if self.disk_gb > 1 << 20 || self.ephemeral_gb > 1 << 20 || self.swap_mb > 1 << 30 {
            return Err(field("disk", self.disk_gb, "Disk, ephemeral and swap sizes are out of range."));
        }
        for (k, v) in &self.extra_specs {
            check_extra_spec(k, v)?;
        }
        Ok(())
    }

    /// Whether a project may use (see) the flavor.
    pub fn usable_by(&self, project: &str) -> bool {
        self.is_public || self.projects.iter().any(|p| p == project)
    }
}

/// The flavors a new cloud starts with (Nova's classic defaults).
pub fn default_flavors() -> Vec<Flavor> {
    [("1", "m1.tiny", 1, 512, 1), ("2", "m1.small", 1, 2048, 20), ("3", "m1.medium", 2, 4096, 40)]
        .into_iter()
        .chain([("4", "m1.large", 4, 8192, 80), ("5", "m1.xlarge", 8, 16384, 160)])
        .filter_map(|(id, name, vcpus, ram, disk)| Flavor::new(id, name, vcpus, ram, disk).ok())
        .collect()
}

/// Checks the extra specs this cloud acts on; others are kept as given (Nova does the same for
/// namespaces it does not know).
/// The most tags a server has (Nova's limit).
pub const MAX_TAGS: usize = 50;

/// A server or device tag as Nova takes it: 1 to 60 characters, no `/` or `,`.
pub fn check_tag(tag: &str) -> Result<(), ComputeModelError> {
    if tag.is_empty() || tag.chars().count() > 60 || tag.contains(['/', ',']) {
        return Err(field("tag", tag, "A tag is 1 to 60 characters without '/' or ','."));
    }
    Ok(())
}

/// A server name as a host name (Nova's sanitising: lower case, letters, digits and '-', at
/// most 63 characters; `server` when nothing is left).
pub fn hostname(name: &str) -> String {
    let h: String =
        name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let h = h.trim_matches('-').chars().take(63).collect::<String>();
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}

/// A server name as Nova takes it: 1 to 255 characters, not only blanks.
pub fn check_server_name(name: &str) -> Result<(), ComputeModelError> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(field("name", name, "It must be 1 to 255 characters, not only blanks."));
    }
    Ok(())
}

pub fn check_extra_spec(key: &str, value: &str) -> Result<(), ComputeModelError> {
    let bad = |why: &str| ComputeModelError::ExtraSpec { key: key.into(), value: value.into(), why: why.into() };
    if key.is_empty() || key.len() > 255 || value.len() > 255 {
        return Err(bad("keys and values are 1 to 255 characters"));
    }
    match key {
        "hw:mem_page_size" => match value {
            "small" | "large" | "any" => Ok(()),
            v if page_size_kib(v).is_some() => Ok(()),
            _ => Err(bad("one of small, large, any, or a size such as 2MB or 1GB")),
        },
        "hw:cpu_policy" => match value {
            "shared" | "dedicated" | "mixed" => Ok(()),
            _ => Err(bad("one of shared, dedicated, mixed")),
        },
        _ => Ok(()),
    }
}

/// A page size as Nova takes it (`2048` KiB, `2MB`, `1GB`, `4KB`), in KiB.
pub fn page_size_kib(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = v[digits.len()..].to_ascii_uppercase();
    let kib = match unit.as_str() {
        "" | "K" | "KB" | "KIB" => n,
        "M" | "MB" | "MIB" => n.checked_mul(1024)?,
        "G" | "GB" | "GIB" => n.checked_mul(1 << 20)?,
        _ => return None,
    };
    (kib >= 4 && kib.is_power_of_two()).then_some(kib)
}

/// An SSH public key of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keypair {
    pub name: String,
    pub user_id: String,
    pub public_key: String,
    /// `MD5` fingerprint as Nova shows it (`aa:bb:…`).
    pub fingerprint: String,
    pub kind: String,
    pub created_at: u64,
}

/// Allocation ratios in hundredths (400 is 4.0): how far a node's CPUs, RAM and disk may be
/// overcommitted. Integers, so that records compare exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratios {
    pub cpu: u32,
    pub ram: u32,
    pub disk: u32,
}

impl Default for Ratios {
    /// Nova's defaults: cpu 4.0, ram 1.0, disk 1.0.
    fn default() -> Self {
        Ratios { cpu: 400, ram: 100, disk: 100 }
    }
}

/// What a compute node offers, as its agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub node: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub ratios: Ratios,
    pub availability_zone: String,
    /// `x86_64`, …
    pub arch: String,
    /// `kvm` or `qemu` (emulation): what guests run under.
    pub accel: String,
    pub enabled: bool,
    /// Unix seconds of the agent's last report; the node is down when it is old.
    pub heartbeat_at: u64,
    /// The node's management address.
    pub host_ip: String,
    /// Unix seconds when the node's kernel booted (0: not reported), for Nova's uptime.
    #[serde(default)]
    pub booted_at: u64,
}

/// What a server takes of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

impl Resources {
    pub fn of(f: &Flavor) -> Self {
        Resources { vcpus: f.vcpus.into(), memory_mb: f.ram_mb, disk_gb: f.disk_gb + f.ephemeral_gb }
    }

    /// `n` of these.
    pub fn times(self, n: u64) -> Self {
        Resources { vcpus: self.vcpus * n, memory_mb: self.memory_mb * n, disk_gb: self.disk_gb * n }
    }

    pub fn plus(self, o: Resources) -> Self {
        Resources {
            vcpus: self.vcpus + o.vcpus,
            memory_mb: self.memory_mb + o.memory_mb,
            disk_gb: self.disk_gb + o.disk_gb,
        }
    }
}

impl Inventory {
    /// The most that may be allocated on the node, ratios applied.
    pub fn capacity(&self) -> Resources {
        let scale = |n: u64, r: u32| n * u64::from(r) / 100;
        Resources {
            vcpus: scale(self.vcpus.into(), self.ratios.cpu),
            memory_mb: scale(self.memory_mb, self.ratios.ram),
            disk_gb: scale(self.disk_gb, self.ratios.disk),
        }
    }

    /// Why `want` does not fit next to `used`, if it does not.
    pub fn misfit(&self, used: Resources, want: Resources) -> Option<String> {
        let cap = self.capacity();
        let after = used.plus(want);
        let check = |what: &str, after: u64, cap: u64| {
            (after > cap).then(|| format!("{what}: {after} wanted of {cap} (ratio applied) on {}", self.node))
        };
        check("vcpus", after.vcpus, cap.vcpus)
            .or_else(|| check("memory_mb", after.memory_mb, cap.memory_mb))
            .or_else(|| check("disk_gb", after.disk_gb, cap.disk_gb))
    }
}

#[cfg(test)]
impl Inventory {
    /// A node for tests: `vcpus` cores, `memory_mb`, a 100 GiB disk, Nova's ratios, zone nova.
    pub(crate) fn for_test(node: &str, vcpus: u32, memory_mb: u64) -> Self {
        Inventory {
            node: node.into(),
            vcpus,
            memory_mb,
            disk_gb: 100,
            ratios: Ratios::default(),
            availability_zone: "nova".into(),
            arch: "x86_64".into(),
            accel: "qemu".into(),
            enabled: true,
            heartbeat_at: 0,
            host_ip: String::new(),
            booted_at: 0,
        }
    }
}

/// Resources claimed per node by the servers recorded there.
pub fn usage<'a>(servers: impl IntoIterator<Item = &'a Server>) -> BTreeMap<String, Resources> {
    let mut used: BTreeMap<String, Resources> = BTreeMap::new();
    for s in servers.into_iter().filter(|s| !s.node.is_empty()) {
        let u = used.entry(s.node.clone()).or_default();
        *u = u.plus(s.resources);
    }
    used
}

/// Per-project limits on servers (Nova's defaults: 10 instances, 20 cores, 50 GiB of RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeQuota {
    pub instances: u64,
    pub cores: u64,
    pub ram_mb: u64,
}

impl Default for ComputeQuota {
    fn default() -> Self {
        ComputeQuota { instances: 10, cores: 20, ram_mb: 51200 }
    }
}

impl ComputeQuota {
    /// Why one more server of `want` would exceed the quota, given what the project uses.
    pub fn exceeded(&self, used_instances: u64, used: Resources, want: Resources) -> Option<String> {
        let check = |what: &str, asked: u64, used: u64, limit: u64| {
            (used + asked > limit).then(|| {
                format!("Quota exceeded for {what}: Requested {asked}, but already used {used} of {limit} {what}")
            })
        };
        check("instances", 1, used_instances, self.instances)
            .or_else(|| check("cores", want.vcpus, used.vcpus, self.cores))
            .or_else(|| check("ram", want.memory_mb, used.memory_mb, self.ram_mb))
    }
}

/// Nova's `vm_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Building,
    Active,
    Stopped,
    Paused,
    Suspended,
    Error,
}

/// Nova's `task_state`: what is being done to the server right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Spawning,
    PoweringOff,
    PoweringOn,
    Rebooting,
    RebootingHard,
    Pausing,
    Unpausing,
    Suspending,
    Resuming,
    Deleting,
}

/// Nova's `power_state` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Crashed = 6,
    Suspended = 7,
}

impl PowerState {
    /// Nova's name for it (its `power_state.STATE_MAP`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PowerState::NoState => "pending",
            PowerState::Running => "running",
            PowerState::Paused => "paused",
            PowerState::Shutdown => "shutdown",
            PowerState::Crashed => "crashed",
            PowerState::Suspended => "suspended",
        }
    }
}

impl VmState {
    pub fn as_str(&self) -> &'static str {
        match self {
            VmState::Building => "building",
            VmState::Active => "active",
            VmState::Stopped => "stopped",
            VmState::Paused => "paused",
            VmState::Suspended => "suspended",
            VmState::Error => "error",
        }
    }
}

impl TaskState {
    /// The action a task carries out, as notifications name it (`compute.instance.<action>.end`).
    pub fn action(&self) -> &'static str {
        match self {
            TaskState::Spawning => "create",
            TaskState::PoweringOff => "power_off",
            TaskState::PoweringOn => "power_on",
            TaskState::Rebooting | TaskState::RebootingHard => "reboot",
            TaskState::Pausing => "pause",
            TaskState::Unpausing => "unpause",
            TaskState::Suspending => "suspend",
            TaskState::Resuming => "resume",
            TaskState::Deleting => "delete",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Spawning => "spawning",
            TaskState::PoweringOff => "powering-off",
            TaskState::PoweringOn => "powering-on",
            TaskState::Rebooting => "rebooting",
            TaskState::RebootingHard => "rebooting_hard",
            TaskState::Pausing => "pausing",
            TaskState::Unpausing => "unpausing",
            TaskState::Suspending => "suspending",
            TaskState::Resuming => "resuming",
            TaskState::Deleting => "deleting",
        }
    }
}

/// A server's live figures in Nova's standard diagnostics format (that of microversion 2.48;
/// older microversions left the format to the driver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Always `running`: Nova answers only for a running server.
    pub state: String,
    pub driver: String,
    /// `kvm` or `qemu`.
    pub hypervisor: String,
    pub hypervisor_os: String,
    /// Seconds since the server was launched.
    pub uptime: u64,
    pub config_drive: bool,
    pub num_cpus: u32,
    pub num_disks: usize,
    pub num_nics: usize,
    pub memory_details: MemoryDetails,
    pub cpu_details: Vec<CpuDetails>,
    pub disk_details: Vec<DiskDetails>,
    pub nic_details: Vec<NicDetails>,
}

/// MiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryDetails {
    pub maximum: u64,
    pub used: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuDetails {
    pub id: u32,
    /// Nanoseconds.
    pub time: u64,
    pub utilisation: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskDetails {
    pub read_bytes: i64,
    pub read_requests: i64,
    pub write_bytes: i64,
    pub write_requests: i64,
    pub errors_count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicDetails {
    pub mac_address: String,
    pub rx_octets: i64,
    pub rx_errors: i64,
    pub rx_drop: i64,
    pub rx_packets: i64,
    pub rx_rate: Option<u64>,
    pub tx_octets: i64,
    pub tx_errors: i64,
    pub tx_drop: i64,
    pub tx_packets: i64,
    pub tx_rate: Option<u64>,
}

/// A port of a server; `created` when Nova made it for a requested network (and so deletes it
/// with the server), not when the user passed a port of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPort {
    pub id: String,
    pub created: bool,
    /// The device tag the create gave its NIC (2.32, 2.42), for the config drive's devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Why a server is in ERROR, as Nova shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub created: u64,
}

/// A server (instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    /// The flavor as it was at create time.
    pub flavor: Flavor,
    /// Empty for a server booted from a volume.
    pub image_id: String,
    /// Its ports, in NIC order.
    #[serde(default)]
    pub ports: Vec<ServerPort>,
    /// Its volumes: the root disk of a server booted from a volume, and attached ones.
    #[serde(default)]
    pub volumes: Vec<ServerVolume>,
    /// The node it runs on (empty when none could be found).
    pub node: String,
    pub resources: Resources,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub fault: Option<Fault>,
    pub key_name: Option<String>,
    /// As the API received it (base64).
    #[serde(default)]
    pub user_data: Option<String>,
    /// The password the config drive gives the guest (Nova's `adminPass`), kept only until the
    /// server is first active: dropped from the record by the command that makes it so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_pass: Option<String>,
    pub availability_zone: String,
    pub metadata: BTreeMap<String, String>,
    /// Nova's `accessIPv4` and `accessIPv6`: addresses the user records for the server.
    #[serde(default)]
    pub access_ipv4: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub access_ipv6: Option<std::net::Ipv6Addr>,
    /// Shared by the servers of one create request (`r-` and 8 characters).
    #[serde(default)]
    pub reservation_id: String,
    /// Its place among them (0 for the first).
    #[serde(default)]
    pub launch_index: u32,
    /// The guest's host name, set at create from the name (Nova's sanitising).
    #[serde(default)]
    pub hostname: String,
    /// What the user says of it (2.19).
    #[serde(default)]
    pub description: Option<String>,
    /// Its tags (2.26): at most [`MAX_TAGS`], each checked by [`check_tag`].
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub launched_at: Option<u64>,
}

impl Server {
    /// The status clients see, from the three states (Nova's mapping). While it is being deleted
    /// a server keeps its status (clients wait for 404, not for a status).
    pub fn status(&self) -> &'static str {
        match (self.vm_state, self.task_state) {
            (VmState::Building, _) => "BUILD",
            (VmState::Error, _) => "ERROR",
            (VmState::Active, Some(TaskState::Rebooting)) => "REBOOT",
            (VmState::Active, Some(TaskState::RebootingHard)) => "HARD_REBOOT",
            (VmState::Active, _) => "ACTIVE",
            (VmState::Stopped, _) => "SHUTOFF",
            (VmState::Paused, _) => "PAUSED",
            (VmState::Suspended, _) => "SUSPENDED",
        }
    }

    /// The guest device a new attachment gets: the first `/dev/vdX` from `vdc` (`vda` is the
    /// root disk, `vdb` the config drive) that no volume of the server holds.
    pub fn next_device(&self) -> Option<String> {
        ('c'..='z').map(|c| format!("/dev/vd{c}")).find(|d| self.volumes.iter().all(|v| v.device != *d))
    }

    pub fn volume(&self, volume_id: &str) -> Option<&ServerVolume> {
        self.volumes.iter().find(|v| v.volume_id == volume_id)
    }
}

/// Where an attachment of a volume to a server is: reserved (the node is to plug it in),
/// plugged in, or being unplugged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachState {
    Attaching,
    Attached,
    Detaching,
}

/// A volume of a server: its root disk when `boot` (device `/dev/vda`), else attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVolume {
    pub volume_id: String,
    /// The attachment's id as Cinder shows it.
    pub attachment_id: String,
    pub device: String,
    pub state: AttachState,
    pub boot: bool,
    /// Deleted with the server (a boot volume's `delete_on_termination`).
    #[serde(default)]
    pub delete_on_termination: bool,
    /// The device tag given at create or attach (2.32, 2.49).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_and_extra_specs() {
        let d = default_flavors();
        assert_eq!(
            d.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]
        );
        assert!(Flavor::new("x", "", 1, 1, 0).is_err());
        assert!(Flavor::new("x", "n", 0, 1, 0).is_err());
        assert!(Flavor::new("a/b", "n", 1, 1, 0).is_err());
        for ok in ["small", "large", "any", "2MB", "1GB", "2048"] {
            assert_eq!(check_extra_spec("hw:mem_page_size", ok), Ok(()), "{ok}");
        }
        for bad in ["huge", "3MB", "0", "2XB"] {
            assert!(check_extra_spec("hw:mem_page_size", bad).is_err(), "{bad}");
        }
        assert!(check_extra_spec("hw:cpu_policy", "dedicated").is_ok());
        assert!(check_extra_spec("hw:cpu_policy", "exclusive").is_err());
        assert!(check_extra_spec("quota:disk_read_bytes_sec", "10240000").is_ok(), "unknown keys are kept");
        assert_eq!(page_size_kib("1GB"), Some(1 << 20));
    }

    #[test]
    fn overcommit_arithmetic() {
        let node = Inventory::for_test("n1", 2, 4096);
        // cpu 4.0: 2 cores hold 8 vCPUs; ram 1.0: no more than 4096 MiB.
        assert_eq!(node.capacity(), Resources { vcpus: 8, memory_mb: 4096, disk_gb: 100 });
        let tiny = Resources { vcpus: 1, memory_mb: 512, disk_gb: 1 };
        let seven = Resources { vcpus: 7, memory_mb: 3584, disk_gb: 7 };
        assert_eq!(tiny.times(7), seven);
        assert_eq!(node.misfit(seven, tiny), None, "8 vCPUs and 4096 MiB exactly");
        let e = node.misfit(seven.plus(tiny), tiny).unwrap();
        assert!(e.starts_with("vcpus: 9 wanted of 8"), "{e}");
        let ram = Inventory { ratios: Ratios { cpu: 1600, ram: 150, disk: 100 }, ..node };
        assert_eq!(ram.capacity().memory_mb, 6144);
        assert!(ram.misfit(Resources::default(), Resources { vcpus: 1, memory_mb: 6145, disk_gb: 0 }).is_some());
    }
}
