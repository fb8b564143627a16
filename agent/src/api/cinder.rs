//! Cinder v3 over HTTP (under `/volume`, project in the path as Cinder has it): version
//! discovery, volumes (create, from an image, list/detail with filters, show, rename, extend,
//! delete), volume types (the node's pools) and quota sets, at microversion 3.0.

use super::error::ApiError;
use super::http::{empty, json, parse_json, query_pairs, read_body, timestamp, Body, MAX_JSON_BODY};
use super::Api;
use crate::model::volume::Volume;
use crate::storage::{NewVolume, StorageError};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// The only microversion served.
const MICROVERSION: &str = "3.0";

fn version(base: &str) -> Value {
    json!({"id": "v3.0", "status": "CURRENT", "version": MICROVERSION, "min_version": MICROVERSION,
           "updated": "2026-11-28T00:00:00Z",
           "links": [{"rel": "self", "href": format!("{base}/volume/v3/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]})
}

fn volume_json(v: &Volume, base: &str, admin: bool) -> Value {
    let href = format!("{base}/volume/v3/{}/volumes/{}", v.project_id, v.id);
    let mut j = json!({
        "id": v.id, "name": v.name, "description": v.description, "status": v.status.as_str(), "size": v.size,
        "availability_zone": "nova", "volume_type": v.volume_type, "snapshot_id": null,
        "source_volid": v.source_volid, "bootable": if v.image_id.is_some() { "true" } else { "false" },
        "encrypted": false, "multiattach": false, "attachments": [], "metadata": {},
        "replication_status": null, "consistencygroup_id": null, "user_id": v.user_id,
        "created_at": timestamp(v.created_at, true), "updated_at": timestamp(v.updated_at, true),
        "links": [{"rel": "self", "href": href}],
    });
    if let Some(i) = &v.image_id {
        j["volume_image_metadata"] = json!({"image_id": i});
    }
    if admin {
        j["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
        j["os-vol-host-attr:host"] = json!(format!("{}@{}#{}", v.node, v.volume_type, v.volume_type));
    }
    j
}

fn type_json(name: &str, kind: &str, default: bool) -> Value {
    json!({"id": name, "name": name, "description": format!("{kind} pool {name}"), "is_public": true,
           "extra_specs": {"volume_backend_name": name}, "os-volume-type-access:is_public": true,
           "qos_specs_id": null, "is_default": default})
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("Invalid input received: {}", msg.into()))
}

fn opt_string(m: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 255 => Ok(Some(s.clone())),
        Some(v) => Err(bad(format!("{k} must be a string of at most 255 characters, not {v}"))),
    }
}

fn size_of(v: &Value, k: &str) -> Result<u64, ApiError> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad(format!("{k} must be a positive integer"))),
        Value::String(s) => s.trim().parse().map_err(|_| bad(format!("{k} must be a positive integer"))),
        other => Err(bad(format!("{k} must be a positive integer, not {other}"))),
    }
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    let mut resp = match segs {
        [] if method == Method::GET => Ok(json(StatusCode::MULTIPLE_CHOICES, &json!({"versions": [version(&base)]}))),
        ["v3"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"version": version(&base)}))),
        ["v3", project, rest @ ..] => v3(api, req, project, rest, &base).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }?;
    resp.headers_mut().insert("openstack-api-version", HeaderValue::from_static("volume 3.0"));
    Ok(resp)
}

