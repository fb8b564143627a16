//! The catalog: the services this agent serves, in tokens (`catalog`) and as Keystone's
//! regions, services and endpoints (read only: the catalog is the agent's own services).

use super::{ok, ApiError, Body, Ctx};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Value};

/// Region reported in the catalog.
pub const REGION: &str = "RegionOne";
const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

/// `(type, name, path)` of each service. Cinder's path names the project, as Cinder has it
/// (`/volume/v3/{project_id}`); without a project it is left out.
fn services(project: Option<&str>) -> Vec<(&'static str, &'static str, String)> {
    let mut out = vec![
        ("identity", "keystone", "/identity/v3".to_owned()),
        ("network", "neutron", "/network".to_owned()),
        ("image", "glance", "/image".to_owned()),
        ("compute", "nova", "/compute/v2.1".to_owned()),
    ];
    if let Some(p) = project {
        out.push(("block-storage", "cinder", format!("/volume/v3/{p}")));
        out.push(("volumev3", "cinderv3", format!("/volume/v3/{p}")));
    }
    out
}

/// The services as a token's catalog.
pub fn catalog(base: &str, project: Option<&str>) -> Value {
    let entries: Vec<Value> = services(project)
        .iter()
        .map(|(kind, name, path)| {
            let url = format!("{base}{path}");
            let endpoints: Vec<Value> = INTERFACES
                .iter()
                .map(|i| json!({"id": format!("{name}-{i}"), "interface": i, "region": REGION, "region_id": REGION, "url": url}))
                .collect();
            json!({"id": name, "type": kind, "name": name, "endpoints": endpoints})
        })
        .collect();
    Value::Array(entries)
}

fn service_json(ctx: &Ctx, kind: &str, name: &str) -> Value {
    json!({"id": name, "type": kind, "name": name, "enabled": true, "description": "",
           "links": {"self": ctx.link(&format!("services/{name}"))}})
}

fn endpoints(ctx: &Ctx) -> Vec<Value> {
    let project = ctx.auth.project.as_ref().map(|p| p.id.as_str());
    let mut out = Vec::new();
    for (_, name, path) in services(project) {
        for i in INTERFACES {
            let id = format!("{name}-{i}");
            out.push(json!({"id": id, "interface": i, "region": REGION, "region_id": REGION,
                            "url": format!("{}{path}", ctx.base), "service_id": name, "enabled": true,
                            "links": {"self": ctx.link(&format!("endpoints/{id}"))}}));
        }
    }
    out
}

pub(super) fn route(ctx: &Ctx, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::Forbidden("The catalog is this cloud's own services; it cannot be changed.".into()));
    }
    let region = json!({"id": REGION, "description": "", "parent_region_id": null,
                        "links": {"self": ctx.link(&format!("regions/{REGION}"))}});
    let missing = |what: &str, id: &str| ApiError::NotFound(format!("Could not find {what}: {id}."));
    match segs {
        ["regions"] => Ok(ctx.list("regions", vec![region], "regions")),
        ["regions", id] if *id == REGION => Ok(ok("region", region)),
        ["regions", id] => Err(missing("region", id)),
        ["services"] => {
            let all = services(Some("")).into_iter().filter(|(k, _, _)| ctx.q("type").is_none_or(|t| t == *k));
            Ok(ctx.list("services", all.map(|(k, n, _)| service_json(ctx, k, n)).collect(), "services"))
        }
        ["services", id] => match services(Some("")).into_iter().find(|(_, n, _)| n == id) {
            Some((k, n, _)) => Ok(ok("service", service_json(ctx, k, n))),
            None => Err(missing("service", id)),
        },
        ["endpoints"] => {
            let all = endpoints(ctx).into_iter().filter(|e| {
                ctx.q("interface").is_none_or(|i| e["interface"] == i)
                    && ctx.q("service_id").is_none_or(|s| e["service_id"] == s)
            });
            Ok(ctx.list("endpoints", all.collect(), "endpoints"))
        }
        ["endpoints", id] => match endpoints(ctx).into_iter().find(|e| e["id"] == *id) {
            Some(e) => Ok(ok("endpoint", e)),
            None => Err(missing("endpoint", id)),
        },
        _ => Err(ApiError::NotFound(format!("No such resource: /v3/{}", segs.join("/")))),
    }
}
