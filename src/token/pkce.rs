//! PKCE (RFC 7636), S256 only.
//!
//! At the authorization endpoint [`CodeChallenge::from_request`] accepts the
//! challenge (refusing `plain`, RFC 9700 §2.1.1); at the token endpoint
//! [`verify`] checks the verifier against what was stored with the code,
//! including the downgrade case of a verifier sent for a code issued without a
//! challenge.

use subtle::ConstantTimeEq as _;

use super::encoding::{b64url, b64url_decode, sha256};

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`.
pub const VERIFIER_MIN_LENGTH: usize = 43;
pub const VERIFIER_MAX_LENGTH: usize = 128;

/// Length of BASE64URL(SHA256(verifier)).
const CHALLENGE_LENGTH: usize = 43;

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge_method plain is not allowed; use S256")]
    PlainRefused,

    #[error("code_challenge_method is not supported; use S256")]
    UnsupportedMethod,

    #[error("code_challenge is required")]
    ChallengeRequired,

    #[error("code_challenge is not a base64url SHA-256 value")]
    MalformedChallenge,

    #[error("code_verifier must be 43 to 128 unreserved characters")]
    MalformedVerifier,

    #[error("code_verifier is required for this code")]
    MissingVerifier,

    #[error("code_verifier was sent for a code issued without code_challenge")]
    VerifierWithoutChallenge,

    #[error("code_verifier does not match code_challenge")]
    Mismatch,
}

impl PkceError {
    /// The OAuth error code: `invalid_request` at the authorization endpoint
    /// (RFC 7636 §4.4.1), `invalid_grant` at the token endpoint (§4.6).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::PlainRefused
            | Self::UnsupportedMethod
            | Self::ChallengeRequired
            | Self::MalformedChallenge => "invalid_request",
            Self::MalformedVerifier
            | Self::MissingVerifier
            | Self::VerifierWithoutChallenge
            | Self::Mismatch => "invalid_grant",
        }
    }
}

/// An S256 code challenge, as stored with an authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// The challenge of an authorization request (RFC 7636 §4.3). `required`
    /// is the client's policy (public clients must use PKCE). A missing method
    /// means `plain` (§4.3), which is refused.
    pub fn from_request(
        challenge: Option<&str>,
        method: Option<&str>,
        required: bool,
    ) -> Result<Option<Self>, PkceError> {
        match (challenge, method) {
            (None, None) if required => Err(PkceError::ChallengeRequired),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(PkceError::ChallengeRequired),
            (Some(_), None | Some("plain")) => Err(PkceError::PlainRefused),
            (Some(challenge), Some("S256")) => Self::parse(challenge).map(Some),
            (Some(_), Some(_)) => Err(PkceError::UnsupportedMethod),
        }
    }

    /// A stored S256 challenge: 43 base64url characters encoding 32 bytes.
    pub fn parse(challenge: &str) -> Result<Self, PkceError> {
        let canonical = challenge.len() == CHALLENGE_LENGTH
            && b64url_decode(challenge).is_some_and(|bytes| bytes.len() == 32);
        if canonical { Ok(Self(challenge.to_owned())) } else { Err(PkceError::MalformedChallenge) }
    }

    /// §4.2: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
    pub fn from_verifier(verifier: &str) -> Result<Self, PkceError> {
        check_verifier(verifier)?;
        Ok(Self(b64url(&sha256(verifier.as_bytes()))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The token endpoint's check (RFC 7636 §4.6), given the challenge stored with
/// the code and the verifier of the token request.
pub fn verify(challenge: Option<&CodeChallenge>, verifier: Option<&str>) -> Result<(), PkceError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(PkceError::VerifierWithoutChallenge),
        (Some(_), None) => Err(PkceError::MissingVerifier),
        (Some(challenge), Some(verifier)) => {
            let computed = CodeChallenge::from_verifier(verifier)?;
            if bool::from(computed.0.as_bytes().ct_eq(challenge.0.as_bytes())) {
                Ok(())
            } else {
                Err(PkceError::Mismatch)
            }
        }
    }
}

/// §4.1: `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn check_verifier(verifier: &str) -> Result<(), PkceError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let length_ok = (VERIFIER_MIN_LENGTH..=VERIFIER_MAX_LENGTH).contains(&verifier.len());
    if length_ok && verifier.bytes().all(unreserved) { Ok(()) } else { Err(PkceError::MalformedVerifier) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(CodeChallenge::from_verifier(VERIFIER).unwrap().as_str(), CHALLENGE);
        let stored = CodeChallenge::from_request(Some(CHALLENGE), Some("S256"), true).unwrap();
        assert_eq!(verify(stored.as_ref(), Some(VERIFIER)), Ok(()));
    }

    #[test]
    fn a_different_verifier_does_not_match() {
        let stored = CodeChallenge::parse(CHALLENGE).unwrap();
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
        assert_eq!(verify(Some(&stored), Some(other)), Err(PkceError::Mismatch));
    }

    #[test]
    fn plain_and_unknown_methods_are_refused() {
        assert_eq!(
            CodeChallenge::from_request(Some(VERIFIER), Some("plain"), false),
            Err(PkceError::PlainRefused)
        );
        // RFC 7636 §4.3: no method means plain.
        assert_eq!(CodeChallenge::from_request(Some(CHALLENGE), None, false), Err(PkceError::PlainRefused));
        assert_eq!(
            CodeChallenge::from_request(Some(CHALLENGE), Some("s256"), false),
            Err(PkceError::UnsupportedMethod)
        );
    }

    #[test]
    fn a_challenge_is_required_when_the_client_needs_pkce() {
        assert_eq!(CodeChallenge::from_request(None, None, true), Err(PkceError::ChallengeRequired));
        assert_eq!(CodeChallenge::from_request(None, None, false), Ok(None));
        assert_eq!(CodeChallenge::from_request(None, Some("S256"), false), Err(PkceError::ChallengeRequired));
    }

    #[test]
    fn malformed_challenges_are_refused() {
        for bad in [
            "",
            "short",
            &CHALLENGE[..42],
            &format!("{CHALLENGE}A"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
        ] {
            assert_eq!(CodeChallenge::parse(bad), Err(PkceError::MalformedChallenge), "{bad:?}");
        }
        // Right length and alphabet, but non-zero trailing bits: no SHA-256 encodes so.
        assert_eq!(
            CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn a_verifier_without_a_challenge_is_refused() {
        assert_eq!(verify(None, Some(VERIFIER)), Err(PkceError::VerifierWithoutChallenge));
        assert_eq!(verify(None, None), Ok(()));
    }

    #[test]
    fn a_challenge_without_a_verifier_is_refused() {
        let stored = CodeChallenge::parse(CHALLENGE).unwrap();
        assert_eq!(verify(Some(&stored), None), Err(PkceError::MissingVerifier));
    }

    #[test]
    fn verifier_syntax_is_checked() {
        let stored = CodeChallenge::parse(CHALLENGE).unwrap();
        let too_short = "a".repeat(42);
        let too_long = "a".repeat(129);
        let bad_char = format!("{}!", "a".repeat(43));
        for bad in [too_short.as_str(), too_long.as_str(), bad_char.as_str()] {
            assert_eq!(verify(Some(&stored), Some(bad)), Err(PkceError::MalformedVerifier));
        }
        assert!(CodeChallenge::from_verifier(&"a~b.c_d-e".repeat(5)).is_ok());
        assert!(CodeChallenge::from_verifier(&"a".repeat(128)).is_ok());
    }
}
