//! `cairn check URL`: is a node's API reachable from here, which CA does it present, and does
//! `/healthz` answer? With `--ca-fingerprint` the CA must match (what a join token pins).
//! Retries until `--wait` runs out, so it can run at boot before the peer is up.

use crate::client::Client;
use crate::pki::{der_fingerprint, der_to_pem, peer_chain};
use hyper::Method;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0:?} is not an https:// URL with a host")]
    Url(String),
    #[error("{url}: {why}")]
    Unreachable { url: String, why: String },
}

/// `host` or `host:port` (IPv6 in brackets) with HTTPS's port when it names none.
pub fn with_default_port(host: &str) -> String {
    if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:443")
    }
}

/// The address of an `https://host[:port]/…` URL.
pub fn addr_of(url: &str) -> Result<SocketAddr, CheckError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| CheckError::Url(url.into()))?;
    let host = rest.split('/').next().unwrap_or_default();
    with_default_port(host).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| CheckError::Url(url.into()))
}

/// Why one attempt to reach an agent failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// No TLS handshake (nothing listening, or not TLS): the chain of causes.
    #[error("{0}")]
    Handshake(String),
    #[error("no certificate in its chain matches the pinned CA fingerprint")]
    NotPinned,
    #[error("it presented no certificate")]
    NoCertificate,
    #[error("its certificate does not chain to its CA: {0}")]
    Untrusted(String),
    #[error("{0}")]
    Request(String),
}

/// One attempt: the CA's fingerprint and the /healthz status.
async fn attempt(addr: SocketAddr, pin: Option<&str>) -> Result<(String, u16), AttemptError> {
    let chain = peer_chain(addr).await.map_err(|e| AttemptError::Handshake(crate::error_chain(&e)))?;
    let ca = match pin {
        Some(p) => chain.iter().find(|c| der_fingerprint(c) == p).ok_or(AttemptError::NotPinned)?,
        None => chain.last().ok_or(AttemptError::NoCertificate)?,
    };
    let client = Client::new(addr, &der_to_pem(ca)).map_err(|e| AttemptError::Untrusted(e.to_string()))?;
    let mut conn = client.connect().await.map_err(|e| AttemptError::Untrusted(e.to_string()))?;
    let r = conn.request(Method::GET, "/healthz", &[], None).await.map_err(|e| AttemptError::Request(e.to_string()))?;
    Ok((der_fingerprint(ca), r.status))
}

pub fn run(url: &str, wait: Duration, pin: Option<&str>) -> Result<String, CheckError> {
    let addr = addr_of(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CheckError::Unreachable { url: url.into(), why: e.to_string() })?;
    let deadline = Instant::now() + wait;
    loop {
        match rt.block_on(attempt(addr, pin)) {
            Ok((fp, status)) => return Ok(format!("{url} reachable; CA sha256 {fp}; /healthz {status}")),
            Err(why) if Instant::now() >= deadline => {
                return Err(CheckError::Unreachable { url: url.into(), why: why.to_string() })
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(super::addr_of("https://127.0.0.1").unwrap().port(), 443);
        assert_eq!(super::addr_of("https://127.0.0.1:8443/identity/v3").unwrap().port(), 8443);
        assert_eq!(super::addr_of("https://127.0.0.1/v3").unwrap(), "127.0.0.1:443".parse().unwrap());
        assert!(super::addr_of("http://127.0.0.1/v3").is_err());
        assert_eq!(super::with_default_port("[fd00::1]"), "[fd00::1]:443");
        assert_eq!(super::with_default_port("[fd00::1]:8443"), "[fd00::1]:8443");
        assert!(super::addr_of("http://127.0.0.1").is_err());
        assert!(super::addr_of("https://").is_err());
    }
}
