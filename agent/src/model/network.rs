//! Plain data of Neutron's resources (networks, subnets, ports) and the address arithmetic
//! IPAM needs: CIDRs, allocation pools and MAC addresses, for IPv4 and IPv6 alike (addresses
//! are handled as `u128`). No I/O.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The device owner Neutron gives the DHCP server's port.
pub const DHCP_OWNER: &str = "network:dhcp";
/// The lowest and highest usable VLAN ids (0 and 4095 are reserved by 802.1Q).
pub const VLAN_MIN: u16 = 1;
pub const VLAN_MAX: u16 = 4094;
/// The MTU networks report and bridges get.
pub const DEFAULT_MTU: u32 = 1500;

/// Why an address, range or MAC was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetModelError {
    #[error("'{0}' is not a valid IP address")]
    BadIp(String),
    #[error("'{0}' is not a valid CIDR")]
    BadCidr(String),
    #[error("'{given}' isn't a recommended CIDR, '{canonical}' should be specified instead")]
    HostBits { given: String, canonical: String },
    #[error("CIDR {0} leaves no room for hosts")]
    TooSmall(String),
    #[error("'{0}' is not a valid MAC address")]
    BadMac(String),
    #[error("'{0}' is not a unicast MAC address")]
    MulticastMac(String),
    #[error("invalid VLAN id {0}: must be between {VLAN_MIN} and {VLAN_MAX}")]
    BadVlan(i64),
    #[error("{0}")]
    HostRoute(String),
    #[error("allocation pool {start}-{end} has its start after its end")]
    PoolReversed { start: IpAddr, end: IpAddr },
    #[error("allocation pool {start}-{end} is outside the subnet's host range {cidr}")]
    PoolOutside { start: IpAddr, end: IpAddr, cidr: String },
}

/// Serde through the text form (`#[serde(try_from = "String", into = "String")]`).
macro_rules! via_string {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = NetModelError;
            fn try_from(s: String) -> Result<Self, NetModelError> {
                s.parse()
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    };
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    }
}

/// A parsed IP address.
pub fn parse_ip(s: &str) -> Result<IpAddr, NetModelError> {
    IpAddr::from_str(s.trim()).map_err(|_| NetModelError::BadIp(s.into()))
}

