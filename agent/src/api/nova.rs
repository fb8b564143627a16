//! Nova v2.1 over HTTP (under `/compute`): version discovery and microversion negotiation,
//! servers (create from an image or a volume, `min_count`/`max_count`; list/detail with
//! filters, show, rename, delete; actions os-start, os-stop, reboot, pause, unpause, suspend,
//! resume, os-getConsoleOutput; os-volume_attachments), flavors (list/detail with `is_public`, show, admin create and
//! delete, extra specs, access for private flavors), keypairs, os-hypervisors and os-services
//! (from the nodes' reports), os-availability-zone, limits and quota sets.
//!
//! Limitations: the maximum microversion is 2.1 until the features of later ones are served.

use super::error::ApiError;
use super::http::{empty, json, parse_json, query_pairs, read_body, timestamp, Body, MAX_JSON_BODY};
use super::Api;
use crate::compute::{Action, ComputeError, NetRequest, Networks, NewServer};
use crate::model::compute::{check_server_name, Flavor, Inventory, Keypair, Resources, Server, ServerVolume};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The microversions served: `(2, 1)` to `MAX`.
const MAX: (u32, u32) = (2, 1);

/// Limits Nova shows that this cloud does not enforce differently from Nova's defaults.
const KEY_PAIRS: u64 = 100;
const METADATA_ITEMS: u64 = 128;

fn version_doc(base: &str) -> Value {
    json!({"id": "v2.1", "status": "CURRENT", "version": format!("{}.{}", MAX.0, MAX.1), "min_version": "2.1",
           "updated": "2013-07-23T11:33:21Z",
           "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]})
}

/// The microversion a request asks for (`OpenStack-API-Version: compute X.Y` or the legacy
/// header); 406 beyond what is served, as Nova answers.
fn microversion(req: &Request<Incoming>) -> Result<(u32, u32), ApiError> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let asked = h("openstack-api-version")
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("compute ").map(str::trim)))
        .or_else(|| h("x-openstack-nova-api-version"));
    let Some(v) = asked else { return Ok((2, 1)) };
    if v == "latest" {
        return Ok(MAX);
    }
    let parsed = v.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some(mv) = parsed else {
        return Err(ApiError::BadRequest(format!("Version {v} is not a valid microversion (X.Y).")));
    };
    if mv < (2, 1) || mv > MAX {
        return Err(ApiError::NotAcceptable(format!(
            "Version {v} is not supported by the API. Minimum is 2.1 and maximum is {}.{}.",
            MAX.0, MAX.1
        )));
    }
    Ok(mv)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    let mv = microversion(&req)?;
    let mut resp = match segs {
        [] if method == Method::GET => {
            Ok(json(StatusCode::MULTIPLE_CHOICES, &json!({"versions": [version_doc(&base)]})))
        }
        ["v2.1"] if method == Method::GET => Ok(json(StatusCode::OK, &json!({"version": version_doc(&base)}))),
        // Paths may carry the project as older endpoints did (`/v2.1/{project_id}/…`).
        ["v2.1", project, rest @ ..] if project.len() == 32 && project.chars().all(|c| c.is_ascii_hexdigit()) => {
            v21(api, req, rest, &base).await
        }
        ["v2.1", rest @ ..] => v21(api, req, rest, &base).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }?;
    let v = format!("{}.{}", mv.0, mv.1);
    let hs = resp.headers_mut();
    if let Ok(h) = HeaderValue::from_str(&format!("compute {v}")) {
        hs.insert("openstack-api-version", h);
    }
    if let Ok(h) = HeaderValue::from_str(&v) {
        hs.insert("x-openstack-nova-api-version", h);
    }
    hs.insert("vary", HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"));
    Ok(resp)
}

fn flavor_json(f: &Flavor, base: &str, detail: bool) -> Value {
    let href = format!("{base}/compute/v2.1/flavors/{}", f.id);
    let links = json!([{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]);
    if !detail {
        return json!({"id": f.id, "name": f.name, "links": links});
    }
    json!({"id": f.id, "name": f.name, "vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb,
           "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb, "OS-FLV-DISABLED:disabled": false,
           "swap": if f.swap_mb == 0 { json!("") } else { json!(f.swap_mb) },
           "rxtx_factor": f64::from(f.rxtx_factor_tenths) / 10.0,
           "os-flavor-access:is_public": f.is_public, "links": links})
}

fn keypair_json(k: &Keypair) -> Value {
    json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint, "user_id": k.user_id,
           "type": k.kind, "created_at": timestamp(k.created_at, true), "deleted": false, "deleted_at": null,
           "updated_at": null, "id": 0})
}

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

