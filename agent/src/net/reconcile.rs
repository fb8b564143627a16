//! The host side of networks: from the networks this node should carry (desired) and the
//! kernel's links (observed), a pure [`plan`] of operations, then [`apply`] them through
//! [`Netlink`]. Idempotent: when the host already matches, the plan is empty, so a restart
//! neither flaps nor duplicates links.
//!
//! A VLAN network is a VLAN device `<uplink>.<vid>` enslaved to a bridge `brq-<11 chars of the
//! network id>`; a flat network enslaves the uplink itself, after moving the uplink's addresses
//! and routes to the bridge (as Neutron's Linux bridge agent does) so the node keeps its
//! management connectivity. Every link Cairn creates carries the alias [`OWNER_ALIAS`]; a link
//! without it is never changed or deleted, and a name clash with one is reported, not forced.

use crate::model::network::{Network, NetworkType, VlanId};
use crate::sys::netlink::{IfAddr, Link, LinkKind, Netlink, NetlinkError, NewLink, Route};
use std::collections::{BTreeMap, BTreeSet};

/// The alias marking links Cairn created and owns.
pub const OWNER_ALIAS: &str = "cairn";
/// Prefix of network bridges (Neutron's Linux bridge agent uses the same).
pub const BRIDGE_PREFIX: &str = "brq-";
/// Longest interface name the kernel takes.
const IFNAMSIZ: usize = 15;

/// A network as this node must carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantNet {
    pub network_id: String,
    pub uplink: String,
    /// `None` for a flat network.
    pub vlan: Option<u16>,
    pub mtu: u32,
}

/// The bridge of a network.
pub fn bridge_name(network_id: &str) -> String {
    let short: String = network_id.chars().take(11).collect();
    format!("{BRIDGE_PREFIX}{short}")
}

/// The VLAN device on `uplink` for `vid`, shortening the uplink's part to fit IFNAMSIZ.
pub fn vlan_name(uplink: &str, vid: u16) -> String {
    let suffix = format!(".{vid}");
    let keep = IFNAMSIZ.saturating_sub(suffix.len());
    let head: String = uplink.chars().take(keep).collect();
    format!("{head}{suffix}")
}

/// Turns the state's networks into what this node carries; networks on a physical network
/// this node has no uplink for are reported and skipped.
pub fn wanted(networks: &[Network], physnets: &BTreeMap<String, String>) -> (Vec<WantNet>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for n in networks {
        let Some(uplink) = physnets.get(&n.segment.physical_network) else {
            problems.push(format!(
                "network {}: physical network {} has no uplink on this node",
                n.id, n.segment.physical_network
            ));
            continue;
        };
        let vlan = match n.segment.network_type {
            NetworkType::Vlan => n.segment.segmentation_id.map(VlanId::get),
            NetworkType::Flat => None,
        };
        out.push(WantNet { network_id: n.id.clone(), uplink: uplink.clone(), vlan, mtu: n.mtu });
    }
    (out, problems)
}

/// The kernel's state as the planner needs it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub links: Vec<Link>,
    /// Addresses and routes of the links that may have to move (uplinks of flat networks and
    /// Cairn's bridges), by link name.
    pub addrs: BTreeMap<String, Vec<IfAddr>>,
    pub routes: BTreeMap<String, Vec<Route>>,
}

impl Observed {
    fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    fn by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

fn ours(l: &Link) -> bool {
    l.alias.as_deref() == Some(OWNER_ALIAS)
}

/// One change to the host. Links are named; [`apply`] resolves names when it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    CreateBridge {
        name: String,
    },
    CreateVlan {
        name: String,
        uplink: String,
        vid: u16,
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    Up {
        link: String,
    },
    /// Moves addresses and routes from one link to another (a flat uplink and its bridge).
    MoveIp {
        from: String,
        to: String,
        addrs: Vec<IfAddr>,
        routes: Vec<Route>,
    },
    Enslave {
        link: String,
        bridge: String,
    },
    Release {
        link: String,
    },
    Delete {
        link: String,
    },
}

/// What to do, and what could not be done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub problems: Vec<String>,
}

