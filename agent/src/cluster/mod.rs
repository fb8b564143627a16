//! The cluster: its members (each node reports itself — addresses, roles, a probe summary — with
//! a heartbeat; listed with their raft roles), join tokens (made by an admin, single use,
//! expiring, listed without secrets, revocable; the state keeps only the secret's hash) and the
//! `cairn token` / `cairn node` commands that ask a node's API with the `openstack` client's
//! `OS_*` settings.
//!
//! Limitations: joining with a token (the CSR, the peer transport, raft membership) comes next;
//! a token names the API address the admin reached, or `public_url`.

pub mod cli;

use crate::identity::{now, Auth};
use crate::model::cluster::{hex, secret_hash, JoinToken, Member, TokenRecord, MEMBER_HEARTBEAT_SECS};
use crate::state::raft::Replicated;
use crate::state::{Command, Refusal, StateError};

/// A token lives this long unless asked otherwise (15 minutes).
pub const DEFAULT_TTL_SECS: u64 = 15 * 60;
/// And at most a day.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for ClusterError {
    fn from(e: StateError) -> Self {
        ClusterError::Internal(Box::new(e))
    }
}

impl From<Refusal> for ClusterError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound { kind, id } => ClusterError::NotFound(format!("The {kind} {id} could not be found.")),
            Refusal::Invalid(m) => ClusterError::BadRequest(m),
            r => ClusterError::Internal(Box::new(r)),
        }
    }
}

type Result<T> = std::result::Result<T, ClusterError>;

pub struct Cluster {
    state: Replicated,
    /// SHA-256 of the cluster CA certificate, which tokens pin.
    ca_fingerprint: [u8; 32],
}

fn admin_only(auth: &Auth) -> Result<()> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(ClusterError::Forbidden("Managing join tokens needs the admin role.".into()))
    }
}

/// Parses the CA fingerprint as [`crate::pki::fingerprint`] prints it (64 hex digits).
pub fn parse_fingerprint(hex_text: &str) -> Option<[u8; 32]> {
    let t = hex_text.trim();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Cluster {
    pub fn new(state: Replicated, ca_fingerprint: [u8; 32]) -> Self {
        Self { state, ca_fingerprint }
    }

    /// Makes a join token valid for `ttl_secs` naming `addrs`; returns its record and its text
    /// (the only time the secret exists outside the joining node).
    pub async fn create_token(&self, auth: &Auth, ttl_secs: u64, addrs: Vec<String>) -> Result<(TokenRecord, String)> {
        admin_only(auth)?;
        if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
            return Err(ClusterError::BadRequest(format!(
                "A join token lives 1 second to {} hours, not {ttl_secs} s.",
                MAX_TTL_SECS / 3600
            )));
        }
        let t = now();
        let token = JoinToken {
            id: hex(&rand::random::<[u8; 16]>()),
            expires_at: t + ttl_secs,
            ca_fingerprint: self.ca_fingerprint,
            secret: rand::random(),
            addrs,
        };
        let text = token.encode().map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        let record = TokenRecord {
            id: token.id.clone(),
            secret_hash: secret_hash(&token.secret),
            created_at: t,
            expires_at: token.expires_at,
            created_by: auth.user.id.clone(),
            used_at: None,
            used_by: None,
            revoked: false,
        };
        self.state.propose(Command::CreateJoinToken(record.clone())).await??;
        log::info!("join token {} made by user {}, valid until {}", record.id, record.created_by, record.expires_at);
        Ok((record, text))
    }

    /// Reports `me` with a fresh heartbeat, every [`MEMBER_HEARTBEAT_SECS`].
    pub async fn heartbeat_loop(self: std::sync::Arc<Self>, me: Member) {
        loop {
            let report = Member { heartbeat_at: now(), ..me.clone() };
            match self.state.propose(Command::ReportMember(report)).await {
                Ok(Ok(())) => {}
                Ok(Err(r)) => log::warn!("node report refused: {r}"),
                Err(e) => log::warn!("node report: {}", crate::error_chain(&e)),
            }
            tokio::time::sleep(std::time::Duration::from_secs(MEMBER_HEARTBEAT_SECS)).await;
        }
    }

    /// Every node: its last report, its raft role (`none` when raft does not know it), and
    /// whether it reported in the last three heartbeats.
    pub fn nodes(&self, auth: &Auth) -> Result<Vec<(Member, &'static str, bool)>> {
        admin_only(auth)?;
        let roles = self.state.roles();
        let t = now();
        Ok(self
            .state
            .store()
            .view()?
            .members()?
            .into_iter()
            .map(|m| {
                let role = roles.get(&m.id).copied().unwrap_or("none");
                let up = t.saturating_sub(m.heartbeat_at) <= 3 * MEMBER_HEARTBEAT_SECS;
                (m, role, up)
            })
            .collect())
    }

    pub fn tokens(&self, auth: &Auth) -> Result<Vec<TokenRecord>> {
        admin_only(auth)?;
        Ok(self.state.store().view()?.join_tokens()?)
    }

    pub async fn revoke_token(&self, auth: &Auth, id: &str) -> Result<()> {
        admin_only(auth)?;
        self.state.propose(Command::RevokeJoinToken { id: id.into() }).await??;
        log::info!("join token {id} revoked by user {}", auth.user.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_parse() {
        let hex = "ab".repeat(32);
        assert_eq!(super::parse_fingerprint(&hex), Some([0xab; 32]));
        assert_eq!(super::parse_fingerprint("abc"), None);
        assert_eq!(super::parse_fingerprint(&"zz".repeat(32)), None);
    }
}
