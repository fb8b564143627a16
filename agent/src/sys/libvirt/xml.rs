//! Libvirt's storage XML as typed structs, written and read with serde (quick-xml): pools
//! (`dir`, `logical`, `iscsi`, `rbd`), volumes (raw, qcow2, vmdk; a qcow2 may have a backing
//! store) and secrets (Ceph keys). Never assembled from strings; golden files in
//! `agent/tests/data/libvirt/` show the output.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("writing libvirt XML")]
    Write(#[from] quick_xml::SeError),
    #[error("reading libvirt XML")]
    Read(#[from] quick_xml::DeError),
}

/// Serialises a root element.
pub fn to_xml<T: Serialize>(root: &str, v: &T) -> Result<String, XmlError> {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::with_root(&mut out, Some(root))?;
    ser.indent(' ', 2);
    v.serialize(ser)?;
    Ok(out)
}

pub fn from_xml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, XmlError> {
    Ok(quick_xml::de::from_str(text)?)
}

/// `<pool type='…'>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    #[serde(rename = "@type")]
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PoolSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PoolTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSource {
    /// iSCSI portals or Ceph monitors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<Host>,
    /// Block devices of an LVM pool; the IQN of an iSCSI target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device: Vec<Device>,
    /// The volume group (logical) or Ceph pool (rbd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(rename = "@path")]
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    #[serde(rename = "@type")]
    pub kind: String,
}

/// Ceph authentication: a user and the libvirt secret holding its key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    #[serde(rename = "@type")]
    pub kind: String,
    #[serde(rename = "@username")]
    pub username: String,
    pub secret: SecretRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    #[serde(rename = "@uuid")]
    pub uuid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTarget {
    pub path: String,
}

/// A size with its unit (libvirt accepts `bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    #[serde(rename = "@unit")]
    pub unit: String,
    #[serde(rename = "$text")]
    pub value: u64,
}

impl Size {
    pub fn bytes(n: u64) -> Self {
        Self { unit: "bytes".into(), value: n }
    }
}

/// `<volume>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub capacity: Size,
    /// Allocate nothing up front (0) for sparse volumes; omitted: the pool's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<VolumeTarget>,
    #[serde(rename = "backingStore", skip_serializing_if = "Option::is_none")]
    pub backing_store: Option<BackingStore>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingStore {
    pub path: String,
    pub format: Format,
}

/// `<secret>` for a Ceph key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(rename = "@ephemeral")]
    pub ephemeral: String,
    #[serde(rename = "@private")]
    pub private: String,
    pub uuid: String,
    pub usage: SecretUsage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUsage {
    #[serde(rename = "@type")]
    pub kind: String,
    pub name: String,
}
