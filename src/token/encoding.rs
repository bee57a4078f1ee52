//! Base64url and SHA-256 helpers shared by the token modules.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Base64url without padding (RFC 7515 §2, "Base64url Encoding").
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding: no padding, no whitespace, no non-zero trailing
/// bits, so that every value has exactly one accepted encoding.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub(crate) fn sha512(bytes: &[u8]) -> [u8; 64] {
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    let mut out = [0u8; 64];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decoding_rejects_padding_and_non_canonical_forms() {
        assert_eq!(b64url_decode("AQAB"), Some(vec![1, 0, 1]));
        assert_eq!(b64url_decode("AQ"), Some(vec![1]));
        assert_eq!(b64url_decode("AQ=="), None, "padding");
        assert_eq!(b64url_decode("AR"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("AQ+/"), None, "standard alphabet");
        assert_eq!(b64url_decode("AQ AB"), None, "whitespace");
    }
}
