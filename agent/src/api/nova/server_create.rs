//! `POST /servers`: the create body, typed as Nova's schema has it (unknown fields refused, and
//! fields of later microversions below them), and turned into one [`NewServer`] and its counts.
//! By microversion: device tags on networks and mappings (2.32 to 2.36, and from 2.42),
//! `description` (2.19), `networks` required and `auto`/`none` (2.37), `tags` (2.52),
//! `trusted_image_certificates` (2.63; refused: image signature verification is not offered),
//! a mapping's `volume_type` (2.67), `host` and `hypervisor_hostname` for admins (2.74).

use super::super::error::ApiError;
use super::super::params::{Count, Flag};
use super::{bad, since};
use crate::compute::{BootVolume, NetRequest, Networks, NewServer, METADATA_ITEMS};
use crate::model::compute::{check_server_name, check_tag, MAX_TAGS};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The `server` object of a create.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerCreate {
    name: String,
    #[serde(rename = "imageRef", default)]
    image_ref: Option<String>,
    #[serde(rename = "flavorRef", deserialize_with = "string_or_number")]
    flavor_ref: String,
    #[serde(default)]
    networks: Option<NetworksBody>,
    #[serde(default)]
    block_device_mapping_v2: Option<Vec<Bdm>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    user_data: Option<String>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    min_count: Option<Count>,
    #[serde(default)]
    max_count: Option<Count>,
    #[serde(default)]
    return_reservation_id: Option<Flag>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<Ipv4Addr>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<Ipv6Addr>,
    /// Security groups: none are enforced yet (routers and security groups issue); `default`
    /// is what every server has, and naming it is accepted.
    #[serde(default)]
    security_groups: Option<Vec<NameRef>>,
    #[serde(default)]
    config_drive: Option<Value>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<String>,
    #[serde(default, deserialize_with = "super::super::params::nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::super::params::nullable")]
    trusted_image_certificates: Option<Option<Vec<String>>>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hypervisor_hostname: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NetworksBody {
    /// `"auto"` or `"none"`.
    Word(String),
    List(Vec<NetworkEntry>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    fixed_ip: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct NameRef {
    name: String,
}

/// One `block_device_mapping_v2` entry (the fields read; others, such as `device_name` or
/// `disk_bus`, are hints this cloud chooses itself).
#[derive(Deserialize)]
struct Bdm {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    source_type: Option<String>,
    #[serde(default)]
    destination_type: Option<String>,
    #[serde(default, deserialize_with = "index")]
    boot_index: Option<i64>,
    #[serde(default)]
    delete_on_termination: Option<Flag>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    volume_type: Option<String>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("{other} is not a string"))),
    }
}

/// A boot index: a number, a string of one, or null (none).
fn index<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| serde::de::Error::custom("not an integer")),
        other => Err(serde::de::Error::custom(format!("{other} is not an integer"))),
    }
}

/// Who asks, at which microversion (2.`mv`).
#[derive(Clone, Copy)]
pub(super) struct At {
    pub mv: u32,
    pub admin: bool,
}

/// What a create asks for beyond the server itself.
pub(super) struct Request {
    pub server: NewServer,
    pub counts: (u32, u32),
    pub return_reservation_id: bool,
}

