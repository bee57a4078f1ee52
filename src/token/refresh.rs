//! Opaque refresh tokens: families, their successors, and the rotation
//! decision with reuse detection (RFC 9700 §4.14.2). A token is a 256-bit
//! [`SecretString`]; the store keeps only its [`SecretHash`] (see
//! [`crate::secret`] for why SHA-256 is the right stored form).
//!
//! The store keeps one row per family and one per issued token:
//!
//! ```text
//!  refresh_token_families                 refresh_tokens
//!  ──────────────────────                 ──────────────
//!  family_id   PK                  ◄───── family_id
//!  client_id, subject, scopes             token_hash   PK  (SecretHash)
//!  counter     BIGINT (current)           counter          (this token's)
//!  revoked_at  NULL
//!  expires_at  (from the sign-in; rotation never extends it)
//! ```
//!
//! A refresh looks the presented token's hash up, loads its family and asks
//! [`decide`]. On `Rotate { next_counter }` the store moves the family's
//! counter from the presented one to `next_counter` only if it is still the
//! presented one (`… WHERE (family_id, counter) = ($f, $presented) AND revoked
//! IS NULL`) and inserts the successor's hash with `next_counter`, in one
//! transaction (on SQLite shared by the rotations waiting at that moment:
//! `store::grants`). Of concurrent refreshes with one token exactly
//! one moves the counter; the others do not and are treated as reuse (a
//! client racing itself cannot be told from a thief racing the client). Old
//! token rows are kept until the family expires, so a replayed token is
//! recognised.

use jiff::{SignedDuration, Timestamp};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use super::encoding::b64url;
use crate::secret::{SecretHash, SecretString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefreshError {
    #[error("refresh token lifetime must be positive, got {0}")]
    NonPositiveLifetime(SignedDuration),

    #[error("refresh token expiry is out of range")]
    OutOfRange,
}

/// The id of a refresh-token family: every token descending from one sign-in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct FamilyId(String);

impl FamilyId {
    /// 128 random bits, base64url.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(b64url(&bytes))
    }

    /// An id read back from the store.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A family's row, as the rotation decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRecord {
    pub family_id: FamilyId,
    /// Counter of the only token of the family that may still be used.
    pub counter: u32,
    pub revoked: bool,
    pub expires_at: Timestamp,
}

/// A refresh token just issued: `token` goes to the client, the rest to the
/// store.
#[derive(Debug)]
pub struct IssuedRefreshToken {
    pub token: SecretString,
    pub hash: SecretHash,
    pub family_id: FamilyId,
    pub counter: u32,
}

impl IssuedRefreshToken {
    fn new<R: CryptoRng + ?Sized>(family_id: FamilyId, counter: u32, rng: &mut R) -> Self {
        let token = SecretString::generate_with(rng);
        let hash = token.hash();
        Self { token, hash, family_id, counter }
    }
}

/// A new family at sign-in, living `lifetime` from `now`, and its first token.
pub fn start_family<R: CryptoRng + ?Sized>(
    now: Timestamp,
    lifetime: SignedDuration,
    rng: &mut R,
) -> Result<(FamilyRecord, IssuedRefreshToken), RefreshError> {
    if lifetime <= SignedDuration::ZERO {
        return Err(RefreshError::NonPositiveLifetime(lifetime));
    }
    let expires_at = now.checked_add(lifetime).map_err(|_| RefreshError::OutOfRange)?;
    let family_id = FamilyId::generate(rng);
    let record = FamilyRecord { family_id: family_id.clone(), counter: 0, revoked: false, expires_at };
    Ok((record, IssuedRefreshToken::new(family_id, 0, rng)))
}

/// The token that replaces the presented one after [`RefreshDecision::Rotate`].
pub fn successor<R: CryptoRng + ?Sized>(
    family_id: &FamilyId,
    next_counter: u32,
    rng: &mut R,
) -> IssuedRefreshToken {
    IssuedRefreshToken::new(family_id.clone(), next_counter, rng)
}

/// What to do with a presented refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The current token: issue its successor with `next_counter`.
    Rotate { next_counter: u32 },
    /// An already rotated token came back, so one of its holders is not the
    /// client: revoke every token of the family (RFC 9700 §4.14.2).
    ReuseDetected { revoke_family: FamilyId },
    /// The family outlived its lifetime.
    Expired,
    /// The family was revoked (by reuse detection, logout or an admin).
    Revoked,
}

