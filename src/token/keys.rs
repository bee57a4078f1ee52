//! Signing keys of one organization: generation, the PKCS#8 form kept in a
//! Kubernetes Secret, the public JWK, and the rotation schedule.
//!
//! A key is published in the JWKS for its whole life, and signs only while
//! `active`:
//!
//! ```text
//!  created_at        activated_at           retired_at            deleted
//!      │── overlap ──►│────── period ───────►│────── overlap ──────►│
//!      │    next      │   active (signs)     │  retiring            │
//!      └──────────────┴─── in the JWKS ──────┴──────────────────────┘
//! ```
//!
//! `next` lets relying parties that cache the JWKS learn a key before any
//! token carries it; `retiring` keeps a key until every token it signed has
//! expired, which holds as long as `overlap` is at least the token lifetime.
//! [`plan_rotation`] is the pure schedule; the operator applies its plan and
//! stores each key ([`SigningKey::to_pkcs8_pem`] and its [`KeyMeta`]).
//!
//! The private key is parsed once into a `ring` key pair kept in
//! [`SigningKey`]: signing never re-parses PKCS#8.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use rand_core::CryptoRng;
use ring::signature::{self, KeyPair as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::encoding::{b64url, sha256};

/// Size of generated RSA keys: RFC 7518 §3.3 requires at least 2048 bits.
pub const RSA_KEY_BITS: usize = 2048;

const PEM_LABEL: &str = "PRIVATE KEY";

/// A JWS signing algorithm we issue tokens with (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl From<crate::api::SigningAlgorithm> for Algorithm {
    fn from(algorithm: crate::api::SigningAlgorithm) -> Self {
        match algorithm {
            crate::api::SigningAlgorithm::ES256 => Algorithm::ES256,
            crate::api::SigningAlgorithm::EdDSA => Algorithm::EdDSA,
            crate::api::SigningAlgorithm::RS256 => Algorithm::RS256,
        }
    }
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    /// The algorithm named by an `alg` header value, exactly as registered.
    pub fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a key is in its life. Derived from [`KeyMeta`]'s timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// Signs new tokens.
    Active,
    /// Published so that the tokens it signed still verify; signs nothing.
    Retiring,
}

/// What is stored beside a key's PKCS#8 document, and all the schedule needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyMeta {
    /// RFC 7638 thumbprint (SHA-256) of the public JWK.
    pub kid: String,
    pub algorithm: Algorithm,
    /// When the key was published (entered `next`).
    pub created_at: Timestamp,
    /// When the key started signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Timestamp>,
    /// When the key stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Timestamp>,
}

impl KeyMeta {
    pub fn state(&self) -> KeyState {
        match (self.activated_at, self.retired_at) {
            (_, Some(_)) => KeyState::Retiring,
            (Some(_), None) => KeyState::Active,
            (None, None) => KeyState::Next,
        }
    }
}

/// Errors of key handling and rotation.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {algorithm} key failed: {reason}")]
    Generate { algorithm: Algorithm, reason: String },

    #[error("stored key {kid} is not a PKCS#8 PEM document: {reason}")]
    Pem { kid: String, reason: String },

    #[error("stored key {kid} is not a usable {algorithm} PKCS#8 key: {reason}")]
    Rejected { kid: String, algorithm: Algorithm, reason: String },

    #[error("stored key has thumbprint {actual} but its metadata names kid {expected}")]
    KidMismatch { expected: String, actual: String },

    #[error("two keys have kid {kid}")]
    DuplicateKid { kid: String },

    #[error("invalid key rotation policy: {0}")]
    Policy(&'static str),

    #[error("signing with key {kid} failed")]
    Sign { kid: String },
}

/// The public half of a signing key, as published and as used to verify.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    /// `ring`'s encoding: uncompressed SEC1 point, raw Ed25519 key, or DER
    /// `RSAPublicKey`.
    public_key: Vec<u8>,
    jwk: Jwk,
}

