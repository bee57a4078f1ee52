//! What a process keeps to talk to upstreams: one OIDC relying party and
//! one SAML metadata cache per trust configuration (the system's roots, or
//! those plus an IdentityProvider's CA bundle), and where the upstreams'
//! client secrets and CA bundles are read from.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use super::http::{HttpError, UpstreamHttp};
use super::oidc::OidcRelyingParty;
use super::saml::SamlServiceProvider;
use crate::secret::SecretString;

/// Where the values named by an IdentityProvider's `clientSecretRef` and
/// `caBundleRef` come from: Kubernetes Secrets (and ConfigMaps) as the
/// process can see them.
pub trait UpstreamSecrets: Send + Sync + 'static {
    /// The value of `key` in Secret `name` of `namespace`.
    fn secret(&self, namespace: &str, name: &str, key: &str) -> Option<SecretString>;
    /// The value of `key` in ConfigMap `name` of `namespace`.
    fn config_map(&self, _namespace: &str, _name: &str, _key: &str) -> Option<String> {
        None
    }
}

/// No secrets at all (an upstream needing one cannot be used).
#[derive(Debug, Default)]
pub struct NoSecrets;

impl UpstreamSecrets for NoSecrets {
    fn secret(&self, _: &str, _: &str, _: &str) -> Option<SecretString> {
        None
    }
}

/// Secrets as files, `{dir}/{namespace}/{secret}/{key}` (a mounted
/// directory; the layout of standalone mode's data directory). ConfigMaps
/// under `{dir}/configmaps/{namespace}/{name}/{key}`.
#[derive(Clone, Debug)]
pub struct SecretsDirectory(pub PathBuf);

fn safe(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains('/') && !part.contains('\0')
}

impl UpstreamSecrets for SecretsDirectory {
    fn secret(&self, namespace: &str, name: &str, key: &str) -> Option<SecretString> {
        if ![namespace, name, key].iter().all(|p| safe(p)) {
            return None;
        }
        let text = std::fs::read_to_string(self.0.join(namespace).join(name).join(key)).ok()?;
        Some(SecretString::new(text.trim_end_matches(['\n', '\r']).to_owned()))
    }

    fn config_map(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        if ![namespace, name, key].iter().all(|p| safe(p)) {
            return None;
        }
        std::fs::read_to_string(self.0.join("configmaps").join(namespace).join(name).join(key)).ok()
    }
}

/// Secrets held in memory and replaced as a whole (standalone mode: the
/// Secrets of the manifests folder, read again on every change).
#[derive(Default)]
pub struct SecretsInMemory {
    values: RwLock<BTreeMap<(String, String, String), String>>,
}

impl std::fmt::Debug for SecretsInMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsInMemory").finish_non_exhaustive()
    }
}

impl SecretsInMemory {
    /// Holding `values`: `(namespace, name, key) → value`.
    pub fn new(values: BTreeMap<(String, String, String), String>) -> Self {
        Self { values: RwLock::new(values) }
    }

    /// Replaces every value.
    pub fn replace(&self, values: BTreeMap<(String, String, String), String>) {
        *self.values.write().unwrap_or_else(|e| e.into_inner()) = values;
    }
}

impl UpstreamSecrets for SecretsInMemory {
    fn secret(&self, namespace: &str, name: &str, key: &str) -> Option<SecretString> {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned(), key.to_owned()))
            .map(|v| SecretString::new(v.clone()))
    }
}

/// The clients of one trust configuration.
#[derive(Debug)]
pub struct UpstreamClients {
    pub oidc: OidcRelyingParty,
    pub saml: SamlServiceProvider,
}

impl UpstreamClients {
    fn new(ca_bundle: Option<&[u8]>) -> Result<Self, HttpError> {
        let http = UpstreamHttp::new(ca_bundle)?;
        Ok(Self { oidc: OidcRelyingParty::new(http.clone()), saml: SamlServiceProvider::new(http) })
    }
}

/// Every upstream client of a process, by CA bundle.
pub struct Upstreams {
    default: Arc<UpstreamClients>,
    by_bundle: Mutex<HashMap<Vec<u8>, Arc<UpstreamClients>>>,
    secrets: RwLock<Arc<dyn UpstreamSecrets>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    pub fn new() -> Result<Self, HttpError> {
        Ok(Self {
            default: Arc::new(UpstreamClients::new(None)?),
            by_bundle: Mutex::new(HashMap::new()),
            secrets: RwLock::new(Arc::new(NoSecrets)),
        })
    }

    /// The clients trusting the system's roots, plus `ca_bundle` (PEM) when given.
    pub fn clients(&self, ca_bundle: Option<&[u8]>) -> Result<Arc<UpstreamClients>, HttpError> {
        let Some(bundle) = ca_bundle else { return Ok(self.default.clone()) };
        let key = ring::digest::digest(&ring::digest::SHA256, bundle).as_ref().to_vec();
        let mut map = self.by_bundle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = map.get(&key) {
            return Ok(found.clone());
        }
        let clients = Arc::new(UpstreamClients::new(Some(bundle))?);
        map.insert(key, clients.clone());
        Ok(clients)
    }

    pub fn set_secrets(&self, secrets: Arc<dyn UpstreamSecrets>) {
        *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = secrets;
    }

    pub fn secrets(&self) -> Arc<dyn UpstreamSecrets> {
        self.secrets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
