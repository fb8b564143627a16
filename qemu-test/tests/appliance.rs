//! The appliance image booted in QEMU, driven over HTTPS through a forwarded port.
//! Needs `make image` (the tests fail, saying so, when the image is missing) and QEMU + OVMF.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_agent::client::Client;
use cairn_qemu_test::iscsi::IscsiTarget;
use cairn_qemu_test::{disk_image, Appliance, Boot, Media};
use hyper::Method;
use std::sync::Mutex;

/// One guest at a time: two TCG guests on two cores would only slow each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `GET /cairn/v1/host`: `{"host": probe facts, "data_dir": where the state lives}`.
fn host_facts(app: &Appliance) -> serde_json::Value {
    admin_get(app, "/cairn/v1/host")
}

/// An admin-only Cairn endpoint, as JSON.
fn admin_get(app: &Appliance, path: &str) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(app.api, &std::fs::read_to_string(&app.ca_path).unwrap()).unwrap();
        let mut conn = client.connect().await.unwrap();
        let token = conn
            .login("admin", &app.password, "admin")
            .await
            .unwrap()
            .expect("admin login with the console's password");
        let r = conn.request(Method::GET, path, &[("x-auth-token", &token)], None).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    })
}

fn osc(app: &Appliance, args: &[&str]) -> String {
    let (ok, out, err) = osc_try(app, args);
    assert!(ok, "openstack {args:?}: {err}");
    out
}

/// Runs the client; (success, stdout, stderr).
fn osc_try(app: &Appliance, args: &[&str]) -> (bool, String, String) {
    let out = osc_command(app).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The client, logged in as the appliance's admin (as `make run` prints the values).
fn osc_command(app: &Appliance) -> std::process::Command {
    let venv = std::env::var_os("CAIRN_OSC_VENV").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cairn/osc-venv")
    });
    let bin = venv.join("bin/openstack");
    assert!(bin.exists(), "{} is missing: run `make test-deps`", bin.display());
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OS_AUTH_URL", format!("https://{}/identity/v3", app.api))
        .env("OS_CACERT", &app.ca_path)
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", &app.password)
        .env("OS_PROJECT_NAME", "admin")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IDENTITY_API_VERSION", "3");
    cmd
}

/// The commands of the README's example flow (its `sh` block under "Using it with the openstack
/// client"), one a line, less the `export`s (the test sets those).
fn readme_flow() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("## Using it with the openstack client").nth(1).expect("the README's example section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its sh block");
    block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("export ")).map(str::to_owned).collect()
}