impl VerifyingKey {
    fn new(algorithm: Algorithm, public_key: Vec<u8>, pair: &KeyPair) -> Self {
        let params = match pair {
            // RFC 7518 §6.2.1: x and y are the 32-byte coordinates after 0x04.
            KeyPair::Es256(_) => JwkParams::Ec {
                crv: "P-256".to_owned(),
                x: b64url(public_key.get(1..33).unwrap_or_default()),
                y: b64url(public_key.get(33..65).unwrap_or_default()),
            },
            // RFC 8037 §2.
            KeyPair::EdDsa(_) => JwkParams::Okp { crv: "Ed25519".to_owned(), x: b64url(&public_key) },
            // RFC 7518 §6.3.1: unsigned big-endian, no leading zeros.
            KeyPair::Rs256(p) => {
                let components: signature::RsaPublicKeyComponents<Vec<u8>> = p.public().into();
                JwkParams::Rsa { n: b64url(&components.n), e: b64url(&components.e) }
            }
        };
        let kid = params.thumbprint();
        let jwk = Jwk { params, key_use: "sig".to_owned(), alg: algorithm, kid };
        Self { algorithm, public_key, jwk }
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The raw public key: uncompressed SEC1 point (ES256), the 32-byte key
    /// (EdDSA) or a DER `RSAPublicKey` (RS256).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Checks a JWS signature with this key's own algorithm only (RFC 8725 §3.1).
    pub(crate) fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(algorithm, &self.public_key).verify(message, signature).is_ok()
    }
}

/// A parsed key pair, kept for the life of the key (the cached signer).
enum KeyPair {
    Es256(signature::EcdsaKeyPair),
    EdDsa(signature::Ed25519KeyPair),
    Rs256(signature::RsaKeyPair),
}

/// A private signing key, parsed once, with its metadata.
pub struct SigningKey {
    meta: KeyMeta,
    pair: KeyPair,
    verifying: VerifyingKey,
    pkcs8: Zeroizing<Vec<u8>>,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("SigningKey").field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key in state `next`, published from `created_at`.
    pub fn generate<R: CryptoRng + ?Sized>(
        algorithm: Algorithm,
        created_at: Timestamp,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        let pkcs8 = generate_pkcs8(algorithm, rng)?;
        let (pair, public_key) = parse_pkcs8(algorithm, &pkcs8).map_err(|reason| KeyError::Generate {
            algorithm,
            reason: format!("the generated key does not parse: {reason}"),
        })?;
        let verifying = VerifyingKey::new(algorithm, public_key, &pair);
        let meta = KeyMeta {
            kid: verifying.jwk.kid.clone(),
            algorithm,
            created_at,
            activated_at: None,
            retired_at: None,
        };
        Ok(Self { meta, pair, verifying, pkcs8, rng: ring::rand::SystemRandom::new() })
    }

    /// Loads a stored key. Its thumbprint must be `meta.kid`, so that a Secret
    /// whose key and metadata were mixed up is refused rather than published.
    pub fn from_pkcs8_der(meta: KeyMeta, der: &[u8]) -> Result<Self, KeyError> {
        let (pair, public_key) = parse_pkcs8(meta.algorithm, der).map_err(|reason| KeyError::Rejected {
            kid: meta.kid.clone(),
            algorithm: meta.algorithm,
            reason,
        })?;
        let verifying = VerifyingKey::new(meta.algorithm, public_key, &pair);
        if verifying.jwk.kid != meta.kid {
            return Err(KeyError::KidMismatch { expected: meta.kid, actual: verifying.jwk.kid });
        }
        let pkcs8 = Zeroizing::new(der.to_vec());
        Ok(Self { meta, pair, verifying, pkcs8, rng: ring::rand::SystemRandom::new() })
    }

