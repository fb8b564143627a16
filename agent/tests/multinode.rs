//! Several real agents on distinct loopback addresses (127.0.0.x) form one cluster: the first
//! makes it, the others join with tokens; any node answers reads and writes; the leader is
//! killed and the rest go on; it restarts and catches up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, Agent, CONFIG};
use hyper::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Node {
    pub agent: Agent,
    pub name: String,
    pub dir: PathBuf,
    /// The token it joined with.
    pub join: Option<String>,
}

fn config(name: &str) -> String {
    format!("node_name = \"{name}\"\n{CONFIG}")
}

fn join_args(join: Option<&str>) -> Vec<&str> {
    join.map(|t| vec!["--join", t]).unwrap_or_default()
}

impl Node {
    fn start(root: &std::path::Path, i: u8, join: Option<&str>) -> Node {
        let ip = format!("127.0.0.{}", i + 1);
        let api: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let peer: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let name = format!("node{}", i + 1);
        let dir = root.join(&name);
        let agent = Agent::start_in(None, &dir, Some(api), Some(peer), &join_args(join), &config(&name));
        Node { agent, name, dir, join: join.map(str::to_owned) }
    }

    /// Starts it again on the same data and addresses, its join token still configured (as a
    /// PXE node's kernel command line would keep it).
    fn restart(&mut self) {
        let _ = self.agent.child.kill();
        let _ = self.agent.child.wait();
        let (addr, peer) = (self.agent.addr, self.agent.peer);
        self.agent = Agent::start_in(
            None,
            &self.dir,
            Some(addr),
            Some(peer),
            &join_args(self.join.as_deref()),
            &config(&self.name),
        );
    }
}

async fn get(node: &Agent, token: &str, path: &str) -> (u16, Value) {
    let mut c = node.conn().await;
    let r = c.request(Method::GET, path, &[("x-auth-token", token)], None).await.unwrap();
    (r.status, r.json())
}

/// The node list as `node` sees it: id → (raft role, up).
async fn roles(node: &Agent, token: &str) -> Vec<(u64, String, bool)> {
    let (status, body) = get(node, token, "/cairn/v1/nodes").await;
    assert_eq!(status, 200, "{body}");
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_u64().unwrap(), n["raft_role"].as_str().unwrap().to_owned(), n["up"] == json!(true)))
        .collect()
}

/// The leader's index in `nodes`, as `node` sees it (node i has raft id i + 1: ids are handed
/// out in join order).
async fn leader_index(node: &Agent, token: &str) -> usize {
    let leader = roles(node, token).await.into_iter().find(|r| r.1 == "leader").unwrap().0;
    usize::try_from(leader - 1).unwrap()
}

/// Polls `f` until it is true or `secs` pass.
async fn eventually<F: std::future::Future<Output = bool>>(secs: u64, what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not within {secs} s: {what}");
}

async fn create_project(node: &Agent, token: &str, name: &str) -> u16 {
    let mut c = node.conn().await;
    let body = json!({"project": {"name": name}}).to_string().into_bytes();
    let r = c.request(Method::POST, "/identity/v3/projects", &[("x-auth-token", token)], Some(body)).await.unwrap();
    r.status
}

async fn has_project(node: &Agent, token: &str, name: &str) -> bool {
    let (status, body) = get(node, token, &format!("/identity/v3/projects?name={name}")).await;
    status == 200 && body["projects"].as_array().is_some_and(|p| p.len() == 1)
}

/// Starts `n` nodes: node 1 makes the cluster, each next one joins with a token made on the
/// node before it (so tokens are consumed on followers too).
async fn cluster(root: &std::path::Path, n: u8) -> Vec<Node> {
    let mut nodes = vec![Node::start(root, 0, None)];
    for i in 1..n {
        let t = nodes[usize::from(i) - 1].agent.join_token("15m");
        nodes.push(Node::start(root, i, Some(&t)));
    }
    nodes
}

async fn formed(nodes: &[Node], voters: usize) -> String {
    let admin = nodes[0].agent.admin_token().await;
    let n = nodes.len();
    eventually(30, "every node listed and up, with the voters promoted", || {
        let admin = admin.clone();
        async move {
            let r = roles(&nodes[0].agent, &admin).await;
            let v = r.iter().filter(|(_, role, _)| role == "leader" || role == "follower").count();
            r.len() == n && r.iter().all(|(_, _, up)| *up) && v == voters
        }
    })
    .await;
    admin
}

