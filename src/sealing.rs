//! Sealing secrets at rest under a key-encryption key (a primitive: it uses
//! nothing of Portcullis). The private signing keys live in the store sealed
//! this way, so that every replica of the token service reads them from the
//! same place the change feed announces, and a copy of the database alone
//! signs nothing.
//!
//! ```text
//!  KeyEncryptionKey (32 bytes: the operator's Secret, or DATA/key-encryption.key)
//!      │  id = first 8 bytes of SHA-256(key), hex: names the key, reveals nothing
//!      ▼
//!  seal(plaintext, context) ──► "v1.{id}.{base64url(nonce ‖ AES-256-GCM(plaintext, aad = context))}"
//!  open(sealed, context)    ──► plaintext, only with the same key and the same context
//!  KeyRing { current, previous… }: seals under current, opens with whichever sealed (rotation)
//! ```
//!
//! The context (for a signing key: its organization and kid) is
//! authenticated, not encrypted: a sealed value copied to another row does
//! not open there. Nonces are 96 random bits per sealing, which is safe for
//! far more sealings than a key-encryption key ever sees (keys are sealed a
//! few times a month per organization).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// Length of a key-encryption key, in bytes.
pub const KEY_LEN: usize = 32;

/// The version prefix of what [`KeyEncryptionKey::seal`] writes.
const FORMAT: &str = "v1";

/// Why a key-encryption key or a sealed value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealingError {
    #[error(
        "a key-encryption key is {KEY_LEN} random bytes, base64-encoded (for example `openssl rand -base64 32`); \
         this one decodes to {0}"
    )]
    BadKey(String),
    #[error("not a sealed value of a known format")]
    Malformed,
    #[error("sealed under key-encryption key {sealed_with}, not under {available}")]
    OtherKey { sealed_with: String, available: String },
    #[error("the sealed value does not open: altered, or sealed for another context")]
    Rejected,
    #[error("the system random generator failed")]
    Random,
}

