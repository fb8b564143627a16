//! Nova v2.1 over HTTP (under `/compute`): version discovery and microversion negotiation here;
//! each resource in its own module (servers, flavors, keypairs, hosts: hypervisors, services,
//! zones; limits and quota sets), each given a [`Ctx`] and the path.
//!
//! The maximum microversion is 2.79: each change up to it is served exactly for the resources
//! offered; a change to a resource not offered (server groups, migrations, instance actions,
//! remote consoles, shelving, rebuild, locking, …: README's microversion table) changes nothing
//! here, those resources answering 404 or 501 at every microversion.

mod flavors;
mod hosts;
mod keypairs;
mod limits;
mod server_create;
mod server_parts;
mod server_view;
mod servers;

use super::error::ApiError;
use super::http::{json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::compute::ComputeError;
use crate::identity::Auth;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// The microversions served: `(2, 1)` to `MAX`.
const MAX: (u32, u32) = (2, 79);

/// Nova's legacy v2.0 API, served by the same code without microversions, as Nova does.
fn version_doc_v2(base: &str) -> Value {
    json!({"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "", "updated": "2011-01-21T11:33:21Z",
           "links": [{"rel": "self", "href": format!("{base}/compute/v2/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}]})
}

fn version_doc(base: &str) -> Value {
    json!({"id": "v2.1", "status": "CURRENT", "version": format!("{}.{}", MAX.0, MAX.1), "min_version": "2.1",
           "updated": "2013-07-23T11:33:21Z",
           "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]})
}

/// The microversion a request asks for (`OpenStack-API-Version: compute X.Y` or the legacy
/// header); 406 beyond what is served, as Nova answers.
fn microversion(req: &Request<Incoming>) -> Result<(u32, u32), ApiError> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let asked = h("openstack-api-version")
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("compute ").map(str::trim)))
        .or_else(|| h("x-openstack-nova-api-version"));
    let Some(v) = asked else { return Ok((2, 1)) };
    if v == "latest" {
        return Ok(MAX);
    }
    let parsed = v.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some(mv) = parsed else {
        return Err(ApiError::BadRequest(format!("Version {v} is not a valid microversion (X.Y).")));
    };
    if mv < (2, 1) || mv > MAX {
        return Err(ApiError::NotAcceptable(format!(
            "Version {v} is not supported by the API. Minimum is 2.1 and maximum is {}.{}.",
            MAX.0, MAX.1
        )));
    }
    Ok(mv)
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    let mv = microversion(&req)?;
    // The legacy v2.0 API has no microversions: it answers as 2.1.
    let minor = if segs.first() == Some(&"v2") { 1 } else { mv.1 };
    let mut resp = match segs {
        [] if method == Method::GET => {
            Ok(json(StatusCode::OK, &json!({"versions": [version_doc_v2(&base), version_doc(&base)]})))
        }
        ["v2.1"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"version": version_doc(&base)}))),
        ["v2"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"version": version_doc_v2(&base)}))),
        // Paths may carry the project as older endpoints did (`/v2.1/{project_id}/…`).
        ["v2.1" | "v2", project, rest @ ..]
            if project.len() == 32 && project.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            v21(api, req, rest, (&base, minor)).await
        }
        ["v2.1" | "v2", rest @ ..] => v21(api, req, rest, (&base, minor)).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }?;
    let v = format!("{}.{}", mv.0, mv.1);
    let hs = resp.headers_mut();
    if let Ok(h) = HeaderValue::from_str(&format!("compute {v}")) {
        hs.insert("openstack-api-version", h);
    }
    if let Ok(h) = HeaderValue::from_str(&v) {
        hs.insert("x-openstack-nova-api-version", h);
    }
    hs.insert("vary", HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"));
    Ok(resp)
}

/// The typed `key` object of a request body; a missing object, an unknown field or a value of
/// the wrong type is a 400 naming it, as Nova's schema checks answer.
pub(super) async fn typed_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    key: &str,
) -> Result<T, ApiError> {
    let inner = Value::Object(body_object(req, key).await?);
    serde_json::from_value(inner).map_err(|e| bad(format!("Invalid input for field/attribute {key}: {e}")))
}

