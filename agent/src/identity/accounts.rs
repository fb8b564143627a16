//! Projects, users and roles, and who may read or change them.

use super::{
    hash_password, not_found, off_thread, password, Auth, Identity, IdentityError, NewProject, NewUser, Result,
    UserChange,
};
use crate::model::{self, Name, Project, ProjectPatch, Role, User, UserPatch};
use crate::state::IdentityCommand;
use crate::state::{Command, Kind};

impl Identity {
    // ---- projects

    pub fn list_projects(&self, auth: &Auth) -> Result<Vec<Project>> {
        auth.require_reader("identity:list_projects")?;
        Ok(self.view()?.projects()?)
    }

    pub fn get_project(&self, auth: &Auth, id: &str) -> Result<Project> {
        if auth.project.as_ref().map(|p| p.id.as_str()) != Some(id) {
            auth.require_reader("identity:get_project")?;
        }
        self.view()?.project(id)?.ok_or_else(|| not_found(Kind::Project, id))
    }

    pub async fn create_project(&self, auth: &Auth, new: NewProject) -> Result<Project> {
        auth.require_admin("identity:create_project")?;
        let p = Project {
            id: model::new_id(),
            name: new.name,
            domain_id: self.domain_id(&new.domain)?,
            description: new.description,
            enabled: new.enabled,
            tags: new.tags,
        };
        self.propose(Command::Identity(IdentityCommand::CreateProject(p.clone()))).await?;
        Ok(p)
    }

    pub async fn update_project(&self, auth: &Auth, id: &str, patch: ProjectPatch) -> Result<Project> {
        auth.require_admin("identity:update_project")?;
        self.propose(Command::Identity(IdentityCommand::UpdateProject { id: id.into(), patch })).await?;
        self.view()?.project(id)?.ok_or_else(|| not_found(Kind::Project, id))
    }

    pub async fn delete_project(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_project")?;
        self.propose(Command::Identity(IdentityCommand::DeleteProject { id: id.into() })).await
    }

    // ---- users

    pub fn list_users(&self, auth: &Auth) -> Result<Vec<User>> {
        auth.require_reader("identity:list_users")?;
        Ok(self.view()?.users()?)
    }

    pub fn get_user(&self, auth: &Auth, id: &str) -> Result<User> {
        if id != auth.user.id {
            auth.require_reader("identity:get_user")?;
        }
        self.view()?.user(id)?.ok_or_else(|| not_found(Kind::User, id))
    }

    pub async fn create_user(&self, auth: &Auth, new: NewUser) -> Result<User> {
        auth.require_admin("identity:create_user")?;
        let domain_id = self.domain_id(&new.domain)?;
        if let Some(p) = &new.default_project_id {
            self.view()?.project(p)?.ok_or_else(|| not_found(Kind::Project, p))?;
        }
        let password_hash = match new.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let u = User {
            id: model::new_id(),
            name: new.name,
            domain_id,
            enabled: new.enabled,
            password_hash,
            default_project_id: new.default_project_id,
            email: new.email,
            description: new.description,
            extra: new.extra,
        };
        self.propose(Command::Identity(IdentityCommand::CreateUser(u.clone()))).await?;
        Ok(u)
    }

    pub async fn update_user(&self, auth: &Auth, id: &str, change: UserChange) -> Result<User> {
        auth.require_admin("identity:update_user")?;
        let password_hash = match change.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let patch = UserPatch {
            name: change.name,
            enabled: change.enabled,
            password_hash,
            default_project_id: change.default_project_id,
            email: change.email,
            description: change.description,
            extra: change.extra,
        };
        self.propose(Command::Identity(IdentityCommand::UpdateUser { id: id.into(), patch })).await?;
        self.view()?.user(id)?.ok_or_else(|| not_found(Kind::User, id))
    }

    /// A user changes their own password by proving the old one (`POST
    /// /v3/users/{id}/password`, which Keystone serves without a token). An unknown user and a
    /// wrong password get the same answer, after the same work.
    pub async fn change_password(&self, id: &str, original: String, new: String) -> Result<()> {
        let user = self.view()?.user(id)?;
        let phc =
            user.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| password::DECOY_HASH.to_owned());
        let ok = off_thread(move || password::verify(&original, &phc)).await?;
        if !ok || !user.is_some_and(|u| u.enabled) {
            return Err(IdentityError::Unauthorized);
        }
        let patch = UserPatch { password_hash: Some(hash_password(new).await?), ..UserPatch::default() };
        self.propose(Command::Identity(IdentityCommand::UpdateUser { id: id.into(), patch })).await
    }

    pub async fn delete_user(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_user")?;
        self.propose(Command::Identity(IdentityCommand::DeleteUser { id: id.into() })).await
    }

    // ---- roles and assignments

    pub fn list_roles(&self, auth: &Auth) -> Result<Vec<Role>> {
        auth.require_reader("identity:list_roles")?;
        Ok(self.view()?.roles()?)
    }

    pub fn get_role(&self, auth: &Auth, id: &str) -> Result<Role> {
        auth.require_reader("identity:get_role")?;
        self.view()?.role(id)?.ok_or_else(|| not_found(Kind::Role, id))
    }

    pub async fn create_role(&self, auth: &Auth, name: Name) -> Result<Role> {
        auth.require_admin("identity:create_role")?;
        let r = Role { id: model::new_id(), name };
        self.propose(Command::Identity(IdentityCommand::CreateRole(r.clone()))).await?;
        Ok(r)
    }

    pub async fn update_role(&self, auth: &Auth, id: &str, name: Name) -> Result<Role> {
        auth.require_admin("identity:update_role")?;
        self.propose(Command::Identity(IdentityCommand::UpdateRole { id: id.into(), name })).await?;
        self.view()?.role(id)?.ok_or_else(|| not_found(Kind::Role, id))
    }

    pub async fn delete_role(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_role")?;
        self.propose(Command::Identity(IdentityCommand::DeleteRole { id: id.into() })).await
    }
}
