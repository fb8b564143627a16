//! Cinder's logic: volumes in this node's libvirt pools, their records and quotas in the
//! replicated state. A create is recorded first (`creating`, quota checked in the log), then made
//! in libvirt off the request; the record ends `available` or `error` with the reason, and a
//! failed create leaves no volume behind in libvirt. Volume types are the configured pools.
//!
//! A volume from an image is, where the pool allows (dir), a qcow2 overlay backed by the image
//! file in the image store (instant); elsewhere a raw volume the image is converted into.
//!
//! Snapshots ([`snapshot`]) are qcow2 internal snapshots of qcow2 volumes, LVM snapshots on
//! logical pools, copies elsewhere. Attachments are bookkeeping for Nova (which does the
//! hot-plug). Each node reports its pools (state, capacity, allocation) into the state after
//! every change and once a minute.
//!
//! Limitations: volumes, images and snapshots on other nodes are not reachable yet (cluster
//! issue); no snapshot of an attached volume.

mod snapshot;

use crate::identity::{now, Auth};
use crate::model::image::{DiskFormat, ImageStatus};
use crate::model::storage::{PoolInfo, PoolRecord, PoolSpec, VolumeFormat};
use crate::model::volume::{AttachStatus, Attachment, Message, Quota, Volume, VolumeStatus, MESSAGE_TTL};
use crate::state::raft::Replicated;
use crate::state::VolumeCommand;
use crate::state::{Command, Refusal, StateError, View};
use crate::sys::libvirt::{
    ceph_secret_xml, pool_xml, read_ceph_key, same_storage, volume_xml, xml, Libvirt, LibvirtError,
};
use crate::sys::tool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

const GIB: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("A project-scoped token is required for the volume API.")]
    Unscoped,
    #[error("{0}")]
    Forbidden(String),
    #[error("Volume {0} could not be found.")]
    NotFound(String),
    #[error("Volume type {0} could not be found.")]
    TypeNotFound(String),
    #[error("Metadata key {0} could not be found.")]
    MetadataKeyNotFound(String),
    #[error("Snapshot {0} could not be found.")]
    SnapshotNotFound(String),
    #[error("Message {0} could not be found.")]
    MessageNotFound(String),
    #[error("Attachment {0} could not be found.")]
    AttachmentNotFound(String),
    #[error("Default type for project {0} could not be found.")]
    DefaultTypeNotFound(String),
    /// A conditional change whose condition no longer holds.
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    OverQuota(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for StorageError {
    fn from(e: StateError) -> Self {
        StorageError::Internal(Box::new(e))
    }
}

impl From<Refusal> for StorageError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound { kind: crate::state::Kind::Snapshot, id } => StorageError::SnapshotNotFound(id),
            Refusal::NotFound { kind: crate::state::Kind::MetadataKey, id } => StorageError::MetadataKeyNotFound(id),
            Refusal::NotFound { id, .. } => StorageError::NotFound(id),
            Refusal::Conflict { kind, name } => StorageError::Conflict(format!("{kind} {name} already exists.")),
            Refusal::Conflicts(m) => StorageError::Conflict(m),
            Refusal::Invalid(m) => StorageError::BadRequest(m),
            Refusal::OverQuota(m) => StorageError::OverQuota(m),
            Refusal::Stale(m) => StorageError::Stale(m),
            r @ (Refusal::AlreadyBootstrapped | Refusal::Exhausted(_)) => StorageError::Internal(Box::new(r)),
        }
    }
}

type Result<T> = std::result::Result<T, StorageError>;

/// A new volume as the API received it.
#[derive(Clone, Debug, Default)]
pub struct NewVolume {
    pub name: String,
    pub description: String,
    pub size: Option<u64>,
    pub volume_type: Option<String>,
    pub image_id: Option<String>,
    pub source_volid: Option<String>,
    pub snapshot_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A project's use of volume storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub volumes: u64,
    pub snapshots: u64,
    pub gigabytes: u64,
}

/// A configured pool of this node.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub name: String,
    pub spec: PoolSpec,
}

/// The volume service of this node.
pub struct Storage {
    state: Replicated,
    libvirt: Option<Arc<dyn Libvirt>>,
    /// Why storage is off, when it is.
    off: Option<String>,
    pools: Vec<PoolConfig>,
    images_dir: PathBuf,
    node: String,
    quota: Quota,
    /// Poked when a pool's use changed, so the pool report follows.
    changed: Notify,
}

/// What a volume made from an image keeps of it (Cinder's `volume_image_metadata`).
fn image_metadata_of(i: &crate::model::image::Image) -> BTreeMap<String, String> {
    let mut m = i.properties.clone();
    m.insert("image_id".into(), i.id.clone());
    m.insert("image_name".into(), i.name.clone());
    m.insert("min_disk".into(), i.min_disk.to_string());
    m.insert("min_ram".into(), i.min_ram.to_string());
    if let Some(d) = i.disk_format {
        m.insert("disk_format".into(), d.as_str().into());
    }
    if let Some(c) = i.container_format {
        m.insert("container_format".into(), c.as_str().into());
    }
    m
}

/// Cinder's admin actions are the admin role's.
fn require_admin(auth: &Auth, action: &str) -> Result<()> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(StorageError::Forbidden(format!("Policy doesn't allow {action} to be performed.")))
    }
}

fn project_of(auth: &Auth) -> Result<&str> {
    auth.project.as_ref().map(|p| p.id.as_str()).ok_or(StorageError::Unscoped)
}

/// Why storage work on this node failed; its chain is the reason a record keeps.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Tool(#[from] crate::sys::tool::ToolError),
}

type JobResult = std::result::Result<(), JobError>;

impl Storage {
    pub fn new(
        state: Replicated,
        libvirt: std::result::Result<Arc<dyn Libvirt>, String>,
        pools: Vec<PoolConfig>,
        images_dir: PathBuf,
        node: String,
        quota: Quota,
    ) -> Self {
        let (libvirt, off) = match libvirt {
            Ok(l) => (Some(l), None),
            Err(why) => (None, Some(why)),
        };
        Self { state, libvirt, off, pools, images_dir, node, quota, changed: Notify::new() }
    }

