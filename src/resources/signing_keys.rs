//! An organization's signing keys as the operator keeps them: the Secret
//! `{org}-signing-keys` and the store's public records. The keys themselves,
//! their generation and the rotation schedule are [`crate::token::keys`]'s.
//!
//! ```text
//!  Secret {org}-signing-keys                      token service (--keys-dir DIR/{org}/)
//!    keys.json   [KeyMeta, …]  ──load──► KeySet ──plan_rotation + apply──► KeySet ──► Secret data
//!    {kid}.pem   PKCS#8                                                     └──► store: public JWK + state
//! ```
//!
//! The Secret's layout is the token service's keys directory for one
//! organization, so a mounted copy of it is all the service needs.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::ByteString;

use crate::api::{GoDuration, TokenPolicy};
use crate::store::{DesiredStateStore as _, SigningKeyRecord, SigningKeyState, Store, StoreError};
use crate::token::keys::{KeyError, KeyMeta, KeySet, KeyState, RotationPolicy, SigningKey};

/// Key of the metadata document in the Secret: a JSON array of [`KeyMeta`].
pub const KEYS_DOCUMENT: &str = "keys.json";

/// Key of a private key's PKCS#8 PEM document in the Secret.
pub fn pem_entry(kid: &str) -> String {
    format!("{kid}.pem")
}

