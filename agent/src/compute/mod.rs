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
pub mod keygen;
pub mod scheduler;

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
        self.propose(Command::DeleteServer { id: s.id.clone() }).await?;
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
        self.propose(Command::SeedFlavors(default_flavors())).await
    }

    /// Reports this node's inventory with a fresh heartbeat, every [`HEARTBEAT`].
    pub async fn heartbeat_loop(self: std::sync::Arc<Self>) {
        let Some(inv) = self.inventory.clone() else { return };
        loop {
            let report = Inventory { heartbeat_at: now(), ..inv.clone() };
            if let Err(e) = self.propose(Command::ReportNode(report)).await {
                log::warn!("compute heartbeat: {}", crate::error_chain(&e));
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    // ---- flavors

    /// Flavors as Nova lists them. An admin gets the public (`is_public` true), private (false) or
    /// all (None) flavors; anyone else the public ones and the private ones their project was
    /// given (only those for `is_public` false).
    pub fn flavors(&self, auth: &Auth, is_public: Option<bool>) -> Result<Vec<Flavor>> {
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let mut all: Vec<Flavor> = self
            .view()?
            .flavors()?
            .into_iter()
            .filter(|f| match (auth.is_admin(), is_public) {
                (true, Some(p)) => f.is_public == p,
                (true, None) => true,
                (false, Some(false)) => !f.is_public && f.usable_by(project),
                (false, _) => f.usable_by(project),
            })
            .collect();
        // Nova orders by flavorid-independent size: RAM, then id.
        all.sort_by(|a, b| (a.ram_mb, &a.id).cmp(&(b.ram_mb, &b.id)));
        Ok(all)
    }

    /// A flavor by id (the name also works, as clients fall back to it).
    pub fn flavor(&self, auth: &Auth, id: &str) -> Result<Flavor> {
        let v = self.view()?;
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let f = match v.flavor(id)? {
            Some(f) => Some(f),
            None => v.flavor_by_name(id)?,
        };
        f.filter(|f| auth.is_admin() || f.usable_by(project))
            .ok_or_else(|| ComputeError::NotFound(format!("Flavor {id} could not be found.")))
    }

    pub async fn create_flavor(&self, auth: &Auth, mut f: Flavor) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-manage:create")?;
        if f.id.is_empty() {
            f.id = uuid::Uuid::new_v4().to_string();
        }
        f.validate().map_err(|e| ComputeError::BadRequest(e.to_string()))?;
        let id = f.id.clone();
        self.propose(Command::CreateFlavor(f)).await.map_err(|e| match e {
            ComputeError::Conflict(_) => {
                ComputeError::Conflict(format!("Flavor with ID {id} or its name already exists."))
            }
            e => e,
        })?;
        self.flavor(auth, &id)
    }

    pub async fn delete_flavor(&self, auth: &Auth, id: &str) -> Result<()> {
        admin_only(auth, "os_compute_api:os-flavor-manage:delete")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::DeleteFlavor { id: f.id }).await
    }

    pub async fn set_extra_specs(
        &self,
        auth: &Auth,
        id: &str,
        set: BTreeMap<String, String>,
        unset: Vec<String>,
    ) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-extra-specs:update")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::SetFlavorExtraSpecs { id: f.id.clone(), set, unset }).await?;
        self.flavor(auth, &f.id)
    }

    /// Sets a flavor's description (2.55); admins only.
    pub async fn describe_flavor(&self, auth: &Auth, id: &str, description: Option<String>) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-manage:update")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::SetFlavorDescription { id: f.id.clone(), description }).await?;
        self.flavor(auth, &f.id)
    }

    pub async fn flavor_access(&self, auth: &Auth, id: &str, project: &str, add: bool) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-access")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::SetFlavorAccess { id: f.id.clone(), project: project.into(), add }).await?;
        self.flavor(auth, &f.id)
    }

    // ---- keypairs

    /// Whose key pairs a request is about: the caller's, or (2.10) an admin's choice.
    fn key_owner(auth: &Auth, user: Option<&str>) -> Result<String> {
        match user {
            Some(u) if u != auth.user.id => {
                admin_only(auth, "os_compute_api:os-keypairs")?;
                Ok(u.to_owned())
            }
            _ => Ok(auth.user.id.clone()),
        }
    }

    pub fn keypairs(&self, auth: &Auth, user: Option<&str>) -> Result<Vec<Keypair>> {
        let mut k = self.view()?.keypairs(&Self::key_owner(auth, user)?)?;
        k.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(k)
    }

    pub fn keypair(&self, auth: &Auth, user: Option<&str>, name: &str) -> Result<Keypair> {
        let owner = Self::key_owner(auth, user)?;
        self.view()?
            .keypair(&owner, name)?
            .ok_or_else(|| ComputeError::NotFound(format!("Keypair {name} not found for user {owner}")))
    }

    /// Records a key pair: an SSH public key, or (2.2) an X.509 certificate in PEM.
    pub async fn create_keypair(&self, auth: &Auth, user: Option<&str>, new: NewKeypair) -> Result<Keypair> {
        let bad = |m: String| ComputeError::BadRequest(m);
        let NewKeypair { name, public_key, kind } = new;
        if name.trim().is_empty()
            || name.chars().count() > 255
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_. @".contains(c))
        {
            return Err(bad(format!(
                "Keypair data is invalid: Keypair name {name:?} must be 1 to 255 letters, digits, '-', '_', '.', '@' or spaces"
            )));
        }
        let fingerprint = match kind {
            KeyKind::Ssh => fingerprint(&public_key),
            KeyKind::X509 => keygen::x509_fingerprint(&public_key),
        };
        let fingerprint = fingerprint.map_err(|e| bad(format!("Keypair data is invalid: {e}")))?;
        let k = Keypair {
            name: name.clone(),
            user_id: Self::key_owner(auth, user)?,
            public_key: public_key.trim().into(),
            fingerprint,
            kind: kind.as_str().into(),
            created_at: now(),
        };
        self.propose(Command::CreateKeypair(k.clone())).await.map_err(|e| match e {
            ComputeError::Conflict(_) => ComputeError::Conflict(format!("Key pair '{name}' already exists.")),
            e => e,
        })?;
        Ok(k)
    }

    pub async fn delete_keypair(&self, auth: &Auth, user: Option<&str>, name: &str) -> Result<()> {
        let k = self.keypair(auth, user, name)?;
        self.propose(Command::DeleteKeypair { user_id: k.user_id, name: name.into() }).await
    }

    // ---- nodes

    /// Every node with whether its heartbeat is recent.
    fn nodes_up(&self) -> Result<Vec<NodeUp>> {
        let t = now();
        Ok(self
            .view()?
            .nodes()?
            .into_iter()
            .map(|i| {
                let up = t.saturating_sub(i.heartbeat_at) <= DOWN_AFTER_SECS;
                (i, up)
            })
            .collect())
    }

    /// Every compute node, ordered by name, with whether it is up.
    pub fn nodes(&self, auth: &Auth) -> Result<Vec<NodeUp>> {
        admin_only(auth, "os_compute_api:os-hypervisors:list")?;
        let mut n = self.nodes_up()?;
        n.sort_by(|a, b| a.0.node.cmp(&b.0.node));
        Ok(n)
    }

    pub fn quota(&self) -> ComputeQuota {
        self.quota
    }

    /// What a project's servers take: (instances, their resources).
    pub fn project_usage(&self, project: &str) -> Result<(u64, Resources)> {
        let mine: Vec<Server> = self.view()?.servers()?.into_iter().filter(|s| s.project_id == project).collect();
        Ok((mine.len() as u64, mine.iter().fold(Resources::default(), |a, s| a.plus(s.resources))))
    }

    /// Per node: the resources its servers claim and how many servers it has.
    pub fn node_usage(&self) -> Result<BTreeMap<String, (Resources, u64)>> {
        let servers = self.view()?.servers()?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for s in servers.iter().filter(|s| !s.node.is_empty()) {
            *counts.entry(s.node.clone()).or_default() += 1;
        }
        Ok(crate::model::compute::usage(&servers)
            .into_iter()
            .map(|(n, r)| {
                let c = counts.get(&n).copied().unwrap_or_default();
                (n, (r, c))
            })
            .collect())
    }

    /// The availability zones that have nodes.
    pub fn zones(&self) -> Result<Vec<(String, Vec<NodeUp>)>> {
        let mut zones: BTreeMap<String, Vec<NodeUp>> = BTreeMap::new();
        for (i, up) in self.nodes_up()? {
            zones.entry(i.availability_zone.clone()).or_default().push((i, up));
        }
        Ok(zones.into_iter().collect())
    }
}

