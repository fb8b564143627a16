//! Applying Neutron's commands: networks with their segments, subnets, and ports with IPAM.
//! Each command first reads and decides everything (segment, addresses, MAC), then writes, so
//! a refused command writes nothing. Allocation happens here, in log order, so two ports
//! created at the same moment on different nodes never get the same address.

use super::apply::{load, not_found, store};
use super::{Kind, Outcome, Refusal, StateError, IP_ALLOC, MACS, NETWORKS, PORTS, SEGMENTS, SUBNETS};
use crate::model::network::{
    check_vlan, ip_key, FixedIp, IpRequest, Network, NetworkType, Port, Segment, Subnet, DHCP_OWNER, VLAN_MAX, VLAN_MIN,
};
use crate::state::NetworkCommand;
use redb::{ReadableTable, WriteTransaction};
use std::net::IpAddr;

pub(super) fn apply(tx: &WriteTransaction, cmd: &NetworkCommand) -> Result<Outcome, StateError> {
    match cmd {
        NetworkCommand::CreateNetwork { network, auto_vlan } => create_network(tx, network, *auto_vlan),
        NetworkCommand::UpdateNetwork { id, patch } => {
            let Some(mut n) = load::<Network>(tx, NETWORKS, id)? else { return Ok(Err(not_found(Kind::Network, id))) };
            if let Some(v) = &patch.name {
                n.name = v.clone();
            }
            if let Some(v) = &patch.description {
                n.description = v.clone();
            }
            if let Some(v) = patch.admin_state_up {
                n.admin_state_up = v;
            }
            if let Some(v) = patch.shared {
                n.shared = v;
            }
            if let Some(v) = patch.external {
                n.external = v;
            }
            n.updated_at = patch.updated_at;
            store(tx, NETWORKS, id, &n)?;
            Ok(Ok(()))
        }
        NetworkCommand::DeleteNetwork { id } => delete_network(tx, id),
        NetworkCommand::CreateSubnet { subnet, dhcp_port } => create_subnet(tx, subnet, dhcp_port),
        NetworkCommand::UpdateSubnet { id, patch } => {
            let Some(mut s) = load::<Subnet>(tx, SUBNETS, id)? else { return Ok(Err(not_found(Kind::Subnet, id))) };
            if let Some(v) = &patch.name {
                s.name = v.clone();
            }
            if let Some(v) = &patch.description {
                s.description = v.clone();
            }
            if let Some(v) = &patch.dns_nameservers {
                s.dns_nameservers = v.clone();
            }
            if let Some(v) = &patch.host_routes {
                s.host_routes = v.clone();
            }
            if let Some(g) = patch.gateway_ip {
                if let Some(refused) = check_gateway(tx, &s, g)? {
                    return Ok(Err(refused));
                }
                s.gateway_ip = g;
            }
            s.updated_at = patch.updated_at;
            store(tx, SUBNETS, id, &s)?;
            Ok(Ok(()))
        }
        NetworkCommand::DeleteSubnet { id } => delete_subnet(tx, id),
        NetworkCommand::CreatePort { port, ips } => create_port(tx, port, ips.as_deref()),
        NetworkCommand::UpdatePort { id, patch } => {
            let Some(mut p) = load::<Port>(tx, PORTS, id)? else { return Ok(Err(not_found(Kind::Port, id))) };
            if let Some(v) = &patch.name {
                p.name = v.clone();
            }
            if let Some(v) = &patch.description {
                p.description = v.clone();
            }
            if let Some(v) = patch.admin_state_up {
                p.admin_state_up = v;
            }
            if let Some(v) = &patch.device_id {
                p.device_id = v.clone();
            }
            if let Some(v) = &patch.device_owner {
                p.device_owner = v.clone();
            }
            if let Some(v) = &patch.host {
                p.host = v.clone();
            }
            p.updated_at = patch.updated_at;
            store(tx, PORTS, id, &p)?;
            Ok(Ok(()))
        }
        NetworkCommand::DeletePort { id } => {
            let Some(p) = load::<Port>(tx, PORTS, id)? else { return Ok(Err(not_found(Kind::Port, id))) };
            remove_port(tx, &p)?;
            Ok(Ok(()))
        }
    }
}

