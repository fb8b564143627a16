//! Compute nodes as the state holds them: each node's inventory and heartbeat, whether it is
//! up, what its servers use, the zones.

use super::*;

impl Compute {
    /// Every node with whether its heartbeat is recent.
    pub(super) fn nodes_up(&self) -> Result<Vec<NodeUp>> {
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
