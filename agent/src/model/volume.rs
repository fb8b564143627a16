//! Plain data of Cinder's volumes and snapshots: the records the state keeps and their status
//! machine (creating → available → attaching → in-use → detaching → available → deleting;
//! extending; error with a reason). Snapshots use the same statuses (creating → available →
//! deleting, error).

use super::storage::VolumeFormat;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeStatus {
    Creating,
    Available,
    Attaching,
    InUse,
    Detaching,
    Extending,
    Deleting,
    Error,
    /// Set by an admin's reset-status only: the record says the volume is being worked on.
    Maintenance,
    /// A delete that failed (Cinder's `error_deleting`); set by reset-status.
    ErrorDeleting,
    /// Held by an attachment not yet connected (Cinder 3.27's attachments API).
    Reserved,
    /// Being reverted to its latest snapshot (3.40); its snapshot is `restoring` meanwhile.
    Reverting,
    Restoring,
}

impl VolumeStatus {
    pub const ALL: [VolumeStatus; 13] = [
        VolumeStatus::Creating,
        VolumeStatus::Available,
        VolumeStatus::Attaching,
        VolumeStatus::InUse,
        VolumeStatus::Detaching,
        VolumeStatus::Extending,
        VolumeStatus::Deleting,
        VolumeStatus::Error,
        VolumeStatus::Maintenance,
        VolumeStatus::ErrorDeleting,
        VolumeStatus::Reserved,
        VolumeStatus::Reverting,
        VolumeStatus::Restoring,
    ];

    /// The status a name gives (`in-use`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeStatus::Creating => "creating",
            VolumeStatus::Available => "available",
            VolumeStatus::Attaching => "attaching",
            VolumeStatus::InUse => "in-use",
            VolumeStatus::Detaching => "detaching",
            VolumeStatus::Extending => "extending",
            VolumeStatus::Deleting => "deleting",
            VolumeStatus::Error => "error",
            VolumeStatus::Maintenance => "maintenance",
            VolumeStatus::ErrorDeleting => "error_deleting",
            VolumeStatus::Reserved => "reserved",
            VolumeStatus::Reverting => "reverting",
            VolumeStatus::Restoring => "restoring",
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
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Where it is attached (one server at most: no multiattach).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Cinder's free-form key/value metadata.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Set by `os-set_bootable`; otherwise a volume made from an image is bootable.
    #[serde(default)]
    pub bootable: Option<bool>,
    /// Cinder's `volume_image_metadata`: the image's properties it was made from (passed on to
    /// clones), set and unset by `os-set_image_metadata` and `os-unset_image_metadata`.
    #[serde(default)]
    pub image_metadata: std::collections::BTreeMap<String, String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Volume {
    pub fn is_bootable(&self) -> bool {
        self.bootable.unwrap_or(self.image_id.is_some())
    }
}

/// A volume's attachment to a server, as Nova and Cinder both show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub server_id: String,
    /// The node running the server.
    pub host: String,
    /// The guest device, e.g. `/dev/vdb`.
    pub device: String,
    pub attached_at: u64,
    /// Where it stands (records from before the attachments API are attached).
    #[serde(default)]
    pub status: AttachStatus,
    /// `rw` or `ro` (3.54).
    #[serde(default = "read_write")]
    pub mode: String,
}

fn read_write() -> String {
    "rw".into()
}

/// An attachment's status as Cinder's attachments API shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachStatus {
    /// Made without a connector: the volume is held.
    Reserved,
    /// Connected (a connector given), not yet complete.
    Attaching,
    #[default]
    Attached,
}

impl AttachStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachStatus::Reserved => "reserved",
            AttachStatus::Attaching => "attaching",
            AttachStatus::Attached => "attached",
        }
    }

    /// The volume's status while its attachment is in this one.
    pub fn volume_status(self) -> VolumeStatus {
        match self {
            AttachStatus::Reserved => VolumeStatus::Reserved,
            AttachStatus::Attaching => VolumeStatus::Attaching,
            AttachStatus::Attached => VolumeStatus::InUse,
        }
    }
}

/// How a snapshot's data is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// A qcow2 internal snapshot, named by the snapshot's id, inside the volume's file.
    Internal,
    /// A volume `snap-<id>` in the volume's pool: an LVM snapshot on a logical pool, a copy
    /// elsewhere.
    Volume,
}

impl SnapshotKind {
    /// The pool volume holding a snapshot of this kind, if it has one.
    pub fn volume_name(&self, snapshot_id: &str) -> Option<String> {
        match self {
            SnapshotKind::Internal => None,
            SnapshotKind::Volume => Some(format!("snap-{snapshot_id}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: String,
    /// GiB: the volume's size when taken.
    pub size: u64,
    pub status: VolumeStatus,
    pub error: Option<String>,
    pub kind: SnapshotKind,
    /// The volume's pool and node.
    pub pool: String,
    pub node: String,
    /// Cinder's free-form key/value metadata.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Progress as last reported (`80%`); otherwise it follows the status.
    #[serde(default)]
    pub progress: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Per-project limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub volumes: u64,
    /// GiB of volumes and snapshots together, as Cinder counts.
    pub gigabytes: u64,
    #[serde(default = "default_snapshots")]
    pub snapshots: u64,
}

fn default_snapshots() -> u64 {
    10
}

/// How long Cinder keeps a user message (its `message_ttl` default: 30 days), in seconds.
pub const MESSAGE_TTL: u64 = 30 * 86_400;

/// A user message (Cinder's `/messages`): why an operation on a volume failed, kept for
/// [`MESSAGE_TTL`] or until its owner deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub project_id: String,
    /// `VOLUME`.
    pub resource_type: String,
    pub resource_uuid: String,
    /// Cinder's `VOLUME_<resource>_<action>_<detail>`.
    pub event_id: String,
    pub user_message: String,
    pub request_id: String,
    pub created_at: u64,
}

impl Message {
    /// The message of a volume that went to `error` from `from` at `at` for `reason`: its id
    /// follows from the volume and the time, so every node records the same one.
    pub fn of_failure(v: &Volume, from: VolumeStatus, reason: &str, at: u64) -> Self {
        // Cinder's action codes: 001 schedule allocate volume, 007 extend volume, and ours for
        // the others (Cinder has no message for them): 100 delete volume, 101 other.
        let (action, what) = match from {
            VolumeStatus::Creating => ("001", "schedule allocate volume"),
            VolumeStatus::Extending => ("007", "extend volume"),
            VolumeStatus::Deleting => ("100", "delete volume"),
            _ => ("101", "update volume"),
        };
        let d = ring::digest::digest(&ring::digest::SHA256, format!("message\0{}\0{at}", v.id).as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d.as_ref()[..16]);
        let id = uuid::Builder::from_random_bytes(b).into_uuid();
        Message {
            id: id.to_string(),
            project_id: v.project_id.clone(),
            resource_type: "VOLUME".into(),
            resource_uuid: v.id.clone(),
            event_id: format!("VOLUME_VOLUME_{action}_001"),
            user_message: format!("{what}: {reason}"),
            request_id: format!("req-{id}"),
            created_at: at,
        }
    }
}
