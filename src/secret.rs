//! Secrets and their stored form: the one place Portcullis makes random
//! tokens and hashes them (primitives: everything above may use this, it
//! uses nothing of Portcullis).
//!
//! ```text
//!  SecretString::generate() ──► value for the client once (refresh token, client
//!        │                      secret, SCIM token, session cookie, ceremony id)
//!        └── .hash() ──► SecretHash = SHA-256 ──► the store (`sha256:<hex>`, or bare hex)
//! ```
//!
//! The generated values are 256-bit random, so an unsalted SHA-256 is the
//! right stored form: no preimage of a 256-bit random value can be guessed,
//! which is what a slow salted hash (argon2id, for low-entropy passwords)
//! protects against; and a deterministic hash lets the store find a presented
//! value by an index lookup while the database never holds a usable one.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom as _, SystemRandom};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Random bytes in a generated secret: 256 bits.
pub const SECRET_BYTES: usize = 32;

/// A secret or a secret-derived value (a generated token, a password hash, a
/// sealed TOTP secret). Never printed: `Debug` shows `<redacted>`; wiped from
/// memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// 256 random bits from the system's generator, base64url (43 characters).
    pub fn generate() -> Self {
        Self::generate_bytes(SECRET_BYTES)
    }

    /// `bytes` random bytes from the system's generator, base64url.
    pub fn generate_bytes(bytes: usize) -> Self {
        let mut buf = Zeroizing::new(vec![0u8; bytes]);
        // The system's generator failing is not something to recover from.
        SystemRandom::new().fill(&mut buf).expect("the system has randomness");
        Self::new(URL_SAFE_NO_PAD.encode(buf.as_slice()))
    }

    /// 256 random bits from `rng`, base64url (tests pass a seeded generator).
    pub fn generate_with<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        rng.fill_bytes(bytes.as_mut());
        Self::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
    }

    /// The value itself, for the one place that needs it (the client's
    /// answer, a verifier).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// SHA-256 of a secret: how the store keeps refresh tokens, codes, client
/// secrets, SCIM tokens and session cookies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

const HASH_PREFIX: &str = "sha256:";

impl SecretHash {
    /// The hash of a presented value.
    pub fn of(presented: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` hashes to this value, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(Self::of(presented).0.ct_eq(&self.0))
    }

    /// The lowercase hex digest alone (the form of session and ceremony keys).
    pub fn hex(&self) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.0 {
            text.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            text.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        text
    }

    /// Reads the [`Display`](fmt::Display) form (`sha256:<hex>`) back.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(HASH_PREFIX)?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

/// `sha256:` and the lowercase hex digest: the stored text form.
impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HASH_PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_text_form_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 Appendix B.1.
        let hash = SecretHash::of("abc");
        assert_eq!(hash.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let text = hash.to_string();
        assert_eq!(text, format!("sha256:{}", hash.hex()));
        assert_eq!(SecretHash::parse(&text), Some(hash));
        assert_eq!(SecretHash::parse(&text.to_uppercase()), None);
        assert_eq!(SecretHash::parse(&text[..70]), None);
        assert_eq!(SecretHash::parse(&hash.hex()), None, "the prefix is required");
    }

    #[test]
    fn a_secret_matches_only_its_own_hash() {
        let secret = SecretString::generate();
        let stored = secret.hash();
        assert!(stored.matches(secret.expose()));
        assert!(!stored.matches(&secret.expose()[1..]));
        assert!(!stored.matches(""));
    }

    #[test]
    fn generated_secrets_are_256_bits_and_never_printed() {
        let secret = SecretString::generate();
        assert_eq!(secret.expose().len(), 43);
        assert_ne!(secret, SecretString::generate());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert!(!format!("{:?}", secret.hash()).contains(&secret.hash().hex()));
        assert_eq!(SecretString::generate_bytes(24).expose().len(), 32);
    }
}
