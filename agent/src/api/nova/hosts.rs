//! What Nova shows of the nodes: os-hypervisors, os-services (every node's conductor and
//! scheduler, compute nodes' nova-compute), os-availability-zone and (empty) os-aggregates.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{json, timestamp};
use super::Ctx;
use crate::model::compute::{Inventory, Resources};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Map;
use serde_json::{json, Value};

fn hypervisor_json(id: usize, i: &Inventory, up: bool, used: (Resources, u64), detail: bool) -> Value {
    let mut j = json!({"id": id, "hypervisor_hostname": i.node, "state": if up { "up" } else { "down" },
                       "status": if i.enabled { "enabled" } else { "disabled" }});
    if detail {
        // Used amounts are what the node's servers claim (as Nova's placement counts them).
        let (u, servers) = used;
        let extra = json!({
            "vcpus": i.vcpus, "memory_mb": i.memory_mb, "local_gb": i.disk_gb, "vcpus_used": u.vcpus,
            "memory_mb_used": u.memory_mb, "local_gb_used": u.disk_gb,
            "free_ram_mb": i64::try_from(i.memory_mb).unwrap_or(i64::MAX) - i64::try_from(u.memory_mb).unwrap_or(i64::MAX),
            "free_disk_gb": i64::try_from(i.disk_gb).unwrap_or(i64::MAX) - i64::try_from(u.disk_gb).unwrap_or(i64::MAX),
            "running_vms": servers, "current_workload": 0, "disk_available_least": i.disk_gb.saturating_sub(u.disk_gb),
            "hypervisor_type": "QEMU", "hypervisor_version": 1, "host_ip": i.host_ip,
            "service": {"id": id, "host": i.node, "disabled_reason": null},
            "cpu_info": json!({"arch": i.arch, "accel": i.accel,
                               "emulated": i.accel != "kvm",
                               "allocation_ratios": {"cpu": f64::from(i.ratios.cpu) / 100.0,
                                                     "ram": f64::from(i.ratios.ram) / 100.0,
                                                     "disk": f64::from(i.ratios.disk) / 100.0}}).to_string(),
        });
        if let (Some(o), Value::Object(e)) = (j.as_object_mut(), extra) {
            o.extend(e);
        }
    }
    j
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, api) = (req.method().clone(), &cx.auth, cx.api);
    let c = &api.compute;
    let q = |k: &str| cx.q(k);
    match (&method, segs) {
        (&Method::GET, ["os-hypervisors", rest @ ..]) => {
            let nodes = c.nodes(auth)?;
            let usage = c.node_usage()?;
            let used = |n: &Inventory| usage.get(&n.node).copied().unwrap_or_default();
            let numbered = nodes.iter().enumerate().map(|(i, (n, up))| (i + 1, n, *up));
            match rest {
                [] | ["detail"] => {
                    let detail = !rest.is_empty();
                    let list: Vec<Value> =
                        numbered.map(|(i, n, up)| hypervisor_json(i, n, up, used(n), detail)).collect();
                    Ok(json(StatusCode::OK, &json!({"hypervisors": list})))
                }
                [_, "uptime"] => Err(ApiError::NotImplemented(
                    "A hypervisor's uptime needs a call to its node, which comes with clustering.".into(),
                )),
                [id] => {
                    let found = numbered
                        .into_iter()
                        .find(|(i, n, _)| i.to_string() == *id || n.node == *id)
                        .ok_or_else(|| ApiError::NotFound(format!("Hypervisor with ID {id} could not be found.")))?;
                    let j = hypervisor_json(found.0, found.1, found.2, used(found.1), true);
                    Ok(json(StatusCode::OK, &json!({"hypervisor": j})))
                }
                _ => Err(ApiError::NotFound("The resource could not be found.".into())),
            }
        }
        // Host aggregates are not kept (zones come from each node's config): none to list.
        (&Method::GET, ["os-aggregates"]) => {
            if !auth.is_admin() {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow os_compute_api:os-aggregates:index to be performed.".into(),
                ));
            }
            Ok(json(StatusCode::OK, &json!({"aggregates": []})))
        }
        (&Method::GET, ["os-services"]) => {
            // Every node runs the control plane (conductor and scheduler); compute nodes also
            // nova-compute.
            let compute_nodes = c.nodes(auth)?;
            let members = api.cluster.nodes(auth)?;
            let control = members.iter().flat_map(|(m, _, up)| {
                ["nova-conductor", "nova-scheduler"]
                    .map(|b| (b, m.name.clone(), "internal".to_owned(), true, *up, m.heartbeat_at))
            });
            let computes = compute_nodes
                .into_iter()
                .map(|(n, up)| ("nova-compute", n.node, n.availability_zone, n.enabled, up, n.heartbeat_at));
            let list: Vec<Value> = control
                .chain(computes)
                .filter(|(_, host, ..)| q("host").is_none_or(|h| h == *host))
                .filter(|(binary, ..)| q("binary").is_none_or(|b| b == *binary))
                .enumerate()
                .map(|(i, (binary, host, zone, enabled, up, at))| {
                    json!({"id": i + 1, "binary": binary, "host": host,
                    "zone": zone, "status": if enabled { "enabled" } else { "disabled" },
                    "state": if up { "up" } else { "down" }, "updated_at": timestamp(at, true),
                    "disabled_reason": null, "forced_down": false})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"services": list})))
        }
        (&Method::GET, ["os-availability-zone", rest @ ..]) => {
            let detail = match rest {
                [] => false,
                ["detail"] if auth.is_admin() => true,
                ["detail"] => {
                    return Err(ApiError::Forbidden(
                        "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.".into(),
                    ))
                }
                _ => return Err(ApiError::NotFound("The resource could not be found.".into())),
            };
            let zones: Vec<Value> = c
                .zones()?
                .into_iter()
                .map(|(zone, nodes)| {
                    let hosts = detail.then(|| {
                        nodes.iter().map(|(n, up)| (n.node.clone(), json!({"nova-compute": {
                            "available": up, "active": n.enabled, "updated_at": timestamp(n.heartbeat_at, true)}})))
                            .collect::<Map<String, Value>>()
                    });
                    json!({"zoneName": zone, "zoneState": {"available": nodes.iter().any(|(_, up)| *up)}, "hosts": hosts})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"availabilityZoneInfo": zones})))
        }
        _ => Err(super::not_found()),
    }
}
