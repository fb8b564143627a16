//! Nova's key pairs (os-keypairs): list, create (import a public key, or have one made: an
//! Ed25519 key whose private half is answered once and never kept), show, delete. By
//! microversion: the `type` (ssh or x509; created 201 and deleted 204) from 2.2, an admin's
//! `user_id` from 2.10, paging (`limit`, `marker`) from 2.35.

use super::super::error::ApiError;
use super::super::http::{empty, json, timestamp, Body};
use super::{bad, typed_body, Ctx};
use crate::compute::{KeyKind, NewKeypair};
use crate::model::compute::Keypair;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `POST /os-keypairs`'s `keypair` object (`type` from 2.2, `user_id` from 2.10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeypairCreate {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
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
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// A show's answer (`type` from 2.2).
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
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// A listing's entry.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    public_key: &'a str,
    fingerprint: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

fn shown<'a>(cx: &Ctx<'_>, k: &'a Keypair) -> Shown<'a> {
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
        kind: cx.at(2).then_some(k.kind.as_str()),
    }
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, c) = (req.method().clone(), &cx.auth, &cx.api.compute);
    let user = cx.q("user_id").filter(|_| cx.at(10));
    let user = user.as_deref();
    match (&method, segs) {
        (&Method::GET, ["os-keypairs"]) => {
            let keys = c.keypairs(auth, user)?;
            let (keys, next) =
                if cx.at(35) { super::page(cx, keys, |k| k.name.as_str(), "os-keypairs")? } else { (keys, None) };
            let list: Vec<_> = keys
                .iter()
                .map(|k| {
                    let kind = cx.at(2).then_some(k.kind.as_str());
                    json!({"keypair": Listed { name: &k.name, public_key: &k.public_key, fingerprint: &k.fingerprint, kind }})
                })
                .collect();
            Ok(json(StatusCode::OK, &super::super::http::list_body("keypairs", list, next)))
        }
        (&Method::POST, ["os-keypairs"]) => create(cx, typed_body(req, "keypair").await?).await,
        (_, ["os-keypairs", name]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"keypair": shown(cx, &c.keypair(auth, user, name)?)}))),
            Method::DELETE => {
                c.delete_keypair(auth, user, name).await?;
                Ok(empty(if cx.at(2) { StatusCode::NO_CONTENT } else { StatusCode::ACCEPTED }))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(super::not_found()),
    }
}

/// `POST /os-keypairs`: a key imported, or one made here (its private half answered once).
async fn create(cx: &Ctx<'_>, body: KeypairCreate) -> Result<Response<Body>, ApiError> {
    let kind = match cx.since(2, "type", body.kind)?.as_deref() {
        None | Some("ssh") => KeyKind::Ssh,
        Some("x509") => KeyKind::X509,
        Some(t) => {
            return Err(bad(format!("Invalid input for field/attribute type. Value: {t}. It is not ssh or x509.")))
        }
    };
    let user = cx.since(10, "user_id", body.user_id)?;
    let (public, private) = match (body.public_key, kind) {
        (Some(p), _) => (p, None),
        (None, KeyKind::Ssh) => {
            let (public, private) =
                crate::compute::keygen::ed25519(&body.name).map_err(|e| ApiError::Internal(Box::new(e)))?;
            (public, Some(private))
        }
        (None, KeyKind::X509) => {
            let (public, private) =
                crate::compute::keygen::x509(&body.name).map_err(|e| ApiError::Internal(Box::new(e)))?;
            (public, Some(private))
        }
    };
    let new = NewKeypair { name: body.name, public_key: public, kind };
    let k = cx.api.compute.create_keypair(&cx.auth, user.as_deref(), new).await?;
    let made = Created {
        name: &k.name,
        public_key: &k.public_key,
        fingerprint: &k.fingerprint,
        user_id: &k.user_id,
        private_key: private,
        kind: cx.at(2).then_some(k.kind.as_str()),
    };
    let status = if cx.at(2) { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &json!({"keypair": made})))
}
