//! Cinder v3 over HTTP (under `/volume`, project in the path as Cinder has it): version
//! discovery and routing here; each resource in its own module (volumes, their actions,
//! snapshots, metadata, types and pools, quotas and limits), each given a [`Ctx`].
//!
//! Microversions 3.0 to [`MAX`]: each change up to it served for the resources offered (README's
//! microversion table); a change to a resource not offered (backups, groups, transfers,
//! manageable volumes, replication, service changes) changes nothing here, those resources
//! answering 404 or 501 at every microversion.

mod actions;
mod attachments;
mod filters;
mod messages;
mod metadata;
mod paging;
mod quotas;
mod snapshots;
mod types;
mod volumes;

use super::error::ApiError;
use super::http::{json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::identity::Auth;
use crate::model::volume::{Snapshot, Volume};
use crate::storage::StorageError;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use paging::{Key, Listed};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// Volumes and snapshots sort and page alike.
macro_rules! listed {
    ($t:ty) => {
        impl Listed for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn key(&self, key: &str) -> Option<Key<'_>> {
                Some(match key {
                    "id" => Key::Text(&self.id),
                    "name" => Key::Text(&self.name),
                    "status" => Key::Text(self.status.as_str()),
                    "size" => Key::Number(self.size),
                    "created_at" => Key::Number(self.created_at),
                    "updated_at" => Key::Number(self.updated_at),
                    _ => return None,
                })
            }
        }
    };
}
listed!(Volume);
listed!(Snapshot);

/// The highest microversion served: 3.`MAX`.
pub(super) const MAX: u32 = 65;

fn version(base: &str) -> Value {
    json!({"id": "v3.0", "status": "CURRENT", "version": format!("3.{MAX}"), "min_version": "3.0",
           "updated": "2026-11-28T00:00:00Z",
           "links": [{"rel": "self", "href": format!("{base}/volume/v3/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]})
}

/// What every resource handler gets: the service, the caller, the project of the path, the
/// base URL and the query.
pub(super) struct Ctx<'a> {
    api: &'a Api,
    auth: std::sync::Arc<Auth>,
    admin: bool,
    project: String,
    base: String,
    query: Vec<(String, String)>,
    /// The negotiated microversion's minor number (3.`mv`).
    mv: u32,
}

impl Ctx<'_> {
    /// Whether the request's microversion is 3.`minor` or later.
    fn at(&self, minor: u32) -> bool {
        self.mv >= minor
    }

    fn q(&self, key: &str) -> Option<String> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn flag(&self, key: &str) -> bool {
        self.q(key).is_some_and(|v| super::http::is_true(&v))
    }

    /// The project's base URL (`…/volume/v3/{project}`).
    fn project_url(&self) -> String {
        format!("{}/volume/v3/{}", self.base, self.project)
    }

    /// Only the admin role: Cinder's admin actions.
    fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("Policy doesn't allow {action} to be performed.")))
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("Invalid input received: {}", msg.into()))
}

/// A JSON request body in its typed form; a body that does not fit is Cinder's 400.
async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = read_body(req.into_body(), MAX_JSON_BODY).await?;
    parse_json(&bytes).map_err(|e| bad(e.to_string()))
}

/// A name or description: a string of at most 255 characters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.chars().count() > 255 {
            return Err(serde::de::Error::custom("a string of at most 255 characters is expected"));
        }
        Ok(Text(s))
    }
}

/// A name and a description, under these names or Cinder's older `display_*` ones.
#[derive(Deserialize)]
pub struct Naming {
    #[serde(default)]
    name: Option<Text>,
    #[serde(default)]
    display_name: Option<Text>,
    #[serde(default)]
    description: Option<Text>,
    #[serde(default)]
    display_description: Option<Text>,
}

impl Naming {
    fn name(&self) -> Option<String> {
        self.name.as_ref().or(self.display_name.as_ref()).map(|t| t.0.clone())
    }
    fn description(&self) -> Option<String> {
        self.description.as_ref().or(self.display_description.as_ref()).map(|t| t.0.clone())
    }
}

/// A size in GiB: a positive integer, or a string holding one (Cinder takes both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gib(pub u64);

impl<'de> Deserialize<'de> for Gib {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parsed = match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed.filter(|n| *n > 0).map(Gib).ok_or_else(|| serde::de::Error::custom("a positive integer is expected"))
    }
}

