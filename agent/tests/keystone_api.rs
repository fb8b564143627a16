//! Keystone v3 over HTTPS against the real agent: discovery, token validation (GET/HEAD),
//! catalog, domains, own projects, and tokens losing their power when their user is disabled.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::{Agent, PASSWORD};
use hyper::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_validation_catalog_and_disable() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let mut c = agent.conn().await;
    use std::os::unix::fs::PermissionsExt;
    for secret in ["state.redb", "token.key", "pki/ca.key", "pki/node.key"] {
        let mode = std::fs::metadata(agent.data.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }

    let r = c.request(Method::GET, "/identity", &[], None).await.unwrap();
    assert_eq!(r.status, 300);
    assert_eq!(r.json()["versions"]["values"][0]["id"], "v3.14");
    let r = c.request(Method::GET, "/identity/v3", &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"]["status"], "stable");
    let href = r.json()["version"]["links"][0]["href"].as_str().unwrap().to_owned();
    assert_eq!(href, format!("https://{}/identity/v3/", agent.addr), "links follow the Host header");

    let admin = agent.admin_token().await;
    let h = [("x-auth-token", admin.as_str()), ("x-subject-token", admin.as_str())];
    let r = c.request(Method::GET, "/identity/v3/auth/tokens", &h, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-subject-token"), Some(admin.as_str()));
    let t = &r.json()["token"];
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["roles"][0]["name"], "admin");
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    let catalog = t["catalog"].as_array().unwrap();
    let types: Vec<&str> = catalog.iter().filter_map(|s| s["type"].as_str()).collect();
    assert_eq!(
        types,
        ["identity", "network", "image", "compute", "block-storage", "volumev3"],
        "only the services this agent serves"
    );
    let project = t["project"]["id"].as_str().unwrap();
    assert_eq!(catalog[4]["endpoints"][0]["url"], format!("https://{}/volume/v3/{project}", agent.addr));
    assert_eq!(catalog[3]["endpoints"][0]["url"], format!("https://{}/compute/v2.1", agent.addr));
    assert_eq!(catalog[0]["endpoints"][0]["url"], format!("https://{}/identity/v3", agent.addr));
    assert_eq!(catalog[1]["endpoints"][0]["url"], format!("https://{}/network", agent.addr));
    let r = c.request(Method::GET, "/identity/v3/auth/tokens?nocatalog", &h, None).await.unwrap();
    assert!(r.json()["token"].get("catalog").is_none());
    assert_eq!(c.request(Method::HEAD, "/identity/v3/auth/tokens", &h, None).await.unwrap().status, 200);

    let ah = [("x-auth-token", admin.as_str())];
    let r = c.request(Method::GET, "/identity/v3/auth/catalog", &ah, None).await.unwrap();
    assert_eq!(r.json()["catalog"][0]["type"], "identity");
    let r = c.request(Method::GET, "/identity/v3/domains", &ah, None).await.unwrap();
    assert_eq!(r.json()["domains"][0]["name"], "Default");
    let r = c.request(Method::GET, "/identity/v3/domains/default", &ah, None).await.unwrap();
    assert_eq!(r.json()["domain"]["id"], "default");
    assert_eq!(c.request(Method::GET, "/identity/v3/domains/other", &ah, None).await.unwrap().status, 404);

    // A user with a role on one project sees that project and no other.
    let body = |v: serde_json::Value| Some(v.to_string().into_bytes());
    let p = c
        .request(Method::POST, "/identity/v3/projects", &ah, body(json!({"project": {"name": "p1"}})))
        .await
        .unwrap()
        .json();
    c.request(Method::POST, "/identity/v3/projects", &ah, body(json!({"project": {"name": "p2"}}))).await.unwrap();
    let u = c
        .request(
            Method::POST,
            "/identity/v3/users",
            &ah,
            body(json!({"user": {"name": "dave", "password": "dave-pw"}})),
        )
        .await
        .unwrap()
        .json();
    let (pid, uid) = (p["project"]["id"].as_str().unwrap(), u["user"]["id"].as_str().unwrap());
    let reader = c.request(Method::GET, "/identity/v3/roles?name=reader", &ah, None).await.unwrap().json();
    let rid = reader["roles"][0]["id"].as_str().unwrap();
    let grant = format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}");
    assert_eq!(c.request(Method::PUT, &grant, &ah, None).await.unwrap().status, 204);
    assert_eq!(c.request(Method::HEAD, &grant, &ah, None).await.unwrap().status, 204);
    let dave = c.login("dave", "dave-pw", "p1").await.unwrap().expect("dave logs in to p1");
    assert!(c.login("dave", "dave-pw", "p2").await.unwrap().is_none(), "no role on p2, no token");
    let dh = [("x-auth-token", dave.as_str())];
    let r = c.request(Method::GET, "/identity/v3/auth/projects", &dh, None).await.unwrap();
    let names: Vec<_> = r.json()["projects"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [json!("p1")]);
    let r = c.request(Method::GET, &format!("/identity/v3/users/{uid}/projects"), &dh, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c.request(Method::GET, &format!("/identity/v3/projects/{pid}"), &dh, None).await.unwrap().status, 200);
    assert_eq!(c.request(Method::GET, "/identity/v3/projects", &dh, None).await.unwrap().status, 403);
    // dave may validate his own token, not the admin's.
    let own = [("x-auth-token", dave.as_str()), ("x-subject-token", dave.as_str())];
    assert_eq!(c.request(Method::GET, "/identity/v3/auth/tokens", &own, None).await.unwrap().status, 200);
    let other = [("x-auth-token", dave.as_str()), ("x-subject-token", admin.as_str())];
    assert_eq!(c.request(Method::GET, "/identity/v3/auth/tokens", &other, None).await.unwrap().status, 403);

    // A token's roles and project are those in force now: taking the role away or disabling
    // the project refuses dave's token at once, giving it back accepts it again.
    assert_eq!(projects_status(&mut c, &dave).await, 200);
    assert_eq!(c.request(Method::DELETE, &grant, &ah, None).await.unwrap().status, 204);
    assert_eq!(projects_status(&mut c, &dave).await, 401);
    assert_eq!(c.request(Method::PUT, &grant, &ah, None).await.unwrap().status, 204);
    assert_eq!(projects_status(&mut c, &dave).await, 200);
    let project = format!("/identity/v3/projects/{pid}");
    let enable = |on: bool| body(json!({"project": {"enabled": on}}));
    assert_eq!(c.request(Method::PATCH, &project, &ah, enable(false)).await.unwrap().status, 200);
    assert_eq!(projects_status(&mut c, &dave).await, 401);
    assert_eq!(c.request(Method::PATCH, &project, &ah, enable(true)).await.unwrap().status, 200);
    assert_eq!(projects_status(&mut c, &dave).await, 200);

    // Disabling the user ends its tokens at once; the password stops working too.
    let r = c
        .request(Method::PATCH, &format!("/identity/v3/users/{uid}"), &ah, body(json!({"user": {"enabled": false}})))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user"]["enabled"], false);
    assert_eq!(c.request(Method::GET, "/identity/v3/auth/projects", &dh, None).await.unwrap().status, 401);
    assert!(c.login("dave", "dave-pw", "p1").await.unwrap().is_none());
    // Admin still fine, and the admin password from the environment is the one in force.
    assert!(c.login("admin", PASSWORD, "admin").await.unwrap().is_some());
}

/// The status `GET /identity/v3/auth/projects` answers with `token`.
async fn projects_status(c: &mut cairn_agent::client::Conn, token: &str) -> u16 {
    c.request(Method::GET, "/identity/v3/auth/projects", &[("x-auth-token", token)], None).await.unwrap().status
}
