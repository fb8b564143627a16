//! Durability: kill -9 the agent in the middle of a burst of project creates, restart it on the
//! same data dir: every create that was acknowledged (201) is there, and the agent starts
//! cleanly. Three kill/restart rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Agent;
use hyper::Method;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn list_projects(agent: &Agent) -> Vec<String> {
    let token = agent.admin_token().await;
    let r = agent
        .conn()
        .await
        .request(Method::GET, "/identity/v3/projects", &[("x-auth-token", &token)], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.json()["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut agent = Agent::start(&data, None);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..3 {
        let token = agent.admin_token().await;
        let mut writers = Vec::new();
        for w in 0..4 {
            let (client, token, acked) = (agent.client(), token.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let Ok(mut conn) = client.connect().await else { return };
                for i in 0.. {
                    let name = format!("r{round}-w{w}-{i}");
                    let body = serde_json::json!({"project": {"name": name}}).to_string().into_bytes();
                    match conn
                        .request(Method::POST, "/identity/v3/projects", &[("x-auth-token", &token)], Some(body))
                        .await
                    {
                        Ok(r) if r.status == 201 => acked.lock().unwrap().push(name),
                        Ok(r) => panic!("create {name}: {} {:?}", r.status, r.body),
                        Err(_) => return, // the agent died under us
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        agent.child.kill().unwrap(); // SIGKILL
        agent.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let before = acked.lock().unwrap().len();
        eprintln!("round {round}: {before} creates acknowledged so far");
        assert!(before > 0, "round {round}: no create was acknowledged before the kill");
        agent = Agent::start(&data, Some(agent.addr));
        let present = list_projects(&agent).await;
        let missing: Vec<_> = acked.lock().unwrap().iter().filter(|n| !present.contains(n)).cloned().collect();
        assert!(missing.is_empty(), "round {round}: acknowledged but lost after kill -9: {missing:?}");
        // Nothing applied twice: names are unique, so each appears once.
        let mut sorted = present.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), present.len());
    }
    let log = agent.log_text();
    assert_eq!(log.matches("cairn: ready").count(), 4, "started cleanly each time:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("ERROR")), "an error was logged:\n{log}");
}
