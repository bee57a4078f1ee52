//! An organization's signing keys: the rotation plan (pure) and the minimal
//! key generation it needs.
//!
//! ```text
//!  time ──────────────────────────────────────────────────────────────────►
//!  key A  [ active ........................ )[ retiring (overlap) )  deleted
//!  key B              [ next (overlap) )[ active ......................... )
//!                     ▲ published before it signs  ▲ still verifies what A signed
//! ```
//!
//! A key is published (`next`) at least `overlap` before it signs, and stays
//! published (`retiring`) for `overlap` after it stops signing; `overlap` is
//! at least the access token lifetime (a CEL rule), so no valid token ever
//! stops verifying.
//!
//! The private keys live in the Secret `{org}-signing-keys` (`{kid}.pem`, PKCS#8)
//! with their metadata in `keys.json`; the public JWKs and states go to the store.
//!
//! TODO(token): `src/token/keys.rs` is being written with its own rotation
//! planner and key types; once it lands, replace [`plan_rotation`] and
//! [`generate_key`] with it (keeping this module's Secret layout or moving
//! to the one it defines).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;
use ring::signature::{self, KeyPair};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::api::SigningAlgorithm;
use crate::store::{SigningKeyRecord, SigningKeyState};

/// A key as the Secret's `keys.json` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMeta {
    pub kid: String,
    pub algorithm: String,
    /// `next`, `active` or `retiring`.
    pub state: String,
    pub public_jwk: serde_json::Value,
    pub created_ms: i64,
    /// When it starts (or started) signing.
    pub activates_ms: i64,
    /// When it is removed (retiring keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_ms: Option<i64>,
}

impl KeyMeta {
    fn state(&self) -> Option<SigningKeyState> {
        SigningKeyState::parse(&self.state)
    }

    /// The store's record of this key.
    pub fn record(&self, organization: &str) -> SigningKeyRecord {
        SigningKeyRecord {
            organization: organization.to_owned(),
            kid: self.kid.clone(),
            algorithm: self.algorithm.clone(),
            state: self.state().unwrap_or(SigningKeyState::Retiring),
            public_jwk: self.public_jwk.to_string(),
            created_ms: self.created_ms,
            activates_ms: Some(self.activates_ms),
            retires_ms: self.retires_ms,
        }
    }
}

/// What the plan wants done to the key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Generate a key in this state, signing from `activates_ms`.
    Create { state: SigningKeyState, activates_ms: i64 },
    /// Change an existing key's state (and removal time).
    Transition { kid: String, state: SigningKeyState, retires_ms: Option<i64> },
    /// Remove a retired key.
    Remove { kid: String },
}

/// The plan for now, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationPlan {
    pub changes: Vec<KeyChange>,
    /// Unix milliseconds of the next scheduled change.
    pub next_check_ms: i64,
}

