//! The cloud's state: every change is a [`Command`] proposed to the replicated log
//! ([`raft`]), applied deterministically and without I/O outside redb ([`apply`]) to the
//! tables defined here. Reads go straight to redb through [`Store`].
//!
//! Limitations: one redb file holds both the log and the tables; snapshots are whole-table JSON
//! dumps (fine for tens of thousands of rows, not for millions).

pub mod apply;
mod cluster;
mod compute;
pub mod events;
pub mod identity;
mod image;
pub mod metadata;
mod network;
pub mod raft;
mod volume;

use crate::model::cluster::{Member, RemovedNode, TokenRecord};
use crate::model::compute::{
    ComputeQuota, Fault, Flavor, Inventory, Keypair, PowerState, Server, ServerVolume, TaskState, VmState,
};
use crate::model::event::Notification;
use crate::model::identity::{AppCredential, Domain, DomainPatch, Grant, Group, GroupPatch};
use crate::model::image::{Image, ImageData, ImagePatch, ImageStatus};
use crate::model::network::{IpRequest, Network, NetworkPatch, Port, PortPatch, Subnet, SubnetPatch};
use crate::model::storage::PoolRecord;
use crate::model::volume::{Attachment, Quota, Snapshot, Volume, VolumeStatus};
use crate::model::{Assignment, Project, ProjectPatch, Role, User, UserPatch};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub(crate) const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
pub(crate) const PROJECT_NAMES: TableDefinition<&str, &str> = TableDefinition::new("project_names");
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(crate) const USER_NAMES: TableDefinition<&str, &str> = TableDefinition::new("user_names");
pub(crate) const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
pub(crate) const ROLE_NAMES: TableDefinition<&str, &str> = TableDefinition::new("role_names");
/// Key `project \0 user \0 role`.
pub(crate) const ASSIGN_BY_PROJECT: TableDefinition<&str, ()> = TableDefinition::new("assign_by_project");
/// Key `user \0 project \0 role`.
pub(crate) const ASSIGN_BY_USER: TableDefinition<&str, ()> = TableDefinition::new("assign_by_user");
/// Revoked token audit ids → the token's expiry (unix seconds), pruned once expired.
pub(crate) const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked_tokens");

pub(crate) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
pub(crate) const SUBNETS: TableDefinition<&str, &[u8]> = TableDefinition::new("subnets");
pub(crate) const PORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ports");
/// `physnet \0 vlan \0 VID` or `physnet \0 flat` → the network holding that segment.
pub(crate) const SEGMENTS: TableDefinition<&str, &str> = TableDefinition::new("segments");
/// `subnet \0 address as 32 hex digits` → the port holding it.
pub(crate) const IP_ALLOC: TableDefinition<&str, &str> = TableDefinition::new("ip_allocations");
/// `network \0 mac` → the port holding it.
pub(crate) const MACS: TableDefinition<&str, &str> = TableDefinition::new("macs");

pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
pub(crate) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");
pub(crate) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// Cinder's user messages, by id.
pub(crate) const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
pub(crate) const FLAVORS: TableDefinition<&str, &[u8]> = TableDefinition::new("flavors");
pub(crate) const FLAVOR_NAMES: TableDefinition<&str, &str> = TableDefinition::new("flavor_names");
/// `user \0 name` → the keypair.
pub(crate) const KEYPAIRS: TableDefinition<&str, &[u8]> = TableDefinition::new("keypairs");
pub(crate) const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");
/// Node name → its compute inventory.
pub(crate) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// `node \0 pool` → the pool as the node last reported it.
pub(crate) const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
/// Raft node id (decimal) → the node as it last reported itself.
pub(crate) const MEMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("members");
/// Join token id → its record (the secret's hash, never the secret).
pub(crate) const JOIN_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("join_tokens");
/// Raft node id (decimal) → SHA-256 (hex) of its public key: the only key its certificates
/// may carry, so holding the CA key is not enough to pass for another node.
pub(crate) const NODE_KEYS: TableDefinition<&str, &str> = TableDefinition::new("node_keys");
/// Raft node id (decimal) → the removed node (its certificate is revoked: no peer takes it).
pub(crate) const REMOVED_NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("removed_nodes");
/// Zero-padded sequence number → a notification (the last [`events::KEEP`]).
pub(crate) const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");

