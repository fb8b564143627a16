//! `/v2.0/subnets`: list, create (one or in bulk: pools, gateway, DNS servers, host routes),
//! show, update (names, DNS servers, host routes, gateway), delete.

use super::super::error::ApiError;
use super::super::http::{empty, json, Body};
use super::super::Api;
use super::attrs::{bad, str_of, Attrs};
use super::{body, create, listing, shown, ts, Ctx};
use crate::identity::Auth;
use crate::model::network::{parse_ip, Cidr, Pool, Subnet, SubnetPatch};
use crate::net::service::NewSubnet;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

pub(super) fn subnet_json(s: &Subnet) -> Value {
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

/// Attributes a create may give only with their default value (features not served).
const DEFAULT_ONLY: [&str; 8] = [
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "use_default_subnetpool",
    "service_types",
    "tags",
    "segment_id",
];

/// One subnet of a create (Neutron's `subnet` object), as the answer shows it.
pub(super) async fn create_subnet(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
    let net = &api.network;
    let served = [
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
    ];
    let a = Attrs::of(obj, &[&served[..], &DEFAULT_ONLY[..]].concat())?;
    a.only_default(&DEFAULT_ONLY)?;
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

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match (&method, segs) {
        (&Method::GET, ["subnets"]) => listing(
            "subnets",
            cx.api.network.list_subnets(&cx.auth)?.iter().map(subnet_json).collect(),
            &cx.query,
            &cx.base,
        ),
        (&Method::POST, ["subnets"]) => create(cx.api, &cx.auth, "subnet", &body(req).await?).await,
        (_, ["subnets", id]) => match method {
            Method::GET => shown("subnet", subnet_json(&cx.api.network.get_subnet(&cx.auth, id)?), &cx.query),
            Method::PUT => {
                let allowed = ["name", "description", "dns_nameservers", "host_routes", "gateway_ip", "enable_dhcp"];
                let a = Attrs::parse(&body(req).await?, "subnet", &allowed)?;
                // DHCP is switched on or off only when the subnet is made; the same value is fine.
                if let Some(dhcp) = a.boolean("enable_dhcp")? {
                    if cx.api.network.get_subnet(&cx.auth, id)?.enable_dhcp != dhcp {
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
                Ok(json(
                    StatusCode::OK,
                    &json!({"subnet": subnet_json(&cx.api.network.update_subnet(&cx.auth, id, patch).await?)}),
                ))
            }
            Method::DELETE => {
                cx.api.network.delete_subnet(&cx.auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