/// Plans the key set at `now_ms` for a rotation `period` and `overlap`.
/// Applying the plan and planning again at the same time plans nothing.
pub fn plan_rotation(keys: &[KeyMeta], period: Duration, overlap: Duration, now_ms: i64) -> RotationPlan {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    let mut changes = Vec::new();
    let mut next_check = i64::MAX;

    let of_state = |state| keys.iter().filter(move |k| k.state() == Some(state));
    // Retiring keys past their time go.
    for key in of_state(SigningKeyState::Retiring).chain(keys.iter().filter(|k| k.state().is_none())) {
        match key.retires_ms {
            Some(at) if at > now_ms => next_check = next_check.min(at),
            _ => changes.push(KeyChange::Remove { kid: key.kid.clone() }),
        }
    }

    let active = of_state(SigningKeyState::Active).max_by_key(|k| k.activates_ms);
    let next = of_state(SigningKeyState::Next).min_by_key(|k| k.activates_ms);
    // Extra active or next keys (should not happen) retire.
    for key in
        of_state(SigningKeyState::Active).filter(|k| Some(k.kid.as_str()) != active.map(|a| a.kid.as_str()))
    {
        changes.push(retire(key, now_ms, overlap_ms));
        next_check = next_check.min(now_ms.saturating_add(overlap_ms));
    }
    for key in
        of_state(SigningKeyState::Next).filter(|k| Some(k.kid.as_str()) != next.map(|n| n.kid.as_str()))
    {
        changes.push(KeyChange::Remove { kid: key.kid.clone() });
    }

    // The key that signs from now on, and when it stops.
    let (signing_since, promoted) = match (active, next) {
        (_, Some(next)) if next.activates_ms <= now_ms => {
            if let Some(active) = active {
                changes.push(retire(active, now_ms, overlap_ms));
                next_check = next_check.min(now_ms.saturating_add(overlap_ms));
            }
            changes.push(KeyChange::Transition {
                kid: next.kid.clone(),
                state: SigningKeyState::Active,
                retires_ms: None,
            });
            (next.activates_ms, true)
        }
        (Some(active), _) => (active.activates_ms, false),
        (None, _) => {
            changes.push(KeyChange::Create { state: SigningKeyState::Active, activates_ms: now_ms });
            (now_ms, false)
        }
    };

    let rotates_at = signing_since.saturating_add(period_ms);
    let publish_next_at = rotates_at.saturating_sub(overlap_ms);
    let waiting_next = next.filter(|_| !promoted);
    match waiting_next {
        Some(next) => next_check = next_check.min(next.activates_ms),
        None if publish_next_at <= now_ms => {
            changes.push(KeyChange::Create {
                state: SigningKeyState::Next,
                activates_ms: rotates_at.max(now_ms),
            });
            next_check = next_check.min(rotates_at.max(now_ms));
        }
        None => next_check = next_check.min(publish_next_at),
    }
    RotationPlan { changes, next_check_ms: next_check }
}

fn retire(key: &KeyMeta, now_ms: i64, overlap_ms: i64) -> KeyChange {
    KeyChange::Transition {
        kid: key.kid.clone(),
        state: SigningKeyState::Retiring,
        retires_ms: Some(now_ms.saturating_add(overlap_ms)),
    }
}

/// A freshly generated key: its PKCS#8 PEM and its metadata.
pub struct GeneratedKey {
    pub pem: String,
    pub meta: KeyMeta,
}

/// Generates a key for `algorithm`. RS256 keys cannot be generated here yet.
pub fn generate_key(
    algorithm: SigningAlgorithm,
    rng: &dyn SecureRandom,
    state: SigningKeyState,
    now_ms: i64,
    activates_ms: i64,
) -> Result<GeneratedKey> {
    let (pkcs8, jwk, alg) = match algorithm {
        SigningAlgorithm::ES256 => {
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, rng)
                .map_err(|_| Error::Generate { what: "P-256 key" })?;
            let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng)
                .map_err(|_| Error::Generate { what: "P-256 key" })?;
            // Uncompressed point: 0x04 ‖ x ‖ y (SEC 1 §2.3.3).
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(Error::Generate { what: "P-256 key" });
            }
            // RFC 7638 §3.2: the thumbprint input has the members in this order.
            let jwk = serde_json::json!({
                "crv": "P-256",
                "kty": "EC",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            });
            (pkcs8.as_ref().to_vec(), jwk, "ES256")
        }
        SigningAlgorithm::EdDSA => {
            let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(rng)
                .map_err(|_| Error::Generate { what: "Ed25519 key" })?;
            let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| Error::Generate { what: "Ed25519 key" })?;
            let jwk = serde_json::json!({
                "crv": "Ed25519",
                "kty": "OKP",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            });
            (pkcs8.as_ref().to_vec(), jwk, "EdDSA")
        }
        SigningAlgorithm::RS256 => return Err(Error::Generate { what: "RS256 key (not supported yet)" }),
    };
    // RFC 7638: the kid is the SHA-256 thumbprint of the required members.
    let thumbprint = ring::digest::digest(&ring::digest::SHA256, jwk.to_string().as_bytes());
    let kid = URL_SAFE_NO_PAD.encode(thumbprint.as_ref());
    let mut public_jwk = jwk;
    if let Some(object) = public_jwk.as_object_mut() {
        object.insert("kid".into(), kid.clone().into());
        object.insert("alg".into(), alg.into());
        object.insert("use".into(), "sig".into());
    }
    Ok(GeneratedKey {
        pem: pem("PRIVATE KEY", &pkcs8),
        meta: KeyMeta {
            kid,
            algorithm: alg.to_owned(),
            state: state.as_str().to_owned(),
            public_jwk,
            created_ms: now_ms,
            activates_ms,
            retires_ms: None,
        },
    })
}

