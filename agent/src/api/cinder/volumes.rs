//! `/volumes`: list (`/volumes`, `/volumes/detail`, filters name, status, metadata; paging),
//! create (empty, from an image, a volume or a snapshot), show, update (name, description,
//! metadata), delete (`cascade` takes its snapshots along).

use super::super::http::{empty, json, timestamp};
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

fn volume_json(v: &Volume, base: &str, view: View) -> Value {
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
    }
    j
}

#[derive(Deserialize)]
struct CreateRequest {
    volume: CreateBody,
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
    volume: UpdateBody,
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

fn list(ctx: &Ctx, detail: bool) -> Result<Response<Body>, ApiError> {
    let all = ctx.admin && ctx.flag("all_tenants");
    let mut items: Vec<Volume> = ctx.api.storage.list(&ctx.auth, all)?;
    if let Some(p) = ctx.q("project_id").filter(|_| all) {
        items.retain(|v| v.project_id == p);
    }
    if let Some(n) = ctx.q("name") {
        items.retain(|v| v.name == n);
    }
    if let Some(s) = ctx.q("status") {
        items.retain(|v| v.status.as_str() == s);
    }
    // `metadata={"k": "v"}`: volumes having every pair. Clients send a JSON object or, as the
    // openstack client does, a Python dict literal (`{'k': 'v'}`), which Cinder reads.
    if let Some(m) = ctx.q("metadata") {
        let want: BTreeMap<String, String> = serde_json::from_str(&m)
            .or_else(|_| serde_json::from_str(&m.replace('\'', "\"")))
            .map_err(|e| super::bad(format!("metadata must be an object of strings: {e}")))?;
        items.retain(|v| want.iter().all(|(k, val)| v.metadata.get(k) == Some(val)));
    }
    let path = if detail { "volumes/detail" } else { "volumes" };
    let (items, next) = paging::page(items, &|k| ctx.q(k), &ctx.project_url(), path)?;
    let out: Vec<Value> = items
        .iter()
        .map(|v| {
            let full = volume_json(v, &ctx.base, View::Shown { admin: ctx.admin });
            if detail {
                full
            } else {
                json!({"id": v.id, "name": v.name, "links": full["links"]})
            }
        })
        .collect();
    Ok(json(StatusCode::OK, &super::super::http::list_body("volumes", out, next)))
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let st = &ctx.api.storage;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, ["volumes"]) => list(ctx, false),
        (Method::GET, ["volumes", "detail"] | ["detail"]) => list(ctx, true),
        (Method::POST, ["volumes"]) => {
            let new = new_volume(body::<CreateRequest>(req).await?.volume)?;
            let vol = st.create(auth, new).await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"volume": volume_json(&vol, &ctx.base, View::Written)})))
        }
        (Method::GET, ["volumes", id]) => {
            let v = st.get(auth, id)?;
            Ok(json(StatusCode::OK, &json!({"volume": volume_json(&v, &ctx.base, View::Shown { admin: ctx.admin })})))
        }
        (Method::PUT, ["volumes", id]) => {
            let b = body::<UpdateRequest>(req).await?.volume;
            if let Some(set) = b.metadata {
                let change = MetadataChange { replace: true, set, remove: vec![], max_items: super::metadata::ITEMS };
                st.set_metadata(auth, MetadataOf::Volume, id, change).await?;
            }
            let vol = st.rename(auth, id, b.naming.name(), b.naming.description()).await?;
            Ok(json(StatusCode::OK, &json!({"volume": volume_json(&vol, &ctx.base, View::Written)})))
        }
        (Method::DELETE, ["volumes", id]) => {
            if ctx.flag("cascade") {
                for s in st.list_snapshots(auth, false)?.into_iter().filter(|s| s.volume_id == *id) {
                    st.delete_snapshot(auth, &s.id, false).await?;
                }
            }
            st.delete(auth, id, false).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (m, ["volumes"] | ["volumes", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
