//! How Nova shows a server, by microversion: the extended attributes of admins (2.3 adds
//! reservation, launch index, host name, root device, user data), `locked` (2.9),
//! `host_status` for admins (2.16), `description` (2.19), `tags` (2.26), the flavor itself
//! instead of a link (2.47), `trusted_image_certificates` (2.63), `server_groups` in a show
//! (2.71), `locked_reason` (2.73), and an update answered with the whole server (2.75).

use super::super::http::timestamp;
use crate::model::compute::{hostname, Server};
use serde_json::{json, Map, Value};

/// Which answer a server is part of: a plain listing (id, name, links), an update, a detailed
/// listing, or a show.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    Summary,
    Updated,
    Detail,
    Show,
}

/// What shapes the answer beyond the server: the view, the microversion (2.`mv`), whether the
/// caller is an admin, and its node's status (Nova's `host_status`).
#[derive(Clone, Copy)]
pub(super) struct Shape<'a> {
    pub view: View,
    pub mv: u32,
    pub admin: bool,
    pub host_status: &'a str,
}

/// A server's addresses: (network name, address, MAC) each.
pub(super) type Addresses = [(String, std::net::IpAddr, String)];

pub(super) fn server_json(s: &Server, addresses: &Addresses, base: &str, shape: Shape<'_>) -> Value {
    let href = format!("{base}/compute/v2.1/servers/{}", s.id);
    let links = json!([{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]);
    if shape.view == View::Summary {
        return json!({"id": s.id, "name": s.name, "links": links});
    }
    let mut j = base_json(s, addresses, base, links, shape.mv);
    // From 2.75 an update answers with all a show has.
    let full = match shape.view {
        View::Detail | View::Show => true,
        View::Updated => shape.mv >= 75,
        View::Summary => false,
    };
    if full {
        extend(&mut j, extended_json(s, shape));
    }
    let later = [
        (9, "locked", json!(false)),
        (19, "description", json!(s.description)),
        (26, "tags", json!(s.tags)),
        (63, "trusted_image_certificates", Value::Null),
        (73, "locked_reason", Value::Null),
    ];
    for (minor, k, v) in later {
        if shape.mv >= minor {
            j[k] = v;
        }
    }
    if shape.mv >= 71 && matches!(shape.view, View::Show | View::Updated) {
        j["server_groups"] = json!([]);
    }
    j
}

/// Nova's base view: what every show, listing with detail and update has.
fn base_json(s: &Server, addresses: &Addresses, base: &str, links: Value, mv: u32) -> Value {
    // hostId: a hash of the project and the node (Nova uses SHA-224; any opaque digest will
    // do), so projects cannot map the hosts.
    let host_id = if s.node.is_empty() {
        String::new()
    } else {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("{}{}", s.project_id, s.node).as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    let image = if s.image_id.is_empty() {
        json!("")
    } else {
        json!({"id": s.image_id, "links": [{"rel": "bookmark", "href": format!("{base}/image/v2/images/{}", s.image_id)}]})
    };
    let f = &s.flavor;
    let flavor = if mv >= 47 {
        json!({"original_name": f.name, "vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb,
               "ephemeral": f.ephemeral_gb, "swap": f.swap_mb, "extra_specs": f.extra_specs})
    } else {
        let flavor_href = format!("{base}/compute/v2.1/flavors/{}", f.id);
        json!({"id": f.id, "links": [{"rel": "bookmark", "href": flavor_href}]})
    };
    let mut j = json!({
        "id": s.id, "name": s.name, "status": s.status(), "tenant_id": s.project_id, "user_id": s.user_id,
        "metadata": s.metadata, "hostId": host_id, "image": image, "flavor": flavor,
        "created": timestamp(s.created_at, false), "updated": timestamp(s.updated_at, false),
        "addresses": addresses_json(addresses), "accessIPv4": s.access_ipv4.map_or(String::new(), |a| a.to_string()),
        "accessIPv6": s.access_ipv6.map_or(String::new(), |a| a.to_string()), "links": links, "OS-DCF:diskConfig": "MANUAL",
    });
    if let Some(f) = &s.fault {
        j["fault"] = json!({"code": f.code, "message": f.message, "created": timestamp(f.created, false)});
    }
    // Nova shows progress only while a server is in one of its progress statuses.
    if matches!(s.status(), "ACTIVE" | "BUILD") {
        j["progress"] = json!(0);
    }
    j
}

/// The extensions of a show or detailed listing; the host attributes for admins.
fn extended_json(s: &Server, shape: Shape<'_>) -> Value {
    let volumes: Vec<Value> = s
        .volumes
        .iter()
        .map(|v| {
            if shape.mv >= 3 {
                json!({"id": v.volume_id, "delete_on_termination": v.delete_on_termination})
            } else {
                json!({"id": v.volume_id})
            }
        })
        .collect();
    let mut j = json!({
        "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:task_state": s.task_state.map(|t| t.as_str()), "OS-EXT-STS:power_state": s.power_state as u8,
        "OS-EXT-AZ:availability_zone": s.availability_zone, "key_name": s.key_name, "config_drive": "True",
        "OS-SRV-USG:launched_at": s.launched_at.map(|t| timestamp(t, true)), "OS-SRV-USG:terminated_at": null,
        "os-extended-volumes:volumes_attached": volumes, "security_groups": [],
    });
    if !shape.admin {
        return j;
    }
    j["OS-EXT-SRV-ATTR:host"] = json!(s.node);
    j["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.node);
    j["OS-EXT-SRV-ATTR:instance_name"] = json!(crate::compute::driver::domain_name(&s.id));
    if shape.mv >= 3 {
        let host = if s.hostname.is_empty() { hostname(&s.name) } else { s.hostname.clone() };
        let root = s.volumes.iter().find(|v| v.boot).map_or("/dev/vda", |v| v.device.as_str());
        extend(
            &mut j,
            json!({"OS-EXT-SRV-ATTR:reservation_id": s.reservation_id, "OS-EXT-SRV-ATTR:launch_index": s.launch_index,
                   "OS-EXT-SRV-ATTR:hostname": host, "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                   "OS-EXT-SRV-ATTR:root_device_name": root, "OS-EXT-SRV-ATTR:user_data": s.user_data}),
        );
    }
    if shape.mv >= 16 {
        j["host_status"] = json!(shape.host_status);
    }
    j
}

fn extend(j: &mut Value, more: Value) {
    if let (Some(o), Value::Object(e)) = (j.as_object_mut(), more) {
        o.extend(e);
    }
}

pub(super) fn addresses_json(addresses: &Addresses) -> Value {
    let mut by_net: Map<String, Value> = Map::new();
    for (net, ip, mac) in addresses {
        let entry = json!({"addr": ip.to_string(), "version": if ip.is_ipv4() { 4 } else { 6 },
                           "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac});
        if let Value::Array(a) = by_net.entry(net.clone()).or_insert_with(|| json!([])) {
            a.push(entry);
        }
    }
    Value::Object(by_net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn each_microversion_adds_its_fields_and_no_other() {
        let s: Server = serde_json::from_value(json!({
            "id": "s1", "name": "Web 1", "project_id": "p", "user_id": "u",
            "flavor": crate::model::compute::default_flavors()[0], "image_id": "i", "node": "n1",
            "resources": {"vcpus": 1, "memory_mb": 512, "disk_gb": 1}, "vm_state": "active", "task_state": null,
            "power_state": "Running", "fault": null, "key_name": null, "availability_zone": "nova", "metadata": {},
            "created_at": 0, "updated_at": 0, "launched_at": null, "tags": ["a"]}))
        .unwrap();
        let at = |view, mv, admin| server_json(&s, &[], "https://c", Shape { view, mv, admin, host_status: "UP" });
        let show21 = at(View::Show, 1, true);
        assert!(show21.get("locked").is_none() && show21.get("OS-EXT-SRV-ATTR:hostname").is_none());
        assert_eq!(show21["flavor"]["id"], "1");
        let show = at(View::Show, 79, true);
        assert_eq!(show["OS-EXT-SRV-ATTR:hostname"], "web-1");
        assert_eq!((show["locked"].clone(), show["host_status"].clone()), (json!(false), json!("UP")));
        assert_eq!((show["tags"].clone(), show["server_groups"].clone()), (json!(["a"]), json!([])));
        assert_eq!(show["flavor"]["original_name"], "m1.tiny");
        assert!(show["flavor"].get("id").is_none());
        let member = at(View::Show, 79, false);
        assert!(member.get("host_status").is_none() && member.get("OS-EXT-SRV-ATTR:host").is_none());
        assert!(at(View::Detail, 79, true).get("server_groups").is_none(), "server_groups only in a show");
        let updated74 = at(View::Updated, 74, true);
        assert!(updated74.get("OS-EXT-STS:vm_state").is_none() && updated74.get("server_groups").is_some());
        let mut updated75 = keys(&at(View::Updated, 75, true));
        let mut show75 = keys(&at(View::Show, 75, true));
        updated75.sort();
        show75.sort();
        assert_eq!(updated75, show75, "from 2.75 an update answers as a show");
    }
}
