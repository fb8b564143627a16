//! Nova's limits and quota sets (os-quota-sets show and detail).

use super::super::error::ApiError;
use super::super::http::json;
use super::super::http::Body;
use super::Ctx;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Map;
use serde_json::{json, Value};

/// Limits Nova shows that this cloud does not enforce differently from Nova's defaults.
const KEY_PAIRS: u64 = 100;
const METADATA_ITEMS: u64 = 128;

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, api) = (req.method().clone(), &cx.auth, cx.api);
    let c = &api.compute;
    match (&method, segs) {
        (&Method::GET, ["limits"]) => {
            let keypairs = c.keypairs(auth)?.len();
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
        _ => Err(super::not_found()),
    }
}
