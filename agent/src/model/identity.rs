//! Keystone's resources beyond users, projects and roles: domains, groups, role grants to
//! groups and on domains or the whole system, and application credentials.

use super::{Name, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use serde::{Deserialize, Serialize};

/// A namespace of projects, users and groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub id: String,
    pub name: Name,
    pub description: String,
    pub enabled: bool,
}

impl Domain {
    /// The domain every cloud has (Keystone's `default`): it exists without a row, until an
    /// update stores one.
    pub fn builtin() -> Self {
        Self {
            id: DEFAULT_DOMAIN_ID.into(),
            name: Name(DEFAULT_DOMAIN_NAME.into()),
            description: "The default domain".into(),
            enabled: true,
        }
    }
}

/// Fields a domain update may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainPatch {
    pub name: Option<Name>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A set of users granted roles together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: Name,
    pub domain_id: String,
    pub description: String,
}

/// Fields a group update may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPatch {
    pub name: Option<Name>,
    pub description: Option<String>,
}

/// Who holds a granted role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Actor {
    User(String),
    Group(String),
}

/// Where a granted role holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    Project(String),
    Domain(String),
    /// The whole deployment (Keystone's `system: {all: true}`).
    System,
}

/// A role granted to a user or group on a project, a domain or the system.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub actor: Actor,
    pub target: Target,
    pub role_id: String,
}

impl Actor {
    /// The actor as an index key part: `u/ID` or `g/ID`.
    pub fn key(&self) -> String {
        match self {
            Actor::User(id) => format!("u/{id}"),
            Actor::Group(id) => format!("g/{id}"),
        }
    }

    pub fn parse_key(s: &str) -> Option<Self> {
        match s.split_once('/')? {
            ("u", id) => Some(Actor::User(id.into())),
            ("g", id) => Some(Actor::Group(id.into())),
            _ => None,
        }
    }
}

impl Target {
    /// The target as an index key part: `p/ID`, `d/ID` or `s`.
    pub fn key(&self) -> String {
        match self {
            Target::Project(id) => format!("p/{id}"),
            Target::Domain(id) => format!("d/{id}"),
            Target::System => "s".into(),
        }
    }

    pub fn parse_key(s: &str) -> Option<Self> {
        match s.split_once('/') {
            Some(("p", id)) => Some(Target::Project(id.into())),
            Some(("d", id)) => Some(Target::Domain(id.into())),
            None if s == "s" => Some(Target::System),
            _ => None,
        }
    }
}

/// A secret a user makes to log in without a password, limited to one project and to some of
/// the roles the user holds there (Keystone's application credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredential {
    pub id: String,
    pub user_id: String,
    pub name: Name,
    pub description: String,
    /// argon2 PHC string of the secret; the secret itself is shown once, at creation.
    pub secret_hash: String,
    pub project_id: String,
    pub role_ids: Vec<String>,
    /// Unix microseconds (kept as given: clients compare it); `None` never expires.
    pub expires_at_us: Option<u64>,
    /// May make further application credentials and trusts (Keystone's `unrestricted`).
    pub unrestricted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_keys_round_trip() {
        for a in [Actor::User("u1".into()), Actor::Group("g1".into())] {
            assert_eq!(Actor::parse_key(&a.key()), Some(a));
        }
        for t in [Target::Project("p1".into()), Target::Domain("d1".into()), Target::System] {
            assert_eq!(Target::parse_key(&t.key()), Some(t));
        }
        assert_eq!(Actor::parse_key("x/1"), None);
        assert_eq!(Target::parse_key("system"), None);
    }
}
