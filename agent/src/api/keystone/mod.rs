//! Keystone v3 over HTTP (under `/identity`): version discovery and routing here; each resource
//! in its own module (tokens, projects, users, roles and grants, domains, groups, application
//! credentials, the catalog's regions, services and endpoints), each given a [`Ctx`].

mod app_creds;
mod catalog;
mod domains;
mod groups;
mod projects;
mod roles;
mod tokens;
mod users;

use super::error::ApiError;
use super::http::{json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::identity::Auth;
use crate::model::{self, Name};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

pub use catalog::{catalog, REGION};

/// The Keystone API version announced (what keystoneauth expects of a current cloud).
const VERSION_ID: &str = "v3.14";
const UPDATED: &str = "2020-04-07T00:00:00Z";

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

/// What every resource handler gets: the service, the caller, the base URL and the query.
pub(super) struct Ctx<'a> {
    api: &'a Api,
    auth: std::sync::Arc<Auth>,
    base: String,
    query: Vec<(String, String)>,
}

impl Ctx<'_> {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Keystone's common list filters: `name`, `domain_id` and `enabled` (a query without one
    /// matches any; a resource without a domain or an enabled flag passes those).
    fn listed(&self, name: &str, domain_id: Option<&str>, enabled: Option<bool>) -> bool {
        self.q("name").is_none_or(|n| n == name)
            && self.q("domain_id").is_none_or(|d| domain_id.is_none_or(|x| x == d))
            && self.q("enabled").is_none_or(|e| enabled.is_none_or(|x| x.to_string() == e.to_ascii_lowercase()))
    }

    fn link(&self, path: &str) -> String {
        format!("{}/identity/v3/{path}", self.base)
    }

    /// A collection as Keystone lists it, with its `links`.
    fn list(&self, key: &str, items: Vec<Value>, path: &str) -> Response<Body> {
        json(StatusCode::OK, &json!({key: items, "links": {"self": self.link(path), "previous": null, "next": null}}))
    }

    /// `{"id", "name"}` of a domain, as tokens and assignments name one.
    fn domain_ref(&self, id: &str) -> Value {
        let name = self.api.identity.view().ok().and_then(|v| v.domain(id).ok().flatten()).map(|d| d.name.to_string());
        json!({"id": id, "name": name.unwrap_or_else(|| id.to_owned())})
    }
}

/// Reads a JSON request body into its typed form.
async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)
}

fn created(key: &str, v: Value) -> Response<Body> {
    json(StatusCode::CREATED, &json!({ key: v }))
}

fn ok(key: &str, v: Value) -> Response<Body> {
    json(StatusCode::OK, &json!({ key: v }))
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn name(field: &'static str, s: &str) -> Result<Name, ApiError> {
    Name::new(field, s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Keystone's projects and domains take names of at most 64 characters; users and roles 255.
const PROJECT_NAME_LEN: usize = 64;

/// A project's or domain's name.
fn short_name(s: &str) -> Result<Name, ApiError> {
    if s.chars().count() > PROJECT_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "Invalid input for field 'name': a name is at most {PROJECT_NAME_LEN} characters."
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
        ["v3", "auth", "tokens"] => tokens::tokens(api, req, &base, peer).await,
        ["v3", "users", uid, "password"] => users::change_password(api, req, uid).await,
        ["v3", rest @ ..] => {
            let auth = super::authenticate(api, &req)?;
            let query = query_pairs(req.uri().query());
            let ctx = Ctx { api, auth, base, query };
            v3(&ctx, req, rest).await
        }
        _ => Err(ApiError::NotFound("No such resource.".into())),
    }
}

async fn v3(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    if let Some((target, actor, role)) = roles::grant_path(segs) {
        return roles::grants(ctx, req, target, actor, role).await;
    }
    match segs {
        ["auth", rest @ ..] => tokens::route(ctx, req, rest),
        ["projects", rest @ ..] => projects::route(ctx, req, rest).await,
        ["users", uid, "application_credentials", rest @ ..] => app_creds::route(ctx, req, uid, rest).await,
        ["users", rest @ ..] => users::route(ctx, req, rest).await,
        ["domains", rest @ ..] => domains::route(ctx, req, rest).await,
        ["groups", rest @ ..] => groups::route(ctx, req, rest).await,
        ["roles", rest @ ..] => roles::route(ctx, req, rest).await,
        ["role_assignments"] if req.method() == Method::GET => roles::assignments(ctx),
        ["regions" | "services" | "endpoints", ..] => catalog::route(ctx, req, segs),
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/{}", segs.join("/")))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_format() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::iso(1_795_000_000), "2026-11-18T11:06:40.000000Z");
    }
}
