//! Joining: the new node's side ([`join`]) and what it keeps afterwards ([`NodeIdentity`]).
//!
//! The node tries the token's addresses in turn. From each it first fetches the certificate
//! chain without trusting it and looks for the CA whose SHA-256 the token pins; a server that
//! does not present it is refused (no trust on first use). Then it connects again trusting only
//! that CA and sends its CSR with the token's id and secret to `POST /cairn/v1/join`. The
//! answer is its certificate (raft id in the SAN), the CA with its key, the identity token
//! key and the raft members; the cluster has added it as a learner.

use crate::client::Client;
use crate::model::cluster::{hex, unhex, JoinToken};
use crate::pki::{self, PkiError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What a joining node sends.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token_id: String,
    /// The token's secret, 64 hex digits.
    pub secret: String,
    pub csr: String,
    pub name: String,
    pub api_addr: String,
    pub peer_addr: String,
}

/// What it gets back.
#[derive(Serialize, Deserialize)]
pub struct JoinReply {
    pub node_id: u64,
    pub certificate: String,
    pub ca: String,
    pub ca_key: String,
    /// The key that signs identity tokens (hex): a token any node issued is valid on all.
    pub token_key: String,
    /// Raft id → peer address of every member when it joined.
    pub members: BTreeMap<u64, String>,
    /// Raft id → SHA-256 of the node's public key, for every node the cluster knows.
    pub keys: BTreeMap<u64, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the join token cannot be read: {0}")]
    Token(String),
    #[error("the join token expired; make a new one with `cairn token create`")]
    Expired,
    #[error("no address in the join token let this node join: {0}")]
    NoServer(String),
    #[error("PKI")]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Io(#[from] crate::PathIo),
    #[error("this node is already node {node_id} of a cluster (CA sha256 {fingerprint}); it does not join another. To make it join, stop the agent and remove {data_dir} (a reset)")]
    AlreadyMember { node_id: u64, fingerprint: String, data_dir: String },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Who this node is in its cluster: kept in `<data-dir>/cluster.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: u64,
    /// Whether it made the cluster (the first node) rather than joining it.
    pub seed: bool,
    /// The nodes it was told of when it joined: raft id → SHA-256 of the node's public key.
    pub known: BTreeMap<u64, String>,
}

impl NodeIdentity {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("cluster.json")
    }

    /// The identity stored in `data_dir`, if any.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, JoinError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JoinError::Io(crate::PathIo { op: "reading", path, source })),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), JoinError> {
        Ok(pki::write_file(&Self::path(data_dir), &serde_json::to_vec_pretty(self)?, false)?)
    }
}

/// This node's own settings for a join.
pub struct Joiner<'a> {
    pub data_dir: &'a Path,
    pub name: &'a str,
    pub names: &'a [String],
    pub addrs: &'a [IpAddr],
    pub api_addr: String,
    pub peer_addr: String,
}

/// Joins the cluster `token_text` names; on success the PKI files, the token key and the
/// node's identity are stored in the data dir.
pub async fn join(token_text: &str, me: &Joiner<'_>, now: u64) -> Result<NodeIdentity, JoinError> {
    let token = JoinToken::decode(token_text.trim()).map_err(|e| JoinError::Token(e.to_string()))?;
    if now >= token.expires_at {
        return Err(JoinError::Expired);
    }
    let pki_dir = me.data_dir.join("pki");
    let mut failures = Vec::new();
    for addr in &token.addrs {
        match try_join(&token, addr, me, &pki_dir).await {
            Ok(reply) => {
                pki::install(&pki_dir, &reply.ca, &reply.ca_key, &reply.certificate)?;
                let key = unhex(&reply.token_key)
                    .ok_or_else(|| JoinError::NoServer(format!("{addr}: the token key in the answer is not hex")))?;
                pki::write_file(&me.data_dir.join("token.key"), &key, true)?;
                let identity = NodeIdentity { node_id: reply.node_id, seed: false, known: reply.keys.clone() };
                identity.save(me.data_dir)?;
                log::info!("joined the cluster through {addr} as node {}", reply.node_id);
                return Ok(identity);
            }
            Err(why) => {
                log::warn!("joining through {addr}: {why}");
                failures.push(format!("{addr}: {why}"));
            }
        }
    }
    Err(JoinError::NoServer(failures.join("; ")))
}

/// Why one address could not be joined through (the next is tried).
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// Its address, TLS, the CSR, the connection or the request failed: the chain of causes.
    #[error("{0}")]
    Unreachable(String),
    #[error("the server does not present the CA the token pins (sha256 {0}): refused")]
    NotPinned(String),
    #[error("the cluster answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("its answer does not parse: {0}")]
    Answer(#[from] serde_json::Error),
    #[error("the answer carries another CA than the pinned one: refused")]
    OtherCa,
}

fn unreachable(e: &dyn std::error::Error) -> AttemptError {
    AttemptError::Unreachable(crate::error_chain(e))
}

/// One address: pin the CA, then ask to join.
async fn try_join(token: &JoinToken, addr: &str, me: &Joiner<'_>, pki_dir: &Path) -> Result<JoinReply, AttemptError> {
    let sock = crate::check::addr_of(&format!("https://{addr}")).map_err(|e| unreachable(&e))?;
    let chain = pki::peer_chain(sock).await.map_err(|e| unreachable(&e))?;
    let pinned = hex(&token.ca_fingerprint);
    let ca_der = chain
        .iter()
        .find(|der| pki::der_fingerprint(der) == pinned)
        .ok_or_else(|| AttemptError::NotPinned(pinned.clone()))?;
    let ca_pem = pki::der_to_pem(ca_der);
    let csr = pki::csr(pki_dir, me.name, me.names, me.addrs).map_err(|e| unreachable(&e))?;
    let req = JoinRequest {
        token_id: token.id.clone(),
        secret: hex(&token.secret),
        csr,
        name: me.name.into(),
        api_addr: me.api_addr.clone(),
        peer_addr: me.peer_addr.clone(),
    };
    let client = Client::new(sock, &ca_pem).map_err(|e| unreachable(&e))?;
    let mut conn = client.connect().await.map_err(|e| unreachable(&e))?;
    let body = serde_json::to_vec(&req)?;
    let resp =
        conn.request(hyper::Method::POST, "/cairn/v1/join", &[], Some(body)).await.map_err(|e| unreachable(&e))?;
    if resp.status != 200 {
        let message = resp.json()["error"]["message"].as_str().map(str::to_owned).unwrap_or_default();
        return Err(AttemptError::Refused { status: resp.status, message });
    }
    let reply: JoinReply = serde_json::from_slice(&resp.body)?;
    if pki::fingerprint(&reply.ca).as_deref() != Some(pinned.as_str()) {
        return Err(AttemptError::OtherCa);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), None);
        let id = NodeIdentity { node_id: 3, seed: false, known: BTreeMap::from([(1, "k1".into()), (2, "k2".into())]) };
        id.save(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(id));
    }
}
