//! Nova's flavors: list/detail (`is_public`, `minRam`, `minDisk`), show, admin create and delete,
//! extra specs, and access lists of private flavors. By microversion: `description` (shown,
//! created, and changed by `PUT`) from 2.55, `extra_specs` in the flavor from 2.61, `swap` 0
//! rather than `""` from 2.75.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json, parse_json, read_body, MAX_JSON_BODY};
use super::super::params::{Count, Flag};
use super::Ctx;
use super::{bad, body_object, typed_body};
use crate::model::compute::Flavor;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::Map;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn flavor_json(cx: &Ctx<'_>, f: &Flavor, detail: bool) -> Value {
    let href = format!("{}/compute/v2.1/flavors/{}", cx.base, f.id);
    let links = json!([{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]);
    let mut j = json!({"id": f.id, "name": f.name, "links": links});
    if cx.at(55) {
        j["description"] = json!(f.description);
    }
    if !detail {
        return j;
    }
    let swap = if f.swap_mb == 0 && !cx.at(75) { json!("") } else { json!(f.swap_mb) };
    let more = json!({"vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb,
           "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb, "OS-FLV-DISABLED:disabled": false, "swap": swap,
           "rxtx_factor": f64::from(f.rxtx_factor_tenths) / 10.0, "os-flavor-access:is_public": f.is_public});
    if let (Some(o), Value::Object(m)) = (j.as_object_mut(), more) {
        o.extend(m);
    }
    if cx.at(61) {
        j["extra_specs"] = json!(f.extra_specs);
    }
    j
}

/// A flavor description as Nova takes it (2.55): at most 65535 printable characters.
fn description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.chars().count() > 65535 || d.chars().any(|c| c.is_control() && !"\n\r\t".contains(c)) => {
            Err(bad("Invalid input for field/attribute description: at most 65535 printable characters."))
        }
        d => Ok(d),
    }
}

/// `PUT /flavors/{id}`'s `flavor` object (2.55): its description, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorUpdate {
    #[serde(default, deserialize_with = "super::super::params::nullable")]
    description: Option<Option<String>>,
}
/// `POST /flavors`'s `flavor` object, as Nova's schema at 2.1: nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorCreate {
    name: String,
    #[serde(default)]
    id: Option<FlavorIdIn>,
    ram: Count,
    vcpus: Count,
    disk: Count,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    ephemeral: Option<Count>,
    #[serde(default)]
    swap: Option<Swap>,
    #[serde(default)]
    rxtx_factor: Option<f64>,
    #[serde(rename = "os-flavor-access:is_public", default)]
    is_public: Option<Flag>,
    #[serde(default, deserialize_with = "super::super::params::nullable")]
    description: Option<Option<String>>,
}

/// A flavor id as given: a string (`"auto"` for a generated one) or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FlavorIdIn {
    Text(String),
    Number(u64),
}

/// Swap in MiB, or `""` for none.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Swap {
    Empty(Empty),
    MiB(Count),
}

/// The empty string.
#[derive(Debug)]
struct Empty;

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.is_empty().then_some(Empty).ok_or_else(|| serde::de::Error::custom("not empty"))
    }
}

impl FlavorCreate {
    /// The flavor, its values checked against Nova's limits.
    fn into_flavor(self, cx: &Ctx<'_>) -> Result<Flavor, ApiError> {
        let invalid = |k: &str, why: &str| bad(format!("Invalid input for field/attribute {k}. {why}"));
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(invalid("name", "It must be 1 to 255 characters, not only spaces."));
        }
        let id = match self.id {
            None => String::new(),
            Some(FlavorIdIn::Text(s)) if s == "auto" => String::new(),
            Some(FlavorIdIn::Text(s)) => s,
            Some(FlavorIdIn::Number(n)) => n.to_string(),
        };
        let positive = |k: &str, c: Count| -> Result<u64, ApiError> {
            (c.0 >= 1).then_some(c.0).ok_or_else(|| invalid(k, "It must be at least 1."))
        };
        let vcpus = u32::try_from(positive("vcpus", self.vcpus)?).map_err(|_| invalid("vcpus", "It is too large."))?;
        let rxtx = match self.rxtx_factor {
            None => 10,
            Some(x) if x > 0.0 && x <= 3.4e38 => (x * 10.0).round() as u32,
            Some(_) => return Err(invalid("rxtx_factor", "It must be positive.")),
        };
        Ok(Flavor {
            id,
            name,
            vcpus,
            ram_mb: positive("ram", self.ram)?,
            disk_gb: self.disk.0,
            ephemeral_gb: self.ephemeral.map_or(0, |c| c.0),
            swap_mb: match self.swap {
                None | Some(Swap::Empty(_)) => 0,
                Some(Swap::MiB(c)) => c.0,
            },
            rxtx_factor_tenths: rxtx,
            is_public: self.is_public.is_none_or(|f| f.0),
            description: description(cx.since(55, "description", self.description)?.flatten())?,
            extra_specs: BTreeMap::new(),
            projects: vec![],
        })
    }
}

