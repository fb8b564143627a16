//! Read access to /proc, /sys and /dev through a root path, so the probe runs against the real
//! machine (`/`) or a fixture tree.

use std::io;
use std::path::{Path, PathBuf};

pub trait HostFs: Send + Sync {
    /// Reads a file given relative to the root (`proc/cpuinfo`).
    fn read(&self, path: &str) -> io::Result<String>;
    /// Names in a directory, sorted.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    fn exists(&self, path: &str) -> bool;
}

/// The filesystem below `root`.
pub struct RootedFs {
    root: PathBuf,
}

impl RootedFs {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { root: root.as_ref().into() }
    }
}

impl HostFs for RootedFs {
    fn read(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(self.root.join(path))
    }
    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Fixture trees keep empty directories in git with dot-files; sysfs has none.
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }
    fn exists(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }
}
