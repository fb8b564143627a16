//! `/snapshots`: list (`/snapshots`, `/snapshots/detail`, filters name, status, volume_id;
//! paging), create, show, update (name, description), delete. By microversion: the `metadata`
//! filter (3.22), only known filters (3.31), inexact filters (3.34), `user_id` (3.41), `count`
//! (3.45).

use super::super::http::{empty, json, timestamp};
use super::filters::Filters;
use super::{body, paging, ApiError, Body, Ctx, Naming};
use crate::model::volume::{Snapshot, VolumeStatus};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A snapshot: Cinder's base view for a create, an update or a plain listing; with the
/// extended attributes (progress, project) for a show or a detailed listing.
fn snapshot_json(ctx: &Ctx, s: &Snapshot, extended: bool) -> Value {
    let mut j = json!({
        "id": s.id, "name": s.name, "description": s.description, "volume_id": s.volume_id,
        "status": s.status.as_str(), "size": s.size, "metadata": s.metadata,
        "created_at": timestamp(s.created_at, true), "updated_at": timestamp(s.updated_at, true),
    });
    if ctx.at(41) {
        j["user_id"] = json!(s.user_id);
    }
    if ctx.at(65) {
        j["consumes_quota"] = json!(true);
    }
    if extended {
        let progress = if s.status == VolumeStatus::Available { "100%" } else { "0%" };
        j["os-extended-snapshot-attributes:progress"] = json!(s.progress.as_deref().unwrap_or(progress));
        j["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
    }
    j
}

#[derive(Deserialize)]
struct CreateRequest {
    snapshot: CreateBody,
}
#[derive(Deserialize)]
struct CreateBody {
    /// Absent, the volume is not found (Cinder's 404).
    #[serde(default)]
    volume_id: Option<String>,
    #[serde(flatten)]
    naming: Naming,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}
#[derive(Deserialize)]
struct UpdateRequest {
    snapshot: Naming,
}

/// Snapshot lists have the same fields with or without detail in Cinder, less the extended ones.
fn list(ctx: &Ctx, detail: bool) -> Result<Response<Body>, ApiError> {
    let f = Filters::of(ctx, "snapshot")?;
    let all = ctx.admin && ctx.flag("all_tenants");
    let mut items = ctx.api.storage.list_snapshots(&ctx.auth, all)?;
    if let Some(p) = ctx.q("project_id").filter(|_| all) {
        items.retain(|s| s.project_id == p);
    }
    items.retain(|s| {
        f.matches(|k| match k {
            "name" => Some(s.name.clone()),
            "status" => Some(s.status.as_str().to_owned()),
            "volume_id" => Some(s.volume_id.clone()),
            "availability_zone" => Some("nova".into()),
            _ => None,
        })
    });
    if let Some(m) = f.exact("metadata").filter(|_| ctx.at(22)) {
        let want = super::volumes::pairs("metadata", m)?;
        items.retain(|s| want.iter().all(|(k, v)| s.metadata.get(k) == Some(v)));
    }
    super::volumes::consumes_quota(ctx, &f, &mut items)?;
    let count = items.len();
    let path = if detail { "snapshots/detail" } else { "snapshots" };
    let (items, next) = paging::page(items, &|k| ctx.q(k), &ctx.project_url(), path)?;
    let out: Vec<Value> = items.iter().map(|s| snapshot_json(ctx, s, detail)).collect();
    let mut body = super::super::http::list_body("snapshots", out, next);
    if ctx.at(45) && ctx.flag("with_count") {
        body["count"] = json!(count);
    }
    Ok(json(StatusCode::OK, &body))
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let st = &ctx.api.storage;
    let auth = &ctx.auth;
    match (req.method().clone(), segs) {
        (Method::GET, ["snapshots"]) => list(ctx, false),
        (Method::GET, ["snapshots", "detail"]) => list(ctx, true),
        (Method::POST, ["snapshots"]) => {
            let b = body::<CreateRequest>(req).await?.snapshot;
            let (name, description) = (b.naming.name().unwrap_or_default(), b.naming.description().unwrap_or_default());
            let volume = b.volume_id.ok_or_else(|| ApiError::NotFound("Volume None could not be found.".into()))?;
            let snap = st.create_snapshot(auth, &volume, name, description, b.metadata.unwrap_or_default()).await?;
            Ok(json(StatusCode::ACCEPTED, &json!({"snapshot": snapshot_json(ctx, &snap, false)})))
        }
        (Method::GET, ["snapshots", id]) => {
            Ok(json(StatusCode::OK, &json!({"snapshot": snapshot_json(ctx, &st.get_snapshot(auth, id)?, true)})))
        }
        (Method::PUT, ["snapshots", id]) => {
            let b = body::<UpdateRequest>(req).await?.snapshot;
            let snap = st.update_snapshot(auth, id, b.name(), b.description()).await?;
            Ok(json(StatusCode::OK, &json!({"snapshot": snapshot_json(ctx, &snap, false)})))
        }
        (Method::DELETE, ["snapshots", id]) => {
            st.delete_snapshot(auth, id, false).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (m, ["snapshots"] | ["snapshots", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
