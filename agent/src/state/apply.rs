//! Applies one [`Command`] to the tables inside a redb write transaction. Deterministic: the
//! outcome depends only on the command and the tables. A refused command writes nothing.

use super::identity::{self, Forget};
use super::{
    split3, Command, Kind, Outcome, Refusal, StateError, ASSIGN_BY_PROJECT, ASSIGN_BY_USER, BOOTSTRAPPED, CLOUD,
    PROJECTS, PROJECT_NAMES, ROLES, ROLE_NAMES, USERS, USER_NAMES,
};
use crate::model::{Assignment, Project, Role, User};
use crate::state::{IdentityCommand, MetadataCommand};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

pub(super) type Blob = TableDefinition<'static, &'static str, &'static [u8]>;
pub(super) type Names = TableDefinition<'static, &'static str, &'static str>;

/// Applies `cmd`; `Ok(Err(refusal))` means the command was valid to log but changed nothing.
pub fn apply(tx: &WriteTransaction, cmd: &Command) -> Result<Outcome, StateError> {
    match cmd {
        Command::Identity(c) => identity::apply(tx, c),
        Command::Network(c) => super::network::apply(tx, c),
        Command::Image(c) => super::image::apply(tx, c),
        Command::Volume(c) => super::volume::apply(tx, c),
        Command::Compute(c) => super::compute::apply(tx, c),
        Command::Metadata(MetadataCommand::SetMetadata { of, id, change, updated_at }) => {
            super::metadata::apply(tx, *of, id, change, *updated_at)
        }
        Command::Cluster(c) => super::cluster::apply(tx, c),
    }
}

/// Whether applying `cmd` can change what an already validated token resolves to (its user,
/// project, roles, or its revocation). Only [`apply`]'s own identity arms write those tables —
/// the network, image, volume, compute and cluster appliers never open them — and a new user,
/// project or role is not part of any token validated before it existed.
pub fn affects_tokens(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Identity(IdentityCommand::Bootstrap { .. })
            | Command::Identity(IdentityCommand::UpdateProject { .. })
            | Command::Identity(IdentityCommand::DeleteProject { .. })
            | Command::Identity(IdentityCommand::UpdateUser { .. })
            | Command::Identity(IdentityCommand::DeleteUser { .. })
            | Command::Identity(IdentityCommand::UpdateRole { .. })
            | Command::Identity(IdentityCommand::DeleteRole { .. })
            | Command::Identity(IdentityCommand::Grant(_))
            | Command::Identity(IdentityCommand::Ungrant(_))
            | Command::Identity(IdentityCommand::RevokeToken { .. })
            | Command::Identity(IdentityCommand::UpdateDomain { .. })
            | Command::Identity(IdentityCommand::DeleteDomain { .. })
            | Command::Identity(IdentityCommand::DeleteGroup { .. })
            | Command::Identity(IdentityCommand::AddGroupUser { .. })
            | Command::Identity(IdentityCommand::RemoveGroupUser { .. })
            | Command::Identity(IdentityCommand::GrantRole(_))
            | Command::Identity(IdentityCommand::RevokeRole(_))
            | Command::Identity(IdentityCommand::DeleteAppCredential { .. })
    )
}

/// After a deletion that was done, what it leaves behind is dropped too.
pub(super) fn forgotten(tx: &WriteTransaction, out: Outcome, what: Forget) -> Result<Outcome, StateError> {
    if out.is_ok() {
        identity::forget(tx, &what)?;
    }
    Ok(out)
}

pub(super) fn not_found(kind: Kind, id: &str) -> Refusal {
    Refusal::NotFound { kind, id: id.to_owned() }
}