    /// Loads a key stored as a PEM `PRIVATE KEY` document (RFC 7468 §10).
    pub fn from_pkcs8_pem(meta: KeyMeta, pem: &str) -> Result<Self, KeyError> {
        let parsed =
            pem::parse(pem).map_err(|e| KeyError::Pem { kid: meta.kid.clone(), reason: e.to_string() })?;
        if parsed.tag() != PEM_LABEL {
            return Err(KeyError::Pem {
                kid: meta.kid.clone(),
                reason: format!("label is {:?}, expected {PEM_LABEL:?}", parsed.tag()),
            });
        }
        let der = Zeroizing::new(parsed.into_contents());
        Self::from_pkcs8_der(meta, &der)
    }

    /// The PKCS#8 document as PEM, for the key's Secret.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new(PEM_LABEL, self.pkcs8.to_vec())))
    }

    /// The PKCS#8 document (DER).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn meta(&self) -> &KeyMeta {
        &self.meta
    }

    pub fn kid(&self) -> &str {
        &self.meta.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.meta.algorithm
    }

    pub fn state(&self) -> KeyState {
        self.meta.state()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs `message` with the cached key pair.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Sign { kid: self.meta.kid.clone() };
        match &self.pair {
            KeyPair::Es256(pair) => Ok(pair.sign(&self.rng, message).map_err(failed)?.as_ref().to_vec()),
            KeyPair::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            KeyPair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

/// RFC 8410 §7: PKCS#8 v1 prefix of an Ed25519 private key, followed by the
/// 32-byte seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

fn ed25519_pkcs8_from_seed(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len()));
    der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    der.extend_from_slice(seed);
    der
}

/// Draws a new private key from `rng`. `ring` cannot take our RNG (its trait is
/// sealed) nor generate RSA keys, so generation uses RustCrypto and `ring`
/// parses the result.
fn generate_pkcs8<R: CryptoRng + ?Sized>(
    algorithm: Algorithm,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let failed = |reason: String| KeyError::Generate { algorithm, reason };
    match algorithm {
        Algorithm::ES256 => {
            use p256::elliptic_curve::Generate as _;
            use p256::pkcs8::EncodePrivateKey as _;
            let secret = p256::SecretKey::generate_from_rng(rng);
            let document = secret.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            Ok(Zeroizing::new(document.as_bytes().to_vec()))
        }
        Algorithm::EdDSA => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(seed.as_mut());
            Ok(ed25519_pkcs8_from_seed(&seed))
        }
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::PrivateKey::new(rng, RSA_KEY_BITS).map_err(|e| failed(e.to_string()))?;
            let document = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            Ok(Zeroizing::new(document.as_bytes().to_vec()))
        }
    }
}

fn parse_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<(KeyPair, Vec<u8>), String> {
    let rejected = |e: ring::error::KeyRejected| e.to_string();
    let pair = match algorithm {
        Algorithm::ES256 => KeyPair::Es256(
            signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(rejected)?,
        ),
        // Accepts v1 (RFC 8410, what we write) and v2 (with the public key).
        Algorithm::EdDSA => {
            KeyPair::EdDsa(signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
        }
        Algorithm::RS256 => KeyPair::Rs256(signature::RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
    };
    let public_key = match &pair {
        KeyPair::Es256(p) => p.public_key().as_ref().to_vec(),
        KeyPair::EdDsa(p) => p.public_key().as_ref().to_vec(),
        KeyPair::Rs256(p) => p.public_key().as_ref().to_vec(),
    };
    Ok((pair, public_key))
}

/// A public JSON Web Key (RFC 7517 §4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    #[serde(flatten)]
    pub params: JwkParams,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: Algorithm,
    pub kid: String,
}

/// The key-type specific members of a [`Jwk`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kty")]
pub enum JwkParams {
    /// RFC 7518 §6.2.
    #[serde(rename = "EC")]
    Ec { crv: String, x: String, y: String },
    /// RFC 8037 §2.
    #[serde(rename = "OKP")]
    Okp { crv: String, x: String },
    /// RFC 7518 §6.3.
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

impl JwkParams {
    /// RFC 7638 §3: SHA-256 of the required members, sorted, without whitespace.
    pub fn thumbprint(&self) -> String {
        let s = |v: &str| serde_json::Value::from(v).to_string();
        let canonical = match self {
            Self::Ec { crv, x, y } => {
                format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, s(crv), s(x), s(y))
            }
            Self::Okp { crv, x } => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, s(crv), s(x)),
            Self::Rsa { n, e } => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(e), s(n)),
        };
        b64url(&sha256(canonical.as_bytes()))
    }
}

