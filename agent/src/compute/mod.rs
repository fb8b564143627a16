//! Nova's logic: flavors (the defaults seeded once; admin create, delete, extra specs, access to
//! private flavors), keypairs (public keys checked and fingerprinted as Nova does), compute nodes
//! (each node with the compute role reports its inventory and a heartbeat into the state;
//! hypervisors and services are read from there, up when the heartbeat is recent), and servers:
//! a create is scheduled ([`scheduler`]) and recorded with its claim in one command; the node
//! it landed on sees it in the state and builds it ([`driver`]), then records ACTIVE or ERROR
//! with a fault. Stop, start, reboot and delete go the same way: a task recorded, done by the
//! node, the outcome recorded.
//!
//! A server's networks become ports (made for it, or the user's own), bound to its node once it
//! is scheduled; the node's network agent builds the bridges for them, and the domain's NICs are
//! taps on those bridges.
//!
//! Limitations: keypairs must come with a public key (the client generates the pair, as the openstack client does);
//! console output of a server on another node needs the cluster.

pub mod driver;
mod flavors;
pub mod keygen;
mod keypairs;
mod nodes;
mod reconcile;
pub mod scheduler;
mod servers;

pub use keypairs::fingerprint;

use crate::cluster::peer::{CallError, NodeCall};
use crate::identity::{now, Auth};
use crate::model::compute::{
    check_server_name, default_flavors, AttachState, ComputeQuota, Diagnostics, Fault, Flavor, Inventory, Keypair,
    PowerState, Resources, Server, ServerPort, ServerVolume, TaskState, VmState,
};
use crate::model::image::ImageStatus;
use crate::model::network::PortPatch;
use crate::model::volume::VolumeStatus;
use crate::net::service::{NetError, Networking, NewPort};
use crate::state::metadata::{MetadataChange, MetadataOf};
use crate::state::raft::Replicated;
use crate::state::ComputeCommand;
use crate::state::{Command, Refusal, StateError, View};
use crate::sys::libvirt::DomainState;
use driver::{Boot, Driver};
use serde_json::Value;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A node whose last heartbeat is older than this is down (Nova's `service_down_time`).
pub const DOWN_AFTER_SECS: u64 = 60;
/// Most metadata items a server (or an image, as Nova reports) may have: Nova's default quota.
pub const METADATA_ITEMS: usize = 128;
/// How often a compute node reports.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Nova answers quota excess with 403.
    #[error("{0}")]
    OverQuota(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for ComputeError {
    fn from(e: StateError) -> Self {
        ComputeError::Internal(Box::new(e))
    }
}

impl From<Refusal> for ComputeError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound { kind, id } => ComputeError::NotFound(format!("The {kind} {id} could not be found.")),
            Refusal::Conflict { kind, name } => ComputeError::Conflict(format!("The {kind} {name} already exists.")),
            Refusal::Conflicts(m) | Refusal::Stale(m) => ComputeError::Conflict(m),
            Refusal::Invalid(m) => ComputeError::BadRequest(m),
            Refusal::OverQuota(m) => ComputeError::OverQuota(m),
            Refusal::Exhausted(m) => ComputeError::Conflict(m),
            r @ Refusal::AlreadyBootstrapped => ComputeError::Internal(Box::new(r)),
        }
    }
}

type Result<T> = std::result::Result<T, ComputeError>;

/// Where a root disk comes from: the node it ties the server to (a boot volume's; an image is
/// fetched by whichever node builds the server), the boot volume, the image's architecture.
type BootSource = (Option<String>, Option<ServerVolume>, Option<String>);

/// A node's inventory and whether it is up.
pub type NodeUp = (Inventory, bool);

