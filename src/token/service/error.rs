//! `OAuthError`: every refusal of the token service, answered in the
//! protocol's own format (RFC 6749 §5.2 JSON, RFC 6750 §3 `WWW-Authenticate`).
//!
//! Client mistakes are answered, not logged as server errors; only
//! [`OAuthError::Server`] and [`OAuthError::Store`] are logged (at `error`),
//! and their detail never reaches the client.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

type Text = Cow<'static, str>;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 §5.2 `invalid_request`: a parameter is missing, repeated or malformed.
    #[error("invalid_request: {0}")]
    InvalidRequest(Text),

    /// RFC 6749 §5.2 `invalid_client`: client authentication failed. `basic`:
    /// the client tried HTTP Basic, so the answer carries `WWW-Authenticate`.
    #[error("invalid_client: {description}")]
    InvalidClient { description: Text, basic: bool },

    /// RFC 6749 §5.2 `invalid_grant`: the code, refresh token or verifier is
    /// invalid, expired, revoked, used, or issued to another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(Text),

    /// RFC 6749 §5.2 `unauthorized_client`: this client may not use this grant.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Text),

    /// RFC 6749 §5.2 `unsupported_grant_type`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(Text),

    /// RFC 6749 §5.2 `invalid_scope`.
    #[error("invalid_scope: {0}")]
    InvalidScope(Text),

    /// RFC 7009 §2.2.1 `unsupported_token_type`.
    #[error("unsupported_token_type: {0}")]
    UnsupportedTokenType(Text),

    /// RFC 6750 §3.1 `invalid_token`: a bearer token that is missing,
    /// malformed, expired, revoked or not ours. 401 with a challenge.
    #[error("invalid_token: {0}")]
    InvalidToken(Text),

    /// RFC 6750 §3.1 `insufficient_scope`: a valid token whose principal
    /// lacks the permission. 403.
    #[error("insufficient_scope: {0}")]
    InsufficientScope(Text),

    /// No organization of that name: nothing of it exists through this issuer.
    #[error("unknown organization")]
    UnknownOrganization,

    /// A fault of ours (keys unreadable, signing failed). Logged with its
    /// whole source chain; the client sees only `server_error`.
    #[error("{context}")]
    Server {
        context: Text,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<Text>) -> Self {
        Self::InvalidRequest(description.into())
    }

    pub fn invalid_grant(description: impl Into<Text>) -> Self {
        Self::InvalidGrant(description.into())
    }

    pub fn invalid_client(description: impl Into<Text>, basic: bool) -> Self {
        Self::InvalidClient { description: description.into(), basic }
    }

    pub fn invalid_token(description: impl Into<Text>) -> Self {
        Self::InvalidToken(description.into())
    }

    /// A fault of ours, caused by `source` (kept for the log).
    pub fn server(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Server { context: "internal error".into(), source: Some(Box::new(source)) }
    }

    /// A fault of ours, in our words, caused by `source`.
    pub fn server_because(
        context: impl Into<Text>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Server { context: context.into(), source: Some(Box::new(source)) }
    }

    /// A fault of ours that no error value describes.
    pub fn internal(context: impl Into<Text>) -> Self {
        Self::Server { context: context.into(), source: None }
    }

    /// The `error` code (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::UnknownOrganization => "not_found",
            Self::Server { .. } | Self::Store(_) => "server_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient { .. } | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::UnknownOrganization => StatusCode::NOT_FOUND,
            Self::Server { .. } | Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error_description`: fixed or built from our own words, never
    /// from a secret.
    pub fn description(&self) -> Cow<'_, str> {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient { description: d, .. }
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::UnsupportedTokenType(d)
            | Self::InvalidToken(d)
            | Self::InsufficientScope(d) => Cow::Borrowed(d.as_ref()),
            Self::UnknownOrganization => Cow::Borrowed("No organization of this name."),
            Self::Server { .. } | Self::Store(_) => {
                Cow::Borrowed("The server could not complete the request.")
            }
        }
    }
}

/// An OAuth 2 error response (RFC 6749 §5.2, RFC 6750 §3.1).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDocument<'a> {
    /// The error code (`invalid_request`, `invalid_token`, `insufficient_scope`, …).
    pub error: &'static str,
    /// What went wrong, for a person.
    pub error_description: Cow<'a, str>,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %crate::error_chain::ErrorChain(&self), "token service request failed");
        }
        let body = ErrorDocument { error: self.code(), error_description: self.description() };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        // RFC 6749 §5.1: token responses are never cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match &self {
            // RFC 6749 §5.2: answer a failed Basic attempt with its challenge.
            Self::InvalidClient { basic: true, .. } => Some(r#"Basic realm="token""#.to_owned()),
            // RFC 6750 §3.
            Self::InvalidToken(_) | Self::InsufficientScope(_) => {
                Some(format!(r#"Bearer error="{}", error_description="{}""#, self.code(), self.description()))
            }
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<crate::token::pkce::PkceError> for OAuthError {
    fn from(error: crate::token::pkce::PkceError) -> Self {
        match error.error_code() {
            "invalid_request" => Self::InvalidRequest(error.to_string().into()),
            _ => Self::InvalidGrant(error.to_string().into()),
        }
    }
}
