//! Plain data of Glance's images: formats, visibility, status, and the record the state keeps.
//! The bytes live in a node's image store; the record says which node holds them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Why an image attribute was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageModelError {
    #[error("Invalid disk_format '{0}': one of raw, qcow2, vmdk, iso")]
    DiskFormat(String),
    #[error("Invalid container_format '{0}': only bare is supported")]
    ContainerFormat(String),
    #[error("Invalid visibility '{0}': one of public, private, shared, community")]
    Visibility(String),
}

macro_rules! text_enum {
    ($t:ident, $err:ident, { $($v:ident = $s:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $t { $($v),+ }

        impl $t {
            pub fn as_str(&self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }
        }

        impl FromStr for $t {
            type Err = ImageModelError;
            fn from_str(s: &str) -> Result<Self, ImageModelError> {
                match s { $($s => Ok($t::$v),)+ other => Err(ImageModelError::$err(other.into())) }
            }
        }
    };
}

text_enum!(DiskFormat, DiskFormat, { Raw = "raw", Qcow2 = "qcow2", Vmdk = "vmdk", Iso = "iso" });
text_enum!(ContainerFormat, ContainerFormat, { Bare = "bare" });
text_enum!(Visibility, Visibility, { Public = "public", Private = "private", Shared = "shared", Community = "community" });

impl DiskFormat {
    /// The format `qemu-img info` reports for data of this disk format (an ISO is raw to it).
    pub fn qemu_format(&self) -> &'static str {
        match self {
            DiskFormat::Raw | DiskFormat::Iso => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
        }
    }
}

/// Glance's image status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Created, no data yet.
    Queued,
    /// Data is being uploaded.
    Saving,
    Active,
    /// The upload was refused or failed; the data is gone.
    Killed,
    /// An admin withdrew it: no new servers or volumes from it, data only for admins.
    Deactivated,
}

impl ImageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Killed => "killed",
            ImageStatus::Deactivated => "deactivated",
        }
    }
}

/// What an accepted upload measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageData {
    pub size: u64,
    pub virtual_size: u64,
    /// md5, hex (Glance's legacy `checksum`).
    pub checksum: String,
    /// sha512, hex (`os_hash_value`).
    pub sha512: String,
    /// The node whose image store holds the bytes.
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub disk_format: Option<DiskFormat>,
    pub container_format: Option<ContainerFormat>,
    pub visibility: Visibility,
    pub protected: bool,
    pub min_disk: u64,
    pub min_ram: u64,
    pub status: ImageStatus,
    pub data: Option<ImageData>,
    pub tags: Vec<String>,
    /// Free-form properties (`os_distro`, `owner_specified.openstack.md5`, …).
    pub properties: BTreeMap<String, String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An image's settable attributes: those of a new image, or the result of a change (Glance's
/// JSON-patch, already applied to a copy and validated by the API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePatch {
    pub name: String,
    pub visibility: Visibility,
    pub protected: bool,
    pub min_disk: u64,
    pub min_ram: u64,
    pub disk_format: Option<DiskFormat>,
    pub container_format: Option<ContainerFormat>,
    pub tags: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub updated_at: u64,
    /// A new owner (a project id; only an admin may give one), or unchanged.
    #[serde(default)]
    pub owner: Option<String>,
}

impl Default for ImagePatch {
    /// Glance's defaults for a new image.
    fn default() -> Self {
        Self {
            name: String::new(),
            visibility: Visibility::Shared,
            protected: false,
            min_disk: 0,
            min_ram: 0,
            disk_format: None,
            container_format: None,
            tags: vec![],
            properties: BTreeMap::new(),
            updated_at: 0,
            owner: None,
        }
    }
}

impl Image {
    /// A new, queued image with these attributes.
    /// The owner is `a.owner` when given, else `project`.
    pub fn new(id: String, project: String, a: ImagePatch, now: u64) -> Self {
        Self {
            id,
            name: a.name,
            owner: a.owner.unwrap_or(project),
            disk_format: a.disk_format,
            container_format: a.container_format,
            visibility: a.visibility,
            protected: a.protected,
            min_disk: a.min_disk,
            min_ram: a.min_ram,
            status: ImageStatus::Queued,
            data: None,
            tags: a.tags,
            properties: a.properties,
            created_at: now,
            updated_at: now,
        }
    }

    /// The settable attributes as they are now.
    pub fn attrs(&self) -> ImagePatch {
        ImagePatch {
            name: self.name.clone(),
            visibility: self.visibility,
            protected: self.protected,
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            disk_format: self.disk_format,
            container_format: self.container_format,
            tags: self.tags.clone(),
            properties: self.properties.clone(),
            updated_at: self.updated_at,
            owner: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("qcow2".parse::<DiskFormat>(), Ok(DiskFormat::Qcow2));
        assert_eq!(DiskFormat::Iso.qemu_format(), "raw");
        assert!("vhd".parse::<DiskFormat>().is_err());
        assert_eq!("bare".parse::<ContainerFormat>(), Ok(ContainerFormat::Bare));
        assert!("ovf".parse::<ContainerFormat>().is_err());
        assert_eq!("community".parse::<Visibility>(), Ok(Visibility::Community));
        assert_eq!(serde_json::to_string(&ImageStatus::Killed).unwrap(), "\"killed\"");
    }
}
