//! Volume snapshots. A qcow2 volume keeps its snapshots inside its own file (`qemu-img snapshot`,
//! named by the snapshot's id: instant, and only the clusters written afterwards take space). On
//! a logical pool a snapshot is an LVM snapshot of the volume (copy-on-write, as big as the
//! volume). Elsewhere (raw or vmdk files, rbd) it is a copy in the same pool. A volume with
//! snapshots cannot be deleted; a volume made from a snapshot is a full, independent volume.

use super::{now, project_of, vol_xml, JobResult, Result, Storage, StorageError, GIB};
use crate::identity::Auth;
use crate::model::storage::{PoolSpec, VolumeFormat};
use crate::model::volume::{Snapshot, SnapshotKind, Volume, VolumeStatus};
use crate::state::metadata::{MetadataChange, MetadataOf};
use crate::state::Command;
use crate::state::{MetadataCommand, VolumeCommand};
use crate::sys::libvirt::{Libvirt, LibvirtError};
use crate::sys::tool;
use crate::sys::tool::ToolError;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

impl Storage {
    fn sees_snapshot(auth: &Auth, s: &Snapshot) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == s.project_id)
    }

    pub fn get_snapshot(&self, auth: &Auth, id: &str) -> Result<Snapshot> {
        project_of(auth)?;
        self.view()?
            .snapshot(id)?
            .filter(|s| Self::sees_snapshot(auth, s))
            .ok_or_else(|| StorageError::SnapshotNotFound(id.into()))
    }

    /// The caller's snapshots, newest first (an admin may ask for every project's).
    pub fn list_snapshots(&self, auth: &Auth, all_projects: bool) -> Result<Vec<Snapshot>> {
        let mine = project_of(auth)?.to_owned();
        let mut v: Vec<Snapshot> = self
            .view()?
            .snapshots()?
            .into_iter()
            .filter(|s| if all_projects && auth.is_admin() { true } else { s.project_id == mine })
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(v)
    }

    /// Records a snapshot of an available volume and starts taking it; returns the `creating`
    /// record.
    pub async fn create_snapshot(
        self: &Arc<Self>,
        auth: &Auth,
        volume_id: &str,
        name: String,
        description: String,
        metadata: BTreeMap<String, String>,
    ) -> Result<Snapshot> {
        let project = project_of(auth)?.to_owned();
        let v = self.get(auth, volume_id)?;
        let lv = self.libvirt()?;
        if v.node != self.node {
            return Err(StorageError::Unavailable(format!(
                "Volume {volume_id} is on node {}; snapshots across the cluster are not available yet.",
                v.node
            )));
        }
        if v.status == VolumeStatus::InUse {
            return Err(StorageError::BadRequest(format!(
                "Invalid volume: volume {volume_id} is attached; snapshots of attached volumes are not supported yet, detach it first."
            )));
        }
        let pool = self.pool(&v.volume_type)?.clone();
        let kind = if v.format == VolumeFormat::Qcow2 { SnapshotKind::Internal } else { SnapshotKind::Volume };
        let t = now();
        let snap = Snapshot {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            description,
            project_id: project,
            user_id: auth.user.id.clone(),
            volume_id: v.id.clone(),
            size: v.size,
            status: VolumeStatus::Creating,
            error: None,
            kind,
            pool: pool.name.clone(),
            node: self.node.clone(),
            metadata,
            progress: None,
            created_at: t,
            updated_at: t,
        };
        self.propose(Command::Volume(VolumeCommand::CreateSnapshot { snapshot: snap.clone(), quota: self.quota }))
            .await?;
        let (id, s) = (snap.id.clone(), snap.clone());
        let what = format!("snapshot {id}");
        self.in_background(
            what,
            move || take(&*lv, &pool.spec, &v, &s),
            move |to, error| {
                Command::Volume(VolumeCommand::SetSnapshotStatus {
                    id,
                    from: vec![VolumeStatus::Creating],
                    to,
                    error,
                    progress: None,
                    updated_at: now(),
                })
            },
        );
        Ok(snap)
    }

    /// Reverts an available volume to its latest snapshot (Cinder 3.40): the volume is
    /// `reverting` and the snapshot `restoring` while the data is copied back; both are
    /// available after (the volume `error`, with its user message, when the copy fails).
    pub async fn revert(self: &Arc<Self>, auth: &Auth, volume_id: &str, snapshot_id: &str) -> Result<()> {
        let v = self.get(auth, volume_id)?;
        let s = self.get_snapshot(auth, snapshot_id)?;
        let latest = self
            .list_snapshots(auth, auth.is_admin())?
            .into_iter()
            .filter(|x| x.volume_id == v.id)
            .max_by_key(|x| (x.created_at, x.id.clone()));
        let invalid = |m: String| Err(StorageError::BadRequest(format!("Invalid input received: {m}")));
        if s.volume_id != v.id || latest.map(|l| l.id) != Some(s.id.clone()) {
            return invalid(format!("snapshot {snapshot_id} is not the latest snapshot of volume {volume_id}."));
        }
        if s.size != v.size {
            return invalid(format!(
                "volume {volume_id} is {} GiB, its snapshot {} GiB: extended volumes cannot be reverted.",
                v.size, s.size
            ));
        }
        if s.status != VolumeStatus::Available {
            return invalid(format!("snapshot {snapshot_id} is {}, not available.", s.status.as_str()));
        }
        if v.node != self.node {
            return Err(StorageError::Unavailable(format!("Volume {volume_id} is on node {}; ask that node.", v.node)));
        }
        let lv = self.libvirt()?;
        let (vid, sid) = (v.id.clone(), s.id.clone());
        let vol = move |from, to, error| {
            Command::Volume(VolumeCommand::SetVolumeStatus {
                id: vid.clone(),
                from: vec![from],
                to,
                size: None,
                error,
                quota: None,
                updated_at: now(),
            })
        };
        let snap = move |from, to| {
            Command::Volume(VolumeCommand::SetSnapshotStatus {
                id: sid.clone(),
                from: vec![from],
                to,
                error: None,
                progress: None,
                updated_at: now(),
            })
        };
        self.propose(vol(VolumeStatus::Available, VolumeStatus::Reverting, None)).await?;
        if let Err(e) = self.propose(snap(VolumeStatus::Available, VolumeStatus::Restoring)).await {
            self.propose(vol(VolumeStatus::Reverting, VolumeStatus::Available, None)).await?;
            return Err(e);
        }
        let (this, vol, snap) = (self.clone(), vol.clone(), snap.clone());
        tokio::spawn(async move {
            let (vv, ss) = (v.clone(), s.clone());
            let done = tokio::task::spawn_blocking(move || restore(&*lv, &vv, &ss)).await;
            let error = match done {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(crate::error_chain(&e)),
                Err(e) => Some(e.to_string()),
            };
            let to = if error.is_some() { VolumeStatus::Error } else { VolumeStatus::Available };
            for cmd in [snap(VolumeStatus::Restoring, VolumeStatus::Available), vol(VolumeStatus::Reverting, to, error)]
            {
                if let Err(e) = this.propose(cmd).await {
                    log::error!("reverting volume {}: recording the outcome: {e}", v.id);
                }
            }
        });
        Ok(())
    }

    pub async fn update_snapshot(
        &self,
        auth: &Auth,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Snapshot> {
        self.get_snapshot(auth, id)?;
        self.propose(Command::Volume(VolumeCommand::UpdateSnapshot {
            id: id.into(),
            name,
            description,
            updated_at: now(),
        }))
        .await?;
        self.get_snapshot(auth, id)
    }

    /// Cinder's snapshot os-reset_status (admin): the record's status set, whatever it was.
    pub async fn reset_snapshot_status(&self, auth: &Auth, id: &str, to: VolumeStatus) -> Result<()> {
        super::require_admin(auth, "volume_extension:snapshot_admin_actions:reset_status")?;
        self.get_snapshot(auth, id)?;
        let cmd = Command::Volume(VolumeCommand::SetSnapshotStatus {
            id: id.into(),
            from: VolumeStatus::ALL.to_vec(),
            to,
            error: None,
            progress: None,
            updated_at: now(),
        });
        self.propose(cmd).await
    }

    /// Cinder's `os-update_snapshot_status`, as a snapshot's maker reports on it: from
    /// `creating` to `available` or `error`, from `deleting` to `error_deleting`, with a progress.
    pub async fn update_snapshot_status(
        &self,
        auth: &Auth,
        id: &str,
        to: VolumeStatus,
        progress: Option<String>,
    ) -> Result<()> {
        let from = match to {
            VolumeStatus::Available | VolumeStatus::Error => VolumeStatus::Creating,
            VolumeStatus::ErrorDeleting => VolumeStatus::Deleting,
            other => {
                return Err(StorageError::BadRequest(format!(
                    "Invalid input received: a snapshot's maker may not set status {}.",
                    other.as_str()
                )))
            }
        };
        self.get_snapshot(auth, id)?;
        let cmd = Command::Volume(VolumeCommand::SetSnapshotStatus {
            id: id.into(),
            from: vec![from],
            to,
            error: None,
            progress,
            updated_at: now(),
        });
        self.propose(cmd).await
    }

    /// Changes a volume's or a snapshot's metadata (the caller must see it).
    pub async fn set_metadata(&self, auth: &Auth, of: MetadataOf, id: &str, change: MetadataChange) -> Result<()> {
        match of {
            MetadataOf::Snapshot => drop(self.get_snapshot(auth, id)?),
            _ => drop(self.get(auth, id)?),
        }
        for (k, v) in &change.set {
            if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                return Err(StorageError::BadRequest(format!(
                    "Invalid input received: metadata key {k:?} must be 1 to 255 characters and its value at most 255."
                )));
            }
        }
        self.propose(Command::Metadata(MetadataCommand::SetMetadata { of, id: id.into(), change, updated_at: now() }))
            .await
    }

    /// Deletes an available (or failed) snapshot and its data; `force` (the admin's
    /// force-delete) one in any status.
    pub async fn delete_snapshot(&self, auth: &Auth, id: &str, force: bool) -> Result<()> {
        if force {
            super::require_admin(auth, "volume_extension:snapshot_admin_actions:force_delete")?;
        }
        let s = self.get_snapshot(auth, id)?;
        let lv = self.libvirt()?;
        let set = |from, to, error| {
            Command::Volume(VolumeCommand::SetSnapshotStatus {
                id: id.into(),
                from,
                to,
                error,
                progress: None,
                updated_at: now(),
            })
        };
        let from = if force { VolumeStatus::ALL.to_vec() } else { vec![VolumeStatus::Available, VolumeStatus::Error] };
        self.propose(set(from, VolumeStatus::Deleting, None)).await?;
        let snap = s.clone();
        let r = tokio::task::spawn_blocking(move || drop_snapshot(&*lv, &snap))
            .await
            .map_err(|e| StorageError::Internal(Box::new(e)))?;
        self.changed.notify_one();
        match r {
            Ok(()) => self.propose(Command::Volume(VolumeCommand::DeleteSnapshot { id: id.into() })).await,
            Err(e) => {
                let reason = crate::error_chain(&e);
                self.propose(set(vec![VolumeStatus::Deleting], VolumeStatus::Error, Some(reason))).await?;
                Err(StorageError::Internal(Box::new(e)))
            }
        }
    }
}

