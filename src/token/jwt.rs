//! JWS compact serialization of our tokens: signing with the organization's
//! active key, and strict verification against our own key set.
//!
//! A small layer over `ring` rather than a JWT library: the algorithm comes
//! only from our key (never from the token), `kid` is looked up only in our
//! [`KeySet`], and `typ` separates access tokens (RFC 9068) from ID tokens.
//! Verification follows RFC 8725 §3 and RFC 9068 §4, in this order: size,
//! shape, header (`alg` allow-list, `crit`, `kid`, `alg` of that key, `typ`),
//! signature, then the claims (`iss`, `aud`, `exp`, `nbf`, `iat`). Nothing in
//! the payload is read before the signature holds.

use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::claims::Audience;
use super::encoding::{b64url, b64url_decode};
use super::keys::{Algorithm, KeyError, KeySet, KeyState, SigningKey};

/// Longest token we look at; larger input is refused before any parsing.
pub const MAX_TOKEN_LENGTH: usize = 16 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: SignedDuration = SignedDuration::from_secs(60);

/// Which kind of token a JWS is, by its `typ` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// `at+jwt` (RFC 9068 §2.1).
    Access,
    /// `JWT` (OpenID Connect Core §2, RFC 7519 §5.1).
    Id,
}

impl TokenType {
    /// The `typ` value we write.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Access => "at+jwt",
            Self::Id => "JWT",
        }
    }

    /// RFC 7515 §4.1.9: compared case-insensitively, `application/` optional.
    fn matches(self, typ: &str) -> bool {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        typ == self.header_value().to_ascii_lowercase()
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The header members we act on. Others (`jku`, `jwk`, `x5u`, `x5c`…) are
/// never consulted: keys come only from our own set.
#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The registered claims checked for every token (RFC 7519 §4.1).
#[derive(Deserialize)]
struct RegisteredClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

/// Errors while signing: server faults, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key {kid} is {state:?}, only the active key signs")]
    KeyNotActive { kid: String, state: KeyState },

    #[error("no active signing key")]
    NoActiveKey,

    #[error("token claims do not serialize: {0}")]
    Claims(#[from] serde_json::Error),

    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a token was refused. All are `invalid_token` (RFC 6750 §3.1); use
/// [`VerifyError::description`] as the `error_description`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("token is longer than {MAX_TOKEN_LENGTH} bytes")]
    TooLong,

    #[error("token is malformed: {0}")]
    Malformed(&'static str),

    #[error("token algorithm {0:?} is not accepted")]
    AlgorithmNotAllowed(String),

    #[error("token header has critical extensions")]
    CriticalHeader,

    #[error("token header has no kid")]
    MissingKeyId,

    #[error("token kid is not one of this issuer's keys")]
    UnknownKeyId,

    #[error("token algorithm {found} does not match key algorithm {expected}")]
    AlgorithmMismatch { expected: Algorithm, found: Algorithm },

    #[error("token typ is {found:?}, expected {expected:?}")]
    WrongType { expected: &'static str, found: Option<String> },

    #[error("token signature is invalid")]
    BadSignature,

    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),

    #[error("token issuer does not match")]
    WrongIssuer,

    #[error("token audience does not include this resource")]
    WrongAudience,

    #[error("token has expired")]
    Expired,

    #[error("token is not valid yet")]
    NotYetValid,

    #[error("token was issued in the future")]
    IssuedInFuture,

    #[error("token claims are invalid: {0}")]
    InvalidClaims(String),
}

impl VerifyError {
    /// The OAuth error code (RFC 6750 §3.1).
    pub fn error_code(&self) -> &'static str {
        "invalid_token"
    }

    /// A fixed description, safe as `error_description` (RFC 6749 §5.2
    /// charset; never echoes token content).
    pub fn description(&self) -> &'static str {
        match self {
            Self::TooLong => "The token is too long.",
            Self::Malformed(_) => "The token is not a well-formed JWT.",
            Self::AlgorithmNotAllowed(_) => "The token algorithm is not accepted.",
            Self::CriticalHeader => "The token uses unsupported critical header parameters.",
            Self::MissingKeyId => "The token header has no kid.",
            Self::UnknownKeyId => "The token was not signed by a key of this issuer.",
            Self::AlgorithmMismatch { .. } => "The token algorithm does not match its key.",
            Self::WrongType { .. } => "The token is not of the expected type.",
            Self::BadSignature => "The token signature is invalid.",
            Self::MissingClaim(_) => "The token lacks a required claim.",
            Self::WrongIssuer => "The token was issued by another issuer.",
            Self::WrongAudience => "The token is not intended for this audience.",
            Self::Expired => "The token has expired.",
            Self::NotYetValid => "The token is not valid yet.",
            Self::IssuedInFuture => "The token was issued in the future.",
            Self::InvalidClaims(_) => "The token claims are invalid.",
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Clone, Debug)]
pub struct Validation<'a> {
    pub token_type: TokenType,
    /// Exact `iss` (RFC 9068 §4, OpenID Connect Core §3.1.3.7).
    pub issuer: &'a str,
    /// Must be one of the token's `aud` values.
    pub audience: &'a str,
    pub now: Timestamp,
    pub leeway: SignedDuration,
}

