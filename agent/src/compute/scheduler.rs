//! Picks a node for a server: filters (enabled and up, availability zone, architecture, room
//! for the flavor with the node's allocation ratios) then a weigher on the RAM left (spread:
//! most free first, Nova's default; pack: least free first). Pure: the claim itself is a
//! command in the log, whose apply re-checks the room, so two creates racing for the last
//! space cannot both win.

use super::NodeUp;
use crate::model::compute::Resources;
use std::collections::BTreeMap;

/// How to weigh nodes that fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weigher {
    Spread,
    Pack,
}

/// What a server needs of a node.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub resources: Resources,
    pub availability_zone: Option<String>,
    pub arch: Option<String>,
}

/// The best node for `req`, or why none fits (one reason per node).
pub fn select(
    nodes: &[NodeUp],
    used: &BTreeMap<String, Resources>,
    req: &Request,
    w: Weigher,
) -> Result<String, Vec<String>> {
    let mut why = vec![];
    let mut fit = vec![];
    for (n, up) in nodes {
        let reason = if !n.enabled {
            Some(format!("{}: disabled", n.node))
        } else if !up {
            Some(format!("{}: down", n.node))
        } else if req.availability_zone.as_ref().is_some_and(|z| *z != n.availability_zone) {
            Some(format!("{}: in zone {}", n.node, n.availability_zone))
        } else if req.arch.as_ref().is_some_and(|a| *a != n.arch) {
            Some(format!("{}: architecture {}", n.node, n.arch))
        } else {
            n.misfit(used.get(&n.node).copied().unwrap_or_default(), req.resources)
        };
        match reason {
            Some(r) => why.push(r),
            None => {
                let free = n.capacity().memory_mb.saturating_sub(used.get(&n.node).map_or(0, |u| u.memory_mb));
                fit.push((free, n.node.clone()));
            }
        }
    }
    // Ties go to the node name, so the choice is stable.
    let best = match w {
        Weigher::Spread => fit.into_iter().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1))),
        Weigher::Pack => fit.into_iter().min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1))),
    };
    best.map(|(_, n)| n).ok_or(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compute::Inventory;

    fn node(name: &str, vcpus: u32, mem: u64) -> Inventory {
        Inventory::for_test(name, vcpus, mem)
    }

    #[test]
    fn filters_and_weights() {
        let small = Resources { vcpus: 1, memory_mb: 512, disk_gb: 1 };
        let nodes = vec![(node("a", 2, 4096), true), (node("b", 2, 8192), true), (node("c", 64, 65536), false)];
        let req = Request { resources: small, ..Default::default() };
        let none = BTreeMap::new();
        assert_eq!(select(&nodes, &none, &req, Weigher::Spread), Ok("b".into()), "most RAM free");
        assert_eq!(select(&nodes, &none, &req, Weigher::Pack), Ok("a".into()), "least RAM free");
        let used: BTreeMap<String, Resources> =
            [("b".to_string(), Resources { vcpus: 1, memory_mb: 7000, disk_gb: 1 })].into_iter().collect();
        assert_eq!(select(&nodes, &used, &req, Weigher::Spread), Ok("a".into()));
        // 9 vCPUs fit nowhere (2 cores × 4.0), the big node is down.
        let big = Request { resources: Resources { vcpus: 9, memory_mb: 1, disk_gb: 0 }, ..Default::default() };
        let why = select(&nodes, &none, &big, Weigher::Spread).unwrap_err();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why.iter().any(|w| w == "c: down"), "{why:?}");
        let zone = Request { availability_zone: Some("az2".into()), ..req.clone() };
        assert!(select(&nodes, &none, &zone, Weigher::Spread).is_err());
        let arm = Request { arch: Some("aarch64".into()), ..req };
        assert!(select(&nodes, &none, &arm, Weigher::Spread).is_err());
    }
}
