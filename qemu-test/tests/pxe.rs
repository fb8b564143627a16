//! Network boot of the PXE artifacts through QEMU's built-in DHCP/TFTP and the NIC's iPXE ROM,
//! two appliances on one virtual LAN (a QEMU socket network on loopback multicast), each
//! checking the other's API from inside with `cairn check`; the second joins the first's
//! cluster unattended, with `cairn.join=TOKEN` on its kernel command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_agent::client::Client;
use cairn_qemu_test::{free_port, image_dir, Appliance, Boot, Media};
use hyper::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A TFTP root for one node: the PXE artifacts, and the shipped boot.ipxe with `cairn_ip` set
/// and extra kernel arguments.
fn tftp_root(dir: &Path, ip: &str, extra_args: &str) {
    let out = image_dir();
    for f in ["vmlinuz", "initrd"] {
        let src = out.join(f);
        assert!(src.exists(), "{} is missing: run `make image`", src.display());
        std::os::unix::fs::symlink(&src, dir.join(f)).unwrap();
    }
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    assert!(script.contains("isset ${cairn_ip} || set cairn_ip") && script.contains("cairn.ip=${cairn_ip}"));
    let script = script
        .replace("isset ${cairn_ip} || set cairn_ip", &format!("set cairn_ip {ip}"))
        .replace("cairn.ip=${cairn_ip}", &format!("cairn.ip=${{cairn_ip}} {extra_args}"));
    std::fs::write(dir.join("boot.ipxe"), script).unwrap();
}

fn lan(mcast_port: u16, last: u8) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("socket,id=lan,mcast=230.0.0.1:{mcast_port},localaddr=127.0.0.1"),
        "-device".into(),
        format!("virtio-net-pci,netdev=lan,addr=0x4,mac=52:54:00:00:09:{last:02x}"),
    ]
}

/// The kernel argument that runs the image's `cairn-check@HOST.service` once the node is up.
fn check_on_boot(host: &str) -> String {
    format!("systemd.wants=cairn-check@{host}.service")
}

fn wait_for_line(app: &Appliance, prefix: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = app.console().lines().find(|l| l.contains(prefix)) {
            return line.to_owned();
        }
        assert!(start.elapsed() < timeout, "{}", app.fail(&format!("no {prefix:?} line within {timeout:?}")));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One admin request to an appliance's API through its forwarded port (the admin password is
/// the cluster's, so the first node's works on a joined node too).
fn admin(app: &Appliance, password: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(app.api, &std::fs::read_to_string(&app.ca_path).unwrap()).unwrap();
        let mut conn = client.connect().await.unwrap();
        let token = conn.login("admin", password, "admin").await.unwrap().expect("admin login");
        let body = body.map(|b| b.to_string().into_bytes());
        let r = conn.request(method, path, &[("x-auth-token", &token)], body).await.unwrap();
        (r.status, r.json())
    })
}

#[test]
fn two_pxe_booted_appliances_reach_each_other_and_join() {
    let port = free_port().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A is reached by the LAN address its tokens name (public_url) and peers there.
    let a_args =
        format!("{} cairn.public_url=https://10.9.0.1 cairn.peer_listen=10.9.0.1:7443", check_on_boot("10.9.0.2"));
    tftp_root(dir_a.path(), "10.9.0.1/24,,,enp0s4", &a_args);
    let mut boot_a = Boot::new(Media::Pxe { dir: dir_a.path().into() });
    boot_a.extra = lan(port, 1);
    let a = Appliance::boot(&boot_a).unwrap();
    eprintln!("PXE node A: ready after {:.1} s", a.ready_after.as_secs_f64());
    let console = a.console();
    assert!(console.contains("STATE IS IN MEMORY ONLY"), "a PXE node says loudly that it keeps state in memory");

    // B boots with a join token made on A on its kernel command line, and nothing else.
    let (status, made) = admin(&a, &a.password, Method::POST, "/cairn/v1/tokens", Some(json!({"token": {}})));
    assert_eq!(status, 201, "{made}");
    let token = made["token"]["token"].as_str().unwrap().to_owned();
    let b_args = format!("{} cairn.join={token} cairn.peer_listen=10.9.0.2:7443", check_on_boot("10.9.0.1"));
    tftp_root(dir_b.path(), "10.9.0.2/24,,,enp0s4", &b_args);
    let mut boot_b = Boot::new(Media::Pxe { dir: dir_b.path().into() });
    boot_b.extra = lan(port, 2);
    let b = Appliance::boot(&boot_b).unwrap();
    eprintln!("PXE node B: ready after {:.1} s", b.ready_after.as_secs_f64());
    assert_eq!(b.fingerprint, a.fingerprint, "B joined A's cluster: the same CA");
    // B is a voter of A's cluster, and a write through B is read on A.
    let started = Instant::now();
    loop {
        let (_, nodes) = admin(&a, &a.password, Method::GET, "/cairn/v1/nodes", None);
        let b_node = nodes["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 2).cloned();
        if b_node.as_ref().is_some_and(|n| n["raft_role"] == "follower" && n["up"] == true) {
            assert_eq!(b_node.unwrap()["peer_addr"], "10.9.0.2:7443");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "B is not a voter of A's cluster: {nodes}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let project = json!({"project": {"name": "made-through-b"}});
    let (status, body) = admin(&b, &a.password, Method::POST, "/identity/v3/projects", Some(project));
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin(&a, &a.password, Method::GET, "/identity/v3/projects?name=made-through-b", None);
    assert_eq!((status, body["projects"].as_array().map(Vec::len)), (200, Some(1)), "{body}");

    // Each reached the other over the LAN and saw the CA the other showed on its console.
    let from_b = wait_for_line(&b, "cairn check:", Duration::from_secs(300));
    assert!(
        from_b.contains("https://10.9.0.1 reachable")
            && from_b.contains(&a.fingerprint)
            && from_b.contains("/healthz 200"),
        "{from_b}"
    );
    let from_a = wait_for_line(&a, "cairn check:", Duration::from_secs(300));
    assert!(
        from_a.contains("https://10.9.0.2 reachable")
            && from_a.contains(&b.fingerprint)
            && from_a.contains("/healthz 200"),
        "{from_a}"
    );
}