/// Facts about the cloud itself; `bootstrapped` is set once by the first start's command.
pub(crate) const CLOUD: TableDefinition<&str, &str> = TableDefinition::new("cloud");
pub(crate) const BOOTSTRAPPED: &str = "bootstrapped";
/// Keys `default_type/{project}` of [`CLOUD`]: a project's default volume type.
pub(crate) const DEFAULT_TYPE_PREFIX: &str = "default_type/";
pub(crate) const FLAVORS_SEEDED: &str = "flavors_seeded";
/// Every table of the state machine, for snapshots.
pub(crate) const STRING_TABLES: [TableDefinition<&str, &str>; 12] = [
    PROJECT_NAMES,
    USER_NAMES,
    ROLE_NAMES,
    CLOUD,
    SEGMENTS,
    IP_ALLOC,
    MACS,
    FLAVOR_NAMES,
    NODE_KEYS,
    identity::DOMAIN_NAMES,
    identity::GROUP_NAMES,
    identity::APP_CRED_NAMES,
];
pub(crate) const BLOB_TABLES: [TableDefinition<&str, &[u8]>; 22] = [
    PROJECTS,
    USERS,
    ROLES,
    NETWORKS,
    SUBNETS,
    PORTS,
    IMAGES,
    VOLUMES,
    SNAPSHOTS,
    MESSAGES,
    POOLS,
    FLAVORS,
    KEYPAIRS,
    NODES,
    SERVERS,
    EVENTS,
    JOIN_TOKENS,
    MEMBERS,
    REMOVED_NODES,
    identity::DOMAINS,
    identity::GROUPS,
    identity::APP_CREDS,
];
pub(crate) const UNIT_TABLES: [TableDefinition<&str, ()>; 6] = [
    ASSIGN_BY_PROJECT,
    ASSIGN_BY_USER,
    identity::GROUP_USERS,
    identity::USER_GROUPS,
    identity::GRANTS,
    identity::GRANTS_BY_ACTOR,
];

/// A change to the cloud, by service: each service's commands in their own enum, so the type
/// system routes a command to its applier. Applied in log order on every node; apply must not
/// read clocks or randomness: anything like that travels inside the command.
///
/// On the wire (the log, snapshots of it) a command is its service enum's form alone
/// (`{"CreateServer": {…}}`), as before the split: the outer enum is untagged, so entries
/// written before it read the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Identity(IdentityCommand),
    Network(NetworkCommand),
    Image(ImageCommand),
    Volume(VolumeCommand),
    Compute(ComputeCommand),
    Metadata(MetadataCommand),
    Cluster(ClusterCommand),
}

impl From<IdentityCommand> for Command {
    fn from(c: IdentityCommand) -> Self {
        Command::Identity(c)
    }
}

impl From<NetworkCommand> for Command {
    fn from(c: NetworkCommand) -> Self {
        Command::Network(c)
    }
}

impl From<ImageCommand> for Command {
    fn from(c: ImageCommand) -> Self {
        Command::Image(c)
    }
}

impl From<VolumeCommand> for Command {
    fn from(c: VolumeCommand) -> Self {
        Command::Volume(c)
    }
}

impl From<ComputeCommand> for Command {
    fn from(c: ComputeCommand) -> Self {
        Command::Compute(c)
    }
}

impl From<MetadataCommand> for Command {
    fn from(c: MetadataCommand) -> Self {
        Command::Metadata(c)
    }
}

impl From<ClusterCommand> for Command {
    fn from(c: ClusterCommand) -> Self {
        Command::Cluster(c)
    }
}

/// Keystone's: projects, users, roles and grants, domains, groups, application credentials, revocations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityCommand {
    /// First start: the admin project and user, the built-in roles, admin granted admin.
    Bootstrap {
        project: Project,
        user: User,
        roles: Vec<Role>,
    },
    CreateProject(Project),
    UpdateProject {
        id: String,
        patch: ProjectPatch,
    },
    DeleteProject {
        id: String,
    },
    CreateUser(User),
    UpdateUser {
        id: String,
        patch: UserPatch,
    },
    DeleteUser {
        id: String,
    },
    CreateRole(Role),
    /// Renames a role.
    UpdateRole {
        id: String,
        name: crate::model::Name,
    },
    DeleteRole {
        id: String,
    },
    Grant(Assignment),
    Ungrant(Assignment),
    CreateDomain(Domain),
    UpdateDomain {
        id: String,
        patch: DomainPatch,
    },
    /// Deletes a disabled domain with its projects, users and groups.
    DeleteDomain {
        id: String,
    },
    CreateGroup(Group),
    UpdateGroup {
        id: String,
        patch: GroupPatch,
    },
    DeleteGroup {
        id: String,
    },
    AddGroupUser {
        group_id: String,
        user_id: String,
    },
    RemoveGroupUser {
        group_id: String,
        user_id: String,
    },
    /// A role to a user or group on a project, domain or the system.
    GrantRole(Grant),
    RevokeRole(Grant),
    CreateAppCredential(AppCredential),
    DeleteAppCredential {
        id: String,
    },
    /// Revokes one token (by audit id) and forgets revocations of tokens expired by `now`.
    RevokeToken {
        audit_id: String,
        expires_at: u64,
        now: u64,
    },
}

