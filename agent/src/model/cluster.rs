//! Plain data of the cluster: join tokens (what a new node needs to find the cluster, check it
//! is the right one, and prove it was invited) and the record the state keeps of each.
//!
//! A token travels as text: `cairn-join1.` then base64url (no padding) of a versioned binary
//! layout — version byte, token id (16 bytes), expiry (u64 seconds, big-endian), the SHA-256
//! fingerprint of the cluster CA certificate (32 bytes), the secret (32 bytes), the addresses
//! (count, then each as length + UTF-8) — followed by the first 8 bytes of SHA-256 over all of
//! that, so a mistyped or altered token is refused before anything is sent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "cairn-join1.";
const VERSION: u8 = 1;
const CHECK: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a Cairn join token (it starts with {PREFIX})")]
    Prefix,
    #[error("the join token is not valid base64url")]
    Encoding,
    #[error("the join token is damaged or was altered (its checksum does not match)")]
    Checksum,
    #[error("join token version {0} is not understood by this agent (it reads version {VERSION})")]
    Version(u8),
    #[error("the join token is truncated or malformed")]
    Malformed,
    #[error("a join token holds 1 to 16 addresses of at most 255 bytes each")]
    Addresses,
}

/// A join token as the joining node reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Names the token in listings and revocations (hex of 16 random bytes).
    pub id: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// SHA-256 of the cluster CA certificate (DER), lower-case hex.
    pub ca_fingerprint: [u8; 32],
    pub secret: [u8; 32],
    /// API addresses (`host:port`) of the cluster's nodes, tried in turn.
    pub addrs: Vec<String>,
}

impl std::fmt::Debug for JoinToken {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex text; `None` unless every pair is a hex byte.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What the state keeps of a secret: its SHA-256, hex (the secret is 256 random bits, so a
/// plain hash cannot be searched).
pub fn secret_hash(secret: &[u8]) -> String {
    hex(&sha256(secret))
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl JoinToken {
    pub fn encode(&self) -> Result<String, TokenError> {
        let id = u128::from_str_radix(&self.id, 16).map_err(|_| TokenError::Malformed)?;
        if self.addrs.is_empty() || self.addrs.len() > 16 || self.addrs.iter().any(|a| a.is_empty() || a.len() > 255) {
            return Err(TokenError::Addresses);
        }
        let mut b = vec![VERSION];
        b.extend(id.to_be_bytes());
        b.extend(self.expires_at.to_be_bytes());
        b.extend(self.ca_fingerprint);
        b.extend(self.secret);
        b.push(self.addrs.len() as u8);
        for a in &self.addrs {
            b.push(a.len() as u8);
            b.extend(a.as_bytes());
        }
        let check = sha256(&b);
        b.extend(&check[..CHECK]);
        Ok(format!("{PREFIX}{}", B64.encode(b)))
    }

    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let body = text.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let raw = B64.decode(body).map_err(|_| TokenError::Encoding)?;
        if raw.len() < 1 + CHECK {
            return Err(TokenError::Malformed);
        }
        let (data, check) = raw.split_at(raw.len() - CHECK);
        if !constant_time_eq(&sha256(data)[..CHECK], check) {
            return Err(TokenError::Checksum);
        }
        let mut r = Reader(data);
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(TokenError::Version(version));
        }
        let id = format!("{:032x}", u128::from_be_bytes(r.array()?));
        let expires_at = u64::from_be_bytes(r.array()?);
        let ca_fingerprint = r.array()?;
        let secret = r.array()?;
        let n = r.take(1)?[0];
        let mut addrs = vec![];
        for _ in 0..n {
            let len = usize::from(r.take(1)?[0]);
            addrs.push(String::from_utf8(r.take(len)?.to_vec()).map_err(|_| TokenError::Malformed)?);
        }
        if !r.0.is_empty() || addrs.is_empty() || addrs.iter().any(String::is_empty) {
            return Err(TokenError::Malformed);
        }
        Ok(JoinToken { id, expires_at, ca_fingerprint, secret, addrs })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// What the state keeps of a join token: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub secret_hash: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// The user who made it.
    pub created_by: String,
    /// When and by which node it was used (single use).
    pub used_at: Option<u64>,
    pub used_by: Option<String>,
    /// The raft id the node that used it was given.
    #[serde(default)]
    pub node_id: Option<u64>,
    pub revoked: bool,
}

impl TokenRecord {
    /// Why the token cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now: u64) -> Option<&'static str> {
        if self.revoked {
            Some("the join token was revoked")
        } else if self.used_at.is_some() {
            Some("the join token was already used")
        } else if now >= self.expires_at {
            Some("the join token has expired")
        } else {
            None
        }
    }
}

/// A node of the cluster as it reports itself (every [`MEMBER_HEARTBEAT_SECS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its raft node id.
    pub id: u64,
    pub name: String,
    /// Where its API listens.
    pub api_addr: String,
    /// Where its peer port (mutual TLS: raft, node calls) listens.
    #[serde(default)]
    pub peer_addr: String,
    pub roles: Vec<String>,
    /// The host probe, summed up.
    pub cpu_model: String,
    pub cpus: u32,
    /// `vmx`, `svm` or `none`.
    pub virtualization: String,
    /// How its guests run: `kvm` or `qemu` (emulation).
    pub accel: String,
    pub memory_mb: u64,
    pub heartbeat_at: u64,
}

