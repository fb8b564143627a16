//! OpenStack's own Tempest (pinned in tests/data/tempest/requirements.txt, installed into a venv
//! by `make test-deps`) against a lone agent with a compute role on the real libvirtd: a flat
//! provider network on a veth pair, the test guest uploaded twice, a second flavor. The
//! selection is every test of `tempest.api.{identity,compute,image,network,volume}` less those
//! in tests/data/tempest/skip.txt (one line each, with its reason). Prints `N passed, F failed,
//! S skipped` and fails on any failure. Needs root (qemu:///system, the veth pair) and fails,
//! never skips, without it.
//!
//! `CAIRN_TEMPEST_REGEX` narrows the selection (e.g. `tempest.api.image`) when working on one
//! service; `CAIRN_TEMPEST_KEEP=DIR` keeps the workspace (`DIR/tempest`: tempest.log, the subunit
//! stream) and the agent's data and log (`DIR/data`, `DIR/data.log`) there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_guest, Agent, Veth, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The services whose API suites run.
const SELECTION: &str = r"^tempest\.api\.(identity|compute|image|network|volume)\.";

fn venv(var: &str, default: &str, bin: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/cairn").join(default)
    });
    assert!(dir.join("bin").join(bin).exists(), "{} is missing: run `make test-deps` or set {var}", dir.display());
    dir
}

