//! Nova's servers: create (from an image or a volume, `min_count`/`max_count`), list/detail with
//! filters, show, update, delete, addresses, topology (2.78); the sub-resources (actions,
//! metadata, tags, volume attachments) are in `server_parts`.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json};
use super::server_create::{At, ServerCreate};
use super::server_view::{addresses_json, server_json, Shape, View};
use super::{bad, typed_body, Ctx};
use crate::compute::ServerChange;
use crate::model::compute::Server;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A server update: its name, access addresses and (2.19) description.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerUpdate {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<std::net::Ipv4Addr>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<std::net::Ipv6Addr>,
    #[serde(default, deserialize_with = "super::super::params::nullable")]
    description: Option<Option<String>>,
}

/// A filter as Nova takes `name` and `ip`: a regular expression searched in the value.
fn pattern(k: &str, p: &str) -> Result<regex::Regex, ApiError> {
    regex::Regex::new(p).map_err(|e| bad(format!("Invalid input for query parameters {k}: {e}")))
}

/// Each node's `host_status` as Nova shows it to admins (2.16).
struct HostStatus(BTreeMap<String, &'static str>);

impl HostStatus {
    fn of(cx: &Ctx<'_>) -> Result<Self, ApiError> {
        if !(cx.at(16) && cx.auth.is_admin()) {
            return Ok(HostStatus(BTreeMap::new()));
        }
        let nodes = cx.api.compute.nodes(&cx.auth)?;
        Ok(HostStatus(
            nodes
                .into_iter()
                .map(|(n, up)| {
                    let status = match (up, n.enabled) {
                        (false, _) => "DOWN",
                        (true, false) => "MAINTENANCE",
                        (true, true) => "UP",
                    };
                    (n.node, status)
                })
                .collect(),
        ))
    }

    fn get(&self, s: &Server) -> &'static str {
        if s.node.is_empty() {
            ""
        } else {
            self.0.get(&s.node).copied().unwrap_or("UNKNOWN")
        }
    }
}

