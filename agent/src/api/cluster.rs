//! The cluster's admin API under `/cairn/v1`: nodes and join tokens.
//!
//! `GET /cairn/v1/nodes` → `{"nodes": [{"id", "name", "api_addr", "roles", "raft_role",
//! "last_heartbeat", "up", "probe": {"cpu_model", "cpus", "virtualization", "accel",
//! "memory_mb"}}]}`.
//! `POST /cairn/v1/tokens` `{"token": {"expires_in": seconds}}` (optional, 15 minutes by
//! default) → 201 `{"token": {"id", "expires_at", "token": "<the join token>"}}`;
//! `GET /cairn/v1/tokens` lists them without secrets (and whether used, by whom, revoked);
//! `DELETE /cairn/v1/tokens/{id}` revokes one.
//! `DELETE /cairn/v1/nodes/{id}` removes a node (out of raft, its certificate revoked).
//! `GET /cairn/v1/nodes/{id}/probe` → `{"probe": {"facts", "data_dir"}}`: the node's host
//! probe taken now (a node call), as `cairn probe --json` prints it on that node.
//! `POST /cairn/v1/join` is a joining node's: see [`crate::cluster::join`].

use super::error::ApiError;
use super::http::{empty, json, parse_json, read_body, timestamp, Body, MAX_JSON_BODY};
use super::Api;
use crate::cluster::{ClusterError, DEFAULT_TTL_SECS};
use crate::model::cluster::TokenRecord;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

fn token_json(t: &TokenRecord) -> Value {
    json!({"id": t.id, "created_at": timestamp(t.created_at, true), "expires_at": timestamp(t.expires_at, true),
           "created_by": t.created_by, "used_at": t.used_at.map(|u| timestamp(u, true)), "used_by": t.used_by,
           "revoked": t.revoked})
}

/// The API address a joining node should try: `public_url`'s, else the one this request came to.
fn api_address(api: &Api, req: &Request<Incoming>) -> Result<String, ApiError> {
    let base = api.base_url(req);
    let hostport = base.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    if hostport.is_empty() {
        return Err(ApiError::BadRequest("The request names no host (Host header) to put in the token.".into()));
    }
    Ok(crate::check::with_default_port(hostport))
}

/// `POST /cairn/v1/join` (no token: the join token's secret is the credential).
pub async fn join(api: &Api, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(super::not_allowed(req.method()));
    }
    let bytes = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let body: crate::cluster::join::JoinRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("The join request is not valid: {e}")))?;
    let reply = api.cluster.join(body).await?;
    let value = serde_json::to_value(&reply).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(json(StatusCode::OK, &value))
}

/// `DELETE /cairn/v1/nodes/{id}`.
pub async fn remove_node(api: &Api, req: &Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    let auth = super::authenticate(api, req)?;
    if req.method() != Method::DELETE {
        return Err(super::not_allowed(req.method()));
    }
    let id: u64 = id.parse().map_err(|_| ApiError::NotFound(format!("The node {id} could not be found.")))?;
    api.cluster.remove_node(&auth, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /cairn/v1/nodes/{id}/probe`.
pub async fn probe(api: &Api, req: &Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    let auth = super::authenticate(api, req)?;
    if req.method() != Method::GET {
        return Err(super::not_allowed(req.method()));
    }
    let id: u64 = id.parse().map_err(|_| ApiError::NotFound(format!("The node {id} could not be found.")))?;
    let probe = api.cluster.probe(&auth, id).await?;
    Ok(json(StatusCode::OK, &json!({"probe": probe})))
}

/// `GET /cairn/v1/nodes`.
pub fn nodes(api: &Api, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let auth = super::authenticate(api, req)?;
    if req.method() != Method::GET {
        return Err(super::not_allowed(req.method()));
    }
    let list: Vec<Value> = api
        .cluster
        .nodes(&auth)?
        .into_iter()
        .map(|(m, role, up)| {
            json!({"id": m.id, "name": m.name, "api_addr": m.api_addr, "peer_addr": m.peer_addr, "roles": m.roles, "raft_role": role,
                   "last_heartbeat": timestamp(m.heartbeat_at, true), "up": up,
                   "probe": {"cpu_model": m.cpu_model, "cpus": m.cpus, "virtualization": m.virtualization,
                             "accel": m.accel, "memory_mb": m.memory_mb}})
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"nodes": list})))
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let auth = super::authenticate(api, &req)?;
    let method = req.method().clone();
    match (method, segs) {
        (Method::GET, []) => {
            let list: Vec<Value> = api.cluster.tokens(&auth)?.iter().map(token_json).collect();
            Ok(json(StatusCode::OK, &json!({"tokens": list})))
        }
        (Method::POST, []) => {
            let addr = api_address(api, &req)?;
            let bytes = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let body: Value = if bytes.is_empty() { json!({}) } else { parse_json(&bytes)? };
            let ttl = match body.get("token").and_then(|t| t.get("expires_in")) {
                None | Some(Value::Null) => DEFAULT_TTL_SECS,
                Some(v) => v.as_u64().ok_or_else(|| {
                    ApiError::BadRequest(format!("expires_in must be a whole number of seconds, not {v}"))
                })?,
            };
            let (record, text) = api.cluster.create_token(&auth, ttl, vec![addr]).await?;
            let mut j = token_json(&record);
            j["token"] = json!(text);
            Ok(json(StatusCode::CREATED, &json!({"token": j})))
        }
        (Method::DELETE, [id]) => {
            api.cluster.revoke_token(&auth, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (m, [] | [_]) => Err(super::not_allowed(&m)),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Forbidden(m) => ApiError::Forbidden(m),
            ClusterError::NotFound(m) => ApiError::NotFound(m),
            ClusterError::BadRequest(m) => ApiError::BadRequest(m),
            ClusterError::Unavailable(m) => ApiError::Unavailable(m),
            ClusterError::BadToken => ApiError::Unauthorized,
            ClusterError::Internal(source) => ApiError::Internal(source),
        }
    }
}
