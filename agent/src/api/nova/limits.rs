//! Nova's limits and quota sets (os-quota-sets show, detail and defaults), as typed answers
//! with exactly the fields of Nova 2.1, less those later microversions drop (network and
//! security group ones at 2.36, image metadata at 2.39, personality files at 2.57). Quotas are the cloud's settings (`[compute]` in the
//! config), the same for every project; limits of features not offered (floating IPs, security
//! groups, server groups, injected files) are 0.
//!
//! Limitation: quotas cannot be changed per project through the API yet (`PUT` is 404).

use super::super::error::ApiError;
use super::super::http::{json, Body};
use super::Ctx;
use crate::model::compute::{ComputeQuota, Resources};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

/// Limits Nova shows that this cloud does not enforce differently from Nova's defaults.
const KEY_PAIRS: u64 = 100;
const METADATA_ITEMS: u64 = crate::compute::METADATA_ITEMS as u64;

/// `limits.absolute` at 2.1.
#[derive(Serialize)]
struct Absolute {
    #[serde(rename = "maxTotalInstances")]
    max_instances: u64,
    #[serde(rename = "maxTotalCores")]
    max_cores: u64,
    #[serde(rename = "maxTotalRAMSize")]
    max_ram: u64,
    #[serde(rename = "maxTotalKeypairs")]
    max_keypairs: u64,
    #[serde(rename = "maxServerMeta")]
    max_server_meta: u64,
    #[serde(rename = "maxImageMeta")]
    max_image_meta: u64,
    #[serde(rename = "maxPersonality")]
    max_personality: u64,
    #[serde(rename = "maxPersonalitySize")]
    max_personality_size: u64,
    #[serde(rename = "maxSecurityGroups")]
    max_security_groups: u64,
    #[serde(rename = "maxSecurityGroupRules")]
    max_security_group_rules: u64,
    #[serde(rename = "maxTotalFloatingIps")]
    max_floating_ips: u64,
    #[serde(rename = "maxServerGroups")]
    max_server_groups: u64,
    #[serde(rename = "maxServerGroupMembers")]
    max_server_group_members: u64,
    #[serde(rename = "totalInstancesUsed")]
    instances_used: u64,
    #[serde(rename = "totalCoresUsed")]
    cores_used: u64,
    #[serde(rename = "totalRAMUsed")]
    ram_used: u64,
    #[serde(rename = "totalFloatingIpsUsed")]
    floating_ips_used: u64,
    #[serde(rename = "totalSecurityGroupsUsed")]
    security_groups_used: u64,
    #[serde(rename = "totalServerGroupsUsed")]
    server_groups_used: u64,
}

/// A quota set at 2.1: each resource's limit (`T = u64`) or its limit and use (`Detail`).
#[derive(Serialize)]
struct QuotaSet<T> {
    id: String,
    instances: T,
    cores: T,
    ram: T,
    floating_ips: T,
    fixed_ips: T,
    metadata_items: T,
    key_pairs: T,
    security_groups: T,
    security_group_rules: T,
    server_groups: T,
    server_group_members: T,
    injected_files: T,
    injected_file_content_bytes: T,
    injected_file_path_bytes: T,
}

#[derive(Serialize)]
struct Detail {
    limit: u64,
    in_use: u64,
    reserved: u64,
}

impl QuotaSet<u64> {
    fn of(id: &str, q: &ComputeQuota) -> Self {
        QuotaSet {
            id: id.to_owned(),
            instances: q.instances,
            cores: q.cores,
            ram: q.ram_mb,
            floating_ips: 0,
            fixed_ips: 0,
            metadata_items: METADATA_ITEMS,
            key_pairs: KEY_PAIRS,
            security_groups: 0,
            security_group_rules: 0,
            server_groups: 0,
            server_group_members: 0,
            injected_files: 0,
            injected_file_content_bytes: 0,
            injected_file_path_bytes: 0,
        }
    }