/// A node removed from the cluster: its id is not reused and its certificate is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedNode {
    pub id: u64,
    pub name: String,
    pub removed_at: u64,
}

/// How often a node reports itself; it counts as down after three missed reports.
pub const MEMBER_HEARTBEAT_SECS: u64 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken {
            id: "0123456789abcdef0123456789abcdef".into(),
            expires_at: 1_900_000_000,
            ca_fingerprint: [7; 32],
            secret: [9; 32],
            addrs: vec!["10.0.0.1:443".into(), "[fd00::1]:443".into()],
        }
    }

    #[test]
    fn join_tokens_round_trip_and_refuse_damage() {
        let t = token();
        let text = t.encode().unwrap();
        assert!(text.starts_with("cairn-join1.") && !text.contains('='), "{text}");
        assert_eq!(JoinToken::decode(&text).unwrap(), t);
        assert_eq!(JoinToken::decode(&format!("  {text}\n")).unwrap(), t, "whitespace from a paste");
        assert!(!format!("{t:?}").contains("0909"), "the secret stays out of Debug");
        // Any altered character is caught by the checksum (or the encoding).
        let body = text.strip_prefix("cairn-join1.").unwrap();
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut b: Vec<char> = body.chars().collect();
            b[i] = if b[i] == 'A' { 'B' } else { 'A' };
            let bad = format!("cairn-join1.{}", b.into_iter().collect::<String>());
            assert!(
                matches!(JoinToken::decode(&bad), Err(TokenError::Checksum | TokenError::Encoding)),
                "position {i}"
            );
        }
        assert_eq!(JoinToken::decode("join1.xyz"), Err(TokenError::Prefix));
        assert_eq!(JoinToken::decode("cairn-join1.!!"), Err(TokenError::Encoding));
        assert_eq!(JoinToken::decode("cairn-join1.AAAA"), Err(TokenError::Malformed));
        // A later version is named, not misread.
        let mut raw = B64.decode(body).unwrap();
        raw[0] = 2;
        let n = raw.len() - CHECK;
        let check = sha256(&raw[..n]);
        raw[n..].copy_from_slice(&check[..CHECK]);
        assert_eq!(JoinToken::decode(&format!("cairn-join1.{}", B64.encode(raw))), Err(TokenError::Version(2)));
        assert_eq!(JoinToken { addrs: vec![], ..token() }.encode(), Err(TokenError::Addresses));
    }

    #[test]
    fn records_expire_and_are_single_use() {
        let r = TokenRecord {
            id: "t".into(),
            secret_hash: secret_hash(&[9; 32]),
            created_at: 100,
            expires_at: 200,
            created_by: "admin".into(),
            used_at: None,
            used_by: None,
            node_id: None,
            revoked: false,
        };
        assert_eq!(r.unusable(199), None);
        assert_eq!(r.unusable(200), Some("the join token has expired"));
        assert_eq!(
            TokenRecord { used_at: Some(150), ..r.clone() }.unusable(160),
            Some("the join token was already used")
        );
        assert_eq!(TokenRecord { revoked: true, ..r.clone() }.unusable(160), Some("the join token was revoked"));
        assert!(constant_time_eq(r.secret_hash.as_bytes(), secret_hash(&[9; 32]).as_bytes()));
        assert!(!constant_time_eq(r.secret_hash.as_bytes(), secret_hash(&[8; 32]).as_bytes()));
    }
}