/// The pure diff: operations that take `obs` to `want`.
pub fn plan(want: &[WantNet], obs: &Observed) -> Plan {
    let mut p = Plan::default();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for w in want {
        let bridge = bridge_name(&w.network_id);
        let Some(uplink) = obs.by_name(&w.uplink) else {
            p.problems.push(format!("network {}: uplink {} does not exist", w.network_id, w.uplink));
            continue;
        };
        let clash =
            |l: &Link| format!("network {}: link {} exists and is not Cairn's; left alone", w.network_id, l.name);
        let existing_bridge = obs.by_name(&bridge);
        if let Some(b) = existing_bridge {
            if !ours(b) || b.kind != LinkKind::Bridge {
                p.problems.push(clash(b));
                continue;
            }
        }
        keep.insert(bridge.clone());
        if existing_bridge.is_none() {
            p.ops.push(Op::CreateBridge { name: bridge.clone() });
        }
        if !existing_bridge.is_some_and(|b| b.up) {
            p.ops.push(Op::Up { link: bridge.clone() });
        }
        let bridge_index = existing_bridge.map(|b| b.index);
        let port = match w.vlan {
            Some(vid) => {
                let name = vlan_name(&w.uplink, vid);
                let existing = obs.by_name(&name);
                let right = |l: &Link| l.kind == LinkKind::Vlan { parent: uplink.index, id: vid };
                match existing {
                    Some(l) if !ours(l) => {
                        p.problems.push(clash(l));
                        continue;
                    }
                    Some(l) if right(l) => {}
                    Some(_) => {
                        p.ops.push(Op::Delete { link: name.clone() });
                        p.ops.push(Op::CreateVlan { name: name.clone(), uplink: w.uplink.clone(), vid });
                    }
                    None => p.ops.push(Op::CreateVlan { name: name.clone(), uplink: w.uplink.clone(), vid }),
                }
                let cur = existing.filter(|l| right(l));
                let want_mtu = w.mtu.min(uplink.mtu);
                if cur.map_or(uplink.mtu, |l| l.mtu) != want_mtu {
                    p.ops.push(Op::SetMtu { link: name.clone(), mtu: want_mtu });
                }
                if !cur.is_some_and(|l| l.up) {
                    p.ops.push(Op::Up { link: name.clone() });
                }
                keep.insert(name.clone());
                (name, cur.and_then(|l| l.master))
            }
            None => {
                // Flat: the uplink's addresses and routes move to the bridge before it is enslaved.
                let enslaved = bridge_index.is_some() && uplink.master == bridge_index;
                if let Some(m) = uplink.master.filter(|_| !enslaved) {
                    let name = obs.by_index(m).map(|l| l.name.clone()).unwrap_or_default();
                    p.problems.push(format!(
                        "network {}: uplink {} is already enslaved to {name}; left alone",
                        w.network_id, w.uplink
                    ));
                    continue;
                }
                if !enslaved {
                    let addrs = obs.addrs.get(&w.uplink).cloned().unwrap_or_default();
                    let routes = obs.routes.get(&w.uplink).cloned().unwrap_or_default();
                    if !addrs.is_empty() || !routes.is_empty() {
                        p.ops.push(Op::MoveIp { from: w.uplink.clone(), to: bridge.clone(), addrs, routes });
                    }
                }
                (w.uplink.clone(), uplink.master)
            }
        };
        let (port_name, master) = port;
        if bridge_index.is_none() || master != bridge_index {
            p.ops.push(Op::Enslave { link: port_name.clone(), bridge: bridge.clone() });
        }
        if !uplink.up {
            p.ops.push(Op::Up { link: w.uplink.clone() });
        }
    }
    // What Cairn made and no network wants any more.
    for l in obs.links.iter().filter(|l| ours(l) && !keep.contains(&l.name)) {
        match l.kind {
            LinkKind::Bridge if l.name.starts_with(BRIDGE_PREFIX) => {
                // A flat uplink goes back to how it was: released, with its addresses.
                for slave in obs.links.iter().filter(|s| s.master == Some(l.index) && !ours(s)) {
                    p.ops.push(Op::Release { link: slave.name.clone() });
                    let addrs = obs.addrs.get(&l.name).cloned().unwrap_or_default();
                    let routes = obs.routes.get(&l.name).cloned().unwrap_or_default();
                    if !addrs.is_empty() || !routes.is_empty() {
                        p.ops.push(Op::MoveIp { from: l.name.clone(), to: slave.name.clone(), addrs, routes });
                    }
                }
                p.ops.push(Op::Delete { link: l.name.clone() });
            }
            LinkKind::Vlan { .. } => p.ops.push(Op::Delete { link: l.name.clone() }),
            _ => {}
        }
    }
    p
}

