//! A server's parts: actions (os-start, os-stop, reboot, pause, unpause, suspend, resume,
//! os-getConsoleOutput, trigger_crash_dump from 2.17), diagnostics, metadata, tags (2.26) and
//! os-volume_attachments (tags from 2.49, `delete_on_termination` from 2.79).

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json, parse_json, read_body, MAX_JSON_BODY};
use super::super::params::Flag;
use super::{bad, typed_body, Ctx};
use crate::compute::{Action, VolumeAttach};
use crate::model::compute::{check_tag, ServerVolume};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::Map;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match (&method, segs) {
        (_, ["servers", id, "diagnostics"]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!(cx.api.compute.diagnostics(&cx.auth, id).await?))),
            _ => Err(super::super::not_allowed(&method)),
        },
        (_, ["servers", id, "metadata", rest @ ..]) => metadata(cx, req, id, rest).await,
        (_, ["servers", id, "tags", rest @ ..]) if cx.at(26) => tags(cx, req, id, rest).await,
        (&Method::POST, ["servers", id, "action"]) => action(cx, req, id).await,
        (&Method::POST, ["servers", _, "remote-consoles"]) if cx.at(6) => {
            Err(ApiError::NotImplemented("Remote consoles are not offered yet.".into()))
        }
        (_, ["servers", id, "os-volume_attachments", rest @ ..]) => volume_attachments(cx, req, id, rest).await,
        _ => Err(super::not_found()),
    }
}

/// `POST /servers/{id}/action`: one action a body.
async fn action(cx: &Ctx<'_>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    let (auth, c) = (&cx.auth, &cx.api.compute);
    let body: Map<String, Value> = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
    let (action, arg) = match body.iter().next() {
        Some((k, v)) if body.len() == 1 => (k.as_str(), v),
        _ => return Err(bad("Exactly one action is required.")),
    };
    let act = match action {
        "os-start" => Action::Start,
        "os-stop" => Action::Stop,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        "reboot" => match arg.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
            Some("HARD") => Action::Reboot { hard: true },
            Some("SOFT") | None => Action::Reboot { hard: false },
            Some(t) => {
                return Err(bad(format!("Invalid input for field/attribute type. Value: {t}. It is not SOFT or HARD.")))
            }
        },
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_i64().and_then(|n| usize::try_from(n).ok()),
                Some(Value::String(s)) => s.parse::<i64>().ok().and_then(|n| usize::try_from(n).ok()),
                Some(v) => return Err(bad(format!("Invalid input for field/attribute length. Value: {v}."))),
            };
            return Ok(json(StatusCode::OK, &json!({"output": c.console(auth, id, length).await?})));
        }
        "trigger_crash_dump" if cx.at(17) => {
            if !arg.is_null() {
                return Err(bad("Invalid input for field/attribute trigger_crash_dump: it must be null."));
            }
            c.crash_dump(auth, id).await?;
            return Ok(empty(StatusCode::ACCEPTED));
        }
        other => return Err(ApiError::NotImplemented(format!("Server action {other} is not served yet."))),
    };
    c.action(auth, id, act).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `PUT` and `POST /servers/{id}/metadata`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

/// `PUT /servers/{id}/metadata/{key}`'s body: that one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaBody {
    meta: BTreeMap<String, String>,
}

/// `/servers/{id}/metadata[/{key}]`: all of it read, replaced (`PUT`) or merged (`POST`); one
/// key read, set or deleted.
async fn metadata(cx: &Ctx<'_>, req: Request<Incoming>, id: &str, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let (auth, c, method) = (&cx.auth, &cx.api.compute, req.method().clone());
    let parse = |bytes: &[u8]| -> Result<Value, ApiError> { parse_json(bytes) };
    match (method, rest) {
        (Method::GET, []) => Ok(json(StatusCode::OK, &json!({"metadata": c.server(auth, id)?.metadata}))),
        (m @ (Method::PUT | Method::POST), []) => {
            let body = parse(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b: MetadataBody = serde_json::from_value(body)
                .map_err(|e| bad(format!("Invalid input for field/attribute metadata: {e}")))?;
            let s = c.set_server_metadata(auth, id, m == Method::PUT, b.metadata, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"metadata": s.metadata})))
        }
        (Method::GET, [key]) => {
            let s = c.server(auth, id)?;
            let v = s.metadata.get(*key).ok_or_else(|| ApiError::NotFound("Metadata item was not found".into()))?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: v }})))
        }
        (Method::PUT, [key]) => {
            let body = parse(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b: MetaBody = serde_json::from_value(body)
                .map_err(|e| bad(format!("Invalid input for field/attribute meta: {e}")))?;
            if b.meta.len() != 1 || !b.meta.contains_key(*key) {
                return Err(bad("Request body and URI mismatch: the body must set exactly the key in the URI."));
            }
            let s = c.set_server_metadata(auth, id, false, b.meta, vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: s.metadata.get(*key) }})))
        }
        (Method::DELETE, [key]) => {
            c.set_server_metadata(auth, id, false, BTreeMap::new(), vec![(*key).to_owned()]).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(super::not_found()),
    }
}