impl Compute {
    // ---- servers

    fn sees(auth: &Auth, s: &Server) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == s.project_id)
    }

    /// The caller's servers, newest first (an admin may ask for every project's).
    pub fn servers(&self, auth: &Auth, all_tenants: bool) -> Result<Vec<Server>> {
        let mine = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        let mut v: Vec<Server> = self
            .view()?
            .servers()?
            .into_iter()
            .filter(|s| if all_tenants && auth.is_admin() { true } else { s.project_id == mine })
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(v)
    }

    pub fn server(&self, auth: &Auth, id: &str) -> Result<Server> {
        self.view()?
            .server(id)?
            .filter(|s| Self::sees(auth, s))
            .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))
    }

    /// Schedules and records `count` servers (BUILD) named as Nova names them (`name-1`, …
    /// when more than one); their node builds them. A server no node fits is recorded in ERROR
    /// with Nova's fault "No valid host was found". Returns the first.
    /// Creates `count` (min, max) servers as one request; returns the first and the request's
    /// reservation id.
    pub async fn create_servers(&self, auth: &Auth, new: NewServer, count: (u32, u32)) -> Result<(Server, String)> {
        let (min, max) = count;
        let reservation = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let nets = self.resolve_networks(auth, &new.networks)?;
        if let Some(h) = &new.host {
            if !self.nodes_up()?.iter().any(|(n, _)| n.node == *h) {
                return Err(ComputeError::BadRequest(format!("Compute host {h} could not be found.")));
            }
        }
        if max > 1 && (new.boot_volume.is_some() || nets.iter().any(|n| matches!(n, NetRequest::Port { .. }))) {
            return Err(ComputeError::BadRequest(
                "Unable to launch multiple instances with a single configured port ID or boot volume.".into(),
            ));
        }
        let project = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        // Quota counts for the whole request first, as Nova does for min_count.
        if let (Ok(f), true) = (self.flavor(auth, &new.flavor_id), min > 1) {
            let (n, used) = self.project_usage(&project)?;
            let (want, others) = (Resources::of(&f), u64::from(min - 1));
            if let Some(why) = self.quota.exceeded(n + others, used.plus(Resources::of(&f).times(others)), want) {
                return Err(ComputeError::OverQuota(why));
            }
        }
        let mut made: Vec<Server> = vec![];
        for i in 1..=max {
            let mut one = new.clone();
            if max > 1 {
                one.name = format!("{}-{i}", new.name);
            }
            match self.create_server(auth, one, &nets, (&reservation, i - 1)).await {
                Ok(s) => made.push(s),
                // Past min_count, what the quota leaves is what the request gets.
                Err(ComputeError::OverQuota(_)) if i > min => break,
                // Short of min_count (another create took the quota meanwhile): none of them.
                Err(e) => {
                    for s in &made {
                        if let Err(d) = self.delete_server(auth, &s.id).await {
                            log::warn!("server {}: undoing a refused multi-create: {}", s.id, crate::error_chain(&d));
                        }
                    }
                    return Err(e);
                }
            }
        }
        let first = made.into_iter().next();
        let first = first.ok_or_else(|| ComputeError::BadRequest("max_count must be at least 1.".into()))?;
        Ok((first, reservation))
    }

    /// Nova's automatic network choice, resolved to the one network the project can use.
    fn resolve_networks(&self, auth: &Auth, nets: &Networks) -> Result<Vec<NetRequest>> {
        let explicit = match nets {
            Networks::List(l) => return Ok(l.clone()),
            Networks::Auto { explicit } => *explicit,
        };
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let usable: Vec<String> = self
            .network
            .list_networks(auth)
            .map_err(|e| ComputeError::Internal(Box::new(e)))?
            .into_iter()
            .filter(|n| n.project_id == project || n.shared)
            .map(|n| n.id)
            .collect();
        match usable.as_slice() {
            [] if explicit => Err(ComputeError::BadRequest(format!(
                "Unable to automatically allocate a network for project {project}: this cloud allocates no \
                 network topology; create a network or name one."
            ))),
            [] => Ok(vec![]),
            [one] => Ok(vec![NetRequest::Network { id: one.clone(), tag: None }]),
            _ => Err(ComputeError::Conflict(
                "Multiple possible networks found, use a Network ID to be more specific.".into(),
            )),
        }
    }

    /// Where a new server's root disk comes from: its image (checked against the flavor) or a
    /// volume of the caller's, available. Returns the node holding it, the boot volume, and the
    /// architecture the image asks for (its `architecture` or `hw_architecture` property).
    fn boot_source(&self, auth: &Auth, new: &NewServer, flavor: &Flavor) -> Result<BootSource> {
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let view = self.view()?;
        if let Some(BootVolume { id: vid, delete_on_termination, tag }) = &new.boot_volume {
            let v = view
                .volume(vid)?
                .filter(|v| v.project_id == project || auth.is_admin())
                .ok_or_else(|| ComputeError::BadRequest(format!("Volume {vid} could not be found.")))?;
            if v.status != VolumeStatus::Available {
                return Err(ComputeError::BadRequest(format!(
                    "Invalid volume: volume {vid} status must be available, but current status is: {}",
                    v.status.as_str()
                )));
            }
            if !v.is_bootable() {
                return Err(ComputeError::BadRequest(format!(
                    "Block Device {vid} is not bootable (mark it with `openstack volume set --bootable`)."
                )));
            }
            let sv = ServerVolume {
                volume_id: v.id,
                attachment_id: uuid::Uuid::new_v4().to_string(),
                device: "/dev/vda".into(),
                state: AttachState::Attaching,
                boot: true,
                delete_on_termination: *delete_on_termination,
                tag: tag.clone(),
            };
            return Ok((Some(v.node), Some(sv), None));
        }
        let image = view
            .image(&new.image_id)?
            .filter(|i| {
                i.owner == project || auth.is_admin() || i.visibility != crate::model::image::Visibility::Private
            })
            .ok_or_else(|| ComputeError::BadRequest(format!("Image {} could not be found.", new.image_id)))?;
        if image.status != ImageStatus::Active {
            return Err(ComputeError::Conflict(format!("Image {} is not active.", image.id)));
        }
        let data =
            image.data.clone().ok_or_else(|| ComputeError::Conflict(format!("Image {} has no data.", image.id)))?;
        if flavor.disk_gb > 0 && data.virtual_size > flavor.disk_gb << 30 {
            return Err(ComputeError::BadRequest(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image is {} bytes.",
                flavor.disk_gb << 30,
                data.virtual_size
            )));
        }
        if flavor.ram_mb < image.min_ram || (flavor.disk_gb > 0 && flavor.disk_gb < image.min_disk) {
            return Err(ComputeError::BadRequest(
                "Flavor's memory or disk is too small for the requested image.".into(),
            ));
        }
        let arch = ["architecture", "hw_architecture"].iter().find_map(|k| image.properties.get(*k)).cloned();
        Ok((None, None, arch))
    }

    /// Schedules and records one server (BUILD); its node builds it.
    async fn create_server(
        &self,
        auth: &Auth,
        new: NewServer,
        nets: &[NetRequest],
        (reservation, launch_index): (&str, u32),
    ) -> Result<Server> {
        let project =
            auth.project.as_ref().map(|p| p.id.clone()).ok_or_else(|| {
                ComputeError::Forbidden("A project-scoped token is required to create servers.".into())
            })?;
        let flavor = self
            .flavor(auth, &new.flavor_id)
            .map_err(|_| ComputeError::BadRequest(format!("Flavor {} could not be found.", new.flavor_id)))?;
        let (holder, boot_volume, arch) = self.boot_source(auth, &new, &flavor)?;
        if let Some(k) = &new.key_name {
            self.view()?
                .keypair(&auth.user.id, k)?
                .ok_or_else(|| ComputeError::BadRequest("Invalid key_name provided.".into()))?;
        }
        let ports = self.make_ports(auth, nets).await?;
        let req = scheduler::Request {
            resources: Resources::of(&flavor),
            availability_zone: new.availability_zone.clone(),
            arch,
        };
        let t = now();
        let (hostname, host) = (crate::model::compute::hostname(&new.name), new.host.clone());
        let mut server = Server {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            project_id: project,
            user_id: auth.user.id.clone(),
            resources: Resources::of(&flavor),
            flavor,
            image_id: if boot_volume.is_some() { String::new() } else { new.image_id },
            ports,
            volumes: boot_volume.into_iter().collect(),
            node: String::new(),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Spawning),
            power_state: PowerState::NoState,
            fault: None,
            key_name: new.key_name,
            user_data: new.user_data,
            admin_pass: Some(new.admin_pass),
            availability_zone: new.availability_zone.clone().unwrap_or_else(|| "nova".into()),
            metadata: new.metadata,
            access_ipv4: new.access_ipv4,
            access_ipv6: new.access_ipv6,
            reservation_id: reservation.to_owned(),
            launch_index,
            hostname,
            description: new.description,
            tags: new.tags,
            created_at: t,
            updated_at: t,
            launched_at: None,
        };
        // A boot volume lives on one node; an image goes wherever the server is built.
        let mut why = vec![];
        for _ in 0..3 {
            let view = self.view()?;
            let nodes: Vec<NodeUp> = self
                .nodes_up()?
                .into_iter()
                .filter(|(n, _)| [&holder, &host].iter().all(|h| h.as_ref().is_none_or(|h| n.node == *h)))
                .collect();
            let used = crate::model::compute::usage(&view.servers()?);
            match scheduler::select(&nodes, &used, &req, scheduler::Weigher::Spread) {
                Ok(node) => {
                    server.node = node.clone();
                    match self
                        .propose(Command::CreateServer { server: Box::new(server.clone()), quota: self.quota })
                        .await
                    {
                        Ok(()) => {
                            self.bind_ports(&server).await?;
                            return Ok(server);
                        }
                        // Another create took the room first: schedule again on a fresh view.
                        Err(ComputeError::Conflict(m)) if m.starts_with("No valid host") => why = vec![m],
                        Err(e) => {
                            self.release_ports(&server.ports).await;
                            return Err(e);
                        }
                    }
                }
                Err(w) => {
                    why = w;
                    break;
                }
            }
        }
        let detail = match (why.is_empty(), &holder) {
            (false, _) => why.join("; "),
            (true, Some(h)) => format!("the boot volume's node {h} is not a compute node that is up"),
            (true, None) => "no compute node is up".to_owned(),
        };
        self.record_unplaced(server, &detail).await
    }

    /// Records a server no node could take: in ERROR with Nova's fault, its ports released.
    async fn record_unplaced(&self, mut server: Server, detail: &str) -> Result<Server> {
        server.node = String::new();
        server.vm_state = VmState::Error;
        server.task_state = None;
        server.volumes.clear();
        let message = format!("No valid host was found. {detail}");
        server.fault = Some(Fault { code: 500, message, created: server.created_at });
        self.release_ports(&server.ports).await;
        server.ports.clear();
        self.propose(Command::CreateServer { server: Box::new(server.clone()), quota: self.quota }).await?;
        Ok(server)
    }

    /// The ports of a new server: made on the requested networks, or the user's own (free).
    async fn make_ports(&self, auth: &Auth, nets: &[NetRequest]) -> Result<Vec<ServerPort>> {
        let mut made: Vec<ServerPort> = vec![];
        for n in nets {
            let r = match n {
                NetRequest::Network { id: net, tag } => self
                    .network
                    .create_port(
                        auth,
                        NewPort {
                            name: String::new(),
                            description: String::new(),
                            project_id: None,
                            network_id: net.clone(),
                            mac_address: None,
                            fixed_ips: None,
                            device_id: String::new(),
                            device_owner: String::new(),
                            admin_state_up: true,
                            host: String::new(),
                        },
                    )
                    .await
                    .map(|p| ServerPort { id: p.id, created: true, tag: tag.clone() }),
                NetRequest::Port { id, tag } => match self.network.get_port(auth, id) {
                    Ok(p) if p.device_id.is_empty() => Ok(ServerPort { id: p.id, created: false, tag: tag.clone() }),
                    Ok(_) => Err(NetError::Conflict(format!("Port {id} is still in use."))),
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok(p) => made.push(p),
                Err(e) => {
                    self.release_ports(&made).await;
                    return Err(match e {
                        NetError::NotFound { .. } | NetError::BadRequest(_) => ComputeError::BadRequest(e.to_string()),
                        NetError::Conflict(m) => ComputeError::Conflict(m),
                        NetError::Forbidden(m) => ComputeError::Forbidden(m),
                        e => ComputeError::Internal(Box::new(e)),
                    });
                }
            }
        }
        Ok(made)
    }

    /// Gives a scheduled server's ports to it and its node (Nova's binding, as the service).
    async fn bind_ports(&self, s: &Server) -> Result<()> {
        for p in &s.ports {
            let patch = PortPatch {
                device_id: Some(s.id.clone()),
                device_owner: Some("compute:nova".into()),
                host: Some(s.node.clone()),
                updated_at: now(),
                ..Default::default()
            };
            self.propose(Command::UpdatePort { id: p.id.clone(), patch }).await?;
        }
        Ok(())
    }

    /// Deletes the ports Nova made and frees the user's own.
    async fn release_ports(&self, ports: &[ServerPort]) {
        for p in ports {
            let cmd = if p.created {
                Command::DeletePort { id: p.id.clone() }
            } else {
                let patch = PortPatch {
                    device_id: Some(String::new()),
                    device_owner: Some(String::new()),
                    host: Some(String::new()),
                    updated_at: now(),
                    ..Default::default()
                };
                Command::UpdatePort { id: p.id.clone(), patch }
            };
            if let Err(e) = self.propose(cmd).await {
                log::warn!("port {}: {}", p.id, crate::error_chain(&e));
            }
        }
    }

    fn set_task(&self, s: &Server, task: TaskState) -> Command {
        Command::SetServerState {
            id: s.id.clone(),
            if_task: Some(None),
            vm_state: s.vm_state,
            task_state: Some(task),
            power_state: s.power_state,
            fault: None,
            updated_at: now(),
        }
    }

    /// A server's addresses: (network name, address, MAC) per fixed IP of its ports.
    pub fn addresses(&self, s: &Server) -> Result<Vec<(String, std::net::IpAddr, String)>> {
        let view = self.view()?;
        let mut out = vec![];
        for sp in &s.ports {
            let Some(p) = view.port(&sp.id)? else { continue };
            let net = view.network(&p.network_id)?.map_or_else(|| p.network_id.clone(), |n| n.name.clone());
            for f in &p.fixed_ips {
                out.push((net.clone(), f.ip_address, p.mac_address.to_string()));
            }
        }
        Ok(out)
    }

    /// Renames a server and sets its access addresses; what a change leaves out stays.
    pub async fn update_server(&self, auth: &Auth, id: &str, change: ServerChange) -> Result<Server> {
        let s = self.server(auth, id)?;
        let name = change.name.unwrap_or(s.name);
        check_server_name(&name).map_err(|e| ComputeError::BadRequest(e.to_string()))?;
        let description = change.description.unwrap_or(s.description);
        if description.as_ref().is_some_and(|d| d.chars().count() > 255) {
            return Err(ComputeError::BadRequest(
                "Invalid input for field/attribute description: at most 255 characters.".into(),
            ));
        }
        let cmd = Command::UpdateServer {
            id: s.id.clone(),
            name,
            description,
            access_ipv4: change.access_ipv4,
            access_ipv6: change.access_ipv6,
            updated_at: now(),
        };
        self.propose(cmd).await?;
        self.server(auth, id)
    }

    /// Changes a server's tags (Nova's `/servers/{id}/tags`, 2.26): all replaced when
    /// `replace`, then `remove`d and `add`ed. Returns the server.
    pub async fn set_server_tags(
        &self,
        auth: &Auth,
        id: &str,
        replace: Option<Vec<String>>,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<Server> {
        let s = self.server(auth, id)?;
        self.propose(Command::SetServerTags { id: s.id, replace, add, remove, updated_at: now() }).await?;
        self.server(auth, id)
    }

    /// Changes a server's metadata (Nova's `/servers/{id}/metadata`): cleared first when
    /// `replace`, then `remove`d keys (each must exist), then `set` ones; keys 1 to 255
    /// characters, values at most 255, at most [`METADATA_ITEMS`] in all (403 beyond, as Nova).
    pub async fn set_server_metadata(
        &self,
        auth: &Auth,
        id: &str,
        replace: bool,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<Server> {
        let s = self.server(auth, id)?;
        for (k, v) in &set {
            if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                return Err(ComputeError::BadRequest(format!(
                    "Invalid input for field/attribute metadata: {k:?} must be 1 to 255 characters and its value at most 255."
                )));
            }
        }
        let cmd = Command::SetMetadata {
            of: MetadataOf::Server,
            id: s.id.clone(),
            change: MetadataChange { replace, set, remove, max_items: METADATA_ITEMS, if_match: None },
            updated_at: now(),
        };
        self.propose(cmd).await?;
        self.server(auth, id)
    }

    /// Deletes a server: its node tears it down (a server on no node goes at once).
    pub async fn delete_server(&self, auth: &Auth, id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        if s.node.is_empty() {
            self.release_ports(&s.ports).await;
            return self.propose(Command::DeleteServer { id: s.id }).await;
        }
        // Deleting wins over any task in progress.
        self.propose(Command::SetServerState {
            id: s.id.clone(),
            if_task: None,
            vm_state: s.vm_state,
            task_state: Some(TaskState::Deleting),
            power_state: s.power_state,
            fault: None,
            updated_at: now(),
        })
        .await
    }

    pub async fn action(&self, auth: &Auth, id: &str, action: Action) -> Result<()> {
        let s = self.server(auth, id)?;
        let (from, task, name) = action.rule();
        if !from.contains(&s.vm_state) || s.task_state.is_some() {
            return Err(ComputeError::Conflict(format!(
                "Cannot '{name}' instance {id} while it is in vm_state {} and task_state {}",
                s.vm_state.as_str(),
                s.task_state.map_or("None", |t| t.as_str())
            )));
        }
        self.propose(self.set_task(&s, task)).await
    }

    /// Attaches a volume of the caller's to a server on the volume's node: reserved now (the
    /// volume `attaching`), plugged in by the node. Returns the attachment.
    pub async fn attach_volume(&self, auth: &Auth, id: &str, attach: VolumeAttach) -> Result<ServerVolume> {
        let VolumeAttach { volume_id, tag, delete_on_termination } = attach;
        let volume_id = volume_id.as_str();
        let s = self.server(auth, id)?;
        let v = self
            .view()?
            .volume(volume_id)?
            .filter(|v| auth.is_admin() || v.project_id == s.project_id)
            .ok_or_else(|| ComputeError::NotFound(format!("Volume {volume_id} could not be found.")))?;
        // An attached volume (here or elsewhere) is Nova's 400, as is any not available.
        if v.status != VolumeStatus::Available {
            return Err(ComputeError::BadRequest(format!(
                "Invalid volume: volume {volume_id} status must be available, but current status is: {}",
                v.status.as_str()
            )));
        }
        let device = s
            .next_device()
            .ok_or_else(|| ComputeError::BadRequest(format!("Server {id} has no free device name left.")))?;
        let sv = ServerVolume {
            volume_id: volume_id.into(),
            attachment_id: uuid::Uuid::new_v4().to_string(),
            device,
            state: AttachState::Attaching,
            boot: false,
            delete_on_termination,
            tag,
        };
        self.propose(Command::AttachServerVolume { server_id: s.id, volume: sv.clone(), updated_at: now() }).await?;
        Ok(sv)
    }

    /// Detaches a volume: the node unplugs it, then it is available again.
    pub async fn detach_volume(&self, auth: &Auth, id: &str, volume_id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        self.propose(Command::DetachServerVolume { server_id: s.id, volume_id: volume_id.into(), updated_at: now() })
            .await
    }

    /// The server's console log (its last `lines`), from its node.
    pub async fn console(&self, auth: &Auth, id: &str, lines: Option<usize>) -> Result<String> {
        let s = self.server(auth, id)?;
        if s.node == self.node() {
            return self.console_here(&s.id, lines);
        }
        self.ask(&s, NodeCall::Console { server: s.id.clone(), lines }, "console output").await
    }

    /// Sends a running server's guest a non-maskable interrupt (Nova's trigger_crash_dump,
    /// 2.17); 409 unless the server is active and has no task.
    pub async fn crash_dump(&self, auth: &Auth, id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        if s.vm_state != VmState::Active || s.task_state.is_some() {
            return Err(ComputeError::Conflict(format!(
                "Cannot 'trigger_crash_dump' instance {id} while it is in vm_state {} and task_state {}",
                s.vm_state.as_str(),
                s.task_state.map_or("None", |t| t.as_str())
            )));
        }
        if s.node == self.node() {
            return self.crash_dump_here(&s.id);
        }
        self.ask(&s, NodeCall::CrashDump { server: s.id.clone() }, "crash dump").await
    }

    /// The crash dump interrupt to a server of this node.
    pub fn crash_dump_here(&self, id: &str) -> Result<()> {
        self.local_driver(id)?
            .inject_nmi(id)
            .map_err(|e| ComputeError::Conflict(format!("Cannot trigger a crash dump of {id}: {e}")))
    }

    /// Console output of a server of this node (a peer asks on a client's behalf).
    pub fn console_here(&self, id: &str, lines: Option<usize>) -> Result<String> {
        self.local_driver(id)?.console(id, lines).map_err(|e| ComputeError::Internal(e.into()))
    }

    /// The live figures of a running server (admin only, as in Nova), from its node.
    pub async fn diagnostics(&self, auth: &Auth, id: &str) -> Result<Diagnostics> {
        admin_only(auth, "os_compute_api:os-server-diagnostics")?;
        let s = self.server(auth, id)?;
        if s.node == self.node() {
            return self.diagnostics_here(&s.id).await;
        }
        self.ask(&s, NodeCall::Diagnostics { server: s.id.clone() }, "diagnostics").await
    }

    /// Diagnostics of a server of this node; 409 unless its guest runs.
    pub async fn diagnostics_here(&self, id: &str) -> Result<Diagnostics> {
        let driver = self.local_driver(id)?;
        let s = self
            .view()?
            .server(id)?
            .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))?;
        let uptime = s.launched_at.map_or(0, |t| now().saturating_sub(t));
        let sid = s.id.clone();
        let found = tokio::task::spawn_blocking(move || driver.diagnostics(&sid, uptime))
            .await
            .map_err(|e| ComputeError::Internal(Box::new(e)))?
            .map_err(|e| ComputeError::Internal(e.into()))?;
        found.ok_or_else(|| {
            ComputeError::Conflict(format!(
                "Cannot 'get_diagnostics' instance {id} while it is in power_state {}",
                s.power_state.as_str()
            ))
        })
    }

    /// This node's hypervisor, which must be where server `id` runs.
    fn local_driver(&self, id: &str) -> Result<Arc<Driver>> {
        self.driver
            .clone()
            .ok_or_else(|| ComputeError::NotFound(format!("Server {id} is not on this node (it runs no guests).")))
    }

    /// Asks the node of server `s` a node call and decodes its answer.
    async fn ask<T: serde::de::DeserializeOwned>(&self, s: &Server, call: NodeCall, what: &str) -> Result<T> {
        let remote = self.remote.get().ok_or_else(|| {
            ComputeError::Conflict(format!(
                "Server {} runs on node {}, which this node cannot reach yet.",
                s.id, s.node
            ))
        })?;
        let failed = |e: &dyn std::fmt::Display| {
            ComputeError::Internal(format!("{what} of server {} from node {}: {e}", s.id, s.node).into())
        };
        match remote.call(&s.node, call).await {
            Ok(v) => serde_json::from_value(v).map_err(|e| failed(&e)),
            Err(CallError::NotFound(m)) => Err(ComputeError::NotFound(m)),
            Err(CallError::Conflict(m)) => Err(ComputeError::Conflict(m)),
            Err(CallError::Failed(m)) => Err(failed(&m)),
        }
    }

    /// Converges this node's servers with the state, at every change and every 10 s (which
    /// also notices guests that stopped by themselves).
    pub async fn reconcile_loop(self: Arc<Self>) {
        let Some(driver) = self.driver.clone() else { return };
        let mut changes = self.state.store().subscribe();
        loop {
            if let Err(e) = self.reconcile(&driver).await {
                log::warn!("compute reconcile: {}", crate::error_chain(&e));
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            }
        }
    }

    async fn reconcile(self: &Arc<Self>, driver: &Arc<Driver>) -> Result<()> {
        let view = self.view()?;
        for s in view.servers()?.into_iter().filter(|s| s.node == self.node()) {
            if !self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s.id.clone()) {
                continue;
            }
            let job = match (s.vm_state, s.task_state) {
                (VmState::Building, Some(TaskState::Spawning)) => {
                    let key = match &s.key_name {
                        Some(k) => view.keypair(&s.user_id, k)?.map(|k| (k.name, k.public_key)),
                        None => None,
                    };
                    let format = view.image(&s.image_id)?.and_then(|i| i.disk_format);
                    let user_data = s.user_data.as_deref().and_then(|u| {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD.decode(u).ok()
                    });
                    // Each port bound here, in order; until then, wait for the next change.
                    let ports: Vec<_> =
                        s.ports.iter().map(|p| view.port(&p.id)).collect::<std::result::Result<_, _>>()?;
                    let nics: Option<Vec<driver::Nic>> = ports
                        .into_iter()
                        .zip(&s.ports)
                        .map(|(p, sp)| {
                            p.filter(|p| p.host == s.node).map(|p| driver::Nic {
                                mac: p.mac_address.to_string(),
                                bridge: crate::net::reconcile::bridge_name(&p.network_id),
                                tap: format!("tap{}", p.id.chars().take(11).collect::<String>()),
                                tag: sp.tag.clone(),
                            })
                        })
                        .collect();
                    let root = match s.volumes.iter().find(|v| v.boot) {
                        Some(b) => driver::Root::Volume(Self::volume_ref(&view, &b.volume_id)?),
                        None => driver::Root::Image {
                            path: self.images.store_path(&s.image_id),
                            format: format.unwrap_or(crate::model::image::DiskFormat::Raw),
                        },
                    };
                    nics.map(|nics| {
                        Job::Spawn(Boot {
                            root,
                            disk_bytes: Driver::disk_bytes(s.flavor.disk_gb),
                            key,
                            user_data,
                            admin_pass: s.admin_pass.clone(),
                            nics,
                        })
                    })
                }
                (_, Some(TaskState::Deleting)) => Some(Job::Delete),
                (_, Some(task)) => Power::of(task).map(Job::Power),
                (VmState::Active | VmState::Stopped, None) => {
                    match s.volumes.iter().find(|v| !v.boot && v.state != AttachState::Attached) {
                        Some(sv) => {
                            let v = Self::volume_ref(&view, &sv.volume_id)?;
                            Some(Job::Volume {
                                id: sv.volume_id.clone(),
                                attach: sv.state == AttachState::Attaching,
                                v,
                                device: sv.device.clone(),
                            })
                        }
                        None => Some(Job::Sync),
                    }
                }
                _ => None,
            };
            let Some(job) = job else {
                self.done(&s.id);
                continue;
            };
            let (this, driver) = (self.clone(), driver.clone());
            tokio::spawn(async move {
                let id = s.id.clone();
                if let Err(e) = this.run_job(&driver, s, job).await {
                    log::warn!("server {id}: {}", crate::error_chain(&e));
                }
                this.done(&id);
            });
        }
        Ok(())
    }

    /// Where a volume's data is on this node.
    fn volume_ref(view: &View, id: &str) -> Result<driver::VolumeRef> {
        let v = view.volume(id)?.ok_or_else(|| ComputeError::NotFound(format!("Volume {id} could not be found.")))?;
        Ok(driver::VolumeRef { pool: v.volume_type, name: v.id, format: v.format })
    }

    fn done(&self, id: &str) {
        self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    async fn run_job(&self, driver: &Arc<Driver>, s: Server, job: Job) -> Result<()> {
        let d = driver.clone();
        let id = s.id.clone();
        let set = |vm_state, power_state, fault: Option<String>| Command::SetServerState {
            id: s.id.clone(),
            if_task: Some(s.task_state),
            vm_state,
            task_state: None,
            power_state,
            fault: fault.map(|message| Fault { code: 500, message, created: now() }),
            updated_at: now(),
        };
        let blocking = |f: Box<dyn FnOnce() -> std::result::Result<(), String> + Send>| async move {
            tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string()).and_then(|r| r)
        };
        match job {
            Job::Spawn(boot) => {
                let server = s.clone();
                // An image another node holds is fetched into this node's store first.
                let fetched = match &boot.root {
                    driver::Root::Image { .. } => self.images.local_copy(&s.image_id).await.map(drop),
                    driver::Root::Volume(_) => Ok(()),
                };
                let r = match fetched {
                    Ok(()) => blocking(Box::new(move || d.spawn(&server, &boot))).await,
                    Err(e) => Err(format!("fetching image {}: {}", s.image_id, crate::error_chain(&e))),
                };
                let cmd = match r {
                    Ok(()) => set(VmState::Active, PowerState::Running, None),
                    Err(e) => {
                        log::error!("server {id}: build failed: {e}");
                        set(VmState::Error, PowerState::NoState, Some(e))
                    }
                };
                self.propose(cmd).await
            }
            Job::Delete => {
                let r = blocking(Box::new(move || d.destroy(&id))).await;
                match r {
                    Ok(()) => self.forget(&s).await,
                    Err(e) => self.propose(set(VmState::Error, PowerState::NoState, Some(e))).await,
                }
            }
            Job::Power(p) => {
                let (done, failed) = p.outcomes();
                let r = blocking(Box::new(move || match p {
                    Power::Stop => d.stop(&id),
                    Power::Start | Power::Resume => d.start(&id),
                    Power::Reboot => d.stop(&id).and_then(|()| d.start(&id)),
                    Power::Pause => d.pause(&id),
                    Power::Unpause => d.unpause(&id),
                    Power::Suspend => d.suspend(&id),
                }))
                .await;
                self.propose(match r {
                    Ok(()) => set(done.0, done.1, None),
                    Err(e) => set(failed.0, failed.1, Some(e)),
                })
                .await
            }
            Job::Volume { id: volume_id, attach, v, device } => {
                let sid = s.id.clone();
                let r = blocking(Box::new(move || {
                    let disk = d.volume_disk(&v, &device)?;
                    if attach {
                        d.attach(&sid, &disk)
                    } else {
                        d.detach(&sid, &disk)
                    }
                }))
                .await;
                if let Err(e) = &r {
                    log::warn!("server {id}: volume {volume_id}: {e}");
                }
                let error = r.err();
                self.propose(Command::ServerVolumeDone { server_id: s.id.clone(), volume_id, error, updated_at: now() })
                    .await
            }
            Job::Sync => {
                let state = tokio::task::spawn_blocking(move || d.state(&id))
                    .await
                    .map_err(|e| ComputeError::Internal(Box::new(e)))?
                    .map_err(|e| ComputeError::Internal(e.into()))?;
                let (vm, power) = match state {
                    Some(DomainState::Running) => (VmState::Active, PowerState::Running),
                    Some(DomainState::Paused) => (VmState::Active, PowerState::Paused),
                    Some(DomainState::Shutoff) => (VmState::Stopped, PowerState::Shutdown),
                    Some(DomainState::Crashed) => (VmState::Stopped, PowerState::Crashed),
                    None => (VmState::Error, PowerState::NoState),
                };
                if (vm, power) == (s.vm_state, s.power_state) {
                    return Ok(());
                }
                log::info!("server {}: the guest is now {power:?} (was {:?})", s.id, s.power_state);
                let fault = (vm == VmState::Error).then(|| "The domain disappeared from the hypervisor.".to_owned());
                self.propose(set(vm, power, fault)).await
            }
        }
    }
}

