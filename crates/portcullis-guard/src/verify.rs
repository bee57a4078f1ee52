//! Verifying an access token (RFC 9068 §4, with RFC 8725's checklist):
//! `typ`, the algorithm allow-list, the key by `kid` from the issuer's JWKS,
//! the signature, `iss`, `aud`, `exp` and `nbf`.
//!
//! The signature check is most of the cost (an ES256 verification is ~50 µs
//! on a small server core), and a client sends one token with many requests.
//! So tokens that verified are remembered, bounded, with their claims and
//! the key object that verified them: a later request with the same token
//! is answered from memory while that same key is still the issuer's (a
//! JWKS fetch that drops or replaces it forgets them) and the token has not
//! expired. A token is immutable, so nothing else of the decision changes.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::claims::AccessClaims;
use crate::config::GuardConfig;
use crate::error::GuardError;
use crate::jwks::{JwksCache, VerificationKey};

/// Longer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

pub(crate) struct Verifier {
    /// One prepared validation per allowed algorithm (the key's own).
    validations: Vec<(Algorithm, Validation)>,
    pub jwks: JwksCache,
    /// Tokens that verified, by their text; `None` when turned off.
    verified: Option<quick_cache::sync::Cache<String, Arc<Verified>>>,
    leeway_seconds: i64,
}

/// What a successful verification found.
struct Verified {
    claims: AccessClaims,
    kid: String,
    /// The very key object that verified it (compared by address).
    key: Arc<VerificationKey>,
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
        let verified =
            (config.verified_tokens > 0).then(|| quick_cache::sync::Cache::new(config.verified_tokens));
        let leeway_seconds = i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX);
        Self { validations, jwks, verified, leeway_seconds }
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, GuardError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(GuardError::invalid("The token is too long."));
        }
        if let Some(claims) = self.remembered(token).await {
            return Ok(claims);
        }
        let (claims, kid, key) = self.verify_signed(token).await?;
        if let Some(verified) = &self.verified {
            let entry = Verified { claims: claims.clone(), kid, key };
            verified.insert(token.to_owned(), Arc::new(entry));
        }
        Ok(claims)
    }

    /// The claims of `token` if it verified before, with a key the issuer
    /// still publishes, and has not expired since (with the same leeway).
    async fn remembered(&self, token: &str) -> Option<AccessClaims> {
        let verified = self.verified.as_ref()?;
        let hit = verified.get(token)?;
        let still_published = self.jwks.key(&hit.kid).await.is_ok_and(|key| Arc::ptr_eq(&key, &hit.key));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let unexpired = i64::try_from(now).ok()? <= hit.claims.exp.saturating_add(self.leeway_seconds);
        if still_published && unexpired {
            return Some(hit.claims.clone());
        }
        // Verified afresh below: the refusal then says why.
        verified.remove(token);
        None
    }

    /// The full check: header, key, signature and claims.
    async fn verify_signed(
        &self,
        token: &str,
    ) -> Result<(AccessClaims, String, Arc<VerificationKey>), GuardError> {
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
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, validation)
            .map_err(|e| GuardError::invalid(describe(e.kind())))?
            .claims;
        Ok((claims, kid, key))
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