/// A network prefix with no host bits set, e.g. `10.0.0.0/24` or `fd00::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, NetModelError> {
        let s = format!("{addr}/{prefix}");
        let max = if addr.is_ipv6() { 128 } else { 32 };
        if prefix > max {
            return Err(NetModelError::BadCidr(s));
        }
        let c = Self { addr, prefix };
        if to_u128(addr) != c.first() {
            let canonical = format!("{}/{prefix}", from_u128(c.first(), addr.is_ipv6()));
            return Err(NetModelError::HostBits { given: s, canonical });
        }
        Ok(c)
    }

    /// A subnet's prefix leaves room for a gateway and at least one more host (a route's
    /// destination may be any prefix, down to one address).
    pub fn check_subnet(&self) -> Result<(), NetModelError> {
        let max = if self.is_v6() { 128 } else { 32 };
        if max - self.prefix < 2 {
            return Err(NetModelError::TooSmall(self.to_string()));
        }
        Ok(())
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }
    pub fn version(&self) -> u8 {
        if self.is_v6() {
            6
        } else {
            4
        }
    }

    fn host_bits(&self) -> u32 {
        u32::from(if self.is_v6() { 128 } else { 32 } - self.prefix)
    }

    fn mask(&self) -> u128 {
        let bits = self.host_bits();
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }

    fn first(&self) -> u128 {
        to_u128(self.addr) & !self.mask()
    }

    fn last(&self) -> u128 {
        self.first() | self.mask()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_v6() && (self.first()..=self.last()).contains(&to_u128(ip))
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.is_v6() == other.is_v6() && self.first() <= other.last() && other.first() <= self.last()
    }

    /// The conventional gateway: the first host address.
    pub fn default_gateway(&self) -> IpAddr {
        from_u128(self.first() + 1, self.is_v6())
    }

    /// Host addresses: IPv4 leaves out the network and broadcast addresses, IPv6 the
    /// subnet-router anycast address.
    pub fn hosts(&self) -> Pool {
        let last = if self.is_v6() { self.last() } else { self.last() - 1 };
        Pool { start: from_u128(self.first() + 1, self.is_v6()), end: from_u128(last, self.is_v6()) }
    }

    /// Neutron's default allocation pools: every host address except the gateway.
    pub fn default_pools(&self, gateway: Option<IpAddr>) -> Vec<Pool> {
        let hosts = self.hosts();
        match gateway {
            Some(g) if hosts.contains(g) => hosts.without(g),
            _ => vec![hosts],
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = NetModelError;
    fn from_str(s: &str) -> Result<Self, NetModelError> {
        let bad = || NetModelError::BadCidr(s.into());
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr = IpAddr::from_str(a).map_err(|_| bad())?;
        let prefix = p.parse::<u8>().map_err(|_| bad())?;
        Self::new(addr, prefix)
    }
}

via_string!(Cidr);

/// An inclusive range of addresses handed out by IPAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.start.is_ipv6() && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    pub fn overlaps(&self, o: &Pool) -> bool {
        to_u128(self.start) <= to_u128(o.end) && to_u128(o.start) <= to_u128(self.end)
    }

    /// The pool split around `ip` (which it contains).
    fn without(&self, ip: IpAddr) -> Vec<Pool> {
        let (s, e, x, v6) = (to_u128(self.start), to_u128(self.end), to_u128(ip), ip.is_ipv6());
        let mut out = Vec::new();
        if x > s {
            out.push(Pool { start: self.start, end: from_u128(x - 1, v6) });
        }
        if x < e {
            out.push(Pool { start: from_u128(x + 1, v6), end: self.end });
        }
        out
    }

    /// Checks the pool against its subnet: same family, inside the host range, start ≤ end.
    pub fn check(&self, cidr: &Cidr) -> Result<(), NetModelError> {
        let hosts = cidr.hosts();
        let (start, end) = (self.start, self.end);
        if to_u128(start) > to_u128(end) {
            return Err(NetModelError::PoolReversed { start, end });
        }
        if !hosts.contains(start) || !hosts.contains(end) {
            return Err(NetModelError::PoolOutside { start, end, cidr: cidr.to_string() });
        }
        Ok(())
    }

    /// The lowest address of the pool not in `taken` (sorted ascending), if any.
    pub fn first_free(&self, taken: &[u128]) -> Option<IpAddr> {
        let (mut cand, end) = (to_u128(self.start), to_u128(self.end));
        let from = taken.partition_point(|t| *t < cand);
        for t in &taken[from..] {
            if *t > cand || cand > end {
                break;
            }
            cand = t.checked_add(1)?;
        }
        (cand <= end).then(|| from_u128(cand, self.start.is_ipv6()))
    }
}

/// The sortable key of an address (for allocation tables).
pub fn ip_key(ip: IpAddr) -> u128 {
    to_u128(ip)
}