/// Takes the snapshot (blocking); on failure nothing of it is left.
fn take(lv: &dyn Libvirt, pool: &PoolSpec, v: &Volume, s: &Snapshot) -> JobResult {
    let src = lv.volume_info(&s.pool, &v.id)?;
    let Some(name) = s.kind.volume_name(&s.id) else {
        return Ok(tool::run("qemu-img", ["snapshot", "-c", &s.id, &src.path].map(OsStr::new))?);
    };
    let bytes = v.size * GIB;
    let made = if let PoolSpec::Logical { .. } = pool {
        // An LVM snapshot: a logical volume backed by the origin, copy-on-write.
        lv.create_volume(&s.pool, &vol_xml(pool, &name, bytes, VolumeFormat::Raw, Some((&src.path, VolumeFormat::Raw))))
    } else {
        lv.clone_volume(&s.pool, &vol_xml(pool, &name, bytes, v.format, None), &s.pool, &v.id)
    };
    made.map(drop).map_err(|e| {
        let _ = lv.delete_volume(&s.pool, &name);
        e.into()
    })
}

/// Copies a snapshot's data back into its volume (blocking): a qcow2 internal snapshot is
/// applied in place; a snapshot volume is written over the volume.
fn restore(lv: &dyn Libvirt, v: &Volume, s: &Snapshot) -> JobResult {
    let dst = lv.volume_info(&v.volume_type, &v.id)?.path;
    match s.kind.volume_name(&s.id) {
        None => Ok(tool::run("qemu-img", ["snapshot", "-a", &s.id, &dst].map(OsStr::new))?),
        Some(name) => {
            let src = lv.volume_info(&s.pool, &name)?.path;
            let f = v.format.as_str();
            Ok(tool::run("qemu-img", ["convert", "-n", "-f", f, "-O", f, &src, &dst].map(OsStr::new))?)
        }
    }
}

/// Removes a snapshot's data (blocking); data already gone is fine.
fn drop_snapshot(lv: &dyn Libvirt, s: &Snapshot) -> JobResult {
    match s.kind.volume_name(&s.id) {
        Some(name) => match lv.delete_volume(&s.pool, &name) {
            Ok(()) | Err(LibvirtError::NoVolume { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        },
        None => {
            let path = match lv.volume_info(&s.pool, &s.volume_id) {
                Ok(i) => i.path,
                Err(LibvirtError::NoVolume { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match tool::run("qemu-img", ["snapshot", "-d", &s.id, &path].map(OsStr::new)) {
                // A snapshot whose creation failed may not exist.
                Err(ToolError::Failed { stderr, .. })
                    if s.status == VolumeStatus::Error && stderr.contains("not found") =>
                {
                    Ok(())
                }
                r => Ok(r?),
            }
        }
    }
}
