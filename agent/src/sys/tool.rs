//! Running the host's storage and image tools (qemu-img, lvextend, xorriso): their error output
//! becomes the error, as a sentence for the record that failed.

use std::ffi::OsStr;

/// Runs `program` with `args`; Err carries what failed and its standard error.
pub fn run<'a>(program: &str, args: impl IntoIterator<Item = &'a OsStr>) -> Result<(), String> {
    let args: Vec<&OsStr> = args.into_iter().collect();
    let what = match args.first() {
        Some(a) if program == "qemu-img" => format!("{program} {}", a.to_string_lossy()),
        _ => program.to_owned(),
    };
    let out = std::process::Command::new(program).args(&args).output().map_err(|e| format!("running {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
