//! What Nova shows of the nodes: os-hypervisors, os-services (every node's conductor and
//! scheduler, compute nodes' nova-compute), os-availability-zone and (empty) os-aggregates.
//! By microversion: `forced_down` (2.11), `cpu_info` an object (2.28), hypervisors paged
//! (2.33), hypervisors and services by UUID (2.53), a hypervisor's `servers` even when none
//! (2.75). Changing services (enable, disable, force down, delete) is not offered.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{json, timestamp};
use super::Ctx;
use crate::model::compute::{Inventory, Resources};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Map;
use serde_json::{json, Value};

/// A stable UUID named by `parts` (a hash of them, shaped as a random UUID): what Nova shows
/// from 2.53 as the id of a hypervisor or a service, which are records in its database and
/// names here.
fn named_uuid(parts: &[&str]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, parts.join("\0").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// One hypervisor (a compute node) as Nova numbers it: 1, 2, … below 2.53, a UUID from it.
#[derive(Clone, Copy)]
struct Hyper<'a> {
    index: usize,
    node: &'a Inventory,
    up: bool,
}

impl Hyper<'_> {
    /// Its id as the path names it.
    fn id(&self, cx: &Ctx<'_>) -> String {
        if cx.at(53) {
            named_uuid(&["hypervisor", &self.node.node])
        } else {
            self.index.to_string()
        }
    }

    /// Its id as a body shows it: a number below 2.53.
    fn id_json(&self, cx: &Ctx<'_>) -> Value {
        if cx.at(53) {
            json!(self.id(cx))
        } else {
            json!(self.index)
        }
    }
}

fn hypervisor_json(cx: &Ctx<'_>, h: Hyper<'_>, used: (Resources, u64), detail: bool) -> Value {
    let i = h.node;
    let mut j = json!({"id": h.id_json(cx), "hypervisor_hostname": i.node, "state": if h.up { "up" } else { "down" },
                       "status": if i.enabled { "enabled" } else { "disabled" }});
    if !detail {
        return j;
    }
    // Used amounts are what the node's servers claim (as Nova's placement counts them).
    let (u, servers) = used;
    let cpu_info = json!({"arch": i.arch, "accel": i.accel, "emulated": i.accel != "kvm",
                          "allocation_ratios": {"cpu": f64::from(i.ratios.cpu) / 100.0,
                                                "ram": f64::from(i.ratios.ram) / 100.0,
                                                "disk": f64::from(i.ratios.disk) / 100.0}});
    let service_id = if cx.at(53) { json!(named_uuid(&["nova-compute", &i.node])) } else { json!(h.index) };
    let extra = json!({
        "vcpus": i.vcpus, "memory_mb": i.memory_mb, "local_gb": i.disk_gb, "vcpus_used": u.vcpus,
        "memory_mb_used": u.memory_mb, "local_gb_used": u.disk_gb,
        "free_ram_mb": i64::try_from(i.memory_mb).unwrap_or(i64::MAX) - i64::try_from(u.memory_mb).unwrap_or(i64::MAX),
        "free_disk_gb": i64::try_from(i.disk_gb).unwrap_or(i64::MAX) - i64::try_from(u.disk_gb).unwrap_or(i64::MAX),
        "running_vms": servers, "current_workload": 0, "disk_available_least": i.disk_gb.saturating_sub(u.disk_gb),
        "hypervisor_type": "QEMU", "hypervisor_version": 1, "host_ip": i.host_ip,
        "service": {"id": service_id, "host": i.node, "disabled_reason": null},
        // A JSON string before 2.28, an object from it.
        "cpu_info": if cx.at(28) { cpu_info } else { json!(cpu_info.to_string()) },
    });
    if let (Some(o), Value::Object(e)) = (j.as_object_mut(), extra) {
        o.extend(e);
    }
    j
}

