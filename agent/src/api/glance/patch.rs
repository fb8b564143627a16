//! Glance's JSON-patch bodies (`PATCH /v2/images/{id}`) in both media types Glance takes:
//! `application/openstack-images-v2.1-json-patch`, whose operations name themselves
//! (`{"op": "replace", "path": "/name", "value": "x"}`), and the older
//! `application/openstack-images-v2.0-json-patch`, whose operations are keyed by their name
//! (`{"replace": "/name", "value": "x"}`), as Tempest's client still sends them.

use super::super::error::ApiError;
use serde_json::Value;

/// The patch media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    V20,
    V21,
}

impl Media {
    /// The media type of a `Content-Type` header; 415 for anything else.
    pub fn of(content_type: &str) -> Result<Self, ApiError> {
        match content_type.split(';').next().map(str::trim) {
            Some("application/openstack-images-v2.1-json-patch") => Ok(Media::V21),
            Some("application/openstack-images-v2.0-json-patch") => Ok(Media::V20),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "Content type {content_type:?} is not supported: use application/openstack-images-v2.1-json-patch."
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

impl OpKind {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "add" => Ok(OpKind::Add),
            "replace" => Ok(OpKind::Replace),
            "remove" => Ok(OpKind::Remove),
            other => Err(bad(format!("Patch operation {other:?} is not supported (add, replace, remove)."))),
        }
    }
}

/// One operation on one top-level attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOp {
    pub kind: OpKind,
    /// The attribute, JSON-pointer escapes undone (`~1` → `/`, `~0` → `~`).
    pub attr: String,
    /// The value of an add or replace.
    pub value: Option<Value>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// The body's operations, checked for shape (each a known operation on `/attribute`, with a
/// value where it needs one).
pub fn parse(body: &Value, media: Media) -> Result<Vec<PatchOp>, ApiError> {
    let ops = body.as_array().ok_or_else(|| bad("A JSON patch is a list of operations."))?;
    ops.iter().map(|op| parse_op(op, media)).collect()
}

fn parse_op(op: &Value, media: Media) -> Result<PatchOp, ApiError> {
    let o = op.as_object().ok_or_else(|| bad("Each patch operation is an object."))?;
    let (kind, path) = match media {
        Media::V21 => {
            let kind = o.get("op").and_then(Value::as_str).ok_or_else(|| bad("Each patch operation needs \"op\"."))?;
            let path =
                o.get("path").and_then(Value::as_str).ok_or_else(|| bad("Each patch operation needs \"path\"."))?;
            (OpKind::parse(kind)?, path)
        }
        Media::V20 => {
            let mut named = o.iter().filter(|(k, _)| k.as_str() != "value");
            match (named.next(), named.next()) {
                (Some((k, Value::String(path))), None) => (OpKind::parse(k)?, path.as_str()),
                _ => return Err(bad("Each operation names one of add, replace or remove with its path.")),
            }
        }
    };
    let attr = path
        .strip_prefix('/')
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| bad(format!("Invalid path {path:?}.")))?
        .replace("~1", "/")
        .replace("~0", "~");
    let value = o.get("value").cloned();
    if kind != OpKind::Remove && value.is_none() {
        return Err(bad(format!("Operation on {path} needs a value.")));
    }
    Ok(PatchOp { kind, attr, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_media_types_parse_to_the_same_operations() {
        let want = vec![
            PatchOp { kind: OpKind::Replace, attr: "name".into(), value: Some(json!("x")) },
            PatchOp { kind: OpKind::Remove, attr: "a/b".into(), value: None },
        ];
        let v21 = json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "remove", "path": "/a~1b"}]);
        let v20 = json!([{"replace": "/name", "value": "x"}, {"remove": "/a~1b"}]);
        assert_eq!(parse(&v21, Media::V21).unwrap(), want);
        assert_eq!(parse(&v20, Media::V20).unwrap(), want);
    }

    #[test]
    fn bad_operations_are_refused() {
        for (body, media) in [
            (json!({"op": "add"}), Media::V21),
            (json!([{"op": "move", "path": "/a", "value": 1}]), Media::V21),
            (json!([{"op": "add", "path": "/a"}]), Media::V21),
            (json!([{"op": "add", "path": "a", "value": 1}]), Media::V21),
            (json!([{"op": "add", "path": "/a/b", "value": 1}]), Media::V21),
            (json!([{"replace": "/a", "value": 1}]), Media::V21),
            (json!([{"op": "replace", "path": "/a", "value": 1}]), Media::V20),
            (json!([{"add": "/a", "remove": "/b", "value": 1}]), Media::V20),
        ] {
            assert!(matches!(parse(&body, media), Err(ApiError::BadRequest(_))), "{body} accepted");
        }
        assert!(matches!(Media::of("application/json"), Err(ApiError::UnsupportedMediaType(_))));
        assert_eq!(Media::of("application/openstack-images-v2.0-json-patch").unwrap(), Media::V20);
    }
}
