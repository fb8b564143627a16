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

fn body(v: serde_json::Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

/// Logs in with `auth` (Keystone's `auth` object); the token and the answer's `token`.
async fn login(c: &mut cairn_agent::client::Conn, auth: serde_json::Value) -> (u16, String, serde_json::Value) {
    let r = c.request(Method::POST, "/identity/v3/auth/tokens", &[], body(json!({ "auth": auth }))).await.unwrap();
    let token = r.header("x-subject-token").unwrap_or_default().to_owned();
    (r.status, token, r.json()["token"].clone())
}

fn password(user: &str, domain: &str, pw: &str, scope: serde_json::Value) -> serde_json::Value {
    json!({"identity": {"methods": ["password"],
                        "password": {"user": {"name": user, "domain": {"name": domain}, "password": pw}}},
           "scope": scope})
}

/// Domains with their own names, groups whose grants reach their members, domain- and
/// system-scoped tokens, application credentials (and what they may not do), and a domain's
/// delete taking everything in it — with users of one domain kept out of another's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_groups_scopes_and_application_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let mut c = agent.conn().await;
    let admin = agent.admin_token().await;
    let ah = [("x-auth-token", admin.as_str())];
    let post = async |c: &mut cairn_agent::client::Conn, path: &str, v: serde_json::Value| {
        let r = c.request(Method::POST, path, &ah, body(v)).await.unwrap();
        assert_eq!(r.status, 201, "{path}: {:?}", r.json());
        r.json()
    };
    let d = post(&mut c, "/identity/v3/domains", json!({"domain": {"name": "lab", "description": "the lab"}})).await;
    let did = d["domain"]["id"].as_str().unwrap().to_owned();
    let r =
        c.request(Method::POST, "/identity/v3/domains", &ah, body(json!({"domain": {"name": "lab"}}))).await.unwrap();
    assert_eq!(r.status, 409, "domain names are unique");
    // The same project and user names live in both domains.
    let p = post(
        &mut c,
        "/identity/v3/projects",
        json!({"project": {"name": "web", "domain_id": did, "tags": ["a", "b"]}}),
    )
    .await;
    let pid = p["project"]["id"].as_str().unwrap().to_owned();
    assert_eq!(p["project"]["tags"], json!(["a", "b"]));
    post(&mut c, "/identity/v3/projects", json!({"project": {"name": "web"}})).await;
    let u =
        post(&mut c, "/identity/v3/users", json!({"user": {"name": "eve", "domain_id": did, "password": "eve-pw"}}))
            .await;
    let uid = u["user"]["id"].as_str().unwrap().to_owned();
    post(&mut c, "/identity/v3/users", json!({"user": {"name": "eve", "password": "other-pw"}})).await;
    let roles = c.request(Method::GET, "/identity/v3/roles?name=member", &ah, None).await.unwrap().json();
    let member = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    let roles = c.request(Method::GET, "/identity/v3/roles?name=reader", &ah, None).await.unwrap().json();
    let reader = roles["roles"][0]["id"].as_str().unwrap().to_owned();

    // Nothing granted yet: eve of lab logs in unscoped only.
    let (s, _, _) =
        login(&mut c, password("eve", "lab", "eve-pw", json!({"project": {"name": "web", "domain": {"name": "lab"}}})))
            .await;
    assert_eq!(s, 401);
    // A group's grant on the project reaches its member.
    let g = post(&mut c, "/identity/v3/groups", json!({"group": {"name": "ops", "domain_id": did}})).await;
    let gid = g["group"]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/identity/v3/groups/{gid}/users/{uid}"),
        format!("/identity/v3/projects/{pid}/groups/{gid}/roles/{member}"),
        format!("/identity/v3/domains/{did}/users/{uid}/roles/{member}"),
        format!("/identity/v3/system/users/{uid}/roles/{reader}"),
    ] {
        assert_eq!(c.request(Method::PUT, &path, &ah, None).await.unwrap().status, 204, "{path}");
    }
    let (s, eve, t) =
        login(&mut c, password("eve", "lab", "eve-pw", json!({"project": {"name": "web", "domain": {"name": "lab"}}})))
            .await;
    assert_eq!(s, 201);
    assert_eq!(
        (t["project"]["id"].as_str(), t["project"]["domain"]["name"].as_str()),
        (Some(pid.as_str()), Some("lab"))
    );
    assert_eq!(t["roles"][0]["name"], "member");
    let r = c
        .request(Method::GET, &format!("/identity/v3/role_assignments?effective&user.id={uid}"), &ah, None)
        .await
        .unwrap();
    let scopes: Vec<String> =
        r.json()["role_assignments"].as_array().unwrap().iter().map(|a| a["scope"].to_string()).collect();
    assert_eq!(
        scopes.len(),
        3,
        "the group's project grant shows as eve's, with her domain and system ones: {scopes:?}"
    );
    // Domain and system scopes.
    let (s, _, t) = login(&mut c, password("eve", "lab", "eve-pw", json!({"domain": {"id": did}}))).await;
    assert_eq!((s, t["domain"]["name"].as_str()), (201, Some("lab")));
    // The admin role on a domain makes no cloud admin.
    let roles = c.request(Method::GET, "/identity/v3/roles?name=admin", &ah, None).await.unwrap().json();
    let admin_role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    let grant = format!("/identity/v3/domains/{did}/users/{uid}/roles/{admin_role}");
    assert_eq!(c.request(Method::PUT, &grant, &ah, None).await.unwrap().status, 204);
    let (s, dom, _) = login(&mut c, password("eve", "lab", "eve-pw", json!({"domain": {"id": did}}))).await;
    assert_eq!(s, 201);
    let dh = [("x-auth-token", dom.as_str())];
    assert_eq!(c.request(Method::GET, "/identity/v3/users", &dh, None).await.unwrap().status, 403);
    let r = c.request(Method::POST, "/identity/v3/domains", &dh, body(json!({"domain": {"name": "x"}}))).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(c.request(Method::DELETE, &grant, &ah, None).await.unwrap().status, 204);
    let (s, sys, t) = login(&mut c, password("eve", "lab", "eve-pw", json!({"system": {"all": true}}))).await;
    assert_eq!((s, t["system"]["all"].as_bool(), t["roles"][0]["name"].as_str()), (201, Some(true), Some("reader")));
    let sh = [("x-auth-token", sys.as_str())];
    assert_eq!(
        c.request(Method::GET, "/identity/v3/users", &sh, None).await.unwrap().status,
        200,
        "a system reader reads"
    );
    let r =
        c.request(Method::POST, "/identity/v3/projects", &sh, body(json!({"project": {"name": "x"}}))).await.unwrap();
    assert_eq!(r.status, 403, "and writes nothing");
    // A project member is no reader of the cloud.
    let eh = [("x-auth-token", eve.as_str())];
    for path in ["/identity/v3/users", "/identity/v3/domains", "/identity/v3/projects", "/identity/v3/role_assignments"]
    {
        assert_eq!(c.request(Method::GET, path, &eh, None).await.unwrap().status, 403, "{path}");
    }

    // An application credential: the secret shown once, a login without the password, only
    // its own roles, and no further credentials from a restricted one.
    let path = format!("/identity/v3/users/{uid}/application_credentials");
    let r = c.request(Method::POST, &path, &eh, body(json!({"application_credential": {"name": "ci"}}))).await.unwrap();
    assert_eq!(r.status, 201);
    let (cid, secret) = (
        r.json()["application_credential"]["id"].as_str().unwrap().to_owned(),
        r.json()["application_credential"]["secret"].as_str().unwrap().to_owned(),
    );
    let r = c.request(Method::GET, &format!("{path}/{cid}"), &eh, None).await.unwrap();
    assert!(r.json()["application_credential"].get("secret").is_none());
    let ac = |secret: &str| {
        json!({"identity": {"methods": ["application_credential"],
                                                 "application_credential": {"id": cid, "secret": secret}}})
    };
    assert_eq!(login(&mut c, ac("wrong")).await.0, 401);
    let (s, act, t) = login(&mut c, ac(&secret)).await;
    assert_eq!(
        (s, t["project"]["id"].as_str(), t["methods"][0].as_str()),
        (201, Some(pid.as_str()), Some("application_credential"))
    );
    let h = [("x-auth-token", act.as_str())];
    let r = c.request(Method::POST, &path, &h, body(json!({"application_credential": {"name": "ci2"}}))).await.unwrap();
    assert_eq!(r.status, 403, "a restricted credential makes no other");
    // Another user's credentials are not eve's to see.
    let admin_id = c.request(Method::GET, "/identity/v3/users?name=admin", &ah, None).await.unwrap().json()["users"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c.request(Method::GET, &format!("/identity/v3/users/{admin_id}/application_credentials"), &eh, None).await;
    assert_eq!(r.unwrap().status, 403);
    // Losing the role ends the credential's tokens.
    c.request(Method::DELETE, &format!("/identity/v3/groups/{gid}/users/{uid}"), &ah, None).await.unwrap();
    assert_eq!(c.request(Method::GET, "/identity/v3/auth/projects", &h, None).await.unwrap().status, 401);
    assert_eq!(login(&mut c, ac(&secret)).await.0, 401);

    // A domain is deleted only when disabled, and takes its projects, users and groups along.
    let dp = format!("/identity/v3/domains/{did}");
    assert_eq!(c.request(Method::DELETE, &dp, &ah, None).await.unwrap().status, 403);
    let r = c.request(Method::PATCH, &dp, &ah, body(json!({"domain": {"enabled": false}}))).await.unwrap();
    assert_eq!(r.json()["domain"]["enabled"], false);
    assert_eq!(
        login(&mut c, password("eve", "lab", "eve-pw", json!(null))).await.0,
        401,
        "no login in a disabled domain"
    );
    assert_eq!(c.request(Method::DELETE, &dp, &ah, None).await.unwrap().status, 204);
    for gone in [
        format!("/identity/v3/projects/{pid}"),
        format!("/identity/v3/users/{uid}"),
        format!("/identity/v3/groups/{gid}"),
    ] {
        assert_eq!(c.request(Method::GET, &gone, &ah, None).await.unwrap().status, 404, "{gone}");
    }
    // The default domain's eve and web are untouched.
    assert!(c.login("eve", "other-pw", "web").await.unwrap().is_none(), "no role there, so no project token");
    let r = c.request(Method::GET, "/identity/v3/projects?name=web", &ah, None).await.unwrap();
    assert_eq!(r.json()["projects"].as_array().unwrap().len(), 1);
}
