//! Plain data of Cinder's volumes: the record the state keeps and its status machine
//! (creating → available → in-use → deleting; extending; error with a reason).

use super::storage::VolumeFormat;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeStatus {
    Creating,
    Available,
    InUse,
    Extending,
    Deleting,
    Error,
}

impl VolumeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeStatus::Creating => "creating",
            VolumeStatus::Available => "available",
            VolumeStatus::InUse => "in-use",
            VolumeStatus::Extending => "extending",
            VolumeStatus::Deleting => "deleting",
            VolumeStatus::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub user_id: String,
    /// GiB, as Cinder counts.
    pub size: u64,
    pub status: VolumeStatus,
    /// Why the volume is in `error`.
    pub error: Option<String>,
    /// The volume type, which names the pool.
    pub volume_type: String,
    pub format: VolumeFormat,
    /// The node whose pool holds it.
    pub node: String,
    pub image_id: Option<String>,
    pub source_volid: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Per-project limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub volumes: u64,
    pub gigabytes: u64,
}
