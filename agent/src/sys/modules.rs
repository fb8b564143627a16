//! Loading kernel modules with modprobe.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("running modprobe {module}")]
    Spawn {
        module: String,
        #[source]
        source: std::io::Error,
    },
    #[error("modprobe {module} failed: {stderr}")]
    Failed { module: String, stderr: String },
}

pub trait ModuleLoader: Send + Sync {
    /// Loads `module` with `params` (`nested=1`).
    fn load(&self, module: &str, params: &[&str]) -> Result<(), ModuleError>;
}

pub struct Modprobe;

impl ModuleLoader for Modprobe {
    fn load(&self, module: &str, params: &[&str]) -> Result<(), ModuleError> {
        let out = Command::new("modprobe")
            .arg(module)
            .args(params)
            .output()
            .map_err(|source| ModuleError::Spawn { module: module.into(), source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ModuleError::Failed {
                module: module.into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            })
        }
    }
}
