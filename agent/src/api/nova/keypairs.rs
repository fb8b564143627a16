//! Nova's key pairs (os-keypairs) at 2.1: list, create (import a public key, or have one made:
//! an Ed25519 key whose private half is answered once and never kept), show, delete.

use super::super::error::ApiError;
use super::super::http::{empty, json, timestamp, Body};
use super::{typed_body, Ctx};
use crate::model::compute::Keypair;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `POST /os-keypairs`'s `keypair` object at 2.1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeypairCreate {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
}

/// A create's answer; `private_key` only when the key was made here.
#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
    public_key: &'a str,
    fingerprint: &'a str,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
}

/// A show's answer (2.1: no `type`).
#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    public_key: &'a str,
    fingerprint: &'a str,
    user_id: &'a str,
    created_at: String,
    updated_at: Option<String>,
    deleted: bool,
    deleted_at: Option<String>,
    id: u64,
}

/// A listing's entry.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    public_key: &'a str,
    fingerprint: &'a str,
}

fn shown(k: &Keypair) -> Shown<'_> {
    Shown {
        name: &k.name,
        public_key: &k.public_key,
        fingerprint: &k.fingerprint,
        user_id: &k.user_id,
        created_at: timestamp(k.created_at, true),
        updated_at: None,
        deleted: false,
        deleted_at: None,
        id: 0,
    }
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, c) = (req.method().clone(), &cx.auth, &cx.api.compute);
    match (&method, segs) {
        (&Method::GET, ["os-keypairs"]) => {
            let keys = c.keypairs(auth)?;
            let list: Vec<_> = keys
                .iter()
                .map(|k| json!({"keypair": Listed { name: &k.name, public_key: &k.public_key, fingerprint: &k.fingerprint }}))
                .collect();
            Ok(json(StatusCode::OK, &json!({"keypairs": list})))
        }
        (&Method::POST, ["os-keypairs"]) => {
            let body: KeypairCreate = typed_body(req, "keypair").await?;
            let (public, private) = match body.public_key {
                Some(p) => (p, None),
                None => {
                    let (public, private) =
                        crate::compute::keygen::ed25519(&body.name).map_err(|e| ApiError::Internal(Box::new(e)))?;
                    (public, Some(private))
                }
            };
            let k = c.create_keypair(auth, &body.name, &public).await?;
            let made = Created {
                name: &k.name,
                public_key: &k.public_key,
                fingerprint: &k.fingerprint,
                user_id: &k.user_id,
                private_key: private,
            };
            Ok(json(StatusCode::OK, &json!({"keypair": made})))
        }
        (_, ["os-keypairs", name]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"keypair": shown(&c.keypair(auth, name)?)}))),
            Method::DELETE => {
                c.delete_keypair(auth, name).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(super::not_found()),
    }
}