impl ServerCreate {
    pub(super) fn into_request(self, cx: At) -> Result<Request, ApiError> {
        check_server_name(&self.name).map_err(|e| bad(e.to_string()))?;
        let counts = counts(self.min_count, self.max_count)?;
        let metadata = metadata(self.metadata.unwrap_or_default())?;
        let bdms = self.block_device_mapping_v2.unwrap_or_default();
        check_device_tags(cx, self.networks.as_ref(), &bdms)?;
        if bdms.iter().any(|b| b.volume_type.is_some()) && cx.mv < 67 {
            return Err(bad("Invalid input for field/attribute volume_type: additional property (needs 2.67)."));
        }
        let boot_volume = boot_volume(&bdms)?;
        // imageRef may be a URL ending in the id; empty when booting from a volume.
        let image_id = self.image_ref.unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned();
        if image_id.is_empty() && boot_volume.is_none() {
            return Err(bad(
                "Invalid input: imageRef, or a block_device_mapping_v2 entry booting from a volume, is required.",
            ));
        }
        if let Some(u) = &self.user_data {
            use base64::Engine;
            if u.len() > 65535 || base64::engine::general_purpose::STANDARD.decode(u).is_err() {
                return Err(bad("Invalid input for field/attribute user_data: not base64, or over 64 KiB."));
            }
        }
        if self.disk_config.as_deref().is_some_and(|d| d != "AUTO" && d != "MANUAL") {
            return Err(bad("Invalid input for field/attribute OS-DCF:diskConfig: AUTO or MANUAL."));
        }
        // Every server has a config drive; asking for one (or not) changes nothing.
        if self.config_drive.as_ref().is_some_and(|c| !c.is_boolean() && !c.is_string() && !c.is_null()) {
            return Err(bad("Invalid input for field/attribute config_drive."));
        }
        if let Some(g) = self.security_groups.iter().flatten().find(|g| g.name != "default") {
            return Err(ApiError::BadRequest(format!(
                "Security group {} not found: security groups are not offered yet; every server is in 'default'.",
                g.name
            )));
        }
        let later = Later::check(cx, self.description, self.tags, self.trusted_image_certificates)?;
        let host = placement(cx, self.host, self.hypervisor_hostname)?;
        let server = NewServer {
            admin_pass: self.admin_pass.unwrap_or_else(generate_password),
            name: self.name,
            image_id,
            flavor_id: self.flavor_ref.rsplit('/').next().unwrap_or_default().to_owned(),
            key_name: self.key_name,
            user_data: self.user_data,
            availability_zone: self.availability_zone.filter(|z| !z.is_empty()),
            metadata,
            networks: networks(cx, self.networks)?,
            boot_volume,
            access_ipv4: self.access_ipv4,
            access_ipv6: self.access_ipv6,
            description: later.description,
            tags: later.tags,
            host,
        };
        let return_reservation_id = self.return_reservation_id.is_some_and(|f| f.0);
        Ok(Request { server, counts, return_reservation_id })
    }
}

/// The create's fields of later microversions, checked.
struct Later {
    description: Option<String>,
    tags: Vec<String>,
}

impl Later {
    fn check(
        cx: At,
        description: Option<Option<String>>,
        tags: Option<Vec<String>>,
        trusted: Option<Option<Vec<String>>>,
    ) -> Result<Self, ApiError> {
        let description = since(cx.mv, 19, "description", description)?.flatten();
        if description.as_ref().is_some_and(|d| d.chars().count() > 255) {
            return Err(bad("Invalid input for field/attribute description: at most 255 characters."));
        }
        let tags = since(cx.mv, 52, "tags", tags)?.unwrap_or_default();
        if tags.len() > MAX_TAGS {
            return Err(bad(format!("Invalid input for field/attribute tags: at most {MAX_TAGS}.")));
        }
        for t in &tags {
            check_tag(t).map_err(|e| bad(e.to_string()))?;
        }
        if since(cx.mv, 63, "trusted_image_certificates", trusted)?.flatten().is_some() {
            return Err(ApiError::BadRequest(
                "Image certificate validation is not supported by this cloud's compute nodes: \
                 trusted_image_certificates must be null or absent."
                    .into(),
            ));
        }
        Ok(Later { description, tags })
    }
}

/// The node an admin asks for (2.74: `host`, `hypervisor_hostname`; one node is both here).
fn placement(cx: At, host: Option<String>, hypervisor: Option<String>) -> Result<Option<String>, ApiError> {
    let (host, hypervisor) = (since(cx.mv, 74, "host", host)?, since(cx.mv, 74, "hypervisor_hostname", hypervisor)?);
    if (host.is_some() || hypervisor.is_some()) && !cx.admin {
        return Err(ApiError::Forbidden(
            "Policy doesn't allow compute:servers:create:requested_destination to be performed.".into(),
        ));
    }
    match (host, hypervisor) {
        (Some(h), Some(n)) if h != n => {
            Err(bad(format!("Compute host {h} has no hypervisor {n}: each node is its own hypervisor.")))
        }
        (h, n) => Ok(h.or(n)),
    }
}

/// Device tags are taken from 2.32 to 2.36 and from 2.42 on (Nova's schemas).
fn check_device_tags(cx: At, nets: Option<&NetworksBody>, bdms: &[Bdm]) -> Result<(), ApiError> {
    let net_tags = match nets {
        Some(NetworksBody::List(l)) => l.iter().filter_map(|n| n.tag.as_deref()).collect(),
        _ => vec![],
    };
    let tags: Vec<&str> = net_tags.into_iter().chain(bdms.iter().filter_map(|b| b.tag.as_deref())).collect();
    if tags.is_empty() {
        return Ok(());
    }
    if !((32..=36).contains(&cx.mv) || cx.mv >= 42) {
        return Err(bad(
            "Invalid input for field/attribute tag: additional property (device tags need 2.32 to 2.36, or 2.42).",
        ));
    }
    tags.iter().try_for_each(|t| check_tag(t).map_err(|e| bad(e.to_string())))
}

