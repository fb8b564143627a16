//! Keystone's logic: password login, signed tokens, validation and revocation, and the
//! identity resources (projects, users, roles, assignments) with who may do what.
//!
//! Authorization follows Keystone's default policy in its simplest form: the `admin` role on
//! the token's project may do everything; any token may read its own user, its own projects
//! and the project it is scoped to; everything else is 403.
//!
//! Limitations: one domain (`default`); no groups, no domain- or system-scoped tokens, no
//! application credentials, no trusts.

pub mod password;
pub mod token;

use crate::model::{self, Assignment, ModelError, Name, Project, ProjectPatch, Role, User, UserPatch};
use crate::state::raft::Replicated;
use crate::state::{Command, Kind, Refusal, StateError, View};
use std::time::{SystemTime, UNIX_EPOCH};
use token::{Claims, TokenError, TokenSigner};

/// Errors of identity operations; the API maps each to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("The request you have made requires authentication.")]
    Unauthorized,
    #[error("You are not authorized to perform the requested action: {0}.")]
    Forbidden(&'static str),
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: Kind, id: String },
    #[error("Conflict occurred attempting to store {kind} - duplicate entry found with name {name}.")]
    Conflict { kind: Kind, name: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for IdentityError {
    fn from(e: StateError) -> Self {
        IdentityError::Internal(Box::new(e))
    }
}

impl From<ModelError> for IdentityError {
    fn from(e: ModelError) -> Self {
        IdentityError::BadRequest(e.to_string())
    }
}

impl From<Refusal> for IdentityError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict { kind, name } => IdentityError::Conflict { kind, name },
            Refusal::NotFound { kind, id } => IdentityError::NotFound { kind, id },
            // Not refusals of identity commands.
            r @ (Refusal::AlreadyBootstrapped
            | Refusal::Invalid(_)
            | Refusal::Conflicts(_)
            | Refusal::Exhausted(_)
            | Refusal::OverQuota(_)) => IdentityError::Internal(Box::new(r)),
        }
    }
}

type Result<T> = std::result::Result<T, IdentityError>;

/// A user or project named by id, or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref {
    Id(String),
    Name { name: String, domain: String },
}

/// The scope a login asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Unscoped,
    Project(Ref),
}

/// A validated token: who, on what, with which roles.
#[derive(Clone, Debug)]
pub struct Auth {
    pub claims: Claims,
    pub user: User,
    pub project: Option<Project>,
    pub roles: Vec<Role>,
}

impl Auth {
    pub fn is_admin(&self) -> bool {
        self.project.is_some() && self.roles.iter().any(|r| r.name.as_str() == "admin")
    }

    fn require_admin(&self, action: &'static str) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(IdentityError::Forbidden(action))
        }
    }
}

/// A new project as the API received it, validated.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: Name,
    pub domain: String,
    pub description: String,
    pub enabled: bool,
}

/// A new user as the API received it, validated.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub name: Name,
    pub domain: String,
    pub password: Option<String>,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: String,
}

/// Requested changes to a user; the password is still in clear here and hashed before logging.
#[derive(Clone, Debug, Default)]
pub struct UserChange {
    pub name: Option<Name>,
    pub enabled: Option<bool>,
    pub password: Option<String>,
    pub default_project_id: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub description: Option<String>,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The identity service over the replicated state.
pub struct Identity {
    state: Replicated,
    signer: TokenSigner,
    ttl_secs: u64,
    /// Tokens validated under an identity epoch ([`crate::state::Store::auth_epoch`]): reused
    /// while the epoch is unchanged (any committed change to users, projects, roles, role
    /// assignments or revocations moves it), after the signature and expiry are checked anew.
    validated: std::sync::Mutex<std::collections::HashMap<String, (u64, Auth)>>,
}

/// Validated tokens kept at most; past it the cache starts over.
const VALIDATED_MAX: usize = 4096;

/// At most this many argon2 computations run at once (one per CPU): each takes 19 MiB and a
/// core for tens of milliseconds, so more in parallel only adds memory and latency.
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS
        .get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)))
}

