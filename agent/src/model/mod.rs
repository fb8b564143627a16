//! Plain data of the cloud: identity resources (domains, projects, users, roles, role
//! assignments) with validated names and ids; Neutron's resources in [`network`]. Imports nothing of ours; no I/O.
//!
//! Domains, groups, grants and application credentials are in [`identity`].

pub mod cluster;
pub mod compute;
pub mod event;
pub mod identity;
pub mod image;
pub mod network;
pub mod storage;
pub mod volume;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The domain every cloud has.
pub const DEFAULT_DOMAIN_ID: &str = "default";
/// Its display name, as clients send it (`--os-user-domain-name Default`).
pub const DEFAULT_DOMAIN_NAME: &str = "Default";
/// Longest name Keystone accepts for users, projects and roles.
pub const MAX_NAME_LEN: usize = 255;
/// Longest free-text description kept.
pub const MAX_DESCRIPTION_LEN: usize = 65_535;

/// Why a value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must not contain control characters")]
    ControlChar { field: &'static str },
}

/// A resource name: 1..=255 characters, no control characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn new(field: &'static str, s: &str) -> Result<Self, ModelError> {
        if s.trim().is_empty() {
            return Err(ModelError::Empty { field });
        }
        if s.chars().count() > MAX_NAME_LEN {
            return Err(ModelError::TooLong { field, max: MAX_NAME_LEN });
        }
        if s.chars().any(char::is_control) {
            return Err(ModelError::ControlChar { field });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        Self::new("name", &s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a free-text description.
pub fn check_description(s: &str) -> Result<(), ModelError> {
    if s.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ModelError::TooLong { field: "description", max: MAX_DESCRIPTION_LEN });
    }
    Ok(())
}

/// A fresh resource id in Keystone's format: 32 lowercase hex digits. A version 7 UUID: time
/// first (milliseconds, then a counter), so ids made together sort together and a batch of
/// creates writes into a few B-tree leaves instead of one leaf each; 74 bits stay random.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: Name,
    pub domain_id: String,
    pub description: String,
    pub enabled: bool,
    /// Free-form labels (Keystone's project tags), each unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: Name,
    pub domain_id: String,
    pub enabled: bool,
    /// argon2 PHC string; never leaves the state module except to the password check.
    pub password_hash: Option<String>,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: String,
    /// Attributes Keystone keeps without meaning to it (e.g. `project_id` from older clients),
    /// returned as given.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: Name,
}

/// A user holds a role on a project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Assignment {
    pub project_id: String,
    pub user_id: String,
    pub role_id: String,
}

/// Fields a project update may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPatch {
    pub name: Option<Name>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Fields a user update may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    pub name: Option<Name>,
    pub enabled: Option<bool>,
    pub password_hash: Option<String>,
    pub default_project_id: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub description: Option<String>,
    /// Extra attributes set (a `null` removes one).
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The roles every cloud starts with, as in Keystone's bootstrap (2024.1 and later).
pub const BUILTIN_ROLES: [&str; 5] = ["admin", "manager", "member", "reader", "service"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        struct Case {
            input: &'static str,
            ok: bool,
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases = [
            Case { input: "demo", ok: true },
            Case { input: "ünïcode project", ok: true },
            Case { input: "", ok: false },
            Case { input: "   ", ok: false },
            Case { input: "tab\there", ok: false },
        ];
        for c in cases {
            assert_eq!(Name::new("name", c.input).is_ok(), c.ok, "{:?}", c.input);
        }
        assert_eq!(Name::new("name", &long), Err(ModelError::TooLong { field: "name", max: MAX_NAME_LEN }));
        let parsed: Result<Name, _> = serde_json::from_str("\"\"");
        assert!(parsed.is_err());
    }

    #[test]
    fn ids_are_keystone_hex_and_sort_as_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|i| i.len() == 32 && i.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "made in order, sorted in order (and all distinct)");
    }
}
