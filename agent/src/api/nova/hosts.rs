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

/// `/os-hypervisors[/detail|/statistics|/{id}|/{id}/uptime|/{name}/search|/{name}/servers]`.
fn hypervisors(cx: &Ctx<'_>, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let c = &cx.api.compute;
    let nodes = c.nodes(&cx.auth)?;
    let usage = c.node_usage()?;
    let used = |n: &Inventory| usage.get(&n.node).copied().unwrap_or_default();
    let numbered: Vec<(usize, &Inventory, bool)> =
        nodes.iter().enumerate().map(|(i, (n, up))| (i + 1, n, *up)).collect();
    let by_id = |id: &str| {
        numbered
            .iter()
            .find(|(i, n, _)| i.to_string() == id || n.node == id)
            .copied()
            .ok_or_else(|| ApiError::NotFound(format!("Hypervisor with ID {id} could not be found.")))
    };
    // `search` and `servers` match hypervisor host names containing the pattern.
    let matching = |pattern: &str| -> Result<Vec<(usize, &Inventory, bool)>, ApiError> {
        let found: Vec<_> = numbered.iter().filter(|(_, n, _)| n.node.contains(pattern)).copied().collect();
        if found.is_empty() {
            return Err(ApiError::NotFound(format!("No hypervisor matching '{pattern}' could be found.")));
        }
        Ok(found)
    };
    let body = match rest {
        [] | ["detail"] => {
            let list: Vec<Value> =
                numbered.iter().map(|&(i, n, up)| hypervisor_json(i, n, up, used(n), !rest.is_empty())).collect();
            json!({"hypervisors": list})
        }
        ["statistics"] => json!({"hypervisor_statistics": statistics(&nodes, &used)}),
        [id, "uptime"] => {
            let (i, n, up) = by_id(id)?;
            let mut j = hypervisor_json(i, n, up, used(n), false);
            j["uptime"] = json!(uptime(n.booted_at).ok_or_else(|| ApiError::NotImplemented(format!(
                "Node {} has not reported when it booted.",
                n.node
            )))?);
            json!({"hypervisor": j})
        }
        [pattern, "search"] => {
            let list: Vec<Value> =
                matching(pattern)?.into_iter().map(|(i, n, up)| hypervisor_json(i, n, up, used(n), false)).collect();
            json!({"hypervisors": list})
        }
        [pattern, "servers"] => {
            let servers = c.servers(&cx.auth, true)?;
            let list: Vec<Value> = matching(pattern)?
                .into_iter()
                .map(|(i, n, up)| {
                    let mut j = hypervisor_json(i, n, up, used(n), false);
                    let on: Vec<Value> = servers
                        .iter()
                        .filter(|s| s.node == n.node)
                        .map(|s| json!({"uuid": s.id, "name": crate::compute::driver::domain_name(&s.id)}))
                        .collect();
                    if !on.is_empty() {
                        j["servers"] = json!(on);
                    }
                    j
                })
                .collect();
            json!({"hypervisors": list})
        }
        [id] => {
            let (i, n, up) = by_id(id)?;
            json!({"hypervisor": hypervisor_json(i, n, up, used(n), true)})
        }
        _ => return Err(super::not_found()),
    };
    Ok(json(StatusCode::OK, &body))
}

/// The sums over every compute node (Nova's os-hypervisors/statistics).
fn statistics(nodes: &[(Inventory, bool)], used: &dyn Fn(&Inventory) -> (Resources, u64)) -> Value {
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (mut vcpus, mut vcpus_used, mut mem, mut mem_used, mut disk, mut disk_used, mut vms) = (0, 0, 0, 0, 0, 0, 0);
    for (n, _) in nodes {
        let (u, servers) = used(n);
        vcpus += u64::from(n.vcpus);
        vcpus_used += u.vcpus;
        mem += n.memory_mb;
        mem_used += u.memory_mb;
        disk += n.disk_gb;
        disk_used += u.disk_gb;
        vms += servers;
    }
    json!({"count": nodes.len(), "vcpus": vcpus, "vcpus_used": vcpus_used, "memory_mb": mem,
           "memory_mb_used": mem_used, "free_ram_mb": signed(mem) - signed(mem_used), "local_gb": disk,
           "local_gb_used": disk_used, "free_disk_gb": signed(disk) - signed(disk_used),
           "disk_available_least": disk.saturating_sub(disk_used), "running_vms": vms, "current_workload": 0})
}

/// What `uptime` prints of a node booted at `booted_at` (Unix seconds), as Nova's libvirt
/// driver answers: the time now (UTC) and how long the node has been up.
fn uptime(booted_at: u64) -> Option<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let up = now.checked_sub(booted_at).filter(|_| booted_at > 0)?;
    let day = now % 86_400;
    let (days, hours, minutes) = (up / 86_400, up % 86_400 / 3600, up % 3600 / 60);
    Some(format!(" {:02}:{:02}:{:02} up {days} days, {hours:>2}:{minutes:02}", day / 3600, day % 3600 / 60, day % 60))
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, api) = (req.method().clone(), &cx.auth, cx.api);
    let c = &api.compute;
    let q = |k: &str| cx.q(k);
    match (&method, segs) {
        (&Method::GET, ["os-hypervisors", rest @ ..]) => hypervisors(cx, rest),
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
                    "disabled_reason": null})
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
