//! Cairn's node agent as a library: the binary (`main.rs`) and the integration tests and
//! benchmark use the same modules.

pub mod api;
pub mod bench;
pub mod check;
pub mod client;
pub mod config;
pub mod daemon;
pub mod host;
pub mod identity;
pub mod logging;
pub mod model;
pub mod pki;
pub mod state;
pub mod sys;
