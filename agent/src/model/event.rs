//! Notifications: what the cloud did, as a numbered stream (`compute.instance.create.end`, …)
//! that metering, dashboards and operators read from any point they last saw. Each one comes
//! from applying a command, so every node of a cluster numbers them alike.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Position in the stream, from 1.
    pub seq: u64,
    pub event_type: String,
    /// The service and node it concerns, e.g. `compute.node1`.
    pub publisher_id: String,
    /// Seconds since the epoch, as the command carried it.
    pub timestamp: u64,
    pub payload: serde_json::Value,
}