/// The microversion a request asks for (`OpenStack-API-Version: volume 3.X`; `latest`);
/// 406 beyond what is served, 400 when it does not parse.
fn microversion(req: &Request<Incoming>) -> Result<u32, ApiError> {
    let asked = req
        .headers()
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("volume ").map(str::trim)));
    let Some(v) = asked else { return Ok(0) };
    if v == "latest" {
        return Ok(MAX);
    }
    let minor = match v.split_once('.') {
        Some(("3", m)) => m.parse::<u32>().map_err(|_| bad(format!("Invalid API version {v}")))?,
        Some((major, _)) if major.parse::<u32>().is_ok() => u32::MAX,
        _ => return Err(ApiError::BadRequest(format!("API version {v} is not a valid version (X.Y)."))),
    };
    if minor > MAX {
        return Err(ApiError::NotAcceptable(format!(
            "Version {v} is not supported by the API. Minimum is 3.0 and maximum is 3.{MAX}."
        )));
    }
    Ok(minor)
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    let mv = microversion(&req)?;
    let mut resp = match segs {
        [] if method == Method::GET => Ok(json(StatusCode::MULTIPLE_CHOICES, &json!({"versions": [version(&base)]}))),
        ["v3"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"versions": [version(&base)]}))),
        // Default types (3.62) are not under a project.
        ["v3", rest @ ..] if mv >= 62 && rest.first() == Some(&"default-types") => {
            let auth = super::authenticate(api, &req)?;
            let project = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            let query = query_pairs(req.uri().query());
            let ctx = Ctx { api, admin: auth.is_admin(), auth, project, base, query, mv };
            types::default_types(&ctx, req, rest).await
        }
        ["v3", project, rest @ ..] => {
            let auth = super::authenticate(api, &req)?;
            let admin = auth.is_admin();
            if !admin && auth.project.as_ref().map(|p| p.id.as_str()) != Some(*project) {
                return Err(ApiError::Forbidden(format!("Policy doesn't allow access to project {project}.")));
            }
            if req.uri().path().ends_with('/') {
                return Err(ApiError::NotFound("The resource could not be found.".into()));
            }
            let query = query_pairs(req.uri().query());
            let ctx = Ctx { api, auth, admin, project: (*project).to_owned(), base, query, mv };
            v3(&ctx, req, rest).await
        }
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }?;
    let hs = resp.headers_mut();
    if let Ok(h) = HeaderValue::from_str(&format!("volume 3.{mv}")) {
        hs.insert("openstack-api-version", h);
    }
    hs.insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    Ok(resp)
}

async fn v3(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    match segs {
        ["volumes", id, "action"] => actions::volume(ctx, req, id).await,
        ["snapshots", id, "action"] => actions::snapshot(ctx, req, id).await,
        ["volumes" | "snapshots", _, "metadata", ..] => metadata::route(ctx, req, segs).await,
        ["volumes", ..] | ["detail"] => volumes::route(ctx, req, segs).await,
        ["snapshots", ..] => snapshots::route(ctx, req, segs).await,
        ["workers", "cleanup"] if ctx.at(24) && req.method() == Method::POST => types::cleanup(ctx),
        ["types", ..]
        | ["scheduler-stats", "get_pools"]
        | ["os-availability-zone"]
        | ["extensions"]
        | ["clusters", ..]
        | ["resource_filters"]
        | ["os-services"] => types::route(ctx, req, segs),
        ["os-quota-sets", ..] | ["limits"] => quotas::route(ctx, req, segs),
        ["messages", ..] if ctx.at(3) => messages::route(ctx, req, segs).await,
        ["attachments", ..] if ctx.at(27) => attachments::route(ctx, req, segs).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unscoped => ApiError::Unauthorized,
            StorageError::Forbidden(m) => ApiError::Forbidden(m),
            StorageError::NotFound(_)
            | StorageError::SnapshotNotFound(_)
            | StorageError::MessageNotFound(_)
            | StorageError::AttachmentNotFound(_)
            | StorageError::DefaultTypeNotFound(_)
            | StorageError::TypeNotFound(_)
            | StorageError::MetadataKeyNotFound(_) => ApiError::NotFound(e.to_string()),
            StorageError::BadRequest(m) => ApiError::BadRequest(m),
            StorageError::Conflict(m) => ApiError::Conflict(m),
            StorageError::OverQuota(m) => ApiError::OverLimit(m),
            StorageError::Stale(m) => ApiError::PreconditionFailed(m),
            StorageError::Unavailable(m) => ApiError::Unavailable(m),
            StorageError::Internal(source) => ApiError::Internal(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Gib, Text};

    #[test]
    fn sizes_and_texts_parse_as_cinder_takes_them() {
        assert_eq!(serde_json::from_str::<Gib>("2").unwrap(), Gib(2));
        assert_eq!(serde_json::from_str::<Gib>("\" 3 \"").unwrap(), Gib(3));
        for bad in ["0", "-1", "1.5", "\"x\"", "null", "true"] {
            assert!(serde_json::from_str::<Gib>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Text>(&format!("\"{}\"", "a".repeat(255))).is_ok());
        assert!(serde_json::from_str::<Text>(&format!("\"{}\"", "a".repeat(256))).is_err());
    }
}