fn conflict(msg: String) -> Outcome {
    Err(Refusal::Conflicts(msg))
}

/// Key of a segment in the [`SEGMENTS`] table.
pub(super) fn segment_key(s: &Segment) -> String {
    match (s.network_type, s.segmentation_id) {
        (NetworkType::Vlan, Some(v)) => format!("{}\0vlan\0{:04}", s.physical_network, v.get()),
        (NetworkType::Vlan, None) => format!("{}\0vlan\0", s.physical_network),
        (NetworkType::Flat, _) => format!("{}\0flat", s.physical_network),
    }
}

fn alloc_key(subnet_id: &str, ip: IpAddr) -> String {
    format!("{subnet_id}\0{:032x}", ip_key(ip))
}

fn mac_key(p: &Port) -> String {
    format!("{}\0{}", p.network_id, p.mac_address)
}

fn create_network(tx: &WriteTransaction, n: &Network, auto_vlan: Option<(u16, u16)>) -> Result<Outcome, StateError> {
    if load::<Network>(tx, NETWORKS, &n.id)?.is_some() {
        return Ok(Err(Refusal::Conflict { kind: Kind::Network, name: n.id.clone() }));
    }
    let mut n = n.clone();
    let segs = tx.open_table(SEGMENTS)?;
    if n.segment.network_type == NetworkType::Vlan && n.segment.segmentation_id.is_none() {
        let (lo, hi) = auto_vlan.unwrap_or((VLAN_MIN, VLAN_MAX));
        let mut free = None;
        for vid in (lo.max(VLAN_MIN)..=hi.min(VLAN_MAX)).filter_map(|v| check_vlan(v.into()).ok()) {
            let mut s = n.segment.clone();
            s.segmentation_id = Some(vid);
            if segs.get(segment_key(&s).as_str())?.is_none() {
                free = Some(vid);
                break;
            }
        }
        let Some(vid) = free else {
            return Ok(Err(Refusal::Exhausted(format!(
                "Unable to create the network. No tenant network is available for allocation on physical network {}.",
                n.segment.physical_network
            ))));
        };
        n.segment.segmentation_id = Some(vid);
    }
    let key = segment_key(&n.segment);
    if segs.get(key.as_str())?.is_some() {
        let p = &n.segment.physical_network;
        return Ok(conflict(match n.segment.segmentation_id {
            Some(v) => format!("Unable to create the network. The VLAN {v} on physical network {p} is in use."),
            None => format!("Unable to create the flat network. Physical network {p} is in use."),
        }));
    }
    drop(segs);
    tx.open_table(SEGMENTS)?.insert(key.as_str(), n.id.as_str())?;
    store(tx, NETWORKS, &n.id, &n)?;
    Ok(Ok(()))
}

