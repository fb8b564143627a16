//! Keystone's logic: password login, signed tokens, validation and revocation, and the
//! identity resources (projects, users, roles, assignments) with who may do what.
//!
//! Authorization follows Keystone's default policy in its simplest form: the `admin` role on
//! the token's project or on the system may do everything (on a domain it is no cloud admin); a system-scoped
//! token with any role may read every identity resource (Keystone's system reader); any token
//! may read its own user, its own projects and the project it is scoped to; everything else
//! is 403.
//!
//! Limitations: no trusts, no implied or domain-specific roles, no inherited grants
//! (OS-INHERIT), no access rules on application credentials.

mod accounts;
pub mod app_creds;
mod domains;
pub mod grants;
pub mod password;
pub mod token;

use crate::model::identity::{AppCredential, Domain, Target};
use crate::model::{self, ModelError, Name, Project, Role, User};
use crate::state::raft::Replicated;
use crate::state::IdentityCommand;
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
            Refusal::Invalid(m) => IdentityError::BadRequest(m),
            r @ (Refusal::AlreadyBootstrapped
            | Refusal::Conflicts(_)
            | Refusal::Exhausted(_)
            | Refusal::OverQuota(_)
            | Refusal::Stale(_)) => IdentityError::Internal(Box::new(r)),
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
    /// A domain by id or name.
    Domain(String),
    System,
}

/// How a login proved who it is.
enum Origin {
    Password,
    /// Another token, whose methods and expiry carry over.
    Token(Claims),
    AppCredential(AppCredential),
}

/// A validated token: who, on what, with which roles.
#[derive(Clone, Debug)]
pub struct Auth {
    pub claims: Claims,
    pub user: User,
    pub project: Option<Project>,
    pub domain: Option<Domain>,
    pub roles: Vec<Role>,
    /// The application credential the token was issued for.
    pub app_cred: Option<AppCredential>,
    /// The domains of the user and of the project, as validated (tokens show their names).
    pub domains: Domains,
}

/// The domains a token's user and project are in.
#[derive(Clone, Debug)]
pub struct Domains {
    pub user: Domain,
    pub project: Option<Domain>,
}

impl Auth {
    /// The `admin` role on the token's project or on the system. A domain's admin is not the
    /// cloud's: that role reaches no further than reading its domain.
    pub fn is_admin(&self) -> bool {
        self.claims.domain_id.is_none() && self.roles.iter().any(|r| r.name.as_str() == "admin")
    }

    /// A system-scoped token may read every identity resource, as Keystone's system reader.
    fn is_reader(&self) -> bool {
        self.is_admin() || (self.claims.system && !self.roles.is_empty())
    }

    fn require_admin(&self, action: &'static str) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(IdentityError::Forbidden(action))
        }
    }

    fn require_reader(&self, action: &'static str) -> Result<()> {
        if self.is_reader() {
            Ok(())
        } else {
            Err(IdentityError::Forbidden(action))
        }
    }

    /// What the token is scoped to, if anything.
    pub fn target(&self) -> Option<Target> {
        target_of(&self.claims)
    }
}

fn target_of(c: &Claims) -> Option<Target> {
    match (&c.project_id, &c.domain_id, c.system) {
        (Some(p), _, _) => Some(Target::Project(p.clone())),
        (None, Some(d), _) => Some(Target::Domain(d.clone())),
        (None, None, true) => Some(Target::System),
        (None, None, false) => None,
    }
}

