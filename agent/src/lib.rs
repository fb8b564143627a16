//! Cairn's node agent as a library: the binary (`main.rs`) and the integration tests and
//! benchmark use the same modules.

pub mod api;
pub mod bench;
pub mod check;
pub mod client;
pub mod cluster;
pub mod compute;
pub mod config;
pub mod daemon;
pub mod host;
pub mod identity;
pub mod image;
pub mod logging;
pub mod model;
pub mod net;
pub mod pki;
pub mod state;
pub mod storage;
pub mod sys;
pub mod transport;

/// An error and its sources on one line (`a: b: c`): the chain printed once, at the top.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A file system operation that failed: what was done (`reading`, `writing`, …), where, why.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}")]
pub struct PathIo {
    pub op: &'static str,
    pub path: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}