/// The compute service of this node.
pub struct Compute {
    state: Replicated,
    network: Arc<Networking>,
    /// This node's inventory when it has the compute role.
    inventory: Option<Inventory>,
    /// The hypervisor, on a compute node whose libvirt is reachable.
    driver: Option<Arc<Driver>>,
    images: Arc<crate::image::Images>,
    /// The volumes: a boot volume marked `delete_on_termination` goes with its server.
    storage: Arc<crate::storage::Storage>,
    quota: ComputeQuota,
    /// Servers a blocking job is working on now.
    busy: Mutex<BTreeSet<String>>,
    /// Calls to other nodes (the cluster's), for what only a server's node can answer.
    remote: std::sync::OnceLock<Arc<dyn Remote>>,
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What compute asks of another node: a node call to the node named `node`.
pub trait Remote: Send + Sync {
    fn call<'a>(&'a self, node: &'a str, call: NodeCall) -> BoxFuture<'a, std::result::Result<Value, CallError>>;
}

impl crate::cluster::peer::NodeCalls for Compute {
    fn answer(&self, call: NodeCall) -> futures_util::future::BoxFuture<'_, std::result::Result<Value, CallError>> {
        Box::pin(async move {
            let value = match call {
                NodeCall::Console { server, lines } => serde_json::to_value(self.console_here(&server, lines)?),
                NodeCall::Diagnostics { server } => serde_json::to_value(self.diagnostics_here(&server).await?),
                NodeCall::CrashDump { server } => serde_json::to_value(self.crash_dump_here(&server)?),
                NodeCall::Probe => {
                    return Err(CallError::Failed("a host probe is the node's, not its compute's".into()))
                }
            };
            value.map_err(|e| CallError::Failed(e.to_string()))
        })
    }
}

impl From<ComputeError> for CallError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::NotFound(m) => CallError::NotFound(m),
            ComputeError::Conflict(m) => CallError::Conflict(m),
            e => CallError::Failed(crate::error_chain(&e)),
        }
    }
}

/// A new server as the API received it.
#[derive(Clone, Debug)]
pub struct NewServer {
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    /// The guest's admin password (Nova's `adminPass`), given or generated.
    pub admin_pass: String,
    pub availability_zone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub networks: Networks,
    /// Boot from this volume instead of the image.
    pub boot_volume: Option<BootVolume>,
    /// What the user says of the server (2.19) and its tags (2.52).
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// The node an admin asks for (2.74).
    pub host: Option<String>,
    /// Addresses the user gives the server (Nova's `accessIPv4` and `accessIPv6`).
    pub access_ipv4: Option<std::net::Ipv4Addr>,
    pub access_ipv6: Option<std::net::Ipv6Addr>,
}

/// A create's boot volume: its id, whether it goes with the server, its device tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootVolume {
    pub id: String,
    pub delete_on_termination: bool,
    pub tag: Option<String>,
}

/// A key pair's kind (2.2): an SSH key or an X.509 certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ssh,
    X509,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ssh => "ssh",
            KeyKind::X509 => "x509",
        }
    }
}

/// A key pair to record: its name, public key (an OpenSSH line or a PEM certificate), kind.
#[derive(Clone, Debug)]
pub struct NewKeypair {
    pub name: String,
    pub public_key: String,
    pub kind: KeyKind,
}

/// A volume attach (Nova's `volumeAttachment`): the volume, its device tag (2.49), whether it
/// goes with the server (2.79).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeAttach {
    pub volume_id: String,
    pub tag: Option<String>,
    pub delete_on_termination: bool,
}

/// A server update (Nova's `PUT /servers/{id}`); `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ServerChange {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub access_ipv4: Option<std::net::Ipv4Addr>,
    pub access_ipv6: Option<std::net::Ipv6Addr>,
}

/// One entry of a create's `networks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetRequest {
    /// A new port on this network.
    Network { id: String, tag: Option<String> },
    /// The user's own port.
    Port { id: String, tag: Option<String> },
}

/// A create's `networks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Networks {
    /// These, in NIC order (none for `"none"`).
    List(Vec<NetRequest>),
    /// The project's one network (Nova's `"auto"`, `explicit`, or no `networks` at all): with
    /// none, `"auto"` fails (this cloud allocates no topology) and an absent list means no NIC;
    /// with several, the request is ambiguous.
    Auto { explicit: bool },
}

/// The actions on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Reboot { hard: bool },
    Pause,
    Unpause,
    Suspend,
    Resume,
}

