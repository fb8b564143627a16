//! Nova's servers: create (from an image or a volume, `min_count`/`max_count`), list/detail with
//! filters, show, rename, delete; actions (os-start, os-stop, reboot, pause, unpause, suspend,
//! resume, os-getConsoleOutput); diagnostics; os-volume_attachments.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json, parse_json, read_body, timestamp, MAX_JSON_BODY};
use super::server_create::ServerCreate;
use super::Ctx;
use super::{bad, body_object, typed_body};
use crate::compute::{Action, ServerChange};
use crate::model::compute::{Server, ServerVolume};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::Map;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A server update: its name and access addresses (`description` comes with 2.19).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerUpdate {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<std::net::Ipv4Addr>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<std::net::Ipv6Addr>,
}

/// Which answer a server is part of: a plain listing (id, name, links), an update (Nova's base
/// server view), or a show or detailed listing (with the extensions; host attributes for admins).
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Summary,
    Updated,
    Full { admin: bool },
}

fn server_json(s: &Server, addresses: &[(String, std::net::IpAddr, String)], base: &str, view: View) -> Value {
    let href = format!("{base}/compute/v2.1/servers/{}", s.id);
    let links = json!([{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]);
    if view == View::Summary {
        return json!({"id": s.id, "name": s.name, "links": links});
    }
    let flavor_href = format!("{base}/compute/v2.1/flavors/{}", s.flavor.id);
    let image_href = format!("{base}/image/v2/images/{}", s.image_id);
    // hostId: a hash of the project and the node (Nova uses SHA-224; any opaque digest will
    // do), so projects cannot map the hosts.
    let host_id = if s.node.is_empty() {
        String::new()
    } else {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("{}{}", s.project_id, s.node).as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    let mut j = json!({
        "id": s.id, "name": s.name, "status": s.status(), "tenant_id": s.project_id, "user_id": s.user_id,
        "metadata": s.metadata, "hostId": host_id, "image": {"id": s.image_id, "links": [{"rel": "bookmark", "href": image_href}]},
        "flavor": {"id": s.flavor.id, "links": [{"rel": "bookmark", "href": flavor_href}]},
        "created": timestamp(s.created_at, false), "updated": timestamp(s.updated_at, false),
        "addresses": addresses_json(addresses), "accessIPv4": s.access_ipv4.map_or(String::new(), |a| a.to_string()),
        "accessIPv6": s.access_ipv6.map_or(String::new(), |a| a.to_string()), "links": links, "OS-DCF:diskConfig": "MANUAL",
    });
    if s.image_id.is_empty() {
        j["image"] = json!("");
    }
    if let Some(f) = &s.fault {
        j["fault"] = json!({"code": f.code, "message": f.message, "created": timestamp(f.created, false)});
    }
    // Nova shows progress only while a server is in one of its progress statuses.
    if matches!(s.status(), "ACTIVE" | "BUILD") {
        j["progress"] = json!(0);
    }
    let View::Full { admin } = view else { return j };
    let extended = json!({
        "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:task_state": s.task_state.map(|t| t.as_str()), "OS-EXT-STS:power_state": s.power_state as u8,
        "OS-EXT-AZ:availability_zone": s.availability_zone, "key_name": s.key_name, "config_drive": "True",
        "OS-SRV-USG:launched_at": s.launched_at.map(|t| timestamp(t, true)), "OS-SRV-USG:terminated_at": null,
        "os-extended-volumes:volumes_attached": s.volumes.iter().map(|v| json!({"id": v.volume_id})).collect::<Vec<_>>(),
        "security_groups": [],
    });
    if let (Some(o), Value::Object(e)) = (j.as_object_mut(), extended) {
        o.extend(e);
    }
    if admin {
        j["OS-EXT-SRV-ATTR:host"] = json!(s.node);
        j["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.node);
        j["OS-EXT-SRV-ATTR:instance_name"] = json!(crate::compute::driver::domain_name(&s.id));
    }
    j
}

fn addresses_json(addresses: &[(String, std::net::IpAddr, String)]) -> Value {
    let mut by_net: Map<String, Value> = Map::new();
    for (net, ip, mac) in addresses {
        let entry = json!({"addr": ip.to_string(), "version": if ip.is_ipv4() { 4 } else { 6 },
                           "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac});
        if let Value::Array(a) = by_net.entry(net.clone()).or_insert_with(|| json!([])) {
            a.push(entry);
        }
    }
    Value::Object(by_net)
}

/// A filter as Nova takes `name` and `ip`: a regular expression searched in the value.
fn pattern(k: &str, p: &str) -> Result<regex::Regex, ApiError> {
    regex::Regex::new(p).map_err(|e| bad(format!("Invalid input for query parameters {k}: {e}")))
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, base, api) = (req.method().clone(), &cx.auth, cx.base, cx.api);
    let c = &api.compute;
    match (&method, segs) {
        (&Method::GET, ["servers"]) | (&Method::GET, ["servers", "detail"]) => list(cx, segs.len() == 2),
        (&Method::POST, ["servers"]) => {
            let r = typed_body::<ServerCreate>(req, "server").await?.into_request()?;
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
            Method::GET => {
                let s = c.server(auth, id)?;
                let j = server_json(&s, &c.addresses(&s)?, base, View::Full { admin: auth.is_admin() });
                Ok(json(StatusCode::OK, &json!({"server": j})))
            }
            Method::PUT => {
                let b = typed_body::<ServerUpdate>(req, "server").await?;
                let change = ServerChange { name: b.name, access_ipv4: b.access_ipv4, access_ipv6: b.access_ipv6 };
                let s = c.update_server(auth, id, change).await?;
                let j = server_json(&s, &c.addresses(&s)?, base, View::Updated);
                Ok(json(StatusCode::OK, &json!({"server": j})))
            }
            Method::DELETE => {
                c.delete_server(auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        (_, ["servers", id, "metadata", rest @ ..]) => metadata(cx, req, id, rest).await,
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
        (_, ["servers", id, "diagnostics"]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!(c.diagnostics(auth, id).await?))),
            _ => Err(super::super::not_allowed(&method)),
        },
        (&Method::POST, ["servers", id, "action"]) => action(cx, req, id).await,
        (_, ["servers", id, "os-volume_attachments", rest @ ..]) => volume_attachments(cx, req, id, rest).await,
        _ => Err(super::not_found()),
    }
}

/// `GET /servers[/detail]` with Nova's filters (`name` as a pattern, `status`, `host` for
/// admins, `flavor`, `image`, `changes-since`, `ip`), newest first, paged.
fn list(cx: &Ctx<'_>, detail: bool) -> Result<Response<Body>, ApiError> {
    let (auth, base, c) = (&cx.auth, cx.base, &cx.api.compute);
    let q = |k: &str| cx.q(k);
    let all = q("all_tenants").is_some_and(|v| super::super::http::is_true(&v));
    let mut items = c.servers(auth, all)?;
    // With all_tenants, an admin may name the project (`tenant_id` or `project_id`).
    if let Some(p) = q("project_id").or_else(|| q("tenant_id")).filter(|_| all && auth.is_admin()) {
        items.retain(|s| s.project_id == p);
    }
    if let Some(n) = q("name") {
        let re = pattern("name", &n)?;
        items.retain(|s| re.is_match(&s.name));
    }
    if let Some(r) = q("reservation_id") {
        items.retain(|s| s.reservation_id == r);
    }
    if let Some(st) = q("status") {
        items.retain(|s| s.status().eq_ignore_ascii_case(&st));
    }
    if let Some(h) = q("host").filter(|_| auth.is_admin()) {
        items.retain(|s| s.node == h);
    }
    if let Some(f) = q("flavor") {
        items.retain(|s| s.flavor.id == f.rsplit('/').next().unwrap_or_default());
    }
    if let Some(i) = q("image") {
        items.retain(|s| s.image_id == i.rsplit('/').next().unwrap_or_default());
    }
    if let Some(t) = q("changes-since") {
        let since = super::super::http::parse_timestamp(&t)
            .ok_or_else(|| bad(format!("Invalid input for query parameters changes-since: {t}")))?;
        items.retain(|s| s.updated_at >= since);
    }
    if let Some(ip) = q("ip") {
        let re = pattern("ip", &ip)?;
        let mut kept = Vec::new();
        for s in items {
            if c.addresses(&s)?.iter().any(|(_, a, _)| a.is_ipv4() && re.is_match(&a.to_string())) {
                kept.push(s);
            }
        }
        items = kept;
    }
    // Nova's default order: newest first.
    items.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let path = if detail { "servers/detail" } else { "servers" };
    let (items, next) = super::page(cx, items, |s| s.id.as_str(), path)?;
    let out: Vec<Value> = items
        .iter()
        .map(|s| {
            let view = if detail { View::Full { admin: auth.is_admin() } } else { View::Summary };
            Ok(server_json(s, &c.addresses(s)?, base, view))
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(json(StatusCode::OK, &super::super::http::list_body("servers", out, next)))
}

/// `POST /servers/{id}/action`: one action a body.
async fn action(cx: &Ctx<'_>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    let (auth, c) = (&cx.auth, &cx.api.compute);
    let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
    let (action, arg) = match body.iter().next() {
        Some((k, v)) if body.len() == 1 => (k.as_str(), v),
        _ => return Err(bad("Exactly one action is required.")),
    };
    let act = match action {
        "os-start" => Action::Start,
        "os-stop" => Action::Stop,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        "reboot" => match arg.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
            Some("HARD") => Action::Reboot { hard: true },
            Some("SOFT") | None => Action::Reboot { hard: false },
            Some(t) => {
                return Err(bad(format!("Invalid input for field/attribute type. Value: {t}. It is not SOFT or HARD.")))
            }
        },
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_i64().and_then(|n| usize::try_from(n).ok()),
                Some(Value::String(s)) => s.parse::<i64>().ok().and_then(|n| usize::try_from(n).ok()),
                Some(v) => return Err(bad(format!("Invalid input for field/attribute length. Value: {v}."))),
            };
            return Ok(json(StatusCode::OK, &json!({"output": c.console(auth, id, length).await?})));
        }
        other => return Err(ApiError::NotImplemented(format!("Server action {other} is not served yet."))),
    };
    c.action(auth, id, act).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `PUT` and `POST /servers/{id}/metadata`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

/// `PUT /servers/{id}/metadata/{key}`'s body: that one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaBody {
    meta: BTreeMap<String, String>,
}

/// `/servers/{id}/metadata[/{key}]`: all of it read, replaced (`PUT`) or merged (`POST`); one
/// key read, set or deleted.
async fn metadata(cx: &Ctx<'_>, req: Request<Incoming>, id: &str, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let (auth, c, method) = (&cx.auth, &cx.api.compute, req.method().clone());
    let parse = |bytes: &[u8]| -> Result<Value, ApiError> { parse_json(bytes) };
    match (method, rest) {
        (Method::GET, []) => Ok(json(StatusCode::OK, &json!({"metadata": c.server(auth, id)?.metadata}))),
        (m @ (Method::PUT | Method::POST), []) => {
            let body = parse(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b: MetadataBody = serde_json::from_value(body)
                .map_err(|e| bad(format!("Invalid input for field/attribute metadata: {e}")))?;
            let s = c.set_server_metadata(auth, id, m == Method::PUT, b.metadata, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"metadata": s.metadata})))
        }
        (Method::GET, [key]) => {
            let s = c.server(auth, id)?;
            let v = s.metadata.get(*key).ok_or_else(|| ApiError::NotFound("Metadata item was not found".into()))?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: v }})))
        }
        (Method::PUT, [key]) => {
            let body = parse(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b: MetaBody = serde_json::from_value(body)
                .map_err(|e| bad(format!("Invalid input for field/attribute meta: {e}")))?;
            if b.meta.len() != 1 || !b.meta.contains_key(*key) {
                return Err(bad("Request body and URI mismatch: the body must set exactly the key in the URI."));
            }
            let s = c.set_server_metadata(auth, id, false, b.meta, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: s.metadata.get(*key) }})))
        }
        (Method::DELETE, [key]) => {
            c.set_server_metadata(auth, id, false, BTreeMap::new(), vec![(*key).to_owned()]).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(super::not_found()),
    }
}

