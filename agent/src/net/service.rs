//! Neutron's logic over the replicated state: who may see and change which network, subnet and
//! port (Neutron's default policy in its simplest form), the checks that need the node's
//! configuration (known physical networks, the tenant VLAN range), and the commands proposed.
//!
//! Policy: the admin role may do everything. Other project members see their project's
//! resources plus shared and external networks; they create networks without provider
//! attributes (a tenant VLAN is allocated), subnets on their own networks, and ports on their
//! own or shared networks. Setting `provider:*`, `shared` or `router:external` is admin-only (403).

use crate::identity::{now, Auth};
use crate::model::network::{
    check_vlan, Cidr, HostRoute, IpRequest, Mac, Network, NetworkPatch, NetworkType, Pool, Port, PortPatch, Segment,
    Subnet, SubnetPatch, DEFAULT_MTU, DHCP_OWNER,
};
use crate::state::raft::Replicated;
use crate::state::NetworkCommand;
use crate::state::{Command, Kind, Refusal, StateError, View};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Errors of network operations; the API maps each to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("A project-scoped token is required for the network API.")]
    Unscoped,
    #[error("{0}")]
    Forbidden(String),
    #[error("{kind} {id} could not be found.")]
    NotFound { kind: Kind, id: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for NetError {
    fn from(e: StateError) -> Self {
        NetError::Internal(Box::new(e))
    }
}

impl From<Refusal> for NetError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict { kind, name } => NetError::Conflict(format!("{kind} {name} already exists.")),
            Refusal::NotFound { kind, id } => NetError::NotFound { kind, id },
            Refusal::Invalid(m) => NetError::BadRequest(m),
            Refusal::Conflicts(m) | Refusal::Stale(m) => NetError::Conflict(m),
            Refusal::Exhausted(m) => NetError::Unavailable(m),
            r @ (Refusal::AlreadyBootstrapped | Refusal::OverQuota(_)) => NetError::Internal(Box::new(r)),
        }
    }
}

type Result<T> = std::result::Result<T, NetError>;

/// What the network service needs from the node's configuration.
#[derive(Clone, Debug)]
pub struct NetSettings {
    /// Physical networks this cloud knows (`provider:physical_network` must name one).
    pub physical_networks: BTreeSet<String>,
    /// Where networks without provider attributes go.
    pub default_physical_network: String,
    /// VLAN ids handed to networks created without one.
    pub tenant_vlan_range: (u16, u16),
    /// This node's name, recorded on the DHCP ports it serves.
    pub host: String,
}

/// Provider attributes as asked for (all optional).
#[derive(Clone, Debug, Default)]
pub struct ProviderRequest {
    pub network_type: Option<String>,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<i64>,
}

impl ProviderRequest {
    fn is_set(&self) -> bool {
        self.network_type.is_some() || self.physical_network.is_some() || self.segmentation_id.is_some()
    }
}

#[derive(Clone, Debug, Default)]
pub struct NewNetwork {
    pub name: String,
    pub description: String,
    pub project_id: Option<String>,
    pub admin_state_up: bool,
    pub shared: bool,
    pub external: bool,
    pub mtu: Option<u32>,
    pub provider: ProviderRequest,
}

#[derive(Clone, Debug)]
pub struct NewSubnet {
    pub name: String,
    pub description: String,
    pub project_id: Option<String>,
    pub network_id: String,
    pub ip_version: Option<u8>,
    pub cidr: Cidr,
    /// `None`: the default gateway; `Some(None)`: no gateway.
    pub gateway_ip: Option<Option<IpAddr>>,
    pub allocation_pools: Option<Vec<Pool>>,
    pub dns_nameservers: Vec<IpAddr>,
    pub host_routes: Vec<HostRoute>,
    pub enable_dhcp: bool,
}

#[derive(Clone, Debug, Default)]
pub struct NewPort {
    pub name: String,
    pub description: String,
    pub project_id: Option<String>,
    pub network_id: String,
    pub mac_address: Option<Mac>,
    pub fixed_ips: Option<Vec<IpRequest>>,
    pub device_id: String,
    pub device_owner: String,
    pub admin_state_up: bool,
    pub host: String,
}

/// The network service.
pub struct Networking {
    state: Replicated,
    settings: NetSettings,
}

fn forbidden(action: &str) -> NetError {
    NetError::Forbidden(format!("(rule:{action}) is disallowed by policy"))
}

fn project_of(auth: &Auth) -> Result<&str> {
    auth.project.as_ref().map(|p| p.id.as_str()).ok_or(NetError::Unscoped)
}

