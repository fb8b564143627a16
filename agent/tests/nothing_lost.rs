//! Nothing acknowledged is lost: three agents, each in its own network namespace on a bridge
//! this test makes, take image creates at random nodes from several clients while random
//! nodes are killed (SIGKILL) and restarted or cut off (their link down inside their
//! namespace) and reconnected. Afterwards every node must hold every create that was answered
//! 201, exactly once, and no create twice. Image names are not unique in Glance, so a write
//! applied twice would show.
//!
//! Seeded and printed: `CAIRN_SOAK_SEED` repeats a run, `CAIRN_SOAK_TRIALS` (1 here, more in
//! `make soak`) and `CAIRN_SOAK_SECS` (seconds of writes per trial, 20) size it. Needs root
//! (namespaces); CI runs it as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_agent::sys::netlink::{IfAddr, Netlink, NewLink, RtNetlink};
use cairn_agent::sys::netns::{self, NetNs};
use common::{free_port, Agent, CONFIG};
use hyper::Method;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const WRITERS: usize = 6;

/// xorshift64*: small, seeded, enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One node: its namespace, its veth inside it, and the agent.
struct Node {
    ns: String,
    link: String,
    agent: Option<Agent>,
    data: PathBuf,
    addr: SocketAddr,
    peer: SocketAddr,
    join: Vec<String>,
}

impl Node {
    fn start(&mut self) {
        let args: Vec<&str> = self.join.iter().map(String::as_str).collect();
        let cfg = format!("node_name = \"{}\"\n{CONFIG}", self.ns);
        self.agent = Some(Agent::start_in(Some(&self.ns), &self.data, Some(self.addr), Some(self.peer), &args, &cfg));
        // Its identity is kept; later starts need no token.
        self.join.clear();
    }

    fn kill(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }

    async fn set_link(&self, up: bool) {
        let nl = RtNetlink::connect_in(&NetNs::open(&self.ns).unwrap()).unwrap();
        let idx = nl.links().await.unwrap().into_iter().find(|l| l.name == self.link).unwrap().index;
        nl.set_up(idx, up).await.unwrap();
    }
}

/// The namespaces, the bridge and the veths; removed when dropped (the veths first: a
/// namespace's links go only once the kernel frees it, which can be after the next trial began).
struct Lab {
    bridge: String,
    names: Vec<String>,
    veths: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for link in self.veths.iter().chain([&self.bridge]) {
            let _ = std::process::Command::new("ip").args(["link", "del", link]).status();
        }
        for n in &self.names {
            let _ = netns::delete(n);
        }
    }
}

async fn index(nl: &RtNetlink, name: &str) -> u32 {
    nl.links().await.unwrap().into_iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no link {name}")).index
}

/// A bridge `c<pid>t<trial>` holding 10.77.0.254/24 and, per node, a namespace with a veth on
/// it holding 10.77.0.<i+1>/24. Names differ per trial.
async fn lab(root: &std::path::Path, trial: u64) -> (Lab, Vec<Node>) {
    let tag = format!("c{}t{}", std::process::id() % 1_000_000, trial % 100);
    let bridge = tag.clone();
    let mut lab = Lab { bridge: bridge.clone(), names: vec![], veths: vec![] };
    let host = RtNetlink::connect().unwrap();
    host.add_link(&bridge, NewLink::Bridge, None).await.unwrap();
    let br = index(&host, &bridge).await;
    host.add_address(br, IfAddr { ip: "10.77.0.254".parse().unwrap(), prefix: 24 }).await.unwrap();
    host.set_up(br, true).await.unwrap();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let name = format!("{tag}n{i}");
        let _ = netns::delete(&name);
        let ns = NetNs::ensure(&name).unwrap();
        lab.names.push(name.clone());
        let (outside, inside) = (format!("{tag}h{i}"), format!("{tag}v{i}"));
        host.add_link(&outside, NewLink::Veth { peer: inside.clone() }, None).await.unwrap();
        lab.veths.push(outside.clone());
        host.set_netns(index(&host, &inside).await, &ns).await.unwrap();
        let o = index(&host, &outside).await;
        host.set_master(o, Some(br)).await.unwrap();
        host.set_up(o, true).await.unwrap();
        let nl = RtNetlink::connect_in(&ns).unwrap();
        let v = index(&nl, &inside).await;
        nl.add_address(v, IfAddr { ip: format!("10.77.0.{}", i + 1).parse().unwrap(), prefix: 24 }).await.unwrap();
        nl.set_up(v, true).await.unwrap();
        nl.set_up(index(&nl, "lo").await, true).await.unwrap();
        let ip = format!("10.77.0.{}", i + 1);
        nodes.push(Node {
            ns: name.clone(),
            link: inside,
            agent: None,
            data: root.join(&name),
            addr: format!("{ip}:{}", free_port()).parse().unwrap(),
            peer: format!("{ip}:{}", free_port()).parse().unwrap(),
            join: vec![],
        });
    }
    (lab, nodes)
}

fn client(node_addr: SocketAddr, ca: &str) -> cairn_agent::client::Client {
    cairn_agent::client::Client::new(node_addr, ca).unwrap()
}

