//! Verifying our own access tokens inside the token service (userinfo,
//! introspection, revocation): the organization's key set, `typ: at+jwt`,
//! `iss`, `exp`, and an audience check chosen by the caller.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::Deserialize;

use super::client_auth::strip_scheme;
use super::error::OAuthError;
use super::state::{OrganizationView, TokenServiceState};
use crate::token::claims::{AccessTokenClaims, Audience};
use crate::token::jwt::{self, TokenType, Validation, Verified, VerifyError};

/// Which audience a token must carry.
pub enum AudienceCheck<'a> {
    /// Exactly this one (a resource server's own identifier).
    Required(&'a str),
    /// Any: the endpoint serves every audience of the organization (userinfo,
    /// introspection). The signature, issuer and expiry are still checked.
    Any,
}

/// Verifies `token` as an access token of `org`.
pub async fn verify_access_token(
    state: &TokenServiceState,
    org: &OrganizationView,
    token: &str,
    audience: AudienceCheck<'_>,
) -> Result<Verified<AccessTokenClaims>, VerifyError> {
    let keys = state.key_set(org).await.map_err(|_| VerifyError::UnknownKeyId)?;
    let issuer = state.issuer(&org.name);
    let peeked;
    let audience = match audience {
        AudienceCheck::Required(audience) => audience,
        AudienceCheck::Any => {
            peeked = unverified_first_audience(token).ok_or(VerifyError::MissingClaim("aud"))?;
            peeked.as_str()
        }
    };
    let validation = Validation::new(TokenType::Access, &issuer, audience, state.now());
    jwt::verify(token, &keys, &validation)
}

/// The first `aud` of a token, read before verification only to tell
/// [`jwt::verify`] which audience to expect; `verify` then checks everything.
fn unverified_first_audience(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Aud {
        aud: Audience,
    }
    if token.len() > jwt::MAX_TOKEN_LENGTH {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let aud: Aud = serde_json::from_slice(&bytes).ok()?;
    aud.aud.as_slice().first().cloned()
}

/// The bearer token of a request (RFC 6750 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, OAuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| OAuthError::invalid_token("A bearer token is required."))?
        .to_str()
        .map_err(|_| OAuthError::invalid_token("The Authorization header is malformed."))?;
    strip_scheme(value, "Bearer")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| OAuthError::invalid_token("A bearer token is required."))
}