/// A 256-bit AES-GCM key that seals other secrets. Never printed.
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealingError> {
        if bytes.len() != KEY_LEN {
            return Err(SealingError::BadKey(format!("{} bytes", bytes.len())));
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealingError::BadKey("no key".into()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { key: LessSafeKey::new(unbound), id })
    }

    /// A key from its text form: 32 bytes in base64 (standard or URL-safe,
    /// padded or not), surrounding whitespace ignored. This is how it sits in
    /// a Secret, an environment variable or a file.
    pub fn from_text(text: &str) -> Result<Self, SealingError> {
        let text = text.trim();
        let decoded = [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD, &STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| SealingError::BadKey("nothing: it is not base64".into()))?;
        Self::from_bytes(&decoded)
    }

    /// A new random key, in its text form (base64url, 43 characters).
    pub fn generate_text() -> Result<Zeroizing<String>, SealingError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| SealingError::Random)?;
        Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
    }

    /// Names the key without revealing it: the first 8 bytes of its SHA-256, hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, bound to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealingError::Random)?;
        let mut buffer = Zeroizing::new(plaintext.to_vec());
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut *buffer)
            .map_err(|_| SealingError::Rejected)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buffer.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(format!("{FORMAT}.{}.{}", self.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens what [`seal`](Self::seal) made with this key and `context`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealingError> {
        let sealed_with = sealed_key_id(sealed)?;
        if sealed_with != self.id {
            return Err(SealingError::OtherKey {
                sealed_with: sealed_with.to_owned(),
                available: self.id.clone(),
            });
        }
        let body = sealed.rsplit('.').next().ok_or(SealingError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealingError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealingError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::Malformed)?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| SealingError::Rejected)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

/// The key that seals, and the keys it replaced (which still open what they
/// sealed): how a key-encryption key is rotated without losing anything.
/// The operator re-seals under `current` whatever it reads sealed otherwise.
#[derive(Debug)]
pub struct KeyRing {
    current: KeyEncryptionKey,
    previous: Vec<KeyEncryptionKey>,
}

impl KeyRing {
    pub fn new(current: KeyEncryptionKey, previous: Vec<KeyEncryptionKey>) -> Self {
        Self { current, previous }
    }

    /// The key that seals.
    pub fn current(&self) -> &KeyEncryptionKey {
        &self.current
    }

    /// Seals under the current key.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealingError> {
        self.current.seal(plaintext, context)
    }

    /// Opens with whichever key of the ring sealed `sealed`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealingError> {
        let id = sealed_key_id(sealed)?;
        match std::iter::once(&self.current).chain(&self.previous).find(|key| key.id() == id) {
            Some(key) => key.open(sealed, context),
            None => Err(SealingError::OtherKey {
                sealed_with: id.to_owned(),
                available: std::iter::once(&self.current)
                    .chain(&self.previous)
                    .map(KeyEncryptionKey::id)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl From<KeyEncryptionKey> for KeyRing {
    fn from(current: KeyEncryptionKey) -> Self {
        Self::new(current, Vec::new())
    }
}

/// The id of the key a sealed value was sealed with.
pub fn sealed_key_id(sealed: &str) -> Result<&str, SealingError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(FORMAT), Some(id), Some(_)) if !id.is_empty() => Ok(id),
        _ => Err(SealingError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyEncryptionKey {
        KeyEncryptionKey::from_text(&KeyEncryptionKey::generate_text().unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_only() {
        let kek = key();
        let sealed = kek.seal(b"private key", b"acme/kid-1").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", kek.id())), "{sealed}");
        assert!(!sealed.contains("private"));
        assert_eq!(kek.open(&sealed, b"acme/kid-1").unwrap().as_slice(), b"private key");
        assert_eq!(kek.open(&sealed, b"globex/kid-1"), Err(SealingError::Rejected), "another row's context");
        let other = key();
        assert!(matches!(other.open(&sealed, b"acme/kid-1"), Err(SealingError::OtherKey { .. })));
        assert_ne!(kek.seal(b"private key", b"acme/kid-1").unwrap(), sealed, "a fresh nonce each time");
    }

    #[test]
    fn a_ring_opens_what_its_previous_keys_sealed_and_seals_under_the_current() {
        let old = key();
        let sealed_before = old.seal(b"k", b"ctx").unwrap();
        let old_id = old.id().to_owned();
        let ring = KeyRing::new(key(), vec![old]);
        assert_eq!(ring.open(&sealed_before, b"ctx").unwrap().as_slice(), b"k");
        let sealed_now = ring.seal(b"k", b"ctx").unwrap();
        assert_eq!(sealed_key_id(&sealed_now).unwrap(), ring.current().id());
        let stranger = key().seal(b"k", b"ctx").unwrap();
        let refused = ring.open(&stranger, b"ctx").unwrap_err();
        assert!(refused.to_string().contains(&old_id), "names the keys it has: {refused}");
    }

    #[test]
    fn an_altered_value_is_rejected() {
        let kek = key();
        let sealed = kek.seal(b"private key", b"ctx").unwrap();
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(kek.open(&altered, b"ctx"), Err(SealingError::Rejected));
        assert_eq!(kek.open("v1.x", b"ctx"), Err(SealingError::Malformed));
        assert_eq!(kek.open("nonsense", b"ctx"), Err(SealingError::Malformed));
    }

    #[test]
    fn keys_are_read_in_every_base64_form_and_must_be_32_bytes() {
        let bytes = [7u8; 32];
        let forms = [
            URL_SAFE_NO_PAD.encode(bytes),
            STANDARD.encode(bytes),
            format!("  {}\n", STANDARD.encode(bytes)),
        ];
        let ids: Vec<String> =
            forms.iter().map(|f| KeyEncryptionKey::from_text(f).unwrap().id().to_owned()).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        assert_eq!(ids[0].len(), 16);
        let short = KeyEncryptionKey::from_text(&STANDARD.encode([1u8; 16])).unwrap_err();
        assert!(short.to_string().contains("16 bytes"), "{short}");
        assert!(matches!(KeyEncryptionKey::from_text("not base64!"), Err(SealingError::BadKey(_))));
    }
}
