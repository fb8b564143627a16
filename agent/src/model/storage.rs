//! Plain data of storage: the kinds of pool a node may have and what each can hold, and volume
//! formats. No I/O.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageModelError {
    #[error("Invalid volume format '{0}': one of raw, qcow2, vmdk")]
    Format(String),
    #[error("a {pool} pool cannot hold {format} volumes (it holds {allowed})")]
    Unsupported { pool: &'static str, format: &'static str, allowed: String },
    #[error("a {0} pool cannot create volumes (its volumes are LUNs the target exports)")]
    NoCreate(&'static str),
}

/// A volume's on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Raw,
    Qcow2,
    Vmdk,
}

impl VolumeFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeFormat::Raw => "raw",
            VolumeFormat::Qcow2 => "qcow2",
            VolumeFormat::Vmdk => "vmdk",
        }
    }
}

impl FromStr for VolumeFormat {
    type Err = StorageModelError;
    fn from_str(s: &str) -> Result<Self, StorageModelError> {
        match s {
            "raw" => Ok(VolumeFormat::Raw),
            "qcow2" => Ok(VolumeFormat::Qcow2),
            "vmdk" => Ok(VolumeFormat::Vmdk),
            other => Err(StorageModelError::Format(other.into())),
        }
    }
}

/// A pool's state and space, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub active: bool,
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

/// A pool of a node as its agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub name: String,
    /// dir, logical, iscsi or rbd.
    pub kind: String,
    /// Zeroes when the pool could not be read (see `error`).
    pub info: PoolInfo,
    pub error: Option<String>,
}

/// How a pool is reached, as configured per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PoolSpec {
    /// Files in a directory; new volumes are `format` (qcow2 unless set).
    Dir {
        path: String,
        #[serde(default)]
        format: Option<VolumeFormat>,
    },
    /// An LVM volume group, built on `devices` when it does not exist yet.
    Logical {
        vg: String,
        #[serde(default)]
        devices: Vec<String>,
        /// Only raw; accepted so that asking for another format gets a clear error.
        #[serde(default)]
        format: Option<VolumeFormat>,
    },
    /// The LUNs of an iSCSI target.
    Iscsi { host: String, port: Option<u16>, iqn: String },
    /// A Ceph pool; the key is kept in a libvirt secret.
    Rbd {
        monitors: Vec<String>,
        pool: String,
        user: String,
        /// The libvirt secret's UUID holding the user's key.
        secret_uuid: String,
        /// A file (0600) holding the user's key as `ceph auth get-key` prints it: the agent
        /// defines the private libvirt secret from it. Without it the secret must exist.
        #[serde(default)]
        key_file: Option<String>,
        /// Only raw, as for logical pools.
        #[serde(default)]
        format: Option<VolumeFormat>,
    },
}

impl PoolSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            PoolSpec::Dir { .. } => "dir",
            PoolSpec::Logical { .. } => "logical",
            PoolSpec::Iscsi { .. } => "iscsi",
            PoolSpec::Rbd { .. } => "rbd",
        }
    }

    /// Formats volumes of this pool may have.
    pub fn formats(&self) -> &'static [VolumeFormat] {
        match self {
            PoolSpec::Dir { .. } => &[VolumeFormat::Raw, VolumeFormat::Qcow2, VolumeFormat::Vmdk],
            PoolSpec::Logical { .. } | PoolSpec::Iscsi { .. } | PoolSpec::Rbd { .. } => &[VolumeFormat::Raw],
        }
    }

    /// The format of new volumes: as configured, else qcow2 on dir pools and raw elsewhere.
    pub fn format(&self) -> VolumeFormat {
        match self {
            PoolSpec::Dir { format, .. } => format.unwrap_or(VolumeFormat::Qcow2),
            PoolSpec::Logical { format, .. } | PoolSpec::Rbd { format, .. } => format.unwrap_or(VolumeFormat::Raw),
            PoolSpec::Iscsi { .. } => VolumeFormat::Raw,
        }
    }

    /// Whether the configured format is one the pool can hold.
    pub fn validate(&self) -> Result<(), StorageModelError> {
        match self {
            PoolSpec::Iscsi { .. } => Ok(()),
            _ => self.check_create(self.format()),
        }
    }

    /// Whether a volume of `format` can be created here, and if not, why.
    pub fn check_create(&self, format: VolumeFormat) -> Result<(), StorageModelError> {
        if let PoolSpec::Iscsi { .. } = self {
            return Err(StorageModelError::NoCreate("iscsi"));
        }
        if !self.formats().contains(&format) {
            return Err(StorageModelError::Unsupported {
                pool: self.kind(),
                format: format.as_str(),
                allowed: self.formats().iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(())
    }

    /// Whether new volumes can be qcow2 overlays of a file in this pool (instant clones).
    pub fn overlays(&self) -> bool {
        matches!(self, PoolSpec::Dir { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_pools_hold() {
        let dir = PoolSpec::Dir { path: "/v".into(), format: None };
        let lvm = PoolSpec::Logical { vg: "vg".into(), devices: vec![], format: None };
        let iscsi = PoolSpec::Iscsi { host: "h".into(), port: None, iqn: "iqn".into() };
        assert!(dir.check_create(VolumeFormat::Vmdk).is_ok());
        assert!(lvm.check_create(VolumeFormat::Raw).is_ok());
        let e = lvm.check_create(VolumeFormat::Qcow2).unwrap_err();
        assert_eq!(e.to_string(), "a logical pool cannot hold qcow2 volumes (it holds raw)");
        assert!(matches!(iscsi.check_create(VolumeFormat::Raw), Err(StorageModelError::NoCreate(_))));
        assert!(dir.overlays() && !lvm.overlays());
        assert_eq!("vmdk".parse::<VolumeFormat>(), Ok(VolumeFormat::Vmdk));
        assert!("vhd".parse::<VolumeFormat>().is_err());
        let parsed: PoolSpec = toml::from_str("type = \"logical\"\nvg = \"cairn\"\ndevices = [\"/dev/sdb\"]").unwrap();
        assert_eq!(parsed, PoolSpec::Logical { vg: "cairn".into(), devices: vec!["/dev/sdb".into()], format: None });
        assert_eq!((dir.format(), lvm.format()), (VolumeFormat::Qcow2, VolumeFormat::Raw));
        let qcow_lvm: PoolSpec = toml::from_str("type = \"logical\"\nvg = \"v\"\nformat = \"qcow2\"").unwrap();
        assert_eq!(
            qcow_lvm.validate().unwrap_err().to_string(),
            "a logical pool cannot hold qcow2 volumes (it holds raw)"
        );
        let raw_dir: PoolSpec = toml::from_str("type = \"dir\"\npath = \"/v\"\nformat = \"raw\"").unwrap();
        assert_eq!((raw_dir.validate(), raw_dir.format()), (Ok(()), VolumeFormat::Raw));
        assert!(toml::from_str::<PoolSpec>("type = \"dir\"\npath = \"/x\"\nvg = \"y\"").is_err());
    }
}