/// A JWK Set document (RFC 7517 §5), as served at the `jwks_uri`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// All keys of one organization.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

impl KeySet {
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        let mut set = Self::default();
        for key in keys {
            set.insert(key)?;
        }
        Ok(set)
    }

    fn insert(&mut self, key: SigningKey) -> Result<(), KeyError> {
        if self.keys.iter().any(|k| k.kid() == key.kid()) {
            return Err(KeyError::DuplicateKid { kid: key.meta.kid });
        }
        self.keys.push(key);
        Ok(())
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    pub fn into_keys(self) -> Vec<SigningKey> {
        self.keys
    }

    pub fn metas(&self) -> impl Iterator<Item = &KeyMeta> {
        self.keys.iter().map(SigningKey::meta)
    }

    /// The key that signs new tokens: the most recently activated one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        let kid = current_active(self.metas())?.kid.clone();
        self.keys.iter().find(|k| k.kid() == kid)
    }

    /// The key named by a token's `kid`, looked up only among our own keys.
    pub fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid() == kid).map(SigningKey::verifying_key)
    }

    /// The published keys: active first, then next, then retiring.
    pub fn jwks(&self) -> Jwks {
        let mut keys: Vec<&SigningKey> = self.keys.iter().collect();
        let rank = |state| match state {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retiring => 2,
        };
        keys.sort_by_key(|k| (rank(k.state()), k.meta.created_at, k.meta.kid.clone()));
        Jwks { keys: keys.into_iter().map(|k| k.verifying.jwk.clone()).collect() }
    }

    pub fn plan_rotation(&self, policy: &RotationPolicy, now: Timestamp) -> RotationPlan {
        plan_rotation(self.metas(), policy, now)
    }

    /// Applies `plan` in memory, generating the key it creates, and returns
    /// that key so the caller can store it.
    pub fn apply<R: CryptoRng + ?Sized>(
        &mut self,
        plan: &RotationPlan,
        rng: &mut R,
    ) -> Result<Option<&SigningKey>, KeyError> {
        // Generate first: a failure leaves the set as it was.
        let created = match &plan.create {
            Some(new) => {
                let mut key = SigningKey::generate(new.algorithm, plan.at, rng)?;
                key.meta = new.meta(key.meta.kid.clone(), plan.at);
                Some(key)
            }
            None => None,
        };
        self.keys.retain_mut(|key| plan.apply_to_meta(&mut key.meta));
        match created {
            Some(key) => {
                let kid = key.meta.kid.clone();
                self.insert(key)?;
                Ok(self.keys.iter().find(|k| k.kid() == kid))
            }
            None => Ok(None),
        }
    }
}

/// The organization's rotation schedule (its `tokens.keyRotation` and
/// `tokens.signingAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    algorithm: Algorithm,
    period: SignedDuration,
    overlap: SignedDuration,
    /// A rotation asked for by hand (`kubectl portcullis rotate-keys`): a
    /// key that signed since before this moment is due now.
    requested_at: Option<Timestamp>,
}

