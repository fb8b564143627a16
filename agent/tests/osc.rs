//! Interop: the real python-openstackclient (pinned in tests/data/osc-requirements.txt,
//! installed into a venv by `make test-deps`) against the real agent binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Agent, PASSWORD};
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
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("OS_AUTH_URL", &self.agent_url)
            .env("OS_CACERT", &self.ca)
            .env("OS_USERNAME", user)
            .env("OS_PASSWORD", password)
            .env("OS_PROJECT_NAME", project)
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IDENTITY_API_VERSION", "3")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn admin(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run_as("admin", PASSWORD, "admin", args);
        assert!(ok, "openstack {args:?} failed:\n{err}");
        out
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
