//! Where the token service reads each organization's signing keys
//! ([`SigningKeySource`]):
//!
//! - [`SealedKeys`], in a cluster and in standalone mode: the store, where
//!   the operator keeps every key sealed under the key-encryption key the
//!   service is given. A set is cached per organization until the change
//!   feed says that organization's keys changed, so every replica signs with
//!   the new key as soon as the operator has written it. Keys that do not
//!   open are left out and logged (kid and reason, never material).
//! - [`KeyDirectory`], for a service run by hand on an exported Secret (and
//!   for tests): one directory per organization, laid out as the Secret
//!   `{org}-signing-keys`:
//!
//! ```text
//!  DIR/{organization}/keys.json    [KeyMeta, …]   (camelCase)
//!  DIR/{organization}/{kid}.pem    PKCS#8 PEM, parsed once into a SigningKey
//! ```
//!
//! Mounted Secrets change in place, so a cached directory set is re-checked
//! at most every [`RECHECK_INTERVAL`]: when `keys.json` differs from what was
//! loaded, the directory is read again. A bad or missing file keeps the last
//! good set and is logged (never the key material); an organization whose
//! keys never loaded has none, which the endpoints answer as a server error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::resources::signing_keys;
use crate::sealing::KeyRing;
use crate::store::Store;
use crate::token::keys::{KeyMeta, KeySet, SigningKey};

/// How stale a cached key set may get before `keys.json` is looked at again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The name of the metadata document in each organization's directory.
pub const KEYS_DOCUMENT: &str = "keys.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("organization name {0:?} cannot name a keys directory")]
    BadOrganizationName(String),

    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{path} is not a JSON array of key metadata: {source}")]
    Document { path: PathBuf, source: serde_json::Error },

    #[error("key {kid} of {organization}: {source}")]
    Key { organization: String, kid: String, source: crate::token::keys::KeyError },

    #[error("keys of {organization}: {source}")]
    Set { organization: String, source: crate::token::keys::KeyError },

    #[error("keys of {organization} in the store: {source}")]
    Store { organization: String, source: crate::resources::signing_keys::KeysProblem },
}

/// Where the token service reads signing keys.
pub enum SigningKeySource {
    /// Sealed in the store, keyed by the organization's namespace.
    Store(Box<SealedKeys>),
    /// A directory per organization, keyed by the organization's name.
    Directory(KeyDirectory),
}

impl From<KeyDirectory> for SigningKeySource {
    fn from(directory: KeyDirectory) -> Self {
        SigningKeySource::Directory(directory)
    }
}

impl From<KeyRing> for SigningKeySource {
    fn from(ring: KeyRing) -> Self {
        SigningKeySource::Store(Box::new(SealedKeys::new(ring)))
    }
}

/// The key sets of every organization, opened from the store and cached
/// until the change feed announces a change of that organization's keys.
pub struct SealedKeys {
    ring: KeyRing,
    cache: RwLock<HashMap<String, Arc<KeySet>>>,
    /// The last set opened per organization, kept across [`forget`](Self::forget):
    /// keys re-sealed under a key-encryption key this process lacks are
    /// served from it (see [`signing_keys::serving_key_set`]).
    held: RwLock<HashMap<String, Arc<KeySet>>>,
    /// Bumped by every [`forget`](Self::forget): a read that started before
    /// does not cache what it read (it may predate the change).
    generation: std::sync::atomic::AtomicU64,
}

impl SealedKeys {
    pub fn new(ring: KeyRing) -> Self {
        Self {
            ring,
            cache: RwLock::new(HashMap::new()),
            held: RwLock::new(HashMap::new()),
            generation: Default::default(),
        }
    }

    /// The key set of the organization whose namespace is `namespace`.
    pub async fn key_set(&self, store: &Store, namespace: &str) -> Result<Arc<KeySet>, KeyLoadError> {
        use std::sync::atomic::Ordering;
        if let Some(keys) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(namespace) {
            return Ok(keys.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let held = self.held.read().unwrap_or_else(|e| e.into_inner()).get(namespace).cloned();
        let keys = Arc::new(
            signing_keys::serving_key_set(store, &self.ring, namespace, held.as_deref())
                .await
                .map_err(|source| KeyLoadError::Store { organization: namespace.to_owned(), source })?,
        );
        self.held.write().unwrap_or_else(|e| e.into_inner()).insert(namespace.to_owned(), keys.clone());
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            cache.insert(namespace.to_owned(), keys.clone());
        }
        Ok(keys)
    }

    /// Drops the cached set of `namespace`, or every set (notices were missed).
    pub fn forget(&self, namespace: Option<&str>) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match namespace {
            Some(namespace) => {
                cache.remove(namespace);
            }
            None => cache.clear(),
        }
    }
}

struct Cached {
    keys: Arc<KeySet>,
    /// SHA-256 of the `keys.json` the set was loaded from.
    document_digest: [u8; 32],
    checked_at: Instant,
}

/// The key sets of every organization, loaded lazily from one directory.
pub struct KeyDirectory {
    dir: PathBuf,
    cache: RwLock<HashMap<String, Arc<Mutex<Cached>>>>,
}