    /// Defines, builds and starts the configured pools that are not running yet (blocking).
    pub fn ensure_pools(&self) -> Vec<(String, std::result::Result<PoolInfo, LibvirtError>)> {
        let Some(lv) = &self.libvirt else { return vec![] };
        self.pools
            .iter()
            .map(|p| {
                let r = (|| -> std::result::Result<PoolInfo, LibvirtError> {
                    let want = pool_xml(&p.name, &p.spec);
                    let known = lv.pool_names()?.contains(&p.name);
                    if known && !same_storage(&lv.pool_definition(&p.name)?, &want) {
                        return Err(LibvirtError::Mismatch(p.name.clone()));
                    }
                    if let PoolSpec::Rbd { user, secret_uuid, key_file: Some(key), .. } = &p.spec {
                        // The key goes into a private libvirt secret, never into XML or logs.
                        lv.define_secret(&ceph_secret_xml(secret_uuid, user), &read_ceph_key(key)?)?;
                    }
                    if !known {
                        lv.define_pool(&want)?;
                        if !matches!(p.spec, PoolSpec::Iscsi { .. } | PoolSpec::Rbd { .. }) {
                            lv.build_pool(&p.name)?;
                        }
                    }
                    lv.start_pool(&p.name)?;
                    lv.set_autostart(&p.name, true)?;
                    lv.refresh_pool(&p.name)?;
                    lv.pool_info(&p.name)
                })();
                (p.name.clone(), r)
            })
            .collect()
    }

    fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    fn libvirt(&self) -> Result<Arc<dyn Libvirt>> {
        self.libvirt.clone().ok_or_else(|| {
            StorageError::Unavailable(format!(
                "Volume storage is off on this node: {}",
                self.off.as_deref().unwrap_or("")
            ))
        })
    }

    /// Volume types: one per configured pool.
    pub fn types(&self) -> Vec<&PoolConfig> {
        self.pools.iter().collect()
    }

    /// The type a project's new volumes get: its default (3.62) while that pool exists, else
    /// the first pool.
    pub fn default_type(&self, project: &str) -> Result<Option<&PoolConfig>> {
        let chosen = self.view()?.default_types()?.into_iter().find(|(p, _)| p == project).map(|(_, t)| t);
        Ok(chosen.and_then(|t| self.pools.iter().find(|p| p.name == t)).or(self.pools.first()))
    }

    /// Every project's default type (admin), or one project's (its members too).
    pub fn project_default_types(&self, auth: &Auth, project: Option<&str>) -> Result<Vec<(String, String)>> {
        let mine = auth.project.as_ref().map(|p| p.id.as_str());
        if project.is_none_or(|p| Some(p) != mine) {
            require_admin(auth, "volume_extension:default_get_all")?;
        }
        let all = self.view()?.default_types()?;
        Ok(all.into_iter().filter(|(p, _)| project.is_none_or(|w| w == p)).collect())
    }

