//! Nova v2.1 over HTTP against the real agent (an API-only node: no servers are built): the
//! shapes Nova's published schemas fix at 2.1 (key pairs, limits, quota sets, services), paging,
//! key pairs made here (checked with ssh-keygen), flavor bodies typed as Nova's schema, and bad
//! input refused in Nova's error format without changing anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_agent::client::Conn;
use common::Agent;
use hyper::Method;
use serde_json::{json, Value};

async fn call(c: &mut Conn, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let r =
        c.request(method, path, &[("x-auth-token", token)], body.map(|b| b.to_string().into_bytes())).await.unwrap();
    (r.status, r.json())
}

/// A call at compute microversion 2.`mv`.
async fn call_at(c: &mut Conn, token: &str, mv: u32, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let v = format!("compute 2.{mv}");
    let h = [("x-auth-token", token), ("openstack-api-version", v.as_str())];
    let r = c.request(method, path, &h, body.map(|b| b.to_string().into_bytes())).await.unwrap();
    (r.status, r.json())
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_bodies_paging_and_keypairs() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;
    let nova = "/compute/v2.1";

    // The version list answers 200, as Nova's.
    assert_eq!(c.request(Method::GET, "/compute/", &[], None).await.unwrap().status, 200);

    // A key pair made here: its private half once, a valid OpenSSH key of that public key.
    let (s, made) =
        call(&mut c, &admin, Method::POST, &format!("{nova}/os-keypairs"), Some(json!({"keypair": {"name": "gen"}})))
            .await;
    assert_eq!(s, 200, "{made}");
    assert_eq!(keys(&made["keypair"]), ["fingerprint", "name", "private_key", "public_key", "user_id"]);
    let pem = dir.path().join("gen.pem");
    std::fs::write(&pem, made["keypair"]["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let derived = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&pem).output().unwrap();
    assert!(derived.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&derived.stderr));
    let public = made["keypair"]["public_key"].as_str().unwrap();
    assert_eq!(String::from_utf8_lossy(&derived.stdout).split_whitespace().nth(1), public.split_whitespace().nth(1));
    // Shown at 2.1: Nova's fields, no private key and no `type`.
    let (_, shown) = call(&mut c, &admin, Method::GET, &format!("{nova}/os-keypairs/gen"), None).await;
    assert_eq!(
        keys(&shown["keypair"]),
        ["created_at", "deleted", "deleted_at", "fingerprint", "id", "name", "public_key", "updated_at", "user_id"]
    );
    let (_, list) = call(&mut c, &admin, Method::GET, &format!("{nova}/os-keypairs"), None).await;
    assert_eq!(keys(&list["keypairs"][0]["keypair"]), ["fingerprint", "name", "public_key"]);
    // An unknown field is refused, and nothing is made.
    let odd = json!({"keypair": {"name": "odd", "type": "x509"}});
    let (s, err) = call(&mut c, &admin, Method::POST, &format!("{nova}/os-keypairs"), Some(odd)).await;
    assert_eq!((s, err["badRequest"]["code"].as_u64()), (400, Some(400)), "{err}");
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{nova}/os-keypairs/odd"), None).await.0, 404);

    // Limits and quota sets carry exactly Nova 2.1's fields.
    let (_, limits) = call(&mut c, &admin, Method::GET, &format!("{nova}/limits"), None).await;
    assert!(limits["limits"]["absolute"].get("totalKeyPairsUsed").is_none(), "{limits}");
    assert_eq!(limits["limits"]["absolute"].as_object().unwrap().len(), 19, "{limits}");
    let project = "0123456789abcdef0123456789abcdef";
    let want = [
        "cores",
        "fixed_ips",
        "floating_ips",
        "id",
        "injected_file_content_bytes",
        "injected_file_path_bytes",
        "injected_files",
        "instances",
        "key_pairs",
        "metadata_items",
        "ram",
        "security_group_rules",
        "security_groups",
        "server_group_members",
        "server_groups",
    ];
    for path in ["", "/defaults", "/detail"] {
        let (s, q) = call(&mut c, &admin, Method::GET, &format!("{nova}/os-quota-sets/{project}{path}"), None).await;
        assert_eq!((s, keys(&q["quota_set"])), (200, want.map(String::from).to_vec()), "{path}: {q}");
    }

    // Services at 2.1 have no forced_down (2.11).
    let (_, services) = call(&mut c, &admin, Method::GET, &format!("{nova}/os-services"), None).await;
    let first = &services["services"][0];
    assert!(first.get("forced_down").is_none() && first["binary"].is_string(), "{services}");

    // Flavors: Nova's string booleans, paging by id with a link to the next page.
    for (name, public) in [("p-a", json!("True")), ("p-b", json!("false")), ("p-c", json!("1"))] {
        let body = json!({"flavor": {"name": name, "ram": "64", "vcpus": 1, "disk": 0, "id": name,
                                     "os-flavor-access:is_public": public}});
        let (s, v) = call(&mut c, &admin, Method::POST, &format!("{nova}/flavors"), Some(body)).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, v) = call(&mut c, &admin, Method::GET, &format!("{nova}/flavors/p-b"), None).await;
    assert_eq!(v["flavor"]["os-flavor-access:is_public"], false);
    let (_, p1) = call(&mut c, &admin, Method::GET, &format!("{nova}/flavors?limit=2"), None).await;
    let ids = |v: &Value| {
        v["flavors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), ["1", "2"]);
    let next = p1["flavors_links"][0]["href"].as_str().unwrap();
    assert!(next.ends_with("/compute/v2.1/flavors?limit=2&marker=2"), "{next}");
    let (_, p2) = call(&mut c, &admin, Method::GET, &format!("{nova}/flavors/detail?limit=10&marker=5"), None).await;
    assert_eq!(ids(&p2), ["p-a", "p-c"], "public flavors after 5, in id order");
    assert!(p2.get("flavors_links").is_none());
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{nova}/flavors?marker=nope"), None).await.0, 400);

    // Bad flavor bodies: 400 in Nova's format, nothing made.
    for body in [
        json!({"flavor": {"name": "x1", "ram": 64, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "maybe"}}),
        json!({"flavor": {"name": "x2", "ram": 0, "vcpus": 1, "disk": 0}}),
        json!({"flavor": {"name": "x3", "ram": "6x", "vcpus": 1, "disk": 0}}),
        json!({"flavor": {"name": "x4", "ram": 64, "vcpus": 1, "disk": 0, "description": "not at 2.1"}}),
        json!({"flavor": {"name": "   ", "ram": 64, "vcpus": 1, "disk": 0}}),
        json!({"flavor": {"ram": 64, "vcpus": 1, "disk": 0}}),
    ] {
        let (s, err) = call(&mut c, &admin, Method::POST, &format!("{nova}/flavors"), Some(body.clone())).await;
        assert_eq!((s, err["badRequest"]["code"].as_u64()), (400, Some(400)), "{body}: {err}");
    }
    let (_, all) = call(&mut c, &admin, Method::GET, &format!("{nova}/flavors?is_public=None"), None).await;
    assert_eq!(all["flavors"].as_array().unwrap().len(), 8, "5 defaults and 3 made: {all}");

    // Server metadata and addresses, on a server no node could take (ERROR, as in Nova).
    let img = json!({"name": "m", "disk_format": "raw", "container_format": "bare"});
    let (_, img) = call(&mut c, &admin, Method::POST, "/image/v2/images", Some(img)).await;
    let iid = img["id"].as_str().unwrap().to_owned();
    let h = [("x-auth-token", admin.as_str()), ("content-type", "application/octet-stream")];
    let up = c.request(Method::PUT, &format!("/image/v2/images/{iid}/file"), &h, Some(vec![0; 1 << 20])).await.unwrap();
    assert_eq!(up.status, 204);
    let body = json!({"server": {"name": "m1", "imageRef": iid, "flavorRef": "1", "networks": [],
                                 "metadata": {"a": "1", "b": "2"}}});
    let (s, made) = call(&mut c, &admin, Method::POST, &format!("{nova}/servers"), Some(body)).await;
    assert_eq!(s, 202, "{made}");
    let sid = made["server"]["id"].as_str().unwrap().to_owned();
    let meta = format!("{nova}/servers/{sid}/metadata");
    let (s, v) = call(&mut c, &admin, Method::POST, &meta, Some(json!({"metadata": {"c": "3"}}))).await;
    assert_eq!((s, v["metadata"].clone()), (200, json!({"a": "1", "b": "2", "c": "3"})), "merged");
    let (s, v) = call(&mut c, &admin, Method::PUT, &meta, Some(json!({"metadata": {"z": "9"}}))).await;
    assert_eq!((s, v["metadata"].clone()), (200, json!({"z": "9"})), "replaced");
    let (s, v) = call(&mut c, &admin, Method::PUT, &format!("{meta}/k"), Some(json!({"meta": {"k": "v"}}))).await;
    assert_eq!((s, v), (200, json!({"meta": {"k": "v"}})));
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{meta}/k"), None).await.1, json!({"meta": {"k": "v"}}));
    assert_eq!(call(&mut c, &admin, Method::DELETE, &format!("{meta}/k"), None).await.0, 204);
    for (m, path, body, status) in [
        (Method::DELETE, format!("{meta}/k"), None, 404),
        (Method::GET, format!("{meta}/k"), None, 404),
        (Method::PUT, format!("{meta}/k"), Some(json!({"meta": {"other": "v"}})), 400),
        (Method::PUT, meta.clone(), Some(json!({"metadata": {"n": 5}})), 400),
        (
            Method::POST,
            meta.clone(),
            Some(
                json!({"metadata": (0..129).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            ),
            403,
        ),
    ] {
        let (s, err) = call(&mut c, &admin, m, &path, body).await;
        assert_eq!(s, status, "{path}: {err}");
    }
    assert_eq!(
        call(&mut c, &admin, Method::GET, &meta, None).await.1["metadata"],
        json!({"z": "9"}),
        "refusals changed nothing"
    );
    // A rename answers Nova's base view (no extensions); a show has them.
    let (s, v) =
        call(&mut c, &admin, Method::PUT, &format!("{nova}/servers/{sid}"), Some(json!({"server": {"name": "m2"}})))
            .await;
    assert_eq!((s, v["server"]["name"].as_str()), (200, Some("m2")), "{v}");
    assert!(v["server"].get("OS-EXT-STS:vm_state").is_none() && v["server"].get("key_name").is_none(), "{v}");
    assert!(v["server"].get("progress").is_none(), "no progress in ERROR: {v}");
    let (_, v) = call(&mut c, &admin, Method::GET, &format!("{nova}/servers/{sid}"), None).await;
    assert_eq!(v["server"]["OS-EXT-STS:vm_state"], "error", "{v}");
    let (s, ips) = call(&mut c, &admin, Method::GET, &format!("{nova}/servers/{sid}/ips"), None).await;
    assert_eq!((s, ips), (200, json!({"addresses": {}})));
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{nova}/servers/{sid}/ips/nope"), None).await.0, 404);
    // List filters: a flavor or image no server has, a time to come.
    for (filter, n) in [
        ("flavor=1", 1),
        ("flavor=42", 0),
        (&format!("image={iid}")[..], 1),
        ("image=x", 0),
        ("changes-since=2999-01-01T00:00:00Z", 0),
    ] {
        let (_, v) = call(&mut c, &admin, Method::GET, &format!("{nova}/servers?{filter}"), None).await;
        assert_eq!(v["servers"].as_array().map(Vec::len), Some(n), "{filter}: {v}");
    }
    assert_eq!(
        call(&mut c, &admin, Method::GET, &format!("{nova}/servers?changes-since=yesterday"), None).await.0,
        400
    );

    // Hypervisors: none on an API-only node; statistics sum nothing; a search finds nothing.
    let (_, stats) = call(&mut c, &admin, Method::GET, &format!("{nova}/os-hypervisors/statistics"), None).await;
    assert_eq!(
        (stats["hypervisor_statistics"]["count"].as_u64(), stats["hypervisor_statistics"]["vcpus"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{nova}/os-hypervisors/nope/search"), None).await.0, 404);
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("{nova}/os-hypervisors/7/uptime"), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_microversions_up_to_2_79() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;
    let nova = "/compute/v2.1";
    let (_, v) = call(&mut c, &admin, Method::GET, nova, None).await;
    assert_eq!(v["version"]["version"], "2.79", "{v}");
    assert_eq!(call_at(&mut c, &admin, 80, Method::GET, &format!("{nova}/flavors"), None).await.0, 406);

    // Key pairs: type (2.2, created 201, deleted 204), X.509 made here, another user's (2.10).
    let kp = format!("{nova}/os-keypairs");
    let (s, k) =
        call_at(&mut c, &admin, 2, Method::POST, &kp, Some(json!({"keypair": {"name": "x", "type": "x509"}}))).await;
    assert_eq!((s, k["keypair"]["type"].as_str()), (201, Some("x509")), "{k}");
    assert!(k["keypair"]["public_key"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{k}");
    assert_eq!(k["keypair"]["fingerprint"].as_str().unwrap().len(), 59, "SHA-1 of the certificate: {k}");
    let (_, l) = call_at(&mut c, &admin, 35, Method::GET, &format!("{kp}?limit=1"), None).await;
    assert_eq!(l["keypairs"][0]["keypair"]["type"], "x509", "{l}");
    let bad = json!({"keypair": {"name": "y", "type": "x509", "public_key": "ssh-ed25519 AAAA"}});
    assert_eq!(call_at(&mut c, &admin, 2, Method::POST, &kp, Some(bad)).await.0, 400);
    let typed21 = json!({"keypair": {"name": "z", "type": "ssh"}});
    assert_eq!(call(&mut c, &admin, Method::POST, &kp, Some(typed21)).await.0, 400, "no type at 2.1");
    let other = json!({"keypair": {"name": "theirs", "user_id": "someone"}});
    assert_eq!(call_at(&mut c, &admin, 10, Method::POST, &kp, Some(other)).await.0, 201);
    let (_, theirs) = call_at(&mut c, &admin, 10, Method::GET, &format!("{kp}?user_id=someone"), None).await;
    assert_eq!(theirs["keypairs"][0]["keypair"]["name"], "theirs", "{theirs}");
    assert_eq!(call_at(&mut c, &admin, 10, Method::DELETE, &format!("{kp}/theirs?user_id=someone"), None).await.0, 204);
    assert_eq!(call_at(&mut c, &admin, 2, Method::DELETE, &format!("{kp}/x"), None).await.0, 204);

    // Flavors: description (2.55, and PUT), extra_specs (2.61), swap 0 (2.75).
    let f = json!({"flavor": {"name": "d1", "ram": 64, "vcpus": 1, "disk": 0, "description": "small"}});
    let (s, made) = call_at(&mut c, &admin, 55, Method::POST, &format!("{nova}/flavors"), Some(f)).await;
    assert_eq!(
        (s, made["flavor"]["description"].as_str(), made["flavor"]["swap"].clone()),
        (200, Some("small"), json!(""))
    );
    let fid = made["flavor"]["id"].as_str().unwrap().to_owned();
    let put = json!({"flavor": {"description": null}});
    let (s, v) = call_at(&mut c, &admin, 55, Method::PUT, &format!("{nova}/flavors/{fid}"), Some(put)).await;
    assert_eq!((s, v["flavor"]["description"].clone()), (200, Value::Null), "{v}");
    let (_, v) = call_at(&mut c, &admin, 75, Method::GET, &format!("{nova}/flavors/{fid}"), None).await;
    assert_eq!((v["flavor"]["swap"].clone(), v["flavor"]["extra_specs"].clone()), (json!(0), json!({})), "{v}");
    assert!(call(&mut c, &admin, Method::GET, &format!("{nova}/flavors/{fid}"), None).await.1["flavor"]
        .get("description")
        .is_none());

    // Limits and services.
    let (_, l) = call_at(&mut c, &admin, 57, Method::GET, &format!("{nova}/limits"), None).await;
    let abs = &l["limits"]["absolute"];
    assert!(
        abs.get("maxPersonality").is_none()
            && abs.get("maxImageMeta").is_none()
            && abs.get("maxTotalFloatingIps").is_none(),
        "{l}"
    );
    assert!(call(&mut c, &admin, Method::GET, &format!("{nova}/limits"), None).await.1["limits"]["absolute"]
        .get("maxPersonality")
        .is_some());
    let (_, sv) = call_at(&mut c, &admin, 53, Method::GET, &format!("{nova}/os-services"), None).await;
    let first = &sv["services"][0];
    assert!(uuid::Uuid::parse_str(first["id"].as_str().unwrap()).is_ok() && first["forced_down"] == false, "{sv}");

    servers_by_microversion(&mut c, &admin).await;
}

/// Servers at later microversions: networks required (2.37), description (2.19), tags (2.26,
/// 2.52), the show's fields, strict listing parameters (2.75), status values (2.38), topology.
async fn servers_by_microversion(c: &mut Conn, admin: &str) {
    let nova = "/compute/v2.1";
    let img = json!({"name": "m", "disk_format": "raw", "container_format": "bare"});
    let (_, img) = call(c, admin, Method::POST, "/image/v2/images", Some(img)).await;
    let iid = img["id"].as_str().unwrap().to_owned();
    let h = [("x-auth-token", admin), ("content-type", "application/octet-stream")];
    assert_eq!(
        c.request(Method::PUT, &format!("/image/v2/images/{iid}/file"), &h, Some(vec![0; 1 << 20]))
            .await
            .unwrap()
            .status,
        204
    );
    let servers = format!("{nova}/servers");
    let server = |extra: Value| {
        let mut b = json!({"name": "Mv One", "imageRef": iid, "flavorRef": "1"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"server": b})
    };
    for (mv, body) in [
        (1, server(json!({"networks": "none"}))),
        (37, server(json!({}))),
        (18, server(json!({"networks": [], "description": "too early"}))),
        (51, server(json!({"networks": "none", "tags": ["too-early"]}))),
        (79, server(json!({"networks": "none", "tags": ["a/b"]}))),
        (79, server(json!({"networks": "none", "trusted_image_certificates": ["c1"]}))),
    ] {
        let (s, e) = call_at(c, admin, mv, Method::POST, &servers, Some(body.clone())).await;
        assert_eq!(s, 400, "2.{mv} {body}: {e}");
    }
    let body = server(json!({"networks": "none", "description": "first", "tags": ["web"]}));
    let (s, made) = call_at(c, admin, 79, Method::POST, &servers, Some(body)).await;
    assert_eq!(s, 202, "{made}");
    let sid = made["server"]["id"].as_str().unwrap().to_owned();
    let (_, v) = call_at(c, admin, 79, Method::GET, &format!("{servers}/{sid}"), None).await;
    let sv = &v["server"];
    assert_eq!(
        (sv["description"].as_str(), sv["tags"].clone(), sv["locked"].clone()),
        (Some("first"), json!(["web"]), json!(false)),
        "{v}"
    );
    assert_eq!((sv["server_groups"].clone(), sv["trusted_image_certificates"].clone()), (json!([]), Value::Null));
    assert_eq!(
        (sv["flavor"]["original_name"].as_str(), sv["OS-EXT-SRV-ATTR:hostname"].as_str()),
        (Some("m1.tiny"), Some("mv-one"))
    );
    assert_eq!(sv["host_status"], "", "a server on no node: {v}");
    let (_, old) = call(c, admin, Method::GET, &format!("{servers}/{sid}"), None).await;
    assert!(old["server"].get("tags").is_none() && old["server"].get("description").is_none(), "{old}");

    // Tags: one added (201, then 204), checked, the filters, all replaced, one deleted.
    let tags = format!("{servers}/{sid}/tags");
    let h26 = [("x-auth-token", admin), ("openstack-api-version", "compute 2.26")];
    let db = format!("{tags}/db");
    let r = c.request(Method::PUT, &db, &h26, None).await.unwrap();
    assert_eq!(r.status, 201);
    let location = r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(location.ends_with("/tags/db"), "{:?}", r.headers);
    assert_eq!(c.request(Method::PUT, &db, &h26, None).await.unwrap().status, 204);
    assert_eq!(call_at(c, admin, 26, Method::GET, &format!("{tags}/db"), None).await.0, 204);
    assert_eq!(call_at(c, admin, 26, Method::GET, &format!("{tags}/nope"), None).await.0, 404);
    assert_eq!(call_at(c, admin, 25, Method::GET, &tags, None).await.0, 404, "no tags before 2.26");
    for (q, n) in
        [("tags=web,db", 1), ("tags=web,x", 0), ("tags-any=x,db", 1), ("not-tags=web,db", 0), ("not-tags-any=x", 1)]
    {
        let (_, l) = call_at(c, admin, 26, Method::GET, &format!("{servers}?{q}"), None).await;
        assert_eq!(l["servers"].as_array().map(Vec::len), Some(n), "{q}: {l}");
    }
    let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    assert_eq!(call_at(c, admin, 26, Method::PUT, &tags, Some(json!({"tags": many}))).await.0, 400);
    let (s, v) = call_at(c, admin, 26, Method::PUT, &tags, Some(json!({"tags": ["x", "y"]}))).await;
    assert_eq!((s, v), (200, json!({"tags": ["x", "y"]})));
    assert_eq!(call_at(c, admin, 26, Method::DELETE, &format!("{tags}/x"), None).await.0, 204);
    assert_eq!(call_at(c, admin, 26, Method::DELETE, &format!("{tags}/x"), None).await.0, 404);
    assert_eq!(call_at(c, admin, 26, Method::GET, &tags, None).await.1, json!({"tags": ["y"]}));

    // An update: the description cleared; from 2.75 answered as a show.
    let upd = json!({"server": {"description": null}});
    let (s, v) = call_at(c, admin, 75, Method::PUT, &format!("{servers}/{sid}"), Some(upd)).await;
    assert_eq!((s, v["server"]["description"].clone()), (200, Value::Null), "{v}");
    assert_eq!(v["server"]["OS-EXT-STS:vm_state"], "error", "{v}");
    let (_, v) =
        call_at(c, admin, 74, Method::PUT, &format!("{servers}/{sid}"), Some(json!({"server": {"name": "n"}}))).await;
    assert!(v["server"].get("OS-EXT-STS:vm_state").is_none(), "{v}");

    // Listing parameters and status values.
    assert_eq!(call_at(c, admin, 75, Method::GET, &format!("{servers}?bogus=1"), None).await.0, 400);
    assert_eq!(call_at(c, admin, 74, Method::GET, &format!("{servers}?bogus=1"), None).await.0, 200);
    assert_eq!(call_at(c, admin, 38, Method::GET, &format!("{servers}?status=NOPE"), None).await.0, 400);
    let (s, l) = call_at(c, admin, 37, Method::GET, &format!("{servers}?status=NOPE"), None).await;
    assert_eq!((s, l["servers"].as_array().map(Vec::len)), (200, Some(0)));
    let (_, l) = call_at(c, admin, 73, Method::GET, &format!("{servers}?locked=false"), None).await;
    assert_eq!(l["servers"].as_array().map(Vec::len), Some(1), "{l}");
    let (_, l) =
        call_at(c, admin, 66, Method::GET, &format!("{servers}?changes-before=2000-01-01T00:00:00Z"), None).await;
    assert_eq!(l["servers"].as_array().map(Vec::len), Some(0), "{l}");

    // Topology (2.78): none without a NUMA shape.
    let (s, t) = call_at(c, admin, 78, Method::GET, &format!("{servers}/{sid}/topology"), None).await;
    assert_eq!((s, t), (200, json!({"nodes": [], "pagesize_kb": null})));
    assert_eq!(call_at(c, admin, 77, Method::GET, &format!("{servers}/{sid}/topology"), None).await.0, 404);
}