/// `/os-hypervisors[/detail|/statistics|/{id}|/{id}/uptime]`, and below 2.53
/// `/{name}/search` and `/{name}/servers`; from 2.33 paged, from 2.53 by UUID with
/// `hypervisor_hostname_pattern` and `with_servers`.
fn hypervisors(cx: &Ctx<'_>, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let c = &cx.api.compute;
    let nodes = c.nodes(&cx.auth)?;
    let usage = c.node_usage()?;
    let used = |n: &Inventory| usage.get(&n.node).copied().unwrap_or_default();
    let all: Vec<Hyper<'_>> =
        nodes.iter().enumerate().map(|(i, (node, up))| Hyper { index: i + 1, node, up: *up }).collect();
    let by_id = |id: &str| {
        all.iter()
            .find(|h| h.id(cx) == id || (!cx.at(53) && h.node.node == id))
            .copied()
            .ok_or_else(|| ApiError::NotFound(format!("Hypervisor with ID {id} could not be found.")))
    };
    let with_servers = cx.at(53) && cx.q("with_servers").is_some_and(|v| super::super::http::is_true(&v));
    let servers = c.servers(&cx.auth, true)?;
    let listed = |h: Hyper<'_>, detail: bool, servers_too: bool| {
        let mut j = hypervisor_json(cx, h, used(h.node), detail);
        let on: Vec<Value> = servers
            .iter()
            .filter(|s| s.node == h.node.node)
            .map(|s| json!({"uuid": s.id, "name": crate::compute::driver::domain_name(&s.id)}))
            .collect();
        // From 2.75 `servers` is there even when empty.
        if servers_too && (!on.is_empty() || cx.at(75)) {
            j["servers"] = json!(on);
        }
        j
    };
    // `search` and `servers` (below 2.53), and the pattern (from it), match names containing it.
    let matching = |pattern: &str| -> Result<Vec<Hyper<'_>>, ApiError> {
        let found: Vec<_> = all.iter().filter(|h| h.node.node.contains(pattern)).copied().collect();
        if found.is_empty() {
            return Err(ApiError::NotFound(format!("No hypervisor matching '{pattern}' could be found.")));
        }
        Ok(found)
    };
    let body = match rest {
        [] | ["detail"] => {
            let chosen = match cx.q("hypervisor_hostname_pattern").filter(|_| cx.at(53)) {
                Some(p) => matching(&p)?,
                None => all.clone(),
            };
            let (page, next) = if cx.at(33) {
                let path = if rest.is_empty() { "os-hypervisors" } else { "os-hypervisors/detail" };
                let ids: Vec<(String, Hyper<'_>)> = chosen.into_iter().map(|h| (h.id(cx), h)).collect();
                let (p, next) = super::page(cx, ids, |(id, _)| id.as_str(), path)?;
                (p.into_iter().map(|(_, h)| h).collect(), next)
            } else {
                (chosen, None)
            };
            let list: Vec<Value> = page.into_iter().map(|h| listed(h, !rest.is_empty(), with_servers)).collect();
            super::super::http::list_body("hypervisors", list, next)
        }
        ["statistics"] => json!({"hypervisor_statistics": statistics(&nodes, &used)}),
        [id, "uptime"] => {
            let h = by_id(id)?;
            let mut j = hypervisor_json(cx, h, used(h.node), false);
            j["uptime"] = json!(uptime(h.node.booted_at).ok_or_else(|| ApiError::NotImplemented(format!(
                "Node {} has not reported when it booted.",
                h.node.node
            )))?);
            json!({"hypervisor": j})
        }
        [pattern, "search"] if !cx.at(53) => {
            let list: Vec<Value> = matching(pattern)?.into_iter().map(|h| listed(h, false, false)).collect();
            json!({"hypervisors": list})
        }
        [pattern, "servers"] if !cx.at(53) => {
            let list: Vec<Value> = matching(pattern)?.into_iter().map(|h| listed(h, false, true)).collect();
            json!({"hypervisors": list})
        }
        [id] => json!({"hypervisor": listed(by_id(id)?, true, with_servers)}),
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
                    // Numbered below 2.53, a UUID from it; `forced_down` from 2.11 (nothing
                    // forces a service down here).
                    let id = if cx.at(53) { json!(named_uuid(&[binary, &host])) } else { json!(i + 1) };
                    let mut j = json!({"id": id, "binary": binary, "host": host,
                    "zone": zone, "status": if enabled { "enabled" } else { "disabled" },
                    "state": if up { "up" } else { "down" }, "updated_at": timestamp(at, true),
                    "disabled_reason": null});
                    if cx.at(11) {
                        j["forced_down"] = json!(false);
                    }
                    j
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