/// The README's example flow, command by command, on the appliance booted as `make run` boots
/// it (a disk with room), so the README cannot drift from what works.
#[test]
fn readme_example_flow_runs_on_the_appliance() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut boot = Boot::new(Media::Disk(disk_image().unwrap()));
    boot.disk_bytes = Some(8 << 30);
    let app = Appliance::boot(&boot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let guest = cairn_qemu_test::guest::test_guest_image().unwrap();
    let flow = readme_flow();
    assert!(flow.iter().any(|l| l.starts_with("openstack server create")), "{flow:#?}");
    for line in &flow {
        let line =
            line.replace("\"$(cargo run -q -p cairn-qemu-test --bin cairn-test-guest)\"", &guest.to_string_lossy());
        assert!(!line.contains(['"', '\'', '$']), "a README command this test cannot run as written: {line}");
        let args: Vec<&str> = line.split_whitespace().collect();
        let (program, rest) = args.split_first().unwrap();
        let out = match *program {
            "openstack" => osc_command(&app).args(rest).current_dir(dir.path()).output().unwrap(),
            "qemu-img" => std::process::Command::new("qemu-img").args(rest).current_dir(dir.path()).output().unwrap(),
            other => panic!("the README runs {other}, which this test does not know: {line}"),
        };
        assert!(out.status.success(), "README step failed: {line}\n{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("README step ok: {line}");
    }
    // What the flow made is there and works: the server active with its console, the volume.
    let vm: serde_json::Value = serde_json::from_str(&osc(&app, &["server", "show", "vm1", "-f", "json"])).unwrap();
    assert_eq!(vm["status"], "ACTIVE", "{vm:#}");
    assert!(!osc(&app, &["console", "log", "show", "vm1"]).trim().is_empty());
    wait_status(&app, &["volume"], "vol1", "available");
    assert!(dir.path().join("k1.pem").exists(), "the key pair's private key was written");
}

/// Waits until `openstack <what> show <name>` has status `want` (5 minutes at most: the
/// appliance runs under TCG, maybe beside other guests; any status but
/// a transitional one fails at once).
fn wait_status(app: &Appliance, what: &[&str], name: &str, want: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let args: Vec<&str> = what.iter().copied().chain(["show", name, "-f", "json"]).collect();
        let v: serde_json::Value = serde_json::from_str(&osc(app, &args)).unwrap();
        let status = v["status"].as_str().unwrap_or_default().to_owned();
        if status == want {
            return v;
        }
        assert!(
            ["creating", "extending", "deleting"].contains(&status.as_str()) && std::time::Instant::now() < deadline,
            "{what:?} {name}: {v:#}\n{}",
            app.console()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The node's pools as the volume API reports them: name → capabilities.
fn pools(app: &Appliance) -> serde_json::Map<String, serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_str(&osc(app, &["volume", "backend", "pool", "list", "--long", "-f", "json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["Name"].as_str().unwrap();
            (name.rsplit('#').next().unwrap().to_owned(), p["Capabilities"].clone())
        })
        .collect()
}

#[test]
fn disk_image_with_svm_runs_kvm_and_serves_the_openstack_client() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut boot = Boot::new(Media::Disk(disk_image().unwrap()));
    boot.disk_bytes = Some(4 << 30);
    // This node's storage, given as a credential over the image's config: the default dir pool,
    // an LVM volume group built on a second disk, and the LUNs of an iSCSI target the host runs.
    let target = IscsiTarget::start(256 << 20).unwrap();
    boot.data_disks = vec![8 << 30];
    boot.credentials = vec![(
        "cairn.config".into(),
        format!(
            "[storage]\ndefault_pool = \"default\"\n\
             [storage.pools.default]\ntype = \"dir\"\npath = \"/var/lib/cairn/volumes\"\n\
             [storage.pools.lvm]\ntype = \"logical\"\nvg = \"cairn-test\"\ndevices = [\"/dev/vdb\"]\n\
             [storage.pools.iscsi]\ntype = \"iscsi\"\nhost = \"10.0.2.2\"\nport = {}\niqn = \"{}\"\n",
            target.port, target.iqn
        ),
    )];
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

    // A VLAN network becomes a real VLAN device and bridge on the node, with a dnsmasq for it.
    let net = osc(
        &app,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-segment",
            "100",
            "net1",
            "-f",
            "value",
            "-c",
            "id",
        ],
    );
    let net = net.trim().to_owned();
    osc(&app, &["subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "sub1"]);
    osc(&app, &["port", "create", "--network", "net1", "p1"]);
    let bridge = format!("brq-{}", &net[..11]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let st = admin_get(&app, "/cairn/v1/network")["network"].clone();
        let links = st["links"].as_array().cloned().unwrap_or_default();
        let has_bridge = links.iter().any(|l| l["name"] == bridge.as_str() && l["kind"] == "bridge" && l["up"] == true);
        let vlan = links.iter().find(|l| l["name"].as_str().is_some_and(|n| n.ends_with(".100")));
        let enslaved = vlan.is_some_and(|v| v["master"] == bridge.as_str() && v["up"] == true);
        if has_bridge && enslaved && st["dhcp"].get(&net).is_some() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "network not built within 60 s: {st:#}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(status["problems"].as_array().unwrap().is_empty(), "{status:#}");
    // dnsmasq stays up (a crash loop would show as restarts in the journal on the console).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = &status["dhcp"][&net];
    assert_eq!(&admin_get(&app, "/cairn/v1/network")["network"]["dhcp"][&net], pid, "dnsmasq was restarted");
    assert!(!app.console().contains("exited ("), "dnsmasq died:\n{}", app.console());
    assert!(status["physical_networks"]["physnet1"].as_str().is_some_and(|n| n.starts_with("en")), "{status:#}");

    // A server on the VLAN network: the node builds it (under KVM here, nested in the emulated
    // svm), dnsmasq gives it the port's address over the VLAN's bridge, the guest reaches the DHCP
    // server's namespace on the same VLAN, and its console log shows the boot.
    let guest = cairn_qemu_test::guest::test_guest_image().unwrap();
    osc(&app, &["image", "create", "--file", &guest.to_string_lossy(), "--disk-format", "qcow2", "guest"]);
    let started = std::time::Instant::now();
    let create = ["server", "create", "--flavor", "m1.tiny", "--image", "guest", "--network", "net1", "vm1", "--wait"];
    let vm1: serde_json::Value = serde_json::from_str(&osc(&app, &[&create[..], &["-f", "json"]].concat())).unwrap();
    eprintln!("vm1 ACTIVE in the appliance after {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(vm1["status"], "ACTIVE", "{vm1:#}");
    let shown: serde_json::Value = serde_json::from_str(&osc(&app, &["server", "show", "vm1", "-f", "json"])).unwrap();
    let ip = shown["addresses"]["net1"][0]
        .as_str()
        .or_else(|| shown["addresses"]["net1"][0]["addr"].as_str())
        .unwrap_or_else(|| panic!("{shown:#}"))
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let log = loop {
        let log = osc(&app, &["console", "log", "show", "vm1"]);
        if log.contains("CAIRN-TEST-GUEST ready") {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "vm1 not ready in 10 minutes:\n{log}\n{}", app.console());
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    eprintln!("vm1's guest ready after {:.1} s", started.elapsed().as_secs_f64());
    assert!(log.contains("CAIRN-TEST-GUEST booted"), "{log}");
    assert!(log.contains("CAIRN-TEST-GUEST config-drive hostname: vm1"), "{log}");
    assert!(log.contains(&format!("CAIRN-TEST-GUEST dhcp eth0: {ip}")), "the port's address {ip}:\n{log}");
    assert!(log.lines().any(|l| l.contains("CAIRN-TEST-GUEST ping 10.0.0.") && l.ends_with(": ok")), "{log}");
    osc(&app, &["server", "delete", "--wait", "vm1"]);
    osc(&app, &["port", "delete", "p1"]);
    osc(&app, &["network", "delete", "net1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let st = admin_get(&app, "/cairn/v1/network")["network"].clone();
        if st["links"].as_array().is_some_and(|l| l.is_empty()) && st["dhcp"].as_object().is_some_and(|d| d.is_empty())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "network not removed within 60 s: {st:#}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Images and volumes: the image store on the data partition, a volume from the image in
    // the node's default libvirt pool.
    let img = std::env::temp_dir().join(format!("cairn-appliance-{}.qcow2", std::process::id()));
    assert!(std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&img)
        .arg("32M")
        .status()
        .unwrap()
        .success());
    osc(&app, &["image", "create", "--file", &img.to_string_lossy(), "--disk-format", "qcow2", "img1"]);
    let _ = std::fs::remove_file(&img);
    osc(&app, &["volume", "create", "--image", "img1", "--size", "1", "vol1"]);
    wait_status(&app, &["volume"], "vol1", "available");
    osc(&app, &["volume", "delete", "vol1"]);

    // The pools the credential named: all active, with the sizes of their disks.
    let p = pools(&app);
    assert_eq!(p.keys().map(String::as_str).collect::<Vec<_>>(), ["default", "iscsi", "lvm"], "{p:#?}");
    assert!(p.values().all(|c| c["active"] == true && c["error"].is_null()), "{p:#?}");
    let gib = |c: &serde_json::Value, k: &str| c[k].as_f64().unwrap();
    assert!((7.9..=8.0).contains(&gib(&p["lvm"], "total_capacity_gb")), "the 8 GiB disk: {p:#?}");
    assert_eq!(gib(&p["iscsi"], "total_capacity_gb"), 0.25, "the 256 MiB LUN: {p:#?}");
    assert_eq!(p["iscsi"]["storage_protocol"], "iscsi");
    // An iSCSI pool's volumes are the target's LUNs: nothing to create.
    let (ok, _, err) = osc_try(&app, &["volume", "create", "--type", "iscsi", "--size", "1", "no"]);
    assert!(!ok && err.contains("cannot create volumes"), "{err}");

    // LVM: a logical volume, extended, snapshotted (an LVM snapshot), a volume from the snapshot.
    osc(&app, &["volume", "create", "--type", "lvm", "--size", "1", "lv1"]);
    let lv1 = wait_status(&app, &["volume"], "lv1", "available");
    assert!(lv1["os-vol-host-attr:host"].as_str().is_some_and(|h| h.ends_with("@lvm#lvm")), "{lv1:#}");
    osc(&app, &["volume", "set", "--size", "2", "lv1"]);
    assert_eq!(wait_status(&app, &["volume"], "lv1", "available")["size"], 2);
    osc(&app, &["volume", "snapshot", "create", "--volume", "lv1", "ls1"]);
    wait_status(&app, &["volume", "snapshot"], "ls1", "available");
    let (ok, _, err) = osc_try(&app, &["volume", "delete", "lv1"]);
    assert!(!ok && err.contains("snapshot"), "a volume with a snapshot stays: {err}");
    osc(&app, &["volume", "create", "--snapshot", "ls1", "lv2"]);
    let lv2 = wait_status(&app, &["volume"], "lv2", "available");
    assert_eq!((lv2["size"].as_u64(), lv2["type"].as_str()), (Some(2), Some("lvm")), "{lv2:#}");
    // Three 2 GiB logical volumes (origin, snapshot, copy) in the volume group, as reported.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while gib(&pools(&app)["lvm"], "allocated_capacity_gb") < 6.0 {
        assert!(std::time::Instant::now() < deadline, "allocation not reported: {:#?}", pools(&app));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    osc(&app, &["volume", "snapshot", "delete", "ls1"]);
    osc(&app, &["volume", "delete", "lv2", "lv1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gib(&pools(&app)["lvm"], "allocated_capacity_gb") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "logical volumes left: {:#?}", pools(&app));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(target);
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
