//! Keystone v3 over HTTP (under `/identity`): version discovery, tokens, the catalog, domains,
//! projects, users, roles and role assignments, in Keystone's JSON shapes.

use super::error::ApiError;
use super::http::{self, empty, json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::identity::{Auth, NewProject, NewUser, Ref, Scope, UserChange};
use crate::model::{self, Assignment, Name, Project, ProjectPatch, Role, User, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The Keystone API version announced (what keystoneauth expects of a current cloud).
const VERSION_ID: &str = "v3.14";
const UPDATED: &str = "2020-04-07T00:00:00Z";
/// Region reported in the catalog.
pub const REGION: &str = "RegionOne";

fn iso(secs: u64) -> String {
    super::http::timestamp(secs, true)
}

fn version_json(base: &str) -> Value {
    json!({
        "id": VERSION_ID,
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// The services this agent serves, as a Keystone catalog. Cinder's URL names the project, as
/// Cinder has it (`/volume/v3/{project_id}`); without a project that service is left out.
pub fn catalog(base: &str, project: Option<&str>) -> Value {
    let volume = project.map(|p| format!("/volume/v3/{p}"));
    let mut services: Vec<(&str, &str, String)> = vec![
        ("identity", "keystone", "/identity/v3".into()),
        ("network", "neutron", "/network".into()),
        ("image", "glance", "/image".into()),
        ("compute", "nova", "/compute/v2.1".into()),
    ];
    if let Some(v) = volume {
        services.push(("block-storage", "cinder", v.clone()));
        services.push(("volumev3", "cinderv3", v));
    }
    let entries: Vec<Value> = services
        .iter()
        .map(|(kind, name, path)| {
            let url = format!("{base}{path}");
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|i| json!({"id": format!("{name}-{i}"), "interface": i, "region": REGION, "region_id": REGION, "url": url}))
                .collect();
            json!({"id": name, "type": kind, "name": name, "endpoints": endpoints})
        })
        .collect();
    Value::Array(entries)
}

fn domain_json(base: &str) -> Value {
    json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "enabled": true, "description": "The default domain",
           "tags": [], "options": {}, "links": {"self": format!("{base}/identity/v3/domains/{DEFAULT_DOMAIN_ID}")}})
}

fn project_json(p: &Project, base: &str) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description, "enabled": p.enabled,
           "parent_id": p.domain_id, "is_domain": false, "tags": [], "options": {},
           "links": {"self": format!("{base}/identity/v3/projects/{}", p.id)}})
}

fn user_json(u: &User, base: &str) -> Value {
    let mut v = json!({"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
                       "password_expires_at": null, "options": {},
                       "links": {"self": format!("{base}/identity/v3/users/{}", u.id)}});
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if !u.description.is_empty() {
        v["description"] = json!(u.description);
    }
    v
}

fn role_json(r: &Role, base: &str) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
           "links": {"self": format!("{base}/identity/v3/roles/{}", r.id)}})
}

fn list_json(key: &str, items: Vec<Value>, base: &str, path: &str) -> Value {
    json!({key: items, "links": {"self": format!("{base}/identity/v3/{path}"), "previous": null, "next": null}})
}

fn token_json(auth: &Auth, methods: &[String], base: &str, with_catalog: bool) -> Value {
    let domain = json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME});
    let mut t = json!({
        "methods": methods,
        "user": {"id": auth.user.id, "name": auth.user.name, "domain": domain, "password_expires_at": null},
        "audit_ids": [auth.claims.audit_id],
        "issued_at": iso(auth.claims.issued_at),
        "expires_at": iso(auth.claims.expires_at),
    });
    if let Some(p) = &auth.project {
        t["project"] = json!({"id": p.id, "name": p.name, "domain": domain});
        t["is_domain"] = json!(false);
        t["roles"] = Value::Array(auth.roles.iter().map(|r| json!({"id": r.id, "name": r.name})).collect());
        if with_catalog {
            t["catalog"] = catalog(base, Some(&p.id));
        }
    }
    json!({"token": t})
}

