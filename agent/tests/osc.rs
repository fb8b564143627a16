//! Interop: the real python-openstackclient (pinned in tests/data/osc-requirements.txt,
//! installed into a venv by `make test-deps`) against the real agent binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_guest, Agent, Veth, PASSWORD};
use std::path::PathBuf;
use std::process::Command;

fn venv() -> PathBuf {
    let dir = std::env::var_os("CAIRN_OSC_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/cairn/osc-venv")
    });
    let osc = dir.join("bin/openstack");
    assert!(
        osc.exists(),
        "{} is missing: run `make test-deps` (creates the venv with the pinned openstack client) or set CAIRN_OSC_VENV",
        osc.display()
    );
    dir
}

struct Osc {
    bin: PathBuf,
    agent_url: String,
    ca: PathBuf,
}

impl Osc {
    /// Runs `openstack ARGS` as `user` scoped to `project`; returns (success, stdout, stderr).
    fn run_as(&self, user: &str, password: &str, project: &str, args: &[&str]) -> (bool, String, String) {
        let env = [
            ("OS_USERNAME", user),
            ("OS_PASSWORD", password),
            ("OS_PROJECT_NAME", project),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ];
        self.run_env(&env, args)
    }

    /// Runs `openstack ARGS` with only the endpoint and `env` (another way of logging in).
    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("OS_AUTH_URL", &self.agent_url)
            .env("OS_CACERT", &self.ca)
            .env("OS_IDENTITY_API_VERSION", "3")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn admin(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run_as("admin", PASSWORD, "admin", args);
        assert!(ok, "openstack {args:?} failed:\n{err}");
        out
    }

