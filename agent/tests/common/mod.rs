//! Starts the real `cairn` binary in a temporary data dir on a free port, and drives it over
//! HTTPS with the crate's client.
#![allow(dead_code)]
// each test target uses a different part of this harness
// Test harness: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_agent::client::{Client, Conn};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "test-admin-secret";

/// The agent's configuration in these tests: an API-only node (no roles, so it never touches
/// the test machine's links) that knows two physical networks.
pub const CONFIG: &str = "roles = []\n[network]\nphysical_networks = { physnet1 = \"cairn-up0\", physnet2 = \"cairn-up1\" }\ntenant_vlan_range = [1000, 1001]\n[image]\nmax_upload_bytes = 8388608\n[storage]\nenabled = false\n";

pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its peer port.
    pub peer: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Agent {
    /// Starts an agent on `data`, reusing `addr` when given (a restart).
    pub fn start(data: &Path, addr: Option<SocketAddr>) -> Agent {
        Self::start_with(data, addr, CONFIG)
    }

    /// Starts an agent with its own configuration text, its peer port on a free port.
    pub fn start_with(data: &Path, addr: Option<SocketAddr>, config_text: &str) -> Agent {
        Self::start_in(None, data, addr, None, &[], config_text)
    }

    /// Starts an agent inside network namespace `netns` when given, on `addr` and `peer` (free
    /// ports when not given), with more arguments.
    pub fn start_in(
        netns: Option<&str>,
        data: &Path,
        addr: Option<SocketAddr>,
        peer: Option<SocketAddr>,
        args: &[&str],
        config_text: &str,
    ) -> Agent {
        let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let peer = peer.unwrap_or_else(|| SocketAddr::new(addr.ip(), free_port()));
        let log = data.with_extension("log");
        let offset = std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
        let logfile = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let config = data.with_extension("toml");
        std::fs::write(&config, config_text).unwrap();
        let mut cmd = match netns {
            // `ip netns exec` enters the namespace and execs the agent: the child is the agent.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cairn")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_cairn")),
        };
        let child = cmd
            .args(["agent", "--config"])
            .arg(&config)
            .args(["--listen", &addr.to_string(), "--peer-listen", &peer.to_string(), "--data-dir"])
            .arg(data)
            .args(args)
            .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .unwrap();
        let mut agent = Agent { child, addr, peer, data: data.into(), log };
        agent.wait_ready(offset);
        agent
    }

    /// Waits for the ready line written after `offset` in the log.
    fn wait_ready(&mut self, offset: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited with {status}; log:\n{}", self.log_text());
            }
            if self.log_text().get(offset..).is_some_and(|t| t.contains("cairn: ready")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent not ready within 60 s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data.join("pki/ca.pem")
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &std::fs::read_to_string(self.ca_path()).unwrap()).unwrap()
    }

    pub async fn conn(&self) -> Conn {
        self.client().connect().await.unwrap()
    }

    pub async fn admin_token(&self) -> String {
        self.conn().await.login("admin", PASSWORD, "admin").await.unwrap().expect("admin login")
    }

    pub fn url(&self) -> String {
        format!("https://{}/identity/v3", self.addr)
    }

    /// `cairn ARGS` with the admin's `OS_*` settings for this agent: (success, stdout, stderr).
    pub fn cairn(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("OS_AUTH_URL", self.url())
            .env("OS_CACERT", self.ca_path())
            .env("OS_USERNAME", "admin")
            .env("OS_PASSWORD", PASSWORD)
            .env("OS_PROJECT_NAME", "admin")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// A join token from `cairn token create --expires EXPIRES` on this agent.
    pub fn join_token(&self, expires: &str) -> String {
        let (ok, out, err) = self.cairn(&["token", "create", "--expires", expires]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    }
}

/// The compute tests' guest image (built by cairn-qemu-test from Debian packages, cached).
/// Fails the test unless it runs as root: what it drives (qemu:///system, network namespaces,
/// veth pairs) needs root, and CI runs as root, so a missing privilege is a failure, not a skip.
pub fn require_root(what: &str) {
    assert!(nix::unistd::geteuid().is_root(), "{what} needs root (CI runs as root): run the tests as root");
}

pub fn test_guest() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out =
        Command::new(cargo).args(["run", "-q", "-p", "cairn-qemu-test", "--bin", "cairn-test-guest"]).output().unwrap();
    assert!(out.status.success(), "building the test guest: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A veth pair in this network namespace, removed when dropped.
pub struct Veth(pub &'static str);

impl Veth {
    pub fn new(name: &'static str, peer: &'static str) -> Self {
        let _ = Command::new("ip").args(["link", "del", name]).status();
        let ok = Command::new("ip").args(["link", "add", name, "type", "veth", "peer", "name", peer]).status().unwrap();
        assert!(ok.success(), "ip link add {name}");
        for dev in [name, peer] {
            assert!(Command::new("ip").args(["link", "set", dev, "up"]).status().unwrap().success());
        }
        Veth(name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}
