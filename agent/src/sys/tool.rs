//! Running the host's storage and image tools (qemu-img, lvextend, xorriso): their error output
//! becomes the error, as a sentence for the record that failed.

use std::ffi::OsStr;

/// A tool that could not be started, or that failed: what ran, and why.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("running {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed; its standard error.
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
}

/// Runs `program` with `args`; Err carries what failed and its standard error.
pub fn run<'a>(program: &str, args: impl IntoIterator<Item = &'a OsStr>) -> Result<(), ToolError> {
    let args: Vec<&OsStr> = args.into_iter().collect();
    let what = match args.first() {
        Some(a) if program == "qemu-img" => format!("{program} {}", a.to_string_lossy()),
        _ => program.to_owned(),
    };
    let out = match std::process::Command::new(program).args(&args).output() {
        Ok(out) => out,
        Err(source) => return Err(ToolError::Spawn { what, source }),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(ToolError::Failed { what, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}
