//! Volume types (each the pool of that name on the nodes), the pools as the scheduler sees
//! them (`scheduler-stats/get_pools`, admin), the availability zones, the API extensions
//! served, the services and (empty) clusters. By microversion: clusters and a service's
//! `cluster` (3.7), workers cleanup (3.24), pool filters (3.28, `volume_type` 3.35), the
//! resource filters (3.33), a volume service's `backend_state` (3.49), the type `extra_specs`
//! filter (3.52).

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

#[derive(serde::Deserialize)]
struct DefaultTypeBody {
    default_type: DefaultTypeSet,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultTypeSet {
    volume_type: String,
}

/// `/default-types[/{project}]` (3.62): the projects' default volume types; set and unset by
/// admins, read by admins and by the project itself.
pub(super) async fn default_types(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    segs: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (st, auth) = (&ctx.api.storage, &ctx.auth);
    let shown = |(p, t): &(String, String)| json!({"project_id": p, "volume_type_id": t});
    match (req.method().clone(), segs) {
        (Method::GET, ["default-types"]) => {
            let all: Vec<Value> = st.project_default_types(auth, None)?.iter().map(shown).collect();
            Ok(json(StatusCode::OK, &json!({ "default_types": all })))
        }
        (Method::GET, ["default-types", project]) => {
            let found = st.project_default_types(auth, Some(project))?;
            let one = found
                .first()
                .ok_or_else(|| ApiError::NotFound(format!("Default type for project {project} could not be found.")))?;
            Ok(json(StatusCode::OK, &json!({"default_type": shown(one)})))
        }
        (Method::PUT, ["default-types", project]) => {
            let b: DefaultTypeBody = super::body(req).await?;
            st.set_default_type(auth, project, Some(&b.default_type.volume_type)).await?;
            let set = ((*project).to_owned(), b.default_type.volume_type);
            Ok(json(StatusCode::OK, &json!({"default_type": shown(&set)})))
        }
        (Method::DELETE, ["default-types", project]) => {
            st.set_default_type(auth, project, None).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (m, ["default-types"] | ["default-types", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

/// `POST /workers/cleanup` (3.24, admin): the volume services that are down, each as
/// `unavailable` (a node's volumes live on it: no other service can clean up after it); none
/// is ever `cleaning`.
pub(super) fn cleanup(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    ctx.require_admin("workers:cleanup")?;
    let down: Vec<Value> = service_list(ctx)?
        .into_iter()
        .enumerate()
        .filter(|(_, (binary, _, up, _))| *binary == "cinder-volume" && !up)
        .map(|(i, (binary, host, ..))| json!({"id": i + 1, "host": host, "binary": binary, "cluster_name": null}))
        .collect();
    Ok(json(StatusCode::ACCEPTED, &json!({"cleaning": [], "unavailable": down})))
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
/// Every service: (binary, host, up, last heartbeat).
fn service_list(ctx: &Ctx) -> Result<Vec<(&'static str, String, bool, u64)>, ApiError> {
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
    Ok(list)
}

fn services(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    ctx.require_admin("volume_extension:services:index")?;
    let list = service_list(ctx)?;
    let host_of = |h: &str| h.split('@').next().unwrap_or(h).to_owned();
    let out: Vec<Value> = list
        .into_iter()
        .filter(|(_, host, ..)| ctx.q("host").is_none_or(|h| host_of(&h) == host_of(host)))
        .filter(|(binary, ..)| ctx.q("binary").is_none_or(|b| b == *binary))
        .map(|(binary, host, up, at)| {
            let mut j = json!({"binary": binary, "host": host, "zone": "nova", "status": "enabled",
                   "state": if up { "up" } else { "down" }, "updated_at": timestamp(at, true),
                   "disabled_reason": null, "frozen": false});
            if ctx.at(7) {
                j["cluster"] = Value::Null;
            }
            if ctx.at(49) && binary == "cinder-volume" {
                j["backend_state"] = json!(if up { "up" } else { "down" });
            }
            j
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
            let want = match ctx.q("extra_specs").filter(|_| ctx.at(52)) {
                Some(m) => super::volumes::pairs("extra_specs", &m)?,
                None => Default::default(),
            };
            let default = st.default_type(&ctx.project)?.map(|d| d.name.clone());
            let types: Vec<Value> = st
                .types()
                .iter()
                .map(|p| type_json(&p.name, p.spec.kind(), default.as_ref() == Some(&p.name)))
                .filter(|t| want.iter().all(|(k, v)| t["extra_specs"][k] == json!(v)))
                .collect();
            Ok(json(StatusCode::OK, &json!({"volume_types": types})))
        }
        ["types", id] => {
            let types = st.types();
            let found = if *id == "default" {
                st.default_type(&ctx.project)?
            } else {
                types.iter().find(|p| p.name == *id).copied()
            };
            let p = found.ok_or_else(|| ApiError::NotFound(format!("Volume type {id} could not be found.")))?;
            let default = st.default_type(&ctx.project)?.is_some_and(|d| d.name == p.name);
            Ok(json(StatusCode::OK, &json!({"volume_type": type_json(&p.name, p.spec.kind(), default)})))
        }
        ["scheduler-stats", "get_pools"] => {
            ctx.require_admin("scheduler_extension:scheduler_stats:get_pools")?;
            let detail = ctx.flag("detail");
            let (name, kind) = (ctx.q("name").filter(|_| ctx.at(28)), ctx.q("volume_type").filter(|_| ctx.at(35)));
            let pools: Vec<Value> = st
                .pool_records()?
                .iter()
                .filter(|(n, p)| {
                    name.as_ref().is_none_or(|w| *w == p.name || *w == format!("{n}@{}#{}", p.name, p.name))
                })
                .filter(|(_, p)| kind.as_ref().is_none_or(|t| *t == p.name))
                .map(|(n, p)| pool_json(n, p, detail))
                .collect();
            Ok(json(StatusCode::OK, &json!({"pools": pools})))
        }
        ["clusters", rest @ ..] if ctx.at(7) => {
            ctx.require_admin("clusters:get_all")?;
            match rest {
                [] | ["detail"] => Ok(json(StatusCode::OK, &json!({"clusters": []}))),
                [name] => Err(ApiError::NotFound(format!("Cluster {name} could not be found."))),
                _ => Err(ApiError::NotFound("The resource could not be found.".into())),
            }
        }
        ["resource_filters"] if ctx.at(33) => {
            let all: Vec<Value> = super::filters::RESOURCE_FILTERS
                .iter()
                .filter(|(r, _)| ctx.q("resource").is_none_or(|w| w == *r))
                .map(|(r, f)| json!({"resource": r, "filters": f}))
                .collect();
            Ok(json(StatusCode::OK, &json!({"resource_filters": all})))
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