/// Reads what [`plan`] needs from the kernel.
pub async fn observe<N: Netlink>(nl: &N, want: &[WantNet]) -> Result<Observed, NetlinkError> {
    let links = nl.links().await?;
    let mut obs = Observed { links, ..Default::default() };
    let flat_uplinks: BTreeSet<&str> = want.iter().filter(|w| w.vlan.is_none()).map(|w| w.uplink.as_str()).collect();
    let movable: Vec<(u32, String)> = obs
        .links
        .iter()
        .filter(|l| flat_uplinks.contains(l.name.as_str()) || (ours(l) && l.kind == LinkKind::Bridge))
        .map(|l| (l.index, l.name.clone()))
        .collect();
    for (index, name) in movable {
        obs.addrs.insert(name.clone(), nl.addresses(index).await?);
        obs.routes.insert(name, nl.routes(index).await?);
    }
    Ok(obs)
}

async fn index_of<N: Netlink>(nl: &N, name: &str) -> Result<u32, NetlinkError> {
    nl.links()
        .await?
        .into_iter()
        .find(|l| l.name == name)
        .map(|l| l.index)
        .ok_or_else(|| NetlinkError::Unsupported(format!("link {name} does not exist")))
}

/// Runs the operations in order; stops at the first failure (the next run resumes from what
/// the kernel then reports).
pub async fn apply<N: Netlink>(nl: &N, ops: &[Op]) -> Result<(), NetlinkError> {
    for op in ops {
        log::info!("network: {op:?}");
        match op {
            Op::CreateBridge { name } => nl.add_link(name, NewLink::Bridge, Some(OWNER_ALIAS)).await?,
            Op::CreateVlan { name, uplink, vid } => {
                let parent = index_of(nl, uplink).await?;
                nl.add_link(name, NewLink::Vlan { parent, id: *vid }, Some(OWNER_ALIAS)).await?
            }
            Op::SetMtu { link, mtu } => nl.set_mtu(index_of(nl, link).await?, *mtu).await?,
            Op::Up { link } => nl.set_up(index_of(nl, link).await?, true).await?,
            Op::MoveIp { from, to, addrs, routes } => {
                let (f, t) = (index_of(nl, from).await?, index_of(nl, to).await?);
                nl.set_up(t, true).await?;
                for a in addrs {
                    nl.add_address(t, *a).await?;
                }
                for a in addrs {
                    nl.del_address(f, *a).await?;
                }
                // Routes through the old link went with its addresses; add them back on the new.
                let left = nl.routes(f).await?;
                for r in routes {
                    if left.contains(r) {
                        nl.del_route(f, *r).await?;
                    }
                    nl.add_route(t, *r).await?;
                }
            }
            Op::Enslave { link, bridge } => {
                let (l, b) = (index_of(nl, link).await?, index_of(nl, bridge).await?);
                nl.set_master(l, Some(b)).await?
            }
            Op::Release { link } => nl.set_master(index_of(nl, link).await?, None).await?,
            Op::Delete { link } => nl.delete_link(index_of(nl, link).await?).await?,
        }
    }
    Ok(())
}

