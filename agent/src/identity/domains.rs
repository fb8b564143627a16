//! Domains and groups (with their members), and who may read or change them.

use super::{not_found, Auth, Identity, IdentityError, Result};
use crate::model::identity::{Domain, DomainPatch, Group, GroupPatch};
use crate::model::{self, Name, User, DEFAULT_DOMAIN_ID};
use crate::state::IdentityCommand;
use crate::state::{Command, Kind};

impl Identity {
    pub fn list_domains(&self, auth: &Auth) -> Result<Vec<Domain>> {
        auth.require_reader("identity:list_domains")?;
        Ok(self.view()?.domains()?)
    }

    /// A domain; any token may read the domain it is scoped to or its user's.
    pub fn get_domain(&self, auth: &Auth, id: &str) -> Result<Domain> {
        let own = auth.domain.as_ref().is_some_and(|d| d.id == id) || auth.user.domain_id == id;
        if !own {
            auth.require_reader("identity:get_domain")?;
        }
        self.view()?.domain(id)?.ok_or_else(|| not_found(Kind::Domain, id))
    }

    pub async fn create_domain(&self, auth: &Auth, name: Name, description: String, enabled: bool) -> Result<Domain> {
        auth.require_admin("identity:create_domain")?;
        if self.view()?.resolve_domain(name.as_str())?.is_some() {
            return Err(IdentityError::Conflict { kind: Kind::Domain, name: name.to_string() });
        }
        let d = Domain { id: model::new_id(), name, description, enabled };
        self.propose(Command::Identity(IdentityCommand::CreateDomain(d.clone()))).await?;
        Ok(d)
    }

    pub async fn update_domain(&self, auth: &Auth, id: &str, patch: DomainPatch) -> Result<Domain> {
        auth.require_admin("identity:update_domain")?;
        if id == DEFAULT_DOMAIN_ID && patch.enabled == Some(false) {
            return Err(IdentityError::Forbidden("the default domain cannot be disabled"));
        }
        self.propose(Command::Identity(IdentityCommand::UpdateDomain { id: id.into(), patch })).await?;
        self.view()?.domain(id)?.ok_or_else(|| not_found(Kind::Domain, id))
    }

    /// Deletes a disabled domain with everything in it (Keystone's cascade).
    pub async fn delete_domain(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_domain")?;
        let d = self.view()?.domain(id)?.ok_or_else(|| not_found(Kind::Domain, id))?;
        if id == DEFAULT_DOMAIN_ID {
            return Err(IdentityError::Forbidden("the default domain cannot be deleted"));
        }
        if d.enabled {
            return Err(IdentityError::Forbidden("Cannot delete a domain that is enabled, please disable it first"));
        }
        self.propose(Command::Identity(IdentityCommand::DeleteDomain { id: id.into() })).await
    }

    // ---- groups

    pub fn list_groups(&self, auth: &Auth) -> Result<Vec<Group>> {
        auth.require_reader("identity:list_groups")?;
        Ok(self.view()?.groups()?)
    }

    pub fn get_group(&self, auth: &Auth, id: &str) -> Result<Group> {
        auth.require_reader("identity:get_group")?;
        self.view()?.group(id)?.ok_or_else(|| not_found(Kind::Group, id))
    }

    pub async fn create_group(&self, auth: &Auth, name: Name, domain: &str, description: String) -> Result<Group> {
        auth.require_admin("identity:create_group")?;
        let g = Group { id: model::new_id(), name, domain_id: self.domain_id(domain)?, description };
        self.propose(Command::Identity(IdentityCommand::CreateGroup(g.clone()))).await?;
        Ok(g)
    }

    pub async fn update_group(&self, auth: &Auth, id: &str, patch: GroupPatch) -> Result<Group> {
        auth.require_admin("identity:update_group")?;
        self.propose(Command::Identity(IdentityCommand::UpdateGroup { id: id.into(), patch })).await?;
        self.view()?.group(id)?.ok_or_else(|| not_found(Kind::Group, id))
    }

    pub async fn delete_group(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_group")?;
        self.propose(Command::Identity(IdentityCommand::DeleteGroup { id: id.into() })).await
    }

    pub fn group_users(&self, auth: &Auth, group_id: &str) -> Result<Vec<User>> {
        auth.require_reader("identity:list_users_in_group")?;
        let view = self.view()?;
        view.group(group_id)?.ok_or_else(|| not_found(Kind::Group, group_id))?;
        let mut out = Vec::new();
        for u in view.group_users(group_id)? {
            out.extend(view.user(&u)?);
        }
        Ok(out)
    }

    /// The groups a user is in: one's own, or anyone's for a reader.
    pub fn user_groups(&self, auth: &Auth, user_id: &str) -> Result<Vec<Group>> {
        if user_id != auth.user.id {
            auth.require_reader("identity:list_groups_for_user")?;
        }
        let view = self.view()?;
        view.user(user_id)?.ok_or_else(|| not_found(Kind::User, user_id))?;
        let mut out = Vec::new();
        for g in view.user_groups(user_id)? {
            out.extend(view.group(&g)?);
        }
        Ok(out)
    }

    pub fn check_group_user(&self, auth: &Auth, group_id: &str, user_id: &str) -> Result<()> {
        auth.require_reader("identity:check_user_in_group")?;
        let view = self.view()?;
        view.group(group_id)?.ok_or_else(|| not_found(Kind::Group, group_id))?;
        view.user(user_id)?.ok_or_else(|| not_found(Kind::User, user_id))?;
        if view.group_users(group_id)?.iter().any(|u| u == user_id) {
            Ok(())
        } else {
            Err(not_found(Kind::GroupMembership, &format!("{group_id}/{user_id}")))
        }
    }

    pub async fn add_group_user(&self, auth: &Auth, group_id: &str, user_id: &str) -> Result<()> {
        auth.require_admin("identity:add_user_to_group")?;
        self.propose(Command::Identity(IdentityCommand::AddGroupUser {
            group_id: group_id.into(),
            user_id: user_id.into(),
        }))
        .await
    }

    pub async fn remove_group_user(&self, auth: &Auth, group_id: &str, user_id: &str) -> Result<()> {
        auth.require_admin("identity:remove_user_from_group")?;
        self.propose(Command::Identity(IdentityCommand::RemoveGroupUser {
            group_id: group_id.into(),
            user_id: user_id.into(),
        }))
        .await
    }
}
