//! Glance's images: create, list with filters and paging, show, JSON-patch update, delete,
//! their data (streamed upload and download), tags one at a time, deactivate/reactivate.

use super::super::error::ApiError;
use super::super::http::{
    empty, json, parse_json, query_pairs, read_body, stream_file, timestamp, Body, MAX_JSON_BODY,
};
use super::super::Api;
use super::patch;
use crate::identity::Auth;
use crate::image::ImageError;
use crate::model::image::{Image, ImagePatch};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// Attributes Glance computes; a client may not set them (403).
const READ_ONLY: [&str; 14] = [
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
    "stores",
];
/// Attributes with a meaning of their own (everything else is an extra property).
const CORE: [&str; 10] = [
    "id",
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "protected",
    "min_disk",
    "min_ram",
    "tags",
    "owner",
];
/// Accepted and ignored (no meaning here yet).
const IGNORED: [&str; 1] = ["os_hidden"];
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 1000;

fn image_json(i: &Image) -> Value {
    let d = i.data.as_ref();
    let mut v = json!({
        "id": i.id, "name": i.name, "status": i.status.as_str(), "visibility": i.visibility.as_str(),
        "protected": i.protected, "os_hidden": false, "owner": i.owner,
        "disk_format": i.disk_format.map(|f| f.as_str()), "container_format": i.container_format.map(|f| f.as_str()),
        "min_disk": i.min_disk, "min_ram": i.min_ram, "tags": i.tags,
        "size": d.map(|d| d.size), "virtual_size": d.map(|d| d.virtual_size),
        "checksum": d.map(|d| d.checksum.clone()),
        "os_hash_algo": d.map(|_| "sha512"), "os_hash_value": d.map(|d| d.sha512.clone()),
        "created_at": timestamp(i.created_at, false), "updated_at": timestamp(i.updated_at, false),
        "self": format!("/v2/images/{}", i.id), "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    for (k, val) in &i.properties {
        v[k] = json!(val);
    }
    v
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn read_only(k: &str) -> ApiError {
    ApiError::Forbidden(format!("Attribute '{k}' is read-only."))
}

/// An extra property's value: a string of at most 255 characters.
fn property(k: &str, v: &Value) -> Result<String, ApiError> {
    if k.is_empty() || k.len() > 255 {
        return Err(bad(format!("Property name '{k}' must be 1 to 255 characters.")));
    }
    match v {
        Value::String(s) if s.chars().count() <= 255 => Ok(s.clone()),
        Value::String(_) => Err(bad(format!("Property '{k}' is longer than 255 characters."))),
        other => Err(bad(format!("Property '{k}' must be a string, not {other}."))),
    }
}

fn uint(k: &str, v: &Value) -> Result<u64, ApiError> {
    v.as_u64().ok_or_else(|| bad(format!("{k} must be a non-negative integer, not {v}.")))
}

fn text_field(k: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if s.chars().count() <= 255 => Ok(s.clone()),
        Value::Null if k == "name" => Ok(String::new()),
        other => Err(bad(format!("{k} must be a string of at most 255 characters, not {other}."))),
    }
}

fn parsed<T: std::str::FromStr>(k: &str, v: &Value) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s.parse().map(Some).map_err(|e: T::Err| bad(e.to_string())),
        other => Err(bad(format!("{k} must be a string, not {other}."))),
    }
}

