//! `cairn-run` (what `make run` starts): boots the appliance disk image in QEMU with its API
//! forwarded to the host, prints the URL, the CA file and the admin credentials, and stops the
//! guest on Ctrl-C. The disk is a copy-on-write overlay of the image grown to 20 GiB (sparse: it
//! takes only what is written), so the data partition has room for volumes and servers.

use cairn_qemu_test::{disk_image, Appliance, Boot, Media};
use std::process::ExitCode;

/// The appliance's disk: room for the README's flow (an image, a 2 GiB volume, servers).
const DISK_BYTES: u64 = 20 << 30;

fn main() -> ExitCode {
    let image = match disk_image() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("cairn-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "booting {} in QEMU (console log follows on failure; this takes about a minute under TCG)…",
        image.display()
    );
    let boot = Boot { disk_bytes: Some(DISK_BYTES), ..Boot::new(Media::Disk(image)) };
    let app = match Appliance::boot(&boot) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cairn-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ca = std::env::current_dir().map(|d| d.join("out/run-ca.pem")).unwrap_or_else(|_| "run-ca.pem".into());
    if let Err(e) = std::fs::copy(&app.ca_path, &ca) {
        eprintln!("cairn-run: copying the CA to {}: {e}", ca.display());
        return ExitCode::FAILURE;
    }
    let url = format!("https://{}/identity/v3", app.api);
    println!("\nCairn appliance ready after {:.0} s", app.ready_after.as_secs_f64());
    println!("API          {url}");
    println!("CA file      {} (sha256 {}, pinned from the console)", ca.display(), app.fingerprint);
    println!("Admin        admin / {} (project admin, domain Default)", app.password);
    println!("Console log  {}", app.dir().join("console.log").display());
    println!(
        "Disk         {} ({} GiB, sparse overlay of the image; removed when the appliance stops)",
        app.dir().join("disk.qcow2").display(),
        DISK_BYTES >> 30
    );
    println!(
        "Try          OS_AUTH_URL={url} OS_CACERT={} OS_USERNAME=admin OS_PASSWORD='{}' OS_PROJECT_NAME=admin \\\n             OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default openstack token issue",
        ca.display(),
        app.password
    );
    println!("Ctrl-C stops the appliance.");
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rt.block_on(tokio::signal::ctrl_c());
    eprintln!("stopping the appliance");
    drop(app);
    ExitCode::SUCCESS
}