pub(super) fn load<T: DeserializeOwned>(tx: &WriteTransaction, table: Blob, id: &str) -> Result<Option<T>, StateError> {
    let t = tx.open_table(table)?;
    let v = t.get(id)?;
    match v {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

pub(super) fn store<T: Serialize>(tx: &WriteTransaction, table: Blob, id: &str, value: &T) -> Result<(), StateError> {
    tx.open_table(table)?.insert(id, serde_json::to_vec(value)?.as_slice())?;
    Ok(())
}

fn exists(tx: &WriteTransaction, table: Blob, id: &str) -> Result<bool, StateError> {
    Ok(tx.open_table(table)?.get(id)?.is_some())
}

pub(super) fn create<T: Serialize>(
    tx: &WriteTransaction,
    table: Blob,
    names: Names,
    kind: Kind,
    id: &str,
    name: &str,
    value: &T,
) -> Result<Outcome, StateError> {
    // Each table opened once: an open is a lookup, and its close a write, in redb's table tree.
    let (mut rows, mut by_name) = (tx.open_table(table)?, tx.open_table(names)?);
    if by_name.get(name)?.is_some() || rows.get(id)?.is_some() {
        return Ok(Err(Refusal::Conflict { kind, name: name.to_owned() }));
    }
    rows.insert(id, serde_json::to_vec(value)?.as_slice())?;
    by_name.insert(name, id)?;
    Ok(Ok(()))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn replace<T: Serialize>(
    tx: &WriteTransaction,
    table: Blob,
    names: Names,
    kind: Kind,
    id: &str,
    old_name: &str,
    new_name: &str,
    value: &T,
) -> Result<Outcome, StateError> {
    if old_name != new_name {
        let mut n = tx.open_table(names)?;
        if n.get(new_name)?.is_some() {
            return Ok(Err(Refusal::Conflict { kind, name: new_name.to_owned() }));
        }
        n.remove(old_name)?;
        n.insert(new_name, id)?;
    }
    tx.open_table(table)?.insert(id, serde_json::to_vec(value)?.as_slice())?;
    Ok(Ok(()))
}

/// Deletes a row, its name index and every role assignment naming it. `parts` gives the name
/// and which assignment part (project, user or role) must match `id`.
pub(super) fn delete<T: DeserializeOwned>(
    tx: &WriteTransaction,
    table: Blob,
    names: Names,
    kind: Kind,
    id: &str,
    parts: impl Fn(&T) -> (String, Option<String>, Option<String>, Option<String>),
) -> Result<Outcome, StateError> {
    let Some(row) = load::<T>(tx, table, id)? else {
        return Ok(Err(not_found(kind, id)));
    };
    let (name, project, user, role) = parts(&row);
    tx.open_table(table)?.remove(id)?;
    tx.open_table(names)?.remove(name.as_str())?;
    let matches = |k: &str, by_user: bool| {
        let Some((a, b, r)) = split3(k) else { return false };
        let (u, p) = if by_user { (a, b) } else { (b, a) };
        project.as_deref() == Some(p) || user.as_deref() == Some(u) || role.as_deref() == Some(r)
    };
    tx.open_table(ASSIGN_BY_PROJECT)?.retain(|k, _| !matches(k, false))?;
    tx.open_table(ASSIGN_BY_USER)?.retain(|k, _| !matches(k, true))?;
    Ok(Ok(()))
}

pub(super) fn check_assignment_parts(tx: &WriteTransaction, a: &Assignment) -> Result<Option<Refusal>, StateError> {
    for (table, kind, id) in
        [(PROJECTS, Kind::Project, &a.project_id), (USERS, Kind::User, &a.user_id), (ROLES, Kind::Role, &a.role_id)]
    {
        if !exists(tx, table, id)? {
            return Ok(Some(not_found(kind, id)));
        }
    }
    Ok(None)
}

pub(super) fn bootstrap(
    tx: &WriteTransaction,
    project: &Project,
    user: &User,
    roles: &[Role],
) -> Result<Outcome, StateError> {
    // Recorded, not inferred from the tables: deleting every user must not invite a second
    // bootstrap at the next start.
    if tx.open_table(CLOUD)?.get(BOOTSTRAPPED)?.is_some() {
        return Ok(Err(Refusal::AlreadyBootstrapped));
    }
    tx.open_table(CLOUD)?.insert(BOOTSTRAPPED, "1")?;
    let mut outcomes =
        vec![create(tx, PROJECTS, PROJECT_NAMES, Kind::Project, &project.id, project.name.as_str(), project)?];
    outcomes.push(create(tx, USERS, USER_NAMES, Kind::User, &user.id, user.name.as_str(), user)?);
    for r in roles {
        outcomes.push(create(tx, ROLES, ROLE_NAMES, Kind::Role, &r.id, r.name.as_str(), r)?);
    }
    if let Some(admin) = roles.iter().find(|r| r.name.as_str() == "admin") {
        let a = Assignment { project_id: project.id.clone(), user_id: user.id.clone(), role_id: admin.id.clone() };
        outcomes.push(apply(tx, &Command::Identity(IdentityCommand::Grant(a)))?);
    }
    // On a fresh store nothing can conflict; a refusal here means corrupt input, so report it.
    Ok(outcomes.into_iter().collect())
}

/// Applies one command in its own transaction (the tests' way in, without raft).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) fn run(store: &super::Store, cmd: Command) -> Outcome {
    let tx = store.db().begin_write().unwrap();
    let out = apply(&tx, &cmd).unwrap();
    tx.commit().unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, ProjectPatch};
    use crate::state::Command;
    use crate::state::Store;

    fn project(id: &str, name: &str) -> Project {
        Project {
            tags: Vec::new(),
            id: id.into(),
            name: Name::new("name", name).unwrap(),
            domain_id: "default".into(),
            description: String::new(),
            enabled: true,
        }
    }
    fn user(id: &str, name: &str) -> User {
        User {
            extra: Default::default(),
            id: id.into(),
            name: Name::new("name", name).unwrap(),
            domain_id: "default".into(),
            enabled: true,
            password_hash: None,
            default_project_id: None,
            email: None,
            description: String::new(),
        }
    }
    fn role(id: &str, name: &str) -> Role {
        Role { id: id.into(), name: Name::new("name", name).unwrap() }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn create_conflict_and_delete_cascade() {
        let (_d, s) = store();
        assert_eq!(run(&s, Command::Identity(IdentityCommand::CreateProject(project("p1", "one")))), Ok(()));
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::CreateProject(project("p2", "one")))),
            Err(Refusal::Conflict { kind: Kind::Project, name: "one".into() })
        );
        assert!(s.view().unwrap().project("p2").unwrap().is_none(), "refused create wrote nothing");
        run(&s, Command::Identity(IdentityCommand::CreateUser(user("u1", "alice")))).unwrap();
        run(&s, Command::Identity(IdentityCommand::CreateRole(role("r1", "member")))).unwrap();
        let a = Assignment { project_id: "p1".into(), user_id: "u1".into(), role_id: "r1".into() };
        assert_eq!(run(&s, Command::Identity(IdentityCommand::Grant(a.clone()))), Ok(()));
        assert_eq!(s.view().unwrap().roles_of("u1", "p1").unwrap(), vec!["r1".to_string()]);
        assert_eq!(s.view().unwrap().assignments(None, Some("p1")).unwrap(), vec![a.clone()]);
        assert_eq!(s.view().unwrap().assignments(Some("u1"), None).unwrap(), vec![a]);
        assert_eq!(run(&s, Command::Identity(IdentityCommand::DeleteProject { id: "p1".into() })), Ok(()));
        assert!(s.view().unwrap().roles_of("u1", "p1").unwrap().is_empty());
        assert!(s.view().unwrap().assignments(None, None).unwrap().is_empty());
        assert!(s.view().unwrap().project_by_name("default", "one").unwrap().is_none());
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::DeleteProject { id: "p1".into() })),
            Err(Refusal::NotFound { kind: Kind::Project, id: "p1".into() })
        );
    }

    #[test]
    fn grant_needs_existing_parts_and_rename_checks_names() {
        let (_d, s) = store();
        run(&s, Command::Identity(IdentityCommand::CreateProject(project("p1", "one")))).unwrap();
        run(&s, Command::Identity(IdentityCommand::CreateProject(project("p2", "two")))).unwrap();
        let a = Assignment { project_id: "p1".into(), user_id: "nobody".into(), role_id: "r".into() };
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::Grant(a))),
            Err(Refusal::NotFound { kind: Kind::User, id: "nobody".into() })
        );
        assert!(s.view().unwrap().assignments(None, None).unwrap().is_empty());
        let rename = |n: &str| {
            Command::Identity(IdentityCommand::UpdateProject {
                id: "p1".into(),
                patch: ProjectPatch { name: Some(Name::new("name", n).unwrap()), ..Default::default() },
            })
        };
        assert_eq!(run(&s, rename("two")), Err(Refusal::Conflict { kind: Kind::Project, name: "two".into() }));
        assert_eq!(s.view().unwrap().project("p1").unwrap().unwrap().name.as_str(), "one");
        assert_eq!(run(&s, rename("uno")), Ok(()));
        assert_eq!(s.view().unwrap().project_by_name("default", "uno").unwrap().unwrap().id, "p1");
        assert!(s.view().unwrap().project_by_name("default", "one").unwrap().is_none());
    }

    #[test]
    fn bootstrap_once_and_revocations_prune() {
        let (_d, s) = store();
        let cmd = Command::Identity(IdentityCommand::Bootstrap {
            project: project("p", "admin"),
            user: user("u", "admin"),
            roles: vec![role("ra", "admin"), role("rm", "member")],
        });
        assert_eq!(run(&s, cmd.clone()), Ok(()));
        assert!(s.view().unwrap().is_bootstrapped().unwrap());
        assert_eq!(s.view().unwrap().roles_of("u", "p").unwrap(), vec!["ra".to_string()]);
        assert_eq!(run(&s, cmd.clone()), Err(Refusal::AlreadyBootstrapped));
        // With every user deleted the cloud is still bootstrapped, and a second bootstrap is
        // refused before it writes anything.
        run(&s, Command::Identity(IdentityCommand::DeleteUser { id: "u".into() })).unwrap();
        assert!(s.view().unwrap().is_bootstrapped().unwrap());
        assert_eq!(run(&s, cmd), Err(Refusal::AlreadyBootstrapped));
        assert!(s.view().unwrap().users().unwrap().is_empty(), "the refused bootstrap wrote no user");
        run(&s, Command::Identity(IdentityCommand::RevokeToken { audit_id: "a1".into(), expires_at: 100, now: 50 }))
            .unwrap();
        assert!(s.view().unwrap().is_revoked("a1").unwrap());
        run(&s, Command::Identity(IdentityCommand::RevokeToken { audit_id: "a2".into(), expires_at: 300, now: 200 }))
            .unwrap();
        assert!(!s.view().unwrap().is_revoked("a1").unwrap(), "expired revocation pruned");
        assert!(s.view().unwrap().is_revoked("a2").unwrap());
    }
}
