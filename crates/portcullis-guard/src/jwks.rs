//! The issuer's signing keys: found through OpenID Connect discovery, kept
//! in memory by `kid`, fetched again when a token names a kid we do not know
//! (a rotation), but at most once per `min_jwks_refresh`, whatever arrives.
//!
//! ```text
//!  key(kid) ─ known and fresh ──────────────────────────────► key
//!           ─ unknown, or older than jwks_max_age
//!               ─ last fetch < min_jwks_refresh ago ──────────► unknown key (401)
//!               ─ else, one task at a time: GET jwks_uri ────► key, or unknown key
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::GuardError;

/// A JWKS larger than this is refused (ours hold a handful of keys).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One verification key and the algorithm it is bound to (its JWK `alg`).
pub(crate) struct VerificationKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// The part of the discovery document the guard uses (OIDC Discovery §3).
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Default)]
struct KeyTable {
    keys: HashMap<String, Arc<VerificationKey>>,
    fetched_at: Option<Instant>,
}

pub(crate) struct JwksCache {
    http: reqwest::Client,
    issuer: String,
    algorithms: Vec<Algorithm>,
    min_refresh: Duration,
    max_age: Duration,
    discovery: tokio::sync::OnceCell<Discovery>,
    table: RwLock<Arc<KeyTable>>,
    /// When a fetch was last tried (held across the fetch: one at a time).
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl JwksCache {
    pub fn new(
        http: reqwest::Client,
        issuer: String,
        algorithms: Vec<Algorithm>,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            http,
            issuer,
            algorithms,
            min_refresh,
            max_age,
            discovery: tokio::sync::OnceCell::new(),
            table: RwLock::new(Arc::new(KeyTable::default())),
            last_attempt: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The issuer's discovery document, fetched once.
    pub async fn discovery(&self) -> Result<&Discovery, GuardError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let discovery: Discovery = get_json(&self.http, &url).await?;
                // OIDC Discovery §4.3: the document must name the issuer we asked.
                if discovery.issuer != self.issuer {
                    return Err(GuardError::IssuerUnavailable(format!(
                        "the discovery document names issuer {:?}, not {:?}",
                        discovery.issuer, self.issuer
                    )));
                }
                Ok(discovery)
            })
            .await
    }

    /// The key named `kid`.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerificationKey>, GuardError> {
        let table = self.current();
        let fresh = table.fetched_at.is_some_and(|at| at.elapsed() < self.max_age);
        if let Some(key) = table.keys.get(kid)
            && fresh
        {
            return Ok(key.clone());
        }
        match self.refresh(table.fetched_at).await {
            Ok(()) => {}
            // A stale table still verifies while the issuer is away.
            Err(e) if table.keys.is_empty() => return Err(e),
            Err(_) => {}
        }
        let table = self.current();
        if table.fetched_at.is_none() {
            return Err(GuardError::IssuerUnavailable("the issuer's keys could not be fetched yet".into()));
        }
        table.keys.get(kid).cloned().ok_or_else(|| {
            GuardError::invalid("The token's key (kid) is not among the issuer's signing keys.")
        })
    }

    fn current(&self) -> Arc<KeyTable> {
        self.table.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Fetches the JWKS unless one was tried less than `min_refresh` ago or
    /// another task fetched since the caller looked (`seen`).
    async fn refresh(&self, seen: Option<Instant>) -> Result<(), GuardError> {
        let mut last_attempt = self.last_attempt.lock().await;
        if self.current().fetched_at != seen {
            return Ok(());
        }
        if last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Ok(());
        }
        *last_attempt = Some(Instant::now());
        let discovery = self.discovery().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let set: RawJwkSet = get_json(&self.http, &discovery.jwks_uri).await?;
        // Key by key: one the library cannot read is skipped, not the whole set.
        let keys = set
            .keys
            .into_iter()
            .filter_map(|jwk| serde_json::from_value::<Jwk>(jwk).ok())
            .filter_map(|jwk| self.verification_key(&jwk))
            .map(|(kid, key)| (kid, Arc::new(key)))
            .collect();
        let table = Arc::new(KeyTable { keys, fetched_at: Some(Instant::now()) });
        *self.table.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = table;
        Ok(())
    }

    /// A signing key with a kid and an allowed `alg`; anything else is skipped.
    fn verification_key(&self, jwk: &Jwk) -> Option<(String, VerificationKey)> {
        let kid = jwk.common.key_id.clone()?;
        if matches!(&jwk.common.public_key_use, Some(use_) if *use_ != PublicKeyUse::Signature) {
            return None;
        }
        let algorithm = Algorithm::try_from(jwk.common.key_algorithm?).ok()?;
        if !self.algorithms.contains(&algorithm) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some((kid, VerificationKey { key, algorithm }))
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, GuardError> {
    let unavailable = |what: String| GuardError::IssuerUnavailable(format!("GET {url}: {what}"));
    let response = http.get(url).send().await.map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("status {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(unavailable("the document is too large".into()));
    }
    let body = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(unavailable("the document is too large".into()));
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))
}