/// What the reconciler does for one server.
enum Job {
    Spawn(Boot),
    Delete,
    Power(Power),
    /// Plugs a volume in (`attach`) or out.
    Volume {
        id: String,
        attach: bool,
        v: driver::VolumeRef,
        device: String,
    },
    Sync,
}

/// The jobs that change a guest's power state.
#[derive(Clone, Copy, Debug)]
enum Power {
    Stop,
    Start,
    Reboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

impl Power {
    fn of(task: TaskState) -> Option<Power> {
        Some(match task {
            TaskState::PoweringOff => Power::Stop,
            TaskState::PoweringOn => Power::Start,
            TaskState::Rebooting | TaskState::RebootingHard => Power::Reboot,
            TaskState::Pausing => Power::Pause,
            TaskState::Unpausing => Power::Unpause,
            TaskState::Suspending => Power::Suspend,
            TaskState::Resuming => Power::Resume,
            TaskState::Spawning | TaskState::Deleting => return None,
        })
    }

    /// The (vm, power) states after success, and what a failure leaves.
    fn outcomes(self) -> ((VmState, PowerState), (VmState, PowerState)) {
        let running = (VmState::Active, PowerState::Running);
        let stopped = (VmState::Stopped, PowerState::Shutdown);
        let paused = (VmState::Paused, PowerState::Paused);
        let suspended = (VmState::Suspended, PowerState::Suspended);
        match self {
            Power::Stop => (stopped, running),
            Power::Start => (running, stopped),
            Power::Reboot => (running, (VmState::Error, PowerState::NoState)),
            Power::Pause => (paused, running),
            Power::Unpause => (running, paused),
            Power::Suspend => (suspended, running),
            Power::Resume => (running, suspended),
        }
    }
}

/// An OpenSSH public key line's MD5 fingerprint (`aa:bb:…`), after checking that it is one.
pub fn fingerprint(line: &str) -> std::result::Result<String, String> {
    use base64::Engine;
    use md5::Digest;
    let mut words = line.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Err("a public key is `<type> <base64 key> [comment]`".into());
    };
    const KINDS: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    if !KINDS.contains(&kind) {
        return Err(format!("key type {kind} is not one of {}", KINDS.join(", ")));
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(blob).map_err(|_| "the key is not base64".to_owned())?;
    // The blob starts with its own type, length-prefixed.
    let named = raw
        .get(..4)
        .and_then(|l| usize::try_from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok())
        .and_then(|n| raw.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!("the key data is not a {kind} key"));
    }
    let digest = md5::Md5::digest(&raw);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
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
        assert!(fingerprint("ssh-dss AAAAB3NzaC1kc3MAAACBAP").unwrap_err().contains("not one of"));
        assert!(fingerprint("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt")
            .unwrap_err()
            .contains("not a ssh-rsa key"));
        assert!(fingerprint("ssh-ed25519 !!!").is_err());
    }
}
