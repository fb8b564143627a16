//! Neutron v2.0 over HTTP (under `/network`): version discovery, extensions, and networks,
//! subnets and ports in Neutron's JSON shapes, with list filters (`?name=`, `?network_id=`,
//! repeated keys as OR; a key no resource has matches nothing), `fields`, and `limit`/`marker`
//! paging.

use super::error::ApiError;
use super::http::{empty, json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::identity::Auth;
use crate::model::network::{
    parse_ip, Cidr, HostRoute, IpRequest, Mac, Network, NetworkPatch, Pool, Port, PortPatch, Subnet, SubnetPatch,
};
use crate::net::service::{NewNetwork, NewPort, NewSubnet, ProviderRequest};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// Extensions served, as (alias, name, description).
const EXTENSIONS: [(&str, &str, &str); 7] = [
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources.",
    ),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
];

fn ts(secs: u64) -> String {
    super::http::timestamp(secs, false)
}

fn extension_json(alias: &str, name: &str, description: &str) -> Value {
    json!({"alias": alias, "name": name, "description": description, "updated": "2013-01-01T10:00:00-00:00", "links": []})
}

fn network_json(n: &Network, subnets: Vec<String>, admin: bool) -> Value {
    let mut v = json!({
        "id": n.id, "name": n.name, "description": n.description,
        "tenant_id": n.project_id, "project_id": n.project_id,
        "admin_state_up": n.admin_state_up, "status": "ACTIVE", "subnets": subnets,
        "shared": n.shared, "router:external": n.external, "mtu": n.mtu,
        "availability_zone_hints": [], "availability_zones": ["nova"],
        "ipv4_address_scope": null, "ipv6_address_scope": null, "port_security_enabled": false,
        "tags": [], "created_at": ts(n.created_at), "updated_at": ts(n.updated_at), "revision_number": 0,
    });
    // As in Neutron's default policy, provider attributes are shown to admins only.
    if admin {
        v["provider:network_type"] = json!(n.segment.network_type.as_str());
        v["provider:physical_network"] = json!(n.segment.physical_network);
        v["provider:segmentation_id"] = json!(n.segment.segmentation_id);
    }
    v
}

fn subnet_json(s: &Subnet) -> Value {
    let pools: Vec<Value> = s.allocation_pools.iter().map(|p| json!({"start": p.start, "end": p.end})).collect();
    json!({
        "id": s.id, "name": s.name, "description": s.description,
        "tenant_id": s.project_id, "project_id": s.project_id, "network_id": s.network_id,
        "ip_version": s.cidr.version(), "cidr": s.cidr.to_string(), "gateway_ip": s.gateway_ip,
        "allocation_pools": pools, "dns_nameservers": s.dns_nameservers,
        "host_routes": s.host_routes.iter().map(|r| json!({"destination": r.destination.to_string(), "nexthop": r.nexthop})).collect::<Vec<_>>(),
        "enable_dhcp": s.enable_dhcp, "ipv6_ra_mode": null, "ipv6_address_mode": null,
        "subnetpool_id": null, "service_types": [], "tags": [],
        "created_at": ts(s.created_at), "updated_at": ts(s.updated_at), "revision_number": 0,
    })
}

fn port_json(p: &Port) -> Value {
    let ips: Vec<Value> =
        p.fixed_ips.iter().map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address})).collect();
    json!({
        "id": p.id, "name": p.name, "description": p.description,
        "tenant_id": p.project_id, "project_id": p.project_id, "network_id": p.network_id,
        "mac_address": p.mac_address.to_string(), "fixed_ips": ips,
        "device_id": p.device_id, "device_owner": p.device_owner,
        "admin_state_up": p.admin_state_up, "status": p.status(),
        "binding:host_id": p.host, "binding:vnic_type": "normal",
        "binding:vif_type": if p.host.is_empty() { "unbound" } else { "bridge" },
        "binding:vif_details": {}, "binding:profile": {},
        "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": [],
        "port_security_enabled": false, "tags": [],
        "created_at": ts(p.created_at), "updated_at": ts(p.updated_at), "revision_number": 0,
    })
}

// ---- request bodies: Neutron's attribute rules, checked key by key

/// One resource object of a request body (`{"network": {...}}` → the inner object).
struct Attrs {
    map: Map<String, Value>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("Invalid input for operation: {}", msg.into()))
}

