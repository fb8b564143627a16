//! Application credentials: a user's secret for one project and some of the roles held there,
//! so tools (Terraform, Ansible, CI) log in without the user's password. The secret is shown
//! once, at creation; only its argon2 hash is kept.

use super::{hash_password, not_found, now, off_thread, password, Auth, Identity, IdentityError, Ref, Result, Scope};
use crate::model::identity::AppCredential;
use crate::model::{self, Name, User};
use crate::state::IdentityCommand;
use crate::state::{Command, Kind, View};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

/// A role of a new credential, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRef {
    Id(String),
    Name(String),
}

/// A new application credential as the API received it.
#[derive(Clone, Debug)]
pub struct NewAppCredential {
    pub name: Name,
    pub description: String,
    /// The caller's own secret; one is made when absent.
    pub secret: Option<String>,
    /// Unix microseconds.
    pub expires_at_us: Option<u64>,
    /// The roles it carries; all of the token's when absent or empty.
    pub roles: Option<Vec<RoleRef>>,
    pub unrestricted: bool,
}

/// An application credential named at login: by id, or by name with its user.
#[derive(Clone, Debug)]
pub enum AppCredRef {
    Id(String),
    Name { name: String, user: Ref },
}

impl Identity {
    /// Makes a credential for the caller's own user on the token's project; returns it with
    /// its secret (shown this once).
    pub async fn create_app_credential(
        &self,
        auth: &Auth,
        user_id: &str,
        new: NewAppCredential,
    ) -> Result<(AppCredential, String)> {
        if user_id != auth.user.id {
            return Err(IdentityError::Forbidden("identity:create_application_credential"));
        }
        if auth.app_cred.as_ref().is_some_and(|c| !c.unrestricted) {
            return Err(IdentityError::Forbidden("a restricted application credential cannot make another"));
        }
        let project = auth.project.as_ref().ok_or_else(|| {
            IdentityError::BadRequest("An application credential is made with a project-scoped token.".into())
        })?;
        if new.expires_at_us.is_some_and(|e| e <= now_us()) {
            return Err(IdentityError::BadRequest("'expires_at' is in the past.".into()));
        }
        // No roles named (absent or an empty list, as the openstack client sends): all the
        // token's, as Keystone does.
        let role_ids = match new.roles.as_deref() {
            None | Some([]) => auth.roles.iter().map(|r| r.id.clone()).collect(),
            Some(refs) => refs.iter().map(|r| held_role(auth, r)).collect::<Result<Vec<_>>>()?,
        };
        let secret = new.secret.clone().unwrap_or_else(|| B64.encode(rand::random::<[u8; 32]>()));
        if secret.is_empty() {
            return Err(IdentityError::BadRequest("'secret' must not be empty.".into()));
        }
        let c = AppCredential {
            id: model::new_id(),
            user_id: user_id.into(),
            name: new.name,
            description: new.description,
            secret_hash: hash_password(secret.clone()).await?,
            project_id: project.id.clone(),
            role_ids,
            expires_at_us: new.expires_at_us,
            unrestricted: new.unrestricted,
        };
        self.propose(Command::Identity(IdentityCommand::CreateAppCredential(c.clone()))).await?;
        Ok((c, secret))
    }

    fn check_owner(auth: &Auth, user_id: &str, action: &'static str) -> Result<()> {
        if user_id == auth.user.id {
            Ok(())
        } else {
            auth.require_reader(action)
        }
    }

    pub fn list_app_credentials(&self, auth: &Auth, user_id: &str) -> Result<Vec<AppCredential>> {
        Self::check_owner(auth, user_id, "identity:list_application_credentials")?;
        Ok(self.view()?.app_credentials(user_id)?)
    }

    pub fn get_app_credential(&self, auth: &Auth, user_id: &str, id: &str) -> Result<AppCredential> {
        Self::check_owner(auth, user_id, "identity:get_application_credential")?;
        let c = self.view()?.app_credential(id)?.filter(|c| c.user_id == user_id);
        c.ok_or_else(|| not_found(Kind::ApplicationCredential, id))
    }

    pub async fn delete_app_credential(&self, auth: &Auth, user_id: &str, id: &str) -> Result<()> {
        if user_id != auth.user.id {
            auth.require_admin("identity:delete_application_credential")?;
        }
        self.get_app_credential(auth, user_id, id)?;
        self.propose(Command::Identity(IdentityCommand::DeleteAppCredential { id: id.into() })).await
    }

    /// Login with an application credential's secret: a token on its project with its roles.
    /// Unknown, expired and wrong all get the same answer, after the same work.
    pub async fn login_app_credential(&self, r: &AppCredRef, secret: String) -> Result<(String, Auth)> {
        let found = match r {
            AppCredRef::Id(id) => self.view()?.app_credential(id)?,
            AppCredRef::Name { name, user } => match self.find_user(user)? {
                Some(u) => self.view()?.app_credential_by_name(&u.id, name)?,
                None => None,
            },
        };
        let phc = found.as_ref().map_or_else(|| password::DECOY_HASH.to_owned(), |c| c.secret_hash.clone());
        let ok = off_thread(move || password::verify(&secret, &phc)).await?;
        let c =
            found.filter(|c| ok && c.expires_at_us.is_none_or(|e| e > now_us())).ok_or(IdentityError::Unauthorized)?;
        let user = self.view()?.user(&c.user_id)?.filter(|u| u.enabled).ok_or(IdentityError::Unauthorized)?;
        self.issue(user, &Scope::Project(Ref::Id(c.project_id.clone())), super::Origin::AppCredential(c))
    }

    /// The credential a token names, still there and still its user's.
    pub(super) fn app_cred_of(view: &View, id: &str, user: &User, claims: &super::Claims) -> Result<AppCredential> {
        let c = view.app_credential(id)?.filter(|c| c.user_id == user.id);
        let c = c.ok_or(IdentityError::Unauthorized)?;
        if claims.project_id.as_deref() != Some(c.project_id.as_str()) {
            return Err(IdentityError::Unauthorized);
        }
        Ok(c)
    }
}

fn now_us() -> u64 {
    now().saturating_mul(1_000_000)
}

/// A role the token holds, named by id or name.
fn held_role(auth: &Auth, r: &RoleRef) -> Result<String> {
    let found = auth.roles.iter().find(|x| match r {
        RoleRef::Id(id) => &x.id == id,
        RoleRef::Name(n) => x.name.as_str() == n,
    });
    found.map(|x| x.id.clone()).ok_or_else(|| {
        let what = match r {
            RoleRef::Id(s) | RoleRef::Name(s) => s,
        };
        IdentityError::BadRequest(format!("Role {what} is not held on the token's project."))
    })
}