async fn v3(
    api: &Api,
    req: Request<Incoming>,
    project: &str,
    segs: &[&str],
    base: &str,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let auth = super::authenticate(api, &req)?;
    let admin = auth.is_admin();
    if !admin && auth.project.as_ref().map(|p| p.id.as_str()) != Some(project) {
        return Err(ApiError::Forbidden(format!("Policy doesn't allow access to project {project}.")));
    }
    let st = &api.storage;
    let query = query_pairs(req.uri().query());
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    match (&method, segs) {
        (&Method::GET, [which @ ("volumes" | "detail")]) | (&Method::GET, ["volumes", which @ "detail"]) => {
            let all = admin && q("all_tenants").is_some_and(|v| super::http::is_true(&v));
            let mut items: Vec<Volume> = st.list(&auth, all)?;
            if let Some(n) = q("name") {
                items.retain(|v| v.name == n);
            }
            if let Some(s) = q("status") {
                items.retain(|v| v.status.as_str() == s);
            }
            let detail = *which == "detail";
            let out: Vec<Value> = items
                .iter()
                .map(|v| {
                    let full = volume_json(v, base, admin);
                    if detail {
                        full
                    } else {
                        json!({"id": v.id, "name": v.name, "links": full["links"]})
                    }
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"volumes": out})))
        }
        (&Method::POST, ["volumes"]) => {
            let mut body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let Some(Value::Object(v)) = body.remove("volume") else {
                return Err(bad("a body with a \"volume\" object is required"));
            };
            for k in ["snapshot_id", "backup_id", "consistencygroup_id", "group_id", "scheduler_hints"] {
                if v.get(k).is_some_and(|x| !x.is_null()) {
                    return Err(bad(format!("{k} is not supported yet")));
                }
            }
            let new = NewVolume {
                name: opt_string(&v, "name")?.unwrap_or_default(),
                description: opt_string(&v, "description")?.unwrap_or_default(),
                size: v.get("size").filter(|s| !s.is_null()).map(|s| size_of(s, "size")).transpose()?,
                volume_type: opt_string(&v, "volume_type")?,
                image_id: opt_string(&v, "imageRef")?.or(opt_string(&v, "image_id")?),
                source_volid: opt_string(&v, "source_volid")?,
            };
            let vol = st.create(&auth, new).await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"volume": volume_json(&vol, base, admin)})))
        }
        (_, ["volumes", id]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"volume": volume_json(&st.get(&auth, id)?, base, admin)}))),
            Method::PUT => {
                let mut body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
                let Some(Value::Object(v)) = body.remove("volume") else {
                    return Err(bad("a body with a \"volume\" object is required"));
                };
                let vol = st.rename(&auth, id, opt_string(&v, "name")?, opt_string(&v, "description")?).await?;
                Ok(json(StatusCode::OK, &json!({"volume": volume_json(&vol, base, admin)})))
            }
            Method::DELETE => {
                st.delete(&auth, id).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::POST, ["volumes", id, "action"]) => {
            let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            match body.iter().next() {
                Some((k, v)) if k == "os-extend" => {
                    let n = v.get("new_size").ok_or_else(|| bad("os-extend needs new_size"))?;
                    st.extend(&auth, id, size_of(n, "new_size")?).await?;
                    Ok(empty(StatusCode::ACCEPTED))
                }
                Some((k, _)) => Err(bad(format!("action {k} is not supported yet"))),
                None => Err(bad("an action is required")),
            }
        }
        (&Method::GET, ["types"]) => {
            let types: Vec<Value> =
                st.types().iter().enumerate().map(|(i, p)| type_json(&p.name, p.spec.kind(), i == 0)).collect();
            Ok(json(StatusCode::OK, &json!({"volume_types": types})))
        }
        (&Method::GET, ["types", id]) => {
            let types = st.types();
            let found =
                if *id == "default" { types.first().copied() } else { types.iter().find(|p| p.name == *id).copied() };
            let p = found.ok_or_else(|| ApiError::NotFound(format!("Volume type {id} could not be found.")))?;
            let default = types.first().is_some_and(|d| d.name == p.name);
            Ok(json(StatusCode::OK, &json!({"volume_type": type_json(&p.name, p.spec.kind(), default)})))
        }
        (&Method::GET, ["os-quota-sets", pid]) => {
            if !admin && auth.project.as_ref().map(|p| p.id.as_str()) != Some(*pid) {
                return Err(ApiError::Forbidden("Only the admin role may read other projects' quotas.".into()));
            }
            let quota = st.quota();
            let (n, gb) = st.usage(pid)?;
            let with_usage = q("usage").is_some_and(|v| super::http::is_true(&v));
            let set = if with_usage {
                json!({"id": pid, "volumes": {"limit": quota.volumes, "in_use": n, "reserved": 0, "allocated": 0},
                       "gigabytes": {"limit": quota.gigabytes, "in_use": gb, "reserved": 0, "allocated": 0}})
            } else {
                json!({"id": pid, "volumes": quota.volumes, "gigabytes": quota.gigabytes})
            };
            Ok(json(StatusCode::OK, &json!({"quota_set": set})))
        }
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unscoped => ApiError::Unauthorized,
            StorageError::Forbidden(m) => ApiError::Forbidden(m),
            StorageError::NotFound(_) => ApiError::NotFound(e.to_string()),
            StorageError::BadRequest(m) => ApiError::BadRequest(m),
            StorageError::Conflict(m) => ApiError::Conflict(m),
            StorageError::OverQuota(m) => ApiError::OverLimit(m),
            StorageError::Unavailable(m) => ApiError::Unavailable(m),
            StorageError::Internal(source) => ApiError::Internal(source),
        }
    }
}