/// A new project as the API received it, validated.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: Name,
    pub domain: String,
    pub description: String,
    pub enabled: bool,
    pub tags: Vec<String>,
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
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
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
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
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
    validated: std::sync::Mutex<std::collections::HashMap<String, (u64, std::sync::Arc<Auth>)>>,
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
            tags: Vec::new(),
            id: model::new_id(),
            name: Name::new("name", "admin")?,
            domain_id: model::DEFAULT_DOMAIN_ID.into(),
            description: "Bootstrap project for the cloud's administrators".into(),
            enabled: true,
        };
        let user = User {
            extra: Default::default(),
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
        self.propose(Command::Identity(IdentityCommand::Bootstrap { project, user, roles })).await
    }

    /// The id of a domain named by id or name, which must exist.
    fn domain_id(&self, id_or_name: &str) -> Result<String> {
        match self.view()?.resolve_domain(id_or_name)? {
            Some(d) => Ok(d.id),
            None => Err(not_found(Kind::Domain, id_or_name)),
        }
    }

    /// A user or project name's domain, for login: an unknown or disabled one fails the login.
    fn login_domain(&self, domain: &str) -> Result<String> {
        match self.view()?.resolve_domain(domain)? {
            Some(d) if d.enabled => Ok(d.id),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    fn find_user(&self, r: &Ref) -> Result<Option<User>> {
        Ok(match r {
            Ref::Id(id) => self.view()?.user(id)?,
            Ref::Name { name, domain } => self.view()?.user_by_name(&self.login_domain(domain)?, name)?,
        })
    }

    fn find_project(&self, r: &Ref) -> Result<Option<Project>> {
        Ok(match r {
            Ref::Id(id) => self.view()?.project(id)?,
            Ref::Name { name, domain } => self.view()?.project_by_name(&self.login_domain(domain)?, name)?,
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
            Some(u) if ok && u.enabled => self.issue(u, scope, Origin::Password),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    /// Token login: a new token for the same user, possibly with another scope, expiring with
    /// the old one. A token of an application credential makes only tokens of the same one.
    pub fn login_token(&self, token: &str, scope: &Scope) -> Result<(String, Auth)> {
        let auth = self.validate(token)?;
        let user = auth.user.clone();
        match &auth.app_cred {
            Some(c) => {
                let scope = Scope::Project(Ref::Id(c.project_id.clone()));
                self.issue(user, &scope, Origin::AppCredential(c.clone()))
            }
            None => self.issue(user, scope, Origin::Token(auth.claims.clone())),
        }
    }

    fn issue(&self, user: User, scope: &Scope, origin: Origin) -> Result<(String, Auth)> {
        let mut claims = Claims { user_id: user.id.clone(), audit_id: token::new_audit_id(), ..Claims::default() };
        match scope {
            // Without a scope, a user's default project is the scope when it can be (Keystone's rule).
            Scope::Unscoped => claims.project_id = self.default_scope(&user)?,
            Scope::Project(r) => claims.project_id = Some(self.find_project(r)?.ok_or(IdentityError::Unauthorized)?.id),
            Scope::Domain(d) => claims.domain_id = Some(self.login_domain(d)?),
            Scope::System => claims.system = true,
        }
        let now = now();
        claims.issued_at = now;
        claims.expires_at = now + self.ttl_secs;
        claims.methods = match origin {
            Origin::Password => vec!["password".into()],
            Origin::Token(old) => {
                claims.expires_at = claims.expires_at.min(old.expires_at);
                let mut m = old.methods;
                m.push("token".into());
                m.dedup();
                m
            }
            Origin::AppCredential(ref c) => {
                claims.app_cred = Some(c.id.clone());
                claims.expires_at =
                    c.expires_at_us.map_or(claims.expires_at, |e| (e / 1_000_000).min(claims.expires_at));
                vec!["application_credential".into()]
            }
        };
        let auth = Self::resolve(&self.view()?, claims, Some(user))?;
        let token = self.signer.sign(&auth.claims);
        Ok((token, auth))
    }

    /// The user's default project, when it exists, is enabled and the user holds a role there.
    fn default_scope(&self, user: &User) -> Result<Option<String>> {
        let Some(pid) = &user.default_project_id else { return Ok(None) };
        let view = self.view()?;
        let usable = view.project(pid)?.is_some_and(|p| p.enabled)
            && !view.roles_on(&user.id, &Target::Project(pid.clone()))?.is_empty();
        Ok(usable.then(|| pid.clone()))
    }

    /// Checks a token: signature, expiry, revocation, and that its user, project and roles
    /// still hold.
    pub fn validate(&self, token: &str) -> Result<std::sync::Arc<Auth>> {
        let claims = self.verify(token)?;
        // Read before the tables: a change committed meanwhile moves the epoch past this one.
        let epoch = self.state.store().auth_epoch();
        let cache = || self.validated.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((e, auth)) = cache().get(token) {
            if *e == epoch {
                return Ok(auth.clone());
            }
        }
        let auth = std::sync::Arc::new(self.check_claims(claims)?);
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
        let enabled_domain =
            |id: &str| -> Result<Domain> { view.domain(id)?.filter(|d| d.enabled).ok_or(IdentityError::Unauthorized) };
        if !user.enabled {
            return Err(IdentityError::Unauthorized);
        }
        let user_domain = enabled_domain(&user.domain_id)?;
        let (project, project_domain) = match &claims.project_id {
            Some(pid) => {
                let p = view.project(pid)?.filter(|p| p.enabled).ok_or(IdentityError::Unauthorized)?;
                let d = enabled_domain(&p.domain_id)?;
                (Some(p), Some(d))
            }
            None => (None, None),
        };
        let domains = Domains { user: user_domain, project: project_domain };
        let domain = claims.domain_id.as_deref().map(enabled_domain).transpose()?;
        let app_cred = claims.app_cred.as_deref().map(|id| Self::app_cred_of(view, id, &user, &claims)).transpose()?;
        let Some(target) = target_of(&claims) else {
            return Ok(Auth { claims, user, project, domain, roles: Vec::new(), app_cred, domains });
        };
        let mut held = view.roles_on(&user.id, &target)?;
        if let Some(c) = &app_cred {
            // Its roles, each still held by its user, or nothing.
            if !c.role_ids.iter().all(|r| held.contains(r)) {
                return Err(IdentityError::Unauthorized);
            }
            held.clone_from(&c.role_ids);
        }
        let mut roles = Vec::new();
        for rid in held {
            if let Some(r) = view.role(&rid)? {
                roles.push(r);
            }
        }
        if roles.is_empty() {
            return Err(IdentityError::Unauthorized);
        }
        Ok(Auth { claims, user, project, domain, roles, app_cred, domains })
    }

    /// Validates `subject` on behalf of `auth`: one's own token, or any token for an admin.
    pub fn check_token(&self, auth: &std::sync::Arc<Auth>, subject: &str) -> Result<std::sync::Arc<Auth>> {
        let target = match self.verify(subject) {
            // The caller's own token, validated a moment ago.
            Ok(claims) if claims == auth.claims => return Ok(auth.clone()),
            Ok(_) => self.validate(subject),
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

    pub async fn revoke_token(&self, auth: &std::sync::Arc<Auth>, subject: &str) -> Result<()> {
        let target = self.check_token(auth, subject)?;
        self.propose(Command::Identity(IdentityCommand::RevokeToken {
            audit_id: target.claims.audit_id.clone(),
            expires_at: target.claims.expires_at,
            now: now(),
        }))
        .await
    }
}

fn not_found(kind: Kind, id: &str) -> IdentityError {
    IdentityError::NotFound { kind, id: id.to_owned() }
}
