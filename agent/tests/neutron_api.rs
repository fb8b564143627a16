//! Neutron v2.0 over HTTP against the real agent: discovery, filters, `fields`, paging, and bad
//! input refused in Neutron's error format without changing anything.

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

async fn snapshot(c: &mut Conn, token: &str) -> String {
    let mut out = String::new();
    for p in ["/network/v2.0/networks", "/network/v2.0/subnets", "/network/v2.0/ports"] {
        let (s, v) = call(c, token, Method::GET, p, None).await;
        assert_eq!(s, 200);
        out.push_str(&v.to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neutron_api_shapes_filters_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("data"), None);
    let admin = agent.admin_token().await;
    let mut c = agent.conn().await;

    // Discovery, without and with a token.
    let r = c.request(Method::GET, "/network", &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["versions"][0]["id"], "v2.0");
    let (s, ext) = call(&mut c, &admin, Method::GET, "/network/v2.0/extensions", None).await;
    assert_eq!(s, 200);
    let aliases: Vec<&str> = ext["extensions"].as_array().unwrap().iter().filter_map(|e| e["alias"].as_str()).collect();
    assert!(aliases.contains(&"provider") && aliases.contains(&"external-net"), "{ext}");
    assert_eq!(call(&mut c, &admin, Method::GET, "/network/v2.0/extensions/provider", None).await.0, 200);
    assert_eq!(call(&mut c, &admin, Method::GET, "/network/v2.0/extensions/nope", None).await.0, 404);
    let r = c.request(Method::GET, "/network/v2.0/networks", &[], None).await.unwrap();
    assert_eq!(r.status, 401);
    assert!(r.json()["NeutronError"]["message"].is_string(), "Neutron's error format: {}", r.json());

    // Three networks; the VLAN id may arrive as a number or a string.
    let mut ids = Vec::new();
    for (name, vid) in [("a", json!(10)), ("b", json!("11")), ("c", json!(12))] {
        let body = json!({"network": {"name": name, "provider:network_type": "vlan", "provider:segmentation_id": vid}});
        let (s, v) = call(&mut c, &admin, Method::POST, "/network/v2.0/networks", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["network"]["id"].as_str().unwrap().to_owned());
    }
    let (_, v) = call(&mut c, &admin, Method::GET, "/network/v2.0/networks?name=b", None).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    assert_eq!(v["networks"][0]["provider:segmentation_id"], 11);
    let (_, v) = call(&mut c, &admin, Method::GET, "/network/v2.0/networks?name=a&name=c", None).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2, "repeated keys are OR");
    let (_, v) = call(&mut c, &admin, Method::GET, "/network/v2.0/networks?fields=id&fields=name", None).await;
    let first = v["networks"][0].as_object().unwrap();
    assert_eq!(first.len(), 2, "only the asked fields: {first:?}");
    let (_, v) =
        call(&mut c, &admin, Method::GET, &format!("/network/v2.0/networks/{}?fields=name", ids[0]), None).await;
    assert_eq!(v, json!({"network": {"name": "a"}}));
    let (_, page) = call(&mut c, &admin, Method::GET, "/network/v2.0/networks?limit=2", None).await;
    assert_eq!(page["networks"].as_array().unwrap().len(), 2);
    let next = page["networks_links"][0]["href"].as_str().unwrap().to_owned();
    let next_path = &next[next.find("/network/").unwrap()..];
    let (_, rest) = call(&mut c, &admin, Method::GET, next_path, None).await;
    assert_eq!(rest["networks"].as_array().unwrap().len(), 1, "the last one on the next page");
    assert!(rest.get("networks_links").is_none());
    let (_, v) =
        call(&mut c, &admin, Method::GET, "/network/v2.0/networks?shared=false&router:external=False", None).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 3, "booleans compare in any case");

    // Subnet and ports for filter checks.
    let body = json!({"subnet": {"network_id": ids[0], "cidr": "10.1.0.0/24", "ip_version": 4,
                                 "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.20"}],
                                 "dns_nameservers": ["192.0.2.53"], "gateway_ip": "10.1.0.1",
                                 "host_routes": [{"destination": "10.20.0.0/24", "nexthop": "10.1.0.9"}]}});
    let (s, sub) = call(&mut c, &admin, Method::POST, "/network/v2.0/subnets", Some(body)).await;
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["subnet"]["dns_nameservers"], json!(["192.0.2.53"]));
    assert_eq!(sub["subnet"]["host_routes"], json!([{"destination": "10.20.0.0/24", "nexthop": "10.1.0.9"}]));
    let sub_path = format!("/network/v2.0/subnets/{}", sub["subnet"]["id"].as_str().unwrap());
    let routes = json!({"subnet": {"host_routes": [{"destination": "10.30.0.0/16", "nexthop": "10.1.0.8"}]}});
    let (s, v) = call(&mut c, &admin, Method::PUT, &sub_path, Some(routes)).await;
    assert_eq!((s, v["subnet"]["host_routes"][0]["nexthop"].as_str()), (200, Some("10.1.0.8")), "{v}");
    let v6 = json!({"subnet": {"host_routes": [{"destination": "fd00::/64", "nexthop": "10.1.0.8"}]}});
    assert_eq!(call(&mut c, &admin, Method::PUT, &sub_path, Some(v6)).await.0, 400, "a route of another IP version");
    assert_eq!(
        call(&mut c, &admin, Method::GET, &sub_path, None).await.1["subnet"]["host_routes"][0]["nexthop"],
        "10.1.0.8"
    );
    let body = json!({"port": {"network_id": ids[0], "name": "vm-port", "device_owner": "compute:nova"}});
    let (s, port) = call(&mut c, &admin, Method::POST, "/network/v2.0/ports", Some(body)).await;
    assert_eq!(s, 201, "{port}");
    assert_eq!(port["port"]["fixed_ips"][0]["ip_address"], "10.1.0.11", ".10 went to the DHCP port");
    let (_, v) = call(
        &mut c,
        &admin,
        Method::GET,
        &format!("/network/v2.0/ports?network_id={}&device_owner=compute:nova", ids[0]),
        None,
    )
    .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    let (_, v) = call(&mut c, &admin, Method::GET, "/network/v2.0/ports?fixed_ips=ip_address%3D10.1.0.11", None).await;
    assert_eq!(v["ports"][0]["name"], "vm-port");
    let pid = port["port"]["id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        &mut c,
        &admin,
        Method::PUT,
        &format!("/network/v2.0/ports/{pid}"),
        Some(json!({"port": {"name": "renamed", "device_id": "vm-1"}})),
    )
    .await;
    assert_eq!((s, v["port"]["name"].as_str()), (200, Some("renamed")));

    // Bulk create: every item made, answered in order.
    let bulk = json!({"ports": [{"network_id": ids[0], "name": "b1"}, {"network_id": ids[0], "name": "b2"}]});
    let (s, v) = call(&mut c, &admin, Method::POST, "/network/v2.0/ports", Some(bulk)).await;
    let names: Vec<&str> = v["ports"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!((s, names), (201, vec!["b1", "b2"]), "{v}");
    for p in v["ports"].as_array().unwrap() {
        let path = format!("/network/v2.0/ports/{}", p["id"].as_str().unwrap());
        assert_eq!(call(&mut c, &admin, Method::DELETE, &path, None).await.0, 204);
    }

    // Bad input: the right status, Neutron's body, nothing changed.
    let before = snapshot(&mut c, &admin).await;
    let net = &ids[0];
    let cases: Vec<(&str, Method, String, Option<Value>, u16)> = vec![
        ("not JSON", Method::POST, "/network/v2.0/networks".into(), None, 400),
        (
            "unknown attribute",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"colour": "red"}})),
            400,
        ),
        (
            "a bulk create whose second item is bad: the first is undone",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"networks": [{"name": "bulk-ok"}, {"name": "bulk-bad", "colour": "red"}]})),
            400,
        ),
        ("an empty bulk create", Method::POST, "/network/v2.0/networks".into(), Some(json!({"networks": []})), 400),
        (
            "wrong type",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"admin_state_up": "maybe"}})),
            400,
        ),
        (
            "VLAN id 0",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "vlan", "provider:segmentation_id": 0}})),
            400,
        ),
        (
            "VLAN id 4095",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "vlan", "provider:segmentation_id": 4095}})),
            400,
        ),
        (
            "VLAN id text",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "vlan", "provider:segmentation_id": "ten"}})),
            400,
        ),
        (
            "VLAN id taken",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "vlan", "provider:segmentation_id": 10}})),
            409,
        ),
        (
            "flat with a VLAN id",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "flat", "provider:segmentation_id": 5}})),
            400,
        ),
        (
            "unknown physnet",
            Method::POST,
            "/network/v2.0/networks".into(),
            Some(json!({"network": {"provider:network_type": "flat", "provider:physical_network": "x"}})),
            400,
        ),
        (
            "CIDR with host bits",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.2.0.5/24", "ip_version": 4}})),
            400,
        ),
        (
            "version mismatch",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.2.0.0/24", "ip_version": 6}})),
            400,
        ),
        (
            "overlap",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.1.0.0/16", "ip_version": 4}})),
            400,
        ),
        (
            "gateway outside",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.3.0.0/24", "gateway_ip": "10.4.0.1"}})),
            400,
        ),
        (
            "pool holds gateway",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.3.0.0/24",
                                    "allocation_pools": [{"start": "10.3.0.1", "end": "10.3.0.9"}]}})),
            409,
        ),
        (
            "pool outside",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.3.0.0/24",
                                    "allocation_pools": [{"start": "10.9.0.2", "end": "10.9.0.9"}]}})),
            400,
        ),
        (
            "subnet on no network",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": "nope", "cidr": "10.3.0.0/24"}})),
            404,
        ),
        (
            "subnet pools",
            Method::POST,
            "/network/v2.0/subnets".into(),
            Some(json!({"subnet": {"network_id": net, "subnetpool_id": "p", "ip_version": 4}})),
            400,
        ),
        (
            "bad MAC",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": net, "mac_address": "zz:16:3e:00:00:01"}})),
            400,
        ),
        (
            "multicast MAC",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": net, "mac_address": "01:00:5e:00:00:01"}})),
            400,
        ),
        (
            "bad IP",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": net, "fixed_ips": [{"ip_address": "10.1.0.999"}]}})),
            400,
        ),
        (
            "IP taken",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": net, "fixed_ips": [{"ip_address": "10.1.0.11"}]}})),
            409,
        ),
        (
            "IP outside",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": net, "fixed_ips": [{"ip_address": "10.7.0.3"}]}})),
            409,
        ),
        (
            "port on no network",
            Method::POST,
            "/network/v2.0/ports".into(),
            Some(json!({"port": {"network_id": "nope"}})),
            404,
        ),
        (
            "change fixed IPs",
            Method::PUT,
            format!("/network/v2.0/ports/{pid}"),
            Some(json!({"port": {"fixed_ips": []}})),
            400,
        ),
        ("delete network in use", Method::DELETE, format!("/network/v2.0/networks/{net}"), None, 409),
        ("no such network", Method::GET, "/network/v2.0/networks/nope".into(), None, 404),
        ("no such route", Method::GET, "/network/v2.0/routers".into(), None, 404),
        ("method", Method::PATCH, "/network/v2.0/networks/x".into(), None, 405),
    ];
    for (name, method, path, body, status) in cases {
        let r = c
            .request(
                method,
                &path,
                &[("x-auth-token", &admin)],
                Some(body.map(|b| b.to_string().into_bytes()).unwrap_or_else(|| b"{not json".to_vec())),
            )
            .await
            .unwrap();
        assert_eq!(r.status, status, "{name}: {}", String::from_utf8_lossy(&r.body));
        let e = &r.json()["NeutronError"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()) && e["type"].is_string(), "{name}: {}", r.json());
    }
    assert_eq!(snapshot(&mut c, &admin).await, before, "refused requests changed nothing");
}
