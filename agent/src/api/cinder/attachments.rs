//! `/attachments` (3.27): Cinder's attachment records, for consumers other than this cloud's
//! Nova (which attaches through its own node). Create (a reservation, or with a connector a
//! connection at once), list and show, update with a connector, complete (3.44), delete. A
//! volume is connected only on its own node (os-brick's `local` connection); the connector's
//! `mode` (3.54) is kept.

use super::super::http::{json, timestamp};
use super::{body, ApiError, Body, Ctx};
use crate::model::volume::{Attachment, Volume};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

/// A connector as os-brick describes the consumer's host: what is read of it.
#[derive(Deserialize)]
struct Connector {
    host: String,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    volume_uuid: String,
    instance_uuid: String,
    #[serde(default)]
    connector: Option<Connector>,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
struct Update {
    connector: Connector,
}

#[derive(Deserialize)]
struct Wrapped<T> {
    attachment: T,
}

fn summary(v: &Volume, a: &Attachment) -> Value {
    json!({"id": a.id, "status": a.status.as_str(), "instance": a.server_id, "volume_id": v.id})
}

fn detail(v: &Volume, a: &Attachment, connection: Option<Value>) -> Value {
    let mut j = summary(v, a);
    let at = |t: u64| if t == 0 { String::new() } else { timestamp(t, true) };
    j["attached_at"] = json!(at(a.attached_at));
    j["detached_at"] = json!("");
    j["attach_mode"] = json!(a.mode);
    j["connection_info"] = connection.unwrap_or(Value::Null);
    j
}

/// The connector's host and mode; the mode is taken from 3.54 only.
fn connector(ctx: &Ctx, c: Connector, mode: Option<String>) -> (String, String) {
    let mode = mode.or(c.mode).filter(|_| ctx.at(54)).unwrap_or_else(|| "rw".into());
    (c.host, mode)
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (st, auth) = (&ctx.api.storage, &ctx.auth);
    match (req.method().clone(), segs) {
        (Method::GET, ["attachments"] | ["attachments", "detail"]) => {
            let all = st.attachments(auth, ctx.admin && ctx.flag("all_tenants"))?;
            let wanted = |v: &Volume, a: &Attachment| {
                ctx.q("volume_id").is_none_or(|w| w == v.id)
                    && ctx.q("instance_id").is_none_or(|w| w == a.server_id)
                    && ctx.q("status").is_none_or(|w| w == a.status.as_str())
            };
            let detailed = segs.len() == 2;
            let list: Vec<Value> = all
                .iter()
                .filter(|(v, a)| wanted(v, a))
                .map(|(v, a)| if detailed { detail(v, a, None) } else { summary(v, a) })
                .collect();
            Ok(json(StatusCode::OK, &json!({ "attachments": list })))
        }
        (Method::POST, ["attachments"]) => {
            let b = body::<Wrapped<Create>>(req).await?.attachment;
            let mode = b.mode;
            let c = b.connector.map(|c| connector(ctx, c, mode));
            let (a, info) = st.create_attachment(auth, &b.volume_uuid, &b.instance_uuid, c).await?;
            let v = st.get(auth, &b.volume_uuid)?;
            Ok(json(StatusCode::ACCEPTED, &json!({"attachment": detail(&v, &a, info)})))
        }
        (Method::GET, ["attachments", id]) => {
            let (v, a) = st.attachment(auth, id)?;
            Ok(json(StatusCode::OK, &json!({"attachment": detail(&v, &a, None)})))
        }
        (Method::PUT, ["attachments", id]) => {
            let c = body::<Wrapped<Update>>(req).await?.attachment.connector;
            let (a, info) = st.connect(auth, id, connector(ctx, c, None)).await?;
            let (v, _) = st.attachment(auth, &a.id)?;
            Ok(json(StatusCode::OK, &json!({"attachment": detail(&v, &a, Some(info))})))
        }
        (Method::POST, ["attachments", id, "action"]) if ctx.at(44) => {
            let b: serde_json::Map<String, Value> = body(req).await?;
            if b.len() != 1 || !b.contains_key("os-complete") {
                return Err(super::bad("The only attachment action is os-complete."));
            }
            st.complete_attachment(auth, id).await?;
            Ok(super::super::http::empty(StatusCode::NO_CONTENT))
        }
        (Method::DELETE, ["attachments", id]) => {
            st.delete_attachment(auth, id).await?;
            Ok(json(StatusCode::OK, &json!({"attachments": []})))
        }
        (m, ["attachments"] | ["attachments", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
