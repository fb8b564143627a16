//! Cinder v3 over HTTP (under `/volume`, project in the path as Cinder has it): version
//! discovery, volumes (create, from an image, a volume or a snapshot, list/detail with filters,
//! show, rename, delete; actions extend and the attachment bookkeeping os-reserve, os-attach,
//! os-begin_detaching, os-detach and their undos), snapshots, volume types (the node's pools),
//! quota sets and the pools every node reports (scheduler-stats), at microversion 3.0.

use super::error::ApiError;
use super::http::{empty, json, parse_json, query_pairs, read_body, timestamp, Body, MAX_JSON_BODY};
use super::Api;
use crate::model::storage::PoolRecord;
use crate::model::volume::{Snapshot, Volume, VolumeStatus};
use crate::state::metadata::{MetadataChange, MetadataOf};
use crate::storage::{NewVolume, StorageError};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod paging;

use paging::{Key, Listed};

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

/// The only microversion served.
const MICROVERSION: &str = "3.0";

fn version(base: &str) -> Value {
    json!({"id": "v3.0", "status": "CURRENT", "version": MICROVERSION, "min_version": MICROVERSION,
           "updated": "2026-11-28T00:00:00Z",
           "links": [{"rel": "self", "href": format!("{base}/volume/v3/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]})
}

/// Which answer a volume is part of: a create or update (Cinder's base view: no image metadata,
/// no admin attributes), or a show or listing (with them; admin ones for admins).
#[derive(Clone, Copy)]
enum View {
    Written,
    Shown { admin: bool },
}

fn volume_json(v: &Volume, base: &str, view: View) -> Value {
    let href = format!("{base}/volume/v3/{}/volumes/{}", v.project_id, v.id);
    let mut j = json!({
        "id": v.id, "name": v.name, "description": v.description, "status": v.status.as_str(), "size": v.size,
        "availability_zone": "nova", "volume_type": v.volume_type, "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid, "bootable": if v.image_id.is_some() { "true" } else { "false" },
        "encrypted": false, "multiattach": false, "metadata": v.metadata,
        "attachments": v.attachments.iter().map(|a| json!({
            "id": a.id, "attachment_id": a.id, "volume_id": v.id, "server_id": a.server_id,
            "host_name": a.host, "device": a.device, "attached_at": timestamp(a.attached_at, true)})).collect::<Vec<_>>(),
        "replication_status": null, "consistencygroup_id": null, "user_id": v.user_id,
        "created_at": timestamp(v.created_at, true), "updated_at": timestamp(v.updated_at, true),
        "links": [{"rel": "self", "href": href}],
    });
    let View::Shown { admin } = view else { return j };
    if let Some(i) = &v.image_id {
        j["volume_image_metadata"] = json!({"image_id": i});
    }
    if admin {
        j["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
        j["os-vol-host-attr:host"] = json!(format!("{}@{}#{}", v.node, v.volume_type, v.volume_type));
    }
    j
}

/// A snapshot: Cinder's base view for a create, an update or a plain listing; with the
/// extended attributes (progress, project) for a show or a detailed listing.
fn snapshot_json(s: &Snapshot, extended: bool) -> Value {
    let mut j = json!({
        "id": s.id, "name": s.name, "description": s.description, "volume_id": s.volume_id,
        "status": s.status.as_str(), "size": s.size, "metadata": s.metadata,
        "created_at": timestamp(s.created_at, true), "updated_at": timestamp(s.updated_at, true),
    });
    if extended {
        j["os-extended-snapshot-attributes:progress"] =
            json!(if s.status == VolumeStatus::Available { "100%" } else { "0%" });
        j["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
    }
    j
}

/// A pool as Cinder's scheduler-stats show it (`node@pool#pool`, capacities in GiB).
fn pool_json(node: &str, p: &PoolRecord, detail: bool) -> Value {
    let name = format!("{node}@{}#{}", p.name, p.name);
    if !detail {
        return json!({"name": name});
    }
    let gib = |b: u64| (b as f64 / (1u64 << 30) as f64 * 100.0).round() / 100.0;
    json!({"name": name, "capabilities": {
        "volume_backend_name": p.name, "storage_protocol": p.kind, "driver_version": env!("CARGO_PKG_VERSION"),
        "vendor_name": "Cairn", "pool_name": p.name, "total_capacity_gb": gib(p.info.capacity),
        "free_capacity_gb": gib(p.info.available), "allocated_capacity_gb": gib(p.info.allocation),
        "reserved_percentage": 0, "thin_provisioning_support": p.kind == "dir",
        "active": p.info.active, "error": p.error}})
}

/// The object under `key` in a request body.
async fn object(req: Request<Incoming>, key: &str) -> Result<Map<String, Value>, ApiError> {
    let mut body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
    match body.remove(key) {
        Some(Value::Object(v)) => Ok(v),
        _ => Err(bad(format!("a body with a \"{key}\" object is required"))),
    }
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

/// A `metadata` object of strings (absent: empty).
fn metadata_of(m: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    match m.get("metadata") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| bad(format!("metadata must be an object of strings: {e}")))
        }
    }
}

/// Most metadata items a volume or snapshot may have (Cinder does not limit them; this keeps a
/// record bounded).
const METADATA_ITEMS: usize = 128;

/// `/{volumes|snapshots}/{id}/metadata[/{key}]`: read, replace (`PUT`), merge (`POST`); one key
/// read, set or deleted.
async fn metadata(
    api: &Api,
    auth: &crate::identity::Auth,
    req: Request<Incoming>,
    of: MetadataOf,
    id: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let st = &api.storage;
    let current = |st: &crate::storage::Storage| -> Result<BTreeMap<String, String>, ApiError> {
        Ok(match of {
            MetadataOf::Snapshot => st.get_snapshot(auth, id)?.metadata,
            _ => st.get(auth, id)?.metadata,
        })
    };
    let change = |replace, set, remove| MetadataChange { replace, set, remove, max_items: METADATA_ITEMS };
    let method = req.method().clone();
    match (method, rest) {
        (Method::GET, []) => Ok(json(StatusCode::OK, &json!({"metadata": current(st)?}))),
        (m @ (Method::PUT | Method::POST), []) => {
            let body = object_body(req).await?;
            let set = metadata_of(&body)?;
            st.set_metadata(auth, of, id, change(m == Method::PUT, set, vec![])).await?;
            Ok(json(StatusCode::OK, &json!({"metadata": current(st)?})))
        }
        (Method::GET, [key]) => {
            let all = current(st)?;
            let v = all.get(*key).ok_or_else(|| ApiError::NotFound(format!("Metadata key {key} not found.")))?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: v }})))
        }
        (Method::PUT, [key]) => {
            let body = object_body(req).await?;
            let meta: BTreeMap<String, String> = match body.get("meta") {
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(format!("meta: {e}")))?,
                None => return Err(bad("The body needs a \"meta\" object.")),
            };
            if meta.len() != 1 || !meta.contains_key(*key) {
                return Err(bad("Request body and URI mismatch"));
            }
            st.set_metadata(auth, of, id, change(false, meta.clone(), vec![])).await?;
            Ok(json(StatusCode::OK, &json!({ "meta": meta })))
        }
        (Method::DELETE, [key]) => {
            st.set_metadata(auth, of, id, change(false, BTreeMap::new(), vec![(*key).to_owned()])).await?;
            Ok(empty(StatusCode::OK))
        }
        (m, [] | [_]) => Err(super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

async fn object_body(req: Request<Incoming>) -> Result<Map<String, Value>, ApiError> {
    parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)
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
        ["v3"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"versions": [version(&base)]}))),
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
    if req.uri().path().ends_with('/') {
        return Err(ApiError::NotFound("The resource could not be found.".into()));
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
            // `metadata={"k": "v"}`: volumes having every pair. Clients send a JSON object or, as
            // the openstack client does, a Python dict literal (`{'k': 'v'}`), which Cinder reads.
            if let Some(m) = q("metadata") {
                let want: BTreeMap<String, String> = serde_json::from_str(&m)
                    .or_else(|_| serde_json::from_str(&m.replace('\'', "\"")))
                    .map_err(|e| bad(format!("metadata must be an object of strings: {e}")))?;
                items.retain(|v| want.iter().all(|(k, val)| v.metadata.get(k) == Some(val)));
            }
            let detail = *which == "detail";
            let path = if detail { "volumes/detail" } else { "volumes" };
            let (items, next) = paging::page(items, &q, &format!("{base}/volume/v3/{project}"), path)?;
            let out: Vec<Value> = items
                .iter()
                .map(|v| {
                    let full = volume_json(v, base, View::Shown { admin });
                    if detail {
                        full
                    } else {
                        json!({"id": v.id, "name": v.name, "links": full["links"]})
                    }
                })
                .collect();
            let mut body = json!({"volumes": out});
            if let Some(next) = next {
                body["volumes_links"] = next;
            }
            Ok(json(StatusCode::OK, &body))
        }
        (&Method::POST, ["volumes"]) => {
            let v = object(req, "volume").await?;
            for k in ["backup_id", "consistencygroup_id", "group_id", "scheduler_hints"] {
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
                snapshot_id: opt_string(&v, "snapshot_id")?,
                metadata: metadata_of(&v)?,
            };
            let vol = st.create(&auth, new).await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"volume": volume_json(&vol, base, View::Written)})))
        }
        (_, ["volumes", id]) => match method {
            Method::GET => Ok(json(
                StatusCode::OK,
                &json!({"volume": volume_json(&st.get(&auth, id)?, base, View::Shown { admin })}),
            )),
            Method::PUT => {
                let v = object(req, "volume").await?;
                let (name, description) = (opt_string(&v, "name")?, opt_string(&v, "description")?);
                if v.contains_key("metadata") {
                    let change = MetadataChange {
                        replace: true,
                        set: metadata_of(&v)?,
                        remove: vec![],
                        max_items: METADATA_ITEMS,
                    };
                    st.get(&auth, id)?;
                    st.set_metadata(&auth, MetadataOf::Volume, id, change).await?;
                }
                let vol = st.rename(&auth, id, name, description).await?;
                Ok(json(StatusCode::OK, &json!({"volume": volume_json(&vol, base, View::Written)})))
            }
            Method::DELETE => {
                st.delete(&auth, id).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (_, ["volumes", id, "metadata", rest @ ..]) => metadata(api, &auth, req, MetadataOf::Volume, id, rest).await,
        (_, ["snapshots", id, "metadata", rest @ ..]) => {
            metadata(api, &auth, req, MetadataOf::Snapshot, id, rest).await
        }
        (&Method::GET, ["os-availability-zone"]) => Ok(json(
            StatusCode::OK,
            &json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]}),
        )),
        (&Method::POST, ["volumes", id, "action"]) => {
            let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            use VolumeStatus::{Attaching, Available, Detaching, InUse};
            let (action, arg) = match body.iter().next() {
                Some((k, v)) if body.len() == 1 => (k.as_str(), v.as_object().cloned().unwrap_or_default()),
                Some(_) => return Err(bad("one action at a time")),
                None => return Err(bad("an action is required")),
            };
            match action {
                "os-extend" => {
                    let n = arg.get("new_size").ok_or_else(|| bad("os-extend needs new_size"))?;
                    st.extend(&auth, id, size_of(n, "new_size")?).await?;
                }
                "os-reserve" => st.transition(&auth, id, Available, Attaching).await?,
                "os-unreserve" => st.transition(&auth, id, Attaching, Available).await?,
                "os-begin_detaching" => st.transition(&auth, id, InUse, Detaching).await?,
                "os-reset_status" => {
                    let to = opt_string(&arg, "status")?.ok_or_else(|| bad("os-reset_status needs a status"))?;
                    let to = VolumeStatus::parse(&to).ok_or_else(|| bad(format!("{to} is not a volume status")))?;
                    st.reset_status(&auth, id, to).await?;
                }
                "os-roll_detaching" => st.transition(&auth, id, Detaching, InUse).await?,
                "os-attach" => {
                    let server = opt_string(&arg, "instance_uuid")?
                        .ok_or_else(|| bad("os-attach needs instance_uuid (attaching to a host is not supported)"))?;
                    let device = opt_string(&arg, "mountpoint")?.ok_or_else(|| bad("os-attach needs a mountpoint"))?;
                    let host = opt_string(&arg, "host_name")?.unwrap_or_default();
                    st.attach(&auth, id, &server, &host, &device).await?;
                }
                "os-detach" => st.detach(&auth, id, opt_string(&arg, "attachment_id")?).await?,
                other => return Err(bad(format!("action {other} is not supported"))),
            }
            Ok(empty(StatusCode::ACCEPTED))
        }
        // Snapshot lists have the same fields with or without detail in Cinder.
        (&Method::GET, ["snapshots"]) | (&Method::GET, ["snapshots", "detail"]) => {
            let all = admin && q("all_tenants").is_some_and(|v| super::http::is_true(&v));
            let mut items = st.list_snapshots(&auth, all)?;
            if let Some(n) = q("name") {
                items.retain(|s| s.name == n);
            }
            if let Some(s) = q("status") {
                items.retain(|x| x.status.as_str() == s);
            }
            if let Some(v) = q("volume_id") {
                items.retain(|x| x.volume_id == v);
            }
            let path = if segs.len() == 2 { "snapshots/detail" } else { "snapshots" };
            let (items, next) = paging::page(items, &q, &format!("{base}/volume/v3/{project}"), path)?;
            let out: Vec<Value> = items.iter().map(|s| snapshot_json(s, segs.len() == 2)).collect();
            let mut body = json!({"snapshots": out});
            if let Some(next) = next {
                body["snapshots_links"] = next;
            }
            Ok(json(StatusCode::OK, &body))
        }
        (&Method::POST, ["snapshots"]) => {
            let s = object(req, "snapshot").await?;
            let volume = opt_string(&s, "volume_id")?.ok_or_else(|| bad("a snapshot needs a volume_id"))?;
            let snap = st
                .create_snapshot(
                    &auth,
                    &volume,
                    opt_string(&s, "name")?.unwrap_or_default(),
                    opt_string(&s, "description")?.unwrap_or_default(),
                    metadata_of(&s)?,
                )
                .await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"snapshot": snapshot_json(&snap, false)})))
        }
        (_, ["snapshots", id]) => match method {
            Method::GET => {
                Ok(json(StatusCode::OK, &json!({"snapshot": snapshot_json(&st.get_snapshot(&auth, id)?, true)})))
            }
            Method::PUT => {
                let s = object(req, "snapshot").await?;
                let snap =
                    st.update_snapshot(&auth, id, opt_string(&s, "name")?, opt_string(&s, "description")?).await?;
                Ok(json(StatusCode::OK, &json!({"snapshot": snapshot_json(&snap, false)})))
            }
            Method::DELETE => {
                st.delete_snapshot(&auth, id).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["scheduler-stats", "get_pools"]) => {
            if !admin {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow scheduler_extension:scheduler_stats:get_pools to be performed.".into(),
                ));
            }
            let detail = q("detail").is_some_and(|v| super::http::is_true(&v));
            let pools: Vec<Value> = st.pool_records()?.iter().map(|(n, p)| pool_json(n, p, detail)).collect();
            Ok(json(StatusCode::OK, &json!({"pools": pools})))
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
        (&Method::GET, ["os-quota-sets", pid, rest @ ..]) if rest.is_empty() || rest == ["defaults"] => {
            if !admin && auth.project.as_ref().map(|p| p.id.as_str()) != Some(*pid) {
                return Err(ApiError::Forbidden("Only the admin role may read other projects' quotas.".into()));
            }
            let quota = st.quota();
            let u = st.usage(pid)?;
            let with_usage = q("usage").is_some_and(|v| super::http::is_true(&v));
            let entry = |limit: u64, used: u64| {
                if with_usage {
                    json!({"limit": limit, "in_use": used, "reserved": 0, "allocated": 0})
                } else {
                    json!(limit)
                }
            };
            // Backups and groups are not offered: 0. One volume may take the whole allowance (-1).
            let set = json!({"id": pid, "volumes": entry(quota.volumes, u.volumes),
                             "snapshots": entry(quota.snapshots, u.snapshots),
                             "gigabytes": entry(quota.gigabytes, u.gigabytes),
                             "backups": entry(0, 0), "backup_gigabytes": entry(0, 0), "groups": entry(0, 0),
                             "per_volume_gigabytes": if with_usage { json!({"limit": -1, "in_use": 0, "reserved": 0, "allocated": 0}) } else { json!(-1) }});
            Ok(json(StatusCode::OK, &json!({"quota_set": set})))
        }
        (&Method::GET, ["limits"]) => {
            let (quota, u) = (st.quota(), st.usage(project)?);
            Ok(json(
                StatusCode::OK,
                &json!({"limits": {"rate": [], "absolute": {
                "maxTotalVolumes": quota.volumes, "maxTotalSnapshots": quota.snapshots,
                "maxTotalVolumeGigabytes": quota.gigabytes, "maxTotalBackups": 0, "maxTotalBackupGigabytes": 0,
                "totalVolumesUsed": u.volumes, "totalSnapshotsUsed": u.snapshots, "totalGigabytesUsed": u.gigabytes,
                "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}}),
            ))
        }
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
            | StorageError::TypeNotFound(_)
            | StorageError::MetadataKeyNotFound(_) => ApiError::NotFound(e.to_string()),
            StorageError::BadRequest(m) => ApiError::BadRequest(m),
            StorageError::Conflict(m) => ApiError::Conflict(m),
            StorageError::OverQuota(m) => ApiError::OverLimit(m),
            StorageError::Unavailable(m) => ApiError::Unavailable(m),
            StorageError::Internal(source) => ApiError::Internal(source),
        }
    }
}