fn networks(cx: At, n: Option<NetworksBody>) -> Result<Networks, ApiError> {
    if let (Some(NetworksBody::Word(w)), false) = (&n, cx.mv >= 37) {
        return Err(bad(format!("Invalid input for field/attribute networks: {w:?} is not a list (words need 2.37).")));
    }
    Ok(match n {
        None if cx.mv >= 37 => {
            return Err(bad("Invalid input for field/attribute server: 'networks' is a required property"))
        }
        // Before 2.37 Nova reads an absent or empty list as "the project's network".
        None => Networks::Auto { explicit: false },
        Some(NetworksBody::List(l)) if l.is_empty() => Networks::Auto { explicit: false },
        Some(NetworksBody::Word(w)) if w == "none" => Networks::List(vec![]),
        Some(NetworksBody::Word(w)) if w == "auto" => Networks::Auto { explicit: true },
        Some(NetworksBody::Word(w)) => return Err(bad(format!("Invalid input for field/attribute networks: {w}"))),
        Some(NetworksBody::List(l)) => Networks::List(l.into_iter().map(network_request).collect::<Result<_, _>>()?),
    })
}

/// One `networks` entry: ids are UUIDs and addresses IP addresses (Nova's schema, 400), then
/// what is served: a port, or a network without an address.
fn network_request(e: NetworkEntry) -> Result<NetRequest, ApiError> {
    for (k, v) in [("uuid", &e.uuid), ("port", &e.port)] {
        if v.as_deref().is_some_and(|v| uuid::Uuid::parse_str(v).is_err()) {
            return Err(bad(format!("Invalid input for field/attribute {k}: not a UUID")));
        }
    }
    if e.fixed_ip.as_deref().is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(bad("Invalid input for field/attribute fixed_ip: not an IP address"));
    }
    match (e.uuid, e.port, e.fixed_ip) {
        (_, Some(p), _) => Ok(NetRequest::Port { id: p, tag: e.tag }),
        (Some(u), None, None) => Ok(NetRequest::Network { id: u, tag: e.tag }),
        (Some(_), None, Some(_)) => Err(ApiError::NotImplemented(
            "A fixed_ip in networks is not served yet; create a port with it and pass the port.".into(),
        )),
        (None, None, _) => Err(bad("Invalid input for field/attribute networks: each needs a uuid or a port")),
    }
}

/// Server metadata: keys of 1 to 255 characters, values at most 255, at most
/// [`METADATA_ITEMS`] of them (403 beyond, as Nova's quota answers).
fn metadata(m: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if let Some((k, _)) = m.iter().find(|(k, v)| k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255) {
        return Err(bad(format!(
            "Invalid input for field/attribute metadata: key {k:?} must be 1 to 255 characters, its value at most 255"
        )));
    }
    if m.len() > METADATA_ITEMS {
        return Err(ApiError::Forbidden(format!(
            "Quota exceeded for metadata_items: at most {METADATA_ITEMS} allowed."
        )));
    }
    Ok(m)
}

/// Nova's generated admin password: 12 characters, letters and digits that cannot be mistaken
/// for each other.
fn generate_password() -> String {
    use rand::seq::SliceRandom;
    const SYMBOLS: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    (0..12).filter_map(|_| SYMBOLS.choose(&mut rng).map(|&b| char::from(b))).collect()
}

/// `min_count` and `max_count` (1 when absent), checked.
fn counts(min: Option<Count>, max: Option<Count>) -> Result<(u32, u32), ApiError> {
    let one = |c: Option<Count>, k: &str| -> Result<Option<u32>, ApiError> {
        c.map(|Count(n)| {
            u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                bad(format!("Invalid input for field/attribute {k}. Value: {n}. It must be an integer of at least 1."))
            })
        })
        .transpose()
    };
    let (min, max) = (one(min, "min_count")?, one(max, "max_count")?);
    let (min, max) = (min.unwrap_or(1), max.unwrap_or(min.unwrap_or(1)));
    if min > max {
        return Err(bad("min_count must be <= max_count"));
    }
    Ok((min, max))
}

const SOURCES: [&str; 4] = ["image", "volume", "snapshot", "blank"];
const DESTINATIONS: [&str; 2] = ["local", "volume"];

