//! Glance v2 over HTTP (under `/image`): version discovery here, images in `images` (create,
//! list with filters and paging, show, JSON-patch update, delete, data, tags, deactivate), in
//! Glance's JSON shapes; and the import-methods document (none offered: data is uploaded with
//! `PUT …/file`) and the image schema.

mod images;
mod patch;

use super::error::ApiError;
use super::http::{json, Body};
use super::Api;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

fn version(base: &str, id: &str, status: &str) -> Value {
    json!({"id": id, "status": status, "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]})
}

pub async fn route(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let base = api.base_url(&req);
    let method = req.method().clone();
    match segs {
        [] | ["versions"] if method == Method::GET => Ok(json(
            StatusCode::MULTIPLE_CHOICES,
            &json!({"versions": [version(&base, "v2.16", "CURRENT"), version(&base, "v2.0", "SUPPORTED")]}),
        )),
        ["v2"] if method == Method::GET => {
            Ok(json(StatusCode::OK, &json!({"versions": [version(&base, "v2.16", "CURRENT")]})))
        }
        ["v2", rest @ ..] => v2(api, req, rest).await,
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}

async fn v2(api: &Api, req: Request<Incoming>, segs: &[&str]) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let auth = super::authenticate(api, &req)?;
    // `/v2/images/` names an image with an empty id, not the listing.
    if req.uri().path().ends_with('/') {
        return Err(ApiError::NotFound("The resource could not be found.".into()));
    }
    match (&method, segs) {
        (_, ["images", ..]) => images::route(api, &auth, req, segs).await,
        (&Method::GET, ["info", "import"]) => Ok(json(
            StatusCode::OK,
            &json!({"import-methods": {"description": "Import methods available.", "type": "array", "value": []}}),
        )),
        (&Method::GET, ["schemas", "image"]) => Ok(json(
            StatusCode::OK,
            &json!({"name": "image", "properties": {}, "additionalProperties": {"type": "string"}}),
        )),
        _ => Err(ApiError::NotFound("The resource could not be found.".into())),
    }
}
