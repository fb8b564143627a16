//! Agent settings: `/etc/cairn/config.toml` (every field has a default; an unknown field is an
//! error naming it), then `cairn.NAME=VALUE` options on the kernel command line (so a PXE node
//! is configured from its boot line), then command-line flags, then `CAIRN_ADMIN_PASSWORD` from
//! the environment.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/cairn/config.toml";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTPS API.
    pub listen: SocketAddr,
    /// Address of the peer port (mutual TLS between nodes: raft, node calls).
    pub peer_listen: SocketAddr,
    /// This node's name (the host name when unset).
    pub node_name: Option<String>,
    /// A join token (`cairn token create` on a node of the cluster): a fresh node joins that
    /// cluster at start. Also `cairn.join=TOKEN` on the kernel command line.
    pub join_token: Option<String>,
    /// Where state, keys and certificates live.
    pub data_dir: PathBuf,
    /// Initial admin password; random (stored in `<data_dir>/admin-password`) when unset.
    pub admin_password: Option<String>,
    /// Token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Enable nested virtualization when loading kvm_intel/kvm_amd.
    pub nested: bool,
    /// Base URL clients reach the API at (for links and the catalog); from the Host header
    /// when unset.
    pub public_url: Option<String>,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: String,
    /// Seconds the KVM run test may take before the device is judged to hang guests.
    pub kvm_test_timeout_secs: u64,
    /// Write the API URL, CA fingerprint and a first-boot admin password to /dev/console (the
    /// appliance sets this; a developer's machine does not want it).
    pub console_banner: bool,
    /// What this node does: `network` (bridges for every network, DHCP servers) and
    /// `compute` (bridges for the networks of its own ports).
    pub roles: Vec<Role>,
    pub network: NetworkConfig,
    pub image: ImageConfig,
    pub storage: StorageConfig,
    pub compute: ComputeConfig,
}

/// `[compute]`: what this node offers guests.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    pub availability_zone: String,
    /// Overcommit: vCPUs per core, RAM and disk (Nova's defaults 4.0, 1.0, 1.0).
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    /// Per-project limits (Nova's defaults: 10 instances, 20 cores, 51200 MiB of RAM).
    pub quota_instances: u64,
    pub quota_cores: u64,
    pub quota_ram_mb: u64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        let q = crate::model::compute::ComputeQuota::default();
        Self {
            availability_zone: "nova".into(),
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            quota_instances: q.instances,
            quota_cores: q.cores,
            quota_ram_mb: q.ram_mb,
        }
    }
}

/// `[storage]`: this node's libvirt pools and the volume quotas.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Volume storage on this node (off on API-only nodes).
    pub enabled: bool,
    /// Pool name → how to reach it (`[storage.pools.fast] type = "logical"`, …). Empty: one
    /// `dir` pool `default` under `<data_dir>/volumes`. Each pool is also a volume type.
    pub pools: BTreeMap<String, crate::model::storage::PoolSpec>,
    /// The volume type (pool) used when a request names none; the first pool when unset.
    pub default_pool: Option<String>,
    /// Per-project limits: number of volumes, of snapshots, and their total GiB.
    pub quota_volumes: u64,
    pub quota_snapshots: u64,
    pub quota_gigabytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pools: BTreeMap::new(),
            default_pool: None,
            quota_volumes: 10,
            quota_snapshots: 10,
            quota_gigabytes: 1000,
        }
    }
}

/// `[image]`: the image store.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Largest image upload accepted, in bytes (413 beyond).
    pub max_upload_bytes: u64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self { max_upload_bytes: 64 << 30 }
    }
}

/// A node role.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Network,
    Compute,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Network => "network",
            Role::Compute => "compute",
        }
    }
}

