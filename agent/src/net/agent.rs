//! The node's network agent: whenever the state changes (and every `resync` to repair drift),
//! works out which networks this node carries from its roles, reconciles the kernel's links
//! and brings the DHCP servers in line.

use super::dhcp::Dhcp;
use super::reconcile::{self, WantNet};
use crate::config::Role;
use crate::model::network::Network;
use crate::state::{StateError, Store};
use crate::sys::netlink::{Netlink, NetlinkError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often DHCP servers are checked for having died.
pub const REAP_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("reading the state")]
    State(#[from] StateError),
    #[error("kernel links")]
    Netlink(#[from] NetlinkError),
    #[error("DHCP")]
    Dhcp(#[from] super::dhcp::DhcpError),
}

/// The NIC holding the IPv4 default route (else the first up NIC with an address): what
/// `physnet1` maps to when the configuration names no uplinks.
pub async fn management_nic<N: Netlink>(nl: &N) -> Result<Option<String>, NetlinkError> {
    let links = nl.links().await?;
    let candidates: Vec<_> =
        links.iter().filter(|l| l.name != "lo" && l.alias.as_deref() != Some(reconcile::OWNER_ALIAS)).collect();
    for l in &candidates {
        if nl.routes(l.index).await?.iter().any(|r| r.prefix == 0 && r.dst.is_ipv4()) {
            return Ok(Some(l.name.clone()));
        }
    }
    for l in candidates.iter().filter(|l| l.up) {
        if !nl.addresses(l.index).await?.is_empty() {
            return Ok(Some(l.name.clone()));
        }
    }
    Ok(None)
}

/// What the agent last saw and did, for operators (`GET /cairn/v1/network`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NetStatus {
    /// Why the agent is not running, when it is not.
    pub off: Option<String>,
    pub physical_networks: BTreeMap<String, String>,
    /// Links Cairn owns on this node, as the last pass left them.
    pub links: Vec<LinkStatus>,
    /// Network id → pid of its dnsmasq.
    pub dhcp: BTreeMap<String, u32>,
    /// Networks this node should carry but cannot (no uplink, name clashes).
    pub problems: Vec<String>,
    /// Passes completed since start.
    pub passes: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkStatus {
    pub name: String,
    pub kind: String,
    pub master: Option<String>,
    pub up: bool,
}

/// Shared between the agent and the API.
pub type StatusHandle = Arc<Mutex<NetStatus>>;

/// The host-side network agent.
pub struct NetAgent<N: Netlink> {
    pub nl: N,
    pub store: Store,
    /// Physical network → uplink on this node.
    pub physnets: BTreeMap<String, String>,
    pub roles: Vec<Role>,
    /// This node's name, as ports record it in `binding:host_id`.
    pub host: String,
    pub dhcp: Option<Dhcp>,
    pub status: StatusHandle,
}

impl<N: Netlink> NetAgent<N> {
    /// Networks this node carries: all of them on a network node; on a compute-only node, those
    /// with a port bound here.
    fn carried(&self) -> Result<Vec<Network>, StateError> {
        let view = self.store.view()?;
        let nets = view.networks()?;
        if self.roles.contains(&Role::Network) {
            return Ok(nets);
        }
        if !self.roles.contains(&Role::Compute) {
            return Ok(vec![]);
        }
        let used: BTreeSet<String> =
            view.ports()?.into_iter().filter(|p| p.host == self.host).map(|p| p.network_id).collect();
        Ok(nets.into_iter().filter(|n| used.contains(&n.id)).collect())
    }

    /// One pass: links, then DHCP; the outcome goes to the status.
    pub async fn sync(&mut self) -> Result<(), AgentError> {
        let result = self.pass().await;
        let links = self.nl.links().await.unwrap_or_default();
        let name_of = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
        let mut st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.physical_networks = self.physnets.clone();
        st.links = links
            .iter()
            .filter(|l| l.alias.as_deref() == Some(reconcile::OWNER_ALIAS))
            .map(|l| LinkStatus {
                name: l.name.clone(),
                kind: format!("{:?}", l.kind).to_lowercase(),
                master: l.master.and_then(name_of),
                up: l.up,
            })
            .collect();
        st.dhcp = self.dhcp.as_ref().map(|d| d.pids()).unwrap_or_default();
        st.passes += 1;
        match result {
            Ok(problems) => {
                st.problems = problems;
                st.last_error = None;
                Ok(())
            }
            Err(e) => {
                st.last_error = Some(crate::error_chain(&e));
                Err(e)
            }
        }
    }

    async fn pass(&mut self) -> Result<Vec<String>, AgentError> {
        let nets = self.carried()?;
        let (want, mut problems) = reconcile::wanted(&nets, &self.physnets);
        for p in &problems {
            log::warn!("network: {p}");
        }
        let plan = reconcile::reconcile(&self.nl, &want).await?;
        problems.extend(plan.problems.iter().cloned());
        if !plan.ops.is_empty() {
            log::info!("network: {} change(s) applied", plan.ops.len());
        }
        if let Some(dhcp) = self.dhcp.as_mut() {
            let built: BTreeSet<&str> = want.iter().map(|w: &WantNet| w.network_id.as_str()).collect();
            let view = self.store.view()?;
            dhcp.sync(&self.nl, &view, &built).await?;
        }
        Ok(problems)
    }

    /// Runs until the task is dropped: a pass at start, on every state change and every
    /// `resync`; dead DHCP servers are restarted within [`REAP_EVERY`].
    pub async fn run(mut self, resync: Duration) {
        let mut changes = self.store.subscribe();
        let mut reap = tokio::time::interval(REAP_EVERY);
        loop {
            if let Err(e) = self.sync().await {
                log::error!("network agent: {}", crate::error_chain(&e));
            }
            let next_sync = tokio::time::sleep(resync);
            tokio::pin!(next_sync);
            loop {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return } else { break },
                    _ = &mut next_sync => break,
                    _ = reap.tick() => if let Some(d) = self.dhcp.as_mut() { d.reap() },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{Mac, NetworkType, Port, Segment};
    use crate::state::raft::Replicated;
    use crate::state::Command;
    use crate::state::NetworkCommand;
    use crate::sys::netlink::{FakeNetlink, LinkKind};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roles_decide_which_networks_a_node_builds() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        for (id, vid) in [("net-one-aaaaa", 10), ("net-two-bbbbb", 20)] {
            let seg = Segment {
                network_type: NetworkType::Vlan,
                physical_network: "physnet1".into(),
                segmentation_id: Some(crate::model::network::check_vlan(vid).unwrap()),
            };
            r.propose(Command::Network(NetworkCommand::CreateNetwork {
                network: Network::new(id, id, "p", seg, 0),
                auto_vlan: None,
            }))
            .await
            .unwrap()
            .unwrap();
        }
        let mut bound = Port::new("vm", "net-two-bbbbb", "p", Mac([0xfa, 0x16, 0x3e, 0, 0, 1]), 0);
        bound.host = "node-a".into();
        r.propose(Command::Network(NetworkCommand::CreatePort { port: bound, ips: None })).await.unwrap().unwrap();
        let agent = |roles: Vec<Role>, nl: FakeNetlink| NetAgent {
            nl,
            store: r.store().clone(),
            physnets: BTreeMap::from([("physnet1".to_string(), "eth1".to_string())]),
            roles,
            host: "node-a".into(),
            dhcp: None,
            status: StatusHandle::default(),
        };
        let host = || {
            let nl = FakeNetlink::default();
            nl.with_link("eth1", LinkKind::Other(String::new()), None);
            nl
        };
        let bridges = |nl: &FakeNetlink| -> Vec<String> {
            let mut b: Vec<String> = ["brq-net-one-aaa", "brq-net-two-bbb"]
                .iter()
                .filter(|n| nl.link(n).is_some())
                .map(|n| n.to_string())
                .collect();
            b.sort();
            b
        };
        let cases = [
            (vec![Role::Network, Role::Compute], vec!["brq-net-one-aaa", "brq-net-two-bbb"]),
            (vec![Role::Compute], vec!["brq-net-two-bbb"]),
            (vec![], vec![]),
        ];
        for (roles, want) in cases {
            let nl = host();
            let mut a = agent(roles.clone(), nl.clone());
            a.sync().await.unwrap();
            assert_eq!(bridges(&nl), want, "roles {roles:?}");
            let st = a.status.lock().unwrap().clone();
            assert_eq!(st.passes, 1);
            assert_eq!(st.links.iter().filter(|l| l.kind == "bridge").count(), want.len(), "{st:?}");
        }
        r.shutdown().await;
    }
}