/// `/flavors/{id}/os-extra_specs[/{key}]`: read, set (admin) and unset (admin).
async fn extra_specs(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    id: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (auth, c) = (&cx.auth, &cx.api.compute);
    match (req.method().clone(), rest) {
        (Method::GET, []) => Ok(json(StatusCode::OK, &json!({"extra_specs": c.flavor(auth, id)?.extra_specs}))),
        (Method::POST, []) => {
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
            let f = c.set_extra_specs(auth, id, set, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"extra_specs": f.extra_specs})))
        }
        (m, [key]) => match m {
            Method::GET => {
                let f = c.flavor(auth, id)?;
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
                let f = c.set_extra_specs(auth, id, [(k.clone(), v)].into_iter().collect(), vec![]).await?;
                Ok(json(StatusCode::OK, &json!({k.clone(): f.extra_specs.get(&k)})))
            }
            Method::DELETE => {
                c.set_extra_specs(auth, id, BTreeMap::new(), vec![(*key).to_owned()]).await?;
                Ok(empty(StatusCode::OK))
            }
            m => Err(super::super::not_allowed(&m)),
        },
        (m, []) => Err(super::super::not_allowed(&m)),
        _ => Err(super::not_found()),
    }
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, api) = (req.method().clone(), &cx.auth, cx.api);
    let c = &api.compute;
    let q = |k: &str| cx.q(k);
    // `query_pairs` drops the SDK's unset `None` filters; for flavors `is_public=None` means all.
    let all_flavors = cx.raw_query.split('&').any(|p| p.eq_ignore_ascii_case("is_public=none"));
    match (&method, segs) {
        (&Method::GET, ["flavors"]) | (&Method::GET, ["flavors", "detail"]) => {
            let detail = segs.len() == 2;
            let is_public = match q("is_public").as_deref() {
                _ if all_flavors => None,
                None => Some(true),
                Some(v) => Some(
                    Flag::parse(v).ok_or_else(|| bad(format!("Invalid input for query parameters is_public: {v}")))?,
                ),
            };
            let mut items = c.flavors(auth, is_public)?;
            if let Some(min) = q("minRam").and_then(|v| v.parse::<u64>().ok()) {
                items.retain(|f| f.ram_mb >= min);
            }
            if let Some(min) = q("minDisk").and_then(|v| v.parse::<u64>().ok()) {
                items.retain(|f| f.disk_gb >= min);
            }
            // Nova's default order: by flavor id.
            items.sort_by(|a, b| a.id.cmp(&b.id));
            let path = if detail { "flavors/detail" } else { "flavors" };
            let (items, next) = super::page(cx, items, |f| f.id.as_str(), path)?;
            let out: Vec<Value> = items.iter().map(|f| flavor_json(cx, f, detail)).collect();
            Ok(json(StatusCode::OK, &super::super::http::list_body("flavors", out, next)))
        }
        (&Method::POST, ["flavors"]) => {
            let f = typed_body::<FlavorCreate>(req, "flavor").await?.into_flavor(cx)?;
            let made = c.create_flavor(auth, f).await?;
            Ok(json(StatusCode::OK, &json!({"flavor": flavor_json(cx, &made, true)})))
        }
        (_, ["flavors", id]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"flavor": flavor_json(cx, &c.flavor(auth, id)?, true)}))),
            Method::PUT if cx.at(55) => {
                let b = typed_body::<FlavorUpdate>(req, "flavor").await?;
                let d = b.description.ok_or_else(|| {
                    bad("Invalid input for field/attribute flavor: 'description' is a required property")
                })?;
                let f = c.describe_flavor(auth, id, description(d)?).await?;
                Ok(json(StatusCode::OK, &json!({"flavor": flavor_json(cx, &f, true)})))
            }
            Method::DELETE => {
                c.delete_flavor(auth, id).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        (_, ["flavors", id, "os-extra_specs", rest @ ..]) => extra_specs(cx, req, id, rest).await,
        (&Method::GET, ["flavors", id, "os-flavor-access"]) => {
            let f = c.flavor(auth, id)?;
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
            let f = c.flavor_access(auth, id, tenant, add).await?;
            let list: Vec<Value> = f.projects.iter().map(|p| json!({"flavor_id": f.id, "tenant_id": p})).collect();
            Ok(json(StatusCode::OK, &json!({"flavor_access": list})))
        }
        _ => Err(super::not_found()),
    }
}
