//! The cluster: its members (each node reports itself — addresses, roles, a probe summary — with
//! a heartbeat; listed with their raft roles), join tokens (made by an admin, single use,
//! expiring, listed without secrets, revocable; the state keeps only the secret's hash) and the
//! `cairn token` / `cairn node` commands that ask a node's API with the `openstack` client's
//! `OS_*` settings.
//!
//! Joining ([`join`]): any node takes `POST /cairn/v1/join`, consumes the token through the log,
//! signs the CSR and has the leader add the node as a learner; the leader's membership loop
//! makes caught-up learners voters while there are fewer than 3 (5 once there are 5 nodes).
//! Removing a node takes it out of raft and records it as removed, which revokes its
//! certificate on every peer port.
//!
//! Limitations: a token names the API address the admin reached, or `public_url`.

pub mod cli;
pub mod join;
pub mod peer;

use crate::host::NodeProbe;
use crate::identity::{now, Auth};
use crate::model::cluster::{hex, secret_hash, unhex, JoinToken, Member, TokenRecord, MEMBER_HEARTBEAT_SECS};
use crate::pki::Pki;
use crate::state::raft::Replicated;
use crate::state::ClusterCommand;
use crate::state::{Command, Refusal, StateError};
use join::{JoinReply, JoinRequest};
use peer::CallError;
use serde_json::Value;
use std::sync::Arc;

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
    /// A node that must answer does not (503).
    #[error("{0}")]
    Unavailable(String),
    /// A join that the token does not allow (one answer for every reason).
    #[error("The join token is not valid.")]
    BadToken,
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
    pki: Arc<Pki>,
    /// SHA-256 of the cluster CA certificate, which tokens pin.
    ca_fingerprint: [u8; 32],
    /// The identity token signing key, handed to joining nodes.
    token_key: Vec<u8>,
    peers: peer::Peers,
    /// Takes this node's probe on request.
    prober: crate::host::Prober,
}

/// Voters the cluster aims for: 3, or 5 once it has 5 nodes.
fn voter_target(nodes: usize) -> usize {
    if nodes >= 5 {
        5
    } else {
        3
    }
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
    crate::model::cluster::unhex(hex_text.trim())?.try_into().ok()
}

