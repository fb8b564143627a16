//! `/{volumes|snapshots}/{id}/metadata[/{key}]`: read, replace (`PUT`), merge (`POST`); one key
//! read, set or deleted. From 3.15 a volume's metadata has an `ETag`, and a replace with
//! `If-Match` is made only while it holds (412 otherwise).

use super::super::http::{empty, json};
use super::{body, ApiError, Body, Ctx};
use crate::state::metadata::{etag, MetadataChange, MetadataOf};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ETAG, IF_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Most metadata items a volume or snapshot may have (Cinder does not limit them; this keeps a
/// record bounded).
pub(super) const ITEMS: usize = 128;

#[derive(Deserialize)]
struct All {
    metadata: BTreeMap<String, String>,
}
#[derive(Deserialize)]
struct One {
    meta: BTreeMap<String, String>,
}

pub(super) async fn route(ctx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (of, id, rest) = match segs {
        ["volumes", id, "metadata", rest @ ..] => (MetadataOf::Volume, *id, rest),
        ["snapshots", id, "metadata", rest @ ..] => (MetadataOf::Snapshot, *id, rest),
        _ => return Err(ApiError::NotFound("The resource could not be found.".into())),
    };
    let (st, auth) = (&ctx.api.storage, &ctx.auth);
    let current = || -> Result<BTreeMap<String, String>, ApiError> {
        Ok(match of {
            MetadataOf::Snapshot => st.get_snapshot(auth, id)?.metadata,
            _ => st.get(auth, id)?.metadata,
        })
    };
    let change = |replace, set, remove| MetadataChange { replace, set, remove, max_items: ITEMS, if_match: None };
    let tagged = ctx.at(15) && of == MetadataOf::Volume;
    let with_etag = |map: BTreeMap<String, String>| {
        let mut r = json(StatusCode::OK, &json!({ "metadata": map }));
        if let (true, Ok(v)) = (tagged, HeaderValue::from_str(&etag(&map))) {
            r.headers_mut().insert(ETAG, v);
        }
        r
    };
    match (req.method().clone(), rest) {
        (Method::GET, []) => Ok(with_etag(current()?)),
        (m @ (Method::PUT | Method::POST), []) => {
            let if_match =
                req.headers().get(IF_MATCH).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned());
            let set = body::<All>(req).await?.metadata;
            let c = MetadataChange {
                if_match: if_match.filter(|_| tagged && m == Method::PUT),
                ..change(m == Method::PUT, set, vec![])
            };
            st.set_metadata(auth, of, id, c).await?;
            Ok(with_etag(current()?))
        }
        (Method::GET, [key]) => {
            let all = current()?;
            let v = all.get(*key).ok_or_else(|| ApiError::NotFound(format!("Metadata key {key} not found.")))?;
            Ok(json(StatusCode::OK, &json!({"meta": { *key: v }})))
        }
        (Method::PUT, [key]) => {
            let meta = body::<One>(req).await?.meta;
            if meta.len() != 1 || !meta.contains_key(*key) {
                return Err(super::bad("Request body and URI mismatch"));
            }
            st.set_metadata(auth, of, id, change(false, meta.clone(), vec![])).await?;
            Ok(json(StatusCode::OK, &json!({ "meta": meta })))
        }
        (Method::DELETE, [key]) => {
            st.set_metadata(auth, of, id, change(false, BTreeMap::new(), vec![(*key).to_owned()])).await?;
            Ok(empty(StatusCode::OK))
        }
        (m, [] | [_]) => Err(super::super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
