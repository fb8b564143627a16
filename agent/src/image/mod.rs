//! Glance's logic: image records in the replicated state, their bytes in this node's image
//! store (`<data dir>/images/<id>`), uploads streamed to disk while hashed (md5 and sha512, as
//! Glance reports them) and checked with `qemu-img info` ([`check`]) before the image becomes
//! active. The record names the node holding the bytes; another node that needs them (to boot a
//! server, or to answer a download) fetches them once over the peer port ([`Fetch`]), checks
//! their size and sha512 against the record, and keeps the copy in its own store.
//!
//! Policy: the admin role may do everything; a project member sees public and community images
//! and those its project owns (shared images without a members API are owner-only), and changes
//! only its project's images. Protected images cannot be deleted.

pub mod check;

use crate::identity::{now, Auth};
use crate::model::image::{Image, ImageData, ImagePatch, ImageStatus, Visibility};
use crate::state::raft::Replicated;
use crate::state::ImageCommand;
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
            Refusal::Conflicts(m) | Refusal::Stale(m) => ImageError::Conflict(m),
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

/// Why another node could not give an image's bytes (what the peer or the link said).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// An image's bytes as another node streams them.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Bytes, FetchError>> + Send>>;

/// Where this node gets the bytes of an image that another node holds (the cluster's peers).
pub trait Fetch: Send + Sync {
    fn open<'a>(
        &'a self,
        node: &'a str,
        id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<ByteStream, FetchError>> + Send + 'a>>;
}