/// `openstack ARGS -f value -c id` as the admin: the new resource's id.
fn osc_id(agent: &Agent, args: &[&str]) -> String {
    let osc = venv("CAIRN_OSC_VENV", "osc-venv", "openstack").join("bin/openstack");
    let out = Command::new(osc)
        .args(args)
        .args(["-f", "value", "-c", "id"])
        .env("OS_AUTH_URL", agent.url())
        .env("OS_CACERT", agent.ca_path())
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", PASSWORD)
        .env("OS_PROJECT_NAME", "admin")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IDENTITY_API_VERSION", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "openstack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A libvirt storage pool removed (stopped and undefined) when dropped.
struct PoolGuard(String);

impl PoolGuard {
    fn new(name: String) -> Self {
        let guard = PoolGuard(name);
        guard.remove();
        guard
    }

    fn remove(&self) {
        for verb in ["pool-destroy", "pool-undefine"] {
            let _ = Command::new("virsh").args(["-c", "qemu:///system", verb, &self.0]).output();
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The skip file without its reasons: one test id (a regular expression, as stestr takes it)
/// a line. Every line must give a reason after ` # `.
fn exclude_list(dir: &Path) -> PathBuf {
    let text = include_str!("data/tempest/skip.txt");
    let mut ids = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (id, reason) = line.split_once(" # ").unwrap_or((line, ""));
        assert!(!reason.trim().is_empty(), "skip.txt: {id} has no reason");
        ids.push_str(id.trim());
        ids.push('\n');
    }
    let path = dir.join("exclude.txt");
    std::fs::write(&path, ids).unwrap();
    path
}

/// Tempest's `Totals` block: (passed, failed, skipped).
fn totals(out: &str) -> (u64, u64, u64) {
    let count = |label: &str| {
        out.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(&format!("- {label}: ")).and_then(|n| n.trim().parse::<u64>().ok()))
            .unwrap_or_else(|| panic!("no {label} count in Tempest's output:\n{out}"))
    };
    (count("Passed"), count("Failed") + count("Unexpected Success"), count("Skipped"))
}

#[test]
#[ignore = "takes ~7 minutes: `make test` runs it after the other tests, `make tempest` alone"]
fn tempest_api_suites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tempest_api_suites needs root (qemu:///system, a veth pair); CI runs it as root"
    );
    let tempest = venv("CAIRN_TEMPEST_VENV", "tempest-venv", "tempest").join("bin/tempest");
    let guest = test_guest();
    let dir = tempfile::tempdir().unwrap();
    // With CAIRN_TEMPEST_KEEP the agent's data and log stay there too (data.log: its log).
    let keep = std::env::var_os("CAIRN_TEMPEST_KEEP").map(PathBuf::from);
    let root = keep.unwrap_or_else(|| dir.path().to_owned());
    let _ = std::fs::remove_dir_all(root.join("data"));
    for f in ["data.log", "workspace.yaml"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let _uplink = Veth::new("cairn-tp0", "cairn-tp0p");
    // The volume pool has a name of this run's own, removed from libvirt afterwards (a pool
    // another run left defined at another path would be refused).
    let pool = PoolGuard::new(format!("tempest-{}", std::process::id()));
    let config = format!(
        "roles = [\"compute\"]\n[network]\nphysical_networks = {{ physnet1 = \"cairn-tp0\" }}\n\
         tenant_vlan_range = [1000, 1999]\n[image]\nmax_upload_bytes = 67108864\n\
         [storage.pools.{}]\ntype = \"dir\"\npath = \"{}\"\n",
        pool.0,
        root.join("data/volumes").display()
    );
    let agent = Agent::start_with(&root.join("data"), None, &config);

    let g = guest.to_string_lossy().into_owned();
    let image = |name: &str| {
        osc_id(
            &agent,
            &[
                "image",
                "create",
                "--public",
                "--disk-format",
                "qcow2",
                "--container-format",
                "bare",
                "--file",
                &g,
                name,
            ],
        )
    };
    let (img, img_alt) = (image("tempest-guest"), image("tempest-guest-alt"));
    let flavor_alt = osc_id(&agent, &["flavor", "create", "--ram", "512", "--disk", "1", "--vcpus", "1", "t1.alt"]);
    osc_id(
        &agent,
        &[
            "network",
            "create",
            "--share",
            "--provider-network-type",
            "flat",
            "--provider-physical-network",
            "physnet1",
            "tempest-net",
        ],
    );
    osc_id(
        &agent,
        &["subnet", "create", "--network", "tempest-net", "--subnet-range", "10.99.0.0/24", "tempest-subnet"],
    );

    let work = root.join("tempest");
    let _ = std::fs::remove_dir_all(&work);
    // The workspace registry is this run's own (not ~/.tempest), so runs never collide.
    let init = Command::new(&tempest)
        .arg("init")
        .arg("--workspace-path")
        .arg(root.join("workspace.yaml"))
        .arg(&work)
        .status()
        .unwrap();
    assert!(init.success(), "tempest init");
    let conf = include_str!("data/tempest/tempest.conf.in")
        .replace("@ADMIN_PASSWORD@", PASSWORD)
        .replace("@AUTH_URL@", &agent.url())
        .replace("@CA@", &agent.ca_path().to_string_lossy())
        .replace("@IMAGE@", &img)
        .replace("@IMAGE_ALT@", &img_alt)
        .replace("@FLAVOR@", "1")
        .replace("@FLAVOR_ALT@", &flavor_alt)
        .replace("@NETWORK@", "tempest-net")
        .replace("@NOVA_MAX@", &max_version(&agent, "/compute/v2.1", "version"))
        .replace("@CINDER_MAX@", &max_version(&agent, "/volume/v3", "version"))
        .replace("@NEUTRON_EXTENSIONS@", &neutron_extensions(&agent));
    std::fs::write(work.join("etc/tempest.conf"), conf).unwrap();

    let regex =
        std::env::var("CAIRN_TEMPEST_REGEX").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| SELECTION.to_owned());
    let out = Command::new(&tempest)
        .current_dir(&work)
        .args(["run", "--concurrency", "2", "--regex", &regex, "--exclude-list"])
        .arg(exclude_list(dir.path()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failures: Vec<&str> = text.lines().filter(|l| l.contains("... FAILED")).collect();
    let (passed, failed, skipped) = totals(&text);
    eprintln!("Tempest: {passed} passed, {failed} failed, {skipped} skipped");
    assert!(
        failed == 0 && passed > 0,
        "Tempest: {failed} failed:\n{}\n\n{}",
        failures.join("\n"),
        text.lines().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// A service's highest microversion, from its version document (`GET path` → `key.version`).
fn max_version(agent: &Agent, path: &str, key: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let token = agent.admin_token().await;
        let r = agent.conn().await.request(hyper::Method::GET, path, &[("x-auth-token", &token)], None).await.unwrap();
        let v = r.json();
        // `{"version": {…}}` (Nova) or `{"versions": [{…}]}` (Cinder).
        let doc = if v[key].is_object() { &v[key] } else { &v[format!("{key}s")][0] };
        let max = doc["version"].as_str().unwrap_or_default().to_owned();
        assert!(!max.is_empty(), "GET {path}: no {key}.version in {v}");
        max
    })
}

/// Neutron's extension aliases as the agent lists them, comma separated.
fn neutron_extensions(agent: &Agent) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let token = agent.admin_token().await;
        let r = agent
            .conn()
            .await
            .request(hyper::Method::GET, "/network/v2.0/extensions", &[("x-auth-token", &token)], None)
            .await
            .unwrap();
        let v = r.json();
        let aliases: Vec<&str> =
            v["extensions"].as_array().unwrap().iter().filter_map(|e| e["alias"].as_str()).collect();
        aliases.join(",")
    })
}
