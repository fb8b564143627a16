//! The appliance image booted in QEMU, driven over HTTPS through a forwarded port.
//! Needs `make image` (the tests fail, saying so, when the image is missing) and QEMU + OVMF.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_agent::client::Client;
use cairn_qemu_test::{disk_image, Appliance, Boot, Media};
use hyper::Method;
use std::sync::Mutex;

/// One guest at a time: two TCG guests on two cores would only slow each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `GET /cairn/v1/host`: `{"host": probe facts, "data_dir": where the state lives}`.
fn host_facts(app: &Appliance) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(app.api, &std::fs::read_to_string(&app.ca_path).unwrap()).unwrap();
        let mut conn = client.connect().await.unwrap();
        let token = conn
            .login("admin", &app.password, "admin")
            .await
            .unwrap()
            .expect("admin login with the console's password");
        let r = conn.request(Method::GET, "/cairn/v1/host", &[("x-auth-token", &token)], None).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    })
}

fn osc(app: &Appliance, args: &[&str]) -> String {
    let venv = std::env::var_os("CAIRN_OSC_VENV").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cairn/osc-venv")
    });
    let bin = venv.join("bin/openstack");
    assert!(bin.exists(), "{} is missing: run `make test-deps`", bin.display());
    let out = std::process::Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OS_AUTH_URL", format!("https://{}/identity/v3", app.api))
        .env("OS_CACERT", &app.ca_path)
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", &app.password)
        .env("OS_PROJECT_NAME", "admin")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IDENTITY_API_VERSION", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "openstack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn disk_image_with_svm_runs_kvm_and_serves_the_openstack_client() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut boot = Boot::new(Media::Disk(disk_image().unwrap()));
    boot.disk_bytes = Some(4 << 30);
    let app = Appliance::boot(&boot).unwrap();
    eprintln!("disk image (UEFI, -cpu max, 4 GiB disk): ready after {:.1} s", app.ready_after.as_secs_f64());
    assert!(!app.password.is_empty(), "first boot shows the generated admin password on the console");
    assert_eq!(app.fingerprint.len(), 64);

    // QEMU's emulator offers svm with -cpu max: the agent must see it, use kvm_amd, and its KVM
    // run test must pass (a nested guest really runs).
    let all = host_facts(&app);
    // The data partition grew from 64 MiB in the image to fill the 4 GiB disk on first boot.
    let data = &all["data_dir"];
    assert_eq!(data["path"], "/var/lib/cairn");
    assert_eq!(data["in_memory"], false, "{data:#}");
    assert!(data["size_bytes"].as_u64().unwrap() > 2 << 30, "data partition not grown: {data:#}");
    let facts = &all["host"];
    assert_eq!(facts["cpu"]["virtualization"], "svm", "{facts:#}");
    let modules: Vec<&str> = facts["kvm"]["modules"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
    assert!(modules.contains(&"kvm_amd"), "{facts:#}");
    assert_eq!(facts["kvm"]["run_test"]["result"], "passed", "{facts:#}");
    assert_eq!(facts["accel"], "kvm", "{facts:#}");

    // The real openstack client logs in to the booted appliance through the forwarded port.
    let token: serde_json::Value = serde_json::from_str(&osc(&app, &["token", "issue", "-f", "json"])).unwrap();
    assert!(token["id"].as_str().is_some_and(|t| !t.is_empty()));
    osc(&app, &["project", "create", "from-the-host"]);
    assert!(osc(&app, &["project", "list", "-f", "value", "-c", "Name"]).contains("from-the-host"));
    let console = app.console();
    assert!(!console.contains("Failed to start"), "a unit failed:\n{console}");
}

#[test]
fn disk_image_without_virtualization_extensions_emulates() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut boot = Boot::new(Media::Disk(disk_image().unwrap()));
    boot.cpu = "qemu64,-svm,-vmx".into();
    let app = Appliance::boot(&boot).unwrap();
    eprintln!("disk image (UEFI, -cpu qemu64,-svm,-vmx): ready after {:.1} s", app.ready_after.as_secs_f64());
    let facts = &host_facts(&app)["host"];
    assert_eq!(facts["cpu"]["virtualization"], "none", "{facts:#}");
    assert_eq!(facts["accel"], "qemu", "{facts:#}");
    assert!(app.console().contains("no vmx/svm on this CPU"), "said once in the log");
}
