//! `/v3/domains`: list (filters name, enabled), create, show, update, delete (a disabled
//! domain, with everything in it).

use super::{body, created, description, ok, short_name, ApiError, Body, Ctx};
use crate::model::identity::{Domain, DomainPatch};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct DomainRequest {
    domain: DomainBody,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    options: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    explicit_domain_id: Option<String>,
}

pub(super) fn domain_json(ctx: &Ctx, d: &Domain) -> Value {
    json!({"id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled, "tags": [],
           "options": {}, "links": {"self": ctx.link(&format!("domains/{}", d.id))}})
}

fn unsupported(b: &DomainBody) -> Result<(), ApiError> {
    if b.tags.as_ref().is_some_and(|t| !t.is_empty()) || b.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::BadRequest("Domain tags and options are not supported.".into()));
    }
    if b.explicit_domain_id.is_some() {
        return Err(ApiError::BadRequest("'explicit_domain_id' is not supported.".into()));
    }
    Ok(())
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let id = &ctx.api.identity;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, []) => {
            let items = id
                .list_domains(auth)?
                .into_iter()
                .filter(|d| ctx.listed(d.name.as_str(), None, Some(d.enabled)))
                .map(|d| domain_json(ctx, &d))
                .collect();
            Ok(ctx.list("domains", items, "domains"))
        }
        (Method::POST, []) => {
            let b = body::<DomainRequest>(req).await?.domain;
            unsupported(&b)?;
            let n = b.name.as_deref().ok_or_else(|| ApiError::BadRequest("'name' is a required property".into()))?;
            let d = id
                .create_domain(
                    auth,
                    short_name(n)?,
                    description(b.description)?.unwrap_or_default(),
                    b.enabled.unwrap_or(true),
                )
                .await?;
            Ok(created("domain", domain_json(ctx, &d)))
        }
        (Method::GET, [did]) => Ok(ok("domain", domain_json(ctx, &id.get_domain(auth, did)?))),
        (Method::PATCH, [did]) => {
            let b = body::<DomainRequest>(req).await?.domain;
            unsupported(&b)?;
            let patch = DomainPatch {
                name: b.name.as_deref().map(short_name).transpose()?,
                description: description(b.description)?,
                enabled: b.enabled,
            };
            Ok(ok("domain", domain_json(ctx, &id.update_domain(auth, did, patch).await?)))
        }
        (Method::DELETE, [did]) => {
            id.delete_domain(auth, did).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/domains/{}", segs.join("/")))),
    }
}
