//! Applying the cluster's commands: nodes' reports of themselves; join tokens made, revoked,
//! and consumed once.

use super::apply::{load, not_found, store};
use super::{Command, Kind, Outcome, Refusal, StateError, JOIN_TOKENS, MEMBERS};
use crate::model::cluster::{constant_time_eq, TokenRecord};
use redb::WriteTransaction;

pub(super) fn apply(tx: &WriteTransaction, cmd: &Command) -> Result<Outcome, StateError> {
    match cmd {
        Command::ReportMember(m) => {
            store(tx, MEMBERS, &m.id.to_string(), m)?;
            Ok(Ok(()))
        }
        Command::CreateJoinToken(t) => {
            if load::<TokenRecord>(tx, JOIN_TOKENS, &t.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::JoinToken, name: t.id.clone() }));
            }
            store(tx, JOIN_TOKENS, &t.id, t)?;
            Ok(Ok(()))
        }
        Command::RevokeJoinToken { id } => {
            let Some(mut t) = load::<TokenRecord>(tx, JOIN_TOKENS, id)? else {
                return Ok(Err(not_found(Kind::JoinToken, id)));
            };
            t.revoked = true;
            store(tx, JOIN_TOKENS, id, &t)?;
            Ok(Ok(()))
        }
        Command::ConsumeJoinToken { id, secret_hash, node, at } => {
            // One answer for every way a token fails, so a prober learns nothing.
            let refused = || Ok(Err(Refusal::Invalid("The join token is not valid.".into())));
            let Some(mut t) = load::<TokenRecord>(tx, JOIN_TOKENS, id)? else { return refused() };
            if !constant_time_eq(t.secret_hash.as_bytes(), secret_hash.as_bytes()) || t.unusable(*at).is_some() {
                return refused();
            }
            t.used_at = Some(*at);
            t.used_by = Some(node.clone());
            store(tx, JOIN_TOKENS, id, &t)?;
            Ok(Ok(()))
        }
        _ => Err(StateError::Raft("not a cluster command".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::run;
    use super::*;
    use crate::model::cluster::secret_hash;
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
            revoked: false,
        };
        assert_eq!(run(&s, Command::CreateJoinToken(rec("a"))), Ok(()));
        assert_eq!(run(&s, Command::CreateJoinToken(rec("b"))), Ok(()));
        let consume = |id: &str, secret: [u8; 32], at: u64| Command::ConsumeJoinToken {
            id: id.into(),
            secret_hash: secret_hash(&secret),
            node: "n2".into(),
            at,
        };
        let invalid = Err(Refusal::Invalid("The join token is not valid.".into()));
        assert_eq!(run(&s, consume("a", [2; 32], 200)), invalid, "a forged secret");
        assert_eq!(run(&s, consume("a", [1; 32], 1000)), invalid, "expired");
        assert_eq!(run(&s, consume("nope", [1; 32], 200)), invalid, "unknown");
        assert_eq!(run(&s, consume("a", [1; 32], 200)), Ok(()));
        assert_eq!(run(&s, consume("a", [1; 32], 201)), invalid, "used once only");
        assert_eq!(run(&s, Command::RevokeJoinToken { id: "b".into() }), Ok(()));
        assert_eq!(run(&s, consume("b", [1; 32], 200)), invalid, "revoked");
        let all = s.view().unwrap().join_tokens().unwrap();
        assert_eq!((all[0].used_by.as_deref(), all[0].used_at, all[1].revoked), (Some("n2"), Some(200), true));
    }
}