impl RotationPolicy {
    /// `overlap` must be positive and shorter than `period`; it must also be at
    /// least the longest token lifetime, which the Organization's CEL rule
    /// enforces for access tokens.
    pub fn new(
        algorithm: Algorithm,
        period: SignedDuration,
        overlap: SignedDuration,
    ) -> Result<Self, KeyError> {
        if overlap <= SignedDuration::ZERO {
            return Err(KeyError::Policy("overlap must be positive"));
        }
        if overlap >= period {
            return Err(KeyError::Policy("overlap must be shorter than the rotation period"));
        }
        Ok(Self { algorithm, period, overlap, requested_at: None })
    }

    /// The same schedule, with a rotation asked for at `at` (if any): the
    /// next key is published at once and signs once it has been published
    /// for `overlap`, so that no token stops verifying early.
    pub fn requested_at(self, at: Option<Timestamp>) -> Self {
        Self { requested_at: at, ..self }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn period(&self) -> SignedDuration {
        self.period
    }

    pub fn overlap(&self) -> SignedDuration {
        self.overlap
    }
}

/// A key that a [`RotationPlan`] creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub algorithm: Algorithm,
    /// `Next` normally; `Active` only when the organization has no key to sign
    /// with at all.
    pub state: KeyState,
}

impl NewKey {
    /// The metadata of the created key, given its thumbprint.
    pub fn meta(&self, kid: String, at: Timestamp) -> KeyMeta {
        let activated_at = (self.state == KeyState::Active).then_some(at);
        KeyMeta { kid, algorithm: self.algorithm, created_at: at, activated_at, retired_at: None }
    }
}

/// What the operator should do to an organization's keys at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationPlan {
    /// The `now` the plan was made for; transitions are stamped with it.
    pub at: Timestamp,
    pub create: Option<NewKey>,
    /// Keys that start signing (`next` → `active`).
    pub promote: Vec<String>,
    /// Keys that stop signing (`active` → `retiring`).
    pub retire: Vec<String>,
    /// Keys to remove from the set (and their Secrets).
    pub delete: Vec<String>,
    /// When the schedule next has something to do, if ever: the time to
    /// requeue at.
    pub wake_at: Option<Timestamp>,
}

impl RotationPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_none() && self.promote.is_empty() && self.retire.is_empty() && self.delete.is_empty()
    }

    /// Updates one existing key's metadata; `false` means delete the key.
    pub fn apply_to_meta(&self, meta: &mut KeyMeta) -> bool {
        if self.delete.contains(&meta.kid) {
            return false;
        }
        if self.promote.contains(&meta.kid) && meta.activated_at.is_none() {
            meta.activated_at = Some(self.at);
        }
        if self.retire.contains(&meta.kid) && meta.retired_at.is_none() {
            meta.retired_at = Some(self.at);
        }
        true
    }
}

/// The rotation schedule: what to create, promote, retire and delete at `now`.
///
/// - No key signs: promote the oldest fitting `next` key, or create an
///   `active` one (a new organization).
/// - The signing key is due within `overlap` (or has the wrong algorithm)
///   and there is no `next` key: create one.
/// - The signing key is due (or has the wrong algorithm) and the `next` key
///   has been published for `overlap`: promote it and retire the old one. An
///   operator that was down therefore delays rotation rather than skipping
///   the `next` phase.
/// - A `retiring` key is deleted `overlap` after it stopped signing.
/// - Surplus `active` keys are retired, surplus or wrong-algorithm `next` keys
///   (which signed nothing) deleted.
pub fn plan_rotation<'a>(
    keys: impl IntoIterator<Item = &'a KeyMeta>,
    policy: &RotationPolicy,
    now: Timestamp,
) -> RotationPlan {
    let keys: Vec<KeyMeta> = keys.into_iter().cloned().collect();
    let mut plan = decide(&keys, policy, now);
    plan.wake_at = wake_at(&keys, &plan, policy);
    plan
}

