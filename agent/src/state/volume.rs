//! Applying Cinder's commands: volume and snapshot records, attachments, quota checks (applied
//! in log order, so two creates at once cannot both slip under a limit), conditional status
//! transitions, and the pools each node reports.

use super::apply::{load, not_found, store};
use super::{Kind, Outcome, Refusal, StateError, CLOUD, DEFAULT_TYPE_PREFIX, MESSAGES, POOLS, SNAPSHOTS, VOLUMES};
use crate::model::volume::{Message, Quota, Snapshot, Volume, VolumeStatus};
use crate::state::VolumeCommand;
use redb::{ReadableTable, WriteTransaction};

fn all<T: serde::de::DeserializeOwned>(
    tx: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StateError> {
    let t = tx.open_table(table)?;
    let mut out = vec![];
    for row in t.iter()? {
        out.push(serde_json::from_slice(row?.1.value())?);
    }
    Ok(out)
}

/// A project's use: (volumes, snapshots, GiB of both).
fn usage(tx: &WriteTransaction, project: &str) -> Result<(u64, u64, u64), StateError> {
    let (mut n, mut s, mut gb) = (0, 0, 0);
    for v in all::<Volume>(tx, VOLUMES)?.into_iter().filter(|v| v.project_id == project) {
        n += 1;
        gb += v.size;
    }
    for v in all::<Snapshot>(tx, SNAPSHOTS)?.into_iter().filter(|v| v.project_id == project) {
        s += 1;
        gb += v.size;
    }
    Ok((n, s, gb))
}

/// Cinder's InvalidVolume/InvalidSnapshot: a 400, as Cinder answers.
fn status_refusal(kind: &str, id: &str, from: &[VolumeStatus], now: VolumeStatus) -> Refusal {
    Refusal::Invalid(format!(
        "Invalid {kind}: {} {id} status must be {}, but current status is: {}.",
        if kind == "volume" { "Volume" } else { "Snapshot" },
        from.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or "),
        now.as_str()
    ))
}

fn over(q: &Quota, n: u64, snaps: u64, gb: u64) -> Option<Refusal> {
    if snaps > q.snapshots {
        return Some(Refusal::OverQuota(format!(
            "SnapshotLimitExceeded: Maximum number of snapshots allowed ({}) exceeded",
            q.snapshots
        )));
    }
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

pub(super) fn apply(tx: &WriteTransaction, cmd: &VolumeCommand) -> Result<Outcome, StateError> {
    match cmd {
        VolumeCommand::CreateVolume { volume, quota } => {
            if load::<Volume>(tx, VOLUMES, &volume.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Volume, name: volume.id.clone() }));
            }
            let (n, s, gb) = usage(tx, &volume.project_id)?;
            if let Some(r) = over(quota, n + 1, s, gb + volume.size) {
                return Ok(Err(r));
            }
            if let Some(sid) = &volume.snapshot_id {
                match load::<Snapshot>(tx, SNAPSHOTS, sid)? {
                    Some(snap) if snap.status == VolumeStatus::Available => {}
                    Some(snap) => {
                        return Ok(Err(status_refusal("snapshot", sid, &[VolumeStatus::Available], snap.status)))
                    }
                    None => return Ok(Err(not_found(Kind::Snapshot, sid))),
                }
            }
            store(tx, VOLUMES, &volume.id, volume)?;
            Ok(Ok(()))
        }
        VolumeCommand::UpdateVolume { id, name, description, bootable, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            if let Some(n) = name {
                v.name = n.clone();
            }
            if let Some(d) = description {
                v.description = d.clone();
            }
            if bootable.is_some() {
                v.bootable = *bootable;
            }
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        VolumeCommand::SetVolumeStatus { id, from, to, size, error, quota, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            if !from.contains(&v.status) {
                return Ok(Err(status_refusal("volume", id, from, v.status)));
            }
            if let (Some(q), Some(new)) = (quota, size) {
                let (n, s, gb) = usage(tx, &v.project_id)?;
                if let Some(r) = over(q, n, s, gb + new.saturating_sub(v.size)) {
                    return Ok(Err(r));
                }
            }
            if *to == VolumeStatus::Deleting {
                let deps = all::<Snapshot>(tx, SNAPSHOTS)?.into_iter().filter(|s| s.volume_id == *id).count();
                if deps > 0 {
                    return Ok(Err(Refusal::Invalid(format!(
                        "Invalid volume: Volume {id} still has {deps} dependent snapshots."
                    ))));
                }
            }
            // A failure with its reason is the owner's user message too.
            if let (VolumeStatus::Error, Some(reason)) = (to, error) {
                let m = Message::of_failure(&v, v.status, reason, *updated_at);
                store(tx, MESSAGES, &m.id.clone(), &m)?;
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
        VolumeCommand::SetAttachment { volume_id, attachment, updated_at } => {
            let id = volume_id;
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            let free = v.status == VolumeStatus::Available && v.attachments.is_empty();
            match v.attachments.iter_mut().find(|a| a.id == attachment.id) {
                Some(a) => *a = attachment.clone(),
                None if free => v.attachments.push(attachment.clone()),
                None => return Ok(Err(status_refusal("volume", id, &[VolumeStatus::Available], v.status))),
            }
            v.status = attachment.status.volume_status();
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        VolumeCommand::SetDefaultType { project, volume_type } => {
            let key = format!("{DEFAULT_TYPE_PREFIX}{project}");
            let mut t = tx.open_table(CLOUD)?;
            match volume_type {
                Some(ty) => drop(t.insert(key.as_str(), ty.as_str())?),
                None if t.remove(key.as_str())?.is_none() => return Ok(Err(not_found(Kind::DefaultType, project))),
                None => {}
            }
            Ok(Ok(()))
        }
        VolumeCommand::DeleteMessage { id } => {
            if tx.open_table(MESSAGES)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Message, id)));
            }
            Ok(Ok(()))
        }
        VolumeCommand::DeleteVolume { id } => {
            if tx.open_table(VOLUMES)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Volume, id)));
            }
            Ok(Ok(()))
        }
        VolumeCommand::AttachVolume { id, attachment, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            let from = [VolumeStatus::Available, VolumeStatus::Attaching];
            if !from.contains(&v.status) {
                return Ok(Err(status_refusal("volume", id, &from, v.status)));
            }
            v.attachments = vec![attachment.clone()];
            v.status = VolumeStatus::InUse;
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        VolumeCommand::DetachVolume { id, attachment_id, force, updated_at } => {
            let Some(mut v) = load::<Volume>(tx, VOLUMES, id)? else { return Ok(Err(not_found(Kind::Volume, id))) };
            let from = [VolumeStatus::InUse, VolumeStatus::Detaching, VolumeStatus::Reserved, VolumeStatus::Attaching];
            if !force && !from.contains(&v.status) {
                return Ok(Err(status_refusal("volume", id, &from, v.status)));
            }
            let before = v.attachments.len();
            v.attachments.retain(|a| attachment_id.as_ref().is_some_and(|want| *want != a.id));
            if v.attachments.len() == before && !force {
                return Ok(Err(Refusal::Invalid(format!(
                    "Invalid volume: attachment {} is not an attachment of volume {id}.",
                    attachment_id.as_deref().unwrap_or("")
                ))));
            }
            if v.attachments.is_empty() || *force {
                v.status = VolumeStatus::Available;
            }
            v.updated_at = *updated_at;
            store(tx, VOLUMES, id, &v)?;
            Ok(Ok(()))
        }
        VolumeCommand::CreateSnapshot { snapshot, quota } => {
            if load::<Snapshot>(tx, SNAPSHOTS, &snapshot.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Snapshot, name: snapshot.id.clone() }));
            }
            let vid = &snapshot.volume_id;
            let Some(v) = load::<Volume>(tx, VOLUMES, vid)? else { return Ok(Err(not_found(Kind::Volume, vid))) };
            if v.status != VolumeStatus::Available {
                return Ok(Err(status_refusal("volume", vid, &[VolumeStatus::Available], v.status)));
            }
            let (n, s, gb) = usage(tx, &snapshot.project_id)?;
            if let Some(r) = over(quota, n, s + 1, gb + snapshot.size) {
                return Ok(Err(r));
            }
            store(tx, SNAPSHOTS, &snapshot.id, snapshot)?;
            Ok(Ok(()))
        }
        VolumeCommand::UpdateSnapshot { id, name, description, updated_at } => {
            let Some(mut s) = load::<Snapshot>(tx, SNAPSHOTS, id)? else {
                return Ok(Err(not_found(Kind::Snapshot, id)));
            };
            if let Some(n) = name {
                s.name = n.clone();
            }
            if let Some(d) = description {
                s.description = d.clone();
            }
            s.updated_at = *updated_at;
            store(tx, SNAPSHOTS, id, &s)?;
            Ok(Ok(()))
        }
        VolumeCommand::SetSnapshotStatus { id, from, to, error, progress, updated_at } => {
            let Some(mut s) = load::<Snapshot>(tx, SNAPSHOTS, id)? else {
                return Ok(Err(not_found(Kind::Snapshot, id)));
            };
            if !from.contains(&s.status) {
                return Ok(Err(status_refusal("snapshot", id, from, s.status)));
            }
            if *to == VolumeStatus::Deleting {
                let making = all::<Volume>(tx, VOLUMES)?
                    .into_iter()
                    .any(|v| v.snapshot_id.as_deref() == Some(id) && v.status == VolumeStatus::Creating);
                if making {
                    return Ok(Err(Refusal::Invalid(format!(
                        "Invalid snapshot: a volume is being created from snapshot {id}."
                    ))));
                }
            }
            s.status = *to;
            s.error = error.clone();
            s.progress = progress.clone();
            s.updated_at = *updated_at;
            store(tx, SNAPSHOTS, id, &s)?;
            Ok(Ok(()))
        }
        VolumeCommand::DeleteSnapshot { id } => {
            if tx.open_table(SNAPSHOTS)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Snapshot, id)));
            }
            Ok(Ok(()))
        }
        VolumeCommand::ReportPools { node, pools } => {
            let mut t = tx.open_table(POOLS)?;
            let prefix = format!("{node}\0");
            let old: Vec<String> = t
                .range(prefix.as_str()..)?
                .map(|r| r.map(|(k, _)| k.value().to_owned()))
                .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
                .collect::<Result<_, _>>()?;
            for k in old {
                t.remove(k.as_str())?;
            }
            for p in pools {
                t.insert(format!("{prefix}{}", p.name).as_str(), serde_json::to_vec(p)?.as_slice())?;
            }
            Ok(Ok(()))
        }
    }
}