/// Neutron's: networks, subnets, ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkCommand {
    /// A network; a VLAN network without a VLAN id gets the lowest free one of `auto_vlan`.
    CreateNetwork {
        network: Network,
        auto_vlan: Option<(u16, u16)>,
    },
    UpdateNetwork {
        id: String,
        patch: NetworkPatch,
    },
    /// Deletes a network with its subnets and DHCP port; refused while other ports use it.
    DeleteNetwork {
        id: String,
    },
    /// A subnet; when DHCP is enabled the network's DHCP port (`dhcp_port` is its template if
    /// the network has none yet) takes an address of it.
    CreateSubnet {
        subnet: Box<Subnet>,
        dhcp_port: Option<Port>,
    },
    UpdateSubnet {
        id: String,
        patch: SubnetPatch,
    },
    DeleteSubnet {
        id: String,
    },
    /// A port; its addresses are allocated when applied (`ips: None` = one per IP version).
    CreatePort {
        port: Port,
        ips: Option<Vec<IpRequest>>,
    },
    UpdatePort {
        id: String,
        patch: PortPatch,
    },
    DeletePort {
        id: String,
    },
}

/// Glance's: images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageCommand {
    CreateImage(Image),
    UpdateImage {
        id: String,
        patch: ImagePatch,
    },
    /// Moves an image to `to` if its status is one of `from`, recording what an upload measured.
    SetImageStatus {
        id: String,
        from: Vec<ImageStatus>,
        to: ImageStatus,
        data: Option<ImageData>,
        updated_at: u64,
    },
    DeleteImage {
        id: String,
    },
}

/// Cinder's: volumes, snapshots, attachments, messages, default types, the pools nodes report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeCommand {
    /// A volume record (status `creating`), if the project's quota allows it.
    CreateVolume {
        volume: Volume,
        quota: Quota,
    },
    UpdateVolume {
        id: String,
        name: Option<String>,
        description: Option<String>,
        #[serde(default)]
        bootable: Option<bool>,
        updated_at: u64,
    },
    /// Moves a volume to `to` if its status is one of `from`; a new size is checked against
    /// `quota` when given.
    SetVolumeStatus {
        id: String,
        from: Vec<VolumeStatus>,
        to: VolumeStatus,
        size: Option<u64>,
        error: Option<String>,
        quota: Option<Quota>,
        updated_at: u64,
    },
    DeleteVolume {
        id: String,
    },
    /// Records an attachment; the volume must be `available` or `attaching` and becomes `in-use`.
    AttachVolume {
        id: String,
        attachment: Attachment,
        updated_at: u64,
    },
    /// Removes an attachment (the only one when `attachment_id` is None); the volume becomes
    /// `available` when none is left.
    /// Removes an attachment (every one when `attachment_id` is None); `force` (the admin's
    /// force-detach) whatever the volume's status.
    DetachVolume {
        id: String,
        attachment_id: Option<String>,
        #[serde(default)]
        force: bool,
        updated_at: u64,
    },
    /// A snapshot record (status `creating`) of an available volume, if the quota allows it.
    CreateSnapshot {
        snapshot: Snapshot,
        quota: Quota,
    },
    UpdateSnapshot {
        id: String,
        name: Option<String>,
        description: Option<String>,
        updated_at: u64,
    },
    /// Moves a snapshot to `to` if its status is one of `from`.
    SetSnapshotStatus {
        id: String,
        from: Vec<VolumeStatus>,
        to: VolumeStatus,
        error: Option<String>,
        /// Progress as the snapshot's maker reports it (`os-update_snapshot_status`).
        #[serde(default)]
        progress: Option<String>,
        updated_at: u64,
    },
    DeleteSnapshot {
        id: String,
    },
    /// Records an attachment of Cinder's attachments API (3.27): a new one holds an available
    /// volume; an existing one (by id) moves on. The volume's status follows the attachment's.
    SetAttachment {
        volume_id: String,
        attachment: crate::model::volume::Attachment,
        updated_at: u64,
    },
    /// A project's default volume type (Cinder 3.62); None unsets it.
    SetDefaultType {
        project: String,
        volume_type: Option<String>,
    },
    /// Deletes a user message (Cinder's `/messages/{id}`).
    DeleteMessage {
        id: String,
    },
    /// A node's pools as its agent sees them now (replacing what it reported before).
    ReportPools {
        node: String,
        pools: Vec<PoolRecord>,
    },
}

