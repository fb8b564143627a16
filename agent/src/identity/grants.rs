//! Role grants (to users and groups, on projects, domains and the system), their listing as
//! Keystone's role assignments (effective ones too), and the projects a user may use.

use super::{not_found, Auth, Identity, Result};
use crate::model::identity::{Actor, Domain, Grant, Target};
use crate::model::{Project, Role};
use crate::state::IdentityCommand;
use crate::state::{Command, Kind, View};

/// Narrows `GET /v3/role_assignments`; `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct AssignmentFilter {
    pub actor: Option<Actor>,
    pub target: Option<Target>,
    pub role_id: Option<String>,
    /// Group grants shown as their members' (Keystone's `effective`).
    pub effective: bool,
}

impl Identity {
    pub async fn grant(&self, auth: &Auth, g: Grant) -> Result<()> {
        auth.require_admin("identity:create_grant")?;
        self.propose(Command::Identity(IdentityCommand::GrantRole(g))).await
    }

    pub async fn revoke(&self, auth: &Auth, g: Grant) -> Result<()> {
        auth.require_admin("identity:revoke_grant")?;
        self.propose(Command::Identity(IdentityCommand::RevokeRole(g))).await
    }

    pub fn check_grant(&self, auth: &Auth, g: &Grant) -> Result<()> {
        auth.require_reader("identity:check_grant")?;
        if self.view()?.grants(Some(&g.actor))?.contains(g) {
            Ok(())
        } else {
            Err(not_found(Kind::RoleAssignment, &g.role_id))
        }
    }

    /// Roles granted directly to `actor` on `target` (`GET /v3/projects/{p}/users/{u}/roles`).
    pub fn granted_roles(&self, auth: &Auth, actor: &Actor, target: &Target) -> Result<Vec<Role>> {
        let own = matches!(actor, Actor::User(u) if *u == auth.user.id);
        if !own {
            auth.require_reader("identity:list_grants")?;
        }
        let view = self.view()?;
        let mut out = Vec::new();
        for g in view.grants(Some(actor))?.into_iter().filter(|g| &g.target == target) {
            out.extend(view.role(&g.role_id)?);
        }
        Ok(out)
    }

    /// Whether the token's user holds a role on the system (`GET /v3/auth/system`).
    pub fn holds_system(&self, auth: &Auth) -> Result<bool> {
        Ok(!self.view()?.roles_on(&auth.user.id, &Target::System)?.is_empty())
    }

    pub fn list_assignments(&self, auth: &Auth, f: &AssignmentFilter) -> Result<Vec<Grant>> {
        if !matches!(&f.actor, Some(Actor::User(u)) if *u == auth.user.id) {
            auth.require_reader("identity:list_role_assignments")?;
        }
        let view = self.view()?;
        let mut all = view.grants(None)?;
        if f.effective {
            let mut expanded = Vec::new();
            for g in all {
                match &g.actor {
                    Actor::Group(id) => expanded.extend(view.group_users(id)?.into_iter().map(|u| Grant {
                        actor: Actor::User(u),
                        target: g.target.clone(),
                        role_id: g.role_id.clone(),
                    })),
                    Actor::User(_) => expanded.push(g),
                }
            }
            expanded.sort();
            expanded.dedup();
            all = expanded;
        }
        all.retain(|g| {
            f.actor.as_ref().is_none_or(|a| &g.actor == a)
                && f.target.as_ref().is_none_or(|t| &g.target == t)
                && f.role_id.as_ref().is_none_or(|r| &g.role_id == r)
        });
        Ok(all)
    }

    /// Projects a user holds a role on, directly or through a group (`/v3/auth/projects`,
    /// `/v3/users/{id}/projects`).
    pub fn user_projects(&self, auth: &Auth, user_id: &str) -> Result<Vec<Project>> {
        if user_id != auth.user.id {
            auth.require_reader("identity:list_user_projects")?;
        }
        let view = self.view()?;
        let mut out = Vec::new();
        for t in targets_of(&view, user_id)? {
            if let Target::Project(p) = t {
                out.extend(view.project(&p)?);
            }
        }
        Ok(out)
    }

    /// Enabled domains the token's user holds a role on (`/v3/auth/domains`).
    pub fn user_domains(&self, auth: &Auth) -> Result<Vec<Domain>> {
        let view = self.view()?;
        let mut out = Vec::new();
        for t in targets_of(&view, &auth.user.id)? {
            if let Target::Domain(d) = t {
                out.extend(view.domain(&d)?.filter(|d| d.enabled));
            }
        }
        Ok(out)
    }
}

/// Everything a user holds a role on, directly or through a group, each once.
fn targets_of(view: &View, user_id: &str) -> Result<Vec<Target>> {
    let mut actors = vec![Actor::User(user_id.into())];
    actors.extend(view.user_groups(user_id)?.into_iter().map(Actor::Group));
    let mut out = Vec::new();
    for a in &actors {
        out.extend(view.grants(Some(a))?.into_iter().map(|g| g.target));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