    /// `GET <path>` on the agent with an admin token, through curl.
    fn get(&self, path: &str) -> serde_json::Value {
        let token = self.admin(&["token", "issue", "-f", "value", "-c", "id"]);
        let base = self.agent_url.trim_end_matches("/identity/v3");
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.ca)
            .args(["-H", &format!("X-Auth-Token: {}", token.trim()), &format!("{base}{path}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {path}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        serde_json::from_str(&self.admin(&a)).unwrap()
    }
}

#[test]
fn openstack_client_manages_identity() {
    let bin = venv().join("bin/openstack");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };

    let token = osc.json(&["token", "issue"]);
    assert!(token["id"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(token["expires"].as_str().is_some_and(|e| e.starts_with("20")), "{token}");

    let project = osc.json(&["project", "create", "--description", "team one", "demo"]);
    assert_eq!(project["name"], "demo");
    assert_eq!(project["domain_id"], "default");
    let user = osc.json(&["user", "create", "--password", "alice-pw", "--project", "demo", "alice"]);
    assert_eq!(user["default_project_id"], project["id"]);
    osc.admin(&["role", "add", "--project", "demo", "--user", "alice", "member"]);

    let users = osc.json(&["user", "list"]);
    let names: Vec<&str> = users.as_array().unwrap().iter().filter_map(|u| u["Name"].as_str()).collect();
    assert!(names.contains(&"admin") && names.contains(&"alice"), "{users}");
    let assignments = osc.admin(&["role", "assignment", "list", "--names", "--project", "demo"]);
    assert!(assignments.contains("member") && assignments.contains("alice@Default"), "{assignments}");

    // alice logs in to demo with her role, and may not create projects.
    let (ok, out, err) = osc.run_as("alice", "alice-pw", "demo", &["token", "issue", "-f", "json"]);
    assert!(ok, "{err}");
    let alice: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(alice["project_id"], project["id"]);
    let (ok, _, err) = osc.run_as("alice", "alice-pw", "demo", &["project", "create", "nope"]);
    assert!(!ok && err.contains("403"), "member must be refused: {err}");

    // Domains, groups and application credentials, as Terraform and Ansible use them.
    osc.admin(&["domain", "create", "--description", "the lab", "lab"]);
    osc.admin(&["project", "create", "--domain", "lab", "web"]);
    osc.admin(&["user", "create", "--domain", "lab", "--password", "eve-pw", "eve"]);
    osc.admin(&["group", "create", "--domain", "lab", "ops"]);
    osc.admin(&["group", "add", "user", "--group-domain", "lab", "--user-domain", "lab", "ops", "eve"]);
    osc.admin(&[
        "role",
        "add",
        "--group",
        "ops",
        "--group-domain",
        "lab",
        "--project",
        "web",
        "--project-domain",
        "lab",
        "member",
    ]);
    let eve = [
        ("OS_USERNAME", "eve"),
        ("OS_PASSWORD", "eve-pw"),
        ("OS_USER_DOMAIN_NAME", "lab"),
        ("OS_PROJECT_NAME", "web"),
        ("OS_PROJECT_DOMAIN_NAME", "lab"),
    ];
    let (ok, out, err) = osc.run_env(&eve, &["application", "credential", "create", "-f", "json", "ci"]);
    assert!(ok, "eve holds member on web through her group: {err}");
    let cred: serde_json::Value = serde_json::from_str(&out).unwrap();
    let field = |k: &str| cred[k].as_str().or(cred[k.to_lowercase()].as_str()).map(str::to_owned);
    let (id, secret) = (field("ID").expect("an id"), field("Secret").expect("the secret"));
    let (id, secret) = (id.as_str(), secret.as_str());
    let app = [
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_ID", id),
        ("OS_APPLICATION_CREDENTIAL_SECRET", secret),
    ];
    let (ok, out, err) = osc.run_env(&app, &["token", "issue", "-f", "json"]);
    assert!(ok, "login with the application credential: {err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let web = osc.json(&["project", "show", "--domain", "lab", "web"]);
    assert_eq!(t["project_id"], web["id"]);
    let wrong = [app[0], app[1], ("OS_APPLICATION_CREDENTIAL_SECRET", "wrong")];
    let (ok, _, err) = osc.run_env(&wrong, &["token", "issue"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = osc.run_env(&eve, &["application", "credential", "delete", "ci"]);
    assert!(ok, "{err}");
    let (ok, _, _) = osc.run_env(&app, &["token", "issue"]);
    assert!(!ok, "a deleted credential logs nobody in");
    osc.admin(&["domain", "set", "--disable", "lab"]);
    osc.admin(&["domain", "delete", "lab"]);
    let (ok, _, _) = osc.run_env(&eve, &["token", "issue"]);
    assert!(!ok, "eve went with her domain");

    // A revoked token no longer validates.
    let t = osc.json(&["token", "issue"])["id"].as_str().unwrap().to_owned();
    osc.admin(&["token", "revoke", &t]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut c = agent.conn().await;
        c.request(hyper::Method::GET, "/identity/v3/projects", &[("x-auth-token", &t)], None).await.unwrap().status
    });
    assert_eq!(status, 401);

    // Wrong password and unknown user fail alike, and the failure is logged without the secret.
    let (ok, _, err) = osc.run_as("admin", "wrong-password", "admin", &["token", "issue"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err2) = osc.run_as("nobody", "wrong-password", "admin", &["token", "issue"]);
    assert!(!ok && err2.contains("401"), "{err2}");
    let log = agent.log_text();
    assert!(log.contains("authentication failed for user \"admin\""), "{log}");
    assert!(
        !log.contains("wrong-password") && !log.contains(PASSWORD) && !log.contains(&t),
        "secrets must not be logged"
    );

    // Deleting cascades: alice's assignment goes with the project.
    osc.admin(&["project", "delete", "demo"]);
    let (ok, _, _) = osc.run_as("alice", "alice-pw", "demo", &["token", "issue"]);
    assert!(!ok);
    osc.admin(&["user", "delete", "alice"]);
    let users = osc.admin(&["user", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(users.trim(), "admin");
}

impl Osc {
    /// `method path` on the agent with an admin token at volume microversion 3.`mv`, through
    /// curl: (status, headers, body).
    fn call(
        &self,
        method: &str,
        path: &str,
        mv: u32,
        body: Option<serde_json::Value>,
    ) -> (u16, String, serde_json::Value) {
        self.call_with(method, path, mv, body, &[])
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        mv: u32,
        body: Option<serde_json::Value>,
        headers: &[&str],
    ) -> (u16, String, serde_json::Value) {
        let token = self.admin(&["token", "issue", "-f", "value", "-c", "id"]);
        let base = self.agent_url.trim_end_matches("/identity/v3");
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-i", "-X", method, "--cacert"]).arg(&self.ca);
        cmd.args([
            "-H",
            &format!("X-Auth-Token: {}", token.trim()),
            "-H",
            &format!("OpenStack-API-Version: volume 3.{mv}"),
        ]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        let out = cmd.arg(format!("{base}{path}")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_lowercase(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// Runs a command that must fail; returns its error output.
    fn admin_fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run_as("admin", PASSWORD, "admin", args);
        assert!(!ok, "openstack {args:?} should have failed, printed:\n{out}");
        err
    }
}

#[test]
fn openstack_client_manages_networks() {
    let bin = venv().join("bin/openstack");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };

    // A VLAN provider network and a flat one.
    let net = osc.json(&["network", "create", "--provider-network-type", "vlan", "--provider-segment", "100", "net1"]);
    assert_eq!(net["provider:network_type"], "vlan");
    assert_eq!(net["provider:segmentation_id"], 100);
    assert_eq!(net["provider:physical_network"], "physnet1");
    assert_eq!(net["status"], "ACTIVE");
    let flat = osc.json(&[
        "network",
        "create",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "physnet2",
        "flat1",
    ]);
    assert_eq!(flat["provider:network_type"], "flat");
    assert!(flat["provider:segmentation_id"].is_null());

    // The 409/400 cases, each changing nothing.
    let err =
        osc.admin_fails(&["network", "create", "--provider-network-type", "vlan", "--provider-segment", "100", "dup"]);
    assert!(err.contains("409") && err.contains("VLAN 100"), "{err}");
    for vid in ["0", "4095"] {
        let err = osc.admin_fails(&[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-segment",
            vid,
            "bad",
        ]);
        assert!(err.contains("400"), "VLAN {vid}: {err}");
    }
    let err = osc.admin_fails(&[
        "network",
        "create",
        "--provider-network-type",
        "vlan",
        "--provider-physical-network",
        "nowhere",
        "--provider-segment",
        "5",
        "bad",
    ]);
    assert!(err.contains("400") && err.contains("nowhere"), "{err}");
    let err =
        osc.admin_fails(&["network", "create", "--provider-network-type", "vxlan", "--provider-segment", "5", "bad"]);
    assert!(err.contains("400"), "{err}");
    let err = osc.admin_fails(&[
        "network",
        "create",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "physnet2",
        "flat2",
    ]);
    assert!(err.contains("409"), "a second flat network on physnet2: {err}");
    let names = osc.admin(&["network", "list", "-f", "value", "-c", "Name"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["flat1", "net1"], "refused creates left nothing behind");

    // Subnets and ports with IPAM.
    let sub = osc.json(&["subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "sub1"]);
    assert_eq!(sub["cidr"], "10.0.0.0/24");
    assert_eq!(sub["gateway_ip"], "10.0.0.1");
    assert_eq!(sub["allocation_pools"], serde_json::json!([{"start": "10.0.0.2", "end": "10.0.0.254"}]));
    let err = osc.admin_fails(&["subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.128/25", "over"]);
    assert!(err.contains("400") && err.contains("overlaps"), "{err}");
    let sub6 = osc.json(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--ip-version",
        "6",
        "--subnet-range",
        "fd00:10::/64",
        "sub6",
    ]);
    assert_eq!(sub6["ip_version"], 6);

    let p1 = osc.json(&["port", "create", "--network", "net1", "p1"]);
    let ips: Vec<&str> =
        p1["fixed_ips"].as_array().unwrap().iter().map(|f| f["ip_address"].as_str().unwrap()).collect();
    // .2 and fd00:10::2 went to the network's DHCP port.
    assert_eq!(ips, ["10.0.0.3", "fd00:10::3"], "{p1}");
    assert!(p1["mac_address"].as_str().unwrap().starts_with("fa:16:3e:"));
    let p2 = osc.json(&["port", "create", "--network", "net1", "--fixed-ip", "subnet=sub1,ip-address=10.0.0.50", "p2"]);
    assert_eq!(p2["fixed_ips"][0]["ip_address"], "10.0.0.50");
    let err = osc.admin_fails(&["port", "create", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.50", "taken"]);
    assert!(err.contains("409") && err.contains("already allocated"), "{err}");
    let err = osc.admin_fails(&[
        "port",
        "create",
        "--network",
        "net1",
        "--fixed-ip",
        "subnet=sub1,ip-address=10.9.9.9",
        "out",
    ]);
    assert!(err.contains("409"), "{err}");
    let ports = osc.json(&["port", "list", "--network", "net1"]);
    let owners: Vec<&str> = ports.as_array().unwrap().iter().filter_map(|p| p["Name"].as_str()).collect();
    assert_eq!(ports.as_array().unwrap().len(), 3, "DHCP port, p1, p2: {ports}");
    assert!(owners.contains(&"p1") && owners.contains(&"p2"));
    let dhcp = osc.json(&["port", "list", "--device-owner", "network:dhcp"]);
    assert_eq!(dhcp.as_array().unwrap().len(), 1, "{dhcp}");
    let shown = osc.json(&["network", "show", "net1"]);
    assert_eq!(shown["subnets"].as_array().unwrap().len(), 2);

    // Non-admins: no provider attributes (403); a plain network gets a tenant VLAN.
    osc.admin(&["project", "create", "demo"]);
    osc.admin(&["user", "create", "--password", "bob-pw", "--project", "demo", "bob"]);
    osc.admin(&["role", "add", "--project", "demo", "--user", "bob", "member"]);
    let (ok, _, err) = osc.run_as(
        "bob",
        "bob-pw",
        "demo",
        &["network", "create", "--provider-network-type", "vlan", "--provider-segment", "300", "mine"],
    );
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = osc.run_as("bob", "bob-pw", "demo", &["network", "create", "-f", "json", "bobnet"]);
    assert!(ok, "{err}");
    let bobnet: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(bobnet.get("provider:segmentation_id").is_none_or(|v| v.is_null()), "hidden from non-admins: {bobnet}");
    let seen = osc.json(&["network", "show", "bobnet"]);
    assert_eq!(seen["provider:segmentation_id"], 1000, "the first id of tenant_vlan_range");
    let (ok, out, _) = osc.run_as("bob", "bob-pw", "demo", &["network", "list", "-f", "value", "-c", "Name"]);
    assert!(ok && out.trim() == "bobnet", "bob sees only his network: {out}");
    osc.json(&["network", "create", "auto2"]);
    let err = osc.admin_fails(&["network", "create", "auto3"]);
    assert!(err.contains("503"), "tenant VLAN range exhausted: {err}");

    // In use: the network and subnet stay until their ports go.
    let err = osc.admin_fails(&["network", "delete", "net1"]);
    assert!(err.contains("failed to delete"), "{err}");
    let err = osc.admin_fails(&["subnet", "delete", "sub1"]);
    assert!(err.contains("409") || err.contains("failed"), "{err}");
    osc.admin(&["port", "delete", "p1", "p2"]);
    osc.admin(&["subnet", "delete", "sub6"]);
    osc.admin(&["network", "delete", "net1", "flat1", "bobnet", "auto2"]);
    assert_eq!(osc.admin(&["network", "list", "-f", "value"]).trim(), "");
    assert_eq!(osc.admin(&["subnet", "list", "-f", "value"]).trim(), "");
    assert_eq!(osc.admin(&["port", "list", "-f", "value"]).trim(), "", "the DHCP port went with its network");
    // The VLAN id is free again.
    osc.json(&["network", "create", "--provider-network-type", "vlan", "--provider-segment", "100", "again"]);
}

#[test]
fn openstack_client_manages_images() {
    let bin = venv().join("bin/openstack");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };
    let files = tempfile::tempdir().unwrap();
    let f = |n: &str| files.path().join(n).to_string_lossy().into_owned();
    let qemu_img = |args: &[&str]| assert!(Command::new("qemu-img").args(args).output().unwrap().status.success());
    qemu_img(&["create", "-f", "qcow2", &f("disk.qcow2"), "64M"]);
    std::fs::write(f("disk.raw"), vec![7u8; 1 << 20]).unwrap();
    qemu_img(&["create", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", &f("backed.qcow2"), "16M"]);

    // A qcow2 made by qemu-img and a raw image: active, with Glance's checksums.
    let img = osc.json(&["image", "create", "--file", &f("disk.qcow2"), "--disk-format", "qcow2", "img1"]);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["virtual_size"], 64 << 20);
    let md5 = Command::new("md5sum").arg(f("disk.qcow2")).output().unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout).split_whitespace().next().unwrap().to_owned();
    assert_eq!(img["checksum"], md5.as_str());
    let props = &img["properties"];
    assert_eq!(props["os_hash_algo"], "sha512", "{img}");
    assert_eq!(props["os_hash_value"].as_str().unwrap().len(), 128);
    let raw = osc.json(&["image", "create", "--file", &f("disk.raw"), "--disk-format", "raw", "imgraw"]);
    assert_eq!((raw["status"].as_str(), raw["size"].as_u64()), (Some("active"), Some(1 << 20)));

    // Refused: raw data claiming qcow2, and a qcow2 naming a backing file.
    let err = osc.admin_fails(&["image", "create", "--file", &f("disk.raw"), "--disk-format", "qcow2", "liar"]);
    assert!(err.contains("400") && err.contains("not the declared disk_format"), "{err}");
    let err = osc.admin_fails(&["image", "create", "--file", &f("backed.qcow2"), "--disk-format", "qcow2", "backed"]);
    assert!(err.contains("400") && err.contains("backing file"), "{err}");
    let stored: Vec<String> = std::fs::read_dir(agent.data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored.len(), 2, "refused data was removed: {stored:?}");

    // list, show, save (byte for byte), set, delete.
    let names = osc.admin(&["image", "list", "-f", "value", "-c", "Name"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["img1", "imgraw"]);
    assert_eq!(osc.json(&["image", "show", "img1"])["disk_format"], "qcow2");
    osc.admin(&["image", "save", "--file", &f("out.qcow2"), "img1"]);
    assert_eq!(std::fs::read(f("out.qcow2")).unwrap(), std::fs::read(f("disk.qcow2")).unwrap());
    osc.admin(&["image", "set", "--property", "os_distro=debian", "--min-disk", "2", "img1"]);
    let shown = osc.json(&["image", "show", "img1"]);
    assert_eq!((shown["properties"]["os_distro"].as_str(), shown["min_disk"].as_u64()), (Some("debian"), Some(2)));
    osc.admin(&["image", "set", "--protected", "img1"]);
    let err = osc.admin_fails(&["image", "delete", "img1"]);
    assert!(err.contains("protected") || err.contains("403") || err.contains("Failed"), "{err}");
    osc.admin(&["image", "set", "--unprotected", "img1"]);
    osc.admin(&["image", "delete", "img1", "imgraw"]);
    assert_eq!(osc.admin(&["image", "list", "-f", "value"]).trim(), "");
    assert_eq!(std::fs::read_dir(agent.data.join("images")).unwrap().count(), 0, "no data left behind");
}

/// Polls `volume show` until the volume leaves `creating`/`extending`.
fn settled(osc: &Osc, name: &str) -> serde_json::Value {
    for _ in 0..60 {
        let v = osc.json(&["volume", "show", name]);
        if !["creating", "extending", "deleting"].contains(&v["status"].as_str().unwrap_or_default()) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("volume {name} did not settle");
}

#[test]
fn openstack_client_manages_volumes() {
    common::require_root("openstack_client_manages_volumes (qemu:///system)");
    let bin = venv().join("bin/openstack");
    let dir = tempfile::tempdir().unwrap();
    let pool = format!("osc-{}", std::process::id());
    let pool_dir = dir.path().join("pool");
    // The default pool (qcow2), and dir pools holding raw and vmdk volumes.
    let (raw_pool, vmdk_pool, tiny_pool) = (format!("{pool}-raw"), format!("{pool}-vmdk"), format!("{pool}-tiny"));
    // A pool on an 8 MiB file system, too small for any volume.
    let tiny_dir = dir.path().join("tiny");
    std::fs::create_dir_all(&tiny_dir).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&tiny_dir).status();
    assert!(mounted.unwrap().success(), "mounting a tmpfs for the tiny pool");
    let _unmount = Unmount(tiny_dir.clone());
    let config = common::CONFIG.replace(
        "[storage]\nenabled = false\n",
        &format!(
            "[storage]\nquota_gigabytes = 12\ndefault_pool = \"{pool}\"\n\
             [storage.pools.{pool}]\ntype = \"dir\"\npath = \"{}\"\n\
             [storage.pools.{raw_pool}]\ntype = \"dir\"\npath = \"{}/raw\"\nformat = \"raw\"\n\
             [storage.pools.{vmdk_pool}]\ntype = \"dir\"\npath = \"{}/vmdk\"\nformat = \"vmdk\"\n\
             [storage.pools.{tiny_pool}]\ntype = \"dir\"\npath = \"{}\"\n",
            pool_dir.display(),
            dir.path().display(),
            dir.path().display(),
            tiny_dir.display()
        ),
    );
    let _cleanup = [
        PoolGuard(pool.clone()),
        PoolGuard(raw_pool.clone()),
        PoolGuard(vmdk_pool.clone()),
        PoolGuard(tiny_pool.clone()),
    ];
    let agent = Agent::start_with(&dir.path().join("data"), None, &config);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };
    let image = dir.path().join("disk.qcow2");
    assert!(Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&image)
        .arg("64M")
        .output()
        .unwrap()
        .status
        .success());
    let img = osc.json(&["image", "create", "--file", &image.to_string_lossy(), "--disk-format", "qcow2", "img1"]);
    let img_id = img["id"].as_str().unwrap().to_owned();

    // A volume its pool cannot hold fails, and why is its owner's user message (Cinder 3.3).
    let tiny = osc.json(&["volume", "create", "--size", "1", "--type", &tiny_pool, "tiny"]);
    assert_eq!(settled(&osc, "tiny")["status"], "error");
    fn at33<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--os-volume-api-version", "3.3"][..], args].concat()
    }
    let msgs = osc.json(&at33(&["volume", "message", "list"]));
    let found: Vec<&serde_json::Value> =
        msgs.as_array().unwrap().iter().filter(|m| m["Resource UUID"] == tiny["id"]).collect();
    assert_eq!(found.len(), 1, "{msgs:#}");
    let text = found[0]["User Message"].as_str().unwrap_or_default();
    assert!(text.starts_with("schedule allocate volume:") && text.contains("bytes free"), "{text}");
    let mid = found[0]["ID"].as_str().unwrap().to_owned();
    osc.admin(&at33(&["volume", "message", "delete", &mid]));
    assert!(!osc.admin(&at33(&["volume", "message", "list", "-f", "value"])).contains(&mid));
    osc.admin(&["volume", "delete", "tiny"]);

    let types = osc.admin(&["volume", "type", "list", "-f", "value", "-c", "Name"]);
    let mut types: Vec<&str> = types.lines().collect();
    types.sort();
    assert_eq!(types, [pool.as_str(), &raw_pool, &tiny_pool, &vmdk_pool], "one volume type per pool");
    let v1 = osc.json(&["volume", "create", "--size", "1", "--property", "tier=gold", "vol1"]);
    assert_eq!(v1["size"], 1);
    assert_eq!(settled(&osc, "vol1")["status"], "available");
    // Metadata: set at create, added, removed, filtered on.
    osc.admin(&["volume", "set", "--property", "owner=ops", "vol1"]);
    osc.admin(&["volume", "unset", "--property", "tier", "vol1"]);
    let props = osc.json(&["volume", "show", "vol1"])["properties"].clone();
    assert_eq!(props, serde_json::json!({"owner": "ops"}), "{props}");
    let found = osc.admin(&["volume", "list", "--property", "owner=ops", "-f", "value", "-c", "Name"]);
    assert_eq!(found.trim(), "vol1");
    let none = osc.admin(&["volume", "list", "--property", "owner=dev", "-f", "value", "-c", "Name"]);
    assert_eq!(none.trim(), "");
    // An admin resets a volume's recorded status (os-reset_status), and back.
    osc.admin(&["volume", "set", "--state", "error", "vol1"]);
    assert_eq!(osc.json(&["volume", "show", "vol1"])["status"], "error");
    osc.admin(&["volume", "set", "--state", "available", "vol1"]);
    assert_eq!(osc.json(&["volume", "show", "vol1"])["status"], "available");
    osc.json(&["volume", "create", "--image", "img1", "--size", "2", "vol2"]);
    let v2 = settled(&osc, "vol2");
    assert_eq!((v2["status"].as_str(), v2["bootable"].as_bool()), (Some("available"), Some(true)), "{v2}");
    let file = |v: &serde_json::Value| pool_dir.join(v["id"].as_str().unwrap());
    let info = |p: &std::path::Path| -> serde_json::Value {
        let out = Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(p).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let i2 = info(&file(&v2));
    assert_eq!(i2["format"], "qcow2");
    assert_eq!(i2["virtual-size"], 2u64 << 30);
    assert_eq!(
        i2["backing-filename"],
        agent.data.join("images").join(&img_id).to_string_lossy().as_ref(),
        "an overlay of the image"
    );
    let names = osc.admin(&["volume", "list", "-f", "value", "-c", "Name"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["vol1", "vol2"]);

    // Extend; refusals: a smaller size, an unknown type, over the 12 GiB quota (413).
    osc.admin(&["volume", "set", "--size", "3", "vol1"]);
    let v1 = settled(&osc, "vol1");
    assert_eq!(v1["size"], 3);
    assert_eq!(info(&file(&v1))["virtual-size"], 3u64 << 30);
    osc.json(&["volume", "create", "--source", "vol1", "vol3"]);
    let v3 = settled(&osc, "vol3");
    assert_eq!((v3["status"].as_str(), v3["size"].as_u64()), (Some("available"), Some(3)), "{v3}");
    assert_eq!(info(&file(&v3))["virtual-size"], 3u64 << 30, "a clone of vol1");
    osc.admin(&["volume", "delete", "vol3"]);
    let err = osc.admin_fails(&["volume", "set", "--size", "2", "vol1"]);
    assert!(err.contains("greater") || err.contains("400"), "{err}");
    let err = osc.admin_fails(&["volume", "create", "--size", "1", "--type", "nope", "bad"]);
    assert!(err.contains("404") || err.contains("No volumetype"), "{err}");
    let err = osc.admin_fails(&["volume", "create", "--size", "8", "big"]);
    assert!(err.contains("413"), "5 GiB used of 12: {err}");
    let err = osc.admin_fails(&["image", "delete", "img1"]);
    assert!(err.contains("Failed") || err.contains("409"), "the image backs vol2: {err}");

    // Snapshots of a qcow2 volume are internal: data written after one does not reach a volume
    // made from it.
    let qemu_io = |p: &std::path::Path, cmd: &str| {
        let out = Command::new("qemu-io").args(["-f", "qcow2", "-c", cmd]).arg(p).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && !text.contains("Pattern verification failed"), "qemu-io {cmd}: {text}");
    };
    qemu_io(&file(&v1), "write -P 0xab 0 1M");
    let s1 = osc.json(&["volume", "snapshot", "create", "--volume", "vol1", "snap1"]);
    let s1_id = s1["id"].as_str().unwrap().to_owned();
    let mut snap = serde_json::Value::Null;
    for _ in 0..60 {
        snap = osc.json(&["volume", "snapshot", "show", "snap1"]);
        if snap["status"] != "creating" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!((snap["status"].as_str(), snap["size"].as_u64()), (Some("available"), Some(3)), "{snap}");
    let snaps = Command::new("qemu-img").args(["snapshot", "-U", "-l"]).arg(file(&v1)).output().unwrap();
    assert!(String::from_utf8_lossy(&snaps.stdout).contains(&s1_id), "an internal snapshot of vol1's file");
    qemu_io(&file(&v1), "write -P 0xcd 0 1M");
    let list = osc.admin(&["volume", "snapshot", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(list.trim(), "snap1");
    let err = osc.admin_fails(&["volume", "delete", "vol1"]);
    assert!(err.contains("snapshot") || err.contains("409"), "vol1 has a snapshot: {err}");
    osc.json(&["volume", "create", "--snapshot", "snap1", "vol4"]);
    let v4 = settled(&osc, "vol4");
    assert_eq!((v4["status"].as_str(), v4["snapshot_id"].as_str()), (Some("available"), Some(s1_id.as_str())), "{v4}");
    qemu_io(&file(&v4), "read -P 0xab 0 1M");
    qemu_io(&file(&v1), "read -P 0xcd 0 1M");
    // Reverted to its latest snapshot (3.40), vol1 holds what it held then.
    osc.admin(&["--os-volume-api-version", "3.40", "volume", "revert", "snap1"]);
    assert_eq!(settled(&osc, "vol1")["status"], "available");
    qemu_io(&file(&v1), "read -P 0xab 0 1M");
    osc.admin(&["volume", "snapshot", "set", "--name", "snap1b", "snap1"]);
    osc.admin(&["volume", "snapshot", "delete", "snap1b"]);
    let snaps = Command::new("qemu-img").args(["snapshot", "-U", "-l"]).arg(file(&v1)).output().unwrap();
    assert!(!String::from_utf8_lossy(&snaps.stdout).contains(&s1_id), "the internal snapshot is gone");
    osc.admin(&["volume", "delete", "vol4"]);

    cinder_microversions(&osc, &raw_pool);

    // Attachment bookkeeping as Nova drives it (the CLI has no command for these actions).
    let action = format!(
        "/volume/v3/{}/volumes/{}/action",
        settled(&osc, "vol1")["os-vol-tenant-attr:tenant_id"].as_str().unwrap(),
        v1["id"].as_str().unwrap()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<(u16, String)> = rt.block_on(async {
        let token = agent.admin_token().await;
        let mut c = agent.conn().await;
        let mut out = vec![];
        for body in [
            r#"{"os-reserve": {}}"#,
            r#"{"os-attach": {"instance_uuid": "7c4ffbd8-4c1a-4f6e-9d8e-2f5ad36a4a11", "mountpoint": "/dev/vdb"}}"#,
            r#"{"os-detach": {}}"#,
        ] {
            let r =
                c.request(hyper::Method::POST, &action, &[("x-auth-token", &token)], Some(body.into())).await.unwrap();
            assert_eq!(r.status, 202, "{body}: {}", String::from_utf8_lossy(&r.body));
            let v = osc.json(&["volume", "show", "vol1"]);
            out.push((v["attachments"].as_array().map_or(0, |a| a.len()) as u16, v["status"].as_str().unwrap().into()));
        }
        out
    });
    assert_eq!(
        statuses,
        [(0, "attaching".into()), (1, "in-use".into()), (0, "available".into())],
        "reserve, attach, detach"
    );

    // Every node's pools, with their space, for the admin.
    let pools = osc.json(&["volume", "backend", "pool", "list", "--long"]);
    let p = &pools[0];
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    assert_eq!(p["Name"], format!("{host}@{pool}#{pool}"), "{pools}");
    let caps = &p["Capabilities"];
    assert_eq!(caps["storage_protocol"], "dir", "{pools}");
    assert!(caps["total_capacity_gb"].as_f64().unwrap() > 0.0, "{pools}");
    assert!(caps["free_capacity_gb"].as_f64().unwrap() > 0.0, "{pools}");

    // Flags and the admin's actions, through the client: bootable and read-only, image
    // properties, a snapshot's state reset and forced delete, a cascading delete, a forced one.
    osc.admin(&["volume", "set", "--bootable", "--read-only", "--image-property", "os_distro=debian", "vol1"]);
    let v = osc.json(&["volume", "show", "vol1"]);
    assert_eq!(v["bootable"], true, "{v}");
    assert_eq!(v["properties"]["readonly"], "True", "{v}");
    assert_eq!(v["volume_image_metadata"]["os_distro"], "debian", "{v}");
    osc.admin(&["volume", "set", "--non-bootable", "vol1"]);
    assert_eq!(osc.json(&["volume", "show", "vol1"])["bootable"], false);
    let snapshot_settled = |name: &str| {
        for _ in 0..60 {
            let s = osc.json(&["volume", "snapshot", "show", name]);
            if s["status"] != "creating" {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("snapshot {name} did not settle");
    };
    osc.json(&["volume", "snapshot", "create", "--volume", "vol1", "snapA"]);
    snapshot_settled("snapA");
    osc.admin(&["volume", "snapshot", "set", "--state", "error", "snapA"]);
    assert_eq!(osc.json(&["volume", "snapshot", "show", "snapA"])["status"], "error");
    osc.admin(&["volume", "snapshot", "delete", "--force", "snapA"]);
    osc.json(&["volume", "snapshot", "create", "--volume", "vol2", "snapB"]);
    snapshot_settled("snapB");
    let err = osc.admin_fails(&["volume", "delete", "vol2"]);
    assert!(err.contains("snapshot") || err.contains("400"), "vol2 has a snapshot: {err}");
    osc.admin(&["volume", "delete", "--purge", "vol2"]);
    osc.admin(&["volume", "set", "--state", "attaching", "vol1"]);
    let err = osc.admin_fails(&["volume", "delete", "vol1"]);
    assert!(err.contains("attaching") || err.contains("400"), "{err}");
    osc.admin(&["volume", "delete", "--force", "vol1"]);
    for _ in 0..60 {
        if osc.admin(&["volume", "list", "-f", "value"]).trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(osc.admin(&["volume", "list", "-f", "value"]).trim(), "");
    assert_eq!(std::fs::read_dir(&pool_dir).unwrap().count(), 0, "no volume files left");

    // Raw and vmdk volumes: created, extended (qemu cannot resize vmdk: a clear 400), cloned,
    // snapshotted (a copy in the pool) and restored from the snapshot, in their own format.
    for (ty, fmt) in [(&raw_pool, "raw"), (&vmdk_pool, "vmdk")] {
        let (v, s, c, r) = (format!("v-{fmt}"), format!("s-{fmt}"), format!("c-{fmt}"), format!("r-{fmt}"));
        osc.json(&["volume", "create", "--type", ty, "--size", "1", &v]);
        let vol = settled(&osc, &v);
        assert_eq!(vol["status"], "available", "{vol}");
        let path = dir.path().join(fmt).join(vol["id"].as_str().unwrap());
        assert_eq!(info(&path)["format"], fmt);
        if fmt == "raw" {
            osc.admin(&["volume", "set", "--size", "2", &v]);
            assert_eq!(info(&path)["virtual-size"], 2u64 << 30);
        } else {
            let err = osc.admin_fails(&["volume", "set", "--size", "2", &v]);
            assert!(err.contains("400") || err.contains("resize"), "{err}");
            assert_eq!(settled(&osc, &v)["status"], "available", "a failed extend leaves it usable");
        }
        let size = settled(&osc, &v)["size"].as_u64().unwrap();
        osc.json(&["volume", "create", "--source", &v, &c]);
        osc.json(&["volume", "snapshot", "create", "--volume", &v, &s]);
        for _ in 0..60 {
            if osc.json(&["volume", "snapshot", "show", &s])["status"] != "creating" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        osc.json(&["volume", "create", "--snapshot", &s, &r]);
        for name in [&c, &r] {
            let made = settled(&osc, name);
            assert_eq!((made["status"].as_str(), made["size"].as_u64()), (Some("available"), Some(size)), "{made}");
            let p = dir.path().join(fmt).join(made["id"].as_str().unwrap());
            assert_eq!(info(&p)["format"], fmt, "{name}");
        }
        osc.admin(&["volume", "delete", &c, &r]);
        osc.admin(&["volume", "snapshot", "delete", &s]);
        osc.admin(&["volume", "delete", &v]);
        let left: Vec<_> = std::fs::read_dir(dir.path().join(fmt)).unwrap().collect();
        assert!(left.is_empty(), "{fmt}: files left {left:?}");
    }
    osc.admin(&["image", "delete", "img1"]);
}

/// Agents with a node role manage this machine's network namespace (bridges, VLANs, DHCP): one
/// at a time, or one would remove what another built.
static ROOT_NETNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn openstack_client_manages_flavors_keypairs_and_sees_hypervisors() {
    let _netns = ROOT_NETNS.lock().unwrap_or_else(|e| e.into_inner());
    let bin = venv().join("bin/openstack");
    let dir = tempfile::tempdir().unwrap();
    // A compute node: it reports its inventory (and runs no network agent without networks).
    let config =
        common::CONFIG.replace("roles = []\n", "roles = [\"compute\"]\n[compute]\ncpu_allocation_ratio = 8.0\n");
    let agent = Agent::start_with(&dir.path().join("data"), None, &config);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };

    // The default flavors, and an admin's private flavor with extra specs and access.
    let names = osc.admin(&["flavor", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(names.lines().collect::<Vec<_>>(), ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]);
    let tiny = osc.json(&["flavor", "show", "m1.tiny"]);
    assert_eq!((tiny["vcpus"].as_u64(), tiny["ram"].as_u64(), tiny["disk"].as_u64()), (Some(1), Some(512), Some(1)));
    let f = osc.json(&[
        "flavor",
        "create",
        "--private",
        "--vcpus",
        "2",
        "--ram",
        "256",
        "--disk",
        "1",
        "--property",
        "hw:mem_page_size=2MB",
        "f1",
    ]);
    assert_eq!(f["os-flavor-access:is_public"], false, "{f}");
    osc.admin(&["flavor", "set", "--property", "hw:cpu_policy=dedicated", "f1"]);
    let props = &osc.json(&["flavor", "show", "f1"])["properties"];
    assert_eq!(
        (props["hw:mem_page_size"].as_str(), props["hw:cpu_policy"].as_str()),
        (Some("2MB"), Some("dedicated")),
        "{props}"
    );
    let err = osc.admin_fails(&["flavor", "set", "--property", "hw:cpu_policy=exclusive", "f1"]);
    assert!(err.contains("400") || err.contains("cpu_policy"), "{err}");
    osc.admin(&["flavor", "unset", "--property", "hw:cpu_policy", "f1"]);
    assert!(osc.json(&["flavor", "show", "f1"])["properties"].get("hw:cpu_policy").is_none());
    osc.admin(&["flavor", "set", "--project", "admin", "f1"]);
    let all = osc.admin(&["flavor", "list", "--all", "-f", "value", "-c", "Name"]);
    assert!(all.lines().any(|l| l == "f1"), "{all}");
    let err = osc.admin_fails(&["flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "0", "f1"]);
    assert!(err.contains("409") || err.contains("exists"), "{err}");
    let err = osc.admin_fails(&["flavor", "create", "--vcpus", "0", "--ram", "64", "--disk", "0", "bad"]);
    assert!(err.contains("400") || err.contains("vcpus"), "{err}");
    osc.admin(&["flavor", "delete", "f1"]);
    assert!(!osc.admin(&["flavor", "list", "--all", "-f", "value", "-c", "Name"]).contains("f1"));

    // Keypairs: the client makes the pair and uploads the public key.
    let pk = dir.path().join("k1");
    let k = osc.json(&["keypair", "create", "--private-key", &pk.to_string_lossy(), "k1"]);
    let fp = k["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 47, "{k}");
    assert_eq!(osc.json(&["keypair", "show", "k1"])["fingerprint"], fp.as_str());
    assert_eq!(osc.admin(&["keypair", "list", "-f", "value", "-c", "Name"]).trim(), "k1");
    let err = osc.admin_fails(&["keypair", "create", "--public-key", &pk.to_string_lossy(), "k2"]);
    assert!(err.contains("400") || err.contains("invalid"), "a private key is no public key: {err}");
    osc.admin(&["keypair", "delete", "k1"]);
    assert_eq!(osc.admin(&["keypair", "list", "-f", "value"]).trim(), "");

    // This node as a hypervisor and a compute service, up, in zone nova.
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let hv = osc.admin(&["hypervisor", "list", "-f", "value", "-c", "Hypervisor Hostname"]);
    assert_eq!(hv.trim(), host);
    let show = osc.json(&["hypervisor", "show", &host]);
    assert_eq!(show["hypervisor_type"], "QEMU", "{show}");
    assert_eq!(show["state"], "up");
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(show["vcpus"].as_u64(), Some(cores), "{show}");
    // The node's uptime (from its reported boot time) and the sums over nodes.
    let up = osc.get("/compute/v2.1/os-hypervisors/1/uptime");
    let text = up["hypervisor"]["uptime"].as_str().unwrap_or_default();
    assert!(text.contains(" up ") && text.contains(" days, "), "{up}");
    let stats = osc.get("/compute/v2.1/os-hypervisors/statistics");
    assert_eq!(stats["hypervisor_statistics"]["vcpus"].as_u64(), Some(cores), "{stats}");
    let services = osc.json(&["compute", "service", "list"]);
    let service = |binary: &str| {
        services.as_array().unwrap().iter().find(|s| s["Binary"] == binary).cloned().unwrap_or_else(|| {
            panic!("no {binary} in {services}");
        })
    };
    assert_eq!(service("nova-compute")["State"], "up", "{services}");
    // The control plane runs on every node: conductor and scheduler, in zone internal.
    for binary in ["nova-conductor", "nova-scheduler"] {
        let s = service(binary);
        assert_eq!((s["Host"].as_str(), s["Zone"].as_str()), (Some(host.as_str()), Some("internal")), "{s}");
    }
    let zones = osc.admin(&["availability", "zone", "list", "--compute", "-f", "value", "-c", "Zone Name"]);
    assert_eq!(zones.trim(), "nova");
    let limits = osc.admin(&["limits", "show", "--absolute", "-f", "value"]);
    assert!(limits.lines().any(|l| l == "instances 10"), "Nova's limits: {limits}");
    assert!(limits.lines().any(|l| l.contains("volumes") && l.ends_with(" 10")), "Cinder's limits: {limits}");
}

/// Polls `<kind> show <name>` until its status is `want` (a minute at most).
fn wait_for(osc: &Osc, kind: &str, name: &str, want: &str) -> serde_json::Value {
    for _ in 0..120 {
        let st = osc.json(&[kind, "show", name]);
        if st["status"] == want {
            return st;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("{kind} {name} never became {want}: {}", osc.json(&[kind, "show", name]));
}

/// Nova's diagnostics of a running m1.tiny server booted from an image (`server show
/// --diagnostics`): libvirt's live figures, and each vCPU's time from the kernel.
fn assert_live_diagnostics(d: &serde_json::Value) {
    let hypervisor = if std::path::Path::new("/dev/kvm").exists() { d["hypervisor"].as_str() } else { Some("qemu") };
    assert_eq!(
        (d["state"].as_str(), d["driver"].as_str(), d["hypervisor"].as_str(), d["num_cpus"].as_u64()),
        (Some("running"), Some("libvirt"), hypervisor, Some(1)),
        "{d}"
    );
    assert_eq!(d["memory_details"]["maximum"], 512, "{d}");
    assert!(d["memory_details"]["used"].as_u64().unwrap() > 0, "QEMU's resident memory: {d}");
    let cpus = d["cpu_details"].as_array().unwrap();
    assert!(cpus.len() == 1 && cpus[0]["time"].as_u64().unwrap() > 0, "the booted guest's vCPU ran: {d}");
    let disks = d["disk_details"].as_array().unwrap();
    assert_eq!((disks.len(), d["num_disks"].as_u64()), (2, Some(2)), "root disk and config drive: {d}");
    assert!(disks.iter().all(|k| k["read_bytes"].as_u64().unwrap() > 0), "the guest read both: {d}");
    assert_eq!(d["nic_details"].as_array().map(Vec::len), d["num_nics"].as_u64().map(|n| n as usize), "{d}");
}

/// Polls a server's console log until `f` accepts it (four minutes at most: guests run under TCG).
fn console_until(osc: &Osc, server: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let c = osc.admin(&["console", "log", "show", server]);
        if f(&c) {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "{server}: {what} not seen:\n{c}");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The disks the test guest last said it has.
fn guest_disks(console: &str) -> String {
    console.lines().rev().find_map(|l| l.split("CAIRN-TEST-GUEST disks: ").nth(1)).unwrap_or_default().trim().to_owned()
}

/// What a test booting guests needs: root (else it says why it skips), the lock that runs one
/// such test at a time (agents with node roles share the root network namespace, and two TCG
/// guests on two cores slow each other down), the test guest, and a directory QEMU (running as
/// libvirt's user) can traverse to the instance files below it.
fn guest_test(name: &str) -> (std::sync::MutexGuard<'static, ()>, PathBuf, tempfile::TempDir) {
    common::require_root(name);
    let serial = ROOT_NETNS.lock().unwrap_or_else(|e| e.into_inner());
    let guest = test_guest();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    (serial, guest, dir)
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-c").arg("qemu:///system").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openstack_client_boots_a_server_on_libvirt() {
    let (_serial, guest, dir) = guest_test("openstack_client_boots_a_server_on_libvirt");
    let bin = venv().join("bin/openstack");
    let config = common::CONFIG
        .replace("roles = []\n", "roles = [\"network\", \"compute\"]\n")
        .replace("max_upload_bytes = 8388608", "max_upload_bytes = 67108864");
    // physnet1's uplink: one end of a veth pair; the other end plays the switch port.
    let _uplink = Veth::new("cairn-up0", "cairn-up0p");
    let agent = Agent::start_with(&dir.path().join("data"), None, &config);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };
    osc.json(&["image", "create", "--file", &guest.to_string_lossy(), "--disk-format", "qcow2", "guest"]);
    let key = dir.path().join("k1");
    osc.json(&["keypair", "create", "--private-key", &key.to_string_lossy(), "k1"]);
    let user_data = dir.path().join("user-data");
    std::fs::write(&user_data, "hello from the test\n").unwrap();

    let started = std::time::Instant::now();
    let ud = user_data.to_string_lossy().into_owned();
    let create =
        ["server", "create", "--flavor", "m1.tiny", "--image", "guest", "--key-name", "k1", "--user-data", &ud];
    let made = osc.json(&[&create[..], &["--nic", "none", "vm1"]].concat());
    let admin_pass = made["adminPass"].as_str().unwrap_or_default().to_owned();
    assert_eq!(admin_pass.len(), 12, "Nova's generated admin password: {made}");
    let s = loop {
        let s = osc.json(&["server", "show", "vm1"]);
        if s["status"] != "BUILD" {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!("vm1 ACTIVE after {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let domain = format!("cairn-{id}");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "running");
    assert_eq!(s["OS-EXT-SRV-ATTR:instance_name"], domain.as_str());
    // The node and the project account for it.
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let hv = osc.json(&["hypervisor", "show", &host]);
    assert_eq!(
        (hv["vcpus_used"].as_u64(), hv["memory_mb_used"].as_u64(), hv["running_vms"].as_u64()),
        (Some(1), Some(512), Some(1)),
        "{hv}"
    );
    let limits = osc.admin(&["limits", "show", "--absolute", "-f", "value"]);
    assert!(
        limits.lines().any(|l| l == "total_instances_used 1") && limits.lines().any(|l| l == "total_cores_used 1"),
        "{limits}"
    );
    let xml = virsh(&["dumpxml", &domain]);
    assert!(xml.contains("<serial type='file'>") && xml.contains("config.iso"), "{xml}");
    // The config drive gives the guest its admin password, as Nova's does (the ISO stores files
    // uncompressed); the API never shows it again.
    let iso = std::fs::read(agent.data.join("instances").join(&id).join("config.iso")).unwrap();
    let needle = format!("\"admin_pass\":\"{admin_pass}\"");
    assert!(iso.windows(needle.len()).any(|w| w == needle.as_bytes()), "admin_pass not in the config drive");
    assert!(!osc.admin(&["server", "show", "-f", "json", "vm1"]).contains(&admin_pass));

    // The guest boots and reads its config drive: the console log says so.
    let console = console_until(&osc, "vm1", "ready", |c| c.contains("CAIRN-TEST-GUEST ready"));
    eprintln!("guest ready after {:.1} s", started.elapsed().as_secs_f64());
    assert!(console.contains("CAIRN-TEST-GUEST config-drive hostname: vm1"), "{console}");
    assert!(console.contains("CAIRN-TEST-GUEST config-drive key: ssh-ed25519"), "{console}");
    assert!(console.contains("CAIRN-TEST-GUEST config-drive user-data: hello from the test"), "{console}");
    let tail = osc.admin(&["console", "log", "show", "--lines", "1", "vm1"]);
    assert_eq!(tail.trim().lines().count(), 1, "{tail}");
    assert_live_diagnostics(&osc.json(&["server", "show", "--diagnostics", "vm1"]));

    // Stop, start, hard reboot: the domain follows.
    let wait_status = |want: &str| wait_for(&osc, "server", "vm1", want);
    osc.admin(&["server", "stop", "vm1"]);
    wait_status("SHUTOFF");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "shut off");
    let err = osc.admin_fails(&["server", "show", "--diagnostics", "vm1"]);
    assert!(err.contains("while it is in power_state shutdown"), "no diagnostics of a stopped server (409): {err}");
    osc.admin(&["server", "start", "vm1"]);
    wait_status("ACTIVE");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "running");
    osc.admin(&["server", "reboot", "--hard", "vm1"]);
    wait_status("ACTIVE");
    // A guest that powers off by itself is noticed (the periodic sync).
    virsh(&["destroy", &domain]);
    wait_status("SHUTOFF");
    let err = osc.admin_fails(&["server", "stop", "vm1"]);
    assert!(err.contains("409") || err.contains("Cannot"), "{err}");

    // More RAM than the node has (within the project's 50 GiB quota), or an image for another
    // architecture: ERROR with Nova's fault. (More RAM than the quota is a 403 first.)
    osc.json(&["flavor", "create", "--vcpus", "1", "--ram", "60000", "--disk", "1", "ram"]);
    let node_ram = hv["memory_mb"].as_u64().unwrap() + 1024;
    let no_host = |flavor: &str, image: &str, name: &str, why: &str| {
        let s = osc.json(&["server", "create", "--flavor", flavor, "--image", image, "--nic", "none", name]);
        let s = osc.json(&["server", "show", s["id"].as_str().unwrap()]);
        assert_eq!(s["status"], "ERROR", "{s}");
        let fault = s["fault"]["message"].as_str().unwrap();
        assert!(fault.starts_with("No valid host was found") && fault.contains(why), "{s}");
        osc.admin(&["server", "delete", "--wait", name]);
    };
    if node_ram + 512 <= 51200 {
        osc.json(&["flavor", "create", "--vcpus", "1", "--ram", &node_ram.to_string(), "--disk", "1", "big"]);
        no_host("big", "guest", "big", "memory_mb");
    } else {
        eprintln!("SKIP the no-valid-host RAM case: the node's {node_ram} MiB exceed the 50 GiB quota");
    }
    let g = guest.to_string_lossy();
    osc.json(&["image", "create", "--file", &g, "--disk-format", "qcow2", "--property", "architecture=aarch64", "arm"]);
    no_host("m1.tiny", "arm", "armvm", "architecture");
    let ram = osc.admin_fails(&["server", "create", "--flavor", "ram", "--image", "guest", "--nic", "none", "fat"]);
    assert!(ram.contains("403") && ram.contains("Quota exceeded for ram"), "{ram}");
    let listed = osc.admin(&["server", "list", "-f", "value", "-c", "Name", "--name", "^vm"]);
    assert_eq!(listed.trim(), "vm1");

    // Delete: no domain, no instance files left.
    osc.admin(&["server", "delete", "--wait", "vm1"]);
    assert!(!virsh(&["list", "--all", "--name"]).contains(&domain), "domain left");
    assert!(!agent.data.join("instances").join(&id).exists(), "instance files left");
    assert_eq!(osc.admin(&["server", "list", "-f", "value"]).trim(), "");

    // On a flat network: the guest gets its port's address by DHCP, and the other end of the
    // uplink reaches it.
    osc.json(&[
        "network",
        "create",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "physnet1",
        "net1",
    ]);
    osc.json(&["subnet", "create", "--network", "net1", "--subnet-range", "10.99.0.0/24", "sub1"]);
    osc.json(&[&create[..], &["--network", "net1", "vm2"]].concat());
    let s2 = loop {
        let s = osc.json(&["server", "show", "vm2"]);
        if s["status"] != "BUILD" {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(s2["status"], "ACTIVE", "{s2}");
    let ip = s2["addresses"]["net1"][0].as_str().map(str::to_owned).unwrap_or_else(|| {
        // Older clients print {"net1": ["10.99.0.x"]}; newer ones the address objects.
        s2["addresses"]["net1"][0]["addr"].as_str().unwrap_or_else(|| panic!("{s2}")).to_owned()
    });
    let console = console_until(&osc, "vm2", "ready", |c| c.contains("CAIRN-TEST-GUEST ready"));
    assert!(console.contains(&format!("CAIRN-TEST-GUEST dhcp eth0: {ip}")), "the port's address {ip}:\n{console}");
    assert!(
        console.lines().any(|l| l.contains("CAIRN-TEST-GUEST ping 10.99.0.") && l.ends_with(": ok")),
        "the guest reaches the network's DHCP server:\n{console}"
    );
    let ip_cmd = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip_cmd(&["addr", "add", "10.99.0.250/24", "dev", "cairn-up0p"]));
    let pinged = (0..10).any(|_| {
        Command::new("busybox")
            .args(["ping", "-c", "1", "-W", "2", &ip])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    assert!(pinged, "{ip} does not answer from the uplink's far end");
    let port_id = osc.admin(&["port", "list", "--server", "vm2", "-f", "value", "-c", "ID"]);
    assert_eq!(port_id.trim().lines().count(), 1, "one port for vm2: {port_id}");
    osc.admin(&["server", "delete", "--wait", "vm2"]);
    assert_eq!(
        osc.admin(&["port", "list", "--device-owner", "compute:nova", "-f", "value"]).trim(),
        "",
        "its port went too"
    );
    // No networks named (the client asks for `auto` from 2.37): the project's one network; with a
    // second one the choice is ambiguous (409).
    osc.json(&["server", "create", "--flavor", "m1.tiny", "--image", "guest", "vm3"]);
    let vm3 = wait_for(&osc, "server", "vm3", "ACTIVE");
    assert!(vm3["addresses"].to_string().contains("10.99.0."), "{vm3}");
    osc.admin(&["server", "delete", "--wait", "vm3"]);
    osc.json(&["network", "create", "net2"]);
    let err = osc.admin_fails(&["server", "create", "--flavor", "m1.tiny", "--image", "guest", "vm4"]);
    assert!(err.contains("Multiple possible networks"), "{err}");
    osc.admin(&["network", "delete", "net2"]);
    osc.admin(&["network", "delete", "net1"]);
}

/// Two nodes: an API-only first node, which takes the image upload, and a compute node that
/// joined it. The scheduler places the server on the compute node, whose reconciler fetches the
/// image from the first node and builds it; the first node's API shows it and reads its
/// console and diagnostics over the peer port (node calls).
#[test]
fn a_server_on_another_node_is_served_through_any_node() {
    let (_serial, guest, dir) = guest_test("a_server_on_another_node_is_served_through_any_node");
    let bin = venv().join("bin/openstack");
    let base = common::CONFIG.replace("max_upload_bytes = 8388608", "max_upload_bytes = 67108864");
    let ctl = Agent::start_with(&dir.path().join("ctl"), None, &format!("node_name = \"ctl\"\n{base}"));
    let cfg = base.replace("roles = []\n", "roles = [\"compute\"]\n");
    let _uplink = Veth::new("cairn-up0", "cairn-up0p");
    let osc_ctl = Osc { bin: bin.clone(), agent_url: ctl.url(), ca: ctl.ca_path() };
    let token = ctl.join_token("15m");
    let cmp_addr = format!("127.0.0.2:{}", common::free_port()).parse().unwrap();
    let cmp = Agent::start_in(
        None,
        &dir.path().join("cmp"),
        Some(cmp_addr),
        None,
        &["--join", &token],
        &format!("node_name = \"cmp\"\n{cfg}"),
    );
    let osc_cmp = Osc { bin, agent_url: cmp.url(), ca: cmp.ca_path() };
    // The image's bytes go to the API-only node; the compute node fetches them when it builds.
    osc_ctl.json(&["image", "create", "--file", &guest.to_string_lossy(), "--disk-format", "qcow2", "guest"]);
    let hv = (0..60)
        .find_map(|_| {
            let list = osc_ctl.admin(&["hypervisor", "list", "-f", "value", "-c", "Hypervisor Hostname"]);
            if list.contains("cmp") {
                return Some(list);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            None
        })
        .expect("the compute node's hypervisor is listed through the first node");
    assert!(!hv.contains("ctl"), "the API-only node offers no hypervisor: {hv}");
    osc_ctl.json(&["server", "create", "--flavor", "m1.tiny", "--image", "guest", "--nic", "none", "far"]);
    let s = wait_for(&osc_ctl, "server", "far", "ACTIVE");
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "cmp", "{s}");
    let console = console_until(&osc_ctl, "far", "ready", |c| c.contains("CAIRN-TEST-GUEST ready"));
    assert!(console.contains("CAIRN-TEST-GUEST config-drive hostname: far"), "{console}");
    assert_live_diagnostics(&osc_ctl.json(&["server", "show", "--diagnostics", "far"]));
    assert!(cmp.log_text().contains("fetched from node ctl"), "the compute node fetched the image from ctl");
    // Its copy, downloaded through it, is the uploaded file.
    let saved = dir.path().join("saved.qcow2");
    osc_cmp.admin(&["image", "save", "--file", &saved.to_string_lossy(), "guest"]);
    assert!(std::fs::read(&saved).unwrap() == std::fs::read(&guest).unwrap(), "the fetched copy differs");
    osc_ctl.admin(&["server", "delete", "--wait", "far"]);
    let id = s["id"].as_str().unwrap();
    assert!(!virsh(&["list", "--all", "--name"]).contains(id), "domain left");
    drop(cmp);
}

#[test]
fn openstack_client_boots_from_a_volume_and_attaches_volumes() {
    let (_serial, guest, dir) = guest_test("openstack_client_boots_from_a_volume_and_attaches_volumes");
    let bin = venv().join("bin/openstack");
    let pool = format!("osc-bfv-{}", std::process::id());
    let config = common::CONFIG
        .replace("roles = []\n", "roles = [\"compute\"]\n")
        .replace("max_upload_bytes = 8388608", "max_upload_bytes = 67108864")
        .replace(
            "[storage]\nenabled = false\n",
            &format!(
                "[storage]\ndefault_pool = \"{pool}\"\n[storage.pools.{pool}]\ntype = \"dir\"\npath = \"{}\"\n",
                dir.path().join("pool").display()
            ),
        );
    let _cleanup = PoolGuard(pool);
    let agent = Agent::start_with(&dir.path().join("data"), None, &config);
    let osc = Osc { bin, agent_url: agent.url(), ca: agent.ca_path() };
    osc.json(&["image", "create", "--file", &guest.to_string_lossy(), "--disk-format", "qcow2", "guest"]);
    osc.json(&["volume", "create", "--image", "guest", "--size", "1", "bootvol"]);
    osc.json(&["volume", "create", "--size", "1", "data1"]);
    assert_eq!(settled(&osc, "bootvol")["status"], "available");
    assert_eq!(settled(&osc, "data1")["status"], "available");

    // Boot from the volume: it is the guest's root disk, in use while the server lives.
    osc.json(&["server", "create", "--flavor", "m1.tiny", "--volume", "bootvol", "--nic", "none", "bfv"]);
    let s = wait_for(&osc, "server", "bfv", "ACTIVE");
    let id = s["id"].as_str().unwrap().to_owned();
    let domain = format!("cairn-{id}");
    let bootvol = osc.json(&["volume", "show", "bootvol"]);
    assert_eq!(bootvol["status"], "in-use", "{bootvol}");
    assert!(s["volumes_attached"].to_string().contains(bootvol["id"].as_str().unwrap()), "{s}");
    let blk = virsh(&["domblklist", &domain]);
    assert!(blk.lines().any(|l| l.starts_with(" vda") && l.contains("/pool/")), "the root disk is the volume: {blk}");
    let console = console_until(&osc, "bfv", "the disk list", |c| !guest_disks(c).is_empty());
    assert!(console.contains("CAIRN-TEST-GUEST config-drive hostname: bfv"), "{console}");
    assert_eq!(guest_disks(&console), "vda vdb");

    // Attach: the guest sees the new disk; the volume is in use and cannot be deleted.
    osc.admin(&["server", "add", "volume", "bfv", "data1"]);
    let data1 = wait_for(&osc, "volume", "data1", "in-use");
    assert!(data1["attachments"].to_string().contains(&id), "{data1}");
    assert!(virsh(&["domblklist", &domain]).lines().any(|l| l.starts_with(" vdc")));
    console_until(&osc, "bfv", "vdc plugged in", |c| guest_disks(c) == "vda vdb vdc");
    let err = osc.admin_fails(&["volume", "delete", "data1"]);
    assert!(err.contains("400") || err.contains("in-use"), "{err}");
    // The root volume stays; the attached one goes, and the guest lets go of it.
    let err = osc.admin_fails(&["server", "remove", "volume", "bfv", "bootvol"]);
    assert!(err.contains("root device"), "{err}");
    osc.admin(&["server", "remove", "volume", "bfv", "data1"]);
    wait_for(&osc, "volume", "data1", "available");
    assert!(!virsh(&["domblklist", &domain]).lines().any(|l| l.starts_with(" vdc")));
    console_until(&osc, "bfv", "vdc unplugged", |c| guest_disks(c) == "vda vdb");

    // Pause and unpause; suspend (memory saved to disk, the domain stopped) and resume.
    osc.admin(&["server", "pause", "bfv"]);
    wait_for(&osc, "server", "bfv", "PAUSED");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "paused");
    osc.admin(&["server", "unpause", "bfv"]);
    wait_for(&osc, "server", "bfv", "ACTIVE");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "running");
    osc.admin(&["server", "suspend", "bfv"]);
    wait_for(&osc, "server", "bfv", "SUSPENDED");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "shut off");
    assert!(virsh(&["dominfo", &domain]).lines().any(|l| l.starts_with("Managed save:") && l.ends_with("yes")));
    let err = osc.admin_fails(&["server", "pause", "bfv"]);
    assert!(err.contains("409") || err.contains("Cannot"), "{err}");
    osc.admin(&["server", "resume", "bfv"]);
    wait_for(&osc, "server", "bfv", "ACTIVE");
    assert_eq!(virsh(&["domstate", &domain]).trim(), "running");
    // The restored guest carries on where it was: a disk plugged in now shows up.
    osc.admin(&["server", "add", "volume", "bfv", "data1"]);
    wait_for(&osc, "volume", "data1", "in-use");
    console_until(&osc, "bfv", "vdc after resume", |c| guest_disks(c) == "vda vdb vdc");

    // Rename; two servers in one request.
    osc.admin(&["server", "set", "--name", "bfv2", "bfv"]);
    assert_eq!(osc.json(&["server", "show", &id])["name"], "bfv2");
    // More than the quota's 10 instances at once: refused whole, nothing made.
    let err = osc.admin_fails(&[
        "server", "create", "--flavor", "m1.tiny", "--image", "guest", "--nic", "none", "--min", "11", "--max", "11",
        "toomany",
    ]);
    assert!(err.contains("403") && err.contains("Quota exceeded for instances"), "{err}");
    assert_eq!(osc.admin(&["server", "list", "-f", "value", "-c", "Name", "--name", "^toomany"]).trim(), "");
    osc.json(&[
        "server", "create", "--flavor", "m1.tiny", "--image", "guest", "--nic", "none", "--min", "2", "--max", "2",
        "many",
    ]);
    let names = osc.admin(&["server", "list", "-f", "value", "-c", "Name", "--name", "^many"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["many-1", "many-2"]);
    for n in ["many-1", "many-2"] {
        wait_for(&osc, "server", n, "ACTIVE");
        osc.admin(&["server", "delete", "--wait", n]);
    }

    // Deleting the server frees both volumes.
    osc.admin(&["server", "delete", "--wait", "bfv2"]);
    assert!(!virsh(&["list", "--all", "--name"]).contains(&domain), "domain left");
    assert_eq!(osc.json(&["volume", "show", "bootvol"])["status"], "available");
    assert_eq!(osc.json(&["volume", "show", "data1"])["status"], "available");
    osc.admin(&["volume", "delete", "bootvol", "data1"]);

    // Every step went out as a notification, in order, numbered.
    let all = osc.get("/cairn/v1/events?after=0");
    let events = all["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(all["next"].as_u64(), seqs.last().copied());
    let of_bfv: Vec<&str> = events
        .iter()
        .filter(|e| e["payload"]["instance_id"] == id.as_str())
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    let want = [
        "create.start",
        "create.end",
        "volume_attach.start",
        "volume_attach.end",
        "volume_detach.start",
        "volume_detach.end",
        "pause.start",
        "pause.end",
        "unpause.start",
        "unpause.end",
        "suspend.start",
        "suspend.end",
        "resume.start",
        "resume.end",
        "volume_attach.start",
        "volume_attach.end",
        "update",
        "delete.start",
        "delete.end",
    ]
    .map(|w| format!("compute.instance.{w}"));
    assert_eq!(of_bfv, want, "bfv's notifications");
    let last = events.last().unwrap();
    assert_eq!(
        (last["payload"]["state"].as_str(), last["payload"]["display_name"].as_str()),
        (Some("deleted"), Some("bfv2"))
    );
    // A reader at the end waits for more, and gets none.
    let next = all["next"].as_u64().unwrap();
    let waited = osc.get(&format!("/cairn/v1/events?after={next}&wait=1"));
    assert_eq!((waited["events"].as_array().map(Vec::len), waited["next"].as_u64()), (Some(0), Some(next)));
}

/// Removes the libvirt pool a test's agent defined, whatever happened.
struct PoolGuard(String);

/// Unmounts a file system the test mounted.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        use cairn_agent::sys::libvirt::Libvirt;
        if let Ok(lv) = cairn_agent::sys::libvirt::Virt::connect("qemu:///system") {
            let _ = lv.destroy_pool(&self.0);
            let _ = lv.undefine_pool(&self.0);
        }
    }
}

/// Cinder's microversions past 3.0 on the volumes the caller has (vol1 among them), through
/// the API: negotiation, summary, counts, filters, the metadata ETag, attachments, default
/// types.
fn cinder_microversions(osc: &Osc, raw_pool: &str) {
    let (s, _, v) = osc.call("GET", "/volume/v3", 0, None);
    assert_eq!((s, v["versions"][0]["version"].as_str()), (200, Some("3.65")), "{v}");
    let project = osc.admin(&["token", "issue", "-f", "value", "-c", "project_id"]).trim().to_owned();
    let p = format!("/volume/v3/{project}");
    assert_eq!(osc.call("GET", &format!("{p}/volumes"), 66, None).0, 406);
    let (s, _, sum) = osc.call("GET", &format!("{p}/volumes/summary"), 36, None);
    assert_eq!(s, 200, "{sum}");
    assert!(
        sum["volume-summary"]["total_count"].as_u64() >= Some(1) && sum["volume-summary"]["metadata"].is_object(),
        "{sum}"
    );
    assert_eq!(osc.call("GET", &format!("{p}/volumes/summary"), 11, None).0, 404, "no summary before 3.12");
    let (_, _, l) = osc.call("GET", &format!("{p}/volumes?with_count=true&name~=VOL1"), 45, None);
    assert_eq!((l["count"].as_u64(), l["volumes"][0]["name"].as_str()), (Some(1), Some("vol1")), "{l}");
    assert_eq!(osc.call("GET", &format!("{p}/volumes?bogus=1"), 31, None).0, 400, "unknown filters from 3.31");
    assert_eq!(osc.call("GET", &format!("{p}/volumes?bogus=1"), 30, None).0, 200);
    let (_, _, l) = osc.call("GET", &format!("{p}/volumes?created_at=lt:2000-01-01T00:00:00"), 60, None);
    assert_eq!(l["volumes"].as_array().map(Vec::len), Some(0), "{l}");
    let (_, _, l) = osc.call("GET", &format!("{p}/volumes/detail?created_at=gt:2000-01-01T00:00:00"), 65, None);
    let vol1 = l["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "vol1").cloned().unwrap();
    assert_eq!(
        (vol1["consumes_quota"].clone(), vol1["shared_targets"].clone()),
        (serde_json::json!(true), serde_json::json!(false)),
        "{vol1}"
    );
    let vid = vol1["id"].as_str().unwrap().to_owned();

    // The metadata's ETag (3.15): a replace on a stale one is refused.
    let meta = format!("{p}/volumes/{vid}/metadata");
    let (_, head, _) = osc.call("GET", &meta, 15, None);
    let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).unwrap().trim().to_owned();
    let stale = ["If-Match: 00000000000000000000000000000000"];
    let put = serde_json::json!({"metadata": {"k": "v"}});
    assert_eq!(osc.call_with("PUT", &meta, 15, Some(put.clone()), &stale).0, 412);
    let fresh = format!("If-Match: {etag}");
    assert_eq!(osc.call_with("PUT", &meta, 15, Some(put), &[fresh.as_str()]).0, 200);

    // Attachments (3.27, 3.44): reserved, connected on the volume's node, completed, deleted.
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    osc.json(&["volume", "create", "--size", "1", "att"]);
    let att_vol = settled(osc, "att")["id"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"attachment": {"volume_uuid": att_vol, "instance_uuid": "6f2c1d3e-0000-4000-8000-00000000000f"}});
    let (s, _, a) = osc.call("POST", &format!("{p}/attachments"), 27, Some(body));
    assert_eq!((s, a["attachment"]["status"].as_str()), (202, Some("reserved")), "{a}");
    let aid = a["attachment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(osc, "att")["status"], "reserved");
    let conn = |h: &str| serde_json::json!({"attachment": {"connector": {"host": h, "mode": "rw"}}});
    assert_eq!(osc.call("PUT", &format!("{p}/attachments/{aid}"), 54, Some(conn("elsewhere"))).0, 400);
    let (s, _, a) = osc.call("PUT", &format!("{p}/attachments/{aid}"), 54, Some(conn(&host)));
    let path = a["attachment"]["connection_info"]["data"]["device_path"].as_str().unwrap_or_default().to_owned();
    assert!(s == 200 && std::path::Path::new(&path).exists(), "{a}");
    let done = serde_json::json!({"os-complete": null});
    assert_eq!(osc.call("POST", &format!("{p}/attachments/{aid}/action"), 44, Some(done)).0, 204);
    assert_eq!(settled(osc, "att")["status"], "in-use");
    let (_, _, l) = osc.call("GET", &format!("{p}/attachments?volume_id={att_vol}"), 27, None);
    assert_eq!(l["attachments"][0]["status"], "attached", "{l}");
    assert_eq!(osc.call("DELETE", &format!("{p}/attachments/{aid}"), 27, None).0, 200);
    assert_eq!(settled(osc, "att")["status"], "available");
    osc.admin(&["volume", "delete", "att"]);

    // A project's default type (3.62) is what its new volumes get.
    let set = serde_json::json!({"default_type": {"volume_type": raw_pool}});
    let (s, _, d) = osc.call("PUT", &format!("/volume/v3/default-types/{project}"), 62, Some(set));
    assert_eq!((s, d["default_type"]["volume_type_id"].as_str()), (200, Some(raw_pool)), "{d}");
    let typed = osc.json(&["volume", "create", "--size", "1", "typed"]);
    assert_eq!(typed["type"], raw_pool, "{typed}");
    settled(osc, "typed");
    osc.admin(&["volume", "delete", "typed"]);
    assert_eq!(osc.call("DELETE", &format!("/volume/v3/default-types/{project}"), 62, None).0, 204);
    assert_eq!(osc.call("GET", &format!("/volume/v3/default-types/{project}"), 62, None).0, 404);
}