/// Nova's: flavors, keypairs, the nodes' inventories, servers and their volumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeCommand {
    /// The default flavors, once in a cloud's life (later calls change nothing).
    SeedFlavors(Vec<Flavor>),
    CreateFlavor(Flavor),
    /// Sets and removes extra specs of a flavor.
    SetFlavorExtraSpecs {
        id: String,
        set: std::collections::BTreeMap<String, String>,
        unset: Vec<String>,
    },
    /// A flavor's description (2.55), the one thing of a flavor that changes.
    SetFlavorDescription {
        id: String,
        description: Option<String>,
    },
    /// Grants (`add`) or revokes a project's use of a private flavor.
    SetFlavorAccess {
        id: String,
        project: String,
        add: bool,
    },
    DeleteFlavor {
        id: String,
    },
    CreateKeypair(Keypair),
    DeleteKeypair {
        user_id: String,
        name: String,
    },
    /// A compute node's inventory and heartbeat.
    ReportNode(Inventory),
    /// A new server, claiming its resources on `server.node` (refused with "No valid host" when
    /// they no longer fit) and checked against the project's quota. A server without a node is
    /// recorded as it is (in ERROR).
    CreateServer {
        server: Box<Server>,
        quota: ComputeQuota,
    },
    /// Sets a server's states if its task is `if_task` (the expected one; None: no task).
    SetServerState {
        id: String,
        if_task: Option<Option<TaskState>>,
        vm_state: VmState,
        task_state: Option<TaskState>,
        power_state: PowerState,
        fault: Option<Fault>,
        updated_at: u64,
    },
    /// A server's name and access addresses (once only its name: the older spelling is read).
    #[serde(alias = "RenameServer")]
    UpdateServer {
        id: String,
        name: String,
        #[serde(default)]
        access_ipv4: Option<std::net::Ipv4Addr>,
        #[serde(default)]
        access_ipv6: Option<std::net::Ipv6Addr>,
        /// The description after the update (absent from records older than 2.19's).
        #[serde(default)]
        description: Option<String>,
        updated_at: u64,
    },
    /// Changes a server's tags: all replaced when `replace`, then `remove`d (each must be
    /// there) and `add`ed; refused beyond [`crate::model::compute::MAX_TAGS`] or while the server
    /// is being built.
    SetServerTags {
        id: String,
        replace: Option<Vec<String>>,
        add: Vec<String>,
        remove: Vec<String>,
        updated_at: u64,
    },
    /// Removes a server; its volumes become available again.
    DeleteServer {
        id: String,
    },
    /// Reserves an available volume of the server's node for the server (the volume becomes
    /// `attaching`); the node plugs it in and reports with [`Command::Compute(ComputeCommand::ServerVolumeDone)`].
    AttachServerVolume {
        server_id: String,
        volume: ServerVolume,
        updated_at: u64,
    },
    /// Asks the node to unplug an attached volume (the volume becomes `detaching`).
    DetachServerVolume {
        server_id: String,
        volume_id: String,
        updated_at: u64,
    },
    /// The node's outcome of an attach or detach: done (`error` None) or rolled back.
    ServerVolumeDone {
        server_id: String,
        volume_id: String,
        error: Option<String>,
        updated_at: u64,
    },
}

/// Key/value metadata of servers, volumes and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Changes a server's, a volume's or a snapshot's metadata.
    SetMetadata { of: metadata::MetadataOf, id: String, change: metadata::MetadataChange, updated_at: u64 },
}

