//! Tokens: login (password, token, application credential; unscoped or scoped to a project,
//! a domain or the system), validation and revocation, and what a token may scope to
//! (`/v3/auth/{projects,domains,system,catalog}`).

use super::super::http::{empty, json, query_pairs};
use super::{body, catalog, iso, Api, ApiError, Body, Ctx};
use crate::identity::app_creds::AppCredRef;
use crate::identity::{Auth, Ref, Scope};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

#[derive(Deserialize)]
struct AuthRequest {
    auth: AuthBody,
}
#[derive(Deserialize)]
struct AuthBody {
    identity: IdentityBody,
    #[serde(default)]
    scope: Option<ScopeBody>,
}
#[derive(Deserialize)]
struct IdentityBody {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordBody>,
    #[serde(default)]
    token: Option<TokenBody>,
    #[serde(default)]
    application_credential: Option<AppCredBody>,
}
#[derive(Deserialize)]
struct PasswordBody {
    user: UserRefBody,
}
#[derive(Deserialize)]
struct TokenBody {
    id: String,
}
/// A user or project by id, or by name with its domain.
#[derive(Deserialize)]
struct RefBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRefBody>,
}
#[derive(Deserialize)]
struct UserRefBody {
    #[serde(flatten)]
    user: RefBody,
    #[serde(default)]
    password: Option<String>,
}
#[derive(Deserialize)]
struct AppCredBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user: Option<UserRefBody>,
    secret: String,
}
#[derive(Deserialize)]
struct DomainRefBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}
#[derive(Deserialize)]
struct ScopeBody {
    #[serde(default)]
    project: Option<RefBody>,
    #[serde(default)]
    domain: Option<DomainRefBody>,
    #[serde(default)]
    system: Option<SystemBody>,
}
#[derive(Deserialize)]
struct SystemBody {
    #[serde(default)]
    all: bool,
}

fn domain_of(d: DomainRefBody) -> Result<String, ApiError> {
    d.id.or(d.name).ok_or_else(|| ApiError::BadRequest("A domain needs an id or a name.".into()))
}

fn to_ref(r: RefBody, what: &str) -> Result<Ref, ApiError> {
    let RefBody { id, name, domain } = r;
    match (id, name) {
        (Some(id), _) => Ok(Ref::Id(id)),
        (None, Some(name)) => {
            let d = domain.ok_or_else(|| ApiError::BadRequest(format!("{what} name given without a domain")))?;
            Ok(Ref::Name { name, domain: domain_of(d)? })
        }
        (None, None) => Err(ApiError::BadRequest(format!("{what} needs an id or a name"))),
    }
}

fn scope_of(s: Option<ScopeBody>) -> Result<Scope, ApiError> {
    Ok(match s {
        None | Some(ScopeBody { project: None, domain: None, system: None }) => Scope::Unscoped,
        Some(ScopeBody { project: Some(p), domain: None, system: None }) => Scope::Project(to_ref(p, "project")?),
        Some(ScopeBody { project: None, domain: Some(d), system: None }) => Scope::Domain(domain_of(d)?),
        Some(ScopeBody { project: None, domain: None, system: Some(SystemBody { all: true }) }) => Scope::System,
        Some(_) => return Err(ApiError::BadRequest("A token is scoped to one project, domain or the system.".into())),
    })
}

/// A token's body as Keystone answers it.
fn token_json(ctx: &Ctx, auth: &Auth, methods: &[String], with_catalog: bool) -> Value {
    let a = auth;
    let mut t = json!({
        "methods": methods,
        "user": {"id": a.user.id, "name": a.user.name, "domain": {"id": a.domains.user.id, "name": a.domains.user.name},
                 "password_expires_at": null},
        "audit_ids": [a.claims.audit_id],
        "issued_at": iso(a.claims.issued_at),
        "expires_at": iso(a.claims.expires_at),
    });
    if a.target().is_none() {
        return json!({ "token": t });
    }
    if let Some(p) = &a.project {
        let d = a.domains.project.as_ref().map(|d| json!({"id": d.id, "name": d.name}));
        t["project"] = json!({"id": p.id, "name": p.name, "domain": d});
        t["is_domain"] = json!(false);
    }
    if let Some(d) = &a.domain {
        t["domain"] = json!({"id": d.id, "name": d.name});
    }
    if a.claims.system {
        t["system"] = json!({"all": true});
    }
    t["roles"] = Value::Array(a.roles.iter().map(|r| json!({"id": r.id, "name": r.name})).collect());
    if let Some(c) = &a.app_cred {
        t["application_credential"] = json!({"id": c.id, "name": c.name, "restricted": !c.unrestricted});
    }
    if with_catalog {
        t["catalog"] = catalog(&ctx.base, a.project.as_ref().map(|p| p.id.as_str()));
    }
    json!({ "token": t })
}

/// The token's methods (tokens made before they were recorded say `password`).
fn methods_of(a: &Auth) -> Vec<String> {
    if a.claims.methods.is_empty() {
        vec!["password".to_owned()]
    } else {
        a.claims.methods.clone()
    }
}

