//! Glance v2 over HTTP against the real agent: the status machine of uploads, JSON-patch,
//! paging, visibility between projects, and refusals that leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_agent::client::Conn;
use common::Agent;
use hyper::Method;
use serde_json::{json, Value};

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

async fn call(c: &mut Conn, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let r =
        c.request(method, path, &[("x-auth-token", token)], body.map(|b| b.to_string().into_bytes())).await.unwrap();
    (r.status, r.json())
}

async fn upload(c: &mut Conn, token: &str, id: &str, data: Vec<u8>) -> (u16, String) {
    let h = [("x-auth-token", token), ("content-type", "application/octet-stream")];
    let r = c.request(Method::PUT, &format!("/image/v2/images/{id}/file"), &h, Some(data)).await.unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

async fn patch(c: &mut Conn, token: &str, id: &str, ops: Value, ctype: &str) -> (u16, Value) {
    let h = [("x-auth-token", token), ("content-type", ctype)];
    let r = c
        .request(Method::PATCH, &format!("/image/v2/images/{id}"), &h, Some(ops.to_string().into_bytes()))
        .await
        .unwrap();
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_uploads_patches_and_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;

    let r = c.request(Method::GET, "/image", &[], None).await.unwrap();
    assert_eq!(r.status, 300);
    assert_eq!(r.json()["versions"][0]["status"], "CURRENT");

    // Create refusals.
    for (body, status) in [
        (json!({"name": "x", "disk_format": "vhd"}), 400),
        (json!({"name": "x", "container_format": "ovf"}), 400),
        (json!({"name": "x", "status": "active"}), 403),
        (json!({"name": "x", "size": 5}), 403),
        (json!({"name": "x", "min_disk": -1}), 400),
        (json!({"name": "x", "os_distro": 5}), 400),
        (json!({"name": "x", "id": "not-a-uuid"}), 400),
    ] {
        let (s, v) = call(&mut c, &admin, Method::POST, "/image/v2/images", Some(body.clone())).await;
        assert_eq!(s, status, "{body}: {v}");
    }
    let (_, list) = call(&mut c, &admin, Method::GET, "/image/v2/images", None).await;
    assert_eq!(list["images"], json!([]), "refused creates left nothing");

    // Upload rules: formats first, one upload, size limit, nothing kept on refusal.
    let (s, img) = call(&mut c, &admin, Method::POST, "/image/v2/images", Some(json!({"name": "a"}))).await;
    assert_eq!((s, img["status"].as_str()), (201, Some("queued")));
    let id = img["id"].as_str().unwrap().to_owned();
    assert_eq!(upload(&mut c, &admin, &id, vec![0; 512]).await.0, 400, "no disk_format yet");
    let (s, _) = patch(
        &mut c,
        &admin,
        &id,
        json!([{"op": "add", "path": "/disk_format", "value": "raw"},
                                                    {"op": "add", "path": "/container_format", "value": "bare"}]),
        PATCH,
    )
    .await;
    assert_eq!(s, 200);
    let r = c
        .request(Method::GET, &format!("/image/v2/images/{id}/file"), &[("x-auth-token", &admin)], None)
        .await
        .unwrap();
    assert_eq!(r.status, 204, "no data yet");
    let (s, body) = upload(&mut c, &admin, &id, vec![1; 9 << 20]).await;
    assert_eq!(s, 413, "over the configured 8 MiB: {body}");
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("/image/v2/images/{id}"), None).await.1["status"], "queued");
    assert_eq!(upload(&mut c, &admin, &id, vec![2; 4096]).await.0, 204);
    let (_, shown) = call(&mut c, &admin, Method::GET, &format!("/image/v2/images/{id}"), None).await;
    assert_eq!((shown["status"].as_str(), shown["size"].as_u64()), (Some("active"), Some(4096)));
    assert_eq!(upload(&mut c, &admin, &id, vec![3; 4096]).await.0, 409, "an active image takes no second upload");
    let r = c
        .request(Method::GET, &format!("/image/v2/images/{id}/file"), &[("x-auth-token", &admin)], None)
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 4096));
    assert_eq!(r.header("content-md5"), shown["checksum"].as_str());
    let (s, _) =
        patch(&mut c, &admin, &id, json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]), PATCH).await;
    assert_eq!(s, 403, "formats are fixed once data is there");

    // JSON-patch.
    let ops = json!([{"op": "replace", "path": "/name", "value": "renamed"},
                     {"op": "add", "path": "/os_distro", "value": "debian"},
                     {"op": "add", "path": "/tags", "value": ["t1", "t1", "t2"]}]);
    let (s, v) = patch(&mut c, &admin, &id, ops, PATCH).await;
    assert_eq!((s, v["name"].as_str(), v["os_distro"].as_str()), (200, Some("renamed"), Some("debian")));
    assert_eq!(v["tags"], json!(["t1", "t2"]));
    let (s, v) = patch(&mut c, &admin, &id, json!([{"op": "remove", "path": "/os_distro"}]), PATCH).await;
    assert_eq!(s, 200);
    assert!(v.get("os_distro").is_none());
    for (ops, status) in [
        (json!([{"op": "remove", "path": "/os_distro"}]), 409),
        (json!([{"op": "replace", "path": "/nope", "value": "x"}]), 409),
        (json!([{"op": "replace", "path": "/status", "value": "active"}]), 403),
        (json!([{"op": "remove", "path": "/name"}]), 403),
        (json!([{"op": "move", "path": "/name"}]), 400),
        (json!([{"op": "add", "path": "/a/b", "value": "x"}]), 400),
    ] {
        assert_eq!(patch(&mut c, &admin, &id, ops.clone(), PATCH).await.0, status, "{ops}");
    }
    assert_eq!(patch(&mut c, &admin, &id, json!([]), "application/json").await.0, 415);
    // The older media type keys each operation by its name.
    let v20 = "application/openstack-images-v2.0-json-patch";
    let (s, v) = patch(&mut c, &admin, &id, json!([{"replace": "/name", "value": "old-style"}]), v20).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("old-style")));
    assert_eq!(patch(&mut c, &admin, &id, json!([{"op": "replace", "path": "/name", "value": "x"}]), v20).await.0, 400);

    // Tags one at a time.
    let tag = |m: Method, t: &'static str| {
        let path = format!("/image/v2/images/{id}/tags/{t}");
        (m, path)
    };
    for (m, t, status) in
        [(Method::PUT, "t3", 204), (Method::PUT, "t3", 204), (Method::DELETE, "t1", 204), (Method::DELETE, "t1", 404)]
    {
        let (m, path) = tag(m, t);
        assert_eq!(call(&mut c, &admin, m, &path, None).await.0, status, "{path}");
    }
    let (_, v) = call(&mut c, &admin, Method::GET, &format!("/image/v2/images/{id}"), None).await;
    assert_eq!(v["tags"], json!(["t2", "t3"]));
    // `/v2/images/` is an image with an empty id, not the listing.
    assert_eq!(call(&mut c, &admin, Method::GET, "/image/v2/images/", None).await.0, 404);

    // Paging: newest first, 2 per page, following `next`.
    for n in 0..3 {
        call(
            &mut c,
            &admin,
            Method::POST,
            "/image/v2/images",
            Some(json!({"name": format!("p{n}"), "visibility": "public"})),
        )
        .await;
    }
    let (_, page) = call(&mut c, &admin, Method::GET, "/image/v2/images?limit=2", None).await;
    assert_eq!(page["images"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = call(&mut c, &admin, Method::GET, &format!("/image{next}"), None).await;
    assert_eq!(rest["images"].as_array().unwrap().len(), 2);
    assert!(rest.get("next").is_none());
    let (_, v) = call(&mut c, &admin, Method::GET, "/image/v2/images?name=p1", None).await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(call(&mut c, &admin, Method::GET, "/image/v2/images?sort_key=colour", None).await.0, 400);

    // A member of another project sees public images only, and may not publicize.
    let (_, p) =
        call(&mut c, &admin, Method::POST, "/identity/v3/projects", Some(json!({"project": {"name": "other"}}))).await;
    let pid = p["project"]["id"].as_str().unwrap().to_owned();
    let (_, u) = call(
        &mut c,
        &admin,
        Method::POST,
        "/identity/v3/users",
        Some(json!({"user": {"name": "carol", "password": "carol-pw", "default_project_id": pid}})),
    )
    .await;
    let uid = u["user"]["id"].as_str().unwrap().to_owned();
    let (_, roles) = call(&mut c, &admin, Method::GET, "/identity/v3/roles?name=member", None).await;
    let rid = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    call(&mut c, &admin, Method::PUT, &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"), None).await;
    let carol = agent.conn().await.login("carol", "carol-pw", "other").await.unwrap().unwrap();
    let (_, seen) = call(&mut c, &carol, Method::GET, "/image/v2/images", None).await;
    let names: Vec<&str> = seen["images"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names.len(), 3, "public ones only: {names:?}");
    assert_eq!(call(&mut c, &carol, Method::GET, &format!("/image/v2/images/{id}"), None).await.0, 404);
    assert_eq!(call(&mut c, &carol, Method::DELETE, &format!("/image/v2/images/{id}"), None).await.0, 404);
    let (s, _) =
        call(&mut c, &carol, Method::POST, "/image/v2/images", Some(json!({"name": "x", "visibility": "public"})))
            .await;
    assert_eq!(s, 403);
    let public = seen["images"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&mut c, &carol, Method::DELETE, &format!("/image/v2/images/{public}"), None).await.0, 403);

    // Only an admin sets an owner; the admin may give an image to another project.
    let (s, _) =
        call(&mut c, &carol, Method::POST, "/image/v2/images", Some(json!({"name": "x", "owner": "abc"}))).await;
    assert_eq!(s, 403);
    let (s, given) =
        call(&mut c, &admin, Method::POST, "/image/v2/images", Some(json!({"name": "given", "owner": pid}))).await;
    assert_eq!((s, given["owner"].as_str()), (201, Some(pid.as_str())));
    let gid = given["id"].as_str().unwrap();
    assert_eq!(call(&mut c, &carol, Method::GET, &format!("/image/v2/images/{gid}"), None).await.0, 200);
    let (s, v) = patch(&mut c, &admin, gid, json!([{"op": "replace", "path": "/owner", "value": "p2"}]), PATCH).await;
    assert_eq!((s, v["owner"].as_str()), (200, Some("p2")));

    // Deactivate (admin only): the data is for admins only until it is reactivated.
    let queued = format!("/image/v2/images/{public}/actions/deactivate");
    assert_eq!(call(&mut c, &admin, Method::POST, &queued, None).await.0, 403, "queued: nothing to withdraw");
    let body = json!({"name": "d", "visibility": "public", "disk_format": "raw", "container_format": "bare"});
    let (s, d) = call(&mut c, &admin, Method::POST, "/image/v2/images", Some(body)).await;
    assert_eq!(s, 201);
    let did = d["id"].as_str().unwrap().to_owned();
    let (file, act) = (format!("/image/v2/images/{did}/file"), |a: &str| format!("/image/v2/images/{did}/actions/{a}"));
    assert_eq!(upload(&mut c, &admin, &did, vec![5; 2048]).await.0, 204);
    assert_eq!(call(&mut c, &carol, Method::POST, &act("deactivate"), None).await.0, 403, "not hers");
    // Her own image she may withdraw (Glance's default policy: admin or the owning project).
    let mine = json!({"name": "mine", "disk_format": "raw", "container_format": "bare"});
    let (_, mine) = call(&mut c, &carol, Method::POST, "/image/v2/images", Some(mine)).await;
    let mid = mine["id"].as_str().unwrap().to_owned();
    assert_eq!(upload(&mut c, &carol, &mid, vec![1; 1024]).await.0, 204);
    let own = format!("/image/v2/images/{mid}/actions/deactivate");
    assert_eq!(call(&mut c, &carol, Method::POST, &own, None).await.0, 204);
    assert_eq!(call(&mut c, &carol, Method::DELETE, &format!("/image/v2/images/{mid}"), None).await.0, 204);
    assert_eq!(call(&mut c, &admin, Method::POST, &act("deactivate"), None).await.0, 204);
    assert_eq!(call(&mut c, &admin, Method::POST, &act("deactivate"), None).await.0, 204, "again: no change");
    let (_, v) = call(&mut c, &carol, Method::GET, &format!("/image/v2/images/{did}"), None).await;
    assert_eq!(v["status"], "deactivated");
    assert_eq!(c.request(Method::GET, &file, &[("x-auth-token", &carol)], None).await.unwrap().status, 403);
    assert_eq!(c.request(Method::GET, &file, &[("x-auth-token", &admin)], None).await.unwrap().status, 200);
    assert_eq!(call(&mut c, &admin, Method::POST, &act("reactivate"), None).await.0, 204);
    assert_eq!(c.request(Method::GET, &file, &[("x-auth-token", &carol)], None).await.unwrap().status, 200);
    assert_eq!(call(&mut c, &admin, Method::DELETE, &format!("/image/v2/images/{did}"), None).await.0, 204);

    // Delete removes the data.
    assert_eq!(call(&mut c, &admin, Method::DELETE, &format!("/image/v2/images/{id}"), None).await.0, 204);
    assert_eq!(std::fs::read_dir(agent.data.join("images")).unwrap().count(), 0);
    assert_eq!(call(&mut c, &admin, Method::GET, &format!("/image/v2/images/{id}"), None).await.0, 404);
}