impl Cluster {
    pub fn new(
        state: Replicated,
        pki: Arc<Pki>,
        token_key: Vec<u8>,
        peers: peer::Peers,
        prober: crate::host::Prober,
    ) -> Result<Self> {
        let ca_fingerprint = pki
            .ca_fingerprint()
            .as_deref()
            .and_then(parse_fingerprint)
            .ok_or_else(|| ClusterError::BadRequest("the CA certificate has no SHA-256 fingerprint".into()))?;
        Ok(Self { state, pki, ca_fingerprint, token_key, peers, prober })
    }

    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.ca_fingerprint
    }

    /// Admits a joining node: the token is consumed through the log (once, whichever node
    /// receives it), the CSR is signed for the raft id the log gave, and the leader adds the
    /// node as a learner.
    pub async fn join(&self, req: JoinRequest) -> Result<JoinReply> {
        crate::pki::check_csr(&req.csr).map_err(|e| ClusterError::BadRequest(format!("The CSR is not valid: {e}")))?;
        let key =
            crate::pki::csr_key(&req.csr).ok_or_else(|| ClusterError::BadRequest("The CSR is not valid.".into()))?;
        crate::model::Name::new("name", &req.name).map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        let peer_addr: std::net::SocketAddr = req
            .peer_addr
            .parse()
            .map_err(|_| ClusterError::BadRequest(format!("peer_addr {:?} is not an address:port", req.peer_addr)))?;
        let secret: [u8; 32] = unhex(&req.secret).and_then(|s| s.try_into().ok()).ok_or(ClusterError::BadToken)?;
        let hash = secret_hash(&secret);
        let refused = || {
            log::warn!("join by {:?} from {peer_addr} refused: token {:?} is not valid", req.name, req.token_id);
            ClusterError::BadToken
        };
        // Checked here first, so a forged or stale token costs no write to the log; the log
        // checks again, and it is what makes a token single use. A token made on another node
        // a moment ago may not have reached this one yet: it gets a second look.
        let mut known = None;
        for wait in [0, 500] {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            known = self.state.store().view()?.join_tokens()?.into_iter().find(|t| t.id == req.token_id);
            if known.is_some() {
                break;
            }
        }
        let plausible = known.is_some_and(|t| {
            crate::model::cluster::constant_time_eq(t.secret_hash.as_bytes(), hash.as_bytes())
                && t.unusable(now()).is_none()
        });
        if !plausible {
            return Err(refused());
        }
        let consumed = self
            .state
            .propose(Command::Cluster(ClusterCommand::ConsumeJoinToken {
                id: req.token_id.clone(),
                secret_hash: hash,
                node: req.name.clone(),
                at: now(),
                key,
            }))
            .await?;
        if consumed.is_err() {
            return Err(refused());
        }
        let record = self.state.store().view()?.join_tokens()?.into_iter().find(|t| t.id == req.token_id);
        let node_id = record.and_then(|t| t.node_id).ok_or(ClusterError::BadToken)?;
        let certificate = self.pki.sign_csr(&req.csr, node_id).map_err(|e| ClusterError::Internal(Box::new(e)))?;
        let ca_key = self.pki.ca_key_pem().map_err(|e| ClusterError::Internal(Box::new(e)))?;
        self.state.add_learner(node_id, peer_addr.to_string()).await?;
        log::info!("node {node_id} ({}) joined with token {}: learner at {peer_addr}", req.name, req.token_id);
        Ok(JoinReply {
            node_id,
            certificate,
            ca: self.pki.ca_pem.clone(),
            ca_key,
            token_key: hex(&self.token_key),
            members: self.state.peers(),
            keys: self.state.store().view()?.node_keys()?,
        })
    }

    /// Removes node `id` for good: out of raft, recorded as removed (its certificate is
    /// refused by every peer from then on).
    pub async fn remove_node(&self, auth: &Auth, id: u64) -> Result<()> {
        admin_only(auth)?;
        if id == self.state.id() {
            return Err(ClusterError::BadRequest(
                "A node cannot remove itself; ask another node of the cluster.".into(),
            ));
        }
        if !self.state.store().view()?.members()?.iter().any(|m| m.id == id) && !self.state.peers().contains_key(&id) {
            return Err(ClusterError::NotFound(format!("The node {id} could not be found.")));
        }
        // Out of raft first: should that fail, the node is still whole and the call can be
        // repeated.
        self.state.remove_node(id).await?;
        self.state.propose(Command::Cluster(ClusterCommand::RemoveMember { id, at: now() })).await??;
        log::info!("node {id} removed by user {}; its certificate is revoked", auth.user.id);
        Ok(())
    }

    /// On the leader, every second: promotes caught-up learners while there are fewer voters
    /// than the target.
    pub async fn membership_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let target = voter_target(self.state.peers().len());
            match self.state.promote_learners(target).await {
                Ok(ids) if !ids.is_empty() => log::info!("nodes {ids:?} are voters now"),
                Ok(_) => {}
                Err(e) => log::warn!("promoting learners: {}", crate::error_chain(&e)),
            }
        }
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
            node_id: None,
            revoked: false,
        };
        self.state.propose(Command::Cluster(ClusterCommand::CreateJoinToken(record.clone()))).await??;
        log::info!("join token {} made by user {}, valid until {}", record.id, record.created_by, record.expires_at);
        Ok((record, text))
    }

    /// Reports `me` with a fresh heartbeat, every [`MEMBER_HEARTBEAT_SECS`].
    pub async fn heartbeat_loop(self: Arc<Self>, me: Member) {
        loop {
            let report = Member { heartbeat_at: now(), ..me.clone() };
            match self.state.propose(Command::Cluster(ClusterCommand::ReportMember(report))).await {
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

    /// The peer address of the first member that `pick` chooses and that has one.
    fn member(&self, pick: impl Fn(&Member) -> bool) -> Result<Option<String>> {
        let members = self.state.store().view()?.members()?;
        Ok(members.into_iter().find(|m| pick(m) && !m.peer_addr.is_empty()).map(|m| m.peer_addr))
    }

    /// The peer address of the member named `node` (servers and images name their node).
    fn peer_addr_named(&self, node: &str) -> Result<String> {
        let member = self.member(|m| m.name == node)?;
        member.ok_or_else(|| ClusterError::NotFound(format!("no member named {node} with a peer address")))
    }

    /// Node `id`'s host probe, taken now (by a node call unless it is this node).
    pub async fn probe(&self, auth: &Auth, id: u64) -> Result<NodeProbe> {
        admin_only(auth)?;
        if id == self.state.id() {
            return self.prober.run().await.map_err(|e| ClusterError::Internal(Box::new(e)));
        }
        let addr = self
            .member(|m| m.id == id)?
            .ok_or_else(|| ClusterError::NotFound(format!("The node {id} could not be found.")))?;
        let answer = self.peers.node_call(&addr, &peer::NodeCall::Probe).await.map_err(|e| match e {
            CallError::NotFound(m) => ClusterError::NotFound(m),
            e => ClusterError::Unavailable(format!("The node {id} did not answer its probe: {e}")),
        })?;
        serde_json::from_value(answer).map_err(|e| ClusterError::Internal(Box::new(e)))
    }

    pub fn tokens(&self, auth: &Auth) -> Result<Vec<TokenRecord>> {
        admin_only(auth)?;
        Ok(self.state.store().view()?.join_tokens()?)
    }

    pub async fn revoke_token(&self, auth: &Auth, id: &str) -> Result<()> {
        admin_only(auth)?;
        self.state.propose(Command::Cluster(ClusterCommand::RevokeJoinToken { id: id.into() })).await??;
        log::info!("join token {id} revoked by user {}", auth.user.id);
        Ok(())
    }
}

impl crate::compute::Remote for Cluster {
    fn call<'a>(
        &'a self,
        node: &'a str,
        call: peer::NodeCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<Value, CallError>> + Send + 'a>> {
        Box::pin(async move {
            let addr = self.peer_addr_named(node).map_err(|e| CallError::Failed(crate::error_chain(&e)))?;
            self.peers.node_call(&addr, &call).await
        })
    }
}

impl crate::image::Fetch for Cluster {
    fn open<'a>(
        &'a self,
        node: &'a str,
        id: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<crate::image::ByteStream, crate::image::FetchError>>
                + Send
                + 'a,
        >,
    > {
        let failed = |e: &dyn std::error::Error| crate::image::FetchError(crate::error_chain(e));
        Box::pin(async move {
            let addr = self.peer_addr_named(node).map_err(|e| failed(&e))?;
            self.peers.image(&addr, id).await.map_err(|e| failed(&e))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn voters_are_three_then_five() {
        let targets: Vec<usize> = (1..=7).map(super::voter_target).collect();
        assert_eq!(targets, [3, 3, 3, 3, 5, 5, 5]);
    }

    #[test]
    fn fingerprints_parse() {
        let hex = "ab".repeat(32);
        assert_eq!(super::parse_fingerprint(&hex), Some([0xab; 32]));
        assert_eq!(super::parse_fingerprint("abc"), None);
        assert_eq!(super::parse_fingerprint(&"zz".repeat(32)), None);
    }
}
