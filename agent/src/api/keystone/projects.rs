//! `/v3/projects`: list (filters name, domain_id, enabled), create, show, update, delete.
//! Projects are flat: each one's parent is its domain.

use super::super::http::json;
use super::{body, created, description, ok, short_name, ApiError, Body, Ctx};
use crate::identity::NewProject;
use crate::model::{Project, ProjectPatch, DEFAULT_DOMAIN_ID};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

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
    #[serde(default)]
    tags: Option<Vec<String>>,
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
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<String>,
}

/// Keystone's limits on a project's tags.
const MAX_TAGS: usize = 80;
const MAX_TAG_LEN: usize = 255;

/// Checks tags as Keystone does and drops repeats.
fn tags(mut t: Vec<String>) -> Result<Vec<String>, ApiError> {
    if t.len() > MAX_TAGS {
        return Err(ApiError::BadRequest(format!("A project has at most {MAX_TAGS} tags.")));
    }
    for tag in &t {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || tag.contains(['/', ',']) {
            return Err(ApiError::BadRequest(format!(
                "Invalid tag {tag:?}: 1 to {MAX_TAG_LEN} characters, without '/' or ','."
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    t.retain(|x| seen.insert(x.clone()));
    Ok(t)
}

/// The list filters on tags: all of `tags`, any of `tags-any`, not all of `not-tags`, none of
/// `not-tags-any` (each comma-separated).
fn tags_match(ctx: &Ctx, p: &Project) -> bool {
    let has = |t: &str| p.tags.iter().any(|x| x == t);
    let list = |k: &str| ctx.q(k).map(|v| v.split(',').filter(|t| !t.is_empty()).collect::<Vec<_>>());
    list("tags").is_none_or(|ts| ts.iter().all(|t| has(t)))
        && list("tags-any").is_none_or(|ts| ts.iter().any(|t| has(t)))
        && list("not-tags").is_none_or(|ts| !ts.iter().all(|t| has(t)))
        && list("not-tags-any").is_none_or(|ts| !ts.iter().any(|t| has(t)))
}

pub(super) fn project_json(ctx: &Ctx, p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description, "enabled": p.enabled,
           "parent_id": p.domain_id, "is_domain": false, "tags": p.tags, "options": {},
           "links": {"self": ctx.link(&format!("projects/{}", p.id))}})
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_projects(auth)?
                .into_iter()
                .filter(|p| ctx.listed(p.name.as_str(), Some(&p.domain_id), Some(p.enabled)))
                .filter(|p| tags_match(ctx, p))
                .map(|p| project_json(ctx, &p))
                .collect();
            Ok(ctx.list("projects", items, "projects"))
        }
        (Method::POST, []) => {
            let b = body::<ProjectCreate>(req).await?.project;
            if b.is_domain == Some(true) {
                return Err(ApiError::BadRequest("Projects acting as domains are not supported.".into()));
            }
            let domain = b.domain_id.unwrap_or_else(|| DEFAULT_DOMAIN_ID.into());
            if let Some(parent) = b.parent_id.filter(|p| *p != domain) {
                return Err(ApiError::BadRequest(format!(
                    "Project hierarchies are not supported (parent_id {parent})."
                )));
            }
            let new = NewProject {
                name: short_name(&b.name)?,
                domain,
                description: description(b.description)?.unwrap_or_default(),
                enabled: b.enabled.unwrap_or(true),
                tags: tags(b.tags.unwrap_or_default())?,
            };
            Ok(created("project", project_json(ctx, &id.create_project(auth, new).await?)))
        }
        (Method::GET, [pid]) => Ok(ok("project", project_json(ctx, &id.get_project(auth, pid)?))),
        (Method::PATCH, [pid]) => {
            let b = body::<ProjectUpdate>(req).await?.project;
            let patch = ProjectPatch {
                name: b.name.map(|n| short_name(&n)).transpose()?,
                description: description(b.description)?,
                enabled: b.enabled,
                tags: b.tags.map(tags).transpose()?,
            };
            Ok(ok("project", project_json(ctx, &id.update_project(auth, pid, patch).await?)))
        }
        (_, [pid, "tags", rest @ ..]) => project_tags(ctx, req, pid, rest).await,
        (Method::DELETE, [pid]) => {
            id.delete_project(auth, pid).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/projects/{}", segs.join("/")))),
    }
}

/// `/v3/projects/{id}/tags[/{tag}]`: list, replace, clear; check, add, remove one.
async fn project_tags(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    pid: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    let current = id.get_project(auth, pid)?.tags;
    let set = |t: Vec<String>| async move {
        let patch = ProjectPatch { tags: Some(tags(t)?), ..ProjectPatch::default() };
        Ok::<_, ApiError>(id.update_project(auth, pid, patch).await?.tags)
    };
    let tag = rest.first().map(|t| super::super::http::percent_decode(t));
    let done = || super::super::http::empty(StatusCode::NO_CONTENT);
    match (req.method().clone(), tag) {
        (Method::GET, None) => Ok(json(StatusCode::OK, &json!({ "tags": current }))),
        (Method::PUT, None) => {
            let new = set(body::<TagsBody>(req).await?.tags).await?;
            Ok(json(StatusCode::OK, &json!({ "tags": new })))
        }
        (Method::DELETE, None) => set(Vec::new()).await.map(|_| done()),
        (Method::GET | Method::HEAD, Some(t)) if current.contains(&t) => Ok(done()),
        (Method::GET | Method::HEAD, Some(t)) => Err(ApiError::NotFound(format!("Tag {t} not found."))),
        (Method::PUT, Some(t)) => {
            let mut all = current;
            all.push(t);
            set(all).await.map(|_| super::super::http::empty(StatusCode::CREATED))
        }
        (Method::DELETE, Some(t)) if current.contains(&t) => {
            set(current.into_iter().filter(|x| *x != t).collect()).await.map(|_| done())
        }
        (Method::DELETE, Some(t)) => Err(ApiError::NotFound(format!("Tag {t} not found."))),
        (m, _) => Err(super::super::not_allowed(&m)),
    }
}
