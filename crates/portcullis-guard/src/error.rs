//! Why a request was refused, rendered as RFC 6750 §3 says a resource server
//! answers: a `WWW-Authenticate: Bearer` challenge and the OAuth error JSON.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refusal, or a failure to decide.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// No bearer token (RFC 6750 §3.1: the challenge carries no error code).
    #[error("a bearer token is required")]
    MissingToken,
    /// The token is malformed, not ours, expired, revoked or not for us.
    #[error("invalid token: {0}")]
    InvalidToken(Cow<'static, str>),
    /// A valid token whose principal lacks the permission.
    #[error("permission {permission} is required")]
    InsufficientPermission { permission: String, description: String },
    /// The issuer could not be reached (discovery, JWKS or check API).
    #[error("the issuer is unavailable: {0}")]
    IssuerUnavailable(String),
}

impl GuardError {
    pub(crate) fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidToken(description.into())
    }
}

impl IntoResponse for GuardError {
    fn into_response(self) -> Response {
        let (status, challenge, error, description) = match &self {
            Self::MissingToken => {
                (StatusCode::UNAUTHORIZED, "Bearer".to_owned(), "invalid_request", self.to_string())
            }
            Self::InvalidToken(description) => (
                StatusCode::UNAUTHORIZED,
                challenge("invalid_token", description),
                "invalid_token",
                description.to_string(),
            ),
            Self::InsufficientPermission { description, .. } => (
                StatusCode::FORBIDDEN,
                challenge("insufficient_scope", description),
                "insufficient_scope",
                description.clone(),
            ),
            Self::IssuerUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::new(),
                "temporarily_unavailable",
                "The token issuer could not be reached; try again.".to_owned(),
            ),
        };
        let mut response =
            (status, Json(json!({ "error": error, "error_description": description }))).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge)
            && !challenge.is_empty()
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// `Bearer error="…", error_description="…"`; the description keeps to the
/// characters RFC 6750 §3 allows (no `"` or `\`).
fn challenge(error: &str, description: &str) -> String {
    let description: String =
        description.chars().filter(|c| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')).collect();
    format!("Bearer error=\"{error}\", error_description=\"{description}\"")
}
