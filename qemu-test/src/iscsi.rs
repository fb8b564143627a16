//! An iSCSI target on the host for appliance tests: Debian's `tgtd` (user space, so it runs where
//! the kernel has no target support) serving one file-backed LUN on a loopback port, which a
//! QEMU guest reaches as 10.0.2.2 through user networking. Stopped and its file removed on drop.

use crate::{io, HarnessError};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct IscsiTarget {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub iqn: String,
    pub lun_bytes: u64,
}

impl IscsiTarget {
    /// Starts tgtd with one LUN of `bytes` (a sparse file).
    pub fn start(bytes: u64) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
        let lun: PathBuf = dir.path().join("lun.img");
        std::fs::File::create(&lun).and_then(|f| f.set_len(bytes)).map_err(io("creating the LUN file"))?;
        let port = crate::free_port()?;
        // The management channel is an abstract socket named by this number: unique per test run
        // (tgtadm accepts 0..=32767).
        let control = (std::process::id() % 31_000 + 1000).to_string();
        let child = Command::new("tgtd")
            .args(["-f", "-C", &control, "--iscsi", &format!("portal=127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("tgtd.log")).map_err(io("tgtd log"))?)
            .spawn()
            .map_err(io("starting tgtd (package tgt)"))?;
        let iqn = format!("iqn.2026-11.test.cairn:{}", std::process::id());
        let target = IscsiTarget { child, _dir: dir, port, iqn, lun_bytes: bytes };
        let tgtadm = |args: &[&str]| -> Result<(), HarnessError> {
            let out = Command::new("tgtadm")
                .args(["-C", &control, "--lld", "iscsi"])
                .args(args)
                .output()
                .map_err(io("running tgtadm"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(HarnessError::Io {
                    what: format!("tgtadm {args:?}"),
                    source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
                })
            }
        };
        // tgtd takes a moment to open its management socket.
        let started = Instant::now();
        while let Err(e) = tgtadm(&["--op", "show", "--mode", "target"]) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tgtadm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", &target.iqn])?;
        let lun = lun.to_string_lossy().into_owned();
        tgtadm(&["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", &lun])?;
        tgtadm(&["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])?;
        Ok(target)
    }
}

impl Drop for IscsiTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