impl Attrs {
    fn parse(bytes: &[u8], key: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut v: Map<String, Value> = parse_json(bytes)?;
        let Some(Value::Object(map)) = v.remove(key) else {
            return Err(ApiError::BadRequest(format!("Resource body required: an object under \"{key}\".")));
        };
        Self::of(map, allowed)
    }

    /// A resource object's attributes, each one of `allowed`.
    fn of(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
        if !unknown.is_empty() {
            return Err(ApiError::BadRequest(format!("Unrecognized attribute(s) '{}'", unknown.join(", "))));
        }
        Ok(Self { map })
    }

    fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    fn string(&self, k: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > 255 {
                    return Err(bad(format!("'{k}' is longer than 255 characters.")));
                }
                Ok(Some(s.clone()))
            }
            Some(Value::Null) if k == "name" || k == "description" => Ok(Some(String::new())),
            Some(other) => Err(bad(format!("'{other}' is not a valid string for {k}."))),
        }
    }

    fn boolean(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(bad(format!("'{other}' cannot be converted to boolean for {k}."))),
        }
    }

    /// An integer, also as a string (the client sends `provider:segmentation_id` as "100").
    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| bad(format!("'{n}' is not an integer for {k}.")))
            }
            Some(Value::String(s)) => {
                s.trim().parse().map(Some).map_err(|_| bad(format!("'{s}' is not an integer for {k}.")))
            }
            Some(other) => Err(bad(format!("'{other}' is not an integer for {k}."))),
        }
    }

    fn ip(&self, k: &str) -> Result<Option<Option<IpAddr>>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(parse_ip(s).map_err(|e| bad(e.to_string()))?))),
            Some(other) => Err(bad(format!("'{other}' is not a valid IP address."))),
        }
    }

    fn list(&self, k: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(bad(format!("'{other}' is not a list for {k}."))),
        }
    }

    fn ip_list(&self, k: &str) -> Result<Option<Vec<IpAddr>>, ApiError> {
        let Some(items) = self.list(k)? else { return Ok(None) };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => parse_ip(s).map_err(|e| bad(e.to_string())),
                other => Err(bad(format!("'{other}' is not a valid IP address."))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `host_routes`: a list of `{"destination": CIDR, "nexthop": IP}`.
    fn host_routes(&self) -> Result<Option<Vec<HostRoute>>, ApiError> {
        let Some(items) = self.list("host_routes")? else { return Ok(None) };
        items
            .iter()
            .map(|r| {
                let destination: Cidr = str_of(&r["destination"], "host_routes destination")?
                    .parse()
                    .map_err(|e: crate::model::network::NetModelError| bad(e.to_string()))?;
                let nexthop =
                    parse_ip(&str_of(&r["nexthop"], "host_routes nexthop")?).map_err(|e| bad(e.to_string()))?;
                Ok(HostRoute { destination, nexthop })
            })
            .collect::<Result<Vec<_>, ApiError>>()
            .map(Some)
    }

    fn project(&self) -> Result<Option<String>, ApiError> {
        Ok(self.string("project_id")?.or(self.string("tenant_id")?))
    }

    /// Attributes accepted only with their default (empty or false) value.
    fn only_default(&self, keys: &[&str]) -> Result<(), ApiError> {
        for k in keys {
            match self.map.get(*k) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(Value::Object(o)) if o.is_empty() => {}
                Some(v) => return Err(bad(format!("{k} = {v} is not supported by this cloud."))),
            }
        }
        Ok(())
    }
}

fn str_of(v: &Value, what: &str) -> Result<String, ApiError> {
    v.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what} must be a string.")))
}

// ---- routing

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    match segs {
        [] if method == Method::GET => Ok(json(
            StatusCode::OK,
            &json!({"versions": [{"id": "v2.0", "status": "CURRENT",
                     "links": [{"rel": "self", "href": format!("{base}/network/v2.0/")}]}]}),
        )),
        ["v2.0"] if method == Method::GET => {
            let resources: Vec<Value> = ["network", "subnet", "port"]
                .iter()
                .map(|r| {
                    json!({"name": r, "collection": format!("{r}s"),
                               "links": [{"rel": "self", "href": format!("{base}/network/v2.0/{r}s")}]})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"resources": resources})))
        }
        [] | ["v2.0"] => Err(super::not_allowed(&method)),
        ["v2.0", rest @ ..] => v2(api, req, rest, &base).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

async fn body(req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
    read_body(req.into_body(), MAX_JSON_BODY).await
}