/// Why a Secret's keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysProblem {
    #[error("{KEYS_DOCUMENT} is not a JSON array of key metadata: {0}")]
    Document(serde_json::Error),
    #[error("{KEYS_DOCUMENT} names key {0} but the Secret has no {0}.pem")]
    MissingPem(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The key set held in a Secret's data (empty when there is none yet).
pub fn load(data: &BTreeMap<String, ByteString>) -> Result<KeySet, KeysProblem> {
    let Some(document) = data.get(KEYS_DOCUMENT) else {
        return Ok(KeySet::default());
    };
    let metas: Vec<KeyMeta> = serde_json::from_slice(&document.0).map_err(KeysProblem::Document)?;
    let mut keys = Vec::with_capacity(metas.len());
    for meta in metas {
        let pem = data.get(&pem_entry(&meta.kid)).ok_or_else(|| KeysProblem::MissingPem(meta.kid.clone()))?;
        keys.push(SigningKey::from_pkcs8_pem(meta, &String::from_utf8_lossy(&pem.0))?);
    }
    Ok(KeySet::new(keys)?)
}

/// The Secret's data for `set`: every key's PEM and the metadata document.
pub fn secret_data(set: &KeySet) -> BTreeMap<String, ByteString> {
    let mut data: BTreeMap<String, ByteString> = set
        .keys()
        .iter()
        .map(|key| (pem_entry(key.kid()), ByteString(key.to_pkcs8_pem().as_bytes().to_vec())))
        .collect();
    let metas: Vec<&KeyMeta> = set.metas().collect();
    data.insert(KEYS_DOCUMENT.to_owned(), ByteString(serde_json::to_vec_pretty(&metas).unwrap_or_default()));
    data
}

/// The organization's rotation schedule. Durations the CRD accepted but this
/// cannot use fall back to the CRD's defaults (720h, overlap 24h).
pub fn rotation_policy(tokens: &TokenPolicy) -> Result<RotationPolicy, KeyError> {
    let duration =
        |d: &GoDuration, default_hours: i64| d.signed().unwrap_or(SignedDuration::from_hours(default_hours));
    RotationPolicy::new(
        tokens.signing_algorithm.into(),
        duration(&tokens.key_rotation.period, 720),
        duration(&tokens.key_rotation.overlap, 24),
    )
}

/// The store's public record of `key`. A retiring key is removed `overlap`
/// after it stopped signing.
pub fn record(key: &SigningKey, organization: &str, overlap: SignedDuration) -> SigningKeyRecord {
    let meta = key.meta();
    SigningKeyRecord {
        organization: organization.to_owned(),
        kid: meta.kid.clone(),
        algorithm: meta.algorithm.as_str().to_owned(),
        state: match key.state() {
            KeyState::Next => SigningKeyState::Next,
            KeyState::Active => SigningKeyState::Active,
            KeyState::Retiring => SigningKeyState::Retiring,
        },
        public_jwk: serde_json::to_string(key.verifying_key().jwk()).unwrap_or_default(),
        created_ms: meta.created_at.as_millisecond(),
        activates_ms: meta.activated_at.map(|t| t.as_millisecond()),
        retires_ms: meta.retired_at.and_then(|t| t.checked_add(overlap).ok()).map(|t| t.as_millisecond()),
    }
}

/// Brings the store's public keys of `organization` (its namespace) in line
/// with `keys`: writes the records that differ, deletes those of keys gone.
pub async fn sync_store(
    store: &Store,
    organization: &str,
    keys: &KeySet,
    overlap: SignedDuration,
) -> Result<(), StoreError> {
    let stored = store.list_signing_keys(organization).await?;
    for key in keys.keys() {
        let record = record(key, organization, overlap);
        if !stored.contains(&record) {
            store.put_signing_key(&record).await?;
        }
    }
    for gone in stored.iter().filter(|s| !keys.keys().iter().any(|k| k.kid() == s.kid)) {
        store.delete_signing_key(organization, &gone.kid).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::Algorithm;
    use jiff::Timestamp;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    fn t(hours: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + hours * 3600).unwrap()
    }

    #[test]
    fn a_secret_written_from_a_key_set_loads_back_as_the_same_keys() {
        let mut rng = StdRng::seed_from_u64(7);
        let policy = RotationPolicy::new(
            Algorithm::ES256,
            SignedDuration::from_hours(720),
            SignedDuration::from_hours(24),
        )
        .unwrap();
        let mut set = KeySet::default();
        let plan = set.plan_rotation(&policy, t(0));
        set.apply(&plan, &mut rng).unwrap();
        let plan = set.plan_rotation(&policy, t(700));
        set.apply(&plan, &mut rng).unwrap();
        assert_eq!(set.keys().len(), 2, "an active key and its published successor");

        let data = secret_data(&set);
        assert_eq!(data.len(), 3, "keys.json and two PEMs: {:?}", data.keys().collect::<Vec<_>>());
        let loaded = load(&data).unwrap();
        assert_eq!(loaded.metas().collect::<Vec<_>>(), set.metas().collect::<Vec<_>>());
        assert_eq!(loaded.jwks(), set.jwks());
        assert!(load(&BTreeMap::new()).unwrap().keys().is_empty(), "no Secret yet: no keys");
    }

    #[test]
    fn a_secret_whose_pem_is_missing_or_swapped_is_refused() {
        let mut rng = StdRng::seed_from_u64(8);
        let policy = RotationPolicy::new(
            Algorithm::EdDSA,
            SignedDuration::from_hours(720),
            SignedDuration::from_hours(24),
        )
        .unwrap();
        let mut set = KeySet::default();
        set.apply(&set.plan_rotation(&policy, t(0)), &mut rng).unwrap();
        let mut data = secret_data(&set);
        let kid = set.keys()[0].kid().to_owned();

        let mut missing = data.clone();
        missing.remove(&pem_entry(&kid));
        assert!(matches!(load(&missing), Err(KeysProblem::MissingPem(k)) if k == kid));

        let other = SigningKey::generate(Algorithm::EdDSA, t(0), &mut rng).unwrap();
        data.insert(pem_entry(&kid), ByteString(other.to_pkcs8_pem().as_bytes().to_vec()));
        assert!(matches!(load(&data), Err(KeysProblem::Key(KeyError::KidMismatch { .. }))));
    }

    #[test]
    fn records_carry_the_public_half_and_when_a_retiring_key_goes() {
        let mut rng = StdRng::seed_from_u64(9);
        let key = SigningKey::generate(Algorithm::ES256, t(0), &mut rng).unwrap();
        let record = record(&key, "acme", SignedDuration::from_hours(24));
        assert_eq!((record.state, record.algorithm.as_str()), (SigningKeyState::Next, "ES256"));
        let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk).unwrap();
        assert_eq!(jwk["kid"], key.kid());
        assert!(jwk.get("d").is_none(), "no private member: {jwk}");
        assert_eq!(record.retires_ms, None);
    }
}