impl<'a> Validation<'a> {
    pub fn new(token_type: TokenType, issuer: &'a str, audience: &'a str, now: Timestamp) -> Self {
        Self { token_type, issuer, audience, now, leeway: DEFAULT_LEEWAY }
    }
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified<C> {
    /// The key that signed it.
    pub kid: String,
    pub claims: C,
}

/// Signs `claims` as a JWS compact token (RFC 7515 §7.1) of type `token_type`
/// with `key`, which must be the active key.
pub fn sign<C: Serialize>(key: &SigningKey, token_type: TokenType, claims: &C) -> Result<String, SignError> {
    if key.state() != KeyState::Active {
        return Err(SignError::KeyNotActive { kid: key.kid().to_owned(), state: key.state() });
    }
    let header = HeaderOut { alg: key.algorithm().as_str(), typ: token_type.header_value(), kid: key.kid() };
    let header = serde_json::to_vec(&header)?;
    let payload = serde_json::to_vec(claims)?;
    Ok(sign_compact(key, &header, &payload)?)
}

/// Signs with the set's active key.
pub fn sign_with_active<C: Serialize>(
    keys: &KeySet,
    token_type: TokenType,
    claims: &C,
) -> Result<String, SignError> {
    sign(keys.signing_key().ok_or(SignError::NoActiveKey)?, token_type, claims)
}

/// RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
fn sign_compact(key: &SigningKey, header: &[u8], payload: &[u8]) -> Result<String, KeyError> {
    let mut token = b64url(header);
    token.push('.');
    token.push_str(&b64url(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// Verifies a compact JWS against `keys` and `validation`, then decodes its
/// claims as `C`. Any published key verifies, `next` included: a replica that
/// has seen a promotion signs with a key another replica still has as `next`.
pub fn verify<C: DeserializeOwned>(
    token: &str,
    keys: &KeySet,
    validation: &Validation<'_>,
) -> Result<Verified<C>, VerifyError> {
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(VerifyError::TooLong);
    }
    // RFC 7515 §7.1: exactly three parts; five would be a JWE (RFC 7516 §9).
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed("a JWS compact token has three parts"));
    };

    let header = b64url_decode(header_b64).ok_or(VerifyError::Malformed("header is not base64url"))?;
    let header: HeaderIn = serde_json::from_slice(&header)
        .map_err(|_| VerifyError::Malformed("header is not a JSON object with an alg"))?;

    // RFC 8725 §3.1: a fixed allow-list; `none` and HS* are never in it.
    let Some(alg) = Algorithm::from_header(&header.alg) else {
        return Err(VerifyError::AlgorithmNotAllowed(printable(&header.alg)));
    };
    // RFC 7515 §4.1.11: we understand no extension, so any `crit` is fatal.
    if header.crit.is_some() {
        return Err(VerifyError::CriticalHeader);
    }
    let kid = header.kid.ok_or(VerifyError::MissingKeyId)?;
    let key = keys.verifying_key(&kid).ok_or(VerifyError::UnknownKeyId)?;
    // The key decides the algorithm; the header must merely agree.
    if alg != key.algorithm() {
        return Err(VerifyError::AlgorithmMismatch { expected: key.algorithm(), found: alg });
    }
    // RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps token kinds apart.
    let expected_type = validation.token_type;
    if !header.typ.as_deref().is_some_and(|typ| expected_type.matches(typ)) {
        return Err(VerifyError::WrongType {
            expected: expected_type.header_value(),
            found: header.typ.as_deref().map(printable),
        });
    }

    let signature =
        b64url_decode(signature_b64).ok_or(VerifyError::Malformed("signature is not base64url"))?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    if !key.verify_signature(&token.as_bytes()[..signing_input_len], &signature) {
        return Err(VerifyError::BadSignature);
    }

    let payload = b64url_decode(payload_b64).ok_or(VerifyError::Malformed("payload is not base64url"))?;
    let registered: RegisteredClaims = serde_json::from_slice(&payload)
        .map_err(|e| VerifyError::InvalidClaims(printable(&e.to_string())))?;
    check_registered(&registered, validation)?;
    let claims = serde_json::from_slice(&payload)
        .map_err(|e| VerifyError::InvalidClaims(printable(&e.to_string())))?;
    Ok(Verified { kid, claims })
}

fn check_registered(claims: &RegisteredClaims, validation: &Validation<'_>) -> Result<(), VerifyError> {
    let iss = claims.iss.as_deref().ok_or(VerifyError::MissingClaim("iss"))?;
    if iss != validation.issuer {
        return Err(VerifyError::WrongIssuer);
    }
    let aud = claims.aud.as_ref().ok_or(VerifyError::MissingClaim("aud"))?;
    if !aud.contains(validation.audience) {
        return Err(VerifyError::WrongAudience);
    }
    let now = validation.now.as_second();
    let leeway = validation.leeway.as_secs();
    // RFC 7519 §4.1.4: invalid on or after `exp`.
    let exp = claims.exp.ok_or(VerifyError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    // RFC 7519 §4.1.5.
    if let Some(nbf) = claims.nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(VerifyError::NotYetValid);
    }
    // RFC 9068 §2.2 and OpenID Connect Core §2 require `iat`.
    let iat = claims.iat.ok_or(VerifyError::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(VerifyError::IssuedInFuture);
    }
    Ok(())
}

/// Token-supplied text as it may appear in logs: printable ASCII, bounded.
fn printable(text: &str) -> String {
    text.chars().take(64).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests;