// ---- request bodies

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
}
#[derive(Deserialize)]
struct PasswordBody {
    user: UserRefBody,
}
#[derive(Deserialize)]
struct TokenBody {
    id: String,
}
#[derive(Deserialize)]
struct UserRefBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRefBody>,
    password: String,
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
    project: Option<ProjectRefBody>,
    #[serde(default)]
    domain: Option<Value>,
    #[serde(default)]
    system: Option<Value>,
}
#[derive(Deserialize)]
struct ProjectRefBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRefBody>,
}

fn to_ref(
    id: Option<String>,
    name: Option<String>,
    domain: Option<DomainRefBody>,
    what: &str,
) -> Result<Ref, ApiError> {
    match (id, name) {
        (Some(id), _) => Ok(Ref::Id(id)),
        (None, Some(name)) => {
            let d = domain.ok_or_else(|| ApiError::BadRequest(format!("{what} name given without a domain")))?;
            let domain =
                d.id.or(d.name).ok_or_else(|| ApiError::BadRequest(format!("{what} domain needs an id or a name")))?;
            Ok(Ref::Name { name, domain })
        }
        (None, None) => Err(ApiError::BadRequest(format!("{what} needs an id or a name"))),
    }
}

#[derive(Deserialize)]
struct ProjectCreate {
    project: ProjectCreateBody,
}
#[derive(Deserialize)]
struct ProjectCreateBody {
    name: String,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    is_domain: Option<bool>,
    #[serde(default)]
    parent_id: Option<String>,
}
#[derive(Deserialize)]
struct ProjectUpdate {
    project: ProjectUpdateBody,
}
#[derive(Deserialize)]
struct ProjectUpdateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}
#[derive(Deserialize)]
struct UserCreate {
    user: UserBody,
}
#[derive(Deserialize)]
struct UserUpdate {
    user: UserBody,
}
#[derive(Deserialize)]
struct UserBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    default_project_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    email: Option<Option<String>>,
    #[serde(default)]
    description: Option<String>,
}
#[derive(Deserialize)]
struct RoleCreate {
    role: RoleBody,
}
#[derive(Deserialize)]
struct RoleBody {
    name: String,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn name(field: &'static str, s: &str) -> Result<Name, ApiError> {
    Name::new(field, s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Keystone's projects (and domains) take names of at most 64 characters; users and roles 255.
const PROJECT_NAME_LEN: usize = 64;

fn project_name(s: &str) -> Result<Name, ApiError> {
    if s.chars().count() > PROJECT_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "Invalid input for field 'name': a project name is at most {PROJECT_NAME_LEN} characters."
        )));
    }
    name("name", s)
}