impl KeyDirectory {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), cache: RwLock::new(HashMap::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The organization's current key set: cached, re-checked at most every
    /// [`RECHECK_INTERVAL`].
    pub async fn key_set(&self, organization: &str) -> Result<Arc<KeySet>, KeyLoadError> {
        let entry = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(organization).cloned();
        let Some(entry) = entry else {
            let (keys, document_digest) = self.load(organization).await?;
            let cached = Cached { keys: keys.clone(), document_digest, checked_at: Instant::now() };
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(organization.to_owned(), Arc::new(Mutex::new(cached)));
            return Ok(keys);
        };
        let (keys, digest) = {
            let mut cached = entry.lock().unwrap_or_else(|e| e.into_inner());
            if cached.checked_at.elapsed() < RECHECK_INTERVAL {
                return Ok(cached.keys.clone());
            }
            // Others keep using this set while one request re-reads.
            cached.checked_at = Instant::now();
            (cached.keys.clone(), cached.document_digest)
        };
        match self.reload_if_changed(organization, digest).await {
            Ok(None) => Ok(keys),
            Ok(Some((fresh, document_digest))) => {
                let mut cached = entry.lock().unwrap_or_else(|e| e.into_inner());
                cached.keys = fresh.clone();
                cached.document_digest = document_digest;
                tracing::info!(organization, "signing keys reloaded");
                Ok(fresh)
            }
            Err(error) => {
                tracing::warn!(organization, %error, "signing keys could not be reloaded; keeping the last good set");
                Ok(keys)
            }
        }
    }

    fn org_dir(&self, organization: &str) -> Result<PathBuf, KeyLoadError> {
        let safe = !organization.is_empty()
            && organization.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !organization.starts_with('.');
        if !safe {
            return Err(KeyLoadError::BadOrganizationName(organization.to_owned()));
        }
        Ok(self.dir.join(organization))
    }

    async fn read_document(&self, organization: &str) -> Result<(PathBuf, Vec<u8>), KeyLoadError> {
        let dir = self.org_dir(organization)?;
        let path = dir.join(KEYS_DOCUMENT);
        let bytes = tokio::fs::read(&path).await.map_err(|source| KeyLoadError::Read { path, source })?;
        Ok((dir, bytes))
    }

    async fn reload_if_changed(
        &self,
        organization: &str,
        digest: [u8; 32],
    ) -> Result<Option<(Arc<KeySet>, [u8; 32])>, KeyLoadError> {
        let (dir, document) = self.read_document(organization).await?;
        if sha256(&document) == digest {
            return Ok(None);
        }
        Ok(Some(parse_dir(organization, &dir, &document).await?))
    }

    async fn load(&self, organization: &str) -> Result<(Arc<KeySet>, [u8; 32]), KeyLoadError> {
        let (dir, document) = self.read_document(organization).await?;
        parse_dir(organization, &dir, &document).await
    }
}

async fn parse_dir(
    organization: &str,
    dir: &Path,
    document: &[u8],
) -> Result<(Arc<KeySet>, [u8; 32]), KeyLoadError> {
    let path = dir.join(KEYS_DOCUMENT);
    let metas: Vec<KeyMeta> =
        serde_json::from_slice(document).map_err(|source| KeyLoadError::Document { path, source })?;
    let mut keys = Vec::with_capacity(metas.len());
    for meta in metas {
        let kid = meta.kid.clone();
        let key_error =
            |source| KeyLoadError::Key { organization: organization.to_owned(), kid: kid.clone(), source };
        // A kid is a base64url thumbprint; anything else cannot name a file of ours.
        if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(key_error(crate::token::keys::KeyError::KidMismatch {
                expected: "a base64url thumbprint".into(),
                actual: "another value".into(),
            }));
        }
        let pem_path = dir.join(format!("{kid}.pem"));
        let pem = zeroize::Zeroizing::new(
            tokio::fs::read_to_string(&pem_path)
                .await
                .map_err(|source| KeyLoadError::Read { path: pem_path, source })?,
        );
        keys.push(SigningKey::from_pkcs8_pem(meta, &pem).map_err(key_error)?);
    }
    let set = KeySet::new(keys)
        .map_err(|source| KeyLoadError::Set { organization: organization.to_owned(), source })?;
    Ok((Arc::new(set), sha256(document)))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Writes `keys` into `dir/{organization}` as the operator's Secret would
/// appear (for tests and standalone mode). PEMs first, `keys.json` last, so
/// a reader never sees metadata naming a key file that is not there yet.
pub fn write_key_dir(dir: &Path, organization: &str, keys: &[&SigningKey]) -> std::io::Result<()> {
    let org_dir = dir.join(organization);
    std::fs::create_dir_all(&org_dir)?;
    for key in keys {
        std::fs::write(org_dir.join(format!("{}.pem", key.kid())), key.to_pkcs8_pem().as_bytes())?;
    }
    let metas: Vec<&KeyMeta> = keys.iter().map(|k| k.meta()).collect();
    let document = serde_json::to_vec_pretty(&metas).map_err(std::io::Error::other)?;
    let temp = org_dir.join(format!(".{KEYS_DOCUMENT}.tmp"));
    std::fs::write(&temp, document)?;
    std::fs::rename(temp, org_dir.join(KEYS_DOCUMENT))
}
