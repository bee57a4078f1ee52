//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect
//! Core §3.1.2.1), validated in the order that decides where an error goes:
//!
//! ```text
//!  client_id unknown, redirect_uri missing or not registered exactly
//!      └─► error page for the user; never a redirect (RFC 6749 §4.1.2.1, RFC 9700 §4.1.3)
//!  anything else wrong (response_type, PKCE, prompt=none without session…)
//!      └─► redirect_uri?error=…&state=…&iss=… (RFC 6749 §4.1.2.1, RFC 9207)
//! ```
//!
//! The same validation runs again on every form post: the request travels
//! through the sign-in pages as hidden fields and is trusted no more there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::GrantType;
use crate::token::service::error::OAuthError;
use crate::token::service::issue::{self, USER_SCOPES};
use crate::token::service::state::{ClientView, TokenServiceState};

/// Longest value accepted for any one parameter.
const MAX_PARAMETER_BYTES: usize = 2048;
/// Longest WebAuthn answer (`credential`, JSON): credential ids alone may be 1 KiB.
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Parameters of a query string or form, each at most once (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    /// From `application/x-www-form-urlencoded` text. A repeated or
    /// oversized parameter is an error naming it.
    pub fn parse(encoded: &[u8]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(encoded) {
            let limit = if name == "credential" { MAX_CREDENTIAL_BYTES } else { MAX_PARAMETER_BYTES };
            if value.len() > limit {
                return Err(format!("parameter {name} is too long"));
            }
            if map.insert(name.clone().into_owned(), value.into_owned()).is_some() {
                return Err(format!("parameter {name} is repeated"));
            }
        }
        Ok(Params(map))
    }

    /// The value, with an empty one treated as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// What `prompt` asked for (OpenID Connect Core §3.1.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Prompt {
    /// Sign in again even with a session.
    pub login: bool,
    /// Show nothing: use the session or fail with `login_required`.
    pub none: bool,
}

/// A request that passed validation.
#[derive(Debug)]
pub(super) struct AuthorizationRequest {
    pub client: Arc<ClientView>,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 challenge (RFC 7636 §4.2).
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    /// Seconds since the last sign-in beyond which the user signs in again.
    pub max_age: Option<i64>,
}

/// Why a request was refused, and so where the answer goes.
#[derive(Debug)]
pub(super) enum RequestError {
    /// The client or its redirect URI cannot be trusted: tell the user here.
    Untrusted(String),
    /// Tell the client, through its (verified) redirect URI.
    ToClient {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Server(OAuthError),
}

impl From<OAuthError> for RequestError {
    fn from(error: OAuthError) -> Self {
        RequestError::Server(error)
    }
}

pub(super) async fn validate(
    state: &TokenServiceState,
    organization: &str,
    params: &Params,
) -> Result<AuthorizationRequest, RequestError> {
    let Some(client_id) = params.get("client_id") else {
        return Err(RequestError::Untrusted(
            "The request names no application (client_id is missing).".into(),
        ));
    };
    let Some(client) = state.client(organization, client_id).await? else {
        return Err(RequestError::Untrusted(format!("No application {client_id:?} is registered here.")));
    };
    // OpenID Connect Core §3.1.2.1: redirect_uri is required, and compared exactly.
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err(RequestError::Untrusted("The request has no redirect_uri.".into()));
    };
    if !client.has_redirect_uri(redirect_uri) {
        return Err(RequestError::Untrusted(format!(
            "The redirect URI {redirect_uri:?} is not registered for application {client_id:?}."
        )));
    }
    let redirect_uri = redirect_uri.to_owned();
    let client_state = params.get("state").map(str::to_owned);
    let refuse = |error: &'static str, description: &str| RequestError::ToClient {
        redirect_uri: redirect_uri.clone(),
        state: client_state.clone(),
        error,
        description: description.to_owned(),
    };

    // RFC 6749 §4.1.1: `code` only; no implicit or hybrid flows (RFC 9700 §2.1.2).
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(refuse("unsupported_response_type", "only response_type=code is supported")),
        None => return Err(refuse("invalid_request", "response_type is missing")),
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(refuse("unauthorized_client", "this client may not use the authorization code grant"));
    }
    if let Some(mode) = params.get("response_mode")
        && mode != "query"
    {
        return Err(refuse("invalid_request", "only response_mode=query is supported"));
    }
    // OpenID Connect Core §6: request objects are not supported.
    if params.get("request").is_some() {
        return Err(refuse("request_not_supported", "request objects are not supported"));
    }
    if params.get("request_uri").is_some() {
        return Err(refuse("request_uri_not_supported", "request_uri is not supported"));
    }

    // RFC 7636 §4.3, RFC 9700 §2.1.1: S256 only; `plain` (also the default when
    // the method is left out) is refused.
    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, None) if client.pkce_required() => {
            return Err(refuse("invalid_request", "PKCE is required: send code_challenge with method S256"));
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err(refuse("invalid_request", "code_challenge_method without code_challenge"));
        }
        (Some(_), method) if method != Some("S256") => {
            return Err(refuse("invalid_request", "code_challenge_method must be S256"));
        }
        (Some(challenge), _) => {
            // RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters.
            let well_formed = challenge.len() == 43
                && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed {
                return Err(refuse("invalid_request", "code_challenge is not a base64url SHA-256 value"));
            }
            Some(challenge.to_owned())
        }
    };

    // RFC 6749 §3.3, §4.1.2.1: only scopes a user-facing grant may carry.
    let scope = match issue::parse_scope(params.get("scope"), USER_SCOPES) {
        Ok(scopes) => scopes.join(" "),
        Err(_) => return Err(refuse("invalid_scope", "a requested scope is not supported")),
    };

    let mut prompt = Prompt::default();
    for value in params.get("prompt").unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
        match value {
            "login" => prompt.login = true,
            "none" => prompt.none = true,
            "consent" | "select_account" => {}
            _ => return Err(refuse("invalid_request", "unknown prompt value")),
        }
    }
    if prompt.none && prompt.login {
        return Err(refuse("invalid_request", "prompt=none cannot be combined with other values"));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Some(seconds),
            _ => return Err(refuse("invalid_request", "max_age must be a non-negative integer")),
        },
    };

    Ok(AuthorizationRequest {
        client,
        redirect_uri,
        scope,
        state: client_state,
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge,
        prompt,
        max_age,
    })
}

