//! Join tokens and the node list through the API and the `cairn token` / `cairn node` commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_agent::model::cluster::JoinToken;
use common::Agent;
use std::process::Command;

fn cairn_token(agent: &Agent, args: &[&str]) -> (bool, String, String) {
    agent.cairn(&[&["token"], args].concat())
}

#[test]
fn join_tokens_are_made_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let (ok, out, err) = cairn_token(&agent, &["create", "--expires", "10m"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "only the token is printed: {out}");
    let text = out.trim();
    let t = JoinToken::decode(text).unwrap();
    // It pins this cluster's CA and names the address the request came to.
    let ca = std::fs::read_to_string(agent.ca_path()).unwrap();
    let fp = cairn_agent::pki::fingerprint(&ca).unwrap();
    assert_eq!(cairn_agent::model::cluster::hex(&t.ca_fingerprint), fp);
    assert_eq!(t.addrs, [agent.addr.to_string()]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 590..=now + 601).contains(&t.expires_at), "{} vs {now}", t.expires_at);

    let (ok, list, err) = cairn_token(&agent, &["list"]);
    assert!(ok, "{err}");
    assert!(list.lines().any(|l| l.starts_with(&t.id) && l.ends_with("unused")), "{list}");
    assert!(!list.contains(text), "no secret in the listing");
    let (ok, _, err) = cairn_token(&agent, &["revoke", &t.id]);
    assert!(ok, "{err}");
    let (_, list, _) = cairn_token(&agent, &["list"]);
    assert!(list.lines().any(|l| l.starts_with(&t.id) && l.ends_with("revoked")), "{list}");

    // Refused: no lifetime, too long a lifetime, an unknown token; the state keeps a hash only.
    for (args, want) in [
        (&["create", "--expires", "0"][..], "1 second to 24 hours"),
        (&["create", "--expires", "25h"], "1 second to 24 hours"),
        (&["revoke", "nope"], "could not be found"),
        (&["create", "--expires", "soon"], "not a duration"),
    ] {
        let (ok, _, err) = cairn_token(&agent, args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
    let secret_b64 = text.trim_start_matches("cairn-join1.");
    assert!(!agent.log_text().contains(secret_b64), "the token reached the log");
    let mut without_auth = Command::new(env!("CARGO_BIN_EXE_cairn"));
    without_auth.args(["token", "list"]).env("OS_AUTH_URL", agent.url()).env("OS_CACERT", agent.ca_path());
    without_auth.env("OS_USERNAME", "admin").env("OS_PASSWORD", "wrong");
    let out = without_auth.output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("login was refused"));
}

#[test]
fn the_node_lists_itself_as_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    // The first report goes out at start; give it a moment to apply.
    let mut list = String::new();
    for _ in 0..50 {
        let (ok, out, err) = agent.cairn(&["node", "list"]);
        assert!(ok, "{err}");
        list = out;
        if list.lines().count() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let line = list.lines().nth(1).unwrap_or_else(|| panic!("no node listed:\n{list}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[..6], ["1", host.as_str(), agent.addr.to_string().as_str(), "-", "leader", "yes"], "{list}");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(line.contains(&format!("{cpus} CPUs")) && line.contains("virtualization "), "{line}");
}