fn description(s: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(d) = &s {
        model::check_description(d).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok(s)
}

// ---- routing

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub async fn route(
    api: &Api,
    req: Request<Incoming>,
    segs: &[&str],
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    match segs {
        [] if req.method() == Method::GET => {
            Ok(json(StatusCode::MULTIPLE_CHOICES, &json!({"versions": {"values": [version_json(&base)]}})))
        }
        ["v3"] if req.method() == Method::GET => Ok(json(StatusCode::OK, &json!({"version": version_json(&base)}))),
        [] | ["v3"] => Err(super::not_allowed(req.method())),
        ["v3", rest @ ..] => v3(api, req, rest, &base, peer).await,
        _ => Err(ApiError::NotFound("No such resource.".into())),
    }
}

async fn v3(
    api: &Api,
    req: Request<Incoming>,
    segs: &[&str],
    base: &str,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    if segs == ["auth", "tokens"] {
        return tokens(api, req, base, peer).await;
    }
    let auth = super::authenticate(api, &req)?;
    let id = &api.identity;
    let query = query_pairs(req.uri().query());
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    match (&method, segs) {
        (&Method::GET, ["auth", "projects"]) => {
            let ps = id.user_projects(&auth, &auth.user.id)?;
            Ok(json(
                StatusCode::OK,
                &list_json("projects", ps.iter().map(|p| project_json(p, base)).collect(), base, "auth/projects"),
            ))
        }
        (&Method::GET, ["auth", "catalog"]) => {
            Ok(json(StatusCode::OK, &json!({"catalog": catalog(base, auth.project.as_ref().map(|p| p.id.as_str()))})))
        }
        (&Method::GET, ["domains"]) => {
            let shown = q("name").is_none_or(|n| n == DEFAULT_DOMAIN_NAME);
            let items = if shown { vec![domain_json(base)] } else { vec![] };
            Ok(json(StatusCode::OK, &list_json("domains", items, base, "domains")))
        }
        (&Method::GET, ["domains", d]) => match model::resolve_domain(d) {
            Ok(_) => Ok(json(StatusCode::OK, &json!({"domain": domain_json(base)}))),
            Err(_) => Err(ApiError::NotFound(format!("Could not find domain: {d}."))),
        },
        (&Method::GET, ["projects"]) => {
            let items = id
                .list_projects(&auth)?
                .into_iter()
                .filter(|p| q("name").is_none_or(|n| p.name.as_str() == n))
                .filter(|p| q("domain_id").is_none_or(|d| p.domain_id == d))
                .filter(|p| q("enabled").is_none_or(|e| p.enabled.to_string() == e.to_ascii_lowercase()))
                .map(|p| project_json(&p, base))
                .collect();
            Ok(json(StatusCode::OK, &list_json("projects", items, base, "projects")))
        }
        (&Method::POST, ["projects"]) => {
            let body: ProjectCreate = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b = body.project;
            if b.is_domain == Some(true) {
                return Err(ApiError::BadRequest("Projects acting as domains are not supported.".into()));
            }
            if let Some(parent) = b.parent_id.filter(|p| p != DEFAULT_DOMAIN_ID) {
                return Err(ApiError::BadRequest(format!(
                    "Project hierarchies are not supported (parent_id {parent})."
                )));
            }
            let new = NewProject {
                name: project_name(&b.name)?,
                domain: b.domain_id.unwrap_or_else(|| DEFAULT_DOMAIN_ID.into()),
                description: description(b.description)?.unwrap_or_default(),
                enabled: b.enabled.unwrap_or(true),
            };
            let p = id.create_project(&auth, new).await?;
            Ok(json(StatusCode::CREATED, &json!({"project": project_json(&p, base)})))
        }
        (_, ["projects", pid]) => match method {
            Method::GET => {
                Ok(json(StatusCode::OK, &json!({"project": project_json(&id.get_project(&auth, pid)?, base)})))
            }
            Method::PATCH => {
                let body: ProjectUpdate = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
                let b = body.project;
                let patch = ProjectPatch {
                    name: b.name.map(|n| project_name(&n)).transpose()?,
                    description: description(b.description)?,
                    enabled: b.enabled,
                };
                let p = id.update_project(&auth, pid, patch).await?;
                Ok(json(StatusCode::OK, &json!({"project": project_json(&p, base)})))
            }
            Method::DELETE => {
                id.delete_project(&auth, pid).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["projects", pid, "users", uid, "roles"]) => {
            let view = id.view()?;
            let roles = id
                .list_assignments(&auth, Some(uid), Some(pid))?
                .into_iter()
                .filter_map(|a| view.role(&a.role_id).ok().flatten())
                .map(|r| role_json(&r, base))
                .collect();
            Ok(json(StatusCode::OK, &list_json("roles", roles, base, &format!("projects/{pid}/users/{uid}/roles"))))
        }
        (_, ["projects", pid, "users", uid, "roles", rid]) => {
            let a = Assignment { project_id: (*pid).into(), user_id: (*uid).into(), role_id: (*rid).into() };
            match method {
                Method::PUT => id.grant(&auth, a).await?,
                Method::HEAD | Method::GET => id.check_grant(&auth, &a)?,
                Method::DELETE => id.ungrant(&auth, a).await?,
                _ => return Err(super::not_allowed(&method)),
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["users"]) => {
            let items = id
                .list_users(&auth)?
                .into_iter()
                .filter(|u| q("name").is_none_or(|n| u.name.as_str() == n))
                .filter(|u| q("domain_id").is_none_or(|d| u.domain_id == d))
                .map(|u| user_json(&u, base))
                .collect();
            Ok(json(StatusCode::OK, &list_json("users", items, base, "users")))
        }
        (&Method::POST, ["users"]) => {
            let body: UserCreate = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b = body.user;
            let n = b.name.ok_or_else(|| ApiError::BadRequest("'name' is a required property".into()))?;
            let new = NewUser {
                name: name("name", &n)?,
                domain: b.domain_id.unwrap_or_else(|| DEFAULT_DOMAIN_ID.into()),
                password: b.password,
                enabled: b.enabled.unwrap_or(true),
                default_project_id: b.default_project_id.flatten(),
                email: b.email.flatten(),
                description: description(b.description)?.unwrap_or_default(),
            };
            let u = id.create_user(&auth, new).await?;
            Ok(json(StatusCode::CREATED, &json!({"user": user_json(&u, base)})))
        }
        (_, ["users", uid]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"user": user_json(&id.get_user(&auth, uid)?, base)}))),
            Method::PATCH => {
                let body: UserUpdate = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
                let b = body.user;
                let change = UserChange {
                    name: b.name.map(|n| name("name", &n)).transpose()?,
                    enabled: b.enabled,
                    password: b.password,
                    default_project_id: b.default_project_id,
                    email: b.email,
                    description: description(b.description)?,
                };
                let u = id.update_user(&auth, uid, change).await?;
                Ok(json(StatusCode::OK, &json!({"user": user_json(&u, base)})))
            }
            Method::DELETE => {
                id.delete_user(&auth, uid).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["users", uid, "projects"]) => {
            let ps = id.user_projects(&auth, uid)?;
            let items = ps.iter().map(|p| project_json(p, base)).collect();
            Ok(json(StatusCode::OK, &list_json("projects", items, base, &format!("users/{uid}/projects"))))
        }
        (&Method::GET, ["roles"]) => {
            let items = id
                .list_roles(&auth)?
                .into_iter()
                .filter(|r| q("name").is_none_or(|n| r.name.as_str() == n))
                .map(|r| role_json(&r, base))
                .collect();
            Ok(json(StatusCode::OK, &list_json("roles", items, base, "roles")))
        }
        (&Method::POST, ["roles"]) => {
            let body: RoleCreate = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let r = id.create_role(&auth, name("name", &body.role.name)?).await?;
            Ok(json(StatusCode::CREATED, &json!({"role": role_json(&r, base)})))
        }
        (_, ["roles", rid]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"role": role_json(&id.get_role(&auth, rid)?, base)}))),
            Method::DELETE => {
                id.delete_role(&auth, rid).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["role_assignments"]) => {
            let names = q("include_names").is_some_and(http::is_true);
            let items = id
                .list_assignments(&auth, q("user.id"), q("scope.project.id"))?
                .into_iter()
                .filter(|a| q("role.id").is_none_or(|r| a.role_id == r))
                .map(|a| assignment_json(api, &a, base, names))
                .collect();
            Ok(json(StatusCode::OK, &list_json("role_assignments", items, base, "role_assignments")))
        }
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/{}", segs.join("/")))),
    }
}