/// One image create at `addr`: Some(true) when answered 201, Some(false) when refused, None
/// when the outcome is unknown (no answer in time, connection lost).
async fn create(addr: SocketAddr, ca: &str, token: &str, name: &str) -> Option<bool> {
    let body = json!({"name": name, "disk_format": "raw", "container_format": "bare"}).to_string().into_bytes();
    let attempt = async {
        let mut c = client(addr, ca).connect().await.ok()?;
        let r = c.request(Method::POST, "/image/v2/images", &[("x-auth-token", token)], Some(body)).await.ok()?;
        Some(r.status == 201)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten()
}

/// Every image name on the node at `addr` with how often it appears.
async fn names(addr: SocketAddr, ca: &str, token: &str) -> Option<BTreeMap<String, usize>> {
    let mut c = client(addr, ca).connect().await.ok()?;
    let mut out = BTreeMap::new();
    let mut path = "/image/v2/images?limit=1000".to_string();
    loop {
        let r = c.request(Method::GET, &path, &[("x-auth-token", token)], None).await.ok()?;
        if r.status != 200 {
            return None;
        }
        let j = r.json();
        for i in j["images"].as_array()? {
            *out.entry(i["name"].as_str()?.to_owned()).or_insert(0) += 1;
        }
        match j["next"].as_str() {
            Some(next) => path = format!("/image{next}"),
            None => return Some(out),
        }
    }
}

async fn voters(addr: SocketAddr, ca: &str, token: &str) -> usize {
    let Ok(mut c) = client(addr, ca).connect().await else { return 0 };
    let Ok(r) = c.request(Method::GET, "/cairn/v1/nodes", &[("x-auth-token", token)], None).await else { return 0 };
    r.json()["nodes"]
        .as_array()
        .map(|n| n.iter().filter(|n| matches!(n["raft_role"].as_str(), Some("leader" | "follower"))).count())
        .unwrap_or(0)
}

#[derive(Default)]
struct Ledger {
    acked: BTreeSet<String>,
    unknown: BTreeSet<String>,
    refused: usize,
}

async fn trial(trial: u64, seed: u64, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_lab, mut nodes) = lab(dir.path(), trial).await;
    nodes[0].start();
    let ca = std::fs::read_to_string(nodes[0].data.join("pki/ca.pem")).unwrap();
    let token = nodes[0].agent.as_ref().unwrap().admin_token().await;
    for i in 1..NODES {
        let mut c = client(nodes[0].addr, &ca).connect().await.unwrap();
        let r = c.request(Method::POST, "/cairn/v1/tokens", &[("x-auth-token", &token)], None).await.unwrap();
        let t = r.json()["token"]["token"].as_str().unwrap().to_owned();
        nodes[i].join = vec!["--join".into(), t];
        nodes[i].start();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while voters(nodes[0].addr, &ca, &token).await != NODES {
        assert!(Instant::now() < deadline, "the cluster did not form");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (addrs, ca, token, ledger) = (addrs.clone(), ca.clone(), token.clone(), ledger.clone());
        let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(w as u64 + 1)) | 1);
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                n += 1;
                let name = format!("t{trial}-w{w}-{n}");
                let at = addrs[usize::try_from(rng.below(addrs.len() as u64)).unwrap()];
                let got = create(at, &ca, &token, &name).await;
                let mut l = ledger.lock().unwrap();
                match got {
                    Some(true) => {
                        l.acked.insert(name);
                    }
                    Some(false) => l.refused += 1,
                    None => {
                        l.unknown.insert(name);
                    }
                }
            }
        }));
    }

    // Faults, one at a time, until the writers stop.
    let mut rng = Rng(seed | 1);
    let mut faults = Vec::new();
    while Instant::now() < stop {
        let victim = usize::try_from(rng.below(NODES as u64)).unwrap();
        let hold = Duration::from_millis(1000 + rng.below(2000));
        match rng.below(3) {
            0 => {
                faults.push(format!("kill {}", nodes[victim].ns));
                nodes[victim].kill();
                tokio::time::sleep(hold).await;
                nodes[victim].start();
            }
            1 => {
                faults.push(format!("cut {}", nodes[victim].ns));
                nodes[victim].set_link(false).await;
                tokio::time::sleep(hold).await;
                nodes[victim].set_link(true).await;
            }
            _ => tokio::time::sleep(hold).await,
        }
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
    }
    for w in writers {
        w.await.unwrap();
    }

    // Every node holds every acknowledged write once, and nothing twice.
    let (acked, unknown, refused) = {
        let l = ledger.lock().unwrap();
        (l.acked.clone(), l.unknown.clone(), l.refused)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let mut all = Vec::new();
        for a in &addrs {
            all.push(names(*a, &ca, &token).await);
        }
        let converged = all.iter().all(|n| n.is_some() && *n == all[0]);
        let complete = all[0].as_ref().is_some_and(|n| acked.iter().all(|a| n.contains_key(a)));
        if converged && complete {
            break all[0].clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the nodes did not converge on every acknowledged write within 60 s (faults {faults:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "seed {seed}: written twice: {twice:?}");
    let lost: Vec<_> = acked.iter().filter(|a| !seen.contains_key(*a)).collect();
    assert!(lost.is_empty(), "seed {seed}: acknowledged and lost: {lost:?}");
    let landed = unknown.iter().filter(|u| seen.contains_key(*u)).count();
    eprintln!(
        "trial {trial} seed {seed}: {} acknowledged (all on every node, once), {} unanswered ({landed} of them applied), {refused} refused; faults: {}",
        acked.len(),
        unknown.len(),
        faults.join(", ")
    );
    assert!(acked.len() > 100, "seed {seed}: too few writes went through to mean anything");
    for n in &mut nodes {
        n.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kills_and_partitions() {
    common::require_root("acknowledged_writes_survive_kills_and_partitions (network namespaces)");
    let seed = env_num(
        "CAIRN_SOAK_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    );
    let (trials, secs) = (env_num("CAIRN_SOAK_TRIALS", 1), env_num("CAIRN_SOAK_SECS", 20));
    eprintln!("nothing-lost: seed {seed}, {trials} trial(s) of {secs} s (CAIRN_SOAK_SEED={seed} repeats it)");
    let mut rng = Rng(seed | 1);
    for t in 0..trials {
        trial(t, rng.next(), secs).await;
    }
}
