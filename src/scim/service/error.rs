//! The SCIM service's one error type, answered in the SCIM Error schema
//! (RFC 7644 §3.12) with its HTTP status and `scimType`. Client mistakes are
//! logged at debug level; only store failures are server errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_scim::ScimType;
use portcullis_scim::filter::FilterError;
use portcullis_scim::patch::PatchError;
use serde_json::json;

use crate::store::StoreError;
use crate::store::scim_query::QueryError;
use crate::token::password::PasswordError;

use super::SCIM_CONTENT_TYPE;

/// `schemas` URI of an error response (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// What an answered error said, kept on the response for the sync-health record.
#[derive(Clone, Debug)]
pub(crate) struct AnsweredError(pub String);

/// Why a SCIM request failed.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error(
        "a bearer token of an IdentityProvider of this organization with SCIM enabled is required \
         (Authorization: Bearer …)"
    )]
    Unauthorized,
    /// Authenticated, but this organization does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{resource} {id:?} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("no SCIM endpoint at {0}")]
    NoEndpoint(String),
    #[error("{method} is not supported on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("{0}")]
    Patch(#[from] PatchError),
    /// A malformed or unacceptable request (400 with this `scimType`).
    #[error("{detail}")]
    Invalid { scim_type: ScimType, detail: String },
    /// A uniqueness rule was broken (409 `uniqueness`).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named another version (RFC 7644 §3.14).
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// A pushed password could not be hashed (503 when the hasher is busy).
    #[error("the password could not be hashed")]
    PasswordHashing(#[source] PasswordError),
}

impl ScimError {
    pub fn invalid(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError::Invalid { scim_type, detail: detail.into() }
    }

    pub fn not_found(resource: &'static str, id: &str) -> Self {
        ScimError::NotFound { resource, id: id.to_owned() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ScimError::Unauthorized => StatusCode::UNAUTHORIZED,
            ScimError::Forbidden(_) => StatusCode::FORBIDDEN,
            ScimError::NotFound { .. } | ScimError::NoEndpoint(_) => StatusCode::NOT_FOUND,
            ScimError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ScimError::Conflict(_) => StatusCode::CONFLICT,
            ScimError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ScimError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ScimError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ScimError::PasswordHashing(PasswordError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            ScimError::PasswordHashing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ScimError::Filter(_) | ScimError::Query(_) | ScimError::Patch(_) | ScimError::Invalid { .. } => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    pub fn scim_type(&self) -> Option<ScimType> {
        match self {
            ScimError::Filter(error) => Some(error.scim_type()),
            ScimError::Query(error) => Some(error.scim_type()),
            ScimError::Patch(error) => Some(error.scim_type()),
            ScimError::Invalid { scim_type, .. } => Some(*scim_type),
            ScimError::Conflict(_) => Some(ScimType::Uniqueness),
            _ => None,
        }
    }

    /// A store error in the context of one resource: missing rows and
    /// conflicts are the client's, the rest are the server's.
    pub fn from_store(error: StoreError, resource: &'static str, id: &str) -> Self {
        match error {
            StoreError::NotFound { .. } => ScimError::not_found(resource, id),
            StoreError::AlreadyExists { what, value, .. } => {
                ScimError::Conflict(format!("{what} {value:?} is already taken in this organization"))
            }
            StoreError::VersionMismatch { found, .. } => ScimError::PreconditionFailed(format!(
                "{resource} {id:?} changed meanwhile: its version is now W/\"{found}\""
            )),
            other => ScimError::Store(other),
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> Self {
        ScimError::Store(error)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ScimError::PasswordHashing(PasswordError::Busy) => {
                "too many passwords are being hashed at once; try again shortly".to_owned()
            }
            ScimError::Store(_) | ScimError::PasswordHashing(_) => {
                "the service could not complete the request; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        if status.is_server_error() {
            tracing::error!(error = %crate::error_chain::ErrorChain(&self), "SCIM request failed");
        } else {
            tracing::debug!(status = status.as_u16(), %detail, "SCIM request refused");
        }
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.as_u16().to_string(),
            "detail": detail,
        });
        if let Some(scim_type) = self.scim_type() {
            body["scimType"] = scim_type.as_str().into();
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
        }
        // The rest of an oversized body is never read, so this connection
        // cannot carry another request: say so, rather than leave the client
        // to find it closed under its next one.
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.extensions_mut().insert(AnsweredError(format!("{} {detail}", status.as_u16())));
        response
    }
}