    /// Sets (a type name) or unsets a project's default type (admin).
    pub async fn set_default_type(&self, auth: &Auth, project: &str, volume_type: Option<&str>) -> Result<()> {
        require_admin(auth, "volume_extension:default_set_or_update")?;
        if let Some(t) = volume_type {
            self.pool(t)?;
        }
        let cmd = Command::Volume(VolumeCommand::SetDefaultType {
            project: project.into(),
            volume_type: volume_type.map(Into::into),
        });
        self.propose(cmd).await.map_err(|e| match e {
            StorageError::NotFound(_) => StorageError::DefaultTypeNotFound(project.into()),
            e => e,
        })
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// (volumes, gigabytes) a project uses.
    /// What a project uses: volumes, snapshots, and GiB of both (as the quota counts).
    pub fn usage(&self, project: &str) -> Result<Usage> {
        let view = self.view()?;
        let v: Vec<Volume> = view.volumes()?.into_iter().filter(|v| v.project_id == project).collect();
        let s: Vec<_> = view.snapshots()?.into_iter().filter(|s| s.project_id == project).collect();
        Ok(Usage {
            volumes: v.len() as u64,
            snapshots: s.len() as u64,
            gigabytes: v.iter().map(|v| v.size).sum::<u64>() + s.iter().map(|s| s.size).sum::<u64>(),
        })
    }

    fn sees(auth: &Auth, v: &Volume) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == v.project_id)
    }

    /// The caller's project's user messages (an admin sees every project's), newest first;
    /// those older than [`MESSAGE_TTL`] are gone.
    pub fn messages(&self, auth: &Auth) -> Result<Vec<Message>> {
        let mine = project_of(auth)?.to_owned();
        let oldest = now().saturating_sub(MESSAGE_TTL);
        let mut m: Vec<Message> = self
            .view()?
            .messages()?
            .into_iter()
            .filter(|m| (auth.is_admin() || m.project_id == mine) && m.created_at >= oldest)
            .collect();
        m.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(m)
    }

    pub fn message(&self, auth: &Auth, id: &str) -> Result<Message> {
        self.messages(auth)?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| StorageError::MessageNotFound(id.to_owned()))
    }

    pub async fn delete_message(&self, auth: &Auth, id: &str) -> Result<()> {
        let m = self.message(auth, id)?;
        self.propose(Command::Volume(VolumeCommand::DeleteMessage { id: m.id })).await
    }

    /// The caller's volumes (an admin may ask for every project's).
    pub fn list(&self, auth: &Auth, all_projects: bool) -> Result<Vec<Volume>> {
        let mine = project_of(auth)?.to_owned();
        let mut v: Vec<Volume> = self
            .view()?
            .volumes()?
            .into_iter()
            .filter(|v| if all_projects && auth.is_admin() { true } else { v.project_id == mine })
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(v)
    }

    pub fn get(&self, auth: &Auth, id: &str) -> Result<Volume> {
        project_of(auth)?;
        self.view()?.volume(id)?.filter(|v| Self::sees(auth, v)).ok_or_else(|| StorageError::NotFound(id.into()))
    }

    fn pool(&self, name: &str) -> Result<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| StorageError::TypeNotFound(name.to_owned()))
    }

    /// Records the volume and starts making it; returns the `creating` record.
    pub async fn create(self: &Arc<Self>, auth: &Auth, new: NewVolume) -> Result<Volume> {
        let project = project_of(auth)?.to_owned();
        let lv = self.libvirt()?;
        let pool = match &new.volume_type {
            Some(t) => self.pool(t)?.clone(),
            None => self
                .default_type(&project)?
                .cloned()
                .ok_or_else(|| StorageError::Unavailable("No storage pool is configured on this node.".into()))?,
        };
        // A clone: of an available volume of this node.
        let source = match &new.source_volid {
            None => None,
            Some(id) => {
                let src = self.get(auth, id).map_err(|_| StorageError::NotFound(id.clone()))?;
                if src.status != VolumeStatus::Available || src.node != self.node {
                    return Err(StorageError::BadRequest(format!(
                        "Invalid volume: source volume {id} must be available on this node (it is {} on {}).",
                        src.status.as_str(),
                        src.node
                    )));
                }
                Some(src)
            }
        };
        // From a snapshot: available, here, and into its own pool.
        let snap = match &new.snapshot_id {
            None => None,
            Some(id) => {
                let s = self.get_snapshot(auth, id)?;
                if s.status != VolumeStatus::Available || s.node != self.node {
                    return Err(StorageError::BadRequest(format!(
                        "Invalid snapshot: snapshot {id} must be available on this node (it is {} on {}).",
                        s.status.as_str(),
                        s.node
                    )));
                }
                if new.volume_type.as_ref().is_some_and(|t| *t != s.pool) {
                    return Err(StorageError::BadRequest(format!(
                        "Invalid input received: a volume from snapshot {id} must be of its volume type {}.",
                        s.pool
                    )));
                }
                Some(s)
            }
        };
        if [source.is_some(), new.image_id.is_some(), snap.is_some()].iter().filter(|x| **x).count() > 1 {
            return Err(StorageError::BadRequest(
                "Invalid input received: give one of imageRef, source_volid and snapshot_id.".into(),
            ));
        }
        // A clone or a volume from a snapshot has its source's type unless the request names one.
        let pool = match (&snap, &source, &new.volume_type) {
            (Some(s), _, _) => self.pool(&s.pool)?.clone(),
            (_, Some(src), None) => self.pool(&src.volume_type)?.clone(),
            _ => pool,
        };
        // From an image: active, here, and the volume at least as big as its virtual size.
        let image = match &new.image_id {
            None => None,
            Some(id) => {
                let i = self.view()?.image(id)?.ok_or_else(|| {
                    StorageError::BadRequest(format!(
                        "Invalid image identifier or unable to access requested image {id}."
                    ))
                })?;
                if i.status != ImageStatus::Active {
                    return Err(StorageError::BadRequest(format!("Image {id} is not active.")));
                }
                let data =
                    i.data.clone().ok_or_else(|| StorageError::BadRequest(format!("Image {id} has no data.")))?;
                if data.node != self.node {
                    return Err(StorageError::Unavailable(format!(
                        "Image {id} is on node {}; fetching across the cluster is not available yet.",
                        data.node
                    )));
                }
                Some((i, data))
            }
        };
        let min = match (&image, &source, &snap) {
            (Some((i, d)), _, _) => d.virtual_size.div_ceil(GIB).max(i.min_disk).max(1),
            (_, Some(src), _) => src.size,
            (_, _, Some(s)) => s.size,
            _ => 1,
        };
        let size = new.size.unwrap_or(min);
        if size == 0 || size > 64 * 1024 {
            return Err(StorageError::BadRequest(format!(
                "Invalid input received: size {size} must be 1 to 65536 GiB."
            )));
        }
        if size < min {
            return Err(StorageError::BadRequest(format!(
                "Invalid input received: Image minDisk size or virtual size is larger than the volume size ({size} GiB < {min} GiB)."
            )));
        }
        let format = pool.spec.format();
        pool.spec.check_create(format).map_err(|e| StorageError::BadRequest(e.to_string()))?;
        let (bootable, image_metadata) = self.inherited(&image, &source, &snap)?;
        let t = now();
        let volume = Volume {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            description: new.description,
            project_id: project,
            user_id: auth.user.id.clone(),
            size,
            status: VolumeStatus::Creating,
            error: None,
            volume_type: pool.name.clone(),
            format,
            node: self.node.clone(),
            image_id: new.image_id.clone(),
            source_volid: source.as_ref().map(|s| s.id.clone()),
            snapshot_id: snap.as_ref().map(|s| s.id.clone()),
            attachments: vec![],
            metadata: new.metadata,
            bootable,
            image_metadata,
            created_at: t,
            updated_at: t,
        };
        self.propose(Command::Volume(VolumeCommand::CreateVolume { volume: volume.clone(), quota: self.quota }))
            .await?;
        let (id, vol) = (volume.id.clone(), volume.clone());
        let from = match (image, source, snap) {
            (Some((i, _)), _, _) => {
                Source::Image(self.images_dir.join(&i.id), i.disk_format.unwrap_or(DiskFormat::Raw))
            }
            (_, Some(src), _) => Source::Volume { pool: src.volume_type, id: src.id },
            (_, _, Some(s)) => match s.kind.volume_name(&s.id) {
                Some(name) => Source::Volume { pool: s.pool, id: name },
                None => Source::Internal { volume: s.volume_id, snapshot: s.id },
            },
            _ => Source::Empty,
        };
        let what = format!("volume {}", volume.id);
        self.in_background(
            what,
            move || make(&*lv, &pool, &vol, from),
            move |to, error| {
                Command::Volume(VolumeCommand::SetVolumeStatus {
                    id,
                    from: vec![VolumeStatus::Creating],
                    to,
                    size: None,
                    error,
                    quota: None,
                    updated_at: now(),
                })
            },
        );
        Ok(volume)
    }

    /// Runs blocking libvirt work off the request, then records its outcome (`available`, or
    /// `error` with the reason) with the command `record` builds.
    fn in_background(
        self: &Arc<Self>,
        what: String,
        work: impl FnOnce() -> JobResult + Send + 'static,
        record: impl FnOnce(VolumeStatus, Option<String>) -> Command + Send + 'static,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let made = tokio::task::spawn_blocking(work).await;
            this.changed.notify_one();
            let (to, error) = match made {
                Ok(Ok(())) => (VolumeStatus::Available, None),
                Ok(Err(e)) => (VolumeStatus::Error, Some(crate::error_chain(&e))),
                Err(e) => (VolumeStatus::Error, Some(e.to_string())),
            };
            if let Some(e) = &error {
                log::error!("{what}: {e}");
            }
            if let Err(e) = this.propose(record(to, error)).await {
                log::error!("{what}: recording the outcome: {e}");
            }
        });
    }

    pub async fn rename(
        &self,
        auth: &Auth,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Volume> {
        self.get(auth, id)?;
        self.propose(Command::Volume(VolumeCommand::UpdateVolume {
            id: id.into(),
            name,
            description,
            bootable: None,
            updated_at: now(),
        }))
        .await?;
        self.get(auth, id)
    }

    /// Cinder's `os-set_bootable`.
    pub async fn set_bootable(&self, auth: &Auth, id: &str, bootable: bool) -> Result<()> {
        self.get(auth, id)?;
        let cmd = Command::Volume(VolumeCommand::UpdateVolume {
            id: id.into(),
            name: None,
            description: None,
            bootable: Some(bootable),
            updated_at: now(),
        });
        self.propose(cmd).await
    }

    /// Grows an available volume to `new_size` GiB (in the request; the record follows).
    pub async fn extend(&self, auth: &Auth, id: &str, new_size: u64) -> Result<()> {
        let v = self.get(auth, id)?;
        if new_size <= v.size {
            return Err(StorageError::BadRequest(format!(
                "Invalid input received: New size for extend must be greater than current size. (current: {}, extended: {new_size}).",
                v.size
            )));
        }
        let lv = self.libvirt()?;
        let set = |from, to, size, quota, error| {
            Command::Volume(VolumeCommand::SetVolumeStatus {
                id: id.into(),
                from: vec![from],
                to,
                size,
                error,
                quota,
                updated_at: now(),
            })
        };
        self.propose(set(VolumeStatus::Available, VolumeStatus::Extending, Some(v.size), Some(self.quota), None))
            .await?;
        // Quota for the growth, checked in the log.
        let grown = self
            .propose(set(VolumeStatus::Extending, VolumeStatus::Extending, Some(new_size), Some(self.quota), None))
            .await;
        if let Err(e) = grown {
            self.propose(set(VolumeStatus::Extending, VolumeStatus::Available, Some(v.size), None, None)).await?;
            return Err(e);
        }
        let (pool, name) = (self.pool(&v.volume_type)?.clone(), v.id.clone());
        let r = tokio::task::spawn_blocking(move || grow(&*lv, &pool, &name, new_size * GIB))
            .await
            .map_err(|e| StorageError::Internal(Box::new(e)))?;
        match r {
            Ok(()) => {
                self.changed.notify_one();
                self.propose(set(VolumeStatus::Extending, VolumeStatus::Available, Some(new_size), None, None)).await
            }
            Err(e) => {
                // Not grown: back to its old size, usable.
                self.propose(set(VolumeStatus::Extending, VolumeStatus::Available, Some(v.size), None, None)).await?;
                Err(StorageError::BadRequest(format!("Extending volume {id} failed: {e}")))
            }
        }
    }

    /// Deletes an available or failed volume; `force` (the admin's force-delete) one in any
    /// state but attached.
    pub async fn delete(&self, auth: &Auth, id: &str, force: bool) -> Result<()> {
        if force {
            require_admin(auth, "volume_extension:volume_admin_actions:force_delete")?;
        }
        let v = self.get(auth, id)?;
        // Forced, any status goes, as long as nothing is attached (Cinder's rule).
        if force && !v.attachments.is_empty() {
            return Err(StorageError::BadRequest(format!(
                "Invalid volume: volume {id} is attached; detach it (os-force_detach) before deleting it."
            )));
        }
        let from = if force { VolumeStatus::ALL.to_vec() } else { vec![VolumeStatus::Available, VolumeStatus::Error] };
        self.remove(v, from).await
    }

    /// What a new volume takes from its origin: whether it boots (a clone's or a snapshot's
    /// volume's flag; an image's volume boots) and the image metadata.
    fn inherited(
        &self,
        image: &Option<(crate::model::image::Image, crate::model::image::ImageData)>,
        source: &Option<Volume>,
        snap: &Option<crate::model::volume::Snapshot>,
    ) -> Result<(Option<bool>, BTreeMap<String, String>)> {
        Ok(match (image, source, snap) {
            (Some((i, _)), _, _) => (None, image_metadata_of(i)),
            (_, Some(src), _) => (Some(src.is_bootable()), src.image_metadata.clone()),
            (_, _, Some(s)) => match self.view()?.volume(&s.volume_id)? {
                Some(from) => (Some(from.is_bootable()), from.image_metadata),
                None => (None, BTreeMap::new()),
            },
            _ => (None, BTreeMap::new()),
        })
    }

    /// Deletes a volume a deleted server released (its boot volume marked
    /// `delete_on_termination`): the server's owner asked for it when creating the server.
    pub async fn delete_released(&self, id: &str) -> Result<()> {
        let v = self.view()?.volume(id)?.ok_or_else(|| StorageError::NotFound(id.into()))?;
        self.remove(v, vec![VolumeStatus::Available]).await
    }

    /// Deletes a volume in one of the `from` statuses, and its data.
    async fn remove(&self, v: Volume, from: Vec<VolumeStatus>) -> Result<()> {
        let id = v.id.as_str();
        let lv = self.libvirt()?;
        let set = Command::Volume(VolumeCommand::SetVolumeStatus {
            id: id.into(),
            from,
            to: VolumeStatus::Deleting,
            size: None,
            error: None,
            quota: None,
            updated_at: now(),
        });
        self.propose(set).await?;
        let (pool, name) = (v.volume_type.clone(), v.id.clone());
        let r = tokio::task::spawn_blocking(move || match lv.delete_volume(&pool, &name) {
            Ok(()) | Err(LibvirtError::NoVolume { .. }) => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| StorageError::Internal(Box::new(e)))?;
        self.changed.notify_one();
        match r {
            Ok(()) => self.propose(Command::Volume(VolumeCommand::DeleteVolume { id: id.into() })).await,
            Err(e) => {
                let reason = crate::error_chain(&e);
                let cmd = Command::Volume(VolumeCommand::SetVolumeStatus {
                    id: id.into(),
                    from: vec![VolumeStatus::Deleting],
                    to: VolumeStatus::Error,
                    size: None,
                    error: Some(reason.clone()),
                    quota: None,
                    updated_at: now(),
                });
                self.propose(cmd).await?;
                Err(StorageError::Internal(reason.into()))
            }
        }
    }

    /// Whether any volume is backed by the image (its file must stay).
    pub fn image_in_use(&self, image_id: &str) -> Result<bool> {
        Ok(self
            .view()?
            .volumes()?
            .iter()
            .any(|v| v.image_id.as_deref() == Some(image_id) && v.format == VolumeFormat::Qcow2))
    }

    /// Moves a volume between the statuses around an attachment (os-reserve, os-unreserve,
    /// os-begin_detaching, os-roll_detaching).
    /// Cinder's os-reset_status (admin): the record's status set, whatever it was; nothing on the
    /// node changes.
    pub async fn reset_status(&self, auth: &Auth, id: &str, to: VolumeStatus) -> Result<()> {
        require_admin(auth, "volume_extension:volume_admin_actions:reset_status")?;
        self.get(auth, id)?;
        let cmd = Command::Volume(VolumeCommand::SetVolumeStatus {
            id: id.into(),
            from: VolumeStatus::ALL.to_vec(),
            to,
            size: None,
            error: None,
            quota: None,
            updated_at: now(),
        });
        self.propose(cmd).await
    }

    pub async fn transition(&self, auth: &Auth, id: &str, from: VolumeStatus, to: VolumeStatus) -> Result<()> {
        self.get(auth, id)?;
        self.propose(Command::Volume(VolumeCommand::SetVolumeStatus {
            id: id.into(),
            from: vec![from],
            to,
            size: None,
            error: None,
            quota: None,
            updated_at: now(),
        }))
        .await
    }

    /// Records that `server_id` on `host` has the volume as `device`.
    pub async fn attach(&self, auth: &Auth, id: &str, server_id: &str, host: &str, device: &str) -> Result<Attachment> {
        self.get(auth, id)?;
        let a = Attachment {
            id: uuid::Uuid::new_v4().to_string(),
            server_id: server_id.into(),
            host: host.into(),
            device: device.into(),
            attached_at: now(),
            status: AttachStatus::Attached,
            mode: "rw".into(),
        };
        self.propose(Command::Volume(VolumeCommand::AttachVolume {
            id: id.into(),
            attachment: a.clone(),
            updated_at: a.attached_at,
        }))
        .await?;
        Ok(a)
    }

    /// Removes an attachment (the only one when `attachment_id` is None); `force` (the admin's
    /// force-detach) whatever the volume's status, leaving it available.
    pub async fn detach(&self, auth: &Auth, id: &str, attachment_id: Option<String>, force: bool) -> Result<()> {
        if force {
            require_admin(auth, "volume_extension:volume_admin_actions:force_detach")?;
        }
        let v = self.get(auth, id)?;
        // Detaching what is not attached is done already (a cleanup after a forced detach).
        if !force && v.status == VolumeStatus::Available && v.attachments.is_empty() {
            return Ok(());
        }
        self.propose(Command::Volume(VolumeCommand::DetachVolume {
            id: id.into(),
            attachment_id,
            force,
            updated_at: now(),
        }))
        .await
    }

    /// Every attachment the caller's volumes have (an admin's `all` every project's), with its
    /// volume.
    pub fn attachments(&self, auth: &Auth, all: bool) -> Result<Vec<(Volume, Attachment)>> {
        Ok(self
            .list(auth, all)?
            .into_iter()
            .flat_map(|v| v.attachments.clone().into_iter().map(move |a| (v.clone(), a)))
            .collect())
    }

    /// One attachment of the caller's volumes, with its volume.
    pub fn attachment(&self, auth: &Auth, id: &str) -> Result<(Volume, Attachment)> {
        self.attachments(auth, auth.is_admin())?
            .into_iter()
            .find(|(_, a)| a.id == id)
            .ok_or_else(|| StorageError::AttachmentNotFound(id.to_owned()))
    }

    /// Cinder's attachments API (3.27): records an attachment of an available volume for
    /// `instance`; with a connector's host, connects it at once ([`Storage::connect`]).
    pub async fn create_attachment(
        &self,
        auth: &Auth,
        volume_id: &str,
        instance: &str,
        connector: Option<(String, String)>,
    ) -> Result<(Attachment, Option<serde_json::Value>)> {
        self.get(auth, volume_id)?;
        let a = Attachment {
            id: uuid::Uuid::new_v4().to_string(),
            server_id: instance.into(),
            host: String::new(),
            device: String::new(),
            attached_at: 0,
            status: AttachStatus::Reserved,
            mode: "rw".into(),
        };
        let cmd = Command::Volume(VolumeCommand::SetAttachment {
            volume_id: volume_id.into(),
            attachment: a.clone(),
            updated_at: now(),
        });
        self.propose(cmd).await?;
        match connector {
            Some(c) => self.connect(auth, &a.id, c).await.map(|(a, info)| (a, Some(info))),
            None => Ok((a, None)),
        }
    }

    /// Connects an attachment for a connector `(host, mode)`: a volume is reached where it
    /// lives, so only its own node connects (os-brick's `local` connection, the path in the
    /// node's pool); any other host is refused.
    pub async fn connect(
        &self,
        auth: &Auth,
        id: &str,
        (host, mode): (String, String),
    ) -> Result<(Attachment, serde_json::Value)> {
        let (v, mut a) = self.attachment(auth, id)?;
        if host != v.node {
            return Err(StorageError::BadRequest(format!(
                "Unable to update attachment: volume {} lives on node {} and is exported to no other host ({host}).",
                v.id, v.node
            )));
        }
        if !["rw", "ro"].contains(&mode.as_str()) {
            return Err(StorageError::BadRequest(format!("Invalid attach mode {mode}: rw or ro.")));
        }
        let lv = self.libvirt()?;
        let path = lv.volume_info(&v.volume_type, &v.id).map_err(|e| StorageError::Internal(Box::new(e)))?.path;
        (a.host, a.mode, a.status) = (host, mode, AttachStatus::Attaching);
        let cmd = Command::Volume(VolumeCommand::SetAttachment {
            volume_id: v.id.clone(),
            attachment: a.clone(),
            updated_at: now(),
        });
        self.propose(cmd).await?;
        let info = serde_json::json!({"driver_volume_type": "local",
                                      "data": {"device_path": path, "format": v.format.as_str(), "access_mode": a.mode}});
        Ok((a, info))
    }

    /// Marks a connected attachment complete (3.44): the volume is in use.
    pub async fn complete_attachment(&self, auth: &Auth, id: &str) -> Result<()> {
        let (v, mut a) = self.attachment(auth, id)?;
        if a.status == AttachStatus::Reserved {
            return Err(StorageError::BadRequest(format!("Attachment {id} has no connection to complete.")));
        }
        (a.status, a.attached_at) = (AttachStatus::Attached, now());
        self.propose(Command::Volume(VolumeCommand::SetAttachment {
            volume_id: v.id,
            attachment: a,
            updated_at: now(),
        }))
        .await
    }

    /// Deletes an attachment: the volume is available again once it has none.
    pub async fn delete_attachment(&self, auth: &Auth, id: &str) -> Result<()> {
        let (v, a) = self.attachment(auth, id)?;
        self.propose(Command::Volume(VolumeCommand::DetachVolume {
            id: v.id,
            attachment_id: Some(a.id),
            force: false,
            updated_at: now(),
        }))
        .await
    }

    /// Refreshes this node's pools in libvirt and reads their state (blocking).
    fn read_pools(&self) -> Vec<PoolRecord> {
        let Some(lv) = &self.libvirt else { return vec![] };
        self.pools
            .iter()
            .map(|p| {
                let r =
                    lv.refresh_pool(&p.name).and_then(|()| lv.pool_info(&p.name)).map_err(|e| crate::error_chain(&e));
                let (info, error) = match r {
                    Ok(i) => (i, None),
                    Err(e) => (PoolInfo::default(), Some(e)),
                };
                PoolRecord { name: p.name.clone(), kind: p.spec.kind().into(), info, error }
            })
            .collect()
    }

    /// Records this node's pools in the state when they differ from what it holds.
    pub async fn report_pools(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        let mut pools = tokio::task::spawn_blocking(move || this.read_pools())
            .await
            .map_err(|e| StorageError::Internal(Box::new(e)))?;
        // The state keeps them by name.
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let known: Vec<PoolRecord> =
            self.view()?.pools()?.into_iter().filter(|(n, _)| *n == self.node).map(|(_, p)| p).collect();
        if known != pools {
            self.propose(Command::Volume(VolumeCommand::ReportPools { node: self.node.clone(), pools })).await?;
        }
        Ok(())
    }

    /// Reports the pools after every change and at least every `every`.
    pub async fn report_loop(self: Arc<Self>, every: std::time::Duration) {
        loop {
            if let Err(e) = self.report_pools().await {
                log::warn!("reporting storage pools: {}", crate::error_chain(&e));
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.changed.notified() => {}
            }
        }
    }

    /// Every node's pools as last reported.
    pub fn pool_records(&self) -> Result<Vec<(String, PoolRecord)>> {
        Ok(self.view()?.pools()?)
    }
}

/// The XML of a new volume in `pool`: sparse files in dir pools, fully allocated elsewhere (a
/// logical volume with less allocation than capacity would be a sparse snapshot LV that breaks
/// once its copy-on-write space fills).
fn vol_xml(
    pool: &PoolSpec,
    name: &str,
    bytes: u64,
    format: VolumeFormat,
    backing: Option<(&str, VolumeFormat)>,
) -> xml::Volume {
    let mut x = volume_xml(name, bytes, format, backing);
    if !matches!(pool, PoolSpec::Dir { .. }) {
        x.allocation = None;
    }
    x
}

/// What a new volume starts with.
enum Source {
    Empty,
    /// An image file of the store and its format.
    Image(PathBuf, DiskFormat),
    /// Another volume (a clone, or a snapshot kept as a volume).
    Volume {
        pool: String,
        id: String,
    },
    /// A qcow2 internal snapshot of a volume of the same pool.
    Internal {
        volume: String,
        snapshot: String,
    },
}

/// Makes the volume in libvirt (blocking); on failure nothing of it is left.
fn make(lv: &dyn Libvirt, pool: &PoolConfig, v: &Volume, from: Source) -> JobResult {
    let bytes = v.size * GIB;
    let overlay = pool.spec.overlays() && v.format == VolumeFormat::Qcow2;
    let plain = vol_xml(&pool.spec, &v.id, bytes, v.format, None);
    let made = (|| -> JobResult {
        match &from {
            Source::Volume { pool: src_pool, id } => {
                let info = lv.clone_volume(&pool.name, &plain, src_pool, id)?;
                if info.capacity < bytes {
                    grow(lv, pool, &v.id, bytes)?;
                }
            }
            Source::Image(path, fmt) if overlay && matches!(fmt, DiskFormat::Raw | DiskFormat::Qcow2) => {
                let f = if *fmt == DiskFormat::Qcow2 { VolumeFormat::Qcow2 } else { VolumeFormat::Raw };
                let backed = vol_xml(&pool.spec, &v.id, bytes, v.format, Some((&path.to_string_lossy(), f)));
                lv.create_volume(&pool.name, &backed)?;
            }
            Source::Image(path, fmt) => {
                let info = lv.create_volume(&pool.name, &plain)?;
                convert_into(path, fmt.qemu_format(), None, &info.path, v.format)?;
            }
            Source::Internal { volume, snapshot } => {
                let src = lv.volume_info(&pool.name, volume)?;
                let info = lv.create_volume(&pool.name, &plain)?;
                convert_into(Path::new(&src.path), "qcow2", Some(snapshot), &info.path, v.format)?;
            }
            Source::Empty => drop(lv.create_volume(&pool.name, &plain)?),
        }
        Ok(())
    })();
    // No half-made volume stays behind.
    made.inspect_err(|_| drop(lv.delete_volume(&pool.name, &v.id)))
}

/// Grows a volume to `bytes` (blocking). Libvirt cannot resize logical volumes: those grow with
/// `lvextend`, and the pool is refreshed so libvirt sees the new size.
fn grow(lv: &dyn Libvirt, pool: &PoolConfig, name: &str, bytes: u64) -> JobResult {
    if let PoolSpec::Logical { .. } = pool.spec {
        let path = lv.volume_info(&pool.name, name)?.path;
        tool::run("lvextend", ["--size", &format!("{bytes}b"), &path].map(std::ffi::OsStr::new))?;
        return Ok(lv.refresh_pool(&pool.name)?);
    }
    Ok(lv.resize_volume(&pool.name, name, bytes)?)
}

/// Writes an image's (or a volume's internal snapshot's) content into an existing volume with
/// `qemu-img convert -n`.
fn convert_into(src: &Path, from: &str, snapshot: Option<&str>, target: &str, to: VolumeFormat) -> JobResult {
    let mut args = vec!["convert".to_owned(), "-n".into(), "-f".into(), from.into(), "-O".into(), to.as_str().into()];
    if let Some(s) = snapshot {
        args.extend(["-l".into(), format!("snapshot.name={s}")]);
    }
    Ok(tool::run("qemu-img", args.iter().map(|a| a.as_ref()).chain([src.as_os_str(), target.as_ref()]))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::Claims;
    use crate::identity::Auth;
    use crate::model::volume::{Snapshot, SnapshotKind};
    use crate::model::{Name, Project, Role, User};
    use crate::state::Store;
    use crate::sys::libvirt::FakeLibvirt;

    fn auth(project: &str) -> Auth {
        Auth {
            claims: Claims {
                user_id: "u".into(),
                project_id: Some(project.into()),
                issued_at: 0,
                expires_at: 1,
                audit_id: "a".into(),
                ..Claims::default()
            },
            user: User {
                extra: Default::default(),
                id: "u".into(),
                name: Name::new("name", "u").unwrap(),
                domain_id: "default".into(),
                enabled: true,
                password_hash: None,
                default_project_id: None,
                email: None,
                description: String::new(),
            },
            project: Some(Project {
                tags: Vec::new(),
                id: project.into(),
                name: Name::new("name", project).unwrap(),
                domain_id: "default".into(),
                description: String::new(),
                enabled: true,
            }),
            domain: None,
            roles: vec![Role { id: "r".into(), name: Name::new("name", "member").unwrap() }],
            app_cred: None,
            domains: crate::identity::Domains {
                user: crate::model::identity::Domain::builtin(),
                project: Some(crate::model::identity::Domain::builtin()),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attachments_reserve_connect_complete_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        let lv = FakeLibvirt::with_capacity(3 * GIB);
        let pools = vec![PoolConfig { name: "p".into(), spec: PoolSpec::Dir { path: "/v".into(), format: None } }];
        let quota = Quota { volumes: 3, gigabytes: 4, snapshots: 1 };
        let st = Arc::new(Storage::new(r.clone(), Ok(Arc::new(lv)), pools, dir.path().into(), "n".into(), quota));
        assert!(st.ensure_pools().iter().all(|(_, r)| r.is_ok()));
        let a = auth("p1");
        let v = st.create(&a, NewVolume { name: "v".into(), size: Some(1), ..Default::default() }).await.unwrap();
        settle(&st, &a, &v.id).await;
        let (att, info) = st.create_attachment(&a, &v.id, "i1", None).await.unwrap();
        assert_eq!((att.status, info), (AttachStatus::Reserved, None));
        assert_eq!(st.get(&a, &v.id).unwrap().status, VolumeStatus::Reserved);
        assert!(st.create_attachment(&a, &v.id, "i2", None).await.is_err(), "held by the first");
        let elsewhere = st.connect(&a, &att.id, ("other".into(), "rw".into())).await;
        assert!(matches!(elsewhere, Err(StorageError::BadRequest(_))), "only the volume's node connects");
        let (att, info) = st.connect(&a, &att.id, ("n".into(), "ro".into())).await.unwrap();
        assert_eq!((att.status, info["driver_volume_type"].as_str()), (AttachStatus::Attaching, Some("local")));
        assert_eq!(info["data"]["access_mode"], "ro");
        st.complete_attachment(&a, &att.id).await.unwrap();
        let held = st.get(&a, &v.id).unwrap();
        assert_eq!((held.status, held.attachments[0].status), (VolumeStatus::InUse, AttachStatus::Attached));
        assert!(matches!(st.attachment(&auth("p2"), &att.id), Err(StorageError::AttachmentNotFound(_))));
        st.delete_attachment(&a, &att.id).await.unwrap();
        let free = st.get(&a, &v.id).unwrap();
        assert_eq!((free.status, free.attachments.len()), (VolumeStatus::Available, 0));
        r.shutdown().await;
    }

    async fn settle(st: &Storage, a: &Auth, id: &str) -> Volume {
        for _ in 0..200 {
            let v = st.get(a, id).unwrap();
            if v.status != VolumeStatus::Creating {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("volume {id} stayed creating");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_creates_leave_nothing_and_quotas_hold() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        let lv = FakeLibvirt::with_capacity(3 * GIB);
        let pools = vec![PoolConfig { name: "p".into(), spec: PoolSpec::Dir { path: "/v".into(), format: None } }];
        let quota = Quota { volumes: 3, gigabytes: 4, snapshots: 1 };
        let st =
            Arc::new(Storage::new(r.clone(), Ok(Arc::new(lv.clone())), pools, dir.path().into(), "n".into(), quota));
        assert!(st.ensure_pools().iter().all(|(_, r)| r.is_ok()));
        let a = auth("p1");
        let new = |size| NewVolume { name: "v".into(), size: Some(size), ..Default::default() };
        let ok = st.create(&a, new(2)).await.unwrap();
        assert_eq!(settle(&st, &a, &ok.id).await.status, VolumeStatus::Available);
        // The pool has 1 GiB left: this create fails in libvirt, is recorded as error with the
        // reason, and leaves no volume in the pool.
        let full = st.create(&a, new(2)).await.unwrap();
        let failed = settle(&st, &a, &full.id).await;
        assert_eq!(failed.status, VolumeStatus::Error);
        assert!(failed.error.as_deref().is_some_and(|e| e.contains("bytes free")), "{failed:?}");
        assert_eq!(lv.volume_names("p").unwrap(), std::slice::from_ref(&ok.id));
        // The failure is the owner's user message, and no one else's.
        let msgs = st.messages(&a).unwrap();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let m = &msgs[0];
        assert_eq!((m.resource_uuid.as_str(), m.event_id.as_str()), (full.id.as_str(), "VOLUME_VOLUME_001_001"));
        assert!(
            m.user_message.starts_with("schedule allocate volume: ") && m.user_message.contains("bytes free"),
            "{m:?}"
        );
        assert!(st.messages(&auth("p2")).unwrap().is_empty());
        assert!(matches!(st.delete_message(&auth("p2"), &m.id).await, Err(StorageError::MessageNotFound(_))));
        st.delete_message(&a, &m.id).await.unwrap();
        assert!(st.messages(&a).unwrap().is_empty());
        // 4 GiB quota: 2 + 2 (the failed one counts until deleted) is the limit.
        assert!(matches!(st.create(&a, new(1)).await, Err(StorageError::OverQuota(_))));
        st.delete(&a, &full.id, false).await.unwrap();
        assert!(matches!(st.extend(&a, &ok.id, 2).await, Err(StorageError::BadRequest(_))), "not bigger");
        assert!(matches!(st.extend(&a, &ok.id, 5).await, Err(StorageError::OverQuota(_))));
        assert_eq!(st.get(&a, &ok.id).unwrap().status, VolumeStatus::Available, "a refused extend changes nothing");
        st.extend(&a, &ok.id, 3).await.unwrap();
        assert_eq!(st.get(&a, &ok.id).unwrap().size, 3);
        // Another project sees none of it.
        assert!(matches!(st.get(&auth("p2"), &ok.id), Err(StorageError::NotFound(_))));
        st.delete(&a, &ok.id, false).await.unwrap();
        assert!(lv.volume_names("p").unwrap().is_empty());
        assert!(st.list(&a, false).unwrap().is_empty());
        r.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_attachments_and_pool_reports() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        let lv = FakeLibvirt::with_capacity(10 * GIB);
        let pools = vec![
            PoolConfig {
                name: "lvm".into(),
                spec: PoolSpec::Logical { vg: "vg".into(), devices: vec![], format: None },
            },
            PoolConfig {
                name: "files".into(),
                spec: PoolSpec::Dir { path: "/v".into(), format: Some(VolumeFormat::Raw) },
            },
        ];
        let quota = Quota { volumes: 5, gigabytes: 10, snapshots: 1 };
        let st =
            Arc::new(Storage::new(r.clone(), Ok(Arc::new(lv.clone())), pools, dir.path().into(), "n".into(), quota));
        assert!(st.ensure_pools().iter().all(|(_, r)| r.is_ok()));
        assert!(st.ensure_pools().iter().all(|(_, r)| r.is_ok()), "a second start reuses the pools");
        // A pool libvirt already has under that name for other storage is not taken over.
        let other = Storage::new(
            r.clone(),
            Ok(Arc::new(lv.clone())),
            vec![PoolConfig { name: "files".into(), spec: PoolSpec::Dir { path: "/elsewhere".into(), format: None } }],
            dir.path().into(),
            "n".into(),
            quota,
        );
        let e = other.ensure_pools().remove(0).1.unwrap_err().to_string();
        assert!(e.contains("other storage"), "{e}");
        // A Ceph pool's key file becomes a private libvirt secret; a key others can read is refused.
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("ceph.key");
        std::fs::write(&key, "QUJD\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let spec = PoolSpec::Rbd {
            monitors: vec!["192.0.2.1".into()],
            pool: "volumes".into(),
            user: "cinder".into(),
            secret_uuid: "6f1b6e2e-3a52-4b7c-9d0e-2a4c1b1f0a11".into(),
            key_file: Some(key.to_string_lossy().into()),
            format: None,
        };
        let ceph = |lv: &FakeLibvirt| {
            let pools = vec![PoolConfig { name: "ceph".into(), spec: spec.clone() }];
            Storage::new(r.clone(), Ok(Arc::new(lv.clone())), pools, dir.path().into(), "n".into(), quota)
        };
        let e = ceph(&lv).ensure_pools().remove(0).1.unwrap_err().to_string();
        assert!(e.contains("0600"), "{e}");
        assert_eq!(lv.secret("6f1b6e2e-3a52-4b7c-9d0e-2a4c1b1f0a11"), None);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ceph(&lv).ensure_pools().remove(0).1.is_ok());
        assert_eq!(lv.secret("6f1b6e2e-3a52-4b7c-9d0e-2a4c1b1f0a11").as_deref(), Some(&b"ABC"[..]));
        let a = auth("p1");
        let vol = st.create(&a, NewVolume { name: "v".into(), size: Some(2), ..Default::default() }).await.unwrap();
        let vol = settle(&st, &a, &vol.id).await;
        assert_eq!(
            (vol.status, vol.format, vol.volume_type.as_str()),
            (VolumeStatus::Available, VolumeFormat::Raw, "lvm")
        );

        // An LVM snapshot: a logical volume backed by the origin, fully allocated.
        let snap = st.create_snapshot(&a, &vol.id, "s".into(), String::new(), BTreeMap::new()).await.unwrap();
        let snap = settle_snapshot(&st, &a, &snap.id).await;
        assert_eq!((snap.status, snap.kind, snap.size), (VolumeStatus::Available, SnapshotKind::Volume, 2));
        let xml = lv.volume_xml("lvm", &format!("snap-{}", snap.id)).unwrap();
        assert_eq!(xml.backing_store.map(|b| b.path), Some(format!("/dev/vg/{}", vol.id)));
        assert_eq!(xml.allocation, None, "LVM volumes are thick");
        // One snapshot is the quota; the volume cannot go while it has one.
        assert!(matches!(
            st.create_snapshot(&a, &vol.id, "t".into(), String::new(), BTreeMap::new()).await,
            Err(StorageError::OverQuota(_))
        ));
        let e = st.delete(&a, &vol.id, false).await.unwrap_err();
        assert!(e.to_string().contains("dependent snapshots"), "{e}");
        assert_eq!(st.get(&a, &vol.id).unwrap().status, VolumeStatus::Available);
        // A volume from the snapshot: its pool, at least its size; another type is refused.
        let from = |t: Option<&str>| NewVolume {
            snapshot_id: Some(snap.id.clone()),
            volume_type: t.map(Into::into),
            ..Default::default()
        };
        assert!(matches!(st.create(&a, from(Some("files"))).await, Err(StorageError::BadRequest(_))));
        let restored = st.create(&a, from(None)).await.unwrap();
        let restored = settle(&st, &a, &restored.id).await;
        assert_eq!(
            (restored.status, restored.size, restored.volume_type.as_str()),
            (VolumeStatus::Available, 2, "lvm")
        );
        assert_eq!(restored.snapshot_id.as_deref(), Some(snap.id.as_str()));
        assert!(matches!(st.get_snapshot(&auth("p2"), &snap.id), Err(StorageError::SnapshotNotFound(_))));
        st.update_snapshot(&a, &snap.id, Some("renamed".into()), None).await.unwrap();
        assert_eq!(st.list_snapshots(&a, false).unwrap()[0].name, "renamed");
        st.delete_snapshot(&a, &snap.id, false).await.unwrap();
        assert!(lv.volume_names("lvm").unwrap().iter().all(|n| !n.starts_with("snap-")));

        // Attachment bookkeeping: reserve, attach, no second attach, detach.
        st.transition(&a, &vol.id, VolumeStatus::Available, VolumeStatus::Attaching).await.unwrap();
        let att = st.attach(&a, &vol.id, "server-1", "n", "/dev/vdb").await.unwrap();
        let v = st.get(&a, &vol.id).unwrap();
        assert_eq!((v.status, v.attachments.clone()), (VolumeStatus::InUse, vec![att.clone()]));
        assert!(matches!(st.attach(&a, &vol.id, "server-2", "n", "/dev/vdc").await, Err(StorageError::BadRequest(_))));
        assert!(st.delete(&a, &vol.id, false).await.is_err(), "an attached volume stays");
        assert!(matches!(
            st.create_snapshot(&a, &vol.id, "u".into(), String::new(), BTreeMap::new()).await,
            Err(StorageError::BadRequest(_))
        ));
        assert!(st.detach(&a, &vol.id, Some("other".into()), false).await.is_err());
        st.detach(&a, &vol.id, Some(att.id), false).await.unwrap();
        let v = st.get(&a, &vol.id).unwrap();
        assert_eq!((v.status, v.attachments.len()), (VolumeStatus::Available, 0));

        // The pool report: both pools with their use, recorded once while nothing changes.
        st.report_pools().await.unwrap();
        let rec = st.pool_records().unwrap();
        assert_eq!(rec.len(), 2);
        let lvm = &rec.iter().find(|(_, p)| p.name == "lvm").unwrap().1;
        assert_eq!((lvm.kind.as_str(), lvm.info.active, lvm.info.allocation), ("logical", true, 4 * GIB));
        let applied = *r.store().subscribe().borrow();
        st.report_pools().await.unwrap();
        assert_eq!(*r.store().subscribe().borrow(), applied, "an unchanged report is not logged again");
        st.delete(&a, &restored.id, false).await.unwrap();
        st.delete(&a, &vol.id, false).await.unwrap();
        r.shutdown().await;
    }

    async fn settle_snapshot(st: &Storage, a: &Auth, id: &str) -> Snapshot {
        for _ in 0..200 {
            let s = st.get_snapshot(a, id).unwrap();
            if s.status != VolumeStatus::Creating {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("snapshot {id} stayed creating");
    }
}
