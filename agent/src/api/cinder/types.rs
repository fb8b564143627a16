//! Volume types (each the pool of that name on the nodes), the pools as the scheduler sees
//! them (`scheduler-stats/get_pools`, admin), the availability zones and the API extensions
//! served.

use super::super::http::{json, timestamp};
use super::{ApiError, Body, Ctx};
use crate::model::storage::PoolRecord;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

fn type_json(name: &str, kind: &str, default: bool) -> Value {
    json!({"id": name, "name": name, "description": format!("{kind} pool {name}"), "is_public": true,
           "extra_specs": {"volume_backend_name": name}, "os-volume-type-access:is_public": true,
           "qos_specs_id": null, "is_default": default})
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

/// Cinder's API extensions this service serves: `(alias, name, description)`.
const EXTENSIONS: [(&str, &str, &str); 7] = [
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes", "Extended snapshot attributes."),
    ("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
    ("os-vol-tenant-attr", "VolumeTenantAttribute", "Expose the internal project_id as an attribute of a volume."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("scheduler-stats", "Scheduler_stats", "Scheduler stats support."),
];

/// `os-services` (admin): every node's scheduler, and a volume service per pool
/// (`node@pool`), up while its node is and the pool works.
fn services(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    ctx.require_admin("volume_extension:services:index")?;
    let members = ctx.api.cluster.nodes(&ctx.auth)?;
    let pools = ctx.api.storage.pool_records()?;
    let mut list = Vec::new();
    for (m, _, up) in &members {
        list.push(("cinder-scheduler", m.name.clone(), *up, m.heartbeat_at));
        for (_, p) in pools.iter().filter(|(node, _)| *node == m.name) {
            let works = p.info.active && p.error.is_none();
            list.push(("cinder-volume", format!("{}@{}", m.name, p.name), *up && works, m.heartbeat_at));
        }
    }
    let host_of = |h: &str| h.split('@').next().unwrap_or(h).to_owned();
    let out: Vec<Value> = list
        .into_iter()
        .filter(|(_, host, ..)| ctx.q("host").is_none_or(|h| host_of(&h) == host_of(host)))
        .filter(|(binary, ..)| ctx.q("binary").is_none_or(|b| b == *binary))
        .map(|(binary, host, up, at)| {
            json!({"binary": binary, "host": host, "zone": "nova", "status": "enabled",
                   "state": if up { "up" } else { "down" }, "updated_at": timestamp(at, true),
                   "disabled_reason": null, "frozen": false})
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "services": out })))
}

pub(super) fn route(ctx: &Ctx, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(super::super::not_allowed(req.method()));
    }
    let st = &ctx.api.storage;
    match segs {
        ["types"] => {
            let types: Vec<Value> =
                st.types().iter().enumerate().map(|(i, p)| type_json(&p.name, p.spec.kind(), i == 0)).collect();
            Ok(json(StatusCode::OK, &json!({"volume_types": types})))
        }
        ["types", id] => {
            let types = st.types();
            let found =
                if *id == "default" { types.first().copied() } else { types.iter().find(|p| p.name == *id).copied() };
            let p = found.ok_or_else(|| ApiError::NotFound(format!("Volume type {id} could not be found.")))?;
            let default = types.first().is_some_and(|d| d.name == p.name);
            Ok(json(StatusCode::OK, &json!({"volume_type": type_json(&p.name, p.spec.kind(), default)})))
        }
        ["scheduler-stats", "get_pools"] => {
            ctx.require_admin("scheduler_extension:scheduler_stats:get_pools")?;
            let detail = ctx.flag("detail");
            let pools: Vec<Value> = st.pool_records()?.iter().map(|(n, p)| pool_json(n, p, detail)).collect();
            Ok(json(StatusCode::OK, &json!({"pools": pools})))
        }
        ["os-services"] => services(ctx),
        ["extensions"] => {
            let all: Vec<Value> = EXTENSIONS
                .iter()
                .map(|(alias, name, description)| {
                    json!({"alias": alias, "name": name, "description": description, "links": [],
                           "updated": "2026-11-28T00:00:00+00:00"})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({ "extensions": all })))
        }
        ["os-availability-zone"] => Ok(json(
            StatusCode::OK,
            &json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]}),
        )),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