fn server_json(
    s: &Server,
    addresses: &[(String, std::net::IpAddr, String)],
    base: &str,
    detail: bool,
    admin: bool,
) -> Value {
    let href = format!("{base}/compute/v2.1/servers/{}", s.id);
    let links = json!([{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]);
    if !detail {
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
        "progress": 0, "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:task_state": s.task_state.map(|t| t.as_str()), "OS-EXT-STS:power_state": s.power_state as u8,
        "OS-EXT-AZ:availability_zone": s.availability_zone, "key_name": s.key_name, "config_drive": "True",
        "OS-SRV-USG:launched_at": s.launched_at.map(|t| timestamp(t, true)), "OS-SRV-USG:terminated_at": null,
        "os-extended-volumes:volumes_attached": s.volumes.iter().map(|v| json!({"id": v.volume_id})).collect::<Vec<_>>(),
        "security_groups": [],
    });
    if s.image_id.is_empty() {
        j["image"] = json!("");
    }
    if let Some(f) = &s.fault {
        j["fault"] = json!({"code": f.code, "message": f.message, "created": timestamp(f.created, false)});
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
    Ok(NewServer {
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

/// A flavor from a create body.
fn new_flavor(f: &Map<String, Value>) -> Result<Flavor, ApiError> {
    let int = |k: &str, required: bool| -> Result<u64, ApiError> {
        match f.get(k) {
            None | Some(Value::Null) if !required => Ok(0),
            None | Some(Value::Null) => {
                Err(bad(format!("Invalid input for field/attribute flavor. '{k}' is a required property")))
            }
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| bad(format!("Invalid input for field/attribute {k}: not a non-negative integer"))),
            Some(Value::String(s)) if s.is_empty() && !required => Ok(0),
            Some(Value::String(s)) => {
                s.trim().parse().map_err(|_| bad(format!("Invalid input for field/attribute {k}: not an integer")))
            }
            Some(v) => Err(bad(format!("Invalid input for field/attribute {k}: {v} is not an integer"))),
        }
    };
    let name = match f.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad("Invalid input for field/attribute flavor. 'name' is a required property")),
    };
    let id = match f.get("id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s == "auto" => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => return Err(bad(format!("Invalid input for field/attribute id: {v}"))),
    };
    let rxtx = match f.get("rxtx_factor") {
        None | Some(Value::Null) => 10,
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|x| (x * 10.0).round() as u32)
            .filter(|x| *x > 0)
            .ok_or_else(|| bad("rxtx_factor must be positive"))?,
        Some(v) => return Err(bad(format!("Invalid input for field/attribute rxtx_factor: {v}"))),
    };
    let is_public = match f.get("os-flavor-access:is_public") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(bad(format!("Invalid input for field/attribute os-flavor-access:is_public: {v}"))),
    };
    let small = |k: &str, v: u64| u32::try_from(v).map_err(|_| bad(format!("{k} is too large")));
    Ok(Flavor {
        id,
        name,
        vcpus: small("vcpus", int("vcpus", true)?)?,
        ram_mb: int("ram", true)?,
        disk_gb: int("disk", true)?,
        ephemeral_gb: int("OS-FLV-EXT-DATA:ephemeral", false)?,
        swap_mb: int("swap", false)?,
        rxtx_factor_tenths: rxtx,
        is_public,
        description: None,
        extra_specs: BTreeMap::new(),
        projects: vec![],
    })
}

async fn body_object(req: Request<Incoming>, key: &str) -> Result<Map<String, Value>, ApiError> {
    let mut body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
    match body.remove(key) {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(bad(format!("Invalid input: a body with a \"{key}\" object is required"))),
    }
}