/// Runs password hashing or verification off the async threads, bounded by [`hash_slots`].
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _slot = hash_slots().acquire().await.map_err(|e| IdentityError::Internal(Box::new(e)))?;
    tokio::task::spawn_blocking(f).await.map_err(|e| IdentityError::Internal(Box::new(e)))
}

async fn hash_password(password: String) -> Result<String> {
    off_thread(move || password::hash(&password)).await?.map_err(|e| IdentityError::Internal(Box::new(e)))
}

impl Identity {
    pub fn new(state: Replicated, key: &[u8; token::KEY_LEN], ttl_secs: u64) -> Self {
        Self { state, signer: TokenSigner::new(key), ttl_secs, validated: Default::default() }
    }

    /// A consistent read view of the state.
    pub fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    /// First start: creates the admin project and user and the built-in roles, once.
    pub async fn bootstrap(&self, admin_password: String) -> Result<()> {
        if self.view()?.is_bootstrapped()? {
            return Ok(());
        }
        let hash = hash_password(admin_password).await?;
        let project = Project {
            id: model::new_id(),
            name: Name::new("name", "admin")?,
            domain_id: model::DEFAULT_DOMAIN_ID.into(),
            description: "Bootstrap project for the cloud's administrators".into(),
            enabled: true,
        };
        let user = User {
            id: model::new_id(),
            name: Name::new("name", "admin")?,
            domain_id: model::DEFAULT_DOMAIN_ID.into(),
            enabled: true,
            password_hash: Some(hash),
            default_project_id: Some(project.id.clone()),
            email: None,
            description: String::new(),
        };
        let roles = model::BUILTIN_ROLES
            .iter()
            .map(|n| Ok(Role { id: model::new_id(), name: Name::new("name", n)? }))
            .collect::<Result<Vec<_>>>()?;
        self.propose(Command::Bootstrap { project, user, roles }).await
    }

    fn find_user(&self, r: &Ref) -> Result<Option<User>> {
        Ok(match r {
            Ref::Id(id) => self.view()?.user(id)?,
            Ref::Name { name, domain } => {
                model::resolve_domain(domain).map_err(|_| IdentityError::Unauthorized)?;
                self.view()?.user_by_name(name)?
            }
        })
    }

    fn find_project(&self, r: &Ref) -> Result<Option<Project>> {
        Ok(match r {
            Ref::Id(id) => self.view()?.project(id)?,
            Ref::Name { name, domain } => {
                model::resolve_domain(domain).map_err(|_| IdentityError::Unauthorized)?;
                self.view()?.project_by_name(name)?
            }
        })
    }

