//! `AdminError`: every refusal of the admin API, answered as an RFC 9457
//! problem document (`application/problem+json`) with, for bad input, the
//! parameter or field it is about.
//!
//! Bearer-token refusals keep their RFC 6750 `WWW-Authenticate` challenge;
//! faults of ours are logged with their source chain and never described to
//! the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::store::StoreError;
use crate::token::service::OAuthError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The caller's token is missing or invalid (401), or its principal
    /// lacks the route's permission (403), or the organization is unknown.
    #[error(transparent)]
    Caller(OAuthError),

    /// A query parameter is unknown, repeated or malformed.
    #[error("query parameter {parameter}: {detail}")]
    InvalidParameter { parameter: String, detail: String },

    /// Nothing of that kind and id in the organization.
    #[error("no {kind} {id}")]
    NotFound { kind: &'static str, id: String },

    /// The body is not JSON, or a field is unknown, missing or invalid;
    /// `field` is its path (`spec.workspace`, `emails[0].value`).
    #[error("field {field}: {detail}")]
    InvalidField { field: String, detail: String },

    /// The body is larger than the API accepts.
    #[error("request body too large")]
    TooLarge,

    /// What the request would change is kept in Git: the manifest to edit.
    #[error("{kind} {namespace}/{name} is kept in Git")]
    ManagedInGit { namespace: String, kind: &'static str, name: String },

    /// What the request would change is managed by an identity provider.
    #[error("{kind} {id} is managed by identity provider {identity_provider}")]
    ManagedByIdentityProvider { kind: &'static str, id: String, identity_provider: String },

    /// The request clashes with what is stored (a name already taken).
    #[error("{0}")]
    Conflict(String),

    /// A refusal with its own problem type (`code`) and status: what the
    /// organization's policy does not allow (SCIM provisioning, roles kept
    /// in Git, a grant beyond the caller's own).
    #[error("{detail}")]
    Refused { status: StatusCode, code: &'static str, detail: String },

    /// `If-Match` names a version that is no longer the stored one.
    #[error("{kind} {id} changed since version {expected}")]
    PreconditionFailed { kind: &'static str, id: String, expected: String },

    #[error(transparent)]
    Store(StoreError),

    /// Too many passwords are being hashed at once: retry shortly.
    #[error("busy")]
    Busy,

    /// A password could not be hashed.
    #[error(transparent)]
    Password(crate::token::password::PasswordError),
}

/// A clash the store reports is the client's (409, 412, 404); anything else is ours.
impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { what, value, .. } => {
                Self::Conflict(format!("A {what} named {value} already exists in this organization."))
            }
            StoreError::VersionMismatch { what, id, expected, .. } => {
                Self::PreconditionFailed { kind: what, id, expected: expected.to_string() }
            }
            StoreError::NotFound { what, id, .. } => Self::NotFound { kind: what, id },
            other => Self::Store(other),
        }
    }
}

impl From<OAuthError> for AdminError {
    fn from(error: OAuthError) -> Self {
        match error {
            OAuthError::Store(store) => Self::Store(store),
            other => Self::Caller(other),
        }
    }
}

impl AdminError {
    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> Self {
        Self::InvalidParameter { parameter: parameter.to_owned(), detail: detail.into() }
    }

    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::InvalidField { field: field.to_owned(), detail: detail.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Caller(error) => error.status(),
            Self::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::InvalidField { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ManagedInGit { .. } | Self::ManagedByIdentityProvider { .. } | Self::Conflict(_) => {
                StatusCode::CONFLICT
            }
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Refused { status, .. } => *status,
            Self::Store(_) | Self::Password(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem type: a stable code under our own URN.
    fn code(&self) -> &'static str {
        match self {
            Self::Caller(OAuthError::InvalidToken(_)) => "unauthorized",
            Self::Caller(OAuthError::InsufficientScope(_)) => "forbidden",
            Self::Caller(OAuthError::UnknownOrganization) | Self::NotFound { .. } => "not-found",
            Self::Caller(error) if error.status().is_client_error() => "invalid-request",
            Self::Caller(_) | Self::Store(_) | Self::Password(_) => "server-error",
            Self::Busy => "busy",
            Self::InvalidParameter { .. } => "invalid-parameter",
            Self::InvalidField { .. } => "invalid-field",
            Self::TooLarge => "too-large",
            Self::ManagedInGit { .. } => "managed-in-git",
            Self::ManagedByIdentityProvider { .. } => "managed-by-identity-provider",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed { .. } => "precondition-failed",
            Self::Refused { code, .. } => code,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %crate::error_chain::ErrorChain(&self), "admin API request failed");
        }
        let detail = match &self {
            Self::Caller(error) => error.description().into_owned(),
            Self::InvalidParameter { detail, .. } => detail.clone(),
            Self::NotFound { kind, id } => format!("No {kind} with id {id} in this organization."),
            Self::InvalidField { field, detail } => format!("{field}: {detail}"),
            Self::TooLarge => "The request body is larger than this API accepts.".to_owned(),
            Self::ManagedInGit { namespace, kind, name } => format!(
                "The {kind} {namespace}/{name} is kept in Git (spec.administration.roleSource, or a \
                 manifest of that name): change the manifest instead; a change made here would be undone \
                 by the next sync."
            ),
            Self::ManagedByIdentityProvider { kind, id, identity_provider } => format!(
                "The {kind} {id} is managed by the identity provider {identity_provider}: change it there."
            ),
            Self::Conflict(detail) | Self::Refused { detail, .. } => detail.clone(),
            Self::PreconditionFailed { kind, id, expected } => format!(
                "The {kind} {id} has changed since version {expected} (If-Match): read it again and retry."
            ),
            Self::Store(_) | Self::Password(_) => "The server could not complete the request.".to_owned(),
            Self::Busy => "The server is busy; retry shortly.".to_owned(),
        };
        let mut body = ProblemDocument {
            problem_type: format!("urn:portcullis:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
            manifest: None,
            identity_provider: None,
        };
        match &self {
            Self::InvalidParameter { parameter, detail } => {
                body.errors.push(Fault {
                    parameter: Some(parameter.clone()),
                    field: None,
                    detail: detail.clone(),
                });
            }
            Self::InvalidField { field, detail } => {
                body.errors.push(Fault {
                    parameter: None,
                    field: Some(field.clone()),
                    detail: detail.clone(),
                });
            }
            Self::ManagedInGit { namespace, kind, name } => {
                body.manifest = Some(ManifestReference {
                    api_version: "iam.portcullis.dev/v1alpha1",
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                });
            }
            Self::ManagedByIdentityProvider { identity_provider, .. } => {
                body.identity_provider = Some(identity_provider.clone());
            }
            _ => {}
        }
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::Caller(error @ (OAuthError::InvalidToken(_) | OAuthError::InsufficientScope(_))) = &self
        {
            let challenge =
                format!(r#"Bearer error="{}", error_description="{}""#, error.code(), error.description());
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// An RFC 9457 problem document, as every refusal of the admin API answers
/// it (`application/problem+json`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDocument {
    /// `urn:portcullis:problem:{code}`: a stable code (RFC 9457 §3.1.1).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// For bad input: the query parameter or the body field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Fault>,
    /// For `managed-in-git`: the manifest to change instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestReference>,
    /// For `managed-by-identity-provider`: the provider to change it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
}

/// One fault of the input: a query parameter (or header) or a body field
/// by its path (`emails[0].value`, `spec.workspace`; empty for the whole body).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
}

/// The manifest that keeps an object in Git.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestReference {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}
