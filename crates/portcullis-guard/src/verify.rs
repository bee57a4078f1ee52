//! Verifying an access token (RFC 9068 §4, with RFC 8725's checklist):
//! `typ`, the algorithm allow-list, the key by `kid` from the issuer's JWKS,
//! the signature, `iss`, `aud`, `exp` and `nbf`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::claims::AccessClaims;
use crate::config::GuardConfig;
use crate::error::GuardError;
use crate::jwks::JwksCache;

/// Longer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

pub(crate) struct Verifier {
    /// One prepared validation per allowed algorithm (the key's own).
    validations: Vec<(Algorithm, Validation)>,
    pub jwks: JwksCache,
}

impl Verifier {
    pub fn new(config: &GuardConfig, jwks: JwksCache) -> Self {
        let validations = config
            .algorithms
            .iter()
            .map(|&algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&[&config.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.validate_nbf = true;
                validation.leeway = config.leeway.as_secs();
                (algorithm, validation)
            })
            .collect();
        Self { validations, jwks }
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, GuardError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(GuardError::invalid("The token is too long."));
        }
        // An unknown or absent `alg` (`none` among them) fails here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            GuardError::invalid("The token is not a well-formed JWT with an allowed algorithm.")
        })?;
        // RFC 9068 §4: an ID token or any other JWT is not an access token.
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(GuardError::invalid("The token's typ is not at+jwt: it is not an access token."));
        }
        let validation = self
            .validation(header.alg)
            .ok_or_else(|| GuardError::invalid("The token's algorithm is not allowed."))?;
        let kid = header.kid.ok_or_else(|| GuardError::invalid("The token names no key (kid)."))?;
        let key = self.jwks.key(&kid).await?;
        // RFC 8725 §3.1: the key decides the algorithm, not the token.
        if key.algorithm != header.alg {
            return Err(GuardError::invalid("The token's algorithm is not its key's."));
        }
        jsonwebtoken::decode::<AccessClaims>(token, &key.key, validation)
            .map(|data| data.claims)
            .map_err(|e| GuardError::invalid(describe(e.kind())))
    }

    fn validation(&self, algorithm: Algorithm) -> Option<&Validation> {
        self.validations.iter().find(|(a, _)| *a == algorithm).map(|(_, v)| v)
    }
}

/// `at+jwt`, or its media type form (RFC 9068 §2.1), in any case.
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "The token has expired.",
        ErrorKind::ImmatureSignature => "The token is not valid yet.",
        ErrorKind::InvalidIssuer => "The token was issued by another issuer.",
        ErrorKind::InvalidAudience => "The token is not meant for this service (aud).",
        ErrorKind::InvalidSignature => "The token's signature does not verify.",
        ErrorKind::MissingRequiredClaim(_) => "The token lacks a required claim.",
        ErrorKind::InvalidAlgorithm => "The token's algorithm is not allowed.",
        _ => "The token is not a valid access token.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_types_are_recognised() {
        assert!(is_access_token_type("at+jwt"));
        assert!(is_access_token_type("application/at+JWT"));
        assert!(!is_access_token_type("JWT"));
        assert!(!is_access_token_type("id+jwt"));
    }
}
