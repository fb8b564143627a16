//! Bad input gets a clear 4xx in Keystone's error format and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Agent, PASSWORD};
use hyper::Method;

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Vec<u8>>,
    /// Send the admin token (else the member's, or none).
    token: Token,
    status: u16,
}

#[derive(Clone, Copy, PartialEq)]
enum Token {
    Admin,
    Member,
    None,
}

impl Default for Case {
    fn default() -> Self {
        Case { name: "", method: Method::GET, path: "", body: None, token: Token::Admin, status: 0 }
    }
}

fn s(v: &str) -> Option<Vec<u8>> {
    Some(v.as_bytes().to_vec())
}

async fn snapshot(agent: &Agent, token: &str) -> String {
    let mut c = agent.conn().await;
    let mut out = String::new();
    for path in ["/identity/v3/projects", "/identity/v3/users", "/identity/v3/roles", "/identity/v3/role_assignments"] {
        let r = c.request(Method::GET, path, &[("x-auth-token", token)], None).await.unwrap();
        assert_eq!(r.status, 200);
        let mut v = r.json();
        v["links"] = serde_json::Value::Null;
        out.push_str(&v.to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;
    // A member of a second project, for authorization cases.
    let mk = |path: &'static str, body: serde_json::Value| (path, body.to_string().into_bytes());
    let (p, b) = mk("/identity/v3/projects", serde_json::json!({"project": {"name": "other"}}));
    let project = c.request(Method::POST, p, &[("x-auth-token", &admin)], Some(b)).await.unwrap().json();
    let (p, b) = mk("/identity/v3/users", serde_json::json!({"user": {"name": "bob", "password": "bob-pw"}}));
    let user = c.request(Method::POST, p, &[("x-auth-token", &admin)], Some(b)).await.unwrap().json();
    let roles = c
        .request(Method::GET, "/identity/v3/roles?name=member", &[("x-auth-token", &admin)], None)
        .await
        .unwrap()
        .json();
    let grant = format!(
        "/identity/v3/projects/{}/users/{}/roles/{}",
        project["project"]["id"].as_str().unwrap(),
        user["user"]["id"].as_str().unwrap(),
        roles["roles"][0]["id"].as_str().unwrap()
    );
    assert_eq!(c.request(Method::PUT, &grant, &[("x-auth-token", &admin)], None).await.unwrap().status, 204);
    let member = c.login("bob", "bob-pw", "other").await.unwrap().expect("bob logs in");

    let before = snapshot(&agent, &admin).await;
    let huge = format!("{{\"project\": {{\"name\": \"{}\"}}}}", "x".repeat(2 << 20)).into_bytes();
    let cases = [
        Case {
            name: "truncated JSON",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s("{\"auth\": {\"identity\""),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "not JSON",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s("hello"),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "empty body",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(""),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "methods of wrong type",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(r#"{"auth": {"identity": {"methods": "password"}}}"#),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "missing identity",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(r#"{"auth": {}}"#),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "unknown auth method",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(r#"{"auth": {"identity": {"methods": ["totp"], "totp": {}}}}"#),
            status: 401,
            ..Default::default()
        },
        Case {
            name: "password method without password object",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(r#"{"auth": {"identity": {"methods": ["password"]}}}"#),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "user without domain",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(
                r#"{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "x"}}}}}"#,
            ),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "domain scope without a role on the domain",
            method: Method::POST,
            path: "/identity/v3/auth/tokens",
            body: s(&format!(
                r#"{{"auth": {{"identity": {{"methods": ["password"], "password": {{"user": {{"name": "admin", "domain": {{"id": "default"}}, "password": "{PASSWORD}"}}}}}}, "scope": {{"domain": {{"id": "default"}}}}}}}}"#
            )),
            status: 401,
            ..Default::default()
        },
        Case {
            name: "huge body",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: Some(huge),
            status: 413,
            ..Default::default()
        },
        Case {
            name: "project name of wrong type",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: s(r#"{"project": {"name": 42}}"#),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "project name over Keystone's 64 characters",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: Some(format!(r#"{{"project": {{"name": "{}"}}}}"#, "a".repeat(65)).into_bytes()),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "empty project name",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: s(r#"{"project": {"name": ""}}"#),
            status: 400,
            ..Default::default()
        },
        Case {
            name: "project in unknown domain",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: s(r#"{"project": {"name": "p", "domain_id": "nope"}}"#),
            status: 404,
            ..Default::default()
        },
        Case {
            name: "duplicate project",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: s(r#"{"project": {"name": "other"}}"#),
            status: 409,
            ..Default::default()
        },
        Case {
            name: "duplicate user",
            method: Method::POST,
            path: "/identity/v3/users",
            body: s(r#"{"user": {"name": "bob"}}"#),
            status: 409,
            ..Default::default()
        },
        Case {
            name: "user with unknown default project",
            method: Method::POST,
            path: "/identity/v3/users",
            body: s(r#"{"user": {"name": "carol", "default_project_id": "nope"}}"#),
            status: 404,
            ..Default::default()
        },
        Case {
            name: "member creates project",
            method: Method::POST,
            path: "/identity/v3/projects",
            body: s(r#"{"project": {"name": "mine"}}"#),
            token: Token::Member,
            status: 403,
        },
        Case {
            name: "member deletes user",
            method: Method::DELETE,
            path: "/identity/v3/users/anything",
            token: Token::Member,
            status: 403,
            ..Default::default()
        },
        Case {
            name: "no token",
            method: Method::GET,
            path: "/identity/v3/projects",
            token: Token::None,
            status: 401,
            ..Default::default()
        },
        Case {
            name: "update missing project",
            method: Method::PATCH,
            path: "/identity/v3/projects/nope",
            body: s(r#"{"project": {"enabled": false}}"#),
            status: 404,
            ..Default::default()
        },
        Case {
            name: "delete missing user",
            method: Method::DELETE,
            path: "/identity/v3/users/nope",
            status: 404,
            ..Default::default()
        },
        Case {
            name: "grant to missing user",
            method: Method::PUT,
            path: "/identity/v3/projects/nope/users/nope/roles/nope",
            status: 404,
            ..Default::default()
        },
        Case {
            name: "validate without subject",
            method: Method::GET,
            path: "/identity/v3/auth/tokens",
            status: 400,
            ..Default::default()
        },
        Case {
            name: "validate garbage subject",
            method: Method::GET,
            path: "/identity/v3/auth/tokens",
            status: 404,
            ..Default::default()
        },
        Case {
            name: "unknown path",
            method: Method::GET,
            path: "/identity/v3/nothing-here",
            status: 404,
            ..Default::default()
        },
        Case {
            name: "wrong method",
            method: Method::PUT,
            path: "/identity/v3/projects/x",
            body: s("{}"),
            status: 405,
            ..Default::default()
        },
    ];
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = match case.token {
            Token::Admin => vec![("x-auth-token", admin.as_str())],
            Token::Member => vec![("x-auth-token", member.as_str())],
            Token::None => vec![],
        };
        if case.name == "validate garbage subject" {
            headers.push(("x-subject-token", "garbage.token"));
        }
        let mut conn = agent.conn().await;
        let r = conn.request(case.method.clone(), case.path, &headers, case.body.clone()).await.unwrap();
        assert_eq!(r.status, case.status, "{}: {}", case.name, String::from_utf8_lossy(&r.body));
        let err = &r.json()["error"];
        assert_eq!(err["code"], case.status, "{}: Keystone error body", case.name);
        assert!(err["title"].is_string() && err["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", case.name);
    }
    assert_eq!(snapshot(&agent, &admin).await, before, "refused requests changed the state");
    // Still serving.
    assert_eq!(agent.conn().await.request(Method::GET, "/healthz", &[], None).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_compute_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;
    let h = [("x-auth-token", admin.as_str())];
    let servers = "/compute/v2.1/servers";
    /// (what, method, path, body, status)
    type Bad = (&'static str, Method, &'static str, Option<Vec<u8>>, u16);
    let cases: [Bad; 16] = [
        ("no server object", Method::POST, servers, s("{}"), 400),
        ("no image nor boot volume", Method::POST, servers, s(r#"{"server": {"name": "a", "flavorRef": "1"}}"#), 400),
        (
            "min_count above max_count",
            Method::POST,
            servers,
            s(r#"{"server": {"name": "a", "flavorRef": "1", "imageRef": "i", "min_count": 3, "max_count": 2}}"#),
            400,
        ),
        (
            "networks of a wrong type",
            Method::POST,
            servers,
            s(r#"{"server": {"name": "a", "flavorRef": "1", "imageRef": "i", "networks": 5}}"#),
            400,
        ),
        ("action on no server", Method::POST, "/compute/v2.1/servers/nope/action", s(r#"{"pause": null}"#), 404),
        ("attach without a volume", Method::POST, "/compute/v2.1/servers/nope/os-volume_attachments", s("{}"), 400),
        ("detach from no server", Method::DELETE, "/compute/v2.1/servers/nope/os-volume_attachments/v", None, 404),
        ("update with an unknown field", Method::PUT, "/compute/v2.1/servers/nope", s(r#"{"server": {"x": 1}}"#), 400),
        (
            "update with a bad access address",
            Method::PUT,
            "/compute/v2.1/servers/nope",
            s(r#"{"server": {"accessIPv4": "1.2.3"}}"#),
            400,
        ),
        (
            "create with a blank metadata key",
            Method::POST,
            "/compute/v2.1/servers",
            s(r#"{"server": {"name": "s", "flavorRef": "1", "imageRef": "i", "metadata": {"": "v"}}}"#),
            400,
        ),
        ("events after a word", Method::GET, "/cairn/v1/events?after=x", None, 400),
        ("events by POST", Method::POST, "/cairn/v1/events", s("{}"), 405),
        ("diagnostics of no server", Method::GET, "/compute/v2.1/servers/nope/diagnostics", None, 404),
        ("diagnostics by POST", Method::POST, "/compute/v2.1/servers/nope/diagnostics", s("{}"), 405),
        ("probe of a node named by a word", Method::GET, "/cairn/v1/nodes/x/probe", None, 404),
        ("probe by POST", Method::POST, "/cairn/v1/nodes/1/probe", s("{}"), 405),
    ];
    for (name, method, path, body, status) in cases {
        let r = c.request(method, path, &h, body).await.unwrap();
        assert_eq!(r.status, status, "{name}: {}", String::from_utf8_lossy(&r.body));
        // Nova's body is {"<kind>": {"code", "message"}}; Keystone's (under /cairn) {"error": …}.
        let j = r.json();
        let inner = j.as_object().and_then(|o| o.values().next()).cloned().unwrap_or_default();
        assert_eq!(inner["code"], status, "{name}: error body {j}");
        assert!(inner["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {j}");
    }
    let r = c
        .request(
            Method::GET,
            servers,
            &[("x-auth-token", admin.as_str()), ("openstack-api-version", "compute 2.99")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 406, "a microversion beyond the maximum");
    // Nothing was written: no server, no notification.
    let listed = c.request(Method::GET, servers, &h, None).await.unwrap().json();
    assert_eq!(listed["servers"], serde_json::json!([]));
    let events = c.request(Method::GET, "/cairn/v1/events", &h, None).await.unwrap().json();
    assert_eq!(events["events"], serde_json::json!([]), "{events}");
}