/// `POST /servers/{id}/os-volume_attachments`'s `volumeAttachment`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    #[serde(rename = "volumeId")]
    volume_id: String,
    /// A hint Nova ignores too (the device is chosen here).
    #[serde(default)]
    device: Option<Option<String>>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    delete_on_termination: Option<Flag>,
}

/// An attachment as Nova shows it: `tag` from 2.70, `delete_on_termination` from 2.79.
fn attachment(cx: &Ctx<'_>, sid: &str, v: &ServerVolume) -> Value {
    let mut a = json!({"id": v.volume_id, "serverId": sid, "volumeId": v.volume_id, "device": v.device});
    if cx.at(70) {
        a["tag"] = json!(v.tag);
    }
    if cx.at(79) {
        a["delete_on_termination"] = json!(v.delete_on_termination);
    }
    a
}

/// `/servers/{id}/os-volume_attachments[/{volume}]`.
async fn volume_attachments(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    id: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (auth, c, method) = (&cx.auth, &cx.api.compute, req.method().clone());
    match (method, rest) {
        (Method::GET, []) => {
            let s = c.server(auth, id)?;
            let list: Vec<Value> = s.volumes.iter().map(|v| attachment(cx, &s.id, v)).collect();
            Ok(json(StatusCode::OK, &json!({"volumeAttachments": list})))
        }
        (Method::POST, []) => {
            let b: AttachBody = typed_body(req, "volumeAttachment").await?;
            let tag = cx.since(49, "tag", b.tag)?;
            if let Some(t) = &tag {
                check_tag(t).map_err(|e| bad(e.to_string()))?;
            }
            let delete = cx.since(79, "delete_on_termination", b.delete_on_termination)?.is_some_and(|f| f.0);
            let _hint = b.device;
            let attach = VolumeAttach { volume_id: b.volume_id, tag, delete_on_termination: delete };
            let v = c.attach_volume(auth, id, attach).await?;
            Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(cx, id, &v)})))
        }
        (Method::GET, [vid]) => {
            let s = c.server(auth, id)?;
            let v = s
                .volume(vid)
                .ok_or_else(|| ApiError::NotFound(format!("Instance {id} is not attached to volume {vid}.")))?;
            Ok(json(StatusCode::OK, &json!({"volumeAttachment": attachment(cx, &s.id, v)})))
        }
        (Method::DELETE, [vid]) => {
            c.detach_volume(auth, id, vid).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(super::not_found()),
    }
}

/// `PUT /servers/{id}/tags`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    tags: Vec<String>,
}

/// `/servers/{id}/tags[/{tag}]` (2.26): all listed, replaced or deleted; one checked, added
/// (201 with its location when new, 204 when it was there) or deleted.
async fn tags(cx: &Ctx<'_>, req: Request<Incoming>, id: &str, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let (auth, c, method) = (&cx.auth, &cx.api.compute, req.method().clone());
    let checked = |t: &str| check_tag(t).map_err(|e| bad(e.to_string()));
    match (method, rest) {
        (Method::GET, []) => Ok(json(StatusCode::OK, &json!({"tags": c.server(auth, id)?.tags}))),
        (Method::PUT, []) => {
            let body: Value = parse_json(&read_body(req.into_body(), MAX_JSON_BODY).await?)?;
            let b: TagsBody = serde_json::from_value(body)
                .map_err(|e| bad(format!("Invalid input for field/attribute tags: {e}")))?;
            b.tags.iter().try_for_each(|t| checked(t))?;
            let s = c.set_server_tags(auth, id, Some(b.tags), vec![], vec![]).await?;
            Ok(json(StatusCode::OK, &json!({"tags": s.tags})))
        }
        (Method::DELETE, []) => {
            c.set_server_tags(auth, id, Some(vec![]), vec![], vec![]).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Method::GET, [tag]) => match c.server(auth, id)?.tags.iter().any(|t| t == tag) {
            true => Ok(empty(StatusCode::NO_CONTENT)),
            false => Err(ApiError::NotFound(format!("Tag {tag} not found on server {id}."))),
        },
        (Method::PUT, [tag]) => {
            checked(tag)?;
            let had = c.server(auth, id)?.tags.iter().any(|t| t == tag);
            c.set_server_tags(auth, id, None, vec![(*tag).to_owned()], vec![]).await?;
            if had {
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            let mut r = empty(StatusCode::CREATED);
            let at = format!("{}/compute/v2.1/servers/{id}/tags/{tag}", cx.base);
            if let Ok(v) = HeaderValue::from_str(&at) {
                r.headers_mut().insert(LOCATION, v);
            }
            Ok(r)
        }
        (Method::DELETE, [tag]) => {
            c.set_server_tags(auth, id, None, vec![], vec![(*tag).to_owned()]).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(super::not_found()),
    }
}
