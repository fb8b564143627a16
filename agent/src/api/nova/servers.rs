//! Nova's servers: create (from an image or a volume, `min_count`/`max_count`), list/detail with
//! filters, show, rename, delete; actions (os-start, os-stop, reboot, pause, unpause, suspend,
//! resume, os-getConsoleOutput); diagnostics; os-volume_attachments.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json, parse_json, read_body, timestamp, MAX_JSON_BODY};
use super::Ctx;
use super::{bad, body_object};
use crate::compute::{Action, NetRequest, Networks, NewServer};
use crate::model::compute::{check_server_name, Server, ServerVolume};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::Map;
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
        "addresses": addresses_json(addresses), "accessIPv4": "", "accessIPv6": "", "links": links, "OS-DCF:diskConfig": "MANUAL",
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

/// A server name filter as Nova takes it: a regular expression; `^` and `$` anchors and plain
/// text are understood (the common uses), matched case-sensitively.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, rest) = pattern.strip_prefix('^').map_or((false, pattern), |r| (true, r));
    let (end, core) = rest.strip_suffix('$').map_or((false, rest), |r| (true, r));
    match (start, end) {
        (true, true) => name == core,
        (true, false) => name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

/// A new server from a create body.
fn new_server(s: &Map<String, Value>) -> Result<NewServer, ApiError> {
    let string = |k: &str| -> Result<Option<String>, ApiError> {
        match s.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(v) => Err(bad(format!("Invalid input for field/attribute {k}. Value: {v}. It is not a string."))),
        }
    };
    let name = string("name")?
        .ok_or_else(|| bad("Invalid input for field/attribute server. 'name' is a required property"))?;
    check_server_name(&name).map_err(|e| bad(e.to_string()))?;
    // imageRef may be a URL ending in the id; empty when booting from a volume.
    let image_id = string("imageRef")?.unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned();
    let flavor_id = string("flavorRef")?.ok_or_else(|| bad("Invalid input: flavorRef is required."))?;
    let flavor_id = flavor_id.rsplit('/').next().unwrap_or_default().to_owned();
    let networks = match s.get("networks") {
        // Before 2.37 Nova reads an absent or empty list as "the project's network".
        None | Some(Value::Null) => Networks::Auto { explicit: false },
        Some(Value::Array(a)) if a.is_empty() => Networks::Auto { explicit: false },
        Some(Value::String(v)) if v == "none" => Networks::List(vec![]),
        Some(Value::String(v)) if v == "auto" => Networks::Auto { explicit: true },
        Some(Value::Array(a)) => Networks::List(
            a.iter()
                .map(|n| match (n.get("uuid").and_then(Value::as_str), n.get("port").and_then(Value::as_str)) {
                    (_, Some(p)) => Ok(NetRequest::Port(p.to_owned())),
                    (Some(u), None) => Ok(NetRequest::Network(u.to_owned())),
                    _ => Err(bad(format!("Invalid input for field/attribute networks: {n} needs a uuid or a port"))),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(v) => return Err(bad(format!("Invalid input for field/attribute networks: {v}"))),
    };
    let boot_volume = boot_volume(s.get("block_device_mapping_v2"))?;
    if image_id.is_empty() && boot_volume.is_none() {
        return Err(bad(
            "Invalid input: imageRef, or a block_device_mapping_v2 entry booting from a volume, is required.",
        ));
    }
    let user_data = string("user_data")?;
    if let Some(u) = &user_data {
        use base64::Engine;
        if u.len() > 65535 || base64::engine::general_purpose::STANDARD.decode(u).is_err() {
            return Err(bad("Invalid input for field/attribute user_data: not base64, or over 64 KiB."));
        }
    }
    let metadata = match s.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(v) if k.len() <= 255 && v.len() <= 255 => Ok((k.clone(), v.clone())),
                _ => Err(bad(format!(
                    "Invalid input for field/attribute metadata: {k} must map to a string of at most 255 characters"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(bad(format!("Invalid input for field/attribute metadata: {v} is not an object"))),
    };
    let admin_pass = match string("adminPass")? {
        Some(p) => p,
        None => generate_password(),
    };
    Ok(NewServer {
        admin_pass,
        name,
        image_id,
        flavor_id,
        key_name: string("key_name")?,
        user_data,
        availability_zone: string("availability_zone")?.filter(|z| !z.is_empty()),
        metadata,
        networks,
        boot_volume,
    })
}

/// Nova's generated admin password: 12 characters, letters and digits that cannot be mistaken
/// for each other.
fn generate_password() -> String {
    use rand::seq::SliceRandom;
    const SYMBOLS: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    (0..12).filter_map(|_| SYMBOLS.choose(&mut rng).map(|&b| char::from(b))).collect()
}

/// `min_count` and `max_count` of a create body (1 when absent), checked.
fn counts(s: &Map<String, Value>) -> Result<(u32, u32), ApiError> {
    let count = |k: &str| -> Result<Option<u32>, ApiError> {
        let v = match s.get(k) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(t)) => t.parse().ok(),
            Some(_) => None,
        };
        v.and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= 1).map(Some).ok_or_else(|| {
            bad(format!("Invalid input for field/attribute {k}. Value: {}. It must be an integer of at least 1.", s[k]))
        })
    };
    let min = count("min_count")?;
    let max = count("max_count")?;
    let (min, max) = (min.unwrap_or(1), max.unwrap_or(min.unwrap_or(1)));
    if min > max {
        return Err(bad("min_count must be <= max_count"));
    }
    Ok((min, max))
}

/// The boot volume a create's `block_device_mapping_v2` names: an entry with source `volume`,
/// destination `volume` and boot index 0. An image described as a mapping (source `image`,
/// destination `local`) is the imageRef boot; other mappings are not served yet.
fn boot_volume(bdms: Option<&Value>) -> Result<Option<String>, ApiError> {
    let bdms = match bdms {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(bad(format!("Invalid input for field/attribute block_device_mapping_v2: {v}"))),
    };
    let field = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut boot = None;
    for b in bdms {
        let index = match b.get("boot_index") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(t)) => t.parse().ok(),
            _ => None,
        };
        match (field(b, "source_type").as_deref(), field(b, "destination_type").as_deref()) {
            (Some("image"), None | Some("local")) => {}
            (Some("volume"), None | Some("volume")) if index == Some(0) => {
                if b.get("delete_on_termination").and_then(Value::as_bool) == Some(true) {
                    return Err(ApiError::NotImplemented(
                        "delete_on_termination for a boot volume is not served yet; delete the volume after the server."
                            .into(),
                    ));
                }
                let id = field(b, "uuid").ok_or_else(|| bad("Invalid input: a volume mapping needs a uuid."))?;
                if boot.replace(id).is_some() {
                    return Err(bad("Invalid input: more than one mapping has boot_index 0."));
                }
            }
            _ => {
                return Err(ApiError::NotImplemented(format!(
                    "This block device mapping is not served yet (served: a volume with boot_index 0): {b}"
                )))
            }
        }
    }
    Ok(boot)
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, base, api) = (req.method().clone(), &cx.auth, cx.base, cx.api);
    let c = &api.compute;
    match (&method, segs) {
        (&Method::GET, ["servers"]) | (&Method::GET, ["servers", "detail"]) => list(cx, segs.len() == 2),
        (&Method::POST, ["servers"]) => {
            let body = body_object(req, "server").await?;
            let (new, count) = (new_server(&body)?, counts(&body)?);
            let admin_pass = new.admin_pass.clone();
            let s = c.create_servers(auth, new, count).await?;
            let href = format!("{base}/compute/v2.1/servers/{}", s.id);
            Ok(json(
                StatusCode::ACCEPTED,
                &json!({"server": {"id": s.id, "OS-DCF:diskConfig": "MANUAL", "adminPass": admin_pass,
                "security_groups": [], "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}}),
            ))
        }
        (_, ["servers", id]) => match method {
            Method::GET => {
                let s = c.server(auth, id)?;
                let j = server_json(&s, &c.addresses(&s)?, base, View::Full { admin: auth.is_admin() });
                Ok(json(StatusCode::OK, &json!({"server": j})))
            }
            Method::PUT => {
                let body = body_object(req, "server").await?;
                let name = match body.get("name") {
                    Some(Value::String(n)) => n.clone(),
                    _ => return Err(bad("Invalid input: the update takes a \"name\" string (the only field served).")),
                };
                let s = c.rename_server(auth, id, &name).await?;
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
    if let Some(n) = q("name") {
        items.retain(|s| name_matches(&n, &s.name));
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
        let mut kept = Vec::new();
        for s in items {
            if c.addresses(&s)?.iter().any(|(_, a, _)| a.is_ipv4() && name_matches(&ip, &a.to_string())) {
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
    let mut body = json!({"servers": out});
    if let Some(next) = next {
        body["servers_links"] = next;
    }
    Ok(json(StatusCode::OK, &body))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn counts_and_block_device_mappings_are_checked() {
        assert_eq!(counts(&obj(json!({}))).unwrap(), (1, 1));
        assert_eq!(counts(&obj(json!({"min_count": 2}))).unwrap(), (2, 2));
        assert_eq!(counts(&obj(json!({"min_count": "1", "max_count": 3}))).unwrap(), (1, 3));
        for bad in [json!({"min_count": 3, "max_count": 2}), json!({"max_count": 0}), json!({"min_count": "x"})] {
            assert!(matches!(counts(&obj(bad.clone())), Err(ApiError::BadRequest(_))), "{bad}");
        }
        let vol = json!([{"uuid": "v1", "boot_index": 0, "source_type": "volume", "destination_type": "volume"}]);
        assert_eq!(boot_volume(Some(&vol)).unwrap().as_deref(), Some("v1"));
        let image = json!([{"uuid": "i1", "boot_index": "0", "source_type": "image", "destination_type": "local"}]);
        assert_eq!(boot_volume(Some(&image)).unwrap(), None, "an image boot is the imageRef");
        let blank = json!([{"boot_index": -1, "source_type": "blank", "destination_type": "local"}]);
        assert!(matches!(boot_volume(Some(&blank)), Err(ApiError::NotImplemented(_))));
        let no_id = json!([{"boot_index": 0, "source_type": "volume", "destination_type": "volume"}]);
        assert!(matches!(boot_volume(Some(&no_id)), Err(ApiError::BadRequest(_))));
        let body = obj(json!({"name": "s", "flavorRef": "1"}));
        assert!(matches!(new_server(&body), Err(ApiError::BadRequest(m)) if m.contains("imageRef")));
    }
}