fn rows<T: serde::de::DeserializeOwned>(
    tx: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StateError> {
    let t = tx.open_table(table)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        let item: T = serde_json::from_slice(v.value())?;
        if keep(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

fn ports_of(tx: &WriteTransaction, network_id: &str) -> Result<Vec<Port>, StateError> {
    rows(tx, PORTS, |p: &Port| p.network_id == network_id)
}

/// The network's subnets in creation order (the order automatic allocation tries them).
fn subnets_of(tx: &WriteTransaction, network_id: &str) -> Result<Vec<Subnet>, StateError> {
    let mut v = rows(tx, SUBNETS, |s: &Subnet| s.network_id == network_id)?;
    v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(v)
}

fn remove_port(tx: &WriteTransaction, p: &Port) -> Result<(), StateError> {
    let mut alloc = tx.open_table(IP_ALLOC)?;
    for f in &p.fixed_ips {
        alloc.remove(alloc_key(&f.subnet_id, f.ip_address).as_str())?;
    }
    tx.open_table(MACS)?.remove(mac_key(p).as_str())?;
    tx.open_table(PORTS)?.remove(p.id.as_str())?;
    Ok(())
}

fn delete_network(tx: &WriteTransaction, id: &str) -> Result<Outcome, StateError> {
    let Some(n) = load::<Network>(tx, NETWORKS, id)? else { return Ok(Err(not_found(Kind::Network, id))) };
    let ports = ports_of(tx, id)?;
    if ports.iter().any(|p| p.device_owner != DHCP_OWNER) {
        return Ok(conflict(format!(
            "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
        )));
    }
    for p in &ports {
        remove_port(tx, p)?;
    }
    let doomed = subnets_of(tx, id)?;
    let mut subnets = tx.open_table(SUBNETS)?;
    for s in doomed {
        subnets.remove(s.id.as_str())?;
    }
    drop(subnets);
    tx.open_table(SEGMENTS)?.remove(segment_key(&n.segment).as_str())?;
    tx.open_table(NETWORKS)?.remove(id)?;
    Ok(Ok(()))
}

/// Addresses taken in `subnet`, ascending, plus `extra` (picked earlier in the same command).
fn taken(tx: &WriteTransaction, subnet_id: &str, extra: &[FixedIp]) -> Result<Vec<u128>, StateError> {
    let (start, end) = (format!("{subnet_id}\0"), format!("{subnet_id}\u{1}"));
    let t = tx.open_table(IP_ALLOC)?;
    let mut out = Vec::new();
    for row in t.range(start.as_str()..end.as_str())? {
        let (k, _) = row?;
        if let Some(v) = k.value().rsplit('\0').next().and_then(|h| u128::from_str_radix(h, 16).ok()) {
            out.push(v);
        }
    }
    out.extend(extra.iter().filter(|f| f.subnet_id == subnet_id).map(|f| ip_key(f.ip_address)));
    out.sort_unstable();
    Ok(out)
}

/// A subnet's new gateway: one of its hosts, outside its allocation pools, held by no port.
fn check_gateway(tx: &WriteTransaction, s: &Subnet, gateway: Option<IpAddr>) -> Result<Option<Refusal>, StateError> {
    let Some(g) = gateway else { return Ok(None) };
    if !s.cidr.hosts().contains(g) {
        return Ok(Some(Refusal::Invalid(format!(
            "Invalid input for operation: gateway {g} is not a host of subnet {} ({}).",
            s.id, s.cidr
        ))));
    }
    if s.allocation_pools.iter().any(|p| p.contains(g)) {
        return Ok(Some(Refusal::Conflicts(format!(
            "Gateway ip {g} conflicts with allocation pool of subnet {}.",
            s.id
        ))));
    }
    if taken(tx, &s.id, &[])?.binary_search(&ip_key(g)).is_ok() {
        return Ok(Some(Refusal::Conflicts(format!("Gateway ip {g} is in use by a port on subnet {}.", s.id))));
    }
    Ok(None)
}

fn allocate(tx: &WriteTransaction, s: &Subnet, extra: &[FixedIp]) -> Result<Option<IpAddr>, StateError> {
    let taken = taken(tx, &s.id, extra)?;
    Ok(s.allocation_pools.iter().find_map(|p| p.first_free(&taken)))
}

fn create_subnet(tx: &WriteTransaction, s: &Subnet, dhcp_port: &Option<Port>) -> Result<Outcome, StateError> {
    if load::<Network>(tx, NETWORKS, &s.network_id)?.is_none() {
        return Ok(Err(not_found(Kind::Network, &s.network_id)));
    }
    if load::<Subnet>(tx, SUBNETS, &s.id)?.is_some() {
        return Ok(Err(Refusal::Conflict { kind: Kind::Subnet, name: s.id.clone() }));
    }
    if let Some(o) = subnets_of(tx, &s.network_id)?.iter().find(|o| o.cidr.overlaps(&s.cidr)) {
        return Ok(Err(Refusal::Invalid(format!(
            "Invalid input for operation: Requested subnet with cidr: {} for network: {} overlaps with another subnet ({}).",
            s.cidr, s.network_id, o.cidr
        ))));
    }
    store(tx, SUBNETS, &s.id, s)?;
    // DHCP: the network's DHCP port takes an address of every DHCP-enabled subnet.
    let Some(template) = dhcp_port.as_ref().filter(|_| s.enable_dhcp) else { return Ok(Ok(())) };
    let existing = ports_of(tx, &s.network_id)?.into_iter().find(|p| p.device_owner == DHCP_OWNER);
    let mut port = existing.clone().unwrap_or_else(|| template.clone());
    if let Some(ip) = allocate(tx, s, &[])? {
        tx.open_table(IP_ALLOC)?.insert(alloc_key(&s.id, ip).as_str(), port.id.as_str())?;
        port.fixed_ips.push(FixedIp { subnet_id: s.id.clone(), ip_address: ip });
    }
    if existing.is_none() {
        tx.open_table(MACS)?.insert(mac_key(&port).as_str(), port.id.as_str())?;
    }
    store(tx, PORTS, &port.id, &port)?;
    Ok(Ok(()))
}

fn delete_subnet(tx: &WriteTransaction, id: &str) -> Result<Outcome, StateError> {
    let Some(s) = load::<Subnet>(tx, SUBNETS, id)? else { return Ok(Err(not_found(Kind::Subnet, id))) };
    let ports = ports_of(tx, &s.network_id)?;
    let on_subnet = |p: &Port| p.fixed_ips.iter().any(|f| f.subnet_id == id);
    if ports.iter().any(|p| on_subnet(p) && p.device_owner != DHCP_OWNER) {
        return Ok(conflict(format!(
            "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
        )));
    }
    for mut p in ports.into_iter().filter(on_subnet) {
        remove_port(tx, &p)?;
        p.fixed_ips.retain(|f| f.subnet_id != id);
        if !p.fixed_ips.is_empty() {
            let mut alloc = tx.open_table(IP_ALLOC)?;
            for f in &p.fixed_ips {
                alloc.insert(alloc_key(&f.subnet_id, f.ip_address).as_str(), p.id.as_str())?;
            }
            drop(alloc);
            tx.open_table(MACS)?.insert(mac_key(&p).as_str(), p.id.as_str())?;
            store(tx, PORTS, &p.id, &p)?;
        }
    }
    tx.open_table(SUBNETS)?.remove(id)?;
    Ok(Ok(()))
}

/// Decides a new port's addresses without writing anything.
fn plan_ips(
    tx: &WriteTransaction,
    port: &Port,
    ips: Option<&[IpRequest]>,
) -> Result<Result<Vec<FixedIp>, Refusal>, StateError> {
    let subnets = subnets_of(tx, &port.network_id)?;
    let net = &port.network_id;
    let mut out: Vec<FixedIp> = Vec::new();
    let Some(reqs) = ips else {
        // Automatic: one address per IP version, from the first subnet with room.
        for v6 in [false, true] {
            let family: Vec<&Subnet> = subnets.iter().filter(|s| s.cidr.is_v6() == v6).collect();
            if family.is_empty() {
                continue;
            }
            let mut got = false;
            for s in family {
                if let Some(ip) = allocate(tx, s, &out)? {
                    out.push(FixedIp { subnet_id: s.id.clone(), ip_address: ip });
                    got = true;
                    break;
                }
            }
            if !got {
                return Ok(Err(Refusal::Conflicts(format!("No more IP addresses available on network {net}."))));
            }
        }
        return Ok(Ok(out));
    };
    for r in reqs {
        let subnet = match (&r.subnet_id, r.ip_address) {
            (Some(sid), _) => match subnets.iter().find(|s| &s.id == sid) {
                Some(s) => s,
                None => {
                    return Ok(Err(Refusal::Invalid(format!(
                        "Invalid input for operation: Failed to create port on network {net}, because fixed_ips included invalid subnet {sid}."
                    ))))
                }
            },
            (None, Some(ip)) => match subnets.iter().find(|s| s.cidr.contains(ip)) {
                Some(s) => s,
                None => {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "IP address {ip} is not a valid IP for any subnet on network {net}."
                    ))))
                }
            },
            (None, None) => {
                return Ok(Err(Refusal::Invalid("Invalid input for operation: a fixed_ips entry needs subnet_id or ip_address.".into())))
            }
        };
        let ip = match r.ip_address {
            Some(ip) => {
                if !subnet.cidr.contains(ip) || !subnet.cidr.hosts().contains(ip) {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "IP address {ip} is not a valid IP for the specified subnet {} ({}).",
                        subnet.id, subnet.cidr
                    ))));
                }
                if subnet.gateway_ip == Some(ip) && !port.device_owner.starts_with("network:router") {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "IP address {ip} is the gateway of subnet {}.",
                        subnet.id
                    ))));
                }
                if taken(tx, &subnet.id, &out)?.binary_search(&ip_key(ip)).is_ok() {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "IP address {ip} already allocated in subnet {}",
                        subnet.id
                    ))));
                }
                ip
            }
            None => match allocate(tx, subnet, &out)? {
                Some(ip) => ip,
                None => {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "No more IP addresses available on subnet {}.",
                        subnet.id
                    ))))
                }
            },
        };
        out.push(FixedIp { subnet_id: subnet.id.clone(), ip_address: ip });
    }
    Ok(Ok(out))
}