async fn v21(api: &Api, req: Request<Incoming>, segs: &[&str], base: &str) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let auth = super::authenticate(api, &req)?;
    let c = &api.compute;
    let query = query_pairs(req.uri().query());
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    // `query_pairs` drops the SDK's unset `None` filters; for flavors `is_public=None` means all.
    let all_flavors =
        req.uri().query().is_some_and(|qs| qs.split('&').any(|p| p.eq_ignore_ascii_case("is_public=none")));
    match (&method, segs) {
        (&Method::GET, ["servers"]) | (&Method::GET, ["servers", "detail"]) => {
            let detail = segs.len() == 2;
            let all = q("all_tenants").is_some_and(|v| super::http::is_true(&v));
            let mut items = c.servers(&auth, all)?;
            if let Some(n) = q("name") {
                items.retain(|s| name_matches(&n, &s.name));
            }
            if let Some(st) = q("status") {
                items.retain(|s| s.status().eq_ignore_ascii_case(&st));
            }
            if let Some(h) = q("host").filter(|_| auth.is_admin()) {
                items.retain(|s| s.node == h);
            }
            let out: Vec<Value> = items
                .iter()
                .map(|s| Ok(server_json(s, &c.addresses(s)?, base, detail, auth.is_admin())))
                .collect::<Result<_, ApiError>>()?;
            Ok(json(StatusCode::OK, &json!({"servers": out})))
        }
        (&Method::POST, ["servers"]) => {
            let body = body_object(req, "server").await?;
            let (new, count) = (new_server(&body)?, counts(&body)?);
            let s = c.create_servers(&auth, new, count).await?;
            let href = format!("{base}/compute/v2.1/servers/{}", s.id);
            Ok(json(
                StatusCode::ACCEPTED,
                &json!({"server": {"id": s.id, "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [], "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}}),
            ))
        }
        (_, ["servers", id]) => match method {
            Method::GET => {
                let s = c.server(&auth, id)?;
                let j = server_json(&s, &c.addresses(&s)?, base, true, auth.is_admin());
                Ok(json(StatusCode::OK, &json!({"server": j})))
            }
            Method::PUT => {
                let body = body_object(req, "server").await?;
                let name = match body.get("name") {
                    Some(Value::String(n)) => n.clone(),
                    _ => return Err(bad("Invalid input: the update takes a \"name\" string (the only field served).")),
                };
                let s = c.rename_server(&auth, id, &name).await?;
                let j = server_json(&s, &c.addresses(&s)?, base, true, auth.is_admin());
                Ok(json(StatusCode::OK, &json!({"server": j})))
            }
            Method::DELETE => {
                c.delete_server(&auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (_, ["servers", id, "diagnostics"]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!(c.diagnostics(&auth, id).await?))),
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::POST, ["servers", id, "action"]) => {
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
                        return Err(bad(format!(
                            "Invalid input for field/attribute type. Value: {t}. It is not SOFT or HARD."
                        )))
                    }
                },
                "os-getConsoleOutput" => {
                    let length = match arg.get("length") {
                        None | Some(Value::Null) => None,
                        Some(Value::Number(n)) => n.as_i64().and_then(|n| usize::try_from(n).ok()),
                        Some(Value::String(s)) => s.parse::<i64>().ok().and_then(|n| usize::try_from(n).ok()),
                        Some(v) => return Err(bad(format!("Invalid input for field/attribute length. Value: {v}."))),
                    };
                    return Ok(json(StatusCode::OK, &json!({"output": c.console(&auth, id, length).await?})));
                }
                other => return Err(ApiError::NotImplemented(format!("Server action {other} is not served yet."))),
            };
            c.action(&auth, id, act).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (_, ["servers", id, "os-volume_attachments", rest @ ..]) => {
            let attachment = |sid: &str, v: &ServerVolume| json!({"id": v.volume_id, "serverId": sid, "volumeId": v.volume_id, "device": v.device});
            match (method, rest) {
                (Method::GET, []) => {
                    let s = c.server(&auth, id)?;
                    let list: Vec<Value> = s.volumes.iter().map(|v| attachment(&s.id, v)).collect();
                    Ok(json(StatusCode::OK, &json!({"volumeAttachments": list})))
                }
                (Method::POST, []) => {
                    let a = body_object(req, "volumeAttachment").await?;
                    let vid = a.get("volumeId").and_then(Value::as_str).ok_or_else(|| {
                        bad("Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property")
                    })?;
                    let v = c.attach_volume(&auth, id, vid).await?;
                    Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(id, &v)})))
                }
                (Method::GET, [vid]) => {
                    let s = c.server(&auth, id)?;
                    let v = s
                        .volume(vid)
                        .ok_or_else(|| ApiError::NotFound(format!("Instance {id} is not attached to volume {vid}.")))?;
                    Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(&s.id, v)})))
                }
                (Method::DELETE, [vid]) => {
                    c.detach_volume(&auth, id, vid).await?;
                    Ok(empty(StatusCode::ACCEPTED))
                }
                (m, [] | [_]) => Err(super::not_allowed(&m)),
                _ => Err(ApiError::NotFound("The resource could not be found.".into())),
            }
        }
        (&Method::GET, ["flavors"]) | (&Method::GET, ["flavors", "detail"]) => {
            let detail = segs.len() == 2;
            let is_public = match q("is_public").as_deref() {
                _ if all_flavors => None,
                None => Some(true),
                Some(v) => Some(super::http::is_true(v)),
            };
            let mut items = c.flavors(&auth, is_public)?;
            if let Some(min) = q("minRam").and_then(|v| v.parse::<u64>().ok()) {
                items.retain(|f| f.ram_mb >= min);
            }
            if let Some(min) = q("minDisk").and_then(|v| v.parse::<u64>().ok()) {
                items.retain(|f| f.disk_gb >= min);
            }
            let out: Vec<Value> = items.iter().map(|f| flavor_json(f, base, detail)).collect();
            Ok(json(StatusCode::OK, &json!({"flavors": out})))
        }
        (&Method::POST, ["flavors"]) => {
            let f = new_flavor(&body_object(req, "flavor").await?)?;
            let made = c.create_flavor(&auth, f).await?;
            Ok(json(StatusCode::OK, &json!({"flavor": flavor_json(&made, base, true)})))
        }
        (_, ["flavors", id]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"flavor": flavor_json(&c.flavor(&auth, id)?, base, true)}))),
            Method::DELETE => {
                c.delete_flavor(&auth, id).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["flavors", id, "os-extra_specs"]) => {
            Ok(json(StatusCode::OK, &json!({"extra_specs": c.flavor(&auth, id)?.extra_specs})))
        }
        (&Method::POST, ["flavors", id, "os-extra_specs"]) => {
            let specs = body_object(req, "extra_specs").await?;
            let mut set = BTreeMap::new();
            for (k, v) in specs {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(bad(format!("Invalid input for field/attribute extra_specs: {k}={other}"))),
                };
                set.insert(k, v);
            }
            let f = c.set_extra_specs(&auth, id, set, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"extra_specs": f.extra_specs})))
        }
        (_, ["flavors", id, "os-extra_specs", key]) => match method {
            Method::GET => {
                let f = c.flavor(&auth, id)?;
                let v = f
                    .extra_specs
                    .get(*key)
                    .ok_or_else(|| ApiError::NotFound(format!("Flavor {id} has no extra specs with key {key}.")))?;
                Ok(json(StatusCode::OK, &json!({*key: v})))
            }
            Method::PUT => {
                let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
                let (k, v) = match body.iter().next() {
                    Some((k, Value::String(v))) if body.len() == 1 && k == key => (k.clone(), v.clone()),
                    _ => return Err(bad(format!("The body must be {{\"{key}\": \"value\"}}"))),
                };
                let f = c.set_extra_specs(&auth, id, [(k.clone(), v)].into_iter().collect(), vec![]).await?;
                Ok(json(StatusCode::OK, &json!({k.clone(): f.extra_specs.get(&k)})))
            }
            Method::DELETE => {
                c.set_extra_specs(&auth, id, BTreeMap::new(), vec![(*key).to_owned()]).await?;
                Ok(empty(StatusCode::OK))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["flavors", id, "os-flavor-access"]) => {
            let f = c.flavor(&auth, id)?;
            if f.is_public {
                return Err(ApiError::NotFound("Access list not available for public flavors.".into()));
            }
            let list: Vec<Value> = f.projects.iter().map(|p| json!({"flavor_id": f.id, "tenant_id": p})).collect();
            Ok(json(StatusCode::OK, &json!({"flavor_access": list})))
        }
        (&Method::POST, ["flavors", id, "action"]) => {
            let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let (action, arg) = body.iter().next().ok_or_else(|| bad("An action is required."))?;
            let add = match action.as_str() {
                "addTenantAccess" => true,
                "removeTenantAccess" => false,
                other => return Err(bad(format!("Action {other} is not supported on flavors."))),
            };
            let tenant = arg.get("tenant").and_then(Value::as_str).ok_or_else(|| bad("The action needs a tenant."))?;
            let f = c.flavor_access(&auth, id, tenant, add).await?;
            let list: Vec<Value> = f.projects.iter().map(|p| json!({"flavor_id": f.id, "tenant_id": p})).collect();
            Ok(json(StatusCode::OK, &json!({"flavor_access": list})))
        }
        (&Method::GET, ["os-keypairs"]) => {
            let list: Vec<Value> = c
                .keypairs(&auth)?
                .iter()
                .map(|k| {
                    json!({"keypair": {
                "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"keypairs": list})))
        }
        (&Method::POST, ["os-keypairs"]) => {
            let k = body_object(req, "keypair").await?;
            let name = k
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Invalid input for field/attribute keypair. 'name' is a required property"))?;
            let key = k.get("public_key").and_then(Value::as_str).ok_or_else(|| {
                bad("Invalid input: public_key is required (this cloud does not generate key pairs; the openstack client makes one for you)")
            })?;
            let made = c.create_keypair(&auth, name, key).await?;
            Ok(json(StatusCode::OK, &json!({"keypair": keypair_json(&made)})))
        }
        (_, ["os-keypairs", name]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"keypair": keypair_json(&c.keypair(&auth, name)?)}))),
            Method::DELETE => {
                c.delete_keypair(&auth, name).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["os-hypervisors", rest @ ..]) => {
            let nodes = c.nodes(&auth)?;
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
            let compute_nodes = c.nodes(&auth)?;
            let members = api.cluster.nodes(&auth)?;
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
        (&Method::GET, ["limits"]) => {
            let keypairs = c.keypairs(&auth)?.len();
            let q = c.quota();
            let project = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            let (instances, used) = c.project_usage(&project)?;
            Ok(json(
                StatusCode::OK,
                &json!({"limits": {"rate": [], "absolute": {
                "maxTotalInstances": q.instances, "maxTotalCores": q.cores,
                "maxTotalRAMSize": q.ram_mb, "maxTotalKeypairs": KEY_PAIRS,
                "maxServerMeta": METADATA_ITEMS, "maxImageMeta": METADATA_ITEMS,
                "maxPersonality": 0, "maxPersonalitySize": 0, "maxSecurityGroups": 0,
                "maxSecurityGroupRules": 0, "maxTotalFloatingIps": 0, "maxServerGroups": 0,
                "maxServerGroupMembers": 0, "totalInstancesUsed": instances, "totalCoresUsed": used.vcpus,
                "totalRAMUsed": used.memory_mb,
                "totalFloatingIpsUsed": 0, "totalSecurityGroupsUsed": 0, "totalServerGroupsUsed": 0,
                "totalKeyPairsUsed": keypairs}}}),
            ))
        }
        (&Method::GET, ["os-quota-sets", project, rest @ ..]) if rest.is_empty() || rest == ["detail"] => {
            if !auth.is_admin() && auth.project.as_ref().map(|p| p.id.as_str()) != Some(*project) {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.".into(),
                ));
            }
            let q = c.quota();
            let (instances, used) = c.project_usage(project)?;
            let entries = [
                ("instances", q.instances, instances),
                ("cores", q.cores, used.vcpus),
                ("ram", q.ram_mb, used.memory_mb),
                ("key_pairs", KEY_PAIRS, 0),
                ("metadata_items", METADATA_ITEMS, 0),
            ];
            let mut set: Map<String, Value> = entries
                .iter()
                .map(|(k, limit, in_use)| {
                    let v = if rest.is_empty() {
                        json!(limit)
                    } else {
                        json!({"limit": limit, "in_use": in_use, "reserved": 0})
                    };
                    ((*k).to_owned(), v)
                })
                .collect();
            set.insert("id".into(), json!(project));
            Ok(json(StatusCode::OK, &json!({"quota_set": set})))
        }
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

impl From<ComputeError> for ApiError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::Forbidden(m) => ApiError::Forbidden(m),
            ComputeError::NotFound(m) => ApiError::NotFound(m),
            ComputeError::BadRequest(m) => ApiError::BadRequest(m),
            ComputeError::Conflict(m) => ApiError::Conflict(m),
            ComputeError::OverQuota(m) => ApiError::Forbidden(m),
            ComputeError::NotImplemented(m) => ApiError::NotImplemented(m),
            ComputeError::Internal(source) => ApiError::Internal(source),
        }
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