fn assignment_json(api: &Api, a: &Assignment, base: &str, names: bool) -> Value {
    let mut v = json!({
        "role": {"id": a.role_id},
        "user": {"id": a.user_id},
        "scope": {"project": {"id": a.project_id}},
        "links": {"assignment": format!("{base}/identity/v3/projects/{}/users/{}/roles/{}", a.project_id, a.user_id, a.role_id)},
    });
    if names {
        let Ok(s) = api.identity.view() else { return v };
        let domain = json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME});
        if let Ok(Some(r)) = s.role(&a.role_id) {
            v["role"]["name"] = json!(r.name);
        }
        if let Ok(Some(u)) = s.user(&a.user_id) {
            v["user"]["name"] = json!(u.name);
            v["user"]["domain"] = domain.clone();
        }
        if let Ok(Some(p)) = s.project(&a.project_id) {
            v["scope"]["project"]["name"] = json!(p.name);
            v["scope"]["project"]["domain"] = domain;
        }
    }
    v
}

async fn tokens(api: &Api, req: Request<Incoming>, base: &str, peer: SocketAddr) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    if method == Method::POST {
        let nocatalog = query_pairs(req.uri().query()).iter().any(|(k, _)| k == "nocatalog");
        let body: AuthRequest = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
        return login(api, body, base, peer, !nocatalog).await;
    }
    let auth = super::authenticate(api, &req)?;
    let subject = header(&req, "x-subject-token")
        .ok_or_else(|| ApiError::BadRequest("The X-Subject-Token header is required.".into()))?;
    match method {
        Method::GET => {
            let nocatalog = query_pairs(req.uri().query()).iter().any(|(k, _)| k == "nocatalog");
            let target = api.identity.check_token(&auth, subject)?;
            let mut resp = json(StatusCode::OK, &token_json(&target, &["password".into()], base, !nocatalog));
            if let Ok(v) = HeaderValue::from_str(subject) {
                resp.headers_mut().insert("x-subject-token", v);
            }
            Ok(resp)
        }
        Method::HEAD => {
            api.identity.check_token(&auth, subject)?;
            Ok(empty(StatusCode::OK))
        }
        Method::DELETE => {
            api.identity.revoke_token(&auth, subject).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(super::not_allowed(&method)),
    }
}

