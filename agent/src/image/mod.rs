//! Glance's logic: image records in the replicated state, their bytes in this node's image
//! store (`<data dir>/images/<id>`), uploads streamed to disk while hashed (md5 and sha512, as
//! Glance reports them) and checked with `qemu-img info` ([`check`]) before the image becomes
//! active. The record names the node holding the bytes, so other nodes can fetch them over the
//! cluster later.
//!
//! Policy: the admin role may do everything; a project member sees public and community images
//! and those its project owns (shared images without a members API are owner-only), and changes
//! only its project's images. Protected images cannot be deleted.

pub mod check;

use crate::identity::{now, Auth};
use crate::model::image::{Image, ImageData, ImagePatch, ImageStatus, Visibility};
use crate::state::raft::Replicated;
use crate::state::{Command, Refusal, StateError, View};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Digest;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("A project-scoped token is required for the image API.")]
    Unscoped,
    #[error("{0}")]
    Forbidden(String),
    #[error("No image found with ID {0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Image data is larger than the {limit} bytes this cloud accepts.")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for ImageError {
    fn from(e: StateError) -> Self {
        ImageError::Internal(Box::new(e))
    }
}

impl From<Refusal> for ImageError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound { id, .. } => ImageError::NotFound(id),
            Refusal::Conflict { kind, name } => ImageError::Conflict(format!("{kind} {name} already exists.")),
            Refusal::Conflicts(m) => ImageError::Conflict(m),
            Refusal::Invalid(m) => ImageError::BadRequest(m),
            r @ (Refusal::AlreadyBootstrapped | Refusal::Exhausted(_) | Refusal::OverQuota(_)) => {
                ImageError::Internal(Box::new(r))
            }
        }
    }
}

fn io_err(e: std::io::Error) -> ImageError {
    ImageError::Internal(Box::new(e))
}

type Result<T> = std::result::Result<T, ImageError>;

/// How much of an over-limit upload is read and dropped before answering 413.
const DRAIN_BYTES: u64 = 16 << 20;

/// The image service of this node.
pub struct Images {
    state: Replicated,
    dir: PathBuf,
    max_bytes: u64,
    node: String,
}

fn project_of(auth: &Auth) -> Result<&str> {
    auth.project.as_ref().map(|p| p.id.as_str()).ok_or(ImageError::Unscoped)
}