pub(super) async fn body_object(req: Request<Incoming>, key: &str) -> Result<Map<String, Value>, ApiError> {
    let mut body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
    match body.remove(key) {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(bad(format!("Invalid input: a body with a \"{key}\" object is required"))),
    }
}

/// A field only 2.`minor` and later take, given at 2.`mv`: refused below it, as Nova's schema
/// refuses an unknown field.
pub(super) fn since<T>(mv: u32, minor: u32, field: &str, value: Option<T>) -> Result<Option<T>, ApiError> {
    match value {
        Some(_) if mv < minor => {
            Err(bad(format!("Invalid input for field/attribute {field}: additional property (needs 2.{minor}).")))
        }
        v => Ok(v),
    }
}

/// What every Nova handler gets: the caller, the base URL for links and the query.
pub(super) struct Ctx<'a> {
    pub api: &'a Api,
    pub auth: std::sync::Arc<Auth>,
    pub base: &'a str,
    pub query: Vec<(String, String)>,
    /// The raw query string (for flags whose empty or `None` value the pairs drop).
    pub raw_query: String,
    /// The negotiated microversion's minor number (2.`mv`).
    pub mv: u32,
}

impl Ctx<'_> {
    /// Whether the request's microversion is 2.`minor` or later.
    pub fn at(&self, minor: u32) -> bool {
        self.mv >= minor
    }

    /// A field only a later microversion takes: refused below it, as Nova's schema refuses an
    /// unknown field.
    pub fn since<T>(&self, minor: u32, field: &str, value: Option<T>) -> Result<Option<T>, ApiError> {
        since(self.mv, minor, field, value)
    }

    /// The first value of query parameter `k`.
    pub fn q(&self, k: &str) -> Option<String> {
        self.query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }
}

/// One page of a listing as Nova pages it: the items after `marker` (an id; 400 when no item
/// has it), at most `limit` of them; and the `…_links` entry for the next page when there may be
/// more.
pub(super) fn page<T>(
    cx: &Ctx<'_>,
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    path: &str,
) -> Result<(Vec<T>, Option<Value>), ApiError> {
    let mut items = items;
    if let Some(marker) = cx.q("marker") {
        let at =
            items.iter().position(|i| id(i) == marker).ok_or_else(|| bad(format!("marker [{marker}] not found")))?;
        items.drain(..=at);
    }
    let Some(limit) = cx.q("limit") else { return Ok((items, None)) };
    let limit: usize = limit.parse().map_err(|_| bad(format!("Invalid input for query parameters limit: {limit}")))?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = items.last().filter(|_| more).map(|last| {
        let href = format!("{}/compute/v2.1/{path}?limit={limit}&marker={}", cx.base, id(last));
        json!([{"rel": "next", "href": href}])
    });
    Ok((items, next))
}

pub(super) fn not_found() -> ApiError {
    ApiError::NotFound("The resource could not be found.".into())
}

async fn v21(
    api: &Api,
    req: Request<Incoming>,
    segs: &[&str],
    (base, mv): (&str, u32),
) -> Result<Response<Body>, ApiError> {
    let auth = super::authenticate(api, &req)?;
    let raw_query = req.uri().query().unwrap_or_default().to_owned();
    let cx = Ctx { api, auth, base, query: query_pairs(Some(&raw_query)), raw_query, mv };
    match segs.first().copied() {
        Some("servers") => servers::route(&cx, req, segs).await,
        Some("flavors") => flavors::route(&cx, req, segs).await,
        Some("os-keypairs") => keypairs::route(&cx, req, segs).await,
        Some("os-hypervisors" | "os-aggregates" | "os-services" | "os-availability-zone") => {
            hosts::route(&cx, req, segs).await
        }
        Some("limits" | "os-quota-sets") => limits::route(&cx, req, segs).await,
        _ => Err(not_found()),
    }
}

impl From<ComputeError> for ApiError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::Forbidden(m) => ApiError::Forbidden(m),
            ComputeError::NotFound(m) => ApiError::NotFound(m),
            ComputeError::BadRequest(m) => ApiError::BadRequest(m),
            ComputeError::Conflict(m) => ApiError::Conflict(m),
            ComputeError::OverQuota(m) => ApiError::Forbidden(m),
            ComputeError::NotImplemented(m) => ApiError::NotImplemented(m),
            ComputeError::Internal(source) => ApiError::Internal(source),
        }
    }
}
