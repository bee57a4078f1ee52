//! An organization's signing keys as the operator (and standalone mode)
//! keeps them: in the store, each private key sealed under the
//! key-encryption key ([`crate::sealing`]), and exported as the Secret
//! `{org}-signing-keys`. The keys themselves, their generation and the
//! rotation schedule are [`crate::token::keys`]'s.
//!
//! ```text
//!  store: signing_keys (public record + sealed {meta, PKCS#8}) ──open (KEK)──► KeySet
//!     ▲                                 (+ keys only an earlier version's Secret holds: imported once)
//!     │                                                    │ plan_rotation + apply
//!     └──────── sync_store: sealed, one row per key ◄───── KeySet ──► Secret {org}-signing-keys (export)
//!                         │ Change::SigningKey                         keys.json [KeyMeta, …], {kid}.pem
//!                         ▼
//!  every token-service replica: read_store (opened with the same KEK), cached until the next change
//! ```
//!
//! Why the store and not the Secret (docs/design/keys.md): the token
//! service's replicas run in the operator's namespace and cannot mount a
//! Secret of each tenant's namespace; the store is already where they read
//! everything else, and its change feed tells every replica of a rotation at
//! once, where a mounted Secret is refreshed by each kubelet on its own
//! schedule. The Secret's layout stays the token service's `--keys-dir`
//! layout for one organization, for anyone who wants the keys outside.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::{GoDuration, TokenPolicy};
use crate::sealing::{KeyRing, SealingError, sealed_key_id};
use crate::store::{
    DesiredStateStore as _, SealedSigningKeyStore as _, SigningKeyRecord, SigningKeyState, Store, StoreError,
};
use crate::token::keys::{KeyError, KeyMeta, KeySet, KeyState, RotationPlan, RotationPolicy, SigningKey};

/// Key of the metadata document in the Secret: a JSON array of [`KeyMeta`].
pub const KEYS_DOCUMENT: &str = "keys.json";

/// Key of a private key's PKCS#8 PEM document in the Secret.
pub fn pem_entry(kid: &str) -> String {
    format!("{kid}.pem")
}

/// Why keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysProblem {
    #[error("{KEYS_DOCUMENT} is not a JSON array of key metadata: {0}")]
    Document(serde_json::Error),
    #[error("{KEYS_DOCUMENT} names key {0} but the Secret has no {0}.pem")]
    MissingPem(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the sealed private key of {kid} does not open: {source}")]
    Sealed { kid: String, source: SealingError },
    #[error("the sealed private key of {kid} opens to something else than a key: {reason}")]
    SealedPayload { kid: String, reason: String },
    #[error("sealing the private key of {kid}: {source}")]
    Seal { kid: String, source: SealingError },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// What a sealed key is bound to: its organization (namespace) and kid.
fn seal_context(organization: &str, kid: &str) -> Vec<u8> {
    format!("portcullis signing key\0{organization}\0{kid}").into_bytes()
}

/// What is sealed: the key's metadata and its PKCS#8 document.
#[derive(Serialize, Deserialize)]
struct SealedPayload {
    meta: KeyMeta,
    /// PKCS#8 DER, base64url.
    pkcs8: String,
}

/// `key`'s private half and metadata, sealed for `organization`'s row.
pub fn seal(kek: &KeyRing, organization: &str, key: &SigningKey) -> Result<String, KeysProblem> {
    let payload = SealedPayload { meta: key.meta().clone(), pkcs8: URL_SAFE_NO_PAD.encode(key.pkcs8_der()) };
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&payload)
            .map_err(|e| KeysProblem::SealedPayload { kid: key.kid().to_owned(), reason: e.to_string() })?,
    );
    kek.seal(&plaintext, &seal_context(organization, key.kid()))
        .map_err(|source| KeysProblem::Seal { kid: key.kid().to_owned(), source })
}

/// Opens the sealed key of row `(organization, kid)`.
pub fn open(kek: &KeyRing, organization: &str, kid: &str, sealed: &str) -> Result<SigningKey, KeysProblem> {
    let plaintext = kek
        .open(sealed, &seal_context(organization, kid))
        .map_err(|source| KeysProblem::Sealed { kid: kid.to_owned(), source })?;
    let payload: SealedPayload = serde_json::from_slice(&plaintext)
        .map_err(|e| KeysProblem::SealedPayload { kid: kid.to_owned(), reason: e.to_string() })?;
    let der = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(&payload.pkcs8)
            .map_err(|e| KeysProblem::SealedPayload { kid: kid.to_owned(), reason: e.to_string() })?,
    );
    // The thumbprint check of from_pkcs8_der ties the key to the kid it is sealed under.
    if payload.meta.kid != kid {
        return Err(KeysProblem::SealedPayload {
            kid: kid.to_owned(),
            reason: "sealed for another kid".into(),
        });
    }
    Ok(SigningKey::from_pkcs8_der(payload.meta, &der)?)
}

/// An organization's keys as the store holds them.
#[derive(Debug, Default)]
pub struct StoredKeys {
    /// The keys whose private half opened.
    pub keys: Vec<SigningKey>,
    /// Rows without a private half (written before keys were sealed into the store).
    pub unsealed: Vec<String>,
    /// Rows whose private half does not open, and why.
    pub unopened: Vec<KeysProblem>,
}

/// Reads and opens every key of `organization` (its namespace).
pub async fn read_store(store: &Store, kek: &KeyRing, organization: &str) -> Result<StoredKeys, StoreError> {
    let mut out = StoredKeys::default();
    for row in store.sealed_signing_keys(organization).await? {
        let kid = row.record.kid;
        match row.sealed {
            None => out.unsealed.push(kid),
            Some(sealed) => match open(kek, organization, &kid, &sealed) {
                Ok(key) => out.keys.push(key),
                Err(problem) => out.unopened.push(problem),
            },
        }
    }
    Ok(out)
}

