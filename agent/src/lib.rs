//! Cairn's node agent as a library: the binary (`main.rs`) and the integration tests and
//! benchmark use the same modules.

pub mod model;
pub mod state;