    /// Password login. An unknown user, a wrong password and a disabled user all get the same
    /// answer, after the same work.
    pub async fn login_password(&self, user: &Ref, password: String, scope: &Scope) -> Result<(String, Auth)> {
        let found = self.find_user(user)?;
        let phc =
            found.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| password::DECOY_HASH.to_owned());
        let ok = off_thread(move || password::verify(&password, &phc)).await?;
        match found {
            Some(u) if ok && u.enabled => self.issue(u, scope),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    /// Token login: a new token for the same user, possibly with another scope.
    pub fn login_token(&self, token: &str, scope: &Scope) -> Result<(String, Auth)> {
        let auth = self.validate(token)?;
        self.issue(auth.user, scope)
    }

    fn issue(&self, user: User, scope: &Scope) -> Result<(String, Auth)> {
        let project_id = match scope {
            Scope::Unscoped => None,
            Scope::Project(r) => {
                let p = self.find_project(r)?.ok_or(IdentityError::Unauthorized)?;
                Some(p.id)
            }
        };
        let now = now();
        let claims = Claims {
            user_id: user.id.clone(),
            project_id,
            issued_at: now,
            expires_at: now + self.ttl_secs,
            audit_id: token::new_audit_id(),
        };
        let auth = Self::resolve(&self.view()?, claims, Some(user))?;
        let token = self.signer.sign(&auth.claims);
        Ok((token, auth))
    }

    /// Checks a token: signature, expiry, revocation, and that its user, project and roles
    /// still hold.
    pub fn validate(&self, token: &str) -> Result<Auth> {
        let claims = self.verify(token)?;
        // Read before the tables: a change committed meanwhile moves the epoch past this one.
        let epoch = self.state.store().auth_epoch();
        let cache = || self.validated.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((e, auth)) = cache().get(token) {
            if *e == epoch {
                return Ok(auth.clone());
            }
        }
        let auth = self.check_claims(claims)?;
        let mut c = cache();
        if c.len() >= VALIDATED_MAX {
            c.clear();
        }
        c.insert(token.to_owned(), (epoch, auth.clone()));
        Ok(auth)
    }

    fn verify(&self, token: &str) -> Result<Claims> {
        self.signer.verify(token, now()).map_err(|e: TokenError| {
            log::debug!("token refused: {e}");
            IdentityError::Unauthorized
        })
    }

    /// Revocation, user, project and roles, all read in one view of the state.
    fn check_claims(&self, claims: Claims) -> Result<Auth> {
        let view = self.view()?;
        if view.is_revoked(&claims.audit_id)? {
            return Err(IdentityError::Unauthorized);
        }
        Self::resolve(&view, claims, None)
    }

    fn resolve(view: &View, claims: Claims, user: Option<User>) -> Result<Auth> {
        let user = match user {
            Some(u) => u,
            None => view.user(&claims.user_id)?.ok_or(IdentityError::Unauthorized)?,
        };
        if !user.enabled {
            return Err(IdentityError::Unauthorized);
        }
        let (project, roles) = match &claims.project_id {
            None => (None, Vec::new()),
            Some(pid) => {
                let p = view.project(pid)?.filter(|p| p.enabled).ok_or(IdentityError::Unauthorized)?;
                let mut roles = Vec::new();
                for rid in view.roles_of(&user.id, pid)? {
                    if let Some(r) = view.role(&rid)? {
                        roles.push(r);
                    }
                }
                if roles.is_empty() {
                    return Err(IdentityError::Unauthorized);
                }
                (Some(p), roles)
            }
        };
        Ok(Auth { claims, user, project, roles })
    }

    /// Validates `subject` on behalf of `auth`: one's own token, or any token for an admin.
    pub fn check_token(&self, auth: &Auth, subject: &str) -> Result<Auth> {
        let target = match self.verify(subject) {
            // The caller's own token, validated a moment ago.
            Ok(claims) if claims == auth.claims => return Ok(auth.clone()),
            Ok(claims) => self.check_claims(claims),
            Err(e) => Err(e),
        };
        let target = target.map_err(|e| match e {
            IdentityError::Unauthorized => IdentityError::NotFound { kind: Kind::Token, id: "(subject token)".into() },
            other => other,
        })?;
        if target.user.id != auth.user.id {
            auth.require_admin("identity:validate_token")?;
        }
        Ok(target)
    }

    pub async fn revoke_token(&self, auth: &Auth, subject: &str) -> Result<()> {
        let target = self.check_token(auth, subject)?;
        self.propose(Command::RevokeToken {
            audit_id: target.claims.audit_id,
            expires_at: target.claims.expires_at,
            now: now(),
        })
        .await
    }

    /// Projects the token's user may use (`/v3/auth/projects`, `/v3/users/{id}/projects`).
    pub fn user_projects(&self, auth: &Auth, user_id: &str) -> Result<Vec<Project>> {
        if user_id != auth.user.id {
            auth.require_admin("identity:list_user_projects")?;
        }
        let mut ids: Vec<String> =
            self.view()?.assignments(Some(user_id), None)?.into_iter().map(|a| a.project_id).collect();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.view()?.project(&id)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    // ---- projects

    pub fn list_projects(&self, auth: &Auth) -> Result<Vec<Project>> {
        auth.require_admin("identity:list_projects")?;
        Ok(self.view()?.projects()?)
    }

    pub fn get_project(&self, auth: &Auth, id: &str) -> Result<Project> {
        if auth.project.as_ref().map(|p| p.id.as_str()) != Some(id) {
            auth.require_admin("identity:get_project")?;
        }
        self.view()?.project(id)?.ok_or_else(|| not_found(Kind::Project, id))
    }

    pub async fn create_project(&self, auth: &Auth, new: NewProject) -> Result<Project> {
        auth.require_admin("identity:create_project")?;
        let p = Project {
            id: model::new_id(),
            name: new.name,
            domain_id: model::resolve_domain(&new.domain)?.into(),
            description: new.description,
            enabled: new.enabled,
        };
        self.propose(Command::CreateProject(p.clone())).await?;
        Ok(p)
    }

    pub async fn update_project(&self, auth: &Auth, id: &str, patch: ProjectPatch) -> Result<Project> {
        auth.require_admin("identity:update_project")?;
        self.propose(Command::UpdateProject { id: id.into(), patch }).await?;
        self.view()?.project(id)?.ok_or_else(|| not_found(Kind::Project, id))
    }

    pub async fn delete_project(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_project")?;
        self.propose(Command::DeleteProject { id: id.into() }).await
    }

    // ---- users

    pub fn list_users(&self, auth: &Auth) -> Result<Vec<User>> {
        auth.require_admin("identity:list_users")?;
        Ok(self.view()?.users()?)
    }

    pub fn get_user(&self, auth: &Auth, id: &str) -> Result<User> {
        if id != auth.user.id {
            auth.require_admin("identity:get_user")?;
        }
        self.view()?.user(id)?.ok_or_else(|| not_found(Kind::User, id))
    }

    pub async fn create_user(&self, auth: &Auth, new: NewUser) -> Result<User> {
        auth.require_admin("identity:create_user")?;
        let domain_id = model::resolve_domain(&new.domain)?.to_owned();
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
        };
        self.propose(Command::CreateUser(u.clone())).await?;
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
        };
        self.propose(Command::UpdateUser { id: id.into(), patch }).await?;
        self.view()?.user(id)?.ok_or_else(|| not_found(Kind::User, id))
    }

