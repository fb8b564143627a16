//! `/v3/users`: list (filters name, domain_id, enabled), create, show, update, delete, and a
//! user's projects and groups.

use super::{body, created, description, double_option, name, ok, ApiError, Body, Ctx};
use crate::identity::{NewUser, UserChange};
use crate::model::{User, DEFAULT_DOMAIN_ID};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct UserRequest {
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
    /// Attributes kept as given (Keystone stores unknown ones).
    #[serde(flatten)]
    extra: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct PasswordRequest {
    user: PasswordBody,
}
#[derive(Deserialize)]
struct PasswordBody {
    password: String,
    original_password: String,
}

/// Extra attributes less those Keystone gives itself (`id`, `links`, …), which clients send
/// back with a user they read and which are not changed that way.
fn extra(mut e: std::collections::BTreeMap<String, Value>) -> std::collections::BTreeMap<String, Value> {
    const RESERVED: [&str; 5] = ["id", "links", "options", "password_expires_at", "federated"];
    e.retain(|k, _| !RESERVED.contains(&k.as_str()));
    e
}

/// `POST /v3/users/{id}/password`: a user's own change, proven by the old password (no token).
pub(super) async fn change_password(
    api: &super::Api,
    req: Request<Incoming>,
    uid: &str,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(super::super::not_allowed(req.method()));
    }
    let b = body::<PasswordRequest>(req).await?.user;
    api.identity.change_password(uid, b.original_password, b.password).await?;
    Ok(super::super::http::empty(StatusCode::NO_CONTENT))
}

pub(super) fn user_json(ctx: &Ctx, u: &User) -> Value {
    let mut v = json!(u.extra);
    let base = json!({"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
                       "password_expires_at": null, "options": {},
                       "links": {"self": ctx.link(&format!("users/{}", u.id))}});
    if let (Some(v), Value::Object(b)) = (v.as_object_mut(), base) {
        v.extend(b);
    }
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

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_users(auth)?
                .into_iter()
                .filter(|u| ctx.listed(u.name.as_str(), Some(&u.domain_id), Some(u.enabled)))
                .map(|u| user_json(ctx, &u))
                .collect();
            Ok(ctx.list("users", items, "users"))
        }
        (Method::POST, []) => {
            let b = body::<UserRequest>(req).await?.user;
            let n = b.name.ok_or_else(|| ApiError::BadRequest("'name' is a required property".into()))?;
            let new = NewUser {
                name: name("name", &n)?,
                domain: b.domain_id.unwrap_or_else(|| DEFAULT_DOMAIN_ID.into()),
                password: b.password,
                enabled: b.enabled.unwrap_or(true),
                default_project_id: b.default_project_id.flatten(),
                email: b.email.flatten(),
                description: description(b.description)?.unwrap_or_default(),
                extra: extra(b.extra),
            };
            Ok(created("user", user_json(ctx, &id.create_user(auth, new).await?)))
        }
        (Method::GET, [uid]) => Ok(ok("user", user_json(ctx, &id.get_user(auth, uid)?))),
        (Method::PATCH, [uid]) => {
            let b = body::<UserRequest>(req).await?.user;
            let change = UserChange {
                name: b.name.map(|n| name("name", &n)).transpose()?,
                enabled: b.enabled,
                password: b.password,
                default_project_id: b.default_project_id,
                email: b.email,
                description: description(b.description)?,
                extra: extra(b.extra),
            };
            Ok(ok("user", user_json(ctx, &id.update_user(auth, uid, change).await?)))
        }
        (Method::DELETE, [uid]) => {
            id.delete_user(auth, uid).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (Method::GET, [uid, "projects"]) => {
            let items = id.user_projects(auth, uid)?.iter().map(|p| super::projects::project_json(ctx, p)).collect();
            Ok(ctx.list("projects", items, &format!("users/{uid}/projects")))
        }
        (Method::GET, [uid, "groups"]) => {
            let items = id.user_groups(auth, uid)?.iter().map(|g| super::groups::group_json(ctx, g)).collect();
            Ok(ctx.list("groups", items, &format!("users/{uid}/groups")))
        }
        (m, [] | [_] | [_, "projects" | "groups"]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/users/{}", segs.join("/")))),
    }
}
