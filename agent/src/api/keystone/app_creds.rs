//! `/v3/users/{id}/application_credentials`: create (the secret shown once), list (filter
//! name), show, delete.

use super::super::http::{isoformat_us, parse_timestamp_us};
use super::{body, created, description, name, ok, ApiError, Body, Ctx};
use crate::identity::app_creds::{NewAppCredential, RoleRef};
use crate::model::identity::AppCredential;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct CreateRequest {
    application_credential: CreateBody,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    roles: Option<Vec<RoleRefBody>>,
    #[serde(default)]
    unrestricted: Option<bool>,
    #[serde(default)]
    access_rules: Option<Vec<Value>>,
}
#[derive(Deserialize)]
struct RoleRefBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn cred_json(ctx: &Ctx, c: &AppCredential) -> Value {
    let view = ctx.api.identity.view().ok();
    let roles: Vec<Value> = c
        .role_ids
        .iter()
        .map(|id| {
            let n = view.as_ref().and_then(|v| v.role(id).ok().flatten()).map(|r| r.name.to_string());
            json!({"id": id, "name": n, "domain_id": null})
        })
        .collect();
    json!({"id": c.id, "name": c.name, "description": c.description, "user_id": c.user_id,
           "project_id": c.project_id, "roles": roles, "unrestricted": c.unrestricted,
           "expires_at": c.expires_at_us.map(isoformat_us), "access_rules": [],
           "links": {"self": ctx.link(&format!("users/{}/application_credentials/{}", c.user_id, c.id))}})
}

fn new_of(b: CreateBody) -> Result<NewAppCredential, ApiError> {
    if b.access_rules.is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::BadRequest("Access rules on application credentials are not supported.".into()));
    }
    let expires_at_us = match b.expires_at.as_deref() {
        None => None,
        Some(s) => Some(
            parse_timestamp_us(s)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid input for field 'expires_at': {s:?}.")))?,
        ),
    };
    let roles = b
        .roles
        .map(|rs| {
            rs.into_iter()
                .map(|r| match (r.id, r.name) {
                    (Some(id), _) => Ok(RoleRef::Id(id)),
                    (None, Some(n)) => Ok(RoleRef::Name(n)),
                    (None, None) => Err(ApiError::BadRequest("A role needs an id or a name.".into())),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(NewAppCredential {
        name: name("name", &b.name)?,
        description: description(b.description)?.unwrap_or_default(),
        secret: b.secret,
        expires_at_us,
        roles,
        unrestricted: b.unrestricted.unwrap_or(false),
    })
}

pub(super) async fn route(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    uid: &str,
    segs: &[&str],
) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_app_credentials(auth, uid)?
                .iter()
                .filter(|c| ctx.q("name").is_none_or(|n| c.name.as_str() == n))
                .map(|c| cred_json(ctx, c))
                .collect();
            Ok(ctx.list("application_credentials", items, &format!("users/{uid}/application_credentials")))
        }
        (Method::POST, []) => {
            let new = new_of(body::<CreateRequest>(req).await?.application_credential)?;
            let (c, secret) = id.create_app_credential(auth, uid, new).await?;
            let mut v = cred_json(ctx, &c);
            v["secret"] = json!(secret);
            Ok(created("application_credential", v))
        }
        (Method::GET, [cid]) => {
            Ok(ok("application_credential", cred_json(ctx, &id.get_app_credential(auth, uid, cid)?)))
        }
        (Method::DELETE, [cid]) => {
            id.delete_app_credential(auth, uid, cid).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("No such resource.".into())),
    }
}
