//! Checking uploaded image data with `qemu-img info --output=json` before it becomes active:
//! the real format must be the declared one, and no qcow2 or vmdk may point outside itself
//! (a backing file, an external data file, or vmdk extents in other files): opened later by
//! QEMU on the host, such a reference reads any file the hypervisor can.
//!
//! `qemu-img info` opens only the image itself (never its backing chain without
//! `--backing-chain`), runs in a child process killed after [`INFO_TIMEOUT`], and with its
//! address space limited, as Glance does.

use crate::model::image::DiskFormat;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `qemu-img info` may take.
pub const INFO_TIMEOUT: Duration = Duration::from_secs(30);
/// Address space limit for `qemu-img info` (bytes), as Glance's 1 GiB.
const INFO_MEMORY: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("running qemu-img")]
    Spawn(#[source] std::io::Error),
    #[error("qemu-img info took longer than {}s", INFO_TIMEOUT.as_secs())]
    Timeout,
    #[error("qemu-img info failed: {0}")]
    Failed(String),
    /// The data is not acceptable; the message says why (for the client).
    #[error("{0}")]
    Refused(String),
}

/// What the check learned about acceptable data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub format: String,
    pub virtual_size: u64,
}

/// vmdk subformats whose extents live inside the one file.
const SAFE_VMDK: [&str; 2] = ["monolithicSparse", "streamOptimized"];

/// Judges `qemu-img info` output against the declared format.
pub fn verify(info: &Value, declared: DiskFormat) -> Result<Inspected, CheckError> {
    let format = info["format"].as_str().unwrap_or_default().to_owned();
    if format != declared.qemu_format() {
        return Err(CheckError::Refused(format!(
            "Image data is {format}, not the declared disk_format {}",
            declared.as_str()
        )));
    }
    if let Some(b) = info.get("backing-filename").or_else(|| info.get("full-backing-filename")) {
        return Err(CheckError::Refused(format!("Image data names a backing file ({b}); refused")));
    }
    let specific = &info["format-specific"]["data"];
    if let Some(d) = specific.get("data-file") {
        return Err(CheckError::Refused(format!("qcow2 image names an external data file ({d}); refused")));
    }
    if format == "vmdk" {
        let kind = specific["create-type"].as_str().unwrap_or("unknown");
        if !SAFE_VMDK.contains(&kind) {
            return Err(CheckError::Refused(format!(
                "vmdk subformat {kind} keeps its data in other files; only {} are accepted",
                SAFE_VMDK.join(" and ")
            )));
        }
    }
    let virtual_size = info["virtual-size"].as_u64().ok_or_else(|| CheckError::Failed("no virtual-size".into()))?;
    Ok(Inspected { format, virtual_size })
}

/// Runs `qemu-img info --output=json` on `path`.
pub fn qemu_img_info(path: &Path) -> Result<Value, CheckError> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--output=json"]).arg(path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit { rlim_cur: INFO_MEMORY, rlim_max: INFO_MEMORY };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(CheckError::Spawn)?;
    let deadline = Instant::now() + INFO_TIMEOUT;
    loop {
        match child.try_wait().map_err(CheckError::Spawn)? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CheckError::Timeout);
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().map_err(CheckError::Spawn)?;
    if !out.status.success() {
        return Err(CheckError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| CheckError::Failed(format!("unreadable output: {e}")))
}

/// Runs the check on a file.
pub fn check_file(path: &Path, declared: DiskFormat) -> Result<Inspected, CheckError> {
    verify(&qemu_img_info(path)?, declared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts() {
        let qcow2 = json!({"format": "qcow2", "virtual-size": 1048576, "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}});
        assert_eq!(
            verify(&qcow2, DiskFormat::Qcow2).unwrap(),
            Inspected { format: "qcow2".into(), virtual_size: 1 << 20 }
        );
        assert!(matches!(verify(&qcow2, DiskFormat::Raw), Err(CheckError::Refused(_))));
        let raw = json!({"format": "raw", "virtual-size": 512});
        assert!(verify(&raw, DiskFormat::Raw).is_ok());
        assert!(verify(&raw, DiskFormat::Iso).is_ok(), "an ISO is raw to qemu-img");
        assert!(matches!(verify(&raw, DiskFormat::Qcow2), Err(CheckError::Refused(_))), "raw claiming qcow2");
        let backed = json!({"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/shadow"});
        assert!(matches!(verify(&backed, DiskFormat::Qcow2), Err(CheckError::Refused(m)) if m.contains("backing")));
        let data_file =
            json!({"format": "qcow2", "virtual-size": 1, "format-specific": {"data": {"data-file": "/dev/sda"}}});
        assert!(
            matches!(verify(&data_file, DiskFormat::Qcow2), Err(CheckError::Refused(m)) if m.contains("data file"))
        );
        let flat = json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"data": {"create-type": "monolithicFlat"}}});
        assert!(matches!(verify(&flat, DiskFormat::Vmdk), Err(CheckError::Refused(_))));
        let sparse = json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"data": {"create-type": "monolithicSparse"}}});
        assert!(verify(&sparse, DiskFormat::Vmdk).is_ok());
    }
}