async fn scenario(n: u8, voters: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), n).await;
    let admin = formed(&nodes, voters).await;
    let ids: Vec<u64> = roles(&nodes[0].agent, &admin).await.iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=u64::from(n)).collect::<Vec<_>>());
    // Nova's service list, through any node, names every node's scheduler.
    let (status, body) = get(&nodes[1].agent, &admin, "/compute/v2.1/os-services?binary=nova-scheduler").await;
    assert_eq!(status, 200, "{body}");
    let hosts: Vec<&str> = body["services"].as_array().unwrap().iter().filter_map(|s| s["host"].as_str()).collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(hosts, names, "{body}");

    // A node's probe through another node (a node call over the peer port): its own data
    // directory, its own host's facts; this node's own probe with the CLI.
    let far = &nodes[usize::from(n) - 1].agent;
    let (status, body) = get(&nodes[0].agent, &admin, &format!("/cairn/v1/nodes/{n}/probe")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["probe"]["data_dir"]["path"], json!(far.data.display().to_string()), "{body}");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(body["probe"]["facts"]["cpu"]["count"], json!(cpus), "{body}");
    let (status, body) = get(&nodes[0].agent, &admin, "/cairn/v1/nodes/99/probe").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!(404)), "{body}");
    let (ok, table, err) = nodes[0].agent.cairn(&["node", "probe", "1"]);
    assert!(ok && table.contains(&format!("{cpus} CPUs")), "{table}{err}");
    assert!(table.contains(&format!("Data dir     {}", nodes[0].agent.data.display())), "{table}");

    // A token from one node is good on every other (one signing key), and a write through any
    // node is at once readable on every node (reads are linearizable).
    let last = &nodes[usize::from(n) - 1].agent;
    let tok = last.admin_token().await;
    for (w, writer) in nodes.iter().enumerate() {
        let name = format!("via-node-{w}");
        assert_eq!(create_project(&writer.agent, &tok, &name).await, 201);
        for (r, reader) in nodes.iter().enumerate() {
            assert!(
                has_project(&reader.agent, &tok, &name).await,
                "{name} written on node {w}, read at once on node {r}"
            );
        }
    }

    // A follower frozen (SIGSTOP) while a write is acknowledged without it, then thawed and
    // read from at once: the read waits until it has the write, it never answers stale.
    let li = leader_index(&nodes[0].agent, &admin).await;
    let frozen = &nodes[(li + 1) % nodes.len()];
    let pid = frozen.agent.child.id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    signal("-STOP");
    assert_eq!(create_project(&nodes[li].agent, &tok, "while-frozen").await, 201);
    signal("-CONT");
    assert!(has_project(&frozen.agent, &tok, "while-frozen").await, "a thawed follower answered a stale read");

    // Kill the leader: another is elected within seconds and the API keeps answering.
    let li = leader_index(&nodes[0].agent, &admin).await;
    let leader = u64::try_from(li).unwrap() + 1;
    nodes[li].agent.child.kill().unwrap();
    nodes[li].agent.child.wait().unwrap();
    let survivor = &nodes[(li + 1) % nodes.len()].agent;
    let started = Instant::now();
    eventually(15, "a new leader", || async {
        roles(survivor, &tok).await.iter().any(|(id, role, _)| role == "leader" && *id != leader)
    })
    .await;
    eprintln!("new leader after {:?}", started.elapsed());
    assert_eq!(create_project(survivor, &tok, "after-failover").await, 201);

    // The killed node comes back (with its join token still configured, as a PXE node would)
    // and catches up.
    nodes[li].restart();
    let back = &nodes[li].agent;
    eventually(20, "the restarted node caught up", || has_project(back, &tok, "after-failover")).await;
    assert_eq!(create_project(back, &tok, "after-restart").await, 201);
    for node in &nodes {
        assert!(has_project(&node.agent, &tok, "after-restart").await, "read at once on {}", node.name);
    }

    // With every other node gone no quorum can confirm a read: the last node answers 503 in
    // the OpenStack error format (after the 10 s leader wait), never a possibly stale list.
    for node in &mut nodes[1..] {
        node.agent.child.kill().unwrap();
        node.agent.child.wait().unwrap();
    }
    let (status, body) = get(&nodes[0].agent, &tok, "/identity/v3/projects").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], json!(503), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_losing_the_leader() {
    scenario(3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_losing_the_leader() {
    scenario(5, 5).await;
}