impl RefreshDecision {
    /// Every refusal is `invalid_grant` (RFC 6749 §5.2).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Rotate { .. } => None,
            Self::ReuseDetected { .. } | Self::Expired | Self::Revoked => Some("invalid_grant"),
        }
    }
}

/// Decides on a token with counter `presented_counter` of `family` at `now`.
pub fn decide(family: &FamilyRecord, presented_counter: u32, now: Timestamp) -> RefreshDecision {
    if family.revoked {
        return RefreshDecision::Revoked;
    }
    if now >= family.expires_at {
        return RefreshDecision::Expired;
    }
    if presented_counter != family.counter {
        // Older: replayed. Newer: the store is inconsistent; fail closed.
        return RefreshDecision::ReuseDetected { revoke_family: family.family_id.clone() };
    }
    match family.counter.checked_add(1) {
        Some(next_counter) => RefreshDecision::Rotate { next_counter },
        None => RefreshDecision::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn family() -> FamilyRecord {
        FamilyRecord {
            family_id: FamilyId::from_stored("fam-1".into()),
            counter: 3,
            revoked: false,
            expires_at: now() + SignedDuration::from_hours(720),
        }
    }

    #[test]
    fn the_current_token_rotates_to_the_next_counter() {
        assert_eq!(decide(&family(), 3, now()), RefreshDecision::Rotate { next_counter: 4 });
    }

    #[test]
    fn an_old_token_is_reuse_and_revokes_the_family() {
        let decision = decide(&family(), 2, now());
        assert_eq!(
            decision,
            RefreshDecision::ReuseDetected { revoke_family: FamilyId::from_stored("fam-1".into()) }
        );
        assert_eq!(decision.error_code(), Some("invalid_grant"));
        assert!(matches!(decide(&family(), 0, now()), RefreshDecision::ReuseDetected { .. }));
    }

    #[test]
    fn a_counter_ahead_of_the_family_fails_closed() {
        assert!(matches!(decide(&family(), 4, now()), RefreshDecision::ReuseDetected { .. }));
    }

    #[test]
    fn a_revoked_family_refuses_every_token() {
        let revoked = FamilyRecord { revoked: true, ..family() };
        assert_eq!(decide(&revoked, 3, now()), RefreshDecision::Revoked);
        assert_eq!(decide(&revoked, 1, now()), RefreshDecision::Revoked);
    }

    #[test]
    fn an_expired_family_refuses_its_current_token() {
        let f = family();
        assert_eq!(decide(&f, 3, f.expires_at), RefreshDecision::Expired);
        assert_eq!(
            decide(&f, 3, f.expires_at - SignedDuration::from_secs(1)),
            RefreshDecision::Rotate { next_counter: 4 }
        );
    }

    #[test]
    fn after_a_rotation_the_predecessor_is_reuse() {
        // Simulates what the store does with the decisions.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut record, first) = start_family(now(), SignedDuration::from_hours(720), &mut rng).unwrap();
        assert_eq!(first.counter, 0);
        let RefreshDecision::Rotate { next_counter } = decide(&record, first.counter, now()) else {
            panic!("the first token must rotate");
        };
        let second = successor(&record.family_id, next_counter, &mut rng);
        record.counter = next_counter;
        assert_ne!(second.token.expose(), first.token.expose());
        assert_eq!(decide(&record, second.counter, now()), RefreshDecision::Rotate { next_counter: 2 });
        assert_eq!(
            decide(&record, first.counter, now()),
            RefreshDecision::ReuseDetected { revoke_family: record.family_id.clone() }
        );
    }

    #[test]
    fn tokens_are_256_bit_base64url_and_stored_only_as_their_hash() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let (_, issued) = start_family(now(), SignedDuration::from_hours(1), &mut rng).unwrap();
        let token = issued.token.expose();
        assert_eq!(token.len(), 43);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(issued.hash, SecretHash::of(token));
        assert_ne!(issued.hash.as_bytes().as_slice(), token.as_bytes());
        assert!(!format!("{issued:?}").contains(token), "Debug must not print the token");
    }

    #[test]
    fn a_family_needs_a_positive_lifetime() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        assert_eq!(
            start_family(now(), SignedDuration::ZERO, &mut rng).unwrap_err(),
            RefreshError::NonPositiveLifetime(SignedDuration::ZERO)
        );
    }
}
