//! `/messages` (3.3): the project's user messages, each saying why an operation on one of its
//! volumes failed; listed (paged, sorted and filtered from 3.5), shown and deleted.

use super::super::http::{empty, json, timestamp};
use super::filters::Filters;
use super::paging::{self, Key, Listed};
use super::{ApiError, Body, Ctx};
use crate::model::volume::{Message, MESSAGE_TTL};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

impl Listed for Message {
    fn id(&self) -> &str {
        &self.id
    }
    fn key(&self, key: &str) -> Option<Key<'_>> {
        Some(match key {
            "id" => Key::Text(&self.id),
            "event_id" => Key::Text(&self.event_id),
            "resource_type" => Key::Text(&self.resource_type),
            "resource_uuid" => Key::Text(&self.resource_uuid),
            "message_level" => Key::Text("ERROR"),
            "created_at" => Key::Number(self.created_at),
            _ => return None,
        })
    }
}

fn message_json(ctx: &Ctx, m: &Message) -> Value {
    let href = format!("{}/messages/{}", ctx.project_url(), m.id);
    json!({"id": m.id, "message_level": "ERROR", "event_id": m.event_id, "user_message": m.user_message,
           "resource_type": m.resource_type, "resource_uuid": m.resource_uuid, "request_id": m.request_id,
           "created_at": timestamp(m.created_at, true),
           "guaranteed_until": timestamp(m.created_at + MESSAGE_TTL, true),
           "links": [{"rel": "self", "href": href}]})
}

fn list(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let mut items = ctx.api.storage.messages(&ctx.auth)?;
    if ctx.at(5) {
        let f = Filters::of(ctx, "message")?;
        items.retain(|m| {
            f.matches(|k| match k {
                "resource_uuid" => Some(m.resource_uuid.clone()),
                "resource_type" => Some(m.resource_type.clone()),
                "event_id" => Some(m.event_id.clone()),
                "request_id" => Some(m.request_id.clone()),
                "message_level" => Some("ERROR".into()),
                _ => None,
            })
        });
    }
    let (items, next) =
        if ctx.at(5) { paging::page(items, &|k| ctx.q(k), &ctx.project_url(), "messages")? } else { (items, None) };
    let out: Vec<Value> = items.iter().map(|m| message_json(ctx, m)).collect();
    Ok(json(StatusCode::OK, &super::super::http::list_body("messages", out, next)))
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let st = &ctx.api.storage;
    match (req.method().clone(), segs) {
        (Method::GET, ["messages"]) => list(ctx),
        (Method::GET, ["messages", id]) => {
            Ok(json(StatusCode::OK, &json!({"message": message_json(ctx, &st.message(&ctx.auth, id)?)})))
        }
        (Method::DELETE, ["messages", id]) => {
            st.delete_message(&ctx.auth, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (m, ["messages"] | ["messages", _]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