/// `[network]`: how this node's physical networks map to its NICs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Physical network name → uplink interface (`physnet1 = "eth1"`). Empty: `physnet1` is the
    /// management NIC (the one holding the default route).
    pub physical_networks: BTreeMap<String, String>,
    /// Where networks created without provider attributes go.
    pub default_physical_network: String,
    /// VLAN ids given to networks created without one, inclusive.
    pub tenant_vlan_range: [u16; 2],
    /// Seconds between full re-checks of the host's links (changes in the state apply at once).
    pub resync_secs: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            physical_networks: BTreeMap::new(),
            default_physical_network: "physnet1".into(),
            tenant_vlan_range: [1000, 1999],
            resync_secs: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            peer_listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            node_name: None,
            join_token: None,
            data_dir: "/var/lib/cairn".into(),
            admin_password: None,
            token_ttl_secs: 3600,
            nested: true,
            public_url: None,
            log_level: "info".into(),
            kvm_test_timeout_secs: 5,
            console_banner: false,
            roles: vec![Role::Network, Role::Compute],
            network: NetworkConfig::default(),
            image: ImageConfig::default(),
            storage: StorageConfig::default(),
            compute: ComputeConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_cmdline(text, path, "")
    }

    /// Parses TOML text, then lets `cairn.NAME=VALUE` words of a kernel command line override
    /// its fields (`cairn.join` is `join_token`). Options the agent does not take as settings
    /// (`cairn.ip`) are left to their own handlers; unknown ones are reported by
    /// [`cmdline_unknown`].
    pub fn parse_with_cmdline(text: &str, path: &Path, cmdline: &str) -> Result<Self, ConfigError> {
        Self::layered(text, path, None, cmdline)
    }

    /// The config file's TOML, then `overlay` (TOML text and where it came from) merged over
    /// it table by table, then the kernel command line.
    fn layered(text: &str, path: &Path, overlay: Option<(&str, &Path)>, cmdline: &str) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse { path: path.into(), message };
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e: toml::de::Error| parse_err(e.message().to_owned()))?;
        if let Some((text, from)) = overlay {
            let over: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
                path: from.into(),
                message: e.message().to_owned(),
            })?;
            merge(&mut table, over);
        }
        for (key, value) in cmdline_settings(cmdline) {
            table.insert(key.to_owned(), value);
        }
        let c = Config::deserialize(toml::Value::Table(table)).map_err(|e| parse_err(e.message().to_owned()))?;
        c.validate()?;
        Ok(c)
    }

    /// Loads `path` (a missing file is fine only when it is the default path), merges the
    /// `credential` file over it when that exists, and applies the kernel command line.
    pub fn load(path: Option<&Path>, credential: &Path, cmdline: &str) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let read = |path: &Path, required: bool| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(ConfigError::Read { path: path.into(), source }),
        };
        let text = read(&path, required)?.unwrap_or_default();
        let overlay = read(credential, false)?;
        Self::layered(&text, &path, overlay.as_deref().map(|t| (t, credential)), cmdline)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=7 * 86_400).contains(&self.token_ttl_secs) {
            return Err(ConfigError::Invalid(format!("token_ttl_secs {} is outside 60..=604800", self.token_ttl_secs)));
        }
        if self.log_level.parse::<log::LevelFilter>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "log_level {:?} is not one of error, warn, info, debug, trace",
                self.log_level
            )));
        }
        let [lo, hi] = self.network.tenant_vlan_range;
        if !(1..=4094).contains(&lo) || !(1..=4094).contains(&hi) || lo > hi {
            return Err(ConfigError::Invalid(format!(
                "network.tenant_vlan_range [{lo}, {hi}] must be two VLAN ids in 1..=4094, low first"
            )));
        }
        for (name, nic) in &self.network.physical_networks {
            if name.is_empty() || nic.is_empty() || nic.len() > 15 || nic.contains('/') {
                return Err(ConfigError::Invalid(format!(
                    "network.physical_networks: {name:?} = {nic:?} needs a name and an interface name of at most 15 characters"
                )));
            }
        }
        let c = &self.compute;
        for (what, r) in
            [("cpu", c.cpu_allocation_ratio), ("ram", c.ram_allocation_ratio), ("disk", c.disk_allocation_ratio)]
        {
            if !(0.1..=64.0).contains(&r) {
                return Err(ConfigError::Invalid(format!("compute.{what}_allocation_ratio {r} is outside 0.1..=64")));
            }
        }
        if c.availability_zone.trim().is_empty() || c.availability_zone.len() > 255 {
            return Err(ConfigError::Invalid("compute.availability_zone must be 1 to 255 characters".into()));
        }
        for (name, spec) in &self.storage.pools {
            spec.validate().map_err(|e| ConfigError::Invalid(format!("storage pool {name}: {e}")))?;
        }
        if let Some(d) = &self.storage.default_pool {
            if !self.storage.pools.is_empty() && !self.storage.pools.contains_key(d) {
                return Err(ConfigError::Invalid(format!("storage.default_pool {d:?} is not one of storage.pools")));
            }
        }
        if let Some(u) = &self.public_url {
            if !u.starts_with("https://") {
                return Err(ConfigError::Invalid(format!("public_url {u:?} must start with https://")));
            }
        }
        Ok(())
    }

    pub fn level(&self) -> log::LevelFilter {
        self.log_level.parse().unwrap_or(log::LevelFilter::Info)
    }
}

