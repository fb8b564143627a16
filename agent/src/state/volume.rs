//! Applying Cinder's commands: volume records, quota checks (applied in log order, so two
//! creates at once cannot both slip under a limit) and conditional status transitions.

use super::apply::{load, not_found, store};
use super::{Command, Kind, Outcome, Refusal, StateError, VOLUMES};
use crate::model::volume::{Quota, Volume};
use redb::{ReadableTable, WriteTransaction};

fn usage(tx: &WriteTransaction, project: &str) -> Result<(u64, u64), StateError> {
    let t = tx.open_table(VOLUMES)?;
    let (mut n, mut gb) = (0, 0);
    for row in t.iter()? {
        let (_, v) = row?;
        let v: Volume = serde_json::from_slice(v.value())?;
        if v.project_id == project {
            n += 1;
            gb += v.size;
        }
    }
    Ok((n, gb))
}

fn over(q: &Quota, n: u64, gb: u64) -> Option<Refusal> {
    if n > q.volumes {
        return Some(Refusal::OverQuota(format!(
            "VolumeLimitExceeded: Maximum number of volumes allowed ({}) exceeded",
            q.volumes
        )));
    }
    if gb > q.gigabytes {
        return Some(Refusal::OverQuota(format!(
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota ({} GiB)",
            q.gigabytes
        )));
    }
    None
}

pub(super) fn apply(tx: &WriteTransaction, cmd: &Command) -> Result<Outcome, StateError> {
    match cmd {
        Command::CreateVolume { volume, quota } => {
            if load::<Volume>(tx, VOLUMES, &volume.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Volume, name: volume.id.clone() }));
            }
            let (n, gb) = usage(tx, &volume.project_id)?;
            if let Some(r) = over(quota, n + 1, gb + volume.size) {
                return Ok(Err(r));
            }
            store(tx, VOLUMES, &volume.id, volume)?;
            Ok(Ok(()))
        }
        Command::UpdateVolume { id, name, description, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            if let Some(n) = name {
                v.name = n.clone();
            }
            if let Some(d) = description {
                v.description = d.clone();
            }
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        Command::SetVolumeStatus { id, from, to, size, error, quota, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            if !from.contains(&v.status) {
                return Ok(Err(Refusal::Conflicts(format!(
                    "Invalid volume: Volume {id} status must be {}, but current status is: {}.",
                    from.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or "),
                    v.status.as_str()
                ))));
            }
            if let (Some(q), Some(new)) = (quota, size) {
                let (n, gb) = usage(tx, &v.project_id)?;
                if let Some(r) = over(q, n, gb + new.saturating_sub(v.size)) {
                    return Ok(Err(r));
                }
            }
            v.status = *to;
            if let Some(s) = size {
                v.size = *s;
            }
            v.error = error.clone();
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        Command::DeleteVolume { id } => {
            if tx.open_table(VOLUMES)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Volume, id)));
            }
            Ok(Ok(()))
        }
        _ => Err(StateError::Raft("not a volume command".into())),
    }
}