/// Observe, plan and apply once; returns the plan that was carried out.
pub async fn reconcile<N: Netlink>(nl: &N, want: &[WantNet]) -> Result<Plan, NetlinkError> {
    let obs = observe(nl, want).await?;
    let p = plan(want, &obs);
    for problem in &p.problems {
        log::warn!("network: {problem}");
    }
    apply(nl, &p.ops).await?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::FakeNetlink;

    fn vlan(id: &str, vid: u16) -> WantNet {
        WantNet { network_id: id.into(), uplink: "eth1".into(), vlan: Some(vid), mtu: 1500 }
    }

    fn host() -> FakeNetlink {
        let nl = FakeNetlink::default();
        nl.with_link("lo", LinkKind::Other(String::new()), None);
        nl.with_link("eth0", LinkKind::Other(String::new()), None);
        nl.with_link("eth1", LinkKind::Other(String::new()), None);
        nl
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn names_fit_the_kernel() {
        assert_eq!(bridge_name("3f1e2d4c-aaaa-bbbb"), "brq-3f1e2d4c-aa");
        assert_eq!(vlan_name("eth1", 100), "eth1.100");
        assert_eq!(vlan_name("enp129s0f1np1", 4094), "enp129s0f1.4094");
        assert!(vlan_name("enp129s0f1np1", 4094).len() <= 15);
    }

    #[test]
    fn vlan_networks_are_created_once_and_deleted_cleanly() {
        let nl = host();
        let want = [vlan("net-aaaaaaaaaaa", 100), vlan("net-bbbbbbbbbbb", 200)];
        let p = block_on(reconcile(&nl, &want)).unwrap();
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let uplink = nl.link("eth1").unwrap();
        for (net, vid) in [("net-aaaaaaaaaaa", 100), ("net-bbbbbbbbbbb", 200)] {
            let br = nl.link(&bridge_name(net)).unwrap();
            let v = nl.link(&format!("eth1.{vid}")).unwrap();
            assert_eq!(br.kind, LinkKind::Bridge);
            assert_eq!(v.kind, LinkKind::Vlan { parent: uplink.index, id: vid });
            assert_eq!(v.master, Some(br.index), "VLAN device enslaved to its bridge");
            assert!(br.up && v.up);
            assert_eq!(br.alias.as_deref(), Some(OWNER_ALIAS));
        }
        // Second run, and a "restart" (a fresh observation of the same kernel): nothing to do.
        nl.clear_calls();
        assert_eq!(block_on(reconcile(&nl, &want)).unwrap(), Plan::default());
        assert!(nl.calls().is_empty(), "second run changed {:?}", nl.calls());
        // Deleting one network removes exactly its two links.
        let before = nl.link("eth1.100").unwrap();
        let p = block_on(reconcile(&nl, &want[..1])).unwrap();
        assert_eq!(p.ops, [Op::Delete { link: "brq-net-bbbbbbb".into() }, Op::Delete { link: "eth1.200".into() }]);
        assert!(nl.link("brq-net-bbbbbbb").is_none() && nl.link("eth1.200").is_none());
        assert_eq!(nl.link("eth1.100").unwrap(), before, "the other network was not touched");
        block_on(reconcile(&nl, &[])).unwrap();
        assert!(nl.link("eth1.100").is_none() && nl.link("eth1").is_some() && nl.link("eth0").is_some());
    }

    #[test]
    fn foreign_links_are_left_alone() {
        let nl = host();
        // An operator's bridge that happens to carry Cairn's name, and their own VLAN device.
        nl.with_link("brq-net-ccccccc", LinkKind::Bridge, None);
        let eth1 = nl.link("eth1").unwrap().index;
        nl.with_link("eth1.300", LinkKind::Vlan { parent: eth1, id: 300 }, None);
        nl.with_link("brq-theirs", LinkKind::Bridge, Some("someone-else"));
        let p = block_on(reconcile(&nl, &[vlan("net-ccccccccccc", 5), vlan("net-ddddddddddd", 300)])).unwrap();
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(nl.link("eth1.5").is_none(), "nothing built for the clashing network");
        assert!(nl.link("brq-net-ddddddd").is_some(), "the bridge of the second network was made");
        assert_eq!(nl.link("eth1.300").unwrap().master, None, "the foreign VLAN device was not enslaved");
        block_on(reconcile(&nl, &[])).unwrap();
        for name in ["brq-net-ccccccc", "eth1.300", "brq-theirs"] {
            assert!(nl.link(name).is_some(), "{name} survived a full cleanup");
        }
        assert!(nl.link("brq-net-ddddddd").is_none());
        // A missing uplink is a problem, not an error.
        let p = block_on(reconcile(&nl, &[WantNet { uplink: "eth9".into(), ..vlan("x", 7) }])).unwrap();
        assert_eq!(p.problems.len(), 1);
    }

    #[test]
    fn flat_network_moves_the_uplink_addresses_and_back() {
        let nl = host();
        let eth1 = nl.link("eth1").unwrap().index;
        let a = IfAddr { ip: "192.0.2.10".parse().unwrap(), prefix: 24 };
        let gw = Route {
            dst: "0.0.0.0".parse().unwrap(),
            prefix: 0,
            gateway: Some("192.0.2.1".parse().unwrap()),
            metric: None,
        };
        nl.with_address(eth1, a);
        nl.with_route(eth1, gw);
        let want = [WantNet { network_id: "flat-1234567890".into(), uplink: "eth1".into(), vlan: None, mtu: 1500 }];
        block_on(reconcile(&nl, &want)).unwrap();
        let br = nl.link("brq-flat-123456").unwrap();
        assert_eq!(nl.link("eth1").unwrap().master, Some(br.index));
        assert_eq!(nl.addrs_of(br.index), [a]);
        assert_eq!(nl.routes_of(br.index), [gw]);
        assert!(nl.addrs_of(eth1).is_empty() && nl.routes_of(eth1).is_empty());
        nl.clear_calls();
        block_on(reconcile(&nl, &want)).unwrap();
        assert!(nl.calls().is_empty(), "second run changed {:?}", nl.calls());
        block_on(reconcile(&nl, &[])).unwrap();
        assert!(nl.link("brq-flat-123456").is_none());
        assert_eq!(nl.link("eth1").unwrap().master, None);
        assert_eq!(nl.addrs_of(eth1), [a], "the uplink got its address back");
        assert_eq!(nl.routes_of(eth1), [gw]);
    }
}