impl Images {
    /// The service over `dir` (created if missing, 0700).
    pub fn new(state: Replicated, dir: PathBuf, max_bytes: u64, node: String) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // QEMU (libvirt's user) reads images as the backing files of root disks: traversable.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        Ok(Self { state, dir, max_bytes, node })
    }

    fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    fn sees(auth: &Auth, i: &Image) -> bool {
        auth.is_admin()
            || matches!(i.visibility, Visibility::Public | Visibility::Community)
            || auth.project.as_ref().is_some_and(|p| p.id == i.owner)
    }

    fn owns(auth: &Auth, i: &Image) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == i.owner)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn list(&self, auth: &Auth) -> Result<Vec<Image>> {
        project_of(auth)?;
        let mut v: Vec<Image> = self.view()?.images()?.into_iter().filter(|i| Self::sees(auth, i)).collect();
        // Glance's default order: newest first.
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(v)
    }

    pub fn get(&self, auth: &Auth, id: &str) -> Result<Image> {
        project_of(auth)?;
        self.view()?.image(id)?.filter(|i| Self::sees(auth, i)).ok_or_else(|| ImageError::NotFound(id.into()))
    }

    /// A queued image with `new`'s attributes and the given id (a UUID) or a fresh one.
    pub async fn create(&self, auth: &Auth, id: Option<String>, new: ImagePatch) -> Result<Image> {
        let owner = project_of(auth)?.to_owned();
        if new.visibility == Visibility::Public && !auth.is_admin() {
            return Err(ImageError::Forbidden("Only the admin role may publicize images.".into()));
        }
        let id = match id {
            Some(id) => uuid::Uuid::parse_str(&id)
                .map_err(|_| ImageError::BadRequest(format!("Invalid image id {id:?}: must be a UUID")))?
                .to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let image = Image::new(id.clone(), owner, new, now());
        self.propose(Command::CreateImage(image)).await?;
        self.get(auth, &id)
    }

    /// Applies a metadata change the API built from the current record.
    pub async fn update(&self, auth: &Auth, id: &str, mut patch: ImagePatch) -> Result<Image> {
        let i = self.get(auth, id)?;
        if !Self::owns(auth, &i) {
            return Err(ImageError::Forbidden("You are not permitted to modify this image.".into()));
        }
        if patch.visibility == Visibility::Public && i.visibility != Visibility::Public && !auth.is_admin() {
            return Err(ImageError::Forbidden("Only the admin role may publicize images.".into()));
        }
        if i.status != ImageStatus::Queued
            && (patch.disk_format != i.disk_format || patch.container_format != i.container_format)
        {
            return Err(ImageError::Forbidden("The formats of an image with data cannot change.".into()));
        }
        patch.updated_at = now();
        self.propose(Command::UpdateImage { id: id.into(), patch }).await?;
        self.get(auth, id)
    }

    pub async fn delete(&self, auth: &Auth, id: &str) -> Result<()> {
        let i = self.get(auth, id)?;
        if !Self::owns(auth, &i) {
            return Err(ImageError::Forbidden("You are not permitted to delete this image.".into()));
        }
        if i.protected {
            return Err(ImageError::Forbidden(format!("Image {id} is protected and cannot be deleted.")));
        }
        self.propose(Command::DeleteImage { id: id.into() }).await?;
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn set_status(&self, id: &str, from: ImageStatus, to: ImageStatus, data: Option<ImageData>) -> Result<()> {
        self.propose(Command::SetImageStatus { id: id.into(), from: vec![from], to, data, updated_at: now() }).await
    }

    /// Streams the image's data to the store, checks it, and activates the image (or kills it
    /// and removes the data when the check refuses it).
    pub async fn upload<S, E>(&self, auth: &Auth, id: &str, body: S) -> Result<Image>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let image = self.get(auth, id)?;
        if !Self::owns(auth, &image) {
            return Err(ImageError::Forbidden("You are not permitted to upload data for this image.".into()));
        }
        let Some(format) = image.disk_format else {
            return Err(ImageError::BadRequest("Set disk_format and container_format before uploading data.".into()));
        };
        // Claims the image: a second upload at the same time gets 409.
        self.set_status(id, ImageStatus::Queued, ImageStatus::Saving, None).await?;
        let part = self.dir.join(format!("{id}.part"));
        match self.receive(&part, body).await {
            Ok((size, md5, sha512)) => {
                let checked = {
                    let p = part.clone();
                    tokio::task::spawn_blocking(move || check::check_file(&p, format))
                        .await
                        .map_err(|e| ImageError::Internal(Box::new(e)))?
                };
                match checked {
                    Ok(inspected) => {
                        tokio::fs::rename(&part, self.path(id)).await.map_err(io_err)?;
                        let data = ImageData {
                            size,
                            virtual_size: inspected.virtual_size,
                            checksum: md5,
                            sha512,
                            node: self.node.clone(),
                        };
                        self.set_status(id, ImageStatus::Saving, ImageStatus::Active, Some(data)).await?;
                        self.get(auth, id)
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&part).await;
                        self.set_status(id, ImageStatus::Saving, ImageStatus::Killed, None).await?;
                        match e {
                            check::CheckError::Refused(m) => Err(ImageError::BadRequest(m)),
                            other => Err(ImageError::BadRequest(format!(
                                "Image data could not be inspected: {}",
                                crate::error_chain(&other)
                            ))),
                        }
                    }
                }
            }
            Err(e) => {
                // Nothing was accepted: the image may be uploaded again.
                let _ = tokio::fs::remove_file(&part).await;
                self.set_status(id, ImageStatus::Saving, ImageStatus::Queued, None).await?;
                Err(e)
            }
        }
    }

    /// Writes the body to `part`, hashing as it goes; returns (size, md5 hex, sha512 hex).
    async fn receive<S, E>(&self, part: &PathBuf, mut body: S) -> Result<(u64, String, String)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(part)
            .await
            .map_err(io_err)?;
        let mut md5 = md5::Md5::new();
        let mut sha = ring::digest::Context::new(&ring::digest::SHA512);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ImageError::BadRequest(format!("Reading the image data failed: {e}")))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                // Read (and drop) a little more so the client gets the 413 rather than a reset.
                let mut drained = 0u64;
                while drained < DRAIN_BYTES {
                    match body.next().await {
                        Some(Ok(c)) => drained += c.len() as u64,
                        _ => break,
                    }
                }
                return Err(ImageError::TooLarge { limit: self.max_bytes });
            }
            md5.update(&chunk);
            sha.update(&chunk);
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.sync_all().await.map_err(io_err)?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Ok((size, hex(&md5.finalize()), hex(sha.finish().as_ref())))
    }

    /// The file holding an active image's data on this node, and its size.
    pub async fn data(&self, auth: &Auth, id: &str) -> Result<Option<(tokio::fs::File, u64, Image)>> {
        let image = self.get(auth, id)?;
        let Some(data) = image.data.clone().filter(|_| image.status == ImageStatus::Active) else {
            return Ok(None);
        };
        if data.node != self.node {
            return Err(ImageError::Unavailable(format!(
                "Image {id} is stored on node {}; fetching across the cluster is not available yet.",
                data.node
            )));
        }
        let file = tokio::fs::File::open(self.path(id)).await.map_err(io_err)?;
        Ok(Some((file, data.size, image)))
    }
}