async fn login(
    api: &Api,
    body: AuthRequest,
    base: &str,
    peer: SocketAddr,
    with_catalog: bool,
) -> Result<Response<Body>, ApiError> {
    let AuthBody { identity, scope } = body.auth;
    let scope = match scope {
        None => Scope::Unscoped,
        Some(ScopeBody { project: Some(p), domain: None, system: None }) => {
            Scope::Project(to_ref(p.id, p.name, p.domain, "project")?)
        }
        Some(ScopeBody { project: None, domain: None, system: None }) => Scope::Unscoped,
        Some(_) => return Err(ApiError::BadRequest("Only project-scoped and unscoped tokens are supported.".into())),
    };
    let methods = identity.methods;
    let result = match (methods.as_slice(), identity.password, identity.token) {
        ([m], Some(p), _) if m == "password" => {
            let u = p.user;
            let who = u.name.clone().or(u.id.clone()).unwrap_or_default();
            let user = to_ref(u.id, u.name, u.domain, "user")?;
            let r = api.identity.login_password(&user, u.password, &scope).await;
            if r.is_err() {
                log::warn!("authentication failed for user {who:?} from {peer}");
            }
            r
        }
        ([m], _, Some(t)) if m == "token" => {
            let r = api.identity.login_token(&t.id, &scope);
            if r.is_err() {
                log::warn!("token authentication failed from {peer}");
            }
            r
        }
        ([m], None, None) if m == "password" || m == "token" => {
            return Err(ApiError::BadRequest(format!("The '{m}' method needs its '{m}' object.")))
        }
        ([], _, _) => return Err(ApiError::BadRequest("'methods' must name one authentication method.".into())),
        _ => {
            log::warn!("authentication with unsupported method(s) {methods:?} from {peer}");
            return Err(ApiError::Unauthorized);
        }
    };
    let (token, auth) = result?;
    let mut resp = json(StatusCode::CREATED, &token_json(&auth, &methods, base, with_catalog));
    let v = HeaderValue::from_str(&token).map_err(|e| ApiError::Internal(Box::new(e)))?;
    resp.headers_mut().insert("x-subject-token", v);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_format() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::iso(1_795_000_000), "2026-11-18T11:06:40.000000Z");
    }
}