/// A unicast MAC address, written `fa:16:3e:…` in lowercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A random address under OpenStack's prefix fa:16:3e (locally administered).
    pub fn random() -> Self {
        let r: [u8; 3] = rand::random();
        Mac([0xfa, 0x16, 0x3e, r[0], r[1], r[2]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for Mac {
    type Err = NetModelError;
    fn from_str(s: &str) -> Result<Self, NetModelError> {
        let bad = || NetModelError::BadMac(s.into());
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if b[0] & 1 == 1 || b == [0; 6] {
            return Err(NetModelError::MulticastMac(s.into()));
        }
        Ok(Mac(b))
    }
}

via_string!(Mac);

/// An 802.1Q VLAN id, [`VLAN_MIN`] to [`VLAN_MAX`]: any other number is refused, also when a
/// record or a request is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct VlanId(u16);

impl VlanId {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for VlanId {
    type Error = NetModelError;
    fn try_from(id: i64) -> Result<Self, NetModelError> {
        check_vlan(id)
    }
}

impl From<VlanId> for u16 {
    fn from(v: VlanId) -> u16 {
        v.0
    }
}

impl std::fmt::Display for VlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Checks a VLAN id given as a number.
pub fn check_vlan(id: i64) -> Result<VlanId, NetModelError> {
    u16::try_from(id).ok().filter(|v| (VLAN_MIN..=VLAN_MAX).contains(v)).map(VlanId).ok_or(NetModelError::BadVlan(id))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    Vlan,
    Flat,
}

impl NetworkType {
    pub fn as_str(&self) -> &'static str {
        match self {
            NetworkType::Vlan => "vlan",
            NetworkType::Flat => "flat",
        }
    }
}

/// Where a network meets the wire: a VLAN id on a physical network, or the physical network
/// itself (flat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub network_type: NetworkType,
    pub physical_network: String,
    /// The VLAN id; `None` for flat networks.
    pub segmentation_id: Option<VlanId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    /// Neutron names may be empty and need not be unique.
    pub name: String,
    pub project_id: String,
    pub description: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub external: bool,
    pub mtu: u32,
    pub segment: Segment,
    /// Unix seconds, from the API node's clock (travels in the command).
    pub created_at: u64,
    pub updated_at: u64,
}

/// A static route a subnet's DHCP hands out (Neutron's `host_routes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: Cidr,
    pub nexthop: IpAddr,
}

impl HostRoute {
    /// Checked against the subnet it is for: both of its IP version.
    pub fn check(&self, subnet: &Cidr) -> Result<(), NetModelError> {
        let v = |ip: &IpAddr| if ip.is_ipv4() { 4 } else { 6 };
        if self.destination.version() != subnet.version() || v(&self.nexthop) != subnet.version() {
            return Err(NetModelError::HostRoute(format!(
                "host route {} via {} is not of the subnet's IP version {}",
                self.destination,
                self.nexthop,
                subnet.version()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub project_id: String,
    pub description: String,
    pub cidr: Cidr,
    pub gateway_ip: Option<IpAddr>,
    pub allocation_pools: Vec<Pool>,
    pub dns_nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
    pub enable_dhcp: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One address of a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: IpAddr,
}

/// An address a new port asks for: a subnet (any free address of it), an address (in
/// whichever subnet holds it), or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRequest {
    pub subnet_id: Option<String>,
    pub ip_address: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub project_id: String,
    pub description: String,
    pub mac_address: Mac,
    /// Filled by IPAM when the create command is applied.
    pub fixed_ips: Vec<FixedIp>,
    pub device_id: String,
    pub device_owner: String,
    pub admin_state_up: bool,
    /// The node whose agent plugs the port (`binding:host_id`); empty until bound.
    pub host: String,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Network {
    /// A network with Neutron's defaults: up, private, internal, the default MTU.
    pub fn new(id: &str, name: &str, project_id: &str, segment: Segment, now: u64) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            project_id: project_id.into(),
            description: String::new(),
            admin_state_up: true,
            shared: false,
            external: false,
            mtu: DEFAULT_MTU,
            segment,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Subnet {
    /// A DHCP-enabled subnet with the conventional gateway (the first host) and default pools.
    pub fn new(id: &str, network_id: &str, project_id: &str, cidr: Cidr, now: u64) -> Self {
        let gateway = cidr.default_gateway();
        Self {
            id: id.into(),
            name: String::new(),
            network_id: network_id.into(),
            project_id: project_id.into(),
            description: String::new(),
            cidr,
            gateway_ip: Some(gateway),
            allocation_pools: cidr.default_pools(Some(gateway)),
            dns_nameservers: vec![],
            host_routes: vec![],
            enable_dhcp: true,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Port {
    /// A port with Neutron's defaults: unnamed, up, no device, unbound; IPAM fills `fixed_ips`.
    pub fn new(id: &str, network_id: &str, project_id: &str, mac_address: Mac, now: u64) -> Self {
        Self {
            id: id.into(),
            name: String::new(),
            network_id: network_id.into(),
            project_id: project_id.into(),
            description: String::new(),
            mac_address,
            fixed_ips: vec![],
            device_id: String::new(),
            device_owner: String::new(),
            admin_state_up: true,
            host: String::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Neutron's port status: a DHCP port is served by the network node at once; any other
    /// port is DOWN until something is plugged into it.
    pub fn status(&self) -> &'static str {
        if !self.admin_state_up {
            "DOWN"
        } else if self.device_owner == DHCP_OWNER || !self.host.is_empty() {
            "ACTIVE"
        } else {
            "DOWN"
        }
    }
}

/// Fields a network update may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    pub external: Option<bool>,
    pub updated_at: u64,
}

/// Fields a subnet update may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub dns_nameservers: Option<Vec<IpAddr>>,
    #[serde(default)]
    pub host_routes: Option<Vec<HostRoute>>,
    /// A new gateway (`Some(None)`: none); within the CIDR, outside the pools, no port's.
    #[serde(default)]
    pub gateway_ip: Option<Option<IpAddr>>,
    pub updated_at: u64,
}

/// Fields a port update may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    pub host: Option<String>,
    pub updated_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_compare() {
        let c: Cidr = "10.0.0.0/24".parse().unwrap();
        assert!(c.contains(ip("10.0.0.255")) && !c.contains(ip("10.0.1.0")) && !c.contains(ip("fd00::1")));
        assert_eq!(c.default_gateway(), ip("10.0.0.1"));
        assert_eq!(c.hosts(), Pool { start: ip("10.0.0.1"), end: ip("10.0.0.254") });
        assert_eq!(c.default_pools(Some(ip("10.0.0.1"))), vec![Pool { start: ip("10.0.0.2"), end: ip("10.0.0.254") }]);
        assert_eq!(
            c.default_pools(Some(ip("10.0.0.100"))),
            vec![
                Pool { start: ip("10.0.0.1"), end: ip("10.0.0.99") },
                Pool { start: ip("10.0.0.101"), end: ip("10.0.0.254") }
            ]
        );
        assert!(c.overlaps(&"10.0.0.128/25".parse().unwrap()));
        assert!(!c.overlaps(&"10.0.1.0/24".parse().unwrap()));
        assert!(matches!("10.0.0.5/24".parse::<Cidr>(), Err(NetModelError::HostBits { .. })));
        let tiny: Cidr = "10.0.0.0/31".parse().unwrap();
        assert!(matches!(tiny.check_subnet(), Err(NetModelError::TooSmall(_))));
        assert!("10.20.0.0/32".parse::<Cidr>().is_ok(), "a route's destination may be one address");
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/24", "10.0.0.0/-1"] {
            assert!(matches!(bad.parse::<Cidr>(), Err(NetModelError::BadCidr(_))), "{bad}");
        }
        let v6: Cidr = "fd00:1::/64".parse().unwrap();
        assert_eq!(v6.version(), 6);
        assert_eq!(v6.hosts().end, ip("fd00:1::ffff:ffff:ffff:ffff"));
        assert_eq!(serde_json::to_string(&v6).unwrap(), "\"fd00:1::/64\"");
    }

    #[test]
    fn first_free_skips_taken() {
        let p = Pool { start: ip("10.0.0.2"), end: ip("10.0.0.5") };
        let k = |s: &str| ip_key(ip(s));
        assert_eq!(p.first_free(&[]), Some(ip("10.0.0.2")));
        assert_eq!(p.first_free(&[k("10.0.0.1"), k("10.0.0.2"), k("10.0.0.3")]), Some(ip("10.0.0.4")));
        assert_eq!(p.first_free(&[k("10.0.0.3")]), Some(ip("10.0.0.2")));
        assert_eq!(p.first_free(&[k("10.0.0.2"), k("10.0.0.3"), k("10.0.0.4"), k("10.0.0.5")]), None);
        let c: Cidr = "10.0.0.0/24".parse().unwrap();
        assert!(p.check(&c).is_ok());
        assert!(Pool { start: ip("10.0.0.0"), end: ip("10.0.0.5") }.check(&c).is_err());
        assert!(Pool { start: ip("10.0.0.9"), end: ip("10.0.0.5") }.check(&c).is_err());
    }

    #[test]
    fn macs_and_vlans() {
        let m: Mac = "FA:16:3E:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "fa:16:3e:00:00:01");
        assert!(matches!("01:00:5e:00:00:01".parse::<Mac>(), Err(NetModelError::MulticastMac(_))));
        assert!("fa:16:3e:00:00".parse::<Mac>().is_err());
        assert_eq!(Mac::random().0[..3], [0xfa, 0x16, 0x3e]);
        assert_eq!(check_vlan(1).map(VlanId::get), Ok(1));
        assert_eq!(check_vlan(4094).map(VlanId::get), Ok(4094));
        // A record naming a VLAN out of range does not read.
        assert!(serde_json::from_str::<VlanId>("4095").is_err() && serde_json::from_str::<VlanId>("0").is_err());
        assert_eq!(serde_json::to_string(&check_vlan(100).unwrap()).unwrap(), "100");
        for bad in [0, 4095, -1, 70000] {
            assert_eq!(check_vlan(bad), Err(NetModelError::BadVlan(bad)));
        }
    }
}