/// Settings the kernel command line may override.
const CMDLINE_FIELDS: [&str; 10] = [
    "listen",
    "peer_listen",
    "node_name",
    "data_dir",
    "token_ttl_secs",
    "nested",
    "public_url",
    "log_level",
    "kvm_test_timeout_secs",
    "console_banner",
];
/// `cairn.*` options handled elsewhere (networkd generator) or renamed (`join` is
/// `join_token`).
const CMDLINE_OTHER: [&str; 2] = ["ip", "join"];

fn cmdline_options(cmdline: &str) -> impl Iterator<Item = (&str, &str)> {
    cmdline.split_whitespace().filter_map(|w| w.strip_prefix("cairn.")?.split_once('='))
}

/// Where the system credential `cairn.config` is: the service's credentials directory when
/// systemd passes one, else the system's (PID 1 imports credentials from
/// `systemd.set_credential=cairn.config:…` on the kernel command line and from QEMU's fw_cfg
/// `opt/io.systemd.credentials/cairn.config`), else that fw_cfg entry itself: the image's
/// systemd 252 imports fw_cfg credentials only when `qemu_fw_cfg` is loaded before PID 1 looks,
/// and in the appliance it is loaded later (modules-load.d). The first that exists.
pub fn credential_path() -> PathBuf {
    let mut places: Vec<PathBuf> = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from).into_iter().collect();
    places.push(PathBuf::from("/run/credentials/@system"));
    let fw_cfg =
        PathBuf::from("/sys/firmware/qemu_fw_cfg/by_name/opt/io.systemd.credentials").join(CREDENTIAL).join("raw");
    places
        .into_iter()
        .map(|d| d.join(CREDENTIAL))
        .chain([fw_cfg])
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/run/credentials/@system").join(CREDENTIAL))
}

/// The system credential holding TOML settings merged over the config file: how a node gets
/// its own settings (its storage pools, say) without a changed image.
pub const CREDENTIAL: &str = "cairn.config";

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The `cairn.*` settings of a kernel command line, typed as TOML values.
fn cmdline_settings(cmdline: &str) -> Vec<(&str, toml::Value)> {
    cmdline_options(cmdline)
        .filter_map(|(k, v)| match k {
            "join" => Some(("join_token", v)),
            k if CMDLINE_FIELDS.contains(&k) => Some((k, v)),
            _ => None,
        })
        .map(|(k, v)| {
            let value = match v {
                "true" | "yes" | "1" if k == "nested" || k == "console_banner" => toml::Value::Boolean(true),
                "false" | "no" | "0" if k == "nested" || k == "console_banner" => toml::Value::Boolean(false),
                _ => v.parse::<i64>().map(toml::Value::Integer).unwrap_or_else(|_| toml::Value::String(v.to_owned())),
            };
            (k, value)
        })
        .collect()
}

