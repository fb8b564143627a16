//! Signed, expiring tokens: `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`.
//! Any node holding the cluster's token key validates a token without a lookup; revocation is
//! a replicated record of the token's audit id, checked by the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Length of the token signing key, in bytes.
pub const KEY_LEN: usize = 32;

/// What a token says. Short field names keep tokens short in headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    #[serde(rename = "u")]
    pub user_id: String,
    /// Project id when project-scoped.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Domain id when domain-scoped.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    /// Scoped to the whole system.
    #[serde(rename = "s", default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// The application credential it was issued for.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub app_cred: Option<String>,
    /// How the user proved who they are (`password`, `token`, `application_credential`).
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Issued at, unix seconds.
    #[serde(rename = "i")]
    pub issued_at: u64,
    /// Expires at, unix seconds.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// Random id naming this token in revocations and logs (never the token itself).
    #[serde(rename = "a")]
    pub audit_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// Signs and verifies tokens with one key.
pub struct TokenSigner {
    key: hmac::Key,
}

impl TokenSigner {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let tag = hmac::sign(&self.key, &payload);
        format!("{}.{}", B64.encode(&payload), B64.encode(tag.as_ref()))
    }

    /// Checks signature and expiry at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (p, t) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(p).map_err(|_| TokenError::Malformed)?;
        let tag = B64.decode(t).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// A fresh audit id: 16 random bytes, base64url.
pub fn new_audit_id() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            user_id: "u".into(),
            project_id: Some("p".into()),
            domain_id: None,
            system: false,
            app_cred: None,
            methods: vec!["password".into()],
            issued_at: 100,
            expires_at: 200,
            audit_id: new_audit_id(),
        }
    }

    #[test]
    fn sign_verify_expire_and_tamper() {
        let s = TokenSigner::new(&[7; KEY_LEN]);
        let t = s.sign(&claims());
        assert_eq!(s.verify(&t, 150).unwrap().user_id, "u");
        assert_eq!(s.verify(&t, 200), Err(TokenError::Expired));
        let other = TokenSigner::new(&[8; KEY_LEN]);
        assert_eq!(other.verify(&t, 150), Err(TokenError::BadSignature));
        // Swap the payload for one naming another user, keep the old signature.
        let (_, sig) = t.split_once('.').unwrap();
        let mut c = claims();
        c.user_id = "admin".into();
        let forged = format!("{}.{}", B64.encode(serde_json::to_vec(&c).unwrap()), sig);
        assert_eq!(s.verify(&forged, 150), Err(TokenError::BadSignature));
        for bad in ["", "abc", "a.b", "!!.??"] {
            assert!(s.verify(bad, 150).is_err(), "{bad:?}");
        }
    }
}