impl Action {
    /// The state it may be taken from, the task it sets, and Nova's name for it.
    fn rule(self) -> (&'static [VmState], TaskState, &'static str) {
        use VmState::*;
        match self {
            Action::Start => (&[Stopped], TaskState::PoweringOn, "start"),
            Action::Stop => (&[Active], TaskState::PoweringOff, "stop"),
            Action::Reboot { hard: false } => (&[Active], TaskState::Rebooting, "reboot"),
            Action::Reboot { hard: true } => (&[Active, Stopped], TaskState::RebootingHard, "reboot"),
            Action::Pause => (&[Active], TaskState::Pausing, "pause"),
            Action::Unpause => (&[Paused], TaskState::Unpausing, "unpause"),
            Action::Suspend => (&[Active], TaskState::Suspending, "suspend"),
            Action::Resume => (&[Suspended], TaskState::Resuming, "resume"),
        }
    }
}

fn admin_only(auth: &Auth, what: &str) -> Result<()> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(ComputeError::Forbidden(format!("Policy doesn't allow {what} to be performed.")))
    }
}

impl Compute {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: Replicated,
        network: Arc<Networking>,
        inventory: Option<Inventory>,
        driver: Option<Arc<Driver>>,
        images: Arc<crate::image::Images>,
        storage: Arc<crate::storage::Storage>,
        quota: ComputeQuota,
    ) -> Self {
        Self {
            state,
            network,
            inventory,
            driver,
            images,
            storage,
            quota,
            busy: Mutex::new(BTreeSet::new()),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// After its domain is gone: a server's ports freed, its record removed (its volumes
    /// released), and the volumes it was to take along deleted.
    async fn forget(&self, s: &Server) -> Result<()> {
        self.release_ports(&s.ports).await;
        self.propose(Command::Compute(ComputeCommand::DeleteServer { id: s.id.clone() })).await?;
        for sv in s.volumes.iter().filter(|v| v.delete_on_termination) {
            if let Err(e) = self.storage.delete_released(&sv.volume_id).await {
                log::warn!("server {}: deleting volume {}: {}", s.id, sv.volume_id, crate::error_chain(&e));
            }
        }
        Ok(())
    }

    /// Gives compute its way to other nodes (once, when the cluster is up).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    fn node(&self) -> &str {
        self.inventory.as_ref().map_or("", |i| i.node.as_str())
    }

    fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    /// First start of a cloud: the default flavors (a no-op ever after).
    pub async fn seed(&self) -> Result<()> {
        if self.view()?.flavors_seeded()? {
            return Ok(());
        }
        self.propose(Command::Compute(ComputeCommand::SeedFlavors(default_flavors()))).await
    }

    /// Reports this node's inventory with a fresh heartbeat, every [`HEARTBEAT`].
    pub async fn heartbeat_loop(self: std::sync::Arc<Self>) {
        let Some(inv) = self.inventory.clone() else { return };
        loop {
            let report = Inventory { heartbeat_at: now(), ..inv.clone() };
            if let Err(e) = self.propose(Command::Compute(ComputeCommand::ReportNode(report))).await {
                log::warn!("compute heartbeat: {}", crate::error_chain(&e));
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_checked_and_fingerprinted() {
        // ssh-keygen -t ed25519 output (a throwaway key) and its `ssh-keygen -l -E md5` fingerprint.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt test@cairn";
        let fp = fingerprint(key).unwrap();
        assert_eq!(fp, "90:7f:07:4a:ef:44:01:7f:49:0b:f1:23:04:c7:91:04");
        assert_eq!(fp, fingerprint(key.trim_end_matches(" test@cairn")).unwrap(), "the comment does not count");
        assert!(fingerprint("ssh-ed25519").is_err());
        assert!(fingerprint("ssh-dss AAAAB3NzaC1kc3MAAACBAP").unwrap_err().0.contains("not one of"));
        assert!(fingerprint("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt")
            .unwrap_err()
            .0
            .contains("not a ssh-rsa key"));
        assert!(fingerprint("ssh-ed25519 !!!").is_err());
    }
}