/// `POST /v2.0/<kind>s`: one (`{"<kind>": {…}}`, answered `{"<kind>": …}`) or many, Neutron's
/// bulk create (`{"<kind>s": [{…}, …]}`, answered `{"<kind>s": […]}`), all or nothing: when one
/// fails, those already made are deleted again and its error is the answer.
async fn create(api: &Api, auth: &Auth, kind: &str, bytes: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut body: Map<String, Value> = parse_json(bytes)?;
    let plural = format!("{kind}s");
    let (one, many) = (body.remove(kind), body.remove(&plural));
    match (one, many) {
        (Some(Value::Object(obj)), None) if body.is_empty() => {
            Ok(json(StatusCode::CREATED, &json!({ kind: create_one(api, auth, kind, obj).await? })))
        }
        (None, Some(Value::Array(items))) if body.is_empty() && !items.is_empty() => {
            let mut made: Vec<Value> = Vec::with_capacity(items.len());
            for item in items {
                let outcome = match item {
                    Value::Object(obj) => create_one(api, auth, kind, obj).await,
                    _ => Err(ApiError::BadRequest(format!("Each of \"{plural}\" must be an object."))),
                };
                match outcome {
                    Ok(v) => made.push(v),
                    Err(e) => {
                        undo(api, auth, kind, &made).await;
                        return Err(e);
                    }
                }
            }
            Ok(json(StatusCode::CREATED, &json!({ plural: made })))
        }
        _ => Err(ApiError::BadRequest(format!(
            "Resource body required: an object under \"{kind}\", or a list under \"{plural}\"."
        ))),
    }
}

async fn create_one(api: &Api, auth: &Auth, kind: &str, obj: Map<String, Value>) -> Result<Value, ApiError> {
    match kind {
        "network" => create_network(api, auth, obj).await,
        "subnet" => create_subnet(api, auth, obj).await,
        _ => create_port(api, auth, obj).await,
    }
}

/// Deletes what a bulk create made before one of its items failed, newest first.
async fn undo(api: &Api, auth: &Auth, kind: &str, made: &[Value]) {
    let net = &api.network;
    for id in made.iter().rev().filter_map(|v| v["id"].as_str()) {
        let gone = match kind {
            "network" => net.delete_network(auth, id).await,
            "subnet" => net.delete_subnet(auth, id).await,
            _ => net.delete_port(auth, id).await,
        };
        if let Err(e) = gone {
            log::error!("undoing a bulk create: deleting {kind} {id}: {}", crate::error_chain(&e));
        }
    }
}

/// One network of a create (Neutron's `network` object), as the answer shows it.
async fn create_network(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
    let (net, admin) = (&api.network, auth.is_admin());
    let a = Attrs::of(
        obj,
        &[
            "name",
            "description",
            "admin_state_up",
            "shared",
            "router:external",
            "mtu",
            "project_id",
            "tenant_id",
            "provider:network_type",
            "provider:physical_network",
            "provider:segmentation_id",
            "availability_zone_hints",
            "port_security_enabled",
            "is_default",
            "tags",
        ],
    )?;
    a.only_default(&["availability_zone_hints", "is_default", "tags"])?;
    let new = NewNetwork {
        name: a.string("name")?.unwrap_or_default(),
        description: a.string("description")?.unwrap_or_default(),
        project_id: a.project()?,
        admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
        shared: a.boolean("shared")?.unwrap_or(false),
        external: a.boolean("router:external")?.unwrap_or(false),
        mtu: a.int("mtu")?.map(|m| u32::try_from(m).map_err(|_| bad(format!("mtu {m} is invalid.")))).transpose()?,
        provider: ProviderRequest {
            network_type: a.string("provider:network_type")?,
            physical_network: a.string("provider:physical_network")?,
            segmentation_id: a.int("provider:segmentation_id")?,
        },
    };
    let n = net.create_network(auth, new).await?;
    Ok(network_json(&n, vec![], admin))
}

