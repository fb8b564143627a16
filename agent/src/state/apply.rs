//! Applies one [`Command`] to the tables inside a redb write transaction. Deterministic: the
//! outcome depends only on the command and the tables. A refused command writes nothing.

use super::identity::{self, name_key, Forget};
use super::{
    assignment_keys, split3, Command, Kind, Outcome, Refusal, StateError, ASSIGN_BY_PROJECT, ASSIGN_BY_USER,
    BOOTSTRAPPED, CLOUD, PROJECTS, PROJECT_NAMES, REVOKED, ROLES, ROLE_NAMES, USERS, USER_NAMES,
};
use crate::model::identity::{Actor, Target};
use crate::model::{Assignment, Project, Role, User};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

pub(super) type Blob = TableDefinition<'static, &'static str, &'static [u8]>;
pub(super) type Names = TableDefinition<'static, &'static str, &'static str>;

/// Applies `cmd`; `Ok(Err(refusal))` means the command was valid to log but changed nothing.
pub fn apply(tx: &WriteTransaction, cmd: &Command) -> Result<Outcome, StateError> {
    match cmd {
        Command::Bootstrap { project, user, roles } => bootstrap(tx, project, user, roles),
        Command::CreateProject(p) => {
            if let Some(r) = identity::check_domain_of(tx, cmd)? {
                return Ok(Err(r));
            }
            create(tx, PROJECTS, PROJECT_NAMES, Kind::Project, &p.id, &name_key(&p.domain_id, p.name.as_str()), p)
        }
        Command::UpdateProject { id, patch } => {
            let Some(mut p) = load::<Project>(tx, PROJECTS, id)? else {
                return Ok(Err(not_found(Kind::Project, id)));
            };
            let old_name = name_key(&p.domain_id, p.name.as_str());
            if let Some(n) = &patch.name {
                p.name = n.clone();
            }
            if let Some(d) = &patch.description {
                p.description = d.clone();
            }
            if let Some(e) = patch.enabled {
                p.enabled = e;
            }
            if let Some(t) = &patch.tags {
                p.tags.clone_from(t);
            }
            replace(
                tx,
                PROJECTS,
                PROJECT_NAMES,
                Kind::Project,
                id,
                &old_name,
                &name_key(&p.domain_id, p.name.as_str()),
                &p,
            )
        }
        Command::DeleteProject { id } => {
            let out = delete(tx, PROJECTS, PROJECT_NAMES, Kind::Project, id, |p: &Project| {
                (name_key(&p.domain_id, p.name.as_str()), Some(id.clone()), None, None)
            })?;
            forgotten(tx, out, Forget::Target(Target::Project(id.clone())))
        }
        Command::CreateUser(u) => {
            if let Some(r) = identity::check_domain_of(tx, cmd)? {
                return Ok(Err(r));
            }
            create(tx, USERS, USER_NAMES, Kind::User, &u.id, &name_key(&u.domain_id, u.name.as_str()), u)
        }
        Command::UpdateUser { id, patch } => {
            let Some(mut u) = load::<User>(tx, USERS, id)? else {
                return Ok(Err(not_found(Kind::User, id)));
            };
            let old_name = name_key(&u.domain_id, u.name.as_str());
            if let Some(n) = &patch.name {
                u.name = n.clone();
            }
            if let Some(e) = patch.enabled {
                u.enabled = e;
            }
            if let Some(h) = &patch.password_hash {
                u.password_hash = Some(h.clone());
            }
            if let Some(p) = &patch.default_project_id {
                u.default_project_id = p.clone();
            }
            if let Some(e) = &patch.email {
                u.email = e.clone();
            }
            if let Some(d) = &patch.description {
                u.description = d.clone();
            }
            for (k, v) in &patch.extra {
                if v.is_null() {
                    u.extra.remove(k);
                } else {
                    u.extra.insert(k.clone(), v.clone());
                }
            }
            replace(tx, USERS, USER_NAMES, Kind::User, id, &old_name, &name_key(&u.domain_id, u.name.as_str()), &u)
        }
        Command::DeleteUser { id } => {
            let out = delete(tx, USERS, USER_NAMES, Kind::User, id, |u: &User| {
                (name_key(&u.domain_id, u.name.as_str()), None, Some(id.clone()), None)
            })?;
            forgotten(tx, out, Forget::Actor(Actor::User(id.clone())))
        }
        Command::CreateRole(r) => create(tx, ROLES, ROLE_NAMES, Kind::Role, &r.id, r.name.as_str(), r),
        Command::UpdateRole { id, name } => {
            let Some(mut r) = load::<Role>(tx, ROLES, id)? else {
                return Ok(Err(not_found(Kind::Role, id)));
            };
            let old = std::mem::replace(&mut r.name, name.clone());
            replace(tx, ROLES, ROLE_NAMES, Kind::Role, id, old.as_str(), r.name.as_str(), &r)
        }
        Command::DeleteRole { id } => {
            let out = delete(tx, ROLES, ROLE_NAMES, Kind::Role, id, |r: &Role| {
                (r.name.to_string(), None, None, Some(id.clone()))
            })?;
            forgotten(tx, out, Forget::Role(id.clone()))
        }
        Command::Grant(a) => {
            if let Some(refusal) = check_assignment_parts(tx, a)? {
                return Ok(Err(refusal));
            }
            let (kp, ku) = assignment_keys(a);
            tx.open_table(ASSIGN_BY_PROJECT)?.insert(kp.as_str(), ())?;
            tx.open_table(ASSIGN_BY_USER)?.insert(ku.as_str(), ())?;
            Ok(Ok(()))
        }
        Command::Ungrant(a) => {
            let (kp, ku) = assignment_keys(a);
            let removed = tx.open_table(ASSIGN_BY_PROJECT)?.remove(kp.as_str())?.is_some();
            if !removed {
                return Ok(Err(not_found(
                    Kind::RoleAssignment,
                    &format!("{}/{}/{}", a.project_id, a.user_id, a.role_id),
                )));
            }
            tx.open_table(ASSIGN_BY_USER)?.remove(ku.as_str())?;
            Ok(Ok(()))
        }
        Command::RevokeToken { audit_id, expires_at, now } => {
            let mut t = tx.open_table(REVOKED)?;
            t.retain(|_, exp| exp > *now)?;
            t.insert(audit_id.as_str(), *expires_at)?;
            Ok(Ok(()))
        }
        Command::CreateDomain(_)
        | Command::UpdateDomain { .. }
        | Command::DeleteDomain { .. }
        | Command::CreateGroup(_)
        | Command::UpdateGroup { .. }
        | Command::DeleteGroup { .. }
        | Command::AddGroupUser { .. }
        | Command::RemoveGroupUser { .. }
        | Command::GrantRole(_)
        | Command::RevokeRole(_)
        | Command::CreateAppCredential(_)
        | Command::DeleteAppCredential { .. } => identity::apply(tx, cmd),
        Command::CreateNetwork { .. }
        | Command::UpdateNetwork { .. }
        | Command::DeleteNetwork { .. }
        | Command::CreateSubnet { .. }
        | Command::UpdateSubnet { .. }
        | Command::DeleteSubnet { .. }
        | Command::CreatePort { .. }
        | Command::UpdatePort { .. }
        | Command::DeletePort { .. } => super::network::apply(tx, cmd),
        Command::CreateImage(_)
        | Command::UpdateImage { .. }
        | Command::SetImageStatus { .. }
        | Command::DeleteImage { .. } => super::image::apply(tx, cmd),
        Command::CreateVolume { .. }
        | Command::UpdateVolume { .. }
        | Command::SetVolumeStatus { .. }
        | Command::DeleteMessage { .. }
        | Command::SetAttachment { .. }
        | Command::SetDefaultType { .. }
        | Command::DeleteVolume { .. }
        | Command::AttachVolume { .. }
        | Command::DetachVolume { .. }
        | Command::CreateSnapshot { .. }
        | Command::UpdateSnapshot { .. }
        | Command::SetSnapshotStatus { .. }
        | Command::DeleteSnapshot { .. }
        | Command::ReportPools { .. } => super::volume::apply(tx, cmd),
        Command::SetMetadata { of, id, change, updated_at } => super::metadata::apply(tx, *of, id, change, *updated_at),
        Command::SeedFlavors(_)
        | Command::CreateFlavor(_)
        | Command::SetFlavorExtraSpecs { .. }
        | Command::SetFlavorAccess { .. }
        | Command::SetFlavorDescription { .. }
        | Command::DeleteFlavor { .. }
        | Command::CreateKeypair(_)
        | Command::DeleteKeypair { .. }
        | Command::ReportNode(_)
        | Command::CreateServer { .. }
        | Command::SetServerState { .. }
        | Command::DeleteServer { .. }
        | Command::UpdateServer { .. }
        | Command::SetServerTags { .. }
        | Command::AttachServerVolume { .. }
        | Command::DetachServerVolume { .. }
        | Command::ServerVolumeDone { .. } => super::compute::apply(tx, cmd),
        Command::ReportMember(_)
        | Command::CreateJoinToken(_)
        | Command::RevokeJoinToken { .. }
        | Command::ConsumeJoinToken { .. }
        | Command::RemoveMember { .. }
        | Command::RegisterNodeKey { .. } => super::cluster::apply(tx, cmd),
    }
}