/// The key set the token service signs with: every key that opens. A key
/// sealed under a key-encryption key this process does not hold (the
/// operator re-sealed it under a new one, and this replica is about to be
/// replaced by one that holds it) is taken from `held`, the set this process
/// opened before, when it is the same key in the same state: a rotation of
/// the key-encryption key never leaves a running replica without keys.
/// Other keys that do not open are left out and logged (their kid and why,
/// never material).
pub async fn serving_key_set(
    store: &Store,
    kek: &KeyRing,
    organization: &str,
    held: Option<&KeySet>,
) -> Result<KeySet, KeysProblem> {
    let mut keys = Vec::new();
    let mut unsealed = Vec::new();
    for row in store.sealed_signing_keys(organization).await? {
        let Some(sealed) = row.sealed.as_deref() else {
            unsealed.push(row.record.kid);
            continue;
        };
        match open(kek, organization, &row.record.kid, sealed) {
            Ok(key) => keys.push(key),
            Err(problem) => match held_copy(held, &row.record, &problem) {
                Some(key) => {
                    tracing::warn!(
                        organization,
                        kid = row.record.kid,
                        "signing key sealed under a key-encryption key this process does not hold; \
                         signing with the copy it opened before until it runs with that key"
                    );
                    keys.push(key);
                }
                None => tracing::error!(organization, %problem, "a signing key is left out"),
            },
        }
    }
    if !unsealed.is_empty() {
        tracing::warn!(organization, kids = ?unsealed, "signing keys without a sealed private half (the operator seals them on its next pass)");
    }
    Ok(KeySet::new(keys)?)
}

/// `held`'s copy of the key of `record`, when `problem` is only that the row
/// is sealed under another key-encryption key and the copy is that key in
/// the state the row gives it.
fn held_copy(held: Option<&KeySet>, record: &SigningKeyRecord, problem: &KeysProblem) -> Option<SigningKey> {
    let KeysProblem::Sealed { source: SealingError::OtherKey { .. }, .. } = problem else { return None };
    let key = held?.keys().iter().find(|key| key.kid() == record.kid)?;
    let same = self::record(key, &record.organization, SignedDuration::ZERO);
    if same.state != record.state
        || same.public_jwk != record.public_jwk
        || same.algorithm != record.algorithm
    {
        return None;
    }
    SigningKey::from_pkcs8_der(key.meta().clone(), key.pkcs8_der()).ok()
}

/// What one rotation pass did.
#[derive(Debug)]
pub struct Rotation {
    /// The keys after the pass, as now in the store.
    pub keys: KeySet,
    pub plan: RotationPlan,
    /// The kid of the key the pass generated, if any.
    pub created: Option<String>,
    /// Kids taken from `exported` (an earlier version's Secret or key files).
    pub imported: Vec<String>,
}

/// One pass of an organization's rotation, with the store as the source of
/// truth: the keys in the store, opened with `kek`, plus (once) those only
/// `exported` holds; the plan for `now` applied; every key written back
/// sealed and those the plan drops deleted. A key that does not open stops
/// the pass before anything is written: planning without it would delete it
/// and generate another.
pub async fn rotate(
    store: &Store,
    kek: &KeyRing,
    organization: &str,
    exported: &BTreeMap<String, ByteString>,
    policy: &RotationPolicy,
    now: Timestamp,
) -> Result<Rotation, KeysProblem> {
    let stored = read_store(store, kek, organization).await?;
    if let Some(problem) = stored.unopened.into_iter().next() {
        return Err(problem);
    }
    let mut keys = stored.keys;
    let mut imported = Vec::new();
    // Keys of an earlier version lived in the Secret: take those the store
    // knows only by their public half, or all of them into an empty store.
    let fresh_store = keys.is_empty() && stored.unsealed.is_empty();
    if fresh_store || !stored.unsealed.is_empty() {
        for key in load(exported)?.into_keys() {
            let wanted = fresh_store || stored.unsealed.iter().any(|kid| kid == key.kid());
            if wanted && !keys.iter().any(|k| k.kid() == key.kid()) {
                imported.push(key.kid().to_owned());
                keys.push(key);
            }
        }
    }
    let mut set = KeySet::new(keys)?;
    let plan = set.plan_rotation(policy, now);
    let created = set.apply(&plan, &mut rand::rng())?.map(|key| key.kid().to_owned());
    sync_store(store, kek, organization, &set, policy.overlap()).await?;
    Ok(Rotation { keys: set, plan, created, imported })
}

/// Brings the store's keys of `organization` (its namespace) in line with
/// `keys`: writes (sealed) the keys whose record differs, whose private half
/// is missing or sealed under another key-encryption key, and deletes the
/// rows of keys gone.
pub async fn sync_store(
    store: &Store,
    kek: &KeyRing,
    organization: &str,
    keys: &KeySet,
    overlap: SignedDuration,
) -> Result<(), KeysProblem> {
    let stored = store.sealed_signing_keys(organization).await?;
    for key in keys.keys() {
        let record = record(key, organization, overlap);
        let current = stored.iter().any(|row| {
            row.record == record
                && row
                    .sealed
                    .as_deref()
                    .and_then(|s| sealed_key_id(s).ok())
                    .is_some_and(|id| id == kek.current().id())
        });
        if !current {
            store.put_sealed_signing_key(&record, &seal(kek, organization, key)?).await?;
        }
    }
    for gone in stored.iter().filter(|s| !keys.keys().iter().any(|k| k.kid() == s.record.kid)) {
        store.delete_signing_key(organization, &gone.record.kid).await?;
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