/// One subnet of a create (Neutron's `subnet` object), as the answer shows it.
async fn create_subnet(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
    let net = &api.network;
    let a = Attrs::of(
        obj,
        &[
            "name",
            "description",
            "network_id",
            "ip_version",
            "cidr",
            "gateway_ip",
            "allocation_pools",
            "dns_nameservers",
            "enable_dhcp",
            "host_routes",
            "project_id",
            "tenant_id",
            "ipv6_ra_mode",
            "ipv6_address_mode",
            "subnetpool_id",
            "prefixlen",
            "use_default_subnetpool",
            "service_types",
            "tags",
            "segment_id",
        ],
    )?;
    a.only_default(&[
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "subnetpool_id",
        "prefixlen",
        "use_default_subnetpool",
        "service_types",
        "tags",
        "segment_id",
    ])?;
    let network_id = a.string("network_id")?.ok_or_else(|| bad("network_id is required."))?;
    let cidr: Cidr = a
        .string("cidr")?
        .ok_or_else(|| bad("cidr is required (subnet pools are not supported)."))?
        .parse()
        .map_err(|e: crate::model::network::NetModelError| bad(e.to_string()))?;
    let ip_version = match a.int("ip_version")? {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => return Err(bad(format!("{v} is not in [4, 6]."))),
    };
    let pools = match a.list("allocation_pools")? {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .map(|p| {
                    let s =
                        parse_ip(&str_of(&p["start"], "allocation_pools start")?).map_err(|e| bad(e.to_string()))?;
                    let e = parse_ip(&str_of(&p["end"], "allocation_pools end")?).map_err(|e| bad(e.to_string()))?;
                    Ok(Pool { start: s, end: e })
                })
                .collect::<Result<Vec<_>, ApiError>>()?,
        ),
    };
    let new = NewSubnet {
        name: a.string("name")?.unwrap_or_default(),
        description: a.string("description")?.unwrap_or_default(),
        project_id: a.project()?,
        network_id,
        ip_version,
        cidr,
        gateway_ip: a.ip("gateway_ip")?,
        allocation_pools: pools,
        dns_nameservers: a.ip_list("dns_nameservers")?.unwrap_or_default(),
        host_routes: a.host_routes()?.unwrap_or_default(),
        enable_dhcp: a.boolean("enable_dhcp")?.unwrap_or(true),
    };
    let s = net.create_subnet(auth, new).await?;
    Ok(subnet_json(&s))
}

/// One port of a create (Neutron's `port` object), as the answer shows it.
async fn create_port(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
    let net = &api.network;
    let a = Attrs::of(
        obj,
        &[
            "name",
            "description",
            "network_id",
            "mac_address",
            "fixed_ips",
            "device_id",
            "device_owner",
            "admin_state_up",
            "project_id",
            "tenant_id",
            "binding:host_id",
            "binding:vnic_type",
            "binding:profile",
            "security_groups",
            "port_security_enabled",
            "allowed_address_pairs",
            "extra_dhcp_opts",
            "tags",
        ],
    )?;
    a.only_default(&["binding:profile", "security_groups", "allowed_address_pairs", "extra_dhcp_opts", "tags"])?;
    if let Some(v) = a.string("binding:vnic_type")?.filter(|v| v != "normal") {
        return Err(bad(format!("binding:vnic_type {v} is not supported (normal is).")));
    }
    let network_id = a.string("network_id")?.ok_or_else(|| bad("network_id is required."))?;
    let fixed_ips = match a.list("fixed_ips")? {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .map(|f| {
                    let subnet_id = f.get("subnet_id").map(|v| str_of(v, "subnet_id")).transpose()?;
                    let ip_address = f
                        .get("ip_address")
                        .map(|v| str_of(v, "ip_address").and_then(|s| parse_ip(&s).map_err(|e| bad(e.to_string()))))
                        .transpose()?;
                    Ok(IpRequest { subnet_id, ip_address })
                })
                .collect::<Result<Vec<_>, ApiError>>()?,
        ),
    };
    let mac_address = a.string("mac_address")?.map(|m| m.parse::<Mac>().map_err(|e| bad(e.to_string()))).transpose()?;
    let new = NewPort {
        name: a.string("name")?.unwrap_or_default(),
        description: a.string("description")?.unwrap_or_default(),
        project_id: a.project()?,
        network_id,
        mac_address,
        fixed_ips,
        device_id: a.string("device_id")?.unwrap_or_default(),
        device_owner: a.string("device_owner")?.unwrap_or_default(),
        admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
        host: a.string("binding:host_id")?.unwrap_or_default(),
    };
    let p = net.create_port(auth, new).await?;
    Ok(port_json(&p))
}

