//! Named network namespaces, compatible with iproute2's (`/run/netns/NAME`, a bind mount of a
//! namespace file), made without forking: a short-lived thread unshares its network namespace
//! and the bind mount keeps it alive after the thread ends.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Where iproute2 keeps named namespaces; `ip netns` lists what Cairn creates.
pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("namespace name {0:?} is not a plain file name")]
    BadName(String),
    #[error("{op} network namespace {name}")]
    Sys {
        op: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

fn sys<'a>(op: &'static str, name: &'a str) -> impl FnOnce(nix::Error) -> NetnsError + 'a {
    move |e| NetnsError::Sys { op, name: name.into(), source: e.into() }
}

fn io<'a>(op: &'static str, name: &'a str) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Sys { op, name: name.into(), source }
}

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
}

fn path_of(name: &str) -> Result<PathBuf, NetnsError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(NetnsError::BadName(name.into()));
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

impl NetNs {
    /// Opens the named namespace.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        let file = File::open(path_of(name)?).map_err(io("opening", name))?;
        Ok(Self { name: name.into(), file })
    }

    /// Whether the named namespace exists.
    pub fn exists(name: &str) -> bool {
        path_of(name).map(|p| p.exists()).unwrap_or(false)
    }

    /// Opens the named namespace, creating it first when it does not exist.
    pub fn ensure(name: &str) -> Result<Self, NetnsError> {
        if !Self::exists(name) {
            create(name)?;
        }
        Self::open(name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace. Only for threads that are about to end or
    /// belong to a child about to `exec`.
    pub fn enter(&self) -> Result<(), NetnsError> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("entering", &self.name))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on a fresh thread inside this namespace (sockets it opens stay in it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, NetnsError> {
        let file = self.file.try_clone().map_err(io("duplicating", &self.name))?;
        let name = self.name.clone();
        std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("entering", &name))?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::Sys {
            op: "running in",
            name: self.name.clone(),
            source: std::io::Error::other("thread panicked"),
        })?
    }
}

/// Creates `/run/netns/NAME` holding a new, empty network namespace.
fn create(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name)?;
    std::fs::create_dir_all(NETNS_DIR).map_err(io("creating directory for", name))?;
    std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io("creating", name))?;
    let owned = name.to_owned();
    let p = path.clone();
    let made = std::thread::spawn(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unsharing", &owned))?;
        mount(Some("/proc/thread-self/ns/net"), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys("bind-mounting", &owned))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Sys { op: "creating", name: name.into(), source: std::io::Error::other("thread panicked") })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Removes a named namespace; its links go with it once no process holds it. Missing is fine.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name)?;
    if !path.exists() {
        return Ok(());
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(sys("unmounting", name)(e)),
    }
    std::fs::remove_file(&path).map_err(io("removing", name))
}

/// Names of the namespaces under [`NETNS_DIR`].
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|it| it.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}