    pub async fn delete_user(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_user")?;
        self.propose(Command::DeleteUser { id: id.into() }).await
    }

    // ---- roles and assignments

    pub fn list_roles(&self, auth: &Auth) -> Result<Vec<Role>> {
        auth.require_admin("identity:list_roles")?;
        Ok(self.view()?.roles()?)
    }

    pub fn get_role(&self, auth: &Auth, id: &str) -> Result<Role> {
        auth.require_admin("identity:get_role")?;
        self.view()?.role(id)?.ok_or_else(|| not_found(Kind::Role, id))
    }

    pub async fn create_role(&self, auth: &Auth, name: Name) -> Result<Role> {
        auth.require_admin("identity:create_role")?;
        let r = Role { id: model::new_id(), name };
        self.propose(Command::CreateRole(r.clone())).await?;
        Ok(r)
    }

    pub async fn delete_role(&self, auth: &Auth, id: &str) -> Result<()> {
        auth.require_admin("identity:delete_role")?;
        self.propose(Command::DeleteRole { id: id.into() }).await
    }

    pub async fn grant(&self, auth: &Auth, a: Assignment) -> Result<()> {
        auth.require_admin("identity:create_grant")?;
        self.propose(Command::Grant(a)).await
    }

    pub async fn ungrant(&self, auth: &Auth, a: Assignment) -> Result<()> {
        auth.require_admin("identity:revoke_grant")?;
        self.propose(Command::Ungrant(a)).await
    }

    pub fn check_grant(&self, auth: &Auth, a: &Assignment) -> Result<()> {
        auth.require_admin("identity:check_grant")?;
        if self.view()?.roles_of(&a.user_id, &a.project_id)?.contains(&a.role_id) {
            Ok(())
        } else {
            Err(not_found(Kind::RoleAssignment, &format!("{}/{}/{}", a.project_id, a.user_id, a.role_id)))
        }
    }

    pub fn list_assignments(&self, auth: &Auth, user: Option<&str>, project: Option<&str>) -> Result<Vec<Assignment>> {
        if user != Some(auth.user.id.as_str()) {
            auth.require_admin("identity:list_role_assignments")?;
        }
        Ok(self.view()?.assignments(user, project)?)
    }
}

fn not_found(kind: Kind, id: &str) -> IdentityError {
    IdentityError::NotFound { kind, id: id.to_owned() }
}
