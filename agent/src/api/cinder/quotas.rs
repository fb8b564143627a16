//! `os-quota-sets/{project}[/defaults]` (read; quotas are cloud-wide settings) and `limits`
//! (an admin's `project_id` from 3.39).

use super::super::http::json;
use super::{ApiError, Body, Ctx};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

pub(super) fn route(ctx: &Ctx, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(super::super::not_allowed(req.method()));
    }
    let st = &ctx.api.storage;
    match segs {
        ["os-quota-sets", pid, rest @ ..] if rest.is_empty() || rest == ["defaults"] => {
            if !ctx.admin && ctx.auth.project.as_ref().map(|p| p.id.as_str()) != Some(*pid) {
                return Err(ApiError::Forbidden("Only the admin role may read other projects' quotas.".into()));
            }
            let quota = st.quota();
            let u = st.usage(pid)?;
            let with_usage = ctx.flag("usage");
            let entry = |limit: i64, used: u64| {
                if with_usage {
                    json!({"limit": limit, "in_use": used, "reserved": 0, "allocated": 0})
                } else {
                    json!(limit)
                }
            };
            let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            // Backups and groups are not offered: 0. One volume may take the whole allowance (-1).
            let set = json!({"id": pid, "volumes": entry(n(quota.volumes), u.volumes),
                             "snapshots": entry(n(quota.snapshots), u.snapshots),
                             "gigabytes": entry(n(quota.gigabytes), u.gigabytes),
                             "backups": entry(0, 0), "backup_gigabytes": entry(0, 0), "groups": entry(0, 0),
                             "per_volume_gigabytes": entry(-1, 0)});
            Ok(json(StatusCode::OK, &json!({"quota_set": set})))
        }
        ["limits"] => {
            let project = match ctx.q("project_id").filter(|_| ctx.at(39)) {
                Some(p) if p != ctx.project => {
                    ctx.require_admin("limits_extension:used_limits")?;
                    p
                }
                _ => ctx.project.clone(),
            };
            let (quota, u) = (st.quota(), st.usage(&project)?);
            Ok(json(
                StatusCode::OK,
                &json!({"limits": {"rate": [], "absolute": {
                "maxTotalVolumes": quota.volumes, "maxTotalSnapshots": quota.snapshots,
                "maxTotalVolumeGigabytes": quota.gigabytes, "maxTotalBackups": 0, "maxTotalBackupGigabytes": 0,
                "totalVolumesUsed": u.volumes, "totalSnapshotsUsed": u.snapshots, "totalGigabytesUsed": u.gigabytes,
                "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}}),
            ))
        }
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