    /// The same limits with what the project uses.
    fn detail(self, instances: u64, used: Resources, keypairs: u64) -> QuotaSet<Detail> {
        let d = |limit: u64, in_use: u64| Detail { limit, in_use, reserved: 0 };
        QuotaSet {
            id: self.id,
            instances: d(self.instances, instances),
            cores: d(self.cores, used.vcpus),
            ram: d(self.ram, used.memory_mb),
            floating_ips: d(0, 0),
            fixed_ips: d(0, 0),
            metadata_items: d(self.metadata_items, 0),
            key_pairs: d(self.key_pairs, keypairs),
            security_groups: d(0, 0),
            security_group_rules: d(0, 0),
            server_groups: d(0, 0),
            server_group_members: d(0, 0),
            injected_files: d(0, 0),
            injected_file_content_bytes: d(0, 0),
            injected_file_path_bytes: d(0, 0),
        }
    }
}

/// The fields each microversion drops, of limits and of quota sets.
const DROPPED: &[(u32, &str)] = &[
    (36, "maxSecurityGroups"),
    (36, "maxSecurityGroupRules"),
    (36, "maxTotalFloatingIps"),
    (36, "totalFloatingIpsUsed"),
    (36, "totalSecurityGroupsUsed"),
    (36, "floating_ips"),
    (36, "fixed_ips"),
    (36, "security_groups"),
    (36, "security_group_rules"),
    (39, "maxImageMeta"),
    (57, "maxPersonality"),
    (57, "maxPersonalitySize"),
    (57, "injected_files"),
    (57, "injected_file_content_bytes"),
    (57, "injected_file_path_bytes"),
];

/// `body` as 2.`mv` shows it.
fn at(cx: &Ctx<'_>, body: impl Serialize) -> Value {
    let mut v = serde_json::to_value(body).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for (minor, k) in DROPPED {
            if cx.at(*minor) {
                o.remove(*k);
            }
        }
    }
    v
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (auth, c) = (&cx.auth, &cx.api.compute);
    match (req.method(), segs) {
        (&Method::GET, ["limits"]) => {
            let q = c.quota();
            let project = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            let (instances, used) = c.project_usage(&project)?;
            let absolute = Absolute {
                max_instances: q.instances,
                max_cores: q.cores,
                max_ram: q.ram_mb,
                max_keypairs: KEY_PAIRS,
                max_server_meta: METADATA_ITEMS,
                max_image_meta: METADATA_ITEMS,
                max_personality: 0,
                max_personality_size: 0,
                max_security_groups: 0,
                max_security_group_rules: 0,
                max_floating_ips: 0,
                max_server_groups: 0,
                max_server_group_members: 0,
                instances_used: instances,
                cores_used: used.vcpus,
                ram_used: used.memory_mb,
                floating_ips_used: 0,
                security_groups_used: 0,
                server_groups_used: 0,
            };
            let body = serde_json::json!({"limits": {"rate": [], "absolute": at(cx, absolute)}});
            Ok(json(StatusCode::OK, &body))
        }
        (&Method::GET, ["os-quota-sets", project, rest @ ..]) => {
            if !auth.is_admin() && auth.project.as_ref().map(|p| p.id.as_str()) != Some(*project) {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.".into(),
                ));
            }
            let set = QuotaSet::of(project, &c.quota());
            match rest {
                [] | ["defaults"] => Ok(json(StatusCode::OK, &serde_json::json!({"quota_set": at(cx, set)}))),
                ["detail"] => {
                    let (instances, used) = c.project_usage(project)?;
                    let keypairs = if auth.project.as_ref().map(|p| p.id.as_str()) == Some(*project) {
                        c.keypairs(auth, None)?.len() as u64
                    } else {
                        0
                    };
                    let detail = set.detail(instances, used, keypairs);
                    Ok(json(StatusCode::OK, &serde_json::json!({"quota_set": at(cx, detail)})))
                }
                _ => Err(super::not_found()),
            }
        }
        _ => Err(super::not_found()),
    }
}