/// `cairn.*` options on the command line that nothing handles (typos), for a warning.
pub fn cmdline_unknown(cmdline: &str) -> Vec<String> {
    cmdline_options(cmdline)
        .map(|(k, _)| k)
        .filter(|k| !CMDLINE_FIELDS.contains(k) && !CMDLINE_OTHER.contains(k))
        .map(|k| format!("cairn.{k}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        struct Case {
            text: &'static str,
            err: Option<&'static str>,
        }
        let cases = [
            Case { text: "", err: None },
            Case { text: "listen = \"127.0.0.1:8443\"\ndata_dir = \"/tmp/x\"\nnested = false", err: None },
            Case { text: "lissten = \"127.0.0.1:1\"", err: Some("lissten") },
            Case { text: "listen = 5", err: Some("invalid type") },
            Case { text: "token_ttl_secs = 1", err: Some("token_ttl_secs") },
            Case { text: "log_level = \"loud\"", err: Some("log_level") },
            Case { text: "public_url = \"http://x\"", err: Some("https") },
            Case {
                text: "[network]\nphysical_networks = { physnet1 = \"eth1\" }\ntenant_vlan_range = [10, 20]",
                err: None,
            },
            Case { text: "[network]\ntenant_vlan_range = [0, 20]", err: Some("tenant_vlan_range") },
            Case {
                text: "[network]\nphysical_networks = { physnet1 = \"a-very-long-interface\" }",
                err: Some("physical_networks"),
            },
            Case { text: "[network]\nuplink = \"eth1\"", err: Some("uplink") },
            Case { text: "roles = [\"compute\"]", err: None },
            Case { text: "roles = [\"storage\"]", err: Some("storage") },
        ];
        for c in cases {
            let r = Config::parse(c.text, Path::new("t.toml"));
            match (r, c.err) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{:?}: {e}", c.text),
                (r, want) => panic!("{:?}: got {r:?}, wanted error {want:?}", c.text),
            }
        }
        let c = Config::parse("listen = \"127.0.0.1:8443\"", Path::new("t")).unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cairn"));
        assert!(Config::load(Some(Path::new("/nonexistent/cairn.toml")), Path::new("/nonexistent/c"), "").is_err());
    }

    #[test]
    fn kernel_command_line_overrides_the_file() {
        let file = "listen = \"0.0.0.0:443\"\nnested = true\nlog_level = \"info\"";
        let cmdline = "BOOT_IMAGE=/vmlinuz root=/dev/vda2 cairn.listen=0.0.0.0:8443 cairn.nested=0 \
                       cairn.log_level=debug cairn.ip=10.0.0.5/24 cairn.lisen=typo quiet";
        let c = Config::parse_with_cmdline(file, Path::new("t"), cmdline).unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert!(!c.nested);
        assert_eq!(c.log_level, "debug");
        assert_eq!(cmdline_unknown(cmdline), ["cairn.lisen"]);
        let bad = Config::parse_with_cmdline("", Path::new("t"), "cairn.listen=nonsense");
        assert!(bad.is_err(), "a bad value on the command line is an error");
        let c = Config::parse_with_cmdline("", Path::new("t"), "cairn.token_ttl_secs=600").unwrap();
        assert_eq!(c.token_ttl_secs, 600);
        // A PXE node joins unattended: cairn.join is the join token, the peer port may move.
        let line = "cairn.join=cairn-join1.AbC_-x cairn.peer_listen=10.0.0.5:7444 cairn.node_name=rack1-n3";
        let c = Config::parse_with_cmdline("", Path::new("t"), line).unwrap();
        assert_eq!(c.join_token.as_deref(), Some("cairn-join1.AbC_-x"));
        assert_eq!(c.peer_listen.to_string(), "10.0.0.5:7444");
        assert_eq!(c.node_name.as_deref(), Some("rack1-n3"));
        assert!(cmdline_unknown(line).is_empty());
    }

    #[test]
    fn a_credential_merges_over_the_file_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (file, cred) = (dir.path().join("config.toml"), dir.path().join("cairn.config"));
        std::fs::write(&file, "log_level = \"info\"\nnested = false\n[storage]\nquota_volumes = 3\n").unwrap();
        // No credential: the file alone.
        let c = Config::load(Some(&file), &cred, "").unwrap();
        assert_eq!((c.storage.quota_volumes, c.storage.pools.len()), (3, 0));
        std::fs::write(
            &cred,
            "log_level = \"debug\"\n[storage]\nquota_gigabytes = 7\n[storage.pools.lvm]\ntype = \"logical\"\nvg = \"vg\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &cred, "cairn.log_level=warn").unwrap();
        assert_eq!((c.storage.quota_volumes, c.storage.quota_gigabytes), (3, 7), "tables merge key by key");
        assert!(c.storage.pools.contains_key("lvm") && !c.nested);
        assert_eq!(c.log_level, "warn");
        std::fs::write(&cred, "[storage\n").unwrap();
        let e = Config::load(Some(&file), &cred, "").unwrap_err();
        assert!(e.to_string().starts_with(&cred.display().to_string()), "says which file: {e}");
    }
}
