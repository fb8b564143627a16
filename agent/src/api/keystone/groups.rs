//! `/v3/groups`: list (filters name, domain_id), create, show, update, delete, and members
//! (list, add, check, remove).

use super::{body, created, description, name, ok, ApiError, Body, Ctx};
use crate::model::identity::{Group, GroupPatch};
use crate::model::DEFAULT_DOMAIN_ID;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct GroupRequest {
    group: GroupBody,
}
/// Keystone keeps unknown attributes of groups; they are accepted and not kept here.
#[derive(Deserialize)]
struct GroupBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

pub(super) fn group_json(ctx: &Ctx, g: &Group) -> Value {
    json!({"id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description,
           "links": {"self": ctx.link(&format!("groups/{}", g.id))}})
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    let done = || super::super::http::empty(StatusCode::NO_CONTENT);
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_groups(auth)?
                .into_iter()
                .filter(|g| ctx.listed(g.name.as_str(), Some(&g.domain_id), None))
                .map(|g| group_json(ctx, &g))
                .collect();
            Ok(ctx.list("groups", items, "groups"))
        }
        (Method::POST, []) => {
            let b = body::<GroupRequest>(req).await?.group;
            let n = b.name.as_deref().ok_or_else(|| ApiError::BadRequest("'name' is a required property".into()))?;
            let domain = b.domain_id.as_deref().unwrap_or(DEFAULT_DOMAIN_ID);
            let g = id
                .create_group(auth, name("name", n)?, domain, description(b.description)?.unwrap_or_default())
                .await?;
            Ok(created("group", group_json(ctx, &g)))
        }
        (Method::GET, [gid]) => Ok(ok("group", group_json(ctx, &id.get_group(auth, gid)?))),
        (Method::PATCH, [gid]) => {
            let b = body::<GroupRequest>(req).await?.group;
            if b.domain_id.is_some() {
                return Err(ApiError::BadRequest("A group's domain cannot be changed.".into()));
            }
            let patch = GroupPatch {
                name: b.name.as_deref().map(|n| name("name", n)).transpose()?,
                description: description(b.description)?,
            };
            Ok(ok("group", group_json(ctx, &id.update_group(auth, gid, patch).await?)))
        }
        (Method::DELETE, [gid]) => {
            id.delete_group(auth, gid).await?;
            Ok(done())
        }
        (Method::GET, [gid, "users"]) => {
            let items = id.group_users(auth, gid)?.iter().map(|u| super::users::user_json(ctx, u)).collect();
            Ok(ctx.list("users", items, &format!("groups/{gid}/users")))
        }
        (Method::PUT, [gid, "users", uid]) => {
            id.add_group_user(auth, gid, uid).await?;
            Ok(done())
        }
        (Method::HEAD | Method::GET, [gid, "users", uid]) => {
            id.check_group_user(auth, gid, uid)?;
            Ok(done())
        }
        (Method::DELETE, [gid, "users", uid]) => {
            id.remove_group_user(auth, gid, uid).await?;
            Ok(done())
        }
        (m, [] | [_] | [_, "users"] | [_, "users", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/groups/{}", segs.join("/")))),
    }
}
