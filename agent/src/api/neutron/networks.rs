//! `/v2.0/networks`: list, create (one or in bulk, with provider attributes for admins), show,
//! update, delete.

use super::super::error::ApiError;
use super::super::http::{empty, json, Body};
use super::super::Api;
use super::attrs::{bad, Attrs};
use super::{body, create, listing, shown, ts, Ctx};
use crate::identity::Auth;
use crate::model::network::{Network, NetworkPatch};
use crate::net::service::{NewNetwork, ProviderRequest};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

pub(super) fn network_json(n: &Network, subnets: Vec<String>, admin: bool) -> Value {
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

/// One network of a create (Neutron's `network` object), as the answer shows it.
pub(super) async fn create_network(api: &Api, auth: &Auth, obj: Map<String, Value>) -> Result<Value, ApiError> {
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

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match (&method, segs) {
        (&Method::GET, ["networks"]) => {
            let mut subnets = cx.api.network.subnet_ids()?;
            let items = cx
                .api
                .network
                .list_networks(&cx.auth)?
                .iter()
                .map(|n| network_json(n, subnets.remove(&n.id).unwrap_or_default(), cx.admin))
                .collect();
            listing("networks", items, &cx.query, &cx.base)
        }
        (&Method::POST, ["networks"]) => create(cx.api, &cx.auth, "network", &body(req).await?).await,
        (_, ["networks", id]) => match method {
            Method::GET => {
                let n = cx.api.network.get_network(&cx.auth, id)?;
                let subnets = cx.api.network.subnet_ids()?.remove(&n.id).unwrap_or_default();
                shown("network", network_json(&n, subnets, cx.admin), &cx.query)
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
                let n = cx.api.network.update_network(&cx.auth, id, patch).await?;
                let subnets = cx.api.network.subnet_ids()?.remove(&n.id).unwrap_or_default();
                Ok(json(StatusCode::OK, &json!({"network": network_json(&n, subnets, cx.admin)})))
            }
            Method::DELETE => {
                cx.api.network.delete_network(&cx.auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
