//! Domains, groups and their members, role grants beyond a user's on a project (to groups, on
//! domains, on the system), and application credentials: their tables, reads and appliers.
//!
//! A user's role on a project stays in the older assignment tables ([`super::ASSIGN_BY_USER`]);
//! [`Command::Identity(IdentityCommand::GrantRole)`] of that shape lands there, so every grant has one home.

use super::apply::{
    bootstrap, check_assignment_parts, create, delete, forgotten, load, not_found, replace, store, Blob,
};
use super::{
    assignment_keys, prefix_end, Command, Kind, Outcome, Refusal, StateError, View, ASSIGN_BY_PROJECT, ASSIGN_BY_USER,
    PROJECTS, PROJECT_NAMES, REVOKED, ROLES, ROLE_NAMES, USERS, USER_NAMES,
};
use crate::model::identity::{Actor, AppCredential, Domain, DomainPatch, Grant, Group, GroupPatch, Target};
use crate::model::{Assignment, Project, Role, User, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use crate::state::IdentityCommand;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

pub(crate) const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
pub(crate) const DOMAIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("domain_names");
pub(crate) const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
/// [`name_key`] → the group.
pub(crate) const GROUP_NAMES: TableDefinition<&str, &str> = TableDefinition::new("group_names");
/// Key `group \0 user`.
pub(crate) const GROUP_USERS: TableDefinition<&str, ()> = TableDefinition::new("group_users");
/// Key `user \0 group`.
pub(crate) const USER_GROUPS: TableDefinition<&str, ()> = TableDefinition::new("user_groups");
/// Key `target \0 actor \0 role` ([`Target::key`], [`Actor::key`]).
pub(crate) const GRANTS: TableDefinition<&str, ()> = TableDefinition::new("grants");
/// Key `actor \0 target \0 role`.
pub(crate) const GRANTS_BY_ACTOR: TableDefinition<&str, ()> = TableDefinition::new("grants_by_actor");
pub(crate) const APP_CREDS: TableDefinition<&str, &[u8]> = TableDefinition::new("app_credentials");
/// `user \0 name` → the application credential.
pub(crate) const APP_CRED_NAMES: TableDefinition<&str, &str> = TableDefinition::new("app_credential_names");

/// The key of a name unique within a domain (users, projects, groups). The default domain's
/// names are keyed by the bare name, as before domains existed, so older state reads the same.
pub fn name_key(domain_id: &str, name: &str) -> String {
    if domain_id == DEFAULT_DOMAIN_ID {
        name.to_owned()
    } else {
        format!("{domain_id}\0{name}")
    }
}

fn pair(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

fn grant_keys(g: &Grant) -> (String, String) {
    let (t, a) = (g.target.key(), g.actor.key());
    (format!("{t}\0{a}\0{}", g.role_id), format!("{a}\0{t}\0{}", g.role_id))
}

fn parse_grant(key: &str, by_actor: bool) -> Option<Grant> {
    let (x, y, role) = super::split3(key)?;
    let (t, a) = if by_actor { (y, x) } else { (x, y) };
    Some(Grant { actor: Actor::parse_key(a)?, target: Target::parse_key(t)?, role_id: role.into() })
}

/// Keys of a unit table under `prefix`.
fn keys_under(
    tx: &redb::ReadTransaction,
    table: TableDefinition<&str, ()>,
    prefix: &str,
) -> Result<Vec<String>, StateError> {
    let t = tx.open_table(table)?;
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    for row in t.range(prefix..end.as_str())? {
        out.push(row?.0.value().to_owned());
    }
    Ok(out)
}

impl View {
    /// A domain by id; `default` exists even before anything about it is stored.
    pub fn domain(&self, id: &str) -> Result<Option<Domain>, StateError> {
        let stored = self.get(DOMAINS, id)?;
        Ok(stored.or_else(|| (id == DEFAULT_DOMAIN_ID).then(Domain::builtin)))
    }

    pub fn domains(&self) -> Result<Vec<Domain>, StateError> {
        let mut all: Vec<Domain> = self.list(DOMAINS)?;
        if !all.iter().any(|d| d.id == DEFAULT_DOMAIN_ID) {
            all.insert(0, Domain::builtin());
        }
        Ok(all)
    }

    /// A domain named by id or by name (`Default` in any case names the default domain).
    pub fn resolve_domain(&self, id_or_name: &str) -> Result<Option<Domain>, StateError> {
        if let Some(d) = self.domain(id_or_name)? {
            return Ok(Some(d));
        }
        if id_or_name.eq_ignore_ascii_case(DEFAULT_DOMAIN_NAME) {
            return self.domain(DEFAULT_DOMAIN_ID);
        }
        match self.id_by_name(DOMAIN_NAMES, id_or_name)? {
            Some(id) => self.domain(&id),
            None => Ok(None),
        }
    }

    pub fn group(&self, id: &str) -> Result<Option<Group>, StateError> {
        self.get(GROUPS, id)
    }
    pub fn groups(&self) -> Result<Vec<Group>, StateError> {
        self.list(GROUPS)
    }

    /// Ids of the group's members.
    pub fn group_users(&self, group_id: &str) -> Result<Vec<String>, StateError> {
        let keys = keys_under(&self.tx, GROUP_USERS, &pair(group_id, ""))?;
        Ok(keys.iter().filter_map(|k| k.split_once('\0')).map(|(_, u)| u.to_owned()).collect())
    }

    /// Ids of the groups a user is in.
    pub fn user_groups(&self, user_id: &str) -> Result<Vec<String>, StateError> {
        let keys = keys_under(&self.tx, USER_GROUPS, &pair(user_id, ""))?;
        Ok(keys.iter().filter_map(|k| k.split_once('\0')).map(|(_, g)| g.to_owned()).collect())
    }

    /// Grants held by an actor (every one when `None`), users' project roles included.
    pub fn grants(&self, actor: Option<&Actor>) -> Result<Vec<Grant>, StateError> {
        let (table, prefix, by_actor) = match actor {
            Some(a) => (GRANTS_BY_ACTOR, format!("{}\0", a.key()), true),
            None => (GRANTS, String::new(), false),
        };
        let mut out: Vec<Grant> =
            keys_under(&self.tx, table, &prefix)?.iter().filter_map(|k| parse_grant(k, by_actor)).collect();
        let user = match actor {
            Some(Actor::User(u)) => Some(u.as_str()),
            Some(Actor::Group(_)) => return Ok(out),
            None => None,
        };
        out.extend(self.assignments(user, None)?.into_iter().map(|a| Grant {
            actor: Actor::User(a.user_id),
            target: Target::Project(a.project_id),
            role_id: a.role_id,
        }));
        Ok(out)
    }

    /// Role ids a user holds on `target`, directly or through a group.
    pub fn roles_on(&self, user_id: &str, target: &Target) -> Result<Vec<String>, StateError> {
        let mut roles = match target {
            Target::Project(p) => self.roles_of(user_id, p)?,
            _ => Vec::new(),
        };
        let mut actors = vec![Actor::User(user_id.into())];
        actors.extend(self.user_groups(user_id)?.into_iter().map(Actor::Group));
        let t = target.key();
        for a in actors {
            let keys = keys_under(&self.tx, GRANTS_BY_ACTOR, &format!("{}\0{t}\0", a.key()))?;
            roles.extend(keys.iter().filter_map(|k| parse_grant(k, true)).map(|g| g.role_id));
        }
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    pub fn app_credential(&self, id: &str) -> Result<Option<AppCredential>, StateError> {
        self.get(APP_CREDS, id)
    }
    pub fn app_credential_by_name(&self, user_id: &str, name: &str) -> Result<Option<AppCredential>, StateError> {
        match self.id_by_name(APP_CRED_NAMES, &pair(user_id, name))? {
            Some(id) => self.app_credential(&id),
            None => Ok(None),
        }
    }
    pub fn app_credentials(&self, user_id: &str) -> Result<Vec<AppCredential>, StateError> {
        let all: Vec<AppCredential> = self.list(APP_CREDS)?;
        Ok(all.into_iter().filter(|c| c.user_id == user_id).collect())
    }
}

/// Whether a domain exists, in a write transaction.
pub(super) fn domain_exists(tx: &WriteTransaction, id: &str) -> Result<bool, StateError> {
    Ok(id == DEFAULT_DOMAIN_ID || load::<Domain>(tx, DOMAINS, id)?.is_some())
}

/// Keystone's commands: projects, users, roles, grants and revocations, domains, groups,
/// application credentials.
pub(super) fn apply(tx: &WriteTransaction, cmd: &IdentityCommand) -> Result<Outcome, StateError> {
    match cmd {
        IdentityCommand::Bootstrap { project, user, roles } => bootstrap(tx, project, user, roles),
        IdentityCommand::CreateProject(p) => {
            if let Some(r) = check_domain_of(tx, cmd)? {
                return Ok(Err(r));
            }
            create(tx, PROJECTS, PROJECT_NAMES, Kind::Project, &p.id, &name_key(&p.domain_id, p.name.as_str()), p)
        }
        IdentityCommand::UpdateProject { id, patch } => {
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
        IdentityCommand::DeleteProject { id } => {
            let out = delete(tx, PROJECTS, PROJECT_NAMES, Kind::Project, id, |p: &Project| {
                (name_key(&p.domain_id, p.name.as_str()), Some(id.clone()), None, None)
            })?;
            forgotten(tx, out, Forget::Target(Target::Project(id.clone())))
        }
        IdentityCommand::CreateUser(u) => {
            if let Some(r) = check_domain_of(tx, cmd)? {
                return Ok(Err(r));
            }
            create(tx, USERS, USER_NAMES, Kind::User, &u.id, &name_key(&u.domain_id, u.name.as_str()), u)
        }
        IdentityCommand::UpdateUser { id, patch } => {
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
        IdentityCommand::DeleteUser { id } => {
            let out = delete(tx, USERS, USER_NAMES, Kind::User, id, |u: &User| {
                (name_key(&u.domain_id, u.name.as_str()), None, Some(id.clone()), None)
            })?;
            forgotten(tx, out, Forget::Actor(Actor::User(id.clone())))
        }
        IdentityCommand::CreateRole(r) => create(tx, ROLES, ROLE_NAMES, Kind::Role, &r.id, r.name.as_str(), r),
        IdentityCommand::UpdateRole { id, name } => {
            let Some(mut r) = load::<Role>(tx, ROLES, id)? else {
                return Ok(Err(not_found(Kind::Role, id)));
            };
            let old = std::mem::replace(&mut r.name, name.clone());
            replace(tx, ROLES, ROLE_NAMES, Kind::Role, id, old.as_str(), r.name.as_str(), &r)
        }
        IdentityCommand::DeleteRole { id } => {
            let out = delete(tx, ROLES, ROLE_NAMES, Kind::Role, id, |r: &Role| {
                (r.name.to_string(), None, None, Some(id.clone()))
            })?;
            forgotten(tx, out, Forget::Role(id.clone()))
        }
        IdentityCommand::Grant(a) => {
            if let Some(refusal) = check_assignment_parts(tx, a)? {
                return Ok(Err(refusal));
            }
            let (kp, ku) = assignment_keys(a);
            tx.open_table(ASSIGN_BY_PROJECT)?.insert(kp.as_str(), ())?;
            tx.open_table(ASSIGN_BY_USER)?.insert(ku.as_str(), ())?;
            Ok(Ok(()))
        }
        IdentityCommand::Ungrant(a) => {
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
        IdentityCommand::RevokeToken { audit_id, expires_at, now } => {
            let mut t = tx.open_table(REVOKED)?;
            t.retain(|_, exp| exp > *now)?;
            t.insert(audit_id.as_str(), *expires_at)?;
            Ok(Ok(()))
        }
        IdentityCommand::CreateDomain(d) => create(tx, DOMAINS, DOMAIN_NAMES, Kind::Domain, &d.id, d.name.as_str(), d),
        IdentityCommand::UpdateDomain { id, patch } => update_domain(tx, id, patch),
        IdentityCommand::DeleteDomain { id } => delete_domain(tx, id),
        IdentityCommand::CreateGroup(g) => {
            if !domain_exists(tx, &g.domain_id)? {
                return Ok(Err(not_found(Kind::Domain, &g.domain_id)));
            }
            create(tx, GROUPS, GROUP_NAMES, Kind::Group, &g.id, &name_key(&g.domain_id, g.name.as_str()), g)
        }
        IdentityCommand::UpdateGroup { id, patch } => update_group(tx, id, patch),
        IdentityCommand::DeleteGroup { id } => delete_group(tx, id),
        IdentityCommand::AddGroupUser { group_id, user_id } => {
            if let Some(r) = missing(tx, &[(GROUPS, Kind::Group, group_id), (USERS, Kind::User, user_id)])? {
                return Ok(Err(r));
            }
            tx.open_table(GROUP_USERS)?.insert(pair(group_id, user_id).as_str(), ())?;
            tx.open_table(USER_GROUPS)?.insert(pair(user_id, group_id).as_str(), ())?;
            Ok(Ok(()))
        }
        IdentityCommand::RemoveGroupUser { group_id, user_id } => {
            if tx.open_table(GROUP_USERS)?.remove(pair(group_id, user_id).as_str())?.is_none() {
                return Ok(Err(not_found(Kind::GroupMembership, &pair(group_id, user_id).replace('\0', "/"))));
            }
            tx.open_table(USER_GROUPS)?.remove(pair(user_id, group_id).as_str())?;
            Ok(Ok(()))
        }
        IdentityCommand::GrantRole(g) => grant(tx, g),
        IdentityCommand::RevokeRole(g) => revoke(tx, g),
        IdentityCommand::CreateAppCredential(c) => {
            let parts = [(USERS, Kind::User, &c.user_id), (PROJECTS, Kind::Project, &c.project_id)];
            if let Some(r) = missing(tx, &parts)? {
                return Ok(Err(r));
            }
            let name = pair(&c.user_id, c.name.as_str());
            if tx.open_table(APP_CRED_NAMES)?.get(name.as_str())?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::ApplicationCredential, name: c.name.to_string() }));
            }
            tx.open_table(APP_CRED_NAMES)?.insert(name.as_str(), c.id.as_str())?;
            store(tx, APP_CREDS, &c.id, c)?;
            Ok(Ok(()))
        }
        IdentityCommand::DeleteAppCredential { id } => {
            let Some(c) = load::<AppCredential>(tx, APP_CREDS, id)? else {
                return Ok(Err(not_found(Kind::ApplicationCredential, id)));
            };
            drop_app_credentials(tx, |x| x.id == c.id)?;
            Ok(Ok(()))
        }
    }
}

/// The first of `parts` that does not exist, as a refusal.
fn missing(tx: &WriteTransaction, parts: &[(Blob, Kind, &String)]) -> Result<Option<Refusal>, StateError> {
    for (table, kind, id) in parts {
        if tx.open_table(*table)?.get(id.as_str())?.is_none() {
            return Ok(Some(not_found(*kind, id)));
        }
    }
    Ok(None)
}

fn as_assignment(g: &Grant) -> Option<Assignment> {
    match (&g.actor, &g.target) {
        (Actor::User(u), Target::Project(p)) => {
            Some(Assignment { project_id: p.clone(), user_id: u.clone(), role_id: g.role_id.clone() })
        }
        _ => None,
    }
}

fn grant(tx: &WriteTransaction, g: &Grant) -> Result<Outcome, StateError> {
    if let Some(a) = as_assignment(g) {
        return super::apply::apply(tx, &Command::Identity(IdentityCommand::Grant(a)));
    }
    let mut parts = vec![(ROLES, Kind::Role, &g.role_id)];
    match &g.actor {
        Actor::User(u) => parts.push((USERS, Kind::User, u)),
        Actor::Group(id) => parts.push((GROUPS, Kind::Group, id)),
    }
    match &g.target {
        Target::Project(p) => parts.push((PROJECTS, Kind::Project, p)),
        Target::Domain(d) if !domain_exists(tx, d)? => return Ok(Err(not_found(Kind::Domain, d))),
        Target::Domain(_) | Target::System => {}
    }
    if let Some(r) = missing(tx, &parts)? {
        return Ok(Err(r));
    }
    let (k, ka) = grant_keys(g);
    tx.open_table(GRANTS)?.insert(k.as_str(), ())?;
    tx.open_table(GRANTS_BY_ACTOR)?.insert(ka.as_str(), ())?;
    Ok(Ok(()))
}

fn revoke(tx: &WriteTransaction, g: &Grant) -> Result<Outcome, StateError> {
    if let Some(a) = as_assignment(g) {
        return super::apply::apply(tx, &Command::Identity(IdentityCommand::Ungrant(a)));
    }
    let (k, ka) = grant_keys(g);
    if tx.open_table(GRANTS)?.remove(k.as_str())?.is_none() {
        return Ok(Err(not_found(Kind::RoleAssignment, &k.replace('\0', " "))));
    }
    tx.open_table(GRANTS_BY_ACTOR)?.remove(ka.as_str())?;
    Ok(Ok(()))
}

fn update_domain(tx: &WriteTransaction, id: &str, patch: &DomainPatch) -> Result<Outcome, StateError> {
    let stored = load::<Domain>(tx, DOMAINS, id)?;
    let Some(mut d) = stored.clone().or_else(|| (id == DEFAULT_DOMAIN_ID).then(Domain::builtin)) else {
        return Ok(Err(not_found(Kind::Domain, id)));
    };
    let old = d.name.clone();
    if let Some(n) = &patch.name {
        d.name = n.clone();
    }
    if let Some(s) = &patch.description {
        d.description = s.clone();
    }
    if let Some(e) = patch.enabled {
        d.enabled = e;
    }
    let mut names = tx.open_table(DOMAIN_NAMES)?;
    if d.name != old {
        if names.get(d.name.as_str())?.is_some() {
            return Ok(Err(Refusal::Conflict { kind: Kind::Domain, name: d.name.to_string() }));
        }
        names.remove(old.as_str())?;
    }
    if id != DEFAULT_DOMAIN_ID {
        names.insert(d.name.as_str(), id)?;
    }
    drop(names);
    store(tx, DOMAINS, id, &d)?;
    Ok(Ok(()))
}

/// Deletes a disabled domain and everything in it: its projects, users and groups, and the
/// roles granted on it.
fn delete_domain(tx: &WriteTransaction, id: &str) -> Result<Outcome, StateError> {
    let Some(d) = load::<Domain>(tx, DOMAINS, id)? else {
        return Ok(Err(not_found(Kind::Domain, id)));
    };
    if d.enabled {
        return Ok(Err(Refusal::Invalid("Cannot delete a domain that is enabled, please disable it first.".into())));
    }
    let in_domain = |table: Blob| -> Result<Vec<String>, StateError> {
        let t = tx.open_table(table)?;
        let mut ids = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let rec: serde_json::Value = serde_json::from_slice(v.value())?;
            if rec.get("domain_id").and_then(|x| x.as_str()) == Some(id) {
                ids.push(k.value().to_owned());
            }
        }
        Ok(ids)
    };
    // Each of these was just found, so none is refused; were one, the first refusal is told.
    let mut outcomes = Vec::new();
    for g in in_domain(GROUPS)? {
        outcomes.push(delete_group(tx, &g)?);
    }
    for u in in_domain(USERS)? {
        outcomes.push(super::apply::apply(tx, &Command::Identity(IdentityCommand::DeleteUser { id: u }))?);
    }
    for p in in_domain(PROJECTS)? {
        outcomes.push(super::apply::apply(tx, &Command::Identity(IdentityCommand::DeleteProject { id: p }))?);
    }
    forget(tx, &Forget::Target(Target::Domain(id.into())))?;
    tx.open_table(DOMAINS)?.remove(id)?;
    tx.open_table(DOMAIN_NAMES)?.remove(d.name.as_str())?;
    Ok(outcomes.into_iter().collect())
}

fn update_group(tx: &WriteTransaction, id: &str, patch: &GroupPatch) -> Result<Outcome, StateError> {
    let Some(mut g) = load::<Group>(tx, GROUPS, id)? else {
        return Ok(Err(not_found(Kind::Group, id)));
    };
    let old = name_key(&g.domain_id, g.name.as_str());
    if let Some(n) = &patch.name {
        g.name = n.clone();
    }
    if let Some(s) = &patch.description {
        g.description = s.clone();
    }
    let new = name_key(&g.domain_id, g.name.as_str());
    let mut names = tx.open_table(GROUP_NAMES)?;
    if new != old {
        if names.get(new.as_str())?.is_some() {
            return Ok(Err(Refusal::Conflict { kind: Kind::Group, name: g.name.to_string() }));
        }
        names.remove(old.as_str())?;
        names.insert(new.as_str(), id)?;
    }
    drop(names);
    store(tx, GROUPS, id, &g)?;
    Ok(Ok(()))
}

fn delete_group(tx: &WriteTransaction, id: &str) -> Result<Outcome, StateError> {
    let Some(g) = load::<Group>(tx, GROUPS, id)? else {
        return Ok(Err(not_found(Kind::Group, id)));
    };
    tx.open_table(GROUPS)?.remove(id)?;
    tx.open_table(GROUP_NAMES)?.remove(name_key(&g.domain_id, g.name.as_str()).as_str())?;
    forget(tx, &Forget::Actor(Actor::Group(id.into())))?;
    Ok(Ok(()))
}

/// What a deletion leaves behind to clean up.
pub(super) enum Forget {
    /// A user or group: its grants and memberships (and a user's application credentials).
    Actor(Actor),
    /// A project or domain: the roles granted on it (and a project's application credentials).
    Target(Target),
    Role(String),
}

/// Drops every grant, membership and application credential naming what was deleted.
pub(super) fn forget(tx: &WriteTransaction, what: &Forget) -> Result<(), StateError> {
    let keep = |g: &Grant| match what {
        Forget::Actor(a) => &g.actor != a,
        Forget::Target(t) => &g.target != t,
        Forget::Role(r) => &g.role_id != r,
    };
    tx.open_table(GRANTS)?.retain(|k, _| parse_grant(k, false).is_none_or(|g| keep(&g)))?;
    tx.open_table(GRANTS_BY_ACTOR)?.retain(|k, _| parse_grant(k, true).is_none_or(|g| keep(&g)))?;
    match what {
        Forget::Actor(Actor::User(u)) => {
            let member = |k: &str, at: usize| k.split('\0').nth(at) != Some(u.as_str());
            tx.open_table(GROUP_USERS)?.retain(|k, _| member(k, 1))?;
            tx.open_table(USER_GROUPS)?.retain(|k, _| member(k, 0))?;
            drop_app_credentials(tx, |c| &c.user_id == u)
        }
        Forget::Actor(Actor::Group(g)) => {
            let member = |k: &str, at: usize| k.split('\0').nth(at) != Some(g.as_str());
            tx.open_table(GROUP_USERS)?.retain(|k, _| member(k, 0))?;
            tx.open_table(USER_GROUPS)?.retain(|k, _| member(k, 1))?;
            Ok(())
        }
        Forget::Target(Target::Project(p)) => drop_app_credentials(tx, |c| &c.project_id == p),
        Forget::Role(r) => drop_app_credentials(tx, |c| c.role_ids.contains(r)),
        Forget::Target(_) => Ok(()),
    }
}

fn drop_app_credentials(tx: &WriteTransaction, gone: impl Fn(&AppCredential) -> bool) -> Result<(), StateError> {
    let mut doomed = Vec::new();
    for row in tx.open_table(APP_CREDS)?.iter()? {
        let c: AppCredential = serde_json::from_slice(row?.1.value())?;
        if gone(&c) {
            doomed.push(c);
        }
    }
    for c in doomed {
        tx.open_table(APP_CREDS)?.remove(c.id.as_str())?;
        tx.open_table(APP_CRED_NAMES)?.remove(pair(&c.user_id, c.name.as_str()).as_str())?;
    }
    Ok(())
}

/// Whether a project or user record names an existing domain (checked before creating one).
pub(super) fn check_domain_of(tx: &WriteTransaction, cmd: &IdentityCommand) -> Result<Option<Refusal>, StateError> {
    let domain = match cmd {
        IdentityCommand::CreateProject(Project { domain_id, .. })
        | IdentityCommand::CreateUser(User { domain_id, .. }) => domain_id,
        _ => return Ok(None),
    };
    Ok((!domain_exists(tx, domain)?).then(|| not_found(Kind::Domain, domain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;
    use crate::state::apply::run;
    use crate::state::Command;
    use crate::state::Store;

    fn n(s: &str) -> Name {
        Name::new("name", s).unwrap()
    }
    fn domain(id: &str, name: &str, enabled: bool) -> Domain {
        Domain { id: id.into(), name: n(name), description: String::new(), enabled }
    }
    fn project(id: &str, name: &str, domain_id: &str) -> Project {
        Project {
            id: id.into(),
            name: n(name),
            domain_id: domain_id.into(),
            description: String::new(),
            enabled: true,
            tags: Vec::new(),
        }
    }
    fn user(id: &str, name: &str, domain_id: &str) -> User {
        User {
            extra: Default::default(),
            id: id.into(),
            name: n(name),
            domain_id: domain_id.into(),
            enabled: true,
            password_hash: None,
            default_project_id: None,
            email: None,
            description: String::new(),
        }
    }
    fn grant(actor: Actor, target: Target, role: &str) -> Grant {
        Grant { actor, target, role_id: role.into() }
    }
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn names_are_unique_per_domain_and_domains_resolve() {
        let (_d, s) = store();
        assert_eq!(run(&s, Command::Identity(IdentityCommand::CreateDomain(domain("d1", "lab", true)))), Ok(()));
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::CreateDomain(domain("d2", "lab", true)))),
            Err(Refusal::Conflict { kind: Kind::Domain, name: "lab".into() })
        );
        run(&s, Command::Identity(IdentityCommand::CreateProject(project("p1", "web", "default")))).unwrap();
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::CreateProject(project("p2", "web", "d1")))),
            Ok(()),
            "same name, other domain"
        );
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::CreateProject(project("p3", "web", "nowhere")))),
            Err(Refusal::NotFound { kind: Kind::Domain, id: "nowhere".into() })
        );
        let v = s.view().unwrap();
        assert_eq!(v.project_by_name("d1", "web").unwrap().unwrap().id, "p2");
        assert_eq!(v.project_by_name("default", "web").unwrap().unwrap().id, "p1");
        assert_eq!(v.resolve_domain("lab").unwrap().unwrap().id, "d1");
        assert_eq!(v.resolve_domain("Default").unwrap().unwrap().id, "default");
        assert!(v.resolve_domain("other").unwrap().is_none());
        assert_eq!(v.domains().unwrap().len(), 2, "the default domain is listed without a row");
    }

    #[test]
    fn group_grants_reach_members_and_domain_delete_cascades() {
        let (_d, s) = store();
        run(&s, Command::Identity(IdentityCommand::CreateDomain(domain("d1", "lab", true)))).unwrap();
        run(&s, Command::Identity(IdentityCommand::CreateProject(project("p1", "web", "d1")))).unwrap();
        run(&s, Command::Identity(IdentityCommand::CreateUser(user("u1", "alice", "d1")))).unwrap();
        run(
            &s,
            Command::Identity(IdentityCommand::CreateRole(crate::model::Role { id: "r1".into(), name: n("member") })),
        )
        .unwrap();
        let g = Group { id: "g1".into(), name: n("ops"), domain_id: "d1".into(), description: String::new() };
        run(&s, Command::Identity(IdentityCommand::CreateGroup(g))).unwrap();
        run(&s, Command::Identity(IdentityCommand::AddGroupUser { group_id: "g1".into(), user_id: "u1".into() }))
            .unwrap();
        for t in [Target::Project("p1".into()), Target::Domain("d1".into()), Target::System] {
            assert_eq!(
                run(
                    &s,
                    Command::Identity(IdentityCommand::GrantRole(grant(Actor::Group("g1".into()), t.clone(), "r1")))
                ),
                Ok(())
            );
            assert_eq!(s.view().unwrap().roles_on("u1", &t).unwrap(), vec!["r1".to_string()], "{t:?}");
        }
        // A user's own project grant lands in the assignment tables and reads the same.
        run(
            &s,
            Command::Identity(IdentityCommand::GrantRole(grant(
                Actor::User("u1".into()),
                Target::Project("p1".into()),
                "r1",
            ))),
        )
        .unwrap();
        assert_eq!(s.view().unwrap().roles_of("u1", "p1").unwrap(), vec!["r1".to_string()]);
        run(&s, Command::Identity(IdentityCommand::RemoveGroupUser { group_id: "g1".into(), user_id: "u1".into() }))
            .unwrap();
        assert!(s.view().unwrap().roles_on("u1", &Target::System).unwrap().is_empty());
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::DeleteDomain { id: "d1".into() })),
            Err(Refusal::Invalid("Cannot delete a domain that is enabled, please disable it first.".into()))
        );
        let disable = DomainPatch { enabled: Some(false), ..DomainPatch::default() };
        run(&s, Command::Identity(IdentityCommand::UpdateDomain { id: "d1".into(), patch: disable })).unwrap();
        assert_eq!(run(&s, Command::Identity(IdentityCommand::DeleteDomain { id: "d1".into() })), Ok(()));
        let v = s.view().unwrap();
        assert!(
            v.project("p1").unwrap().is_none() && v.user("u1").unwrap().is_none() && v.group("g1").unwrap().is_none()
        );
        assert!(v.grants(None).unwrap().is_empty(), "grants on and by what went are gone");
        assert!(v.resolve_domain("lab").unwrap().is_none());
    }

    #[test]
    fn app_credentials_go_with_their_user() {
        let (_d, s) = store();
        run(&s, Command::Identity(IdentityCommand::CreateProject(project("p1", "web", "default")))).unwrap();
        run(&s, Command::Identity(IdentityCommand::CreateUser(user("u1", "alice", "default")))).unwrap();
        let c = AppCredential {
            id: "c1".into(),
            user_id: "u1".into(),
            name: n("ci"),
            description: String::new(),
            secret_hash: "h".into(),
            project_id: "p1".into(),
            role_ids: vec![],
            expires_at_us: None,
            unrestricted: false,
        };
        assert_eq!(run(&s, Command::Identity(IdentityCommand::CreateAppCredential(c.clone()))), Ok(()));
        assert_eq!(
            run(&s, Command::Identity(IdentityCommand::CreateAppCredential(AppCredential { id: "c2".into(), ..c }))),
            Err(Refusal::Conflict { kind: Kind::ApplicationCredential, name: "ci".into() })
        );
        assert_eq!(s.view().unwrap().app_credential_by_name("u1", "ci").unwrap().unwrap().id, "c1");
        run(&s, Command::Identity(IdentityCommand::DeleteUser { id: "u1".into() })).unwrap();
        assert!(s.view().unwrap().app_credential("c1").unwrap().is_none());
    }
}