fn tags(v: &Value) -> Result<Vec<String>, ApiError> {
    let items = v.as_array().ok_or_else(|| bad("tags must be a list of strings."))?;
    let mut out: Vec<String> = Vec::new();
    for t in items {
        let s = t
            .as_str()
            .filter(|s| !s.is_empty() && s.chars().count() <= 255)
            .ok_or_else(|| bad("Each tag must be a string of 1 to 255 characters."))?;
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// Sets one attribute of a patch (core or extra property).
fn set_attr(p: &mut ImagePatch, k: &str, v: &Value, admin: bool) -> Result<(), ApiError> {
    match k {
        "name" => p.name = text_field(k, v)?,
        "visibility" => p.visibility = parsed(k, v)?.ok_or_else(|| bad("visibility may not be null."))?,
        "protected" => p.protected = v.as_bool().ok_or_else(|| bad("protected must be a boolean."))?,
        "min_disk" => p.min_disk = uint(k, v)?,
        "min_ram" => p.min_ram = uint(k, v)?,
        "disk_format" => p.disk_format = parsed(k, v)?,
        "container_format" => p.container_format = parsed(k, v)?,
        "tags" => p.tags = tags(v)?,
        "id" => return Err(read_only(k)),
        "owner" if !admin => return Err(read_only(k)),
        "owner" => p.owner = Some(text_field(k, v)?),
        k if READ_ONLY.contains(&k) => return Err(read_only(k)),
        k if IGNORED.contains(&k) => {}
        k => {
            p.properties.insert(k.to_owned(), property(k, v)?);
        }
    }
    Ok(())
}

/// A new image's id (if given) and attributes.
fn new_image(body: &Map<String, Value>, admin: bool) -> Result<(Option<String>, ImagePatch), ApiError> {
    let mut p = ImagePatch::default();
    let mut id = None;
    for (k, v) in body {
        match k.as_str() {
            "id" => id = Some(v.as_str().ok_or_else(|| bad("id must be a string."))?.to_owned()),
            _ => set_attr(&mut p, k, v, admin)?,
        }
    }
    Ok((id, p))
}

/// Applies a Glance JSON patch's operations to the record's attributes.
fn apply_patch(i: &Image, ops: &[patch::PatchOp], admin: bool) -> Result<ImagePatch, ApiError> {
    let mut p = i.attrs();
    for op in ops {
        let attr = op.attr.as_str();
        match (op.kind, &op.value) {
            (patch::OpKind::Add | patch::OpKind::Replace, Some(v)) => {
                if op.kind == patch::OpKind::Replace
                    && !CORE.contains(&attr)
                    && !p.properties.contains_key(attr)
                    && !READ_ONLY.contains(&attr)
                {
                    return Err(ApiError::Conflict(format!("Property {attr} does not exist.")));
                }
                set_attr(&mut p, attr, v, admin)?;
            }
            _ => {
                if CORE.contains(&attr) || READ_ONLY.contains(&attr) {
                    return Err(read_only(attr));
                }
                if p.properties.remove(attr).is_none() {
                    return Err(ApiError::Conflict(format!("Property {attr} does not exist.")));
                }
            }
        }
    }
    Ok(p)
}

pub(super) async fn route(
    api: &Api,
    auth: &Auth,
    req: Request<Incoming>,
    segs: &[&str],
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let images = &api.images;
    let admin = auth.is_admin();
    match (&method, segs) {
        (&Method::GET, ["images"]) => list(images.list(auth)?, &query_pairs(req.uri().query())),
        (&Method::POST, ["images"]) => {
            let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let (id, attrs) = new_image(&body, admin)?;
            let i = images.create(auth, id, attrs).await?;
            Ok(json(StatusCode::CREATED, &image_json(&i)))
        }
        (_, ["images", id]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &image_json(&images.get(auth, id)?))),
            Method::PATCH => {
                let ctype = req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let media = patch::Media::of(ctype)?;
                let body: Value = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
                let ops = patch::parse(&body, media)?;
                let current = images.get(auth, id)?;
                let patch = apply_patch(&current, &ops, admin)?;
                Ok(json(StatusCode::OK, &image_json(&images.update(auth, id, patch).await?)))
            }
            Method::DELETE => {
                if api.storage.image_in_use(id)? {
                    return Err(ApiError::Conflict(format!(
                        "Image {id} is in use: volumes are qcow2 overlays of it; delete them first."
                    )));
                }
                images.delete(auth, id).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        (_, ["images", id, "file"]) => match method {
            Method::PUT => {
                let stream = req.into_body().into_data_stream();
                images.upload(auth, id, stream).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Method::GET => match images.data(auth, id).await? {
                Some((file, size, image)) => {
                    let mut r = stream_file(file, size);
                    if let Some(d) = &image.data {
                        if let Ok(v) = HeaderValue::from_str(&d.checksum) {
                            r.headers_mut().insert("content-md5", v);
                        }
                    }
                    Ok(r)
                }
                None => Ok(empty(StatusCode::NO_CONTENT)),
            },
            _ => Err(super::super::not_allowed(&method)),
        },
        (&Method::POST, ["images", id, "actions", action @ ("deactivate" | "reactivate")]) => {
            images.set_active(auth, id, *action == "reactivate").await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::PUT | &Method::DELETE, ["images", id, "tags", tag]) => {
            let mut attrs = images.get(auth, id)?.attrs();
            let had = attrs.tags.iter().any(|t| t == tag);
            if method == Method::DELETE {
                if !had {
                    return Err(ApiError::NotFound(format!("Tag {tag} not found on image {id}.")));
                }
                attrs.tags.retain(|t| t != tag);
            } else if !had {
                attrs.tags = tags(&json!([&attrs.tags[..], &[tag.to_string()]].concat()))?;
            }
            images.update(auth, id, attrs).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

/// Filters, sorts and pages a listing as Glance does.
fn list(all: Vec<Image>, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let mut items: Vec<Image> = all;
    for (k, v) in query {
        let keep: Box<dyn Fn(&Image) -> bool> = match k.as_str() {
            "name" => Box::new(move |i: &Image| &i.name == v),
            "status" => Box::new(move |i: &Image| i.status.as_str() == v),
            "visibility" if v == "all" => Box::new(|_: &Image| true),
            "visibility" => Box::new(move |i: &Image| i.visibility.as_str() == v),
            "owner" => Box::new(move |i: &Image| &i.owner == v),
            "disk_format" => Box::new(move |i: &Image| i.disk_format.is_some_and(|f| f.as_str() == v)),
            "container_format" => Box::new(move |i: &Image| i.container_format.is_some_and(|f| f.as_str() == v)),
            "tag" => Box::new(move |i: &Image| i.tags.contains(v)),
            "id" => {
                let ids: Vec<String> = v.strip_prefix("in:").unwrap_or(v).split(',').map(str::to_owned).collect();
                Box::new(move |i: &Image| ids.contains(&i.id))
            }
            "protected" => Box::new(move |i: &Image| i.protected.to_string() == v.to_ascii_lowercase()),
            "limit" | "marker" | "sort_key" | "sort_dir" | "sort" | "member_status" | "os_hidden" => continue,
            other => {
                let (other, v) = (other.to_owned(), v.clone());
                Box::new(move |i: &Image| i.properties.get(&other) == Some(&v))
            }
        };
        items.retain(|i| keep(i));
    }
    let dir = q("sort_dir").unwrap_or("desc");
    let key = q("sort_key").unwrap_or("created_at");
    if !["asc", "desc"].contains(&dir) {
        return Err(bad(format!("Invalid sort direction: {dir}")));
    }
    match key {
        "created_at" => items.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id))),
        "updated_at" => items.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id))),
        "name" => items.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id))),
        "id" => items.sort_by(|a, b| a.id.cmp(&b.id)),
        "size" => items
            .sort_by(|a, b| (a.data.as_ref().map(|d| d.size), &a.id).cmp(&(b.data.as_ref().map(|d| d.size), &b.id))),
        other => return Err(bad(format!("Invalid sort key: {other}"))),
    }
    if dir == "desc" {
        items.reverse();
    }
    if let Some(marker) = q("marker") {
        let pos = items
            .iter()
            .position(|i| i.id == marker)
            .ok_or_else(|| bad(format!("Marker {marker} could not be found.")))?;
        items.drain(..=pos);
    }
    let limit = match q("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => {
            l.parse::<usize>().map_err(|_| bad(format!("limit {l:?} is not a non-negative integer.")))?.min(MAX_LIMIT)
        }
    };
    let more = items.len() > limit;
    items.truncate(limit);
    let mut body = json!({"images": items.iter().map(image_json).collect::<Vec<_>>(), "first": "/v2/images", "schema": "/v2/schemas/images"});
    if more {
        if let Some(last) = items.last() {
            // The same filters apply to the next page.
            let keep: Vec<String> =
                query.iter().filter(|(k, _)| k != "marker" && k != "limit").map(|(k, v)| format!("{k}={v}")).collect();
            let mut next = format!("/v2/images?marker={}&limit={limit}", last.id);
            for k in keep {
                next.push('&');
                next.push_str(&k);
            }
            body["next"] = json!(next);
        }
    }
    Ok(json(StatusCode::OK, &body))
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Unscoped => ApiError::Unauthorized,
            ImageError::Forbidden(m) => ApiError::Forbidden(m),
            ImageError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ImageError::BadRequest(m) => ApiError::BadRequest(m),
            ImageError::Conflict(m) => ApiError::Conflict(m),
            ImageError::TooLarge { limit } => {
                ApiError::TooLarge { limit: usize::try_from(limit).unwrap_or(usize::MAX) }
            }
            ImageError::Unavailable(m) => ApiError::Unavailable(m),
            ImageError::Internal(source) => ApiError::Internal(source),
        }
    }
}
