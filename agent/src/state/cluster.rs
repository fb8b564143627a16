//! Applying the cluster's commands: nodes' reports of themselves; join tokens made, revoked,
//! and consumed once.

use super::apply::{load, not_found, store};
use super::{Kind, Outcome, Refusal, StateError, JOIN_TOKENS, MEMBERS, NODE_KEYS, REMOVED_NODES};
use crate::model::cluster::{constant_time_eq, Member, RemovedNode, TokenRecord};
use crate::state::ClusterCommand;
use redb::{ReadableTable, WriteTransaction};

/// The next raft id: above every member, removed node and id a token handed out (the first
/// node is 1).
fn next_node_id(tx: &WriteTransaction) -> Result<u64, StateError> {
    let mut max = 1;
    for table in [MEMBERS, REMOVED_NODES] {
        for row in tx.open_table(table)?.iter()? {
            max = max.max(row?.0.value().parse::<u64>().unwrap_or(0));
        }
    }
    for row in tx.open_table(JOIN_TOKENS)?.iter()? {
        let t: TokenRecord = serde_json::from_slice(row?.1.value())?;
        max = max.max(t.node_id.unwrap_or(0));
    }
    Ok(max + 1)
}

pub(super) fn apply(tx: &WriteTransaction, cmd: &ClusterCommand) -> Result<Outcome, StateError> {
    match cmd {
        ClusterCommand::ReportMember(m) => {
            // A removed node that still runs must not list itself again.
            if load::<RemovedNode>(tx, REMOVED_NODES, &m.id.to_string())?.is_some() {
                return Ok(Err(not_found(Kind::Node, &m.id.to_string())));
            }
            store(tx, MEMBERS, &m.id.to_string(), m)?;
            Ok(Ok(()))
        }
        ClusterCommand::CreateJoinToken(t) => {
            if load::<TokenRecord>(tx, JOIN_TOKENS, &t.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::JoinToken, name: t.id.clone() }));
            }
            store(tx, JOIN_TOKENS, &t.id, t)?;
            Ok(Ok(()))
        }
        ClusterCommand::RevokeJoinToken { id } => {
            let Some(mut t) = load::<TokenRecord>(tx, JOIN_TOKENS, id)? else {
                return Ok(Err(not_found(Kind::JoinToken, id)));
            };
            t.revoked = true;
            store(tx, JOIN_TOKENS, id, &t)?;
            Ok(Ok(()))
        }
        ClusterCommand::ConsumeJoinToken { id, secret_hash, node, at, key } => {
            // One answer for every way a token fails, so a prober learns nothing.
            let refused = || Ok(Err(Refusal::Invalid("The join token is not valid.".into())));
            let Some(mut t) = load::<TokenRecord>(tx, JOIN_TOKENS, id)? else { return refused() };
            if !constant_time_eq(t.secret_hash.as_bytes(), secret_hash.as_bytes()) || t.unusable(*at).is_some() {
                return refused();
            }
            t.used_at = Some(*at);
            t.used_by = Some(node.clone());
            let node_id = next_node_id(tx)?;
            t.node_id = Some(node_id);
            store(tx, JOIN_TOKENS, id, &t)?;
            tx.open_table(NODE_KEYS)?.insert(node_id.to_string().as_str(), key.as_str())?;
            Ok(Ok(()))
        }
        ClusterCommand::RegisterNodeKey { id, key } => {
            let mut keys = tx.open_table(NODE_KEYS)?;
            let k = id.to_string();
            let existing = keys.get(k.as_str())?.map(|v| v.value().to_owned());
            match existing {
                Some(e) if e == *key => Ok(Ok(())),
                Some(_) => Ok(Err(Refusal::Conflict { kind: Kind::Node, name: k })),
                None => {
                    keys.insert(k.as_str(), key.as_str())?;
                    Ok(Ok(()))
                }
            }
        }
        ClusterCommand::RemoveMember { id, at } => {
            let key = id.to_string();
            if load::<RemovedNode>(tx, REMOVED_NODES, &key)?.is_some() {
                return Ok(Err(not_found(Kind::Node, &key)));
            }
            let name = match load::<Member>(tx, MEMBERS, &key)? {
                Some(m) => m.name,
                None => {
                    let joined = tx.open_table(JOIN_TOKENS)?.iter()?.any(|row| {
                        row.ok()
                            .and_then(|(_, v)| serde_json::from_slice::<TokenRecord>(v.value()).ok())
                            .is_some_and(|t| t.node_id == Some(*id))
                    });
                    if !joined {
                        return Ok(Err(not_found(Kind::Node, &key)));
                    }
                    String::new()
                }
            };
            tx.open_table(MEMBERS)?.remove(key.as_str())?;
            store(tx, REMOVED_NODES, &key, &RemovedNode { id: *id, name, removed_at: *at })?;
            Ok(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::run;
    use super::*;
    use crate::model::cluster::secret_hash;
    use crate::state::Command;
    use crate::state::Store;

    #[test]
    fn join_tokens_work_once_before_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let rec = |id: &str| TokenRecord {
            id: id.into(),
            secret_hash: secret_hash(&[1; 32]),
            created_at: 100,
            expires_at: 1000,
            created_by: "admin".into(),
            used_at: None,
            used_by: None,
            node_id: None,
            revoked: false,
        };
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::CreateJoinToken(rec("a")))), Ok(()));
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::CreateJoinToken(rec("b")))), Ok(()));
        let consume = |id: &str, secret: [u8; 32], at: u64| {
            Command::Cluster(ClusterCommand::ConsumeJoinToken {
                id: id.into(),
                secret_hash: secret_hash(&secret),
                node: "n2".into(),
                at,
                key: format!("key-{id}"),
            })
        };
        let invalid = Err(Refusal::Invalid("The join token is not valid.".into()));
        assert_eq!(run(&s, consume("a", [2; 32], 200)), invalid, "a forged secret");
        assert_eq!(run(&s, consume("a", [1; 32], 1000)), invalid, "expired");
        assert_eq!(run(&s, consume("nope", [1; 32], 200)), invalid, "unknown");
        assert_eq!(run(&s, consume("a", [1; 32], 200)), Ok(()));
        assert_eq!(run(&s, consume("a", [1; 32], 201)), invalid, "used once only");
        assert_eq!(s.view().unwrap().join_tokens().unwrap()[0].node_id, Some(2), "the first joiner is node 2");
        assert_eq!(s.view().unwrap().node_keys().unwrap().get(&2).map(String::as_str), Some("key-a"));
        // The first node's key is set once.
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::RegisterNodeKey { id: 1, key: "k1".into() })), Ok(()));
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::RegisterNodeKey { id: 1, key: "k1".into() })), Ok(()));
        assert!(matches!(
            run(&s, Command::Cluster(ClusterCommand::RegisterNodeKey { id: 1, key: "k2".into() })),
            Err(Refusal::Conflict { .. })
        ));
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::RevokeJoinToken { id: "b".into() })), Ok(()));
        assert_eq!(run(&s, consume("b", [1; 32], 200)), invalid, "revoked");
        let all = s.view().unwrap().join_tokens().unwrap();
        assert_eq!((all[0].used_by.as_deref(), all[0].used_at, all[1].revoked), (Some("n2"), Some(200), true));

        // Node 2 is removed: gone for good, and its id is not given again.
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::RemoveMember { id: 2, at: 300 })), Ok(()));
        assert!(s.view().unwrap().is_removed(2).unwrap());
        // Still running, it cannot list itself again.
        let mut m = crate::model::cluster::Member {
            id: 2,
            name: "n2".into(),
            api_addr: String::new(),
            peer_addr: String::new(),
            roles: vec![],
            cpu_model: String::new(),
            cpus: 1,
            virtualization: "none".into(),
            accel: "qemu".into(),
            memory_mb: 1,
            heartbeat_at: 400,
        };
        assert!(matches!(
            run(&s, Command::Cluster(ClusterCommand::ReportMember(m.clone()))),
            Err(Refusal::NotFound { .. })
        ));
        assert!(s.view().unwrap().members().unwrap().is_empty());
        m.id = 1;
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::ReportMember(m))), Ok(()));
        assert!(matches!(
            run(&s, Command::Cluster(ClusterCommand::RemoveMember { id: 2, at: 301 })),
            Err(Refusal::NotFound { .. })
        ));
        assert!(matches!(
            run(&s, Command::Cluster(ClusterCommand::RemoveMember { id: 9, at: 301 })),
            Err(Refusal::NotFound { .. })
        ));
        assert_eq!(run(&s, Command::Cluster(ClusterCommand::CreateJoinToken(rec("c")))), Ok(()));
        assert_eq!(run(&s, consume("c", [1; 32], 200)), Ok(()));
        let c = s.view().unwrap().join_tokens().unwrap().into_iter().find(|t| t.id == "c").unwrap();
        assert_eq!(c.node_id, Some(3));
    }
}
