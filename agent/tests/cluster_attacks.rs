//! Attacks on joining and on the peer port, against real agents: each is refused and changes
//! nothing (no node added, no token used).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_agent::cluster::join::JoinRequest;
use cairn_agent::cluster::peer::{PeerError, Peers};
use cairn_agent::model::cluster::{hex, JoinToken};
use cairn_agent::pki;
use common::{free_port, Agent, CONFIG, PASSWORD};
use hyper::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cairn agent --join TOKEN` on a fresh data dir; it must exit with an error. Returns its
/// log.
fn join_fails(root: &Path, name: &str, token: &str) -> String {
    let data = root.join(name);
    let config = root.join(format!("{name}.toml"));
    std::fs::write(&config, format!("node_name = \"{name}\"\n{CONFIG}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "--config"])
        .arg(&config)
        .args([
            "--listen",
            &format!("127.0.0.9:{}", free_port()),
            "--peer-listen",
            &format!("127.0.0.9:{}", free_port()),
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(["--join", token])
        .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the joining agent did not give up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A join request made by hand with `secret` for token `id`.
async fn raw_join(agent: &Agent, dir: &Path, id: &str, secret: &[u8; 32]) -> (u16, Value) {
    let csr = pki::csr(dir, "intruder", &["intruder".into()], &[]).unwrap();
    let req = JoinRequest {
        token_id: id.into(),
        secret: hex(secret),
        csr,
        name: "intruder".into(),
        api_addr: "127.0.0.9:1".into(),
        peer_addr: "127.0.0.9:2".into(),
    };
    let mut c = agent.conn().await;
    let r = c.request(Method::POST, "/cairn/v1/join", &[], Some(serde_json::to_vec(&req).unwrap())).await.unwrap();
    (r.status, r.json())
}

async fn node_ids(agent: &Agent, token: &str) -> Vec<u64> {
    let mut c = agent.conn().await;
    let r = c.request(Method::GET, "/cairn/v1/nodes", &[("x-auth-token", token)], None).await.unwrap();
    assert_eq!(r.status, 200);
    r.json()["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_u64().unwrap()).collect()
}

fn token_state(agent: &Agent, id: &str) -> String {
    let (ok, list, err) = agent.cairn(&["token", "list"]);
    assert!(ok, "{err}");
    let line = list.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
    line.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")
}

/// A peer-port client presenting `cert` and `key` (PEM) and trusting `ca`.
fn peer_client(ca: &str, cert: &str, key: &str) -> Peers {
    Peers::new(pki::mtls_client_config(ca, cert, key).unwrap())
}

/// What a peer call gets: `Ok(status)` once past TLS (400 for the empty body, so admitted;
/// 403 when the node is refused), `Err` when the TLS handshake or connection fails.
async fn peer_status(peers: &Peers, addr: SocketAddr) -> Result<u16, String> {
    match peers.call::<_, Value>(&addr.to_string(), "/leader", &json!({}), Some(Duration::from_secs(5))).await {
        Ok(_) => Ok(200),
        Err(PeerError::Status { status, .. }) => Ok(status),
        Err(e) => Err(cairn_agent::error_chain(&e)),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_peer_calls_that_should_fail_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let seed = Agent::start_with(&root.join("n1"), None, &format!("node_name = \"n1\"\n{CONFIG}"));
    let t2 = seed.join_token("10m");
    let n2_addr: SocketAddr = format!("127.0.0.2:{}", free_port()).parse().unwrap();
    let n2 = Agent::start_in(
        None,
        &root.join("n2"),
        Some(n2_addr),
        None,
        &["--join", &t2],
        &format!("node_name = \"n2\"\n{CONFIG}"),
    );
    let admin = seed.admin_token().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_ids(&seed, &admin).await != [1, 2] {
        assert!(Instant::now() < deadline, "node 2 never listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stranger =
        Agent::start_with(&root.join("x"), Some(format!("127.0.0.3:{}", free_port()).parse().unwrap()), CONFIG);
    let ca = read(&seed.ca_path());

    // An expired token: the joining node gives up before asking, and the cluster refuses it.
    let expired = seed.join_token("1s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(join_fails(root, "late", &expired).contains("expired"));
    let t = JoinToken::decode(&expired).unwrap();
    assert_eq!(raw_join(&seed, &root.join("raw1"), &t.id, &t.secret).await.0, 401);

    // The token node 2 used: a second join with it is refused, whichever node is asked.
    let used = JoinToken::decode(&t2).unwrap();
    for node in [&seed, &n2] {
        assert_eq!(raw_join(node, &root.join("raw2"), &used.id, &used.secret).await.0, 401);
    }
    assert!(join_fails(root, "again", &t2).contains("401"));

    // A forged secret: refused, and the token stays unused (a later honest join could use it).
    let fresh = JoinToken::decode(&seed.join_token("10m")).unwrap();
    let mut forged = fresh.secret;
    forged[0] ^= 1;
    let (status, body) = raw_join(&n2, &root.join("raw3"), &fresh.id, &forged).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(token_state(&seed, &fresh.id), "unused");

    // A token whose addresses lead to another cluster's node (a man in the middle with its
    // own CA): the joining node refuses that server and sends it nothing.
    let mut mitm = JoinToken::decode(&seed.join_token("10m")).unwrap();
    mitm.addrs = vec![stranger.addr.to_string()];
    let log = join_fails(root, "fooled", &mitm.encode().unwrap());
    assert!(log.contains("does not present the CA the token pins"), "{log}");
    assert_eq!(token_state(&seed, &mitm.id), "unused");
    assert_eq!(node_ids(&seed, &admin).await, [1, 2], "no node was added");

    // The peer port: node 2's own certificate gets in (400: an empty message) ...
    let n2_pki = root.join("n2/pki");
    let member = peer_client(&ca, &read(&n2_pki.join("node.pem")), &read(&n2_pki.join("node.key")));
    assert_eq!(peer_status(&member, seed.peer).await, Ok(400));
    // ... no client certificate does not, nor another CA's ...
    let anonymous = Peers::new(pki::client_config(&ca).unwrap());
    assert!(peer_status(&anonymous, seed.peer).await.is_err());
    let xp = root.join("x/pki");
    let foreign = peer_client(&ca, &read(&xp.join("node.pem")), &read(&xp.join("node.key")));
    assert!(peer_status(&foreign, seed.peer).await.is_err());
    // ... nor a certificate the cluster CA signed naming node 1 but holding node 2's key
    // (every node holds the CA key: the registered key is what tells nodes apart).
    let forge_dir = root.join("forge");
    std::fs::create_dir_all(&forge_dir).unwrap();
    for f in ["ca.pem", "ca.key", "node.key"] {
        std::fs::copy(n2_pki.join(f), forge_dir.join(f)).unwrap();
    }
    let forged_cert = pki::Pki::ensure(&forge_dir, 1, "n1", &["localhost".into()], &[]).unwrap();
    let impostor = peer_client(&ca, &forged_cert.node_cert_pem, &read(&n2_pki.join("node.key")));
    assert_eq!(peer_status(&impostor, seed.peer).await, Ok(403));

    // A node certificate is no API credential: the API asks for a token.
    let with_cert = peer_client(&ca, &read(&n2_pki.join("node.pem")), &read(&n2_pki.join("node.key")));
    let api = with_cert.call::<_, Value>(&seed.addr.to_string(), "/cairn/v1/nodes", &json!({}), None).await;
    assert!(matches!(api, Err(PeerError::Status { status: 401, .. })), "{api:?}");

    // Node 2 removed: its certificate is refused from then on, and it is listed no more.
    let (ok, _, err) = seed.cairn(&["node", "remove", "2"]);
    assert!(ok, "{err}");
    assert_eq!(peer_status(&member, seed.peer).await, Ok(403));
    assert_eq!(node_ids(&seed, &admin).await, [1]);
    let (ok, _, err) = seed.cairn(&["node", "remove", "2"]);
    assert!(!ok && err.contains("could not be found"), "{err}");
    drop(n2);
}