fn decide(keys: &[KeyMeta], policy: &RotationPolicy, now: Timestamp) -> RotationPlan {
    let mut plan = RotationPlan {
        at: now,
        create: None,
        promote: Vec::new(),
        retire: Vec::new(),
        delete: Vec::new(),
        wake_at: None,
    };
    for key in keys {
        if let Some(retired_at) = key.retired_at
            && now >= later(retired_at, policy.overlap)
        {
            plan.delete.push(key.kid.clone());
        }
    }

    let current = current_active(keys);
    for key in keys.iter().filter(|k| k.state() == KeyState::Active) {
        if current.is_some_and(|c| c.kid != key.kid) {
            plan.retire.push(key.kid.clone());
        }
    }

    let mut next: Vec<&KeyMeta> = keys.iter().filter(|k| k.state() == KeyState::Next).collect();
    next.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.kid.cmp(&b.kid)));
    let successor = next.iter().copied().find(|k| k.algorithm == policy.algorithm);
    for key in next {
        if successor.is_none_or(|s| s.kid != key.kid) {
            plan.delete.push(key.kid.clone());
        }
    }

    match (current, successor) {
        (None, Some(next)) => plan.promote.push(next.kid.clone()),
        (None, None) => plan.create = Some(NewKey { algorithm: policy.algorithm, state: KeyState::Active }),
        (Some(current), successor) => {
            let activated_at = current.activated_at.unwrap_or(current.created_at);
            let requested = policy.requested_at.filter(|&at| activated_at < at);
            let due = requested
                .map_or(later(activated_at, policy.period), |at| at.min(later(activated_at, policy.period)));
            let replace = current.algorithm != policy.algorithm || requested.is_some_and(|at| now >= at);
            match successor {
                None => {
                    if replace || now >= later(activated_at, policy.period - policy.overlap) {
                        plan.create = Some(NewKey { algorithm: policy.algorithm, state: KeyState::Next });
                    }
                }
                Some(next) => {
                    if now >= later(next.created_at, policy.overlap) && (replace || now >= due) {
                        plan.promote.push(next.kid.clone());
                        plan.retire.push(current.kid.clone());
                    }
                }
            }
        }
    }
    plan
}

/// The earliest moment after `plan.at` at which the schedule acts on the keys
/// as they are once `plan` is applied. Every condition in [`decide`] becomes
/// true at one of a few instants and stays true, so checking those suffices.
fn wake_at(keys: &[KeyMeta], plan: &RotationPlan, policy: &RotationPolicy) -> Option<Timestamp> {
    let mut after: Vec<KeyMeta> = keys.to_vec();
    after.retain_mut(|meta| plan.apply_to_meta(meta));
    if let Some(new) = &plan.create {
        // Any kid that no other key has will do.
        let kid = after.iter().map(|k| k.kid.as_str()).max().unwrap_or_default().to_owned() + "~";
        after.push(new.meta(kid, plan.at));
    }
    let mut candidates: Vec<Timestamp> = policy.requested_at.into_iter().collect();
    for key in &after {
        candidates.push(later(key.created_at, policy.overlap));
        if let Some(activated_at) = key.activated_at {
            candidates.push(later(activated_at, policy.period - policy.overlap));
            candidates.push(later(activated_at, policy.period));
        }
        if let Some(retired_at) = key.retired_at {
            candidates.push(later(retired_at, policy.overlap));
        }
    }
    candidates.sort();
    candidates.dedup();
    candidates.into_iter().filter(|&t| t > plan.at).find(|&t| !decide(&after, policy, t).is_empty())
}

/// The signing key among `keys`: the latest activated, ties broken by kid.
fn current_active<'a>(keys: impl IntoIterator<Item = &'a KeyMeta>) -> Option<&'a KeyMeta> {
    keys.into_iter()
        .filter(|k| k.state() == KeyState::Active)
        .min_by(|a, b| b.activated_at.cmp(&a.activated_at).then_with(|| a.kid.cmp(&b.kid)))
}

/// `t + d`, saturating at the end of time (stored timestamps are trusted but
/// must not make the schedule panic).
fn later(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests;
