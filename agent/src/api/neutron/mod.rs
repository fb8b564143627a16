//! Neutron v2.0 over HTTP (under `/network`): version discovery, extensions, and networks,
//! subnets and ports in Neutron's JSON shapes, with list filters (`?name=`, `?network_id=`,
//! repeated keys as OR; a key no resource has matches nothing), `fields`, and `limit`/`marker`
//! paging; each resource in its own module (networks, subnets, ports), request attributes
//! checked in [`attrs`].

mod attrs;
mod networks;
mod ports;
mod subnets;

use super::error::ApiError;
use super::http::{json, parse_json, query_pairs, read_body, Body, MAX_JSON_BODY};
use super::Api;
use crate::identity::Auth;
use attrs::bad;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// What every resource handler gets: the service, the caller, the query and the base URL.
pub(super) struct Ctx<'a> {
    api: &'a Api,
    auth: std::sync::Arc<Auth>,
    admin: bool,
    query: Vec<(String, String)>,
    base: String,
}

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

pub(super) fn ts(secs: u64) -> String {
    super::http::timestamp(secs, false)
}

fn extension_json(alias: &str, name: &str, description: &str) -> Value {
    json!({"alias": alias, "name": name, "description": description, "updated": "2013-01-01T10:00:00-00:00", "links": []})
}

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

pub(super) async fn body(req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
    read_body(req.into_body(), MAX_JSON_BODY).await
}

/// `POST /v2.0/<kind>s`: one (`{"<kind>": {…}}`, answered `{"<kind>": …}`) or many, Neutron's
/// bulk create (`{"<kind>s": [{…}, …]}`, answered `{"<kind>s": […]}`), all or nothing: when one
/// fails, those already made are deleted again and its error is the answer.
pub(super) async fn create(api: &Api, auth: &Auth, kind: &str, bytes: &[u8]) -> Result<Response<Body>, ApiError> {
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
        "network" => networks::create_network(api, auth, obj).await,
        "subnet" => subnets::create_subnet(api, auth, obj).await,
        _ => ports::create_port(api, auth, obj).await,
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

async fn v2(api: &Api, req: Request<Incoming>, segs: &[&str], base: &str) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    // Strip a `.json` suffix some clients still append.
    let last = segs.last().map(|s| s.trim_end_matches(".json")).unwrap_or_default();
    let mut segs: Vec<&str> = segs.to_vec();
    if let Some(l) = segs.last_mut() {
        *l = last;
    }
    let auth = super::authenticate(api, &req)?;
    let admin = auth.is_admin();
    let cx = Ctx { api, auth, admin, query: query_pairs(req.uri().query()), base: base.to_owned() };
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
        (_, ["networks", ..]) => networks::route(&cx, req, &segs).await,
        (_, ["subnets", ..]) => subnets::route(&cx, req, &segs).await,
        (_, ["ports", ..]) => ports::route(&cx, req, &segs).await,
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

pub(super) fn shown(key: &str, item: Value, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
    let fields: Vec<&str> = query.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.as_str()).collect();
    Ok(json(StatusCode::OK, &json!({key: select_fields(item, &fields)})))
}

pub(super) fn listing(
    key: &str,
    items: Vec<Value>,
    query: &[(String, String)],
    base: &str,
) -> Result<Response<Body>, ApiError> {
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
