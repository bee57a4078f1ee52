//! `AdminError`: every refusal of the admin API, answered as an RFC 9457
//! problem document (`application/problem+json`) with, for bad input, the
//! parameter or field it is about.
//!
//! Bearer-token refusals keep their RFC 6750 `WWW-Authenticate` challenge;
//! faults of ours are logged with their source chain and never described to
//! the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

    #[error(transparent)]
    Store(#[from] StoreError),
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

    fn status(&self) -> StatusCode {
        match self {
            Self::Caller(error) => error.status(),
            Self::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type: a stable code under our own URN.
    fn code(&self) -> &'static str {
        match self {
            Self::Caller(OAuthError::InvalidToken(_)) => "unauthorized",
            Self::Caller(OAuthError::InsufficientScope(_)) => "forbidden",
            Self::Caller(OAuthError::UnknownOrganization) | Self::NotFound { .. } => "not-found",
            Self::Caller(error) if error.status().is_client_error() => "invalid-request",
            Self::Caller(_) | Self::Store(_) => "server-error",
            Self::InvalidParameter { .. } => "invalid-parameter",
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
            Self::Store(_) => "The server could not complete the request.".to_owned(),
        };
        let mut body = json!({
            "type": format!("urn:portcullis:problem:{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Self::InvalidParameter { parameter, detail } = &self {
            body["errors"] = json!([{ "parameter": parameter, "detail": detail }]);
        }
        let mut response = (status, body.to_string()).into_response();
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
