//! Cairn's node agent as a library: the binary (`main.rs`) and the integration tests and
//! benchmark use the same modules.

pub mod api;
pub mod host;
pub mod identity;
pub mod model;
pub mod pki;
pub mod state;
pub mod sys;
