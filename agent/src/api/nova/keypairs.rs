//! Nova's key pairs (os-keypairs): list, import, show, delete. Key pairs are not generated here:
//! the openstack client makes one and imports it.

use super::super::error::ApiError;
use super::super::http::Body;
use super::super::http::{empty, json, timestamp};
use super::Ctx;
use super::{bad, body_object};
use crate::model::compute::Keypair;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

fn keypair_json(k: &Keypair) -> Value {
    json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint, "user_id": k.user_id,
           "type": k.kind, "created_at": timestamp(k.created_at, true), "deleted": false, "deleted_at": null,
           "updated_at": null, "id": 0})
}

pub(super) async fn route(cx: &Ctx<'_>, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let (method, auth, api) = (req.method().clone(), &cx.auth, cx.api);
    let c = &api.compute;
    match (&method, segs) {
        (&Method::GET, ["os-keypairs"]) => {
            let list: Vec<Value> = c
                .keypairs(auth)?
                .iter()
                .map(|k| {
                    json!({"keypair": {
                "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}})
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({"keypairs": list})))
        }
        (&Method::POST, ["os-keypairs"]) => {
            let k = body_object(req, "keypair").await?;
            let name = k
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Invalid input for field/attribute keypair. 'name' is a required property"))?;
            let key = k.get("public_key").and_then(Value::as_str).ok_or_else(|| {
                bad("Invalid input: public_key is required (this cloud does not generate key pairs; the openstack client makes one for you)")
            })?;
            let made = c.create_keypair(auth, name, key).await?;
            Ok(json(StatusCode::OK, &json!({"keypair": keypair_json(&made)})))
        }
        (_, ["os-keypairs", name]) => match method {
            Method::GET => Ok(json(StatusCode::OK, &json!({"keypair": keypair_json(&c.keypair(auth, name)?)}))),
            Method::DELETE => {
                c.delete_keypair(auth, name).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(super::super::not_allowed(&method)),
        },
        _ => Err(super::not_found()),
    }
}
