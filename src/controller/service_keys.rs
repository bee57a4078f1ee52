//! The Secret of the services' own keys, in the operator's namespace
//! (`portcullis-service-keys` unless `--service-keys-secret` names another):
//!
//! ```text
//!  key-encryption-key            32 random bytes, base64: seals every private signing key in the store
//!  previous-key-encryption-key   (optional) the one it replaced: still opens, never seals
//!  login-secret                  32+ bytes the token-service replicas share (CSRF, tickets, TOTP sealing)
//! ```
//!
//! The operator makes it when it is absent, and never changes one that
//! exists (it may be the user's, or the only copy that opens the store's
//! keys). It owns no reference to anything: deleting the operator must not
//! delete the key that opens every organization's signing keys. The token
//! service gets these keys by `secretKeyRef` (see [`super::workloads`]), and
//! its pods are rolled when they change (a checksum in the pod template).
//!
//! Rotating the key-encryption key: move the current value to
//! `previous-key-encryption-key`, put a new one in `key-encryption-key`; the
//! operator re-seals every key under the new one on its next pass of each
//! Organization, after which the previous one can go.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use super::labels;
use super::operator_status::SettingProblem;
use crate::sealing::{KeyEncryptionKey, KeyRing};

/// The Secret's default name.
pub const DEFAULT_SECRET_NAME: &str = "portcullis-service-keys";
/// Component label of the Secret.
pub const COMPONENT: &str = "service-keys";
pub const KEY_ENCRYPTION_KEY: &str = "key-encryption-key";
pub const PREVIOUS_KEY_ENCRYPTION_KEY: &str = "previous-key-encryption-key";
pub const LOGIN_SECRET: &str = "login-secret";
/// Shortest login secret accepted, in bytes (it keys HMACs and AEAD through HKDF).
pub const LOGIN_SECRET_MIN_LEN: usize = 32;

/// The keys, read and checked.
#[derive(Clone, Debug)]
pub struct ServiceKeys {
    pub ring: Arc<KeyRing>,
    /// Changes whenever any of the keys does (never reveals them): put in
    /// the token service's pod template so that its pods restart with them.
    pub checksum: String,
}

/// The Secret's keys checked: what the token service would read from them.
pub fn read(name: &str, secret: &Secret) -> Result<ServiceKeys, SettingProblem> {
    let value = |key: &str| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice());
    let text = |key: &str| value(key).map(String::from_utf8_lossy);
    let invalid = |key: &str, why: String| {
        SettingProblem::new("ServiceKeysInvalid", format!("Secret {name}, key {key}: {why}"))
    };
    let current =
        text(KEY_ENCRYPTION_KEY).ok_or_else(|| invalid(KEY_ENCRYPTION_KEY, "missing".into())).and_then(
            |t| KeyEncryptionKey::from_text(&t).map_err(|e| invalid(KEY_ENCRYPTION_KEY, e.to_string())),
        )?;
    let previous = match text(PREVIOUS_KEY_ENCRYPTION_KEY).filter(|t| !t.trim().is_empty()) {
        None => Vec::new(),
        Some(t) => vec![
            KeyEncryptionKey::from_text(&t)
                .map_err(|e| invalid(PREVIOUS_KEY_ENCRYPTION_KEY, e.to_string()))?,
        ],
    };
    match value(LOGIN_SECRET) {
        None => return Err(invalid(LOGIN_SECRET, "missing".into())),
        Some(v) if v.len() < LOGIN_SECRET_MIN_LEN => {
            return Err(invalid(
                LOGIN_SECRET,
                format!("{} bytes, at least {LOGIN_SECRET_MIN_LEN} needed", v.len()),
            ));
        }
        Some(_) => {}
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for key in [KEY_ENCRYPTION_KEY, PREVIOUS_KEY_ENCRYPTION_KEY, LOGIN_SECRET] {
        digest.update(key.as_bytes());
        digest.update(&[0]);
        digest.update(value(key).unwrap_or_default());
        digest.update(&[0]);
    }
    let checksum = digest.finish().as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(ServiceKeys { ring: Arc::new(KeyRing::new(current, previous)), checksum })
}

/// A new Secret with fresh keys.
fn generated(namespace: &str, name: &str) -> Result<Secret, SettingProblem> {
    let random = || {
        KeyEncryptionKey::generate_text()
            .map(|text| ByteString(text.as_bytes().to_vec()))
            .map_err(|e| SettingProblem::new("ServiceKeysUnavailable", e.to_string()))
    };
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY_KEY.to_owned(), labels::MANAGED_BY.to_owned()),
                (labels::COMPONENT.to_owned(), COMPONENT.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (KEY_ENCRYPTION_KEY.to_owned(), random()?),
            (LOGIN_SECRET.to_owned(), random()?),
        ])),
        ..Secret::default()
    })
}

/// Reads the Secret, making it first when there is none. Two operators
/// racing to make it both end up reading the one that was created.
pub async fn ensure(client: &Client, namespace: &str, name: &str) -> Result<ServiceKeys, SettingProblem> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let unavailable = |what: &str, e: kube::Error| {
        SettingProblem::new(
            "ServiceKeysUnavailable",
            format!("{what} Secret {namespace}/{name}: {}", crate::error_chain::error_chain(&e)),
        )
    };
    let secret = match api.get_opt(name).await.map_err(|e| unavailable("reading", e))? {
        Some(secret) => secret,
        None => match api.create(&PostParams::default(), &generated(namespace, name)?).await {
            Ok(secret) => {
                tracing::info!(%namespace, %name, "generated the services' key-encryption key and login secret");
                secret
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                api.get(name).await.map_err(|e| unavailable("reading", e))?
            }
            Err(e) => return Err(unavailable("creating", e)),
        },
    };
    read(&format!("{namespace}/{name}"), &secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                entries.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn a_generated_secret_reads_back_and_its_checksum_follows_its_keys() {
        let made = generated("portcullis", DEFAULT_SECRET_NAME).unwrap();
        let keys = read("portcullis/portcullis-service-keys", &made).unwrap();
        assert_eq!(keys.checksum.len(), 16);
        let other = read("x", &generated("portcullis", DEFAULT_SECRET_NAME).unwrap()).unwrap();
        assert_ne!(keys.checksum, other.checksum);
        assert_ne!(keys.ring.current().id(), other.ring.current().id());
    }

    #[test]
    fn a_missing_or_bad_key_is_named_with_the_secret() {
        let kek = KeyEncryptionKey::generate_text().unwrap();
        let login = "x".repeat(32);
        let problem = read("portcullis/keys", &secret(&[(LOGIN_SECRET, &login)])).unwrap_err();
        assert_eq!(problem.reason, "ServiceKeysInvalid");
        assert!(
            problem.message.contains("portcullis/keys, key key-encryption-key: missing"),
            "{}",
            problem.message
        );
        let problem =
            read("s", &secret(&[(KEY_ENCRYPTION_KEY, "c2hvcnQ="), (LOGIN_SECRET, &login)])).unwrap_err();
        assert!(problem.message.contains("5 bytes"), "{}", problem.message);
        let problem = read("s", &secret(&[(KEY_ENCRYPTION_KEY, &kek), (LOGIN_SECRET, "short")])).unwrap_err();
        assert!(problem.message.contains("login-secret: 5 bytes"), "{}", problem.message);
        let ok = read(
            "s",
            &secret(&[
                (KEY_ENCRYPTION_KEY, &kek),
                (LOGIN_SECRET, &login),
                (PREVIOUS_KEY_ENCRYPTION_KEY, &kek),
            ]),
        );
        assert!(ok.is_ok());
    }
}