/// The boot volume the mappings name: an entry with source `volume`, destination `volume` and
/// boot index 0, with whether to delete it with the server. An image described as a mapping
/// (source `image`, destination `local`) is the imageRef boot; other valid mappings are not
/// served yet (501), invalid ones are refused (400).
fn boot_volume(bdms: &[Bdm]) -> Result<Option<BootVolume>, ApiError> {
    let mut boot = None;
    for b in bdms {
        let (src, dst) = (b.source_type.as_deref().unwrap_or("blank"), b.destination_type.as_deref());
        if !SOURCES.contains(&src) || dst.is_some_and(|d| !DESTINATIONS.contains(&d)) {
            return Err(bad(format!(
                "Invalid input for field/attribute block_device_mapping_v2: source_type {src:?}, destination_type \
                 {dst:?} (sources: image, volume, snapshot, blank; destinations: local, volume)."
            )));
        }
        match (src, dst) {
            ("image", None | Some("local")) => {}
            ("volume", None | Some("volume")) if b.boot_index == Some(0) => {
                let id = b.uuid.clone().ok_or_else(|| bad("Invalid input: a volume mapping needs a uuid."))?;
                let delete_on_termination = b.delete_on_termination.is_some_and(|f| f.0);
                if boot.replace(BootVolume { id, delete_on_termination, tag: b.tag.clone() }).is_some() {
                    return Err(bad("Invalid input: more than one mapping has boot_index 0."));
                }
            }
            _ => {
                return Err(ApiError::NotImplemented(format!(
                    "This block device mapping is not served yet (served: a volume with boot_index 0): \
                     source_type {src}, destination_type {}.",
                    dst.unwrap_or("(none)")
                )))
            }
        }
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Request, ApiError> {
        parse_at(v, 1)
    }

    fn parse_at(v: Value, mv: u32) -> Result<Request, ApiError> {
        serde_json::from_value::<ServerCreate>(v).map_err(|e| bad(e.to_string()))?.into_request(At { mv, admin: false })
    }

    #[test]
    fn counts_mappings_and_fields_are_checked() {
        let base = json!({"name": "s", "flavorRef": 1, "imageRef": "i"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(b)
        };
        assert_eq!(parse(base.clone()).unwrap().counts, (1, 1));
        assert_eq!(with("min_count", json!(2)).unwrap().counts, (2, 2));
        assert_eq!(with("max_count", json!("3")).unwrap().counts, (1, 3));
        assert!(matches!(with("max_count", json!(0)), Err(ApiError::BadRequest(_))));
        assert!(matches!(with("accessIPv4", json!("1.2.3")), Err(ApiError::BadRequest(_))));
        assert!(matches!(with("accessIPv6", json!("1.2.3.4")), Err(ApiError::BadRequest(_))));
        assert!(with("accessIPv4", json!("192.0.2.7")).unwrap().server.access_ipv4.is_some());
        assert!(matches!(with("metadata", json!({"": "v"})), Err(ApiError::BadRequest(_))));
        let many: serde_json::Map<String, Value> =
            (0..=METADATA_ITEMS).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(matches!(with("metadata", Value::Object(many)), Err(ApiError::Forbidden(_))));
        assert!(matches!(with("bogus", json!(1)), Err(ApiError::BadRequest(_))), "unknown fields are refused");
        assert!(with("return_reservation_id", json!("True")).unwrap().return_reservation_id);

        let bdm = |b: Value| {
            let mut body = base.clone();
            body.as_object_mut().unwrap().remove("imageRef");
            body["block_device_mapping_v2"] = b;
            parse(body)
        };
        let vol = json!([{"uuid": "v1", "boot_index": 0, "source_type": "volume", "destination_type": "volume",
                          "delete_on_termination": true}]);
        let want = BootVolume { id: "v1".into(), delete_on_termination: true, tag: None };
        assert_eq!(bdm(vol).unwrap().server.boot_volume, Some(want));
        let blank = json!([{"boot_index": -1, "source_type": "blank", "destination_type": "local"}]);
        assert!(matches!(bdm(blank), Err(ApiError::NotImplemented(_))));
        let invalid = json!([{"uuid": "v1", "boot_index": 0, "source_type": "volume", "destination_type": "invalid"}]);
        assert!(matches!(bdm(invalid), Err(ApiError::BadRequest(_))));
        let no_id = json!([{"boot_index": 0, "source_type": "volume", "destination_type": "volume"}]);
        assert!(matches!(bdm(no_id), Err(ApiError::BadRequest(_))));
        assert!(
            matches!(parse(json!({"name": "s", "flavorRef": "1"})), Err(ApiError::BadRequest(m)) if m.contains("imageRef"))
        );
    }
}
