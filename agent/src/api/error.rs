//! API errors and their OpenStack bodies. One `match` maps every error to its status, with no
//! catch-all arm, so a new variant must choose one.

use crate::identity::IdentityError;
use hyper::StatusCode;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("The request you have made requires authentication.")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A feature this cloud does not offer (yet).
    #[error("{0}")]
    NotImplemented(String),
    /// A microversion the service cannot honour.
    #[error("{0}")]
    NotAcceptable(String),
    /// A conditional request whose condition does not hold (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// A quota or rate limit (Cinder answers 413).
    #[error("{0}")]
    OverLimit(String),
    #[error("Request body is larger than {limit} bytes.")]
    TooLarge { limit: usize },
    #[error("An unexpected error prevented the server from fulfilling your request.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Unauthorized => ApiError::Unauthorized,
            IdentityError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            IdentityError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            IdentityError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            IdentityError::BadRequest(m) => ApiError::BadRequest(m),
            IdentityError::Internal(source) => ApiError::Internal(source),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::OverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Keystone's error body: `{"error": {"code", "title", "message"}}`. The message never
    /// carries the source chain of an internal error; that goes to the log once.
    pub fn keystone_body(&self) -> serde_json::Value {
        let status = self.status();
        json!({"error": {
            "code": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "message": self.to_string(),
        }})
    }

    /// Nova's and Cinder's fault body: `{"badRequest": {"code", "message"}}` and its siblings.
    pub fn nova_body(&self) -> serde_json::Value {
        let status = self.status().as_u16();
        let kind = match status {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "HTTPMethodNotAllowed",
            406 => "HTTPNotAcceptable",
            409 => "conflictingRequest",
            412 => "preconditionFailed",
            413 => "overLimit",
            415 => "mediaTypeNotSupported",
            501 => "notImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        };
        json!({kind: {"code": status, "message": self.to_string()}})
    }

    /// Neutron's error body: `{"NeutronError": {"type", "message", "detail"}}`.
    pub fn neutron_body(&self) -> serde_json::Value {
        let kind = match self.status().as_u16() {
            400 => "HTTPBadRequest",
            401 => "HTTPUnauthorized",
            403 => "PolicyNotAuthorized",
            404 => "HTTPNotFound",
            405 => "HTTPMethodNotAllowed",
            409 => "Conflict",
            413 => "HTTPRequestEntityTooLarge",
            406 => "HTTPNotAcceptable",
            415 => "HTTPUnsupportedMediaType",
            503 => "ServiceUnavailable",
            _ => "HTTPInternalServerError",
        };
        json!({"NeutronError": {"type": kind, "message": self.to_string(), "detail": ""}})
    }
}