async fn v2(api: &Api, req: Request<Incoming>, segs: &[&str], base: &str) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    // Strip a `.json` suffix some clients still append.
    let last = segs.last().map(|s| s.trim_end_matches(".json")).unwrap_or_default();
    let mut segs: Vec<&str> = segs.to_vec();
    if let Some(l) = segs.last_mut() {
        *l = last;
    }
    let auth = super::authenticate(api, &req)?;
    let net = &api.network;
    let query = query_pairs(req.uri().query());
    let admin = auth.is_admin();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["extensions"]) => {
            let items: Vec<Value> = EXTENSIONS.iter().map(|(a, n, d)| extension_json(a, n, d)).collect();
            Ok(json(StatusCode::OK, &json!({"extensions": items})))
        }
        (&Method::GET, ["extensions", alias]) => match EXTENSIONS.iter().find(|(a, _, _)| a == alias) {
            Some((a, n, d)) => Ok(json(StatusCode::OK, &json!({"extension": extension_json(a, n, d)}))),
            None => Err(ApiError::NotFound(format!("Extension with alias {alias} does not exist"))),
        },
        // Cairn runs no Neutron agents (each node's agent serves its networks itself; the
        // `agent` extension is not listed): the list is empty, as Neutron's is for non-admins.
        (&Method::GET, ["agents"]) => Ok(json(StatusCode::OK, &json!({"agents": []}))),
        (&Method::GET, ["networks"]) => {
            let mut subnets = net.subnet_ids()?;
            let items = net
                .list_networks(&auth)?
                .iter()
                .map(|n| network_json(n, subnets.remove(&n.id).unwrap_or_default(), admin))
                .collect();
            listing("networks", items, &query, base)
        }
        (&Method::POST, ["networks"]) => create(api, &auth, "network", &body(req).await?).await,
        (_, ["networks", id]) => match method {
            Method::GET => {
                let n = net.get_network(&auth, id)?;
                let subnets = net.subnet_ids()?.remove(&n.id).unwrap_or_default();
                shown("network", network_json(&n, subnets, admin), &query)
            }
            Method::PUT => {
                let a = Attrs::parse(
                    &body(req).await?,
                    "network",
                    &["name", "description", "admin_state_up", "shared", "router:external"],
                )?;
                let patch = NetworkPatch {
                    name: a.string("name")?,
                    description: a.string("description")?,
                    admin_state_up: a.boolean("admin_state_up")?,
                    shared: a.boolean("shared")?,
                    external: a.boolean("router:external")?,
                    updated_at: 0,
                };
                let n = net.update_network(&auth, id, patch).await?;
                let subnets = net.subnet_ids()?.remove(&n.id).unwrap_or_default();
                Ok(json(StatusCode::OK, &json!({"network": network_json(&n, subnets, admin)})))
            }
            Method::DELETE => {
                net.delete_network(&auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["subnets"]) => {
            listing("subnets", net.list_subnets(&auth)?.iter().map(subnet_json).collect(), &query, base)
        }
        (&Method::POST, ["subnets"]) => create(api, &auth, "subnet", &body(req).await?).await,
        (_, ["subnets", id]) => match method {
            Method::GET => shown("subnet", subnet_json(&net.get_subnet(&auth, id)?), &query),
            Method::PUT => {
                let allowed = ["name", "description", "dns_nameservers", "host_routes", "gateway_ip", "enable_dhcp"];
                let a = Attrs::parse(&body(req).await?, "subnet", &allowed)?;
                // DHCP is switched on or off only when the subnet is made; the same value is fine.
                if let Some(dhcp) = a.boolean("enable_dhcp")? {
                    if net.get_subnet(&auth, id)?.enable_dhcp != dhcp {
                        return Err(bad("Changing enable_dhcp of an existing subnet is not supported yet."));
                    }
                }
                let patch = SubnetPatch {
                    name: a.string("name")?,
                    description: a.string("description")?,
                    dns_nameservers: a.ip_list("dns_nameservers")?,
                    host_routes: a.host_routes()?,
                    gateway_ip: a.ip("gateway_ip")?,
                    updated_at: 0,
                };
                Ok(json(StatusCode::OK, &json!({"subnet": subnet_json(&net.update_subnet(&auth, id, patch).await?)})))
            }
            Method::DELETE => {
                net.delete_subnet(&auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        (&Method::GET, ["ports"]) => {
            listing("ports", net.list_ports(&auth)?.iter().map(port_json).collect(), &query, base)
        }
        (&Method::POST, ["ports"]) => create(api, &auth, "port", &body(req).await?).await,
        (_, ["ports", id]) => match method {
            Method::GET => shown("port", port_json(&net.get_port(&auth, id)?), &query),
            Method::PUT => {
                let a = Attrs::parse(
                    &body(req).await?,
                    "port",
                    &[
                        "name",
                        "description",
                        "admin_state_up",
                        "device_id",
                        "device_owner",
                        "binding:host_id",
                        "fixed_ips",
                        "mac_address",
                    ],
                )?;
                if a.has("fixed_ips") || a.has("mac_address") {
                    return Err(bad(
                        "changing fixed_ips or mac_address of a port is not supported; create a new port.",
                    ));
                }
                let patch = PortPatch {
                    name: a.string("name")?,
                    description: a.string("description")?,
                    admin_state_up: a.boolean("admin_state_up")?,
                    device_id: a.string("device_id")?,
                    device_owner: a.string("device_owner")?,
                    host: a.string("binding:host_id")?,
                    updated_at: 0,
                };
                Ok(json(StatusCode::OK, &json!({"port": port_json(&net.update_port(&auth, id, patch).await?)})))
            }
            Method::DELETE => {
                net.delete_port(&auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::not_allowed(&method)),
        },
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

/// Query keys that steer a listing rather than filter it.
const LIST_CONTROLS: [&str; 6] = ["fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"];

/// Whether one attribute value matches a filter value as Neutron compares them (as text,
/// booleans in any case).
fn matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(&b.to_string()),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None",
        Value::Array(items) => items.iter().any(|i| matches(i, want)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=ip_address=10.0.0.3` / `fixed_ips=subnet_id=…`.
fn matches_fixed_ip(v: &Value, want: &str) -> bool {
    let Some((k, w)) = want.split_once('=') else { return false };
    v.as_array().is_some_and(|ips| ips.iter().any(|ip| ip.get(k).is_some_and(|x| matches(x, w))))
}

fn select_fields(item: Value, fields: &[&str]) -> Value {
    if fields.is_empty() {
        return item;
    }
    let Value::Object(map) = item else { return item };
    Value::Object(map.into_iter().filter(|(k, _)| fields.contains(&k.as_str())).collect())
}

fn shown(key: &str, item: Value, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
    let fields: Vec<&str> = query.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.as_str()).collect();
    Ok(json(StatusCode::OK, &json!({key: select_fields(item, &fields)})))
}

fn listing(key: &str, items: Vec<Value>, query: &[(String, String)], base: &str) -> Result<Response<Body>, ApiError> {
    let mut filters: Vec<(&str, Vec<&str>)> = Vec::new();
    for (k, v) in query.iter().filter(|(k, _)| !LIST_CONTROLS.contains(&k.as_str())) {
        match filters.iter_mut().find(|(fk, _)| fk == k) {
            Some((_, vs)) => vs.push(v),
            None => filters.push((k, vec![v])),
        }
    }
    let mut kept: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|(k, wants)| {
                let v = item.get(*k).unwrap_or(&Value::Null);
                wants.iter().any(|w| if *k == "fixed_ips" { matches_fixed_ip(v, w) } else { matches(v, w) })
            })
        })
        .collect();
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Some(marker) = q("marker") {
        match kept.iter().position(|i| i["id"] == marker) {
            Some(pos) => {
                kept.drain(..=pos);
            }
            None => return Err(ApiError::NotFound(format!("Marker {marker} could not be found."))),
        }
    }
    let mut links = Vec::new();
    if let Some(limit) = q("limit") {
        let n: usize = limit.parse().map_err(|_| bad(format!("limit '{limit}' is not a non-negative integer.")))?;
        if n > 0 && kept.len() > n {
            kept.truncate(n);
            if let Some(last) = kept.last().and_then(|i| i["id"].as_str()) {
                links
                    .push(json!({"rel": "next", "href": format!("{base}/network/v2.0/{key}?limit={n}&marker={last}")}));
            }
        }
    }
    let fields: Vec<&str> = query.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.as_str()).collect();
    let kept: Vec<Value> = kept.into_iter().map(|i| select_fields(i, &fields)).collect();
    let next = (!links.is_empty()).then_some(Value::Array(links));
    Ok(json(StatusCode::OK, &super::http::list_body(key, kept, next)))
}

impl From<crate::net::service::NetError> for ApiError {
    fn from(e: crate::net::service::NetError) -> Self {
        use crate::net::service::NetError as E;
        match e {
            E::Unscoped => ApiError::Unauthorized,
            E::Forbidden(m) => ApiError::Forbidden(m),
            E::NotFound { .. } => ApiError::NotFound(e.to_string()),
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Unavailable(m) => ApiError::Unavailable(m),
            E::Internal(source) => ApiError::Internal(source),
        }
    }
}