/// The cluster's: members, join tokens, node keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// A node's report of itself, with a fresh heartbeat.
    ReportMember(Member),
    /// A join token's record (single use, expiring).
    CreateJoinToken(TokenRecord),
    RevokeJoinToken {
        id: String,
    },
    /// Uses a join token for `node`: refused unless the secret's hash matches (compared in
    /// constant time) and the token is unused, unrevoked and unexpired at `at`. The joining
    /// node's raft id is the next unused one, recorded in the token, and `key` (the SHA-256
    /// of its public key) becomes that id's key.
    ConsumeJoinToken {
        id: String,
        secret_hash: String,
        node: String,
        at: u64,
        key: String,
    },
    /// The first node's public key (SHA-256): set once.
    RegisterNodeKey {
        id: u64,
        key: String,
    },
    /// Removes node `id` from the cluster for good: its report goes, its id is never reused and
    /// its certificate is refused by every peer.
    RemoveMember {
        id: u64,
        at: u64,
    },
}

/// What applying a command led to. Refusals change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Project,
    User,
    Role,
    RoleAssignment,
    Domain,
    Group,
    GroupMembership,
    ApplicationCredential,
    Token,
    Network,
    Subnet,
    Port,
    Image,
    Volume,
    Snapshot,
    Flavor,
    Keypair,
    Server,
    /// A key of a resource's metadata.
    MetadataKey,
    /// A server's tag.
    Tag,
    /// A user message of Cinder's.
    Message,
    /// A project's default volume type.
    DefaultType,
    JoinToken,
    Node,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Project => "project",
            Kind::User => "user",
            Kind::Role => "role",
            Kind::RoleAssignment => "role assignment",
            Kind::Domain => "domain",
            Kind::Group => "group",
            Kind::GroupMembership => "group membership",
            Kind::ApplicationCredential => "application credential",
            Kind::Token => "token",
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Image => "image",
            Kind::Tag => "tag",
            Kind::Message => "message",
            Kind::DefaultType => "default volume type of project",
            Kind::MetadataKey => "metadata key",
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
            Kind::Flavor => "flavor",
            Kind::Keypair => "keypair",
            Kind::Server => "server",
            Kind::JoinToken => "join token",
            Kind::Node => "node",
        })
    }
}

/// Why the state machine refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("{kind} {name:?} already exists")]
    Conflict { kind: Kind, name: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: Kind, id: String },
    #[error("the cloud is already bootstrapped")]
    AlreadyBootstrapped,
    /// The request contradicts the state (a bad reference, an overlapping subnet).
    #[error("{0}")]
    Invalid(String),
    /// Something in use blocks it (a taken VLAN id, address or MAC; ports on a network).
    #[error("{0}")]
    Conflicts(String),
    /// A pool ran dry (no free VLAN id).
    #[error("{0}")]
    Exhausted(String),
    /// A project's quota does not allow it.
    #[error("{0}")]
    OverQuota(String),
    /// A conditional change whose condition no longer holds (an `If-Match` that does not).
    #[error("{0}")]
    Stale(String),
}

/// The state machine's answer to one command.
pub type Outcome = Result<(), Refusal>;