/// A server as `cx`'s caller sees it in `view`.
pub(super) fn shown(cx: &Ctx<'_>, s: &Server, view: View) -> Result<Value, ApiError> {
    let status = HostStatus::of(cx)?;
    let shape = Shape { view, mv: cx.mv, admin: cx.auth.is_admin(), host_status: status.get(s) };
    Ok(server_json(s, &cx.api.compute.addresses(s)?, cx.base, shape))
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, base, api) = (req.method().clone(), &cx.auth, cx.base, cx.api);
    let c = &api.compute;
    match (&method, segs) {
        (&Method::GET, ["servers"]) | (&Method::GET, ["servers", "detail"]) => list(cx, segs.len() == 2),
        (&Method::POST, ["servers"]) => {
            let at = At { mv: cx.mv, admin: auth.is_admin() };
            let r = typed_body::<ServerCreate>(req, "server").await?.into_request(at)?;
            let admin_pass = r.server.admin_pass.clone();
            let (s, reservation_id) = c.create_servers(auth, r.server, r.counts).await?;
            if r.return_reservation_id {
                return Ok(json(StatusCode::ACCEPTED, &json!({ "reservation_id": reservation_id })));
            }
            let href = format!("{base}/compute/v2.1/servers/{}", s.id);
            Ok(json(
                StatusCode::ACCEPTED,
                &json!({"server": {"id": s.id, "OS-DCF:diskConfig": "MANUAL", "adminPass": admin_pass,
                "security_groups": [{"name": "default"}], "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}}),
            ))
        }
        (_, ["servers", id]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"server": shown(cx, &c.server(auth, id)?, View::Show)?}))),
            Method::PUT => {
                let b = typed_body::<ServerUpdate>(req, "server").await?;
                let description = cx.since(19, "description", b.description)?;
                let change =
                    ServerChange { name: b.name, access_ipv4: b.access_ipv4, access_ipv6: b.access_ipv6, description };
                let s = c.update_server(auth, id, change).await?;
                Ok(json(StatusCode::OK, &json!({"server": shown(cx, &s, View::Updated)?})))
            }
            Method::DELETE => {
                c.delete_server(auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        (&Method::GET, ["servers", id, "ips", rest @ ..]) => {
            let s = c.server(auth, id)?;
            let all = addresses_json(&c.addresses(&s)?);
            let body = match rest {
                [] => json!({"addresses": all}),
                [net] => {
                    let found = all
                        .get(*net)
                        .cloned()
                        .ok_or_else(|| ApiError::NotFound(format!("Instance {id} has no address on network {net}.")))?;
                    json!({ *net: found })
                }
                _ => return Err(super::not_found()),
            };
            Ok(json(StatusCode::OK, &body))
        }
        (&Method::GET, ["servers", id, "topology"]) if cx.at(78) => topology(cx, id),
        _ => super::server_parts::route(cx, req, segs).await,
    }
}

/// `GET /servers/{id}/topology` (2.78): a server whose flavor asks for huge pages has one NUMA
/// cell of all its vCPUs and memory (unpinned); others have none, as Nova shows them. The host
/// cell is for admins.
fn topology(cx: &Ctx<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let s = cx.api.compute.server(&cx.auth, id)?;
    let f = &s.flavor;
    let page = f.extra_specs.get("hw:mem_page_size").and_then(|v| match v.as_str() {
        "large" => Some(2048),
        v => crate::model::compute::page_size_kib(v).filter(|k| *k > 4),
    });
    let Some(page) = page else { return Ok(json(StatusCode::OK, &json!({"nodes": [], "pagesize_kb": null}))) };
    let mut cell = json!({"cpu_pinning": {}, "vcpu_set": (0..f.vcpus).collect::<Vec<_>>(), "siblings": [],
                          "memory_mb": f.ram_mb});
    if cx.auth.is_admin() {
        cell["host_node"] = json!(0);
    }
    Ok(json(StatusCode::OK, &json!({"nodes": [cell], "pagesize_kb": page})))
}

/// The query parameters Nova's schema takes on a listing (from 2.75 any other is a 400).
const LIST_PARAMS: &[&str] = &[
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "soft_deleted",
    "deleted",
    "status",
    "changes-since",
    "ip",
    "ip6",
    "created_at",
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
    "limit",
    "marker",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "changes-before",
    "locked",
];

/// The statuses Nova knows (from 2.38 any other is a 400).
const STATUSES: &[&str] = &[
    "ACTIVE",
    "BUILD",
    "DELETED",
    "ERROR",
    "HARD_REBOOT",
    "MIGRATING",
    "PASSWORD",
    "PAUSED",
    "REBOOT",
    "REBUILD",
    "RESCUE",
    "RESIZE",
    "REVERT_RESIZE",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "SHUTOFF",
    "SOFT_DELETED",
    "SUSPENDED",
    "UNKNOWN",
    "VERIFY_RESIZE",
];

/// `GET /servers[/detail]` with Nova's filters, newest first, paged.
fn list(cx: &Ctx<'_>, detail: bool) -> Result<Response<Body>, ApiError> {
    if let Some((k, _)) = cx.query.iter().find(|(k, _)| cx.at(75) && !LIST_PARAMS.contains(&k.as_str())) {
        return Err(bad(format!("Invalid input for query parameters {k}: additional properties are not allowed.")));
    }
    let (auth, c) = (&cx.auth, &cx.api.compute);
    let all = cx.q("all_tenants").is_some_and(|v| super::super::http::is_true(&v));
    let mut items = c.servers(auth, all)?;
    // With all_tenants, an admin may name the project (`tenant_id` or `project_id`).
    if let Some(p) = cx.q("project_id").or_else(|| cx.q("tenant_id")).filter(|_| all && auth.is_admin()) {
        items.retain(|s| s.project_id == p);
    }
    filter_fields(cx, &mut items)?;
    filter_times(cx, &mut items)?;
    filter_tags(cx, &mut items);
    filter_addresses(cx, &mut items)?;
    // Nova's default order: newest first.
    items.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let path = if detail { "servers/detail" } else { "servers" };
    let (items, next) = super::page(cx, items, |s| s.id.as_str(), path)?;
    let view = if detail { View::Detail } else { View::Summary };
    let status = HostStatus::of(cx)?;
    let out: Vec<Value> = items
        .iter()
        .map(|s| {
            let shape = Shape { view, mv: cx.mv, admin: auth.is_admin(), host_status: status.get(s) };
            Ok(server_json(s, &c.addresses(s)?, cx.base, shape))
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(json(StatusCode::OK, &super::super::http::list_body("servers", out, next)))
}

/// `name` (a pattern), `reservation_id`, `status`, `host` (admins), `flavor`, `image`,
/// `locked` (2.73).
fn filter_fields(cx: &Ctx<'_>, items: &mut Vec<Server>) -> Result<(), ApiError> {
    if let Some(n) = cx.q("name") {
        let re = pattern("name", &n)?;
        items.retain(|s| re.is_match(&s.name));
    }
    if let Some(r) = cx.q("reservation_id") {
        items.retain(|s| s.reservation_id == r);
    }
    if let Some(st) = cx.q("status") {
        if cx.at(38) && !STATUSES.iter().any(|k| k.eq_ignore_ascii_case(&st)) {
            return Err(bad(format!("Invalid status value: {st}")));
        }
        items.retain(|s| s.status().eq_ignore_ascii_case(&st));
    }
    if let Some(h) = cx.q("host").filter(|_| cx.auth.is_admin()) {
        items.retain(|s| s.node == h);
    }
    if let Some(f) = cx.q("flavor") {
        items.retain(|s| s.flavor.id == f.rsplit('/').next().unwrap_or_default());
    }
    if let Some(i) = cx.q("image") {
        items.retain(|s| s.image_id == i.rsplit('/').next().unwrap_or_default());
    }
    if let Some(l) = cx.q("locked").filter(|_| cx.at(73)) {
        // No server is locked here (locking is not offered yet).
        match l.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => items.clear(),
            "false" | "0" | "no" | "off" => {}
            _ => return Err(bad(format!("Invalid input for query parameters locked: {l}"))),
        }
    }
    Ok(())
}

/// `changes-since`, and `changes-before` (2.66): updated at or after, at or before.
fn filter_times(cx: &Ctx<'_>, items: &mut Vec<Server>) -> Result<(), ApiError> {
    let time = |k: &str| -> Result<Option<u64>, ApiError> {
        cx.q(k)
            .map(|t| {
                super::super::http::parse_timestamp(&t)
                    .ok_or_else(|| bad(format!("Invalid input for query parameters {k}: {t}")))
            })
            .transpose()
    };
    let since = time("changes-since")?;
    let before = if cx.at(66) { time("changes-before")? } else { None };
    if let (Some(a), Some(b)) = (since, before) {
        if b < a {
            return Err(bad("The value of changes-since must be less than or equal to changes-before."));
        }
    }
    items.retain(|s| since.is_none_or(|t| s.updated_at >= t) && before.is_none_or(|t| s.updated_at <= t));
    Ok(())
}

/// `tags` (all of), `tags-any`, `not-tags` (not all of), `not-tags-any` (2.26), each a
/// comma-separated list.
fn filter_tags(cx: &Ctx<'_>, items: &mut Vec<Server>) {
    if !cx.at(26) {
        return;
    }
    let list = |k: &str| cx.q(k).map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>());
    let has = |s: &Server, t: &String| s.tags.contains(t);
    if let Some(t) = list("tags") {
        items.retain(|s| t.iter().all(|x| has(s, x)));
    }
    if let Some(t) = list("tags-any") {
        items.retain(|s| t.iter().any(|x| has(s, x)));
    }
    if let Some(t) = list("not-tags") {
        items.retain(|s| !t.iter().all(|x| has(s, x)));
    }
    if let Some(t) = list("not-tags-any") {
        items.retain(|s| !t.iter().any(|x| has(s, x)));
    }
}

/// `ip` (IPv4) and `ip6` (IPv6; admins only before 2.5), each a pattern.
fn filter_addresses(cx: &Ctx<'_>, items: &mut Vec<Server>) -> Result<(), ApiError> {
    let ip6 = cx.q("ip6").filter(|_| cx.at(5) || cx.auth.is_admin());
    for (k, p, v4) in [("ip", cx.q("ip"), true), ("ip6", ip6, false)] {
        let Some(p) = p else { continue };
        let re = pattern(k, &p)?;
        let mut kept = Vec::new();
        for s in items.drain(..) {
            let hit =
                cx.api.compute.addresses(&s)?.iter().any(|(_, a, _)| a.is_ipv4() == v4 && re.is_match(&a.to_string()));
            if hit {
                kept.push(s);
            }
        }
        *items = kept;
    }
    Ok(())
}
