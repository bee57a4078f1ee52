//! Time-based one-time passwords (RFC 6238) as the fallback second factor,
//! and the sealing of their secrets for the store.
//!
//! ```text
//!  enrolment: generate_secret ─► TotpSealer::seal(org, user) ─► mfa_enrolments.sealed_secret
//!                             └─► provisioning_uri (otpauth://, for the authenticator app)
//!  sign-in:   sealed_secret ─► TotpSealer::open(org, user) ─► verify(code, now, last_step)
//!                                                              └─► matched step, stored as the new
//!                                                                  last step (a replay is refused)
//! ```
//!
//! Parameters are the ones every authenticator app supports: HMAC-SHA-1,
//! 6 digits, 30-second steps, one step of clock drift either way. Sealing is
//! AES-256-GCM with a random nonce; the organization and user are the
//! associated data, so a sealed secret copied to another user does not open.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq as _;

/// RFC 6238 §4.1: X, the time step.
pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either side of now (RFC 6238 §5.2).
pub const DRIFT_STEPS: i64 = 1;
/// RFC 4226 §4 R6: at least 128 bits; 160 is what SHA-1 apps expect.
pub const SECRET_BYTES: usize = 20;

const SEALED_PREFIX: &str = "v1.";

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("sealed TOTP secret is malformed")]
    MalformedSealed,
    #[error("sealed TOTP secret does not open with this key (wrong key, or sealed for another user)")]
    WrongKey,
    #[error("no randomness available")]
    Randomness,
}

/// The time step containing `now` (RFC 6238 §4.2, T0 = 0).
pub fn step_at(now: Timestamp) -> i64 {
    now.as_second().div_euclid(STEP_SECONDS)
}

/// The code of one step (RFC 4226 §5.3 dynamic truncation, RFC 6238 §4.2 T as counter).
pub fn code_at_step(secret: &[u8], step: i64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &(step as u64).to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(DIGITS)
}

/// The code shown now, zero-padded.
pub fn code_at(secret: &[u8], now: Timestamp) -> String {
    format!("{:0width$}", code_at_step(secret, step_at(now)), width = DIGITS as usize)
}

/// The step whose code `code` is, within the drift window around `now` and
/// strictly after `last_used_step` (a code is good once), or `None`.
pub fn verify(secret: &[u8], code: &str, now: Timestamp, last_used_step: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut matched = None;
    // Every candidate is computed and compared in constant time, so timing
    // tells nothing about which step matched.
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = format!("{:0width$}", code_at_step(secret, step), width = DIGITS as usize);
        let fresh = last_used_step.is_none_or(|last| step > last);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// A new random secret.
pub fn generate_secret() -> Result<[u8; SECRET_BYTES], TotpError> {
    let mut secret = [0u8; SECRET_BYTES];
    SystemRandom::new().fill(&mut secret).map_err(|_| TotpError::Randomness)?;
    Ok(secret)
}

/// The `otpauth://` URI authenticator apps read from a QR code (Key Uri Format).
pub fn provisioning_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        base32_encode(secret),
        percent_encode(issuer)
    )
}

/// Seals and opens TOTP secrets with a key kept outside the store.
pub struct TotpSealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for TotpSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSealer(..)")
    }
}

impl TotpSealer {
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key");
        Self { key: LessSafeKey::new(unbound) }
    }

    /// `v1.` + base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, organization: &str, user_id: &str, secret: &[u8]) -> Result<String, TotpError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| TotpError::Randomness)?;
        let mut in_out = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(organization, user_id)),
                &mut in_out,
            )
            .map_err(|_| TotpError::Randomness)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    pub fn open(&self, organization: &str, user_id: &str, sealed: &str) -> Result<Vec<u8>, TotpError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(TotpError::MalformedSealed)?;
        let mut bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TotpError::MalformedSealed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(TotpError::MalformedSealed);
        }
        let mut in_out = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| TotpError::MalformedSealed)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated_data(organization, user_id)), &mut in_out)
            .map_err(|_| TotpError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

fn associated_data(organization: &str, user_id: &str) -> Vec<u8> {
    format!("portcullis-totp\0{organization}\0{user_id}").into_bytes()
}

/// RFC 4648 §6 base32, without padding (what authenticator apps expect).
fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors_truncated_to_six_digits() {
        // The RFC lists 8-digit codes; the last six are the 6-digit codes.
        for (time, eight_digits) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(RFC_SECRET, at(time)), eight_digits[2..], "T = {time}");
        }
    }

    #[test]
    fn one_step_of_drift_is_accepted_either_way_but_not_two() {
        let now = at(1_700_000_000);
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = format!("{:06}", code_at_step(RFC_SECRET, step + offset));
            assert_eq!(verify(RFC_SECRET, &code, now, None).is_some(), accepted, "offset {offset}");
        }
    }

    #[test]
    fn a_code_is_good_once() {
        let now = at(1_700_000_000);
        let code = code_at(RFC_SECRET, now);
        let used = verify(RFC_SECRET, &code, now, None).expect("fresh code");
        assert_eq!(verify(RFC_SECRET, &code, now, Some(used)), None, "replay in the same step");
        let previous = format!("{:06}", code_at_step(RFC_SECRET, used - 1));
        assert_eq!(verify(RFC_SECRET, &previous, now, Some(used)), None, "an older step after a newer one");
        let next = at(1_700_000_000 + STEP_SECONDS);
        assert!(verify(RFC_SECRET, &code_at(RFC_SECRET, next), next, Some(used)).is_some());
    }

    #[test]
    fn malformed_codes_are_refused() {
        let now = at(1_700_000_000);
        let code = code_at(RFC_SECRET, now);
        for bad in ["", "12345", "1234567", "abcdef", &format!("{code}0")] {
            assert_eq!(verify(RFC_SECRET, bad, now, None), None, "{bad:?}");
        }
        assert!(verify(RFC_SECRET, &format!(" {code} "), now, None).is_some(), "spaces are trimmed");
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_and_key() {
        let sealer = TotpSealer::new(&[7; 32]);
        let secret = generate_secret().unwrap();
        let sealed = sealer.seal("acme", "user-1", &secret).unwrap();
        assert!(!sealed.contains(&URL_SAFE_NO_PAD.encode(secret)));
        assert_eq!(sealer.open("acme", "user-1", &sealed).unwrap(), secret);
        assert!(matches!(sealer.open("acme", "user-2", &sealed), Err(TotpError::WrongKey)));
        assert!(matches!(
            TotpSealer::new(&[8; 32]).open("acme", "user-1", &sealed),
            Err(TotpError::WrongKey)
        ));
        assert!(matches!(sealer.open("acme", "user-1", "plain"), Err(TotpError::MalformedSealed)));
    }

    #[test]
    fn provisioning_uri_carries_the_secret_in_base32() {
        let uri = provisioning_uri("Acme Corp", "alice@acme.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Corp:alice@acme.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30"
        );
    }
}