/// The image service of this node.
pub struct Images {
    state: Replicated,
    dir: PathBuf,
    max_bytes: u64,
    node: String,
    fetch: std::sync::OnceLock<std::sync::Arc<dyn Fetch>>,
    /// One fetch at a time: a second caller for the same image finds it in the store.
    fetching: tokio::sync::Mutex<()>,
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
        Ok(Self {
            state,
            dir,
            max_bytes,
            node,
            fetch: std::sync::OnceLock::new(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Where images held by other nodes come from, once the cluster is up.
    pub fn set_fetch(&self, fetch: std::sync::Arc<dyn Fetch>) {
        let _ = self.fetch.set(fetch);
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

    /// Where this node's store keeps (or will keep) an image's bytes.
    pub fn store_path(&self, id: &str) -> PathBuf {
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
        self.propose(Command::Image(ImageCommand::CreateImage(image))).await?;
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
        self.propose(Command::Image(ImageCommand::UpdateImage { id: id.into(), patch })).await?;
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
        self.propose(Command::Image(ImageCommand::DeleteImage { id: id.into() })).await?;
        match tokio::fs::remove_file(self.store_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Glance's deactivate (`active` → `deactivated`) or reactivate (back), by an admin or the
    /// owning project (Glance's default policy); either is a no-op on an image already there.
    /// Any other status is refused (403, as Glance).
    pub async fn set_active(&self, auth: &Auth, id: &str, active: bool) -> Result<()> {
        let i = self.get(auth, id)?;
        if !Self::owns(auth, &i) {
            return Err(ImageError::Forbidden(
                "Only the image's owner or an admin may deactivate or reactivate it.".into(),
            ));
        }
        let (from, to) = match active {
            true => (ImageStatus::Deactivated, ImageStatus::Active),
            false => (ImageStatus::Active, ImageStatus::Deactivated),
        };
        if i.status == to {
            return Ok(());
        }
        if i.status != from {
            return Err(ImageError::Forbidden(format!(
                "Not allowed to {} an image in status '{}'.",
                if active { "reactivate" } else { "deactivate" },
                i.status.as_str()
            )));
        }
        self.set_status(id, from, to, i.data).await
    }

    async fn set_status(&self, id: &str, from: ImageStatus, to: ImageStatus, data: Option<ImageData>) -> Result<()> {
        self.propose(Command::Image(ImageCommand::SetImageStatus {
            id: id.into(),
            from: vec![from],
            to,
            data,
            updated_at: now(),
        }))
        .await
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
                        tokio::fs::rename(&part, self.store_path(id)).await.map_err(io_err)?;
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

    /// The file holding an active image's data on this node (fetched first when another node
    /// holds it), and its size.
    pub async fn data(&self, auth: &Auth, id: &str) -> Result<Option<(tokio::fs::File, u64, Image)>> {
        let image = self.get(auth, id)?;
        if image.status == ImageStatus::Deactivated && !auth.is_admin() {
            return Err(ImageError::Forbidden(
                "The requested image has been deactivated. Image data download is forbidden.".into(),
            ));
        }
        let readable = matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated);
        let Some(data) = image.data.clone().filter(|_| readable) else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.local_copy(id).await?).await.map_err(io_err)?;
        Ok(Some((file, data.size, image)))
    }

    /// The path of an active image's bytes in this node's store; when another node holds them
    /// they are fetched from it first, and kept only if their size and sha512 are the record's.
    pub async fn local_copy(&self, id: &str) -> Result<PathBuf> {
        let path = self.store_path(id);
        let image = self.view()?.image(id)?.ok_or_else(|| ImageError::NotFound(id.into()))?;
        let data = image
            .data
            .filter(|_| matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated))
            .ok_or_else(|| ImageError::Conflict(format!("Image {id} is not active.")))?;
        // Stored bytes are whole once they have their name (renamed after the check), so a
        // copy already here is used without waiting for another image's fetch.
        let stored = || async { tokio::fs::try_exists(&path).await.map_err(io_err) };
        if stored().await? {
            return Ok(path);
        }
        let _one = self.fetching.lock().await;
        if stored().await? {
            return Ok(path);
        }
        if data.node == self.node {
            return Err(ImageError::Internal(
                format!("the data of image {id} is missing from this node's store").into(),
            ));
        }
        let unavailable = |why: String| ImageError::Unavailable(format!("Image {id} is on node {}: {why}", data.node));
        let fetch = self.fetch.get().ok_or_else(|| unavailable("this node is not in a cluster yet".into()))?;
        let started = std::time::Instant::now();
        let stream = fetch.open(&data.node, id).await.map_err(|e| unavailable(e.0))?;
        let part = self.dir.join(format!("{id}.fetch"));
        let received = self.receive(&part, stream).await;
        match received {
            Ok((size, _, sha512)) if size == data.size && sha512 == data.sha512 => {
                tokio::fs::rename(&part, &path).await.map_err(io_err)?;
                let secs = started.elapsed().as_secs_f64();
                log::info!("image {id}: {} MiB fetched from node {} in {secs:.1} s", size >> 20, data.node);
                Ok(path)
            }
            other => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(unavailable(match other {
                    Ok((size, ..)) => format!("the {size} bytes fetched are not the image's (size or sha512 differ)"),
                    Err(e) => crate::error_chain(&e),
                }))
            }
        }
    }

    /// Removes from this node's store the bytes of images that no longer exist (the node that
    /// took a delete removes its own at once; the copies other nodes fetched go here), looking
    /// at most every 10 s after a change.
    pub async fn prune_loop(self: std::sync::Arc<Self>) {
        let mut changes = self.state.store().subscribe();
        loop {
            if changes.changed().await.is_err() {
                return;
            }
            if let Err(e) = self.prune().await {
                log::warn!("image store: {}", crate::error_chain(&e));
            }
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
    }

    async fn prune(&self) -> Result<()> {
        let _one = self.fetching.lock().await;
        let known: std::collections::BTreeSet<String> = self.view()?.images()?.into_iter().map(|i| i.id).collect();
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io_err)?;
        while let Some(e) = entries.next_entry().await.map_err(io_err)? {
            let name = e.file_name().to_string_lossy().into_owned();
            // Uploads and fetches in progress are `<id>.part` and `<id>.fetch`.
            if name.contains('.') || known.contains(&name) {
                continue;
            }
            match tokio::fs::remove_file(e.path()).await {
                Ok(()) => log::info!("image {name} is deleted: its bytes are removed from this node's store"),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_err(err)),
            }
        }
        Ok(())
    }

    /// An active image's bytes if this node's store has them (for a peer that fetches them).
    pub async fn stored(&self, id: &str) -> Result<Option<(tokio::fs::File, u64)>> {
        let image = self.view()?.image(id)?.ok_or_else(|| ImageError::NotFound(id.into()))?;
        if image.status != ImageStatus::Active {
            return Ok(None);
        }
        match tokio::fs::File::open(self.store_path(&image.id)).await {
            Ok(f) => {
                let len = f.metadata().await.map_err(io_err)?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image::Visibility;
    use crate::state::Store;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Serves `bytes` as any node's copy of any image, counting the fetches.
    struct Serve {
        bytes: Vec<u8>,
        fetches: AtomicUsize,
    }

    impl Fetch for Serve {
        fn open<'a>(
            &'a self,
            _node: &'a str,
            _id: &'a str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<ByteStream, FetchError>> + Send + 'a>>
        {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let chunks: Vec<std::result::Result<Bytes, FetchError>> =
                self.bytes.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Box::pin(async move { Ok(Box::pin(futures_util::stream::iter(chunks)) as ByteStream) })
        }
    }

    fn sha512_hex(b: &[u8]) -> String {
        ring::digest::digest(&ring::digest::SHA512, b).as_ref().iter().map(|x| format!("{x:02x}")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn images_of_other_nodes_are_fetched_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        let images = Images::new(r.clone(), dir.path().join("images"), 1 << 20, "here".into()).unwrap();
        let good: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let image = |id: &str, node: &str| Image {
            id: id.into(),
            name: id.into(),
            owner: "p".into(),
            disk_format: Some(crate::model::image::DiskFormat::Raw),
            container_format: None,
            visibility: Visibility::Public,
            protected: false,
            min_disk: 0,
            min_ram: 0,
            status: ImageStatus::Active,
            data: Some(ImageData {
                size: good.len() as u64,
                virtual_size: good.len() as u64,
                checksum: String::new(),
                sha512: sha512_hex(&good),
                node: node.into(),
            }),
            tags: vec![],
            properties: std::collections::BTreeMap::new(),
            created_at: 0,
            updated_at: 0,
        };
        for (id, node) in [("far", "there"), ("bad", "there"), ("lost", "here")] {
            r.propose(Command::Image(ImageCommand::CreateImage(image(id, node)))).await.unwrap().unwrap();
        }
        // Not in a cluster: 503, nothing in the store.
        assert!(matches!(images.local_copy("far").await, Err(ImageError::Unavailable(_))));
        let serve = Arc::new(Serve { bytes: good.clone(), fetches: AtomicUsize::new(0) });
        images.set_fetch(serve.clone());
        let path = images.local_copy("far").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert_eq!(images.local_copy("far").await.unwrap(), path, "the copy is kept");
        assert_eq!(serve.fetches.load(Ordering::SeqCst), 1);
        let (_, len) = images.stored("far").await.unwrap().unwrap();
        assert_eq!(len, good.len() as u64, "and served to other peers");

        // Once the image is deleted, the copy goes.
        r.propose(Command::Image(ImageCommand::DeleteImage { id: "far".into() })).await.unwrap().unwrap();
        images.prune().await.unwrap();
        assert!(!path.exists(), "the deleted image's copy is pruned");

        // Bytes that are not the record's are refused and not kept.
        let mut wrong = good.clone();
        wrong[4321] ^= 1;
        let liar = Images::new(r.clone(), dir.path().join("images2"), 1 << 20, "here".into()).unwrap();
        liar.set_fetch(Arc::new(Serve { bytes: wrong, fetches: AtomicUsize::new(0) }));
        let e = liar.local_copy("bad").await.unwrap_err();
        assert!(e.to_string().contains("sha512 differ"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path().join("images2")).unwrap().count(), 0, "nothing left");
        // Bytes this node should hold but lost are not fetched from anyone.
        assert!(matches!(images.local_copy("lost").await, Err(ImageError::Internal(_))));
        assert!(matches!(images.local_copy("nope").await, Err(ImageError::NotFound(_))));
    }
}