/// RFC 7468 textual encoding.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A Go-style duration as the CRD's pattern allows (`15m`, `720h`, `1h30m`, `1.5h`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn apply(keys: &mut Vec<KeyMeta>, plan: &RotationPlan, now_ms: i64, counter: &mut usize) {
        for change in &plan.changes {
            match change {
                KeyChange::Create { state, activates_ms } => {
                    *counter += 1;
                    keys.push(KeyMeta {
                        kid: format!("k{counter}"),
                        algorithm: "ES256".into(),
                        state: state.as_str().into(),
                        public_jwk: serde_json::Value::Null,
                        created_ms: now_ms,
                        activates_ms: *activates_ms,
                        retires_ms: None,
                    })
                }
                KeyChange::Transition { kid, state, retires_ms } => {
                    if let Some(key) = keys.iter_mut().find(|k| &k.kid == kid) {
                        key.state = state.as_str().into();
                        key.retires_ms = *retires_ms;
                    }
                }
                KeyChange::Remove { kid } => keys.retain(|k| &k.kid != kid),
            }
        }
    }

    fn states(keys: &[KeyMeta]) -> Vec<(String, String)> {
        let mut out: Vec<_> = keys.iter().map(|k| (k.kid.clone(), k.state.clone())).collect();
        out.sort();
        out
    }

    #[test]
    fn a_key_is_published_before_it_signs_and_kept_after_so_tokens_always_verify() {
        let period = Duration::from_secs(720 * 3600);
        let overlap = Duration::from_secs(24 * 3600);
        let access_token_lifetime = 15 * 60 * 1000;
        let mut keys = Vec::new();
        let mut now = 0;
        let mut counter = 0;
        let plan = plan_rotation(&keys, period, overlap, now);
        apply(&mut keys, &plan, now, &mut counter);
        assert_eq!(states(&keys), [("k1".to_owned(), "active".to_owned())]);
        assert_eq!(plan.next_check_ms, 696 * HOUR, "next key published one overlap before the rotation");
        assert_eq!(plan_rotation(&keys, period, overlap, now).changes, [], "idempotent");

        // Walk through three rotations, checking at every scheduled time that
        // whatever key signed a token still valid is published.
        let mut signed: Vec<(String, i64)> = Vec::new();
        for _ in 0..12 {
            now = plan_rotation(&keys, period, overlap, now).next_check_ms;
            let plan = plan_rotation(&keys, period, overlap, now);
            apply(&mut keys, &plan, now, &mut counter);
            assert_eq!(plan_rotation(&keys, period, overlap, now).changes, [], "idempotent at {now}");
            let active: Vec<_> = keys.iter().filter(|k| k.state == "active").collect();
            assert_eq!(active.len(), 1, "exactly one signing key at {now}: {:?}", states(&keys));
            signed.push((active[0].kid.clone(), now));
            for (kid, at) in &signed {
                if now - at < access_token_lifetime {
                    assert!(keys.iter().any(|k| &k.kid == kid), "{kid} signed at {at} but gone at {now}");
                }
            }
            assert!(keys.len() <= 3, "{:?}", states(&keys));
        }
        assert!(now >= 3 * 720 * HOUR, "rotated several times (now {now})");
    }

    #[test]
    fn generated_keys_have_a_thumbprint_kid_and_a_pem() {
        let rng = ring::rand::SystemRandom::new();
        let key = generate_key(SigningAlgorithm::ES256, &rng, SigningKeyState::Active, 1, 1).unwrap();
        assert!(key.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(key.meta.public_jwk["kty"], "EC");
        assert_eq!(key.meta.public_jwk["kid"], key.meta.kid.as_str());
        assert_eq!(key.meta.kid.len(), 43);
        let ed = generate_key(SigningAlgorithm::EdDSA, &rng, SigningKeyState::Next, 1, 2).unwrap();
        assert_eq!(ed.meta.public_jwk["crv"], "Ed25519");
        assert!(generate_key(SigningAlgorithm::RS256, &rng, SigningKeyState::Active, 1, 1).is_err());
    }

    #[test]
    fn durations_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("720h"), Some(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
