//! Client authentication at the token, introspection and revocation
//! endpoints (RFC 6749 §2.3.1): `client_secret_basic`, `client_secret_post`,
//! or `none` for a public client, which only names itself.
//!
//! The secret is compared with `OAuthClientRecord.secret_hash` (SHA-256 of a
//! 256-bit random secret, see [`crate::token::refresh`]) in constant time.
//! Every failure is the same `invalid_client`, so a caller cannot tell an
//! unknown client from a wrong secret.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::OAuthError;
use super::state::{ClientView, OrganizationView, TokenServiceState};

const FAILED: &str = "Client authentication failed.";

/// What the request presents to identify its client.
#[derive(Clone)]
pub struct PresentedClient {
    pub client_id: String,
    secret: Option<String>,
    /// Sent in the `Authorization: Basic` header.
    pub basic: bool,
}

impl std::fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedClient")
            .field("client_id", &self.client_id)
            .field("basic", &self.basic)
            .finish()
    }
}

/// Reads the client from the `Authorization` header or the form fields. Using
/// both methods at once is refused (RFC 6749 §2.3).
pub fn presented_client(
    headers: &HeaderMap,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
) -> Result<PresentedClient, OAuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| OAuthError::invalid_client(FAILED, true))?;
        if let Some(encoded) = strip_scheme(value, "Basic") {
            if form_client_secret.is_some() {
                return Err(OAuthError::invalid_request("Use one client authentication method, not two."));
            }
            let (client_id, secret) =
                parse_basic(encoded).ok_or_else(|| OAuthError::invalid_client(FAILED, true))?;
            if form_client_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_client(FAILED, true));
            }
            return Ok(PresentedClient { client_id, secret: Some(secret), basic: true });
        }
    }
    let client_id = form_client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| OAuthError::invalid_client("The client is not identified.", false))?;
    Ok(PresentedClient {
        client_id: client_id.to_owned(),
        secret: form_client_secret.map(str::to_owned),
        basic: false,
    })
}

/// The client the request authenticates as, within `org` only.
pub async fn authenticate_client(
    state: &TokenServiceState,
    org: &OrganizationView,
    presented: &PresentedClient,
) -> Result<Arc<ClientView>, OAuthError> {
    let failed = || OAuthError::invalid_client(FAILED, presented.basic);
    let client = state.client(&org.name, &presented.client_id).await?.ok_or_else(failed)?;
    match (client.confidential, &presented.secret, &client.secret_hash) {
        (true, Some(secret), Some(hash)) if hash.matches(secret) => Ok(client),
        // A public client has no secret; one that sends a secret is confused.
        (false, None, _) => Ok(client),
        _ => Err(failed()),
    }
}

/// The credentials after an auth scheme, compared case-insensitively (RFC 9110 §11.1).
pub(crate) fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// RFC 6749 §2.3.1: `base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(encoded).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next()?, input.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let presented = presented_client(&basic("my%20app", "s%3Acret+x"), None, None).unwrap();
        assert_eq!(presented.client_id, "my app");
        assert_eq!(presented.secret.as_deref(), Some("s:cret x"));
        assert!(presented.basic);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let error = presented_client(&basic("app", "secret"), Some("app"), Some("secret")).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
    }

    #[test]
    fn a_post_client_needs_an_id() {
        assert_eq!(
            presented_client(&HeaderMap::new(), None, Some("s")).unwrap_err().code(),
            "invalid_client"
        );
        let presented = presented_client(&HeaderMap::new(), Some("app"), Some("s")).unwrap();
        assert!(!presented.basic);
    }
}