/// `/servers/{id}/os-volume_attachments[/{volume}]`.
async fn volume_attachments(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    id: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (auth, c, method) = (&cx.auth, &cx.api.compute, req.method().clone());
    let attachment = |sid: &str, v: &ServerVolume| json!({"id": v.volume_id, "serverId": sid, "volumeId": v.volume_id, "device": v.device});
    match (method, rest) {
        (Method::GET, []) => {
            let s = c.server(auth, id)?;
            let list: Vec<Value> = s.volumes.iter().map(|v| attachment(&s.id, v)).collect();
            Ok(json(StatusCode::OK, &json!({"volumeAttachments": list})))
        }
        (Method::POST, []) => {
            let a = body_object(req, "volumeAttachment").await?;
            let vid = a.get("volumeId").and_then(Value::as_str).ok_or_else(|| {
                bad("Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property")
            })?;
            let v = c.attach_volume(auth, id, vid).await?;
            Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(id, &v)})))
        }
        (Method::GET, [vid]) => {
            let s = c.server(auth, id)?;
            let v = s
                .volume(vid)
                .ok_or_else(|| ApiError::NotFound(format!("Instance {id} is not attached to volume {vid}.")))?;
            Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(&s.id, v)})))
        }
        (Method::DELETE, [vid]) => {
            c.detach_volume(auth, id, vid).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