/// Errors of the state module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("opening state database {path}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state database")]
    Db(#[from] redb::Error),
    #[error("decoding stored record")]
    Decode(#[from] serde_json::Error),
    #[error("replicated log: {0}")]
    Raft(String),
    #[error("no leader: {0}")]
    NoLeader(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Db(e.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Read access to the applied state. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// The raft log and vote, in a database of their own next to the state's: a log commit
    /// then fsyncs only the log's few pages, not every state page applied since the last one.
    log: Arc<Database>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Counts applied changes that can alter what a token validates to
    /// ([`Command::affects_tokens`], or a snapshot); bumped only once they are committed.
    auth_epoch: Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) fn assignment_keys(a: &Assignment) -> (String, String) {
    (
        format!("{}\0{}\0{}", a.project_id, a.user_id, a.role_id),
        format!("{}\0{}\0{}", a.user_id, a.project_id, a.role_id),
    )
}

/// Splits a 3-part assignment key.
pub(crate) fn split3(key: &str) -> Option<(&str, &str, &str)> {
    let mut it = key.splitn(3, '\0');
    Some((it.next()?, it.next()?, it.next()?))
}

/// Key prefix for a range scan over composite keys.
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// redb's page caches (its default is 1 GiB): the state's working set, and the log's tail.
/// Pages beyond them are read back through the kernel's page cache.
const STATE_CACHE: usize = 64 << 20;
const LOG_CACHE: usize = 16 << 20;

impl Store {
    /// Opens (or creates) the state database at `path` and the raft log's beside it
    /// (`state.redb` → `state.log.redb`), moving a log kept in the state database by earlier
    /// versions into its own.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let create = |p: &Path, cache: usize| {
            redb::Builder::new()
                .set_cache_size(cache)
                .create(p)
                .map_err(|source| StateError::Open { path: p.display().to_string(), source })
        };
        let db = Arc::new(create(path, STATE_CACHE)?);
        let log = Arc::new(create(&path.with_extension("log.redb"), LOG_CACHE)?);
        let store = Self { db, log, changes: Arc::new(tokio::sync::watch::Sender::new(0)), auth_epoch: Arc::default() };
        store.create_tables()?;
        raft::move_log(&store.db, &store.log)?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        for t in BLOB_TABLES {
            tx.open_table(t)?;
        }
        for t in STRING_TABLES {
            tx.open_table(t)?;
        }
        for t in UNIT_TABLES {
            tx.open_table(t)?;
        }
        tx.open_table(REVOKED)?;
        raft::create_tables(&tx)?;
        tx.commit()?;
        let tx = self.log.begin_write()?;
        raft::create_tables(&tx)?;
        tx.commit()?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> &Arc<Database> {
        &self.db
    }
    /// Wakes whenever the log applies commands (after they are visible to [`Store::view`]).
    /// The identity epoch: a validated token's outcome may be reused while it is unchanged.
    pub fn auth_epoch(&self) -> u64 {
        self.auth_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A consistent read view of the applied state (one redb read transaction).
    pub fn view(&self) -> Result<View, StateError> {
        Ok(View { tx: self.db.begin_read()? })
    }
}

/// Reads of the applied state, all from one snapshot.
pub struct View {
    tx: redb::ReadTransaction,
}

impl View {
    fn get<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>, id: &str) -> Result<Option<T>, StateError> {
        let tx = &self.tx;
        let t = tx.open_table(table)?;
        match t.get(id)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    fn list<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>, StateError> {
        let tx = &self.tx;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    fn id_by_name(&self, table: TableDefinition<&str, &str>, name: &str) -> Result<Option<String>, StateError> {
        let tx = &self.tx;
        let t = tx.open_table(table)?;
        Ok(t.get(name)?.map(|v| v.value().to_owned()))
    }

    pub fn project(&self, id: &str) -> Result<Option<Project>, StateError> {
        self.get(PROJECTS, id)
    }
    pub fn projects(&self) -> Result<Vec<Project>, StateError> {
        self.list(PROJECTS)
    }
    pub fn project_by_name(&self, domain_id: &str, name: &str) -> Result<Option<Project>, StateError> {
        match self.id_by_name(PROJECT_NAMES, &identity::name_key(domain_id, name))? {
            Some(id) => self.project(&id),
            None => Ok(None),
        }
    }
    pub fn user(&self, id: &str) -> Result<Option<User>, StateError> {
        self.get(USERS, id)
    }
    pub fn users(&self) -> Result<Vec<User>, StateError> {
        self.list(USERS)
    }
    pub fn user_by_name(&self, domain_id: &str, name: &str) -> Result<Option<User>, StateError> {
        match self.id_by_name(USER_NAMES, &identity::name_key(domain_id, name))? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }
    pub fn role(&self, id: &str) -> Result<Option<Role>, StateError> {
        self.get(ROLES, id)
    }
    pub fn roles(&self) -> Result<Vec<Role>, StateError> {
        self.list(ROLES)
    }
    pub fn role_by_name(&self, name: &str) -> Result<Option<Role>, StateError> {
        match self.id_by_name(ROLE_NAMES, name)? {
            Some(id) => self.role(&id),
            None => Ok(None),
        }
    }

    /// Role ids `user` holds on `project`.
    pub fn roles_of(&self, user_id: &str, project_id: &str) -> Result<Vec<String>, StateError> {
        let prefix = format!("{user_id}\0{project_id}\0");
        let end = prefix_end(&prefix);
        let tx = &self.tx;
        let t = tx.open_table(ASSIGN_BY_USER)?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_str()..end.as_str())? {
            let (k, _) = row?;
            if let Some((_, _, role)) = split3(k.value()) {
                out.push(role.to_owned());
            }
        }
        Ok(out)
    }

    /// Every assignment, optionally narrowed to one user and/or project.
    pub fn assignments(&self, user_id: Option<&str>, project_id: Option<&str>) -> Result<Vec<Assignment>, StateError> {
        let tx = &self.tx;
        let (table, prefix) = match (user_id, project_id) {
            (Some(u), Some(p)) => (ASSIGN_BY_USER, format!("{u}\0{p}\0")),
            (Some(u), None) => (ASSIGN_BY_USER, format!("{u}\0")),
            (None, Some(p)) => (ASSIGN_BY_PROJECT, format!("{p}\0")),
            (None, None) => (ASSIGN_BY_PROJECT, String::new()),
        };
        let by_user = user_id.is_some();
        let end = prefix_end(&prefix);
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_str()..end.as_str())? {
            let (k, _) = row?;
            if let Some((a, b, role)) = split3(k.value()) {
                let (user_id, project_id) = if by_user { (a, b) } else { (b, a) };
                out.push(Assignment { project_id: project_id.into(), user_id: user_id.into(), role_id: role.into() });
            }
        }
        Ok(out)
    }

    /// Whether the token with this audit id has been revoked.
    pub fn is_revoked(&self, audit_id: &str) -> Result<bool, StateError> {
        let tx = &self.tx;
        let t = tx.open_table(REVOKED)?;
        Ok(t.get(audit_id)?.is_some())
    }

    pub fn network(&self, id: &str) -> Result<Option<Network>, StateError> {
        self.get(NETWORKS, id)
    }
    pub fn networks(&self) -> Result<Vec<Network>, StateError> {
        self.list(NETWORKS)
    }
    pub fn subnet(&self, id: &str) -> Result<Option<Subnet>, StateError> {
        self.get(SUBNETS, id)
    }
    pub fn subnets(&self) -> Result<Vec<Subnet>, StateError> {
        self.list(SUBNETS)
    }
    pub fn port(&self, id: &str) -> Result<Option<Port>, StateError> {
        self.get(PORTS, id)
    }
    pub fn ports(&self) -> Result<Vec<Port>, StateError> {
        self.list(PORTS)
    }

    pub fn image(&self, id: &str) -> Result<Option<Image>, StateError> {
        self.get(IMAGES, id)
    }
    pub fn images(&self) -> Result<Vec<Image>, StateError> {
        self.list(IMAGES)
    }

    pub fn volume(&self, id: &str) -> Result<Option<Volume>, StateError> {
        self.get(VOLUMES, id)
    }
    pub fn volumes(&self) -> Result<Vec<Volume>, StateError> {
        self.list(VOLUMES)
    }
    pub fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, StateError> {
        self.get(SNAPSHOTS, id)
    }
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, StateError> {
        self.list(SNAPSHOTS)
    }
    pub fn messages(&self) -> Result<Vec<crate::model::volume::Message>, StateError> {
        self.list(MESSAGES)
    }
    pub fn flavor(&self, id: &str) -> Result<Option<Flavor>, StateError> {
        self.get(FLAVORS, id)
    }
    pub fn flavors(&self) -> Result<Vec<Flavor>, StateError> {
        self.list(FLAVORS)
    }
    pub fn flavor_by_name(&self, name: &str) -> Result<Option<Flavor>, StateError> {
        match self.tx.open_table(FLAVOR_NAMES)?.get(name)? {
            Some(id) => self.flavor(id.value()),
            None => Ok(None),
        }
    }
    pub fn keypair(&self, user_id: &str, name: &str) -> Result<Option<Keypair>, StateError> {
        self.get(KEYPAIRS, &format!("{user_id}\0{name}"))
    }
    pub fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>, StateError> {
        Ok(self.list::<Keypair>(KEYPAIRS)?.into_iter().filter(|k| k.user_id == user_id).collect())
    }
    pub fn nodes(&self) -> Result<Vec<Inventory>, StateError> {
        self.list(NODES)
    }
    pub fn server(&self, id: &str) -> Result<Option<Server>, StateError> {
        self.get(SERVERS, id)
    }
    pub fn servers(&self) -> Result<Vec<Server>, StateError> {
        self.list(SERVERS)
    }
    /// Every node's last report, by id.
    pub fn members(&self) -> Result<Vec<Member>, StateError> {
        let mut all: Vec<Member> = self.list(MEMBERS)?;
        all.sort_by_key(|m| m.id);
        Ok(all)
    }
    /// Node id → SHA-256 of its public key.
    pub fn node_keys(&self) -> Result<std::collections::BTreeMap<u64, String>, StateError> {
        let t = self.tx.open_table(NODE_KEYS)?;
        let mut out = std::collections::BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if let Ok(id) = k.value().parse() {
                out.insert(id, v.value().to_owned());
            }
        }
        Ok(out)
    }
    pub fn is_removed(&self, id: u64) -> Result<bool, StateError> {
        Ok(self.get::<RemovedNode>(REMOVED_NODES, &id.to_string())?.is_some())
    }
    /// Every join token's record, oldest first.
    pub fn join_tokens(&self) -> Result<Vec<TokenRecord>, StateError> {
        let mut all: Vec<TokenRecord> = self.list(JOIN_TOKENS)?;
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }
    /// Up to `limit` notifications after `seq`, oldest first.
    pub fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Notification>, StateError> {
        let t = self.tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in t.range(events::key(seq.saturating_add(1)).as_str()..)?.take(limit) {
            out.push(serde_json::from_slice(row?.1.value())?);
        }
        Ok(out)
    }
    /// Every node's pools, by node.
    pub fn pools(&self) -> Result<Vec<(String, PoolRecord)>, StateError> {
        let mut out = vec![];
        for row in self.tx.open_table(POOLS)?.iter()? {
            let (k, v) = row?;
            let node = k.value().split('\0').next().unwrap_or_default().to_owned();
            out.push((node, serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Whether the first-start bootstrap has been applied.
    pub fn is_bootstrapped(&self) -> Result<bool, StateError> {
        Ok(self.tx.open_table(CLOUD)?.get(BOOTSTRAPPED)?.is_some())
    }
    pub fn flavors_seeded(&self) -> Result<bool, StateError> {
        Ok(self.tx.open_table(CLOUD)?.get(FLAVORS_SEEDED)?.is_some())
    }

    /// Every project's default volume type (Cinder 3.62): (project, type).
    pub fn default_types(&self) -> Result<Vec<(String, String)>, StateError> {
        let t = self.tx.open_table(CLOUD)?;
        let mut out = Vec::new();
        for row in t.range(DEFAULT_TYPE_PREFIX..)? {
            let (k, v) = row?;
            let Some(project) = k.value().strip_prefix(DEFAULT_TYPE_PREFIX) else { break };
            out.push((project.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_keep_their_wire_form_across_the_split_by_service() {
        // As written before the split: the variant's name at the top, whatever the service.
        let revoke = serde_json::json!({"RevokeToken": {"audit_id": "a", "expires_at": 2, "now": 1}});
        let c: Command = serde_json::from_value(revoke.clone()).unwrap();
        assert!(matches!(c, Command::Identity(IdentityCommand::RevokeToken { .. })), "{c:?}");
        assert_eq!(serde_json::to_value(&c).unwrap(), revoke, "written as before");
        let rename = serde_json::json!({"RenameServer": {"id": "s", "name": "n", "updated_at": 1}});
        let c: Command = serde_json::from_value(rename).unwrap();
        assert!(
            matches!(&c, Command::Compute(ComputeCommand::UpdateServer { name, description: None, .. }) if name == "n"),
            "the older spelling of a compute command: {c:?}"
        );
        for (json, service) in [
            (serde_json::json!({"DeleteNetwork": {"id": "n"}}), "network"),
            (serde_json::json!({"DeleteImage": {"id": "i"}}), "image"),
            (serde_json::json!({"DeleteMessage": {"id": "m"}}), "volume"),
            (serde_json::json!({"RevokeJoinToken": {"id": "t"}}), "cluster"),
        ] {
            let c: Command = serde_json::from_value(json.clone()).unwrap();
            let got = match c {
                Command::Network(_) => "network",
                Command::Image(_) => "image",
                Command::Volume(_) => "volume",
                Command::Cluster(_) => "cluster",
                _ => "other",
            };
            assert_eq!(got, service, "{json}");
        }
        assert!(serde_json::from_value::<Command>(serde_json::json!({"NoSuchCommand": {}})).is_err());
    }
}
