//! `/v3/roles` (list, create, show, delete), role grants
//! (`/v3/{projects/P,domains/D,system}/{users,groups}/A/roles[/R]`) and
//! `/v3/role_assignments` (filters, `effective`, `include_names`).

use super::{body, created, name, ok, ApiError, Body, Ctx};
use crate::identity::grants::AssignmentFilter;
use crate::model::identity::{Actor, Grant, Target};
use crate::model::Role;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct RoleCreate {
    role: RoleBody,
}
#[derive(Deserialize)]
struct RoleBody {
    name: String,
    #[serde(default)]
    domain_id: Option<String>,
}
#[derive(Deserialize)]
struct RoleUpdate {
    role: RoleUpdateBody,
}
#[derive(Deserialize)]
struct RoleUpdateBody {
    name: String,
}

fn role_json(ctx: &Ctx, r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
           "links": {"self": ctx.link(&format!("roles/{}", r.id))}})
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_roles(auth)?
                .into_iter()
                .filter(|r| ctx.listed(r.name.as_str(), None, None))
                .map(|r| role_json(ctx, &r))
                .collect();
            Ok(ctx.list("roles", items, "roles"))
        }
        (Method::POST, []) => {
            let b = body::<RoleCreate>(req).await?.role;
            if b.domain_id.is_some() {
                return Err(ApiError::BadRequest("Domain-specific roles are not supported.".into()));
            }
            Ok(created("role", role_json(ctx, &id.create_role(auth, name("name", &b.name)?).await?)))
        }
        (Method::GET, [rid]) => Ok(ok("role", role_json(ctx, &id.get_role(auth, rid)?))),
        (Method::PATCH, [rid]) => {
            let b = body::<RoleUpdate>(req).await?.role;
            Ok(ok("role", role_json(ctx, &id.update_role(auth, rid, name("name", &b.name)?).await?)))
        }
        (Method::DELETE, [rid]) => {
            id.delete_role(auth, rid).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/roles/{}", segs.join("/")))),
    }
}

/// The parts of a grant's path: where, to whom, and the role when named.
pub(super) fn grant_path<'a>(segs: &[&'a str]) -> Option<(Target, Actor, Option<&'a str>)> {
    let (target, rest) = match segs {
        ["projects", p, rest @ ..] => (Target::Project((*p).into()), rest),
        ["domains", d, rest @ ..] => (Target::Domain((*d).into()), rest),
        ["system", rest @ ..] => (Target::System, rest),
        _ => return None,
    };
    let (kind, who, role) = match rest {
        [kind, who, "roles"] => (*kind, *who, None),
        [kind, who, "roles", r] => (*kind, *who, Some(*r)),
        _ => return None,
    };
    let actor = match kind {
        "users" => Actor::User(who.into()),
        "groups" => Actor::Group(who.into()),
        _ => return None,
    };
    Some((target, actor, role))
}

pub(super) async fn grants(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    target: Target,
    actor: Actor,
    role: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    let Some(role_id) = role else {
        if req.method() != Method::GET {
            return Err(super::super::not_allowed(req.method()));
        }
        let roles = id.granted_roles(auth, &actor, &target)?.iter().map(|r| role_json(ctx, r)).collect();
        let path = req.uri().path().split_once("/v3/").map_or("", |(_, p)| p).to_owned();
        return Ok(ctx.list("roles", roles, &path));
    };
    let g = Grant { actor, target, role_id: role_id.into() };
    match *req.method() {
        Method::PUT => id.grant(auth, g).await?,
        Method::HEAD | Method::GET => id.check_grant(auth, &g)?,
        Method::DELETE => id.revoke(auth, g).await?,
        ref m => return Err(super::super::not_allowed(m)),
    }
    Ok(super::super::http::empty(StatusCode::NO_CONTENT))
}

fn filter_of(ctx: &Ctx) -> Result<AssignmentFilter, ApiError> {
    let actor = match (ctx.q("user.id"), ctx.q("group.id")) {
        (Some(u), None) => Some(Actor::User(u.into())),
        (None, Some(g)) => Some(Actor::Group(g.into())),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(ApiError::BadRequest("Filter by user.id or group.id, not both.".into())),
    };
    let target = match (ctx.q("scope.project.id"), ctx.q("scope.domain.id"), ctx.q("scope.system")) {
        (Some(p), None, None) => Some(Target::Project(p.into())),
        (None, Some(d), None) => Some(Target::Domain(d.into())),
        (None, None, Some(_)) => Some(Target::System),
        (None, None, None) => None,
        _ => return Err(ApiError::BadRequest("Filter by one scope.".into())),
    };
    let effective = ctx.query.iter().any(|(k, v)| k == "effective" && (v.is_empty() || super::super::http::is_true(v)));
    Ok(AssignmentFilter { actor, target, role_id: ctx.q("role.id").map(str::to_owned), effective })
}

pub(super) fn assignments(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let names = ctx.q("include_names").is_some_and(super::super::http::is_true);
    let items = ctx
        .api
        .identity
        .list_assignments(&ctx.auth, &filter_of(ctx)?)?
        .iter()
        .map(|g| assignment_json(ctx, g, names))
        .collect();
    Ok(ctx.list("role_assignments", items, "role_assignments"))
}

fn assignment_json(ctx: &Ctx, g: &Grant, names: bool) -> Value {
    let view = if names { ctx.api.identity.view().ok() } else { None };
    let mut role = json!({"id": g.role_id});
    let (actor_key, mut actor, actor_path) = match &g.actor {
        Actor::User(u) => ("user", json!({"id": u}), format!("users/{u}")),
        Actor::Group(x) => ("group", json!({"id": x}), format!("groups/{x}")),
    };
    let (mut scope, scope_path) = match &g.target {
        Target::Project(p) => (json!({"project": {"id": p}}), format!("projects/{p}")),
        Target::Domain(d) => (json!({"domain": {"id": d}}), format!("domains/{d}")),
        Target::System => (json!({"system": {"all": true}}), "system".to_owned()),
    };
    if let Some(v) = view {
        if let Ok(Some(r)) = v.role(&g.role_id) {
            role["name"] = json!(r.name);
        }
        let actor_named = match &g.actor {
            Actor::User(u) => v.user(u).ok().flatten().map(|u| (u.name, u.domain_id)),
            Actor::Group(x) => v.group(x).ok().flatten().map(|g| (g.name, g.domain_id)),
        };
        if let Some((n, d)) = actor_named {
            actor["name"] = json!(n);
            actor["domain"] = ctx.domain_ref(&d);
        }
        match &g.target {
            Target::Project(p) => {
                if let Ok(Some(p)) = v.project(p) {
                    scope["project"]["name"] = json!(p.name);
                    scope["project"]["domain"] = ctx.domain_ref(&p.domain_id);
                }
            }
            Target::Domain(d) => scope["domain"] = ctx.domain_ref(d),
            Target::System => {}
        }
    }
    let link = ctx.link(&format!("{scope_path}/{actor_path}/roles/{}", g.role_id));
    json!({"role": role, actor_key: actor, "scope": scope, "links": {"assignment": link}})
}
