//! `/volumes`: list (`/volumes`, `/volumes/detail`, filters; paging), summary (3.12), create
//! (empty, from an image, a volume or a snapshot), show, update (name, description, metadata),
//! delete (`cascade` takes its snapshots along; `force` from 3.23). By microversion: the
//! `bootable` filter read as a boolean (3.2), `glance_metadata` filter (3.4), `group_id` filter
//! (3.10: no volume is in a group), `provider_id` for admins (3.21), only known filters (3.31),
//! inexact filters (3.34), summary metadata (3.36), `count` (3.45), `shared_targets` and
//! `service_uuid` (3.48), strict bodies (3.53), time comparisons on `created_at` and
//! `updated_at` (3.60).

use super::super::http::{empty, json, timestamp};
use super::filters::Filters;
use super::{body, paging, ApiError, Body, Ctx, Gib, Naming};
use crate::model::volume::Volume;
use crate::state::metadata::{MetadataChange, MetadataOf};
use crate::storage::NewVolume;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Which answer a volume is part of: a create or update (Cinder's base view: no image metadata,
/// no admin attributes), or a show or listing (with them; admin ones for admins).
#[derive(Clone, Copy)]
enum View {
    Written,
    Shown { admin: bool },
}

/// The UUID Cinder shows of the volume service holding a volume (3.48): one per node and pool.
fn service_uuid(v: &Volume) -> String {
    let d =
        ring::digest::digest(&ring::digest::SHA256, format!("cinder-volume\0{}@{}", v.node, v.volume_type).as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

fn volume_json(ctx: &Ctx, v: &Volume, view: View) -> Value {
    let base = &ctx.base;
    let href = format!("{base}/volume/v3/{}/volumes/{}", v.project_id, v.id);
    let mut j = json!({
        "id": v.id, "name": v.name, "description": v.description, "status": v.status.as_str(), "size": v.size,
        "availability_zone": "nova", "volume_type": v.volume_type, "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid, "bootable": if v.is_bootable() { "true" } else { "false" },
        "encrypted": false, "multiattach": false, "metadata": v.metadata,
        "attachments": v.attachments.iter().map(|a| json!({
            "id": v.id, "attachment_id": a.id, "volume_id": v.id, "server_id": a.server_id,
            "host_name": a.host, "device": a.device, "attached_at": timestamp(a.attached_at, true)})).collect::<Vec<_>>(),
        "replication_status": null, "consistencygroup_id": null, "user_id": v.user_id,
        "created_at": timestamp(v.created_at, true), "updated_at": timestamp(v.updated_at, true),
        "links": [{"rel": "self", "href": href}],
    });
    if ctx.at(48) {
        j["shared_targets"] = json!(false);
        j["service_uuid"] = json!(service_uuid(v));
    }
    if ctx.at(63) {
        j["volume_type_id"] = json!(v.volume_type);
    }
    if ctx.at(65) {
        j["consumes_quota"] = json!(true);
    }
    let View::Shown { admin } = view else { return j };
    let mut image = v.image_metadata.clone();
    if let Some(i) = &v.image_id {
        image.entry("image_id".into()).or_insert_with(|| i.clone());
    }
    if !image.is_empty() {
        j["volume_image_metadata"] = json!(image);
    }
    if admin {
        j["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
        j["os-vol-host-attr:host"] = json!(format!("{}@{}#{}", v.node, v.volume_type, v.volume_type));
        if ctx.at(21) {
            j["provider_id"] = Value::Null;
        }
        if ctx.at(61) {
            j["cluster_name"] = Value::Null;
        }
    }
    j
}

#[derive(Deserialize)]
struct CreateRequest {
    volume: serde_json::Map<String, Value>,
}

/// The fields of a create from 3.53 (Cinder's schema; before it, others were ignored).
const CREATE_FIELDS: &[&str] = &[
    "name",
    "display_name",
    "description",
    "display_description",
    "size",
    "volume_type",
    "imageRef",
    "image_id",
    "source_volid",
    "snapshot_id",
    "metadata",
    "availability_zone",
    "multiattach",
    "backup_id",
    "consistencygroup_id",
    "group_id",
    "scheduler_hints",
];

/// The fields of an update; from 3.53 one of them is needed and no other is taken.
const UPDATE_FIELDS: &[&str] = &["name", "display_name", "description", "display_description", "metadata"];

/// A request object in its typed form, its fields checked from 3.53.
fn strict<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    o: serde_json::Map<String, Value>,
    known: &[&str],
) -> Result<T, ApiError> {
    if ctx.at(53) {
        if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(super::bad(format!("Additional properties are not allowed ('{k}' was unexpected)")));
        }
    }
    serde_json::from_value(Value::Object(o)).map_err(|e| super::bad(e.to_string()))
}

/// A new volume; `display_*` are Cinder's older names.
#[derive(Deserialize)]
struct CreateBody {
    #[serde(flatten)]
    naming: Naming,
    #[serde(default)]
    size: Option<Gib>,
    #[serde(default)]
    volume_type: Option<String>,
    #[serde(default, rename = "imageRef")]
    image_ref: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    source_volid: Option<String>,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    multiattach: Option<bool>,
    #[serde(default)]
    backup_id: Option<String>,
    #[serde(default)]
    consistencygroup_id: Option<String>,
    #[serde(default)]
    group_id: Option<String>,
}

#[derive(Deserialize)]
struct UpdateRequest {
    volume: serde_json::Map<String, Value>,
}
#[derive(Deserialize)]
struct UpdateBody {
    #[serde(flatten)]
    naming: Naming,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

fn new_volume(b: CreateBody) -> Result<NewVolume, ApiError> {
    let unsupported = [
        ("backup_id", b.backup_id.is_some()),
        ("consistencygroup_id", b.consistencygroup_id.is_some()),
        ("group_id", b.group_id.is_some()),
    ];
    if let Some((k, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(super::bad(format!("{k} is not supported yet")));
    }
    if b.multiattach == Some(true) {
        return Err(super::bad("multiattach volumes are not supported yet"));
    }
    if b.availability_zone.as_deref().is_some_and(|z| z != "nova") {
        return Err(super::bad(format!("Availability zone '{}' is invalid.", b.availability_zone.unwrap_or_default())));
    }
    Ok(NewVolume {
        name: b.naming.name().unwrap_or_default(),
        description: b.naming.description().unwrap_or_default(),
        size: b.size.map(|s| s.0),
        volume_type: b.volume_type,
        image_id: b.image_ref.or(b.image_id),
        source_volid: b.source_volid,
        snapshot_id: b.snapshot_id,
        metadata: b.metadata.unwrap_or_default(),
    })
}

/// A `metadata`-style filter: a JSON object of strings, or (as the openstack client sends it) a
/// Python dict literal, which Cinder reads too.
pub(super) fn pairs(k: &str, m: &str) -> Result<BTreeMap<String, String>, ApiError> {
    serde_json::from_str(m)
        .or_else(|_| serde_json::from_str(&m.replace('\'', "\"")))
        .map_err(|e| super::bad(format!("{k} must be an object of strings: {e}")))
}

/// A time filter (3.60): `op:time`, comma-separated, each of gt, gte, lt, lte, eq, neq.
fn time_filter(k: &str, spec: &str) -> Result<Vec<(String, u64)>, ApiError> {
    spec.split(',')
        .map(|part| {
            let (op, t) = part
                .split_once(':')
                .filter(|(op, _)| ["gt", "gte", "lt", "lte", "eq", "neq"].contains(op))
                .ok_or_else(|| {
                super::bad(format!("{k}: {part} is not op:time (op gt, gte, lt, lte, eq or neq)"))
            })?;
            let at = super::super::http::parse_timestamp(t)
                .ok_or_else(|| super::bad(format!("{k}: {t} is not an ISO 8601 time")))?;
            Ok((op.to_owned(), at))
        })
        .collect()
}

fn time_ok(have: u64, conds: &[(String, u64)]) -> bool {
    conds.iter().all(|(op, t)| match op.as_str() {
        "gt" => have > *t,
        "gte" => have >= *t,
        "lt" => have < *t,
        "lte" => have <= *t,
        "eq" => have == *t,
        _ => have != *t,
    })
}

/// The caller's volumes the query's filters keep.
fn filtered(ctx: &Ctx) -> Result<Vec<Volume>, ApiError> {
    let f = Filters::of(ctx, "volume")?;
    let all = ctx.admin && ctx.flag("all_tenants");
    let mut items: Vec<Volume> = ctx.api.storage.list(&ctx.auth, all)?;
    if let Some(p) = ctx.q("project_id").filter(|_| all) {
        items.retain(|v| v.project_id == p);
    }
    items.retain(|v| {
        f.matches(|k| match k {
            "name" => Some(v.name.clone()),
            "status" => Some(v.status.as_str().to_owned()),
            "availability_zone" => Some("nova".into()),
            "size" => Some(v.size.to_string()),
            // No volume migrates here: a migration status matches none.
            "migration_status" => Some(String::new()),
            _ => None,
        })
    });
    if let Some(m) = f.exact("metadata") {
        let want = pairs("metadata", m)?;
        items.retain(|v| want.iter().all(|(k, val)| v.metadata.get(k) == Some(val)));
    }
    if let Some(m) = f.exact("glance_metadata").filter(|_| ctx.at(4)) {
        let want = pairs("glance_metadata", m)?;
        items.retain(|v| want.iter().all(|(k, val)| v.image_metadata.get(k) == Some(val)));
    }
    if let Some(b) = f.exact("bootable") {
        // Before 3.2 anything but false/False means bootable; from it, a boolean is needed.
        let want = if ctx.at(2) {
            super::super::params::Flag::parse(b).ok_or_else(|| super::bad(format!("bootable={b} is not a boolean")))?
        } else {
            !matches!(b, "false" | "False")
        };
        items.retain(|v| v.is_bootable() == want);
    }
    if f.exact("group_id").is_some() && ctx.at(10) {
        items.clear();
    }
    consumes_quota(ctx, &f, &mut items)?;
    if ctx.at(60) {
        for k in ["created_at", "updated_at"] {
            if let Some(spec) = f.exact(k) {
                let conds = time_filter(k, spec)?;
                items.retain(|v| time_ok(if k == "created_at" { v.created_at } else { v.updated_at }, &conds));
            }
        }
    }
    Ok(items)
}

/// The `consumes_quota` filter (3.65): every volume and snapshot here counts against its
/// project's quota.
pub(super) fn consumes_quota<T>(ctx: &Ctx, f: &Filters, items: &mut Vec<T>) -> Result<(), ApiError> {
    if let Some(c) = f.exact("consumes_quota").filter(|_| ctx.at(65)) {
        match super::super::params::Flag::parse(c) {
            Some(true) => {}
            Some(false) => items.clear(),
            None => return Err(super::bad(format!("consumes_quota={c} is not a boolean"))),
        }
    }
    Ok(())
}

fn list(ctx: &Ctx, detail: bool) -> Result<Response<Body>, ApiError> {
    let items = filtered(ctx)?;
    let count = items.len();
    let path = if detail { "volumes/detail" } else { "volumes" };
    let (items, next) = paging::page(items, &|k| ctx.q(k), &ctx.project_url(), path)?;
    let out: Vec<Value> = items
        .iter()
        .map(|v| {
            let full = volume_json(ctx, v, View::Shown { admin: ctx.admin });
            if detail {
                full
            } else {
                json!({"id": v.id, "name": v.name, "links": full["links"]})
            }
        })
        .collect();
    let mut body = super::super::http::list_body("volumes", out, next);
    if ctx.at(45) && ctx.flag("with_count") {
        body["count"] = json!(count);
    }
    Ok(json(StatusCode::OK, &body))
}

/// `GET /volumes/summary` (3.12): how many volumes the filters keep and their total size;
/// from 3.36 every metadata key with the values they have.
fn summary(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let items = filtered(ctx)?;
    let mut s = json!({"total_size": items.iter().map(|v| v.size).sum::<u64>(), "total_count": items.len()});
    if ctx.at(36) {
        let mut meta: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in items.iter().flat_map(|v| v.metadata.iter()) {
            let vals = meta.entry(k.clone()).or_default();
            if !vals.contains(v) {
                vals.push(v.clone());
            }
        }
        s["metadata"] = json!(meta);
    }
    Ok(json(StatusCode::OK, &json!({ "volume-summary": s })))
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let st = &ctx.api.storage;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, ["volumes"]) => list(ctx, false),
        (Method::GET, ["volumes", "detail"] | ["detail"]) => list(ctx, true),
        (Method::GET, ["volumes", "summary"]) if ctx.at(12) => summary(ctx),
        (Method::POST, ["volumes"]) => {
            let b: CreateBody = strict(ctx, body::<CreateRequest>(req).await?.volume, CREATE_FIELDS)?;
            let vol = st.create(auth, new_volume(b)?).await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"volume": volume_json(ctx, &vol, View::Written)})))
        }
        (Method::GET, ["volumes", id]) => {
            let v = st.get(auth, id)?;
            Ok(json(StatusCode::OK, &json!({"volume": volume_json(ctx, &v, View::Shown { admin: ctx.admin })})))
        }
        (Method::PUT, ["volumes", id]) => {
            let o = body::<UpdateRequest>(req).await?.volume;
            if ctx.at(53) && o.is_empty() {
                return Err(super::bad("At least one of name, description and metadata is needed."));
            }
            let b: UpdateBody = strict(ctx, o, UPDATE_FIELDS)?;
            if let Some(set) = b.metadata {
                let change = MetadataChange {
                    replace: true,
                    set,
                    remove: vec![],
                    max_items: super::metadata::ITEMS,
                    if_match: None,
                };
                st.set_metadata(auth, MetadataOf::Volume, id, change).await?;
            }
            let vol = st.rename(auth, id, b.naming.name(), b.naming.description()).await?;
            Ok(json(StatusCode::OK, &json!({"volume": volume_json(ctx, &vol, View::Written)})))
        }
        (Method::DELETE, ["volumes", id]) => {
            if ctx.flag("cascade") {
                for s in st.list_snapshots(auth, false)?.into_iter().filter(|s| s.volume_id == *id) {
                    st.delete_snapshot(auth, &s.id, false).await?;
                }
            }
            // From 3.23 an admin may force it (as os-force_delete).
            st.delete(auth, id, ctx.at(23) && ctx.flag("force")).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (m, ["volumes"] | ["volumes", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