/// `/v3/auth/tokens`: login (no token needed), validate, check, revoke.
pub(super) async fn tokens(
    api: &Api,
    req: Request<Incoming>,
    base: &str,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let nocatalog = query_pairs(req.uri().query()).iter().any(|(k, _)| k == "nocatalog");
    if method == Method::POST {
        let b: AuthRequest = body(req).await?;
        return login(api, b.auth, base, peer, !nocatalog).await;
    }
    let auth = super::super::authenticate(api, &req)?;
    let subject = req
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("The X-Subject-Token header is required.".into()))?;
    let ctx = Ctx { api, auth, base: base.to_owned(), query: Vec::new() };
    match method {
        Method::GET => {
            let target = api.identity.check_token(&ctx.auth, subject)?;
            let mut resp = json(StatusCode::OK, &token_json(&ctx, &target, &methods_of(&target), !nocatalog));
            if let Ok(v) = HeaderValue::from_str(subject) {
                resp.headers_mut().insert("x-subject-token", v);
            }
            Ok(resp)
        }
        Method::HEAD => {
            api.identity.check_token(&ctx.auth, subject)?;
            Ok(empty(StatusCode::OK))
        }
        Method::DELETE => {
            api.identity.revoke_token(&ctx.auth, subject).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(super::super::not_allowed(&method)),
    }
}

async fn login(
    api: &Api,
    body: AuthBody,
    base: &str,
    peer: SocketAddr,
    with_catalog: bool,
) -> Result<Response<Body>, ApiError> {
    let scope = scope_of(body.scope)?;
    let id = body.identity;
    let methods = id.methods;
    let failed = |what: &str| log::warn!("{what} authentication failed from {peer}");
    let result = match (methods.as_slice(), id.password, id.token, id.application_credential) {
        ([m], Some(p), _, _) if m == "password" => {
            let UserRefBody { user: u, password } = p.user;
            let who = u.name.clone().or(u.id.clone()).unwrap_or_default();
            let password = password.ok_or_else(|| ApiError::BadRequest("'password' is required.".into()))?;
            let user = to_ref(u, "user")?;
            let r = api.identity.login_password(&user, password, &scope).await;
            if r.is_err() {
                log::warn!("authentication failed for user {who:?} from {peer}");
            }
            r
        }
        ([m], _, Some(t), _) if m == "token" => {
            api.identity.login_token(&t.id, &scope).inspect_err(|_| failed("token"))
        }
        ([m], _, _, Some(c)) if m == "application_credential" => {
            let r = match (c.id, c.name, c.user) {
                (Some(id), _, _) => AppCredRef::Id(id),
                (None, Some(name), Some(u)) => AppCredRef::Name { name, user: to_ref(u.user, "user")? },
                _ => {
                    return Err(ApiError::BadRequest(
                        "An application credential needs an id, or a name and its user.".into(),
                    ))
                }
            };
            api.identity.login_app_credential(&r, c.secret).await.inspect_err(|_| failed("application credential"))
        }
        ([m], None, None, None) if matches!(m.as_str(), "password" | "token" | "application_credential") => {
            return Err(ApiError::BadRequest(format!("The '{m}' method needs its '{m}' object.")))
        }
        ([], _, _, _) => return Err(ApiError::BadRequest("'methods' must name one authentication method.".into())),
        _ => {
            log::warn!("authentication with unsupported method(s) {methods:?} from {peer}");
            return Err(ApiError::Unauthorized);
        }
    };
    let (token, auth) = result?;
    let ctx = Ctx { api, auth: std::sync::Arc::new(auth), base: base.to_owned(), query: Vec::new() };
    let mut resp = json(StatusCode::CREATED, &token_json(&ctx, &ctx.auth, &methods_of(&ctx.auth), with_catalog));
    let v = HeaderValue::from_str(&token).map_err(|e| ApiError::Internal(Box::new(e)))?;
    resp.headers_mut().insert("x-subject-token", v);
    Ok(resp)
}

/// `/v3/auth/…`: what the caller's token may scope to, and its catalog.
pub(super) fn route(ctx: &Ctx, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(super::super::not_allowed(req.method()));
    }
    let id = &ctx.api.identity;
    match segs {
        ["projects"] => {
            let ps = id.user_projects(&ctx.auth, &ctx.auth.user.id)?;
            Ok(ctx.list(
                "projects",
                ps.iter().map(|p| super::projects::project_json(ctx, p)).collect(),
                "auth/projects",
            ))
        }
        ["domains"] => {
            let ds = id.user_domains(&ctx.auth)?;
            Ok(ctx.list("domains", ds.iter().map(|d| super::domains::domain_json(ctx, d)).collect(), "auth/domains"))
        }
        ["system"] => {
            let system: Vec<Value> = if id.holds_system(&ctx.auth)? { vec![json!({"all": true})] } else { vec![] };
            Ok(json(StatusCode::OK, &json!({"system": system, "links": {"self": ctx.link("auth/system")}})))
        }
        ["catalog"] => Ok(json(
            StatusCode::OK,
            &json!({"catalog": catalog(&ctx.base, ctx.auth.project.as_ref().map(|p| p.id.as_str()))}),
        )),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/auth/{}", segs.join("/")))),
    }
}