fn create_port(tx: &WriteTransaction, p: &Port, ips: Option<&[IpRequest]>) -> Result<Outcome, StateError> {
    if load::<Network>(tx, NETWORKS, &p.network_id)?.is_none() {
        return Ok(Err(not_found(Kind::Network, &p.network_id)));
    }
    if load::<Port>(tx, PORTS, &p.id)?.is_some() {
        return Ok(Err(Refusal::Conflict { kind: Kind::Port, name: p.id.clone() }));
    }
    if tx.open_table(MACS)?.get(mac_key(p).as_str())?.is_some() {
        return Ok(conflict(format!(
            "Unable to complete operation for network {}. The mac address {} is in use.",
            p.network_id, p.mac_address
        )));
    }
    let fixed = match plan_ips(tx, p, ips)? {
        Ok(f) => f,
        Err(r) => return Ok(Err(r)),
    };
    let mut port = p.clone();
    port.fixed_ips = fixed;
    let mut alloc = tx.open_table(IP_ALLOC)?;
    for f in &port.fixed_ips {
        alloc.insert(alloc_key(&f.subnet_id, f.ip_address).as_str(), port.id.as_str())?;
    }
    drop(alloc);
    tx.open_table(MACS)?.insert(mac_key(&port).as_str(), port.id.as_str())?;
    store(tx, PORTS, &port.id, &port)?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::super::apply::run;
    use super::*;
    use crate::model::network::{Mac, Pool};
    use crate::state::raft::Replicated;
    use crate::state::Command;
    use crate::state::Store;
    use redb::ReadableTableMetadata;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.redb")).unwrap();
        (dir, s)
    }

    fn net(id: &str, ty: NetworkType, vid: Option<u16>) -> Network {
        let seg = Segment {
            network_type: ty,
            physical_network: "physnet1".into(),
            segmentation_id: vid.map(|v: u16| check_vlan(v.into()).unwrap()),
        };
        Network::new(id, id, "p", seg, 0)
    }

    fn subnet(id: &str, network: &str, cidr: &str, t: u64) -> Subnet {
        Subnet::new(id, network, "p", cidr.parse().unwrap(), t)
    }

    fn port(id: &str, network: &str, mac: u8) -> Port {
        Port::new(id, network, "p", Mac([0xfa, 0x16, 0x3e, 0, 0, mac]), 0)
    }

    fn create_net(n: Network) -> Command {
        Command::Network(NetworkCommand::CreateNetwork { network: n, auto_vlan: None })
    }

    fn ips(s: &Store, id: &str) -> Vec<String> {
        s.view().unwrap().port(id).unwrap().unwrap().fixed_ips.iter().map(|f| f.ip_address.to_string()).collect()
    }

    #[test]
    fn segments_are_unique_per_physical_network() {
        let (_d, s) = store();
        assert_eq!(run(&s, create_net(net("a", NetworkType::Vlan, Some(100)))), Ok(()));
        assert!(matches!(run(&s, create_net(net("b", NetworkType::Vlan, Some(100)))), Err(Refusal::Conflicts(_))));
        assert!(s.view().unwrap().network("b").unwrap().is_none());
        let mut other = net("c", NetworkType::Vlan, Some(100));
        other.segment.physical_network = "physnet2".into();
        assert_eq!(run(&s, create_net(other)), Ok(()), "same VLAN id on another physical network");
        assert_eq!(run(&s, create_net(net("f", NetworkType::Flat, None))), Ok(()));
        assert!(matches!(run(&s, create_net(net("g", NetworkType::Flat, None))), Err(Refusal::Conflicts(_))));
        // Automatic VLAN ids: the lowest free one of the range, then exhaustion.
        let auto = |id: &str| {
            Command::Network(NetworkCommand::CreateNetwork {
                network: net(id, NetworkType::Vlan, None),
                auto_vlan: Some((100, 101)),
            })
        };
        assert_eq!(run(&s, auto("x")), Ok(()));
        assert_eq!(s.view().unwrap().network("x").unwrap().unwrap().segment.segmentation_id, check_vlan(101).ok());
        assert!(matches!(run(&s, auto("y")), Err(Refusal::Exhausted(_))));
        // Deleting frees the segment.
        assert_eq!(run(&s, Command::Network(NetworkCommand::DeleteNetwork { id: "a".into() })), Ok(()));
        assert_eq!(run(&s, create_net(net("b", NetworkType::Vlan, Some(100)))), Ok(()));
    }

    #[test]
    fn ipam_allocates_without_duplicates_and_checks_requests() {
        let (_d, s) = store();
        run(&s, create_net(net("n", NetworkType::Vlan, Some(10)))).unwrap();
        let mut dhcp = port("dhcp", "n", 1);
        dhcp.device_owner = DHCP_OWNER.into();
        let sub = |id: &str, cidr: &str, t| {
            Command::Network(NetworkCommand::CreateSubnet {
                subnet: Box::new(subnet(id, "n", cidr, t)),
                dhcp_port: Some(dhcp.clone()),
            })
        };
        assert_eq!(run(&s, sub("s4", "10.0.0.0/29", 1)), Ok(()));
        assert_eq!(ips(&s, "dhcp"), ["10.0.0.2"], "the DHCP port takes the first free address");
        assert!(matches!(run(&s, sub("s4b", "10.0.0.4/30", 2)), Err(Refusal::Invalid(_))), "overlap refused");
        assert!(s.view().unwrap().subnet("s4b").unwrap().is_none());
        assert_eq!(run(&s, sub("s6", "fd00::/64", 3)), Ok(()));
        assert_eq!(ips(&s, "dhcp"), ["10.0.0.2", "fd00::2"], "one DHCP port, an address per subnet");

        let create = |id: &str, mac, req: Option<Vec<IpRequest>>| {
            Command::Network(NetworkCommand::CreatePort { port: port(id, "n", mac), ips: req })
        };
        assert_eq!(run(&s, create("p1", 2, None)), Ok(()));
        assert_eq!(ips(&s, "p1"), ["10.0.0.3", "fd00::3"]);
        let want = |ip: &str| Some(vec![IpRequest { subnet_id: None, ip_address: Some(ip.parse().unwrap()) }]);
        assert!(matches!(run(&s, create("p2", 3, want("10.0.0.3"))), Err(Refusal::Conflicts(_))), "taken");
        assert!(matches!(run(&s, create("p2", 3, want("10.9.0.3"))), Err(Refusal::Conflicts(_))), "outside");
        assert!(matches!(run(&s, create("p2", 3, want("10.0.0.1"))), Err(Refusal::Conflicts(_))), "gateway");
        assert!(matches!(run(&s, create("p2", 3, want("10.0.0.7"))), Err(Refusal::Conflicts(_))), "broadcast");
        assert!(matches!(run(&s, create("p2", 2, None)), Err(Refusal::Conflicts(_))), "MAC in use");
        let bad_subnet = Some(vec![IpRequest { subnet_id: Some("nope".into()), ip_address: None }]);
        assert!(matches!(run(&s, create("p2", 3, bad_subnet)), Err(Refusal::Invalid(_))));
        assert!(s.view().unwrap().port("p2").unwrap().is_none(), "refusals wrote nothing");
        assert_eq!(run(&s, create("p2", 3, want("10.0.0.6"))), Ok(()));
        // 10.0.0.2-6 are the pool; .2, .3 and .6 are taken: .4, .5, then full.
        let v4 = Some(vec![IpRequest { subnet_id: Some("s4".into()), ip_address: None }]);
        assert_eq!(run(&s, create("p3", 4, v4.clone())), Ok(()));
        assert_eq!(ips(&s, "p3"), ["10.0.0.4"]);
        assert_eq!(run(&s, create("p4", 5, v4.clone())), Ok(()));
        assert!(matches!(run(&s, create("p5", 6, v4.clone())), Err(Refusal::Conflicts(_))), "pool exhausted");
        assert_eq!(run(&s, Command::Network(NetworkCommand::DeletePort { id: "p3".into() })), Ok(()));
        assert_eq!(run(&s, create("p5", 6, v4)), Ok(()));
        assert_eq!(ips(&s, "p5"), ["10.0.0.4"], "a freed address is reused");

        // In use: neither the subnet nor the network can go while ports hold addresses.
        assert!(matches!(
            run(&s, Command::Network(NetworkCommand::DeleteSubnet { id: "s4".into() })),
            Err(Refusal::Conflicts(_))
        ));
        assert!(matches!(
            run(&s, Command::Network(NetworkCommand::DeleteNetwork { id: "n".into() })),
            Err(Refusal::Conflicts(_))
        ));
        for p in ["p1", "p2", "p4", "p5"] {
            run(&s, Command::Network(NetworkCommand::DeletePort { id: p.into() })).unwrap();
        }
        assert_eq!(run(&s, Command::Network(NetworkCommand::DeleteSubnet { id: "s6".into() })), Ok(()));
        assert_eq!(ips(&s, "dhcp"), ["10.0.0.2"], "the DHCP port lost its address on the deleted subnet");
        assert_eq!(run(&s, Command::Network(NetworkCommand::DeleteNetwork { id: "n".into() })), Ok(()));
        let v = s.view().unwrap();
        assert!(v.ports().unwrap().is_empty() && v.subnets().unwrap().is_empty() && v.networks().unwrap().is_empty());
        let tx = s.db().begin_write().unwrap();
        assert_eq!(tx.open_table(IP_ALLOC).unwrap().len().unwrap(), 0, "no address left allocated");
        assert_eq!(tx.open_table(MACS).unwrap().len().unwrap(), 0);
        assert_eq!(tx.open_table(SEGMENTS).unwrap().len().unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_port_creates_get_distinct_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        r.propose(create_net(net("n", NetworkType::Vlan, Some(5)))).await.unwrap().unwrap();
        let mut sn = subnet("s", "n", "10.1.0.0/24", 0);
        sn.allocation_pools = vec![Pool { start: "10.1.0.10".parse().unwrap(), end: "10.1.0.59".parse().unwrap() }];
        r.propose(Command::Network(NetworkCommand::CreateSubnet { subnet: Box::new(sn), dhcp_port: None }))
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<_> = (0..60u8)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move {
                    r.propose(Command::Network(NetworkCommand::CreatePort {
                        port: port(&format!("p{i}"), "n", i),
                        ips: None,
                    }))
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 50, "exactly the pool's 50 addresses were handed out");
        let mut all: Vec<String> =
            r.store().view().unwrap().ports().unwrap().iter().map(|p| p.fixed_ips[0].ip_address.to_string()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 50, "no address was given twice");
        r.shutdown().await;
    }
}
