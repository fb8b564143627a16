//! `/v2.0/ports`: list (`fixed_ips` filters), create (one or in bulk), show, update, delete.

use super::super::error::ApiError;
use super::super::http::{empty, json, Body};
use super::super::Api;
use super::attrs::{bad, str_of, Attrs};
use super::{body, create, listing, shown, ts, Ctx};
use crate::identity::Auth;
use crate::model::network::{parse_ip, IpRequest, Mac, Port, PortPatch};
use crate::net::service::NewPort;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

pub(super) fn port_json(p: &Port) -> Value {
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

/// One port of a create (Neutron's `port` object), as the answer shows it.
pub(super) async fn create_port(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
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

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match (&method, segs) {
        (&Method::GET, ["ports"]) => {
            listing("ports", cx.api.network.list_ports(&cx.auth)?.iter().map(port_json).collect(), &cx.query, &cx.base)
        }
        (&Method::POST, ["ports"]) => create(cx.api, &cx.auth, "port", &body(req).await?).await,
        (_, ["ports", id]) => match method {
            Method::GET => shown("port", port_json(&cx.api.network.get_port(&cx.auth, id)?), &cx.query),
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
                Ok(json(
                    StatusCode::OK,
                    &json!({"port": port_json(&cx.api.network.update_port(&cx.auth, id, patch).await?)}),
                ))
            }
            Method::DELETE => {
                cx.api.network.delete_port(&cx.auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