/// The owning project of a new resource: the caller's, or (admin only) another.
fn owner(auth: &Auth, asked: Option<String>, action: &str) -> Result<String> {
    let mine = project_of(auth)?.to_owned();
    match asked {
        Some(p) if p != mine => {
            if auth.is_admin() {
                Ok(p)
            } else {
                Err(forbidden(&format!("{action}:project_id")))
            }
        }
        _ => Ok(mine),
    }
}

impl Networking {
    pub fn new(state: Replicated, settings: NetSettings) -> Self {
        Self { state, settings }
    }

    pub fn settings(&self) -> &NetSettings {
        &self.settings
    }

    fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    fn sees_network(auth: &Auth, n: &Network) -> bool {
        auth.is_admin() || n.shared || n.external || auth.project.as_ref().is_some_and(|p| p.id == n.project_id)
    }

    fn owns(auth: &Auth, project_id: &str) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == project_id)
    }

    // ---- networks

    pub fn list_networks(&self, auth: &Auth) -> Result<Vec<Network>> {
        project_of(auth)?;
        Ok(self.view()?.networks()?.into_iter().filter(|n| Self::sees_network(auth, n)).collect())
    }

    pub fn get_network(&self, auth: &Auth, id: &str) -> Result<Network> {
        project_of(auth)?;
        self.view()?
            .network(id)?
            .filter(|n| Self::sees_network(auth, n))
            .ok_or_else(|| NetError::NotFound { kind: Kind::Network, id: id.into() })
    }

    /// Network id → its subnet ids in creation order, from one read of the subnets.
    pub fn subnet_ids(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let mut s: Vec<Subnet> = self.view()?.subnets()?;
        s.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for sub in s {
            out.entry(sub.network_id).or_default().push(sub.id);
        }
        Ok(out)
    }

    fn segment(&self, p: &ProviderRequest) -> Result<(Segment, Option<(u16, u16)>)> {
        let ty = match p.network_type.as_deref() {
            None | Some("vlan") => NetworkType::Vlan,
            Some("flat") => NetworkType::Flat,
            Some(other) => {
                return Err(NetError::BadRequest(format!(
                    "Invalid input for operation: network_type value '{other}' not supported (vlan and flat are)."
                )))
            }
        };
        let physnet = p.physical_network.clone().unwrap_or_else(|| self.settings.default_physical_network.clone());
        if !self.settings.physical_networks.contains(&physnet) {
            return Err(NetError::BadRequest(format!(
                "Invalid input for operation: physical_network '{physnet}' unknown for {} provider network.",
                ty.as_str()
            )));
        }
        let vid = match (ty, p.segmentation_id) {
            (NetworkType::Flat, Some(_)) => {
                return Err(NetError::BadRequest(
                    "Invalid input for operation: segmentation_id specified for flat provider network.".into(),
                ))
            }
            (NetworkType::Flat, None) | (NetworkType::Vlan, None) => None,
            (NetworkType::Vlan, Some(v)) => {
                Some(check_vlan(v).map_err(|e| NetError::BadRequest(format!("Invalid input for operation: {e}.")))?)
            }
        };
        let auto = (ty == NetworkType::Vlan && vid.is_none()).then_some(self.settings.tenant_vlan_range);
        Ok((Segment { network_type: ty, physical_network: physnet, segmentation_id: vid }, auto))
    }

    pub async fn create_network(&self, auth: &Auth, new: NewNetwork) -> Result<Network> {
        let project_id = owner(auth, new.project_id.clone(), "create_network")?;
        if !auth.is_admin() {
            if new.provider.is_set() {
                return Err(forbidden("create_network:provider:network_type"));
            }
            if new.shared {
                return Err(forbidden("create_network:shared"));
            }
            if new.external {
                return Err(forbidden("create_network:router:external"));
            }
        }
        let mtu = new.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=9000).contains(&mtu) {
            return Err(NetError::BadRequest(format!("Invalid input for operation: mtu {mtu} is outside 68..9000.")));
        }
        let (segment, auto_vlan) = self.segment(&new.provider)?;
        let mut network = Network::new(&uuid::Uuid::new_v4().to_string(), &new.name, &project_id, segment, now());
        network.description = new.description;
        network.admin_state_up = new.admin_state_up;
        network.shared = new.shared;
        network.external = new.external;
        network.mtu = mtu;
        let id = network.id.clone();
        self.propose(Command::Network(NetworkCommand::CreateNetwork { network, auto_vlan })).await?;
        self.get_network(auth, &id)
    }

    pub async fn update_network(&self, auth: &Auth, id: &str, mut patch: NetworkPatch) -> Result<Network> {
        let n = self.get_network(auth, id)?;
        if !Self::owns(auth, &n.project_id) {
            return Err(forbidden("update_network"));
        }
        if !auth.is_admin() && (patch.shared.is_some() || patch.external.is_some()) {
            return Err(forbidden("update_network:shared"));
        }
        patch.updated_at = now();
        self.propose(Command::Network(NetworkCommand::UpdateNetwork { id: id.into(), patch })).await?;
        self.get_network(auth, id)
    }

    pub async fn delete_network(&self, auth: &Auth, id: &str) -> Result<()> {
        let n = self.get_network(auth, id)?;
        if !Self::owns(auth, &n.project_id) {
            return Err(forbidden("delete_network"));
        }
        self.propose(Command::Network(NetworkCommand::DeleteNetwork { id: id.into() })).await
    }

    // ---- subnets

    fn network_visible_map(&self, auth: &Auth) -> Result<std::collections::BTreeMap<String, Network>> {
        Ok(self.list_networks(auth)?.into_iter().map(|n| (n.id.clone(), n)).collect())
    }

    pub fn list_subnets(&self, auth: &Auth) -> Result<Vec<Subnet>> {
        let nets = self.network_visible_map(auth)?;
        let mut v: Vec<Subnet> = self
            .view()?
            .subnets()?
            .into_iter()
            .filter(|s| auth.is_admin() || Self::owns(auth, &s.project_id) || nets.contains_key(&s.network_id))
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(v)
    }

    pub fn get_subnet(&self, auth: &Auth, id: &str) -> Result<Subnet> {
        let s = self.view()?.subnet(id)?.ok_or_else(|| NetError::NotFound { kind: Kind::Subnet, id: id.into() })?;
        if Self::owns(auth, &s.project_id) || self.get_network(auth, &s.network_id).is_ok() {
            Ok(s)
        } else {
            Err(NetError::NotFound { kind: Kind::Subnet, id: id.into() })
        }
    }

    pub async fn create_subnet(&self, auth: &Auth, new: NewSubnet) -> Result<Subnet> {
        let project_id = owner(auth, new.project_id.clone(), "create_subnet")?;
        let net = self.get_network(auth, &new.network_id)?;
        if !Self::owns(auth, &net.project_id) {
            return Err(forbidden("create_subnet"));
        }
        let cidr = new.cidr;
        cidr.check_subnet().map_err(|e| NetError::BadRequest(format!("Invalid input for operation: {e}")))?;
        if let Some(v) = new.ip_version {
            if v != cidr.version() {
                return Err(NetError::BadRequest(format!(
                    "Invalid input for operation: cidr {cidr} does not match ip_version {v}."
                )));
            }
        }
        let gateway = match new.gateway_ip {
            None => Some(cidr.default_gateway()),
            Some(g) => g,
        };
        if let Some(g) = gateway {
            if !cidr.hosts().contains(g) {
                return Err(NetError::BadRequest(format!(
                    "Invalid input for operation: Gateway IP {g} is not valid on subnet {cidr}."
                )));
            }
        }
        let pools = match new.allocation_pools {
            None => cidr.default_pools(gateway),
            Some(pools) => {
                for (i, p) in pools.iter().enumerate() {
                    p.check(&cidr).map_err(|m| NetError::BadRequest(format!("Invalid input for operation: {m}.")))?;
                    if pools[..i].iter().any(|o| o.overlaps(p)) {
                        return Err(NetError::BadRequest(format!(
                            "Invalid input for operation: allocation pool {}-{} overlaps another pool.",
                            p.start, p.end
                        )));
                    }
                    if let Some(g) = gateway.filter(|g| p.contains(*g)) {
                        return Err(NetError::Conflict(format!(
                            "Gateway ip {g} conflicts with allocation pool {}-{}.",
                            p.start, p.end
                        )));
                    }
                }
                pools
            }
        };
        let t = now();
        let mut subnet = Subnet::new(&uuid::Uuid::new_v4().to_string(), &net.id, &project_id, cidr, t);
        subnet.name = new.name;
        subnet.description = new.description;
        subnet.gateway_ip = gateway;
        subnet.allocation_pools = pools;
        for r in &new.host_routes {
            r.check(&cidr).map_err(|e| NetError::BadRequest(e.to_string()))?;
        }
        subnet.dns_nameservers = new.dns_nameservers;
        subnet.host_routes = new.host_routes;
        subnet.enable_dhcp = new.enable_dhcp;
        let mut dhcp_port = Port::new(&uuid::Uuid::new_v4().to_string(), &net.id, &net.project_id, Mac::random(), t);
        dhcp_port.device_id = format!("dhcp-{}", net.id);
        dhcp_port.device_owner = DHCP_OWNER.into();
        dhcp_port.host = self.settings.host.clone();
        let id = subnet.id.clone();
        self.propose(Command::Network(NetworkCommand::CreateSubnet {
            subnet: Box::new(subnet),
            dhcp_port: Some(dhcp_port),
        }))
        .await?;
        self.get_subnet(auth, &id)
    }

    pub async fn update_subnet(&self, auth: &Auth, id: &str, mut patch: SubnetPatch) -> Result<Subnet> {
        let s = self.get_subnet(auth, id)?;
        if !Self::owns(auth, &s.project_id) {
            return Err(forbidden("update_subnet"));
        }
        for r in patch.host_routes.iter().flatten() {
            r.check(&s.cidr).map_err(|e| NetError::BadRequest(e.to_string()))?;
        }
        patch.updated_at = now();
        self.propose(Command::Network(NetworkCommand::UpdateSubnet { id: id.into(), patch })).await?;
        self.get_subnet(auth, id)
    }

    pub async fn delete_subnet(&self, auth: &Auth, id: &str) -> Result<()> {
        let s = self.get_subnet(auth, id)?;
        if !Self::owns(auth, &s.project_id) {
            return Err(forbidden("delete_subnet"));
        }
        self.propose(Command::Network(NetworkCommand::DeleteSubnet { id: id.into() })).await
    }

    // ---- ports

    fn sees_port(&self, auth: &Auth, p: &Port, nets: &std::collections::BTreeMap<String, Network>) -> bool {
        auth.is_admin()
            || Self::owns(auth, &p.project_id)
            || nets.get(&p.network_id).is_some_and(|n| Self::owns(auth, &n.project_id))
    }

    pub fn list_ports(&self, auth: &Auth) -> Result<Vec<Port>> {
        let nets = self.network_visible_map(auth)?;
        let mut v: Vec<Port> = self.view()?.ports()?.into_iter().filter(|p| self.sees_port(auth, p, &nets)).collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(v)
    }

    pub fn get_port(&self, auth: &Auth, id: &str) -> Result<Port> {
        let nets = self.network_visible_map(auth)?;
        self.view()?
            .port(id)?
            .filter(|p| self.sees_port(auth, p, &nets))
            .ok_or_else(|| NetError::NotFound { kind: Kind::Port, id: id.into() })
    }

    pub async fn create_port(&self, auth: &Auth, new: NewPort) -> Result<Port> {
        let project_id = owner(auth, new.project_id.clone(), "create_port")?;
        let net = self.get_network(auth, &new.network_id)?;
        if !Self::owns(auth, &net.project_id) && !net.shared {
            return Err(forbidden("create_port"));
        }
        if !auth.is_admin() && !new.host.is_empty() {
            return Err(forbidden("create_port:binding:host_id"));
        }
        let mac = new.mac_address.unwrap_or_else(Mac::random);
        let mut port = Port::new(&uuid::Uuid::new_v4().to_string(), &net.id, &project_id, mac, now());
        port.name = new.name;
        port.description = new.description;
        port.device_id = new.device_id;
        port.device_owner = new.device_owner;
        port.admin_state_up = new.admin_state_up;
        port.host = new.host;
        let id = port.id.clone();
        self.propose(Command::Network(NetworkCommand::CreatePort { port, ips: new.fixed_ips })).await?;
        self.get_port(auth, &id)
    }

    pub async fn update_port(&self, auth: &Auth, id: &str, mut patch: PortPatch) -> Result<Port> {
        let p = self.get_port(auth, id)?;
        if !Self::owns(auth, &p.project_id) {
            return Err(forbidden("update_port"));
        }
        if !auth.is_admin() && patch.host.is_some() {
            return Err(forbidden("update_port:binding:host_id"));
        }
        patch.updated_at = now();
        self.propose(Command::Network(NetworkCommand::UpdatePort { id: id.into(), patch })).await?;
        self.get_port(auth, id)
    }

    pub async fn delete_port(&self, auth: &Auth, id: &str) -> Result<()> {
        let p = self.get_port(auth, id)?;
        if !Self::owns(auth, &p.project_id) {
            return Err(forbidden("delete_port"));
        }
        self.propose(Command::Network(NetworkCommand::DeletePort { id: id.into() })).await
    }
}