impl AuthorizationRequest {
    /// The application's name as the sign-in pages show it.
    pub fn client_name(&self) -> &str {
        self.client.display_name.as_deref().unwrap_or(&self.client.client_id)
    }

    /// The request as hidden form fields, so the next post can be validated again.
    /// `prompt` is left out: it has been honoured by showing the form.
    pub fn hidden_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("client_id", self.client.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("response_type", "code".to_owned()),
            ("scope", self.scope.clone()),
        ];
        let optional =
            [("state", &self.state), ("nonce", &self.nonce), ("code_challenge", &self.code_challenge)];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        if self.code_challenge.is_some() {
            fields.push(("code_challenge_method", "S256".to_owned()));
        }
        fields
    }

    /// `redirect_uri` with `pairs`, `state` and `iss` (RFC 9207) added to its query.
    pub fn redirect_with(&self, issuer: &str, pairs: &[(&str, &str)]) -> String {
        redirect_to(&self.redirect_uri, self.state.as_deref(), issuer, pairs)
    }
}

/// `uri` with `pairs`, then `state` (when given) and `iss` added to its query.
pub(super) fn redirect_to(uri: &str, state: Option<&str>, issuer: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    query.append_pair("iss", issuer);
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_or_oversized_parameters_are_refused() {
        assert!(Params::parse(b"client_id=a&client_id=b").unwrap_err().contains("repeated"));
        let long = format!("state={}", "x".repeat(MAX_PARAMETER_BYTES + 1));
        assert!(Params::parse(long.as_bytes()).unwrap_err().contains("too long"));
        let params = Params::parse(b"state=&scope=openid%20email").unwrap();
        assert_eq!(params.get("state"), None, "empty is absent");
        assert_eq!(params.get("scope"), Some("openid email"));
    }

    #[test]
    fn redirects_keep_an_existing_query_and_encode_values() {
        assert_eq!(
            redirect_to(
                "https://app.example/cb?x=1",
                Some("a b&c"),
                "https://id.example/o/acme",
                &[("code", "k")]
            ),
            "https://app.example/cb?x=1&code=k&state=a+b%26c&iss=https%3A%2F%2Fid.example%2Fo%2Facme"
        );
        assert_eq!(redirect_to("app:/cb", None, "i", &[]), "app:/cb?iss=i");
    }
}