/// Whether applying `cmd` can change what an already validated token resolves to (its user,
/// project, roles, or its revocation). Only [`apply`]'s own identity arms write those tables —
/// the network, image, volume, compute and cluster appliers never open them — and a new user,
/// project or role is not part of any token validated before it existed.
pub fn affects_tokens(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Bootstrap { .. }
            | Command::UpdateProject { .. }
            | Command::DeleteProject { .. }
            | Command::UpdateUser { .. }
            | Command::DeleteUser { .. }
            | Command::UpdateRole { .. }
            | Command::DeleteRole { .. }
            | Command::Grant(_)
            | Command::Ungrant(_)
            | Command::RevokeToken { .. }
            | Command::UpdateDomain { .. }
            | Command::DeleteDomain { .. }
            | Command::DeleteGroup { .. }
            | Command::AddGroupUser { .. }
            | Command::RemoveGroupUser { .. }
            | Command::GrantRole(_)
            | Command::RevokeRole(_)
            | Command::DeleteAppCredential { .. }
    )
}

/// After a deletion that was done, what it leaves behind is dropped too.
fn forgotten(tx: &WriteTransaction, out: Outcome, what: Forget) -> Result<Outcome, StateError> {
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
fn replace<T: Serialize>(
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
fn delete<T: DeserializeOwned>(
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

fn check_assignment_parts(tx: &WriteTransaction, a: &Assignment) -> Result<Option<Refusal>, StateError> {
    for (table, kind, id) in
        [(PROJECTS, Kind::Project, &a.project_id), (USERS, Kind::User, &a.user_id), (ROLES, Kind::Role, &a.role_id)]
    {
        if !exists(tx, table, id)? {
            return Ok(Some(not_found(kind, id)));
        }
    }
    Ok(None)
}

fn bootstrap(tx: &WriteTransaction, project: &Project, user: &User, roles: &[Role]) -> Result<Outcome, StateError> {
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
        outcomes.push(apply(tx, &Command::Grant(a))?);
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
        assert_eq!(run(&s, Command::CreateProject(project("p1", "one"))), Ok(()));
        assert_eq!(
            run(&s, Command::CreateProject(project("p2", "one"))),
            Err(Refusal::Conflict { kind: Kind::Project, name: "one".into() })
        );
        assert!(s.view().unwrap().project("p2").unwrap().is_none(), "refused create wrote nothing");
        run(&s, Command::CreateUser(user("u1", "alice"))).unwrap();
        run(&s, Command::CreateRole(role("r1", "member"))).unwrap();
        let a = Assignment { project_id: "p1".into(), user_id: "u1".into(), role_id: "r1".into() };
        assert_eq!(run(&s, Command::Grant(a.clone())), Ok(()));
        assert_eq!(s.view().unwrap().roles_of("u1", "p1").unwrap(), vec!["r1".to_string()]);
        assert_eq!(s.view().unwrap().assignments(None, Some("p1")).unwrap(), vec![a.clone()]);
        assert_eq!(s.view().unwrap().assignments(Some("u1"), None).unwrap(), vec![a]);
        assert_eq!(run(&s, Command::DeleteProject { id: "p1".into() }), Ok(()));
        assert!(s.view().unwrap().roles_of("u1", "p1").unwrap().is_empty());
        assert!(s.view().unwrap().assignments(None, None).unwrap().is_empty());
        assert!(s.view().unwrap().project_by_name("default", "one").unwrap().is_none());
        assert_eq!(
            run(&s, Command::DeleteProject { id: "p1".into() }),
            Err(Refusal::NotFound { kind: Kind::Project, id: "p1".into() })
        );
    }

    #[test]
    fn grant_needs_existing_parts_and_rename_checks_names() {
        let (_d, s) = store();
        run(&s, Command::CreateProject(project("p1", "one"))).unwrap();
        run(&s, Command::CreateProject(project("p2", "two"))).unwrap();
        let a = Assignment { project_id: "p1".into(), user_id: "nobody".into(), role_id: "r".into() };
        assert_eq!(run(&s, Command::Grant(a)), Err(Refusal::NotFound { kind: Kind::User, id: "nobody".into() }));
        assert!(s.view().unwrap().assignments(None, None).unwrap().is_empty());
        let rename = |n: &str| Command::UpdateProject {
            id: "p1".into(),
            patch: ProjectPatch { name: Some(Name::new("name", n).unwrap()), ..Default::default() },
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
        let cmd = Command::Bootstrap {
            project: project("p", "admin"),
            user: user("u", "admin"),
            roles: vec![role("ra", "admin"), role("rm", "member")],
        };
        assert_eq!(run(&s, cmd.clone()), Ok(()));
        assert!(s.view().unwrap().is_bootstrapped().unwrap());
        assert_eq!(s.view().unwrap().roles_of("u", "p").unwrap(), vec!["ra".to_string()]);
        assert_eq!(run(&s, cmd.clone()), Err(Refusal::AlreadyBootstrapped));
        // With every user deleted the cloud is still bootstrapped, and a second bootstrap is
        // refused before it writes anything.
        run(&s, Command::DeleteUser { id: "u".into() }).unwrap();
        assert!(s.view().unwrap().is_bootstrapped().unwrap());
        assert_eq!(run(&s, cmd), Err(Refusal::AlreadyBootstrapped));
        assert!(s.view().unwrap().users().unwrap().is_empty(), "the refused bootstrap wrote no user");
        run(&s, Command::RevokeToken { audit_id: "a1".into(), expires_at: 100, now: 50 }).unwrap();
        assert!(s.view().unwrap().is_revoked("a1").unwrap());
        run(&s, Command::RevokeToken { audit_id: "a2".into(), expires_at: 300, now: 200 }).unwrap();
        assert!(!s.view().unwrap().is_revoked("a1").unwrap(), "expired revocation pruned");
        assert!(s.view().unwrap().is_revoked("a2").unwrap());
    }
}
