//! The values the token service needs to talk to upstreams, from the tenant
//! namespaces into the services' namespace: the client secrets of OIDC
//! IdentityProviders, their CA bundles, and the HMAC keys of access-request
//! webhooks. A pod can mount Secrets of its own namespace only, so the
//! operator copies each referenced key into one Secret there, which the
//! token service mounts as its `--upstream-secrets-dir`:
//!
//! ```text
//!  IdentityProvider.spec.oidc.clientSecretRef ─┐            Secret portcullis-upstream-secrets
//!  IdentityProvider.spec.caBundleRef ──────────┼─ every ──►   s_{ns}_{name}_{key} ─► {ns}/{name}/{key}
//!  Organization.spec.accessRequests            │  10 s        c_{ns}_{name}_{key} ─► configmaps/{ns}/{name}/{key}
//!    .notifications[].secretRef ───────────────┘                 (mounted, items map each key to its path)
//! ```
//!
//! Only Secrets labelled `iam.portcullis.dev/upstream-secret: "true"` are
//! copied. Without that opt-in, anyone allowed to write an IdentityProvider
//! in a namespace could have any Secret of it sent to an upstream of their
//! choosing as a client secret. ConfigMaps (CA bundles) are public data and
//! need no label.
//!
//! A changed value reaches the pods without a restart (the kubelet refreshes
//! mounted Secrets, and the token service reads the file at each use); a
//! new or removed reference changes the volume's items, and so rolls them.
//! The copy is applied when what was read differs from the last copy
//! applied, and every [`REAPPLY`] anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use tokio::sync::watch;
use tracing::warn;

use super::tenants::Stores;
use super::{Error, FIELD_MANAGER, Result, labels};
use crate::api::CaBundleKind;

/// The Secret the values are copied into, in the services' namespace.
pub const MIRROR_SECRET: &str = "portcullis-upstream-secrets";
/// Component label of that Secret.
pub const COMPONENT: &str = "upstream-secrets";
/// A tenant's Secret is copied only with this label set to `"true"`.
pub const OPT_IN_LABEL: &str = "iam.portcullis.dev/upstream-secret";
/// Where the token service mounts the copy.
pub const MOUNT_PATH: &str = "/var/run/portcullis/upstream-secrets";

/// How often the references and their values are read again.
pub const RECHECK: Duration = Duration::from_secs(10);
/// An unchanged copy is applied again this often anyway (it may have been
/// edited or deleted by hand).
pub const REAPPLY: Duration = Duration::from_secs(300);

/// Keeps the copy current, and publishes the volume's items whenever they
/// change (the managed workloads are applied again then).
pub struct Mirror {
    client: Client,
    stores: Stores,
    namespace: String,
    items: watch::Sender<Vec<KeyToPath>>,
    reported: Vec<(Reference, String)>,
    /// What was last applied, and when: a pass that reads the same applies nothing.
    applied: Option<(u64, Instant)>,
}

impl Mirror {
    pub fn new(
        client: Client,
        stores: Stores,
        namespace: String,
        items: watch::Sender<Vec<KeyToPath>>,
    ) -> Self {
        Self { client, stores, namespace, items, reported: Vec::new(), applied: None }
    }

    /// One copy; what is left out is logged when that changes.
    pub async fn pass(&mut self) {
        let (data, mirrored) = read_all(&self.client, &references(&self.stores)).await;
        let digest = digest(&data);
        let fresh = self.applied.is_some_and(|(last, at)| last == digest && at.elapsed() < REAPPLY);
        let applied = if fresh { Ok(()) } else { apply(&self.client, &self.namespace, data).await };
        match applied {
            Ok(()) => {
                if !fresh {
                    self.applied = Some((digest, Instant::now()));
                }
                if mirrored.skipped != self.reported {
                    for (reference, why) in &mirrored.skipped {
                        warn!(path = %reference.path(), "not handed to the token service: {why}");
                    }
                    self.reported = mirrored.skipped;
                }
                self.items.send_if_modified(|current| {
                    let differs = *current != mirrored.items;
                    if differs {
                        *current = mirrored.items;
                    }
                    differs
                });
            }
            Err(e) => warn!("upstream secrets: {}", crate::error_chain::error_chain(&e)),
        }
    }

    /// A pass every [`RECHECK`]. Runs until aborted.
    pub async fn run(mut self) {
        loop {
            tokio::time::sleep(RECHECK).await;
            self.pass().await;
        }
    }
}

/// One key of a Secret or ConfigMap in a tenant namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub config_map: bool,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl Reference {
    fn secret(namespace: &str, name: &str, key: &str) -> Self {
        Self {
            config_map: false,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }
    }

    /// The key in the copy. Namespaces and object names hold no `_`, so the
    /// first two `_` after the prefix split it unambiguously.
    pub fn mirror_key(&self) -> String {
        let prefix = if self.config_map { "c" } else { "s" };
        format!("{prefix}_{}_{}_{}", self.namespace, self.name, self.key)
    }

    /// The file under the mount, as `--upstream-secrets-dir` lays it out.
    pub fn path(&self) -> String {
        let path = format!("{}/{}/{}", self.namespace, self.name, self.key);
        if self.config_map { format!("configmaps/{path}") } else { path }
    }
}

/// Every key the tenants' resources reference, as the reflectors see them.
pub fn references(stores: &Stores) -> BTreeSet<Reference> {
    let mut found = BTreeSet::new();
    for idp in stores.identity_providers.state() {
        let namespace = idp.namespace().unwrap_or_default();
        if let Some(oidc) = &idp.spec.oidc {
            let r = &oidc.client_secret_ref;
            found.insert(Reference::secret(&namespace, &r.name, &r.key));
        }
        if let Some(ca) = &idp.spec.ca_bundle_ref {
            found.insert(Reference {
                config_map: matches!(ca.kind, CaBundleKind::ConfigMap),
                ..Reference::secret(&namespace, &ca.name, &ca.key)
            });
        }
    }
    for org in stores.organizations.state() {
        let namespace = org.namespace().unwrap_or_default();
        for webhook in org.spec.access_requests.iter().flat_map(|p| &p.notifications) {
            found.insert(Reference::secret(&namespace, &webhook.secret_ref.name, &webhook.secret_ref.key));
        }
    }
    found
}

/// What was copied: the volume's items, and the references left out (no
/// such object or key, or a Secret without the opt-in label) with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mirrored {
    pub items: Vec<KeyToPath>,
    pub skipped: Vec<(Reference, String)>,
}

/// Reads every referenced key: the copy's data, and what the volume lists.
async fn read_all(client: &Client, wanted: &BTreeSet<Reference>) -> (BTreeMap<String, ByteString>, Mirrored) {
    let mut data = BTreeMap::new();
    let mut mirrored = Mirrored::default();
    for reference in wanted {
        match read(client, reference).await {
            Ok(value) => {
                mirrored.items.push(KeyToPath {
                    key: reference.mirror_key(),
                    path: reference.path(),
                    ..KeyToPath::default()
                });
                data.insert(reference.mirror_key(), ByteString(value));
            }
            Err(why) => mirrored.skipped.push((reference.clone(), why)),
        }
    }
    (data, mirrored)
}

/// Tells one copy from another (in this process; nothing is stored).
fn digest(data: &BTreeMap<String, ByteString>) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (key, value) in data {
        key.hash(&mut hasher);
        value.0.hash(&mut hasher);
    }
    hasher.finish()
}

/// Applies the copy in `namespace`.
async fn apply(client: &Client, namespace: &str, data: BTreeMap<String, ByteString>) -> Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(MIRROR_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY_KEY.to_owned(), labels::MANAGED_BY.to_owned()),
                (labels::COMPONENT.to_owned(), COMPONENT.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    let mut body = serde_json::to_value(&secret).unwrap_or_default();
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.patch(MIRROR_SECRET, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await.map_err(
        |source| Error::ApplyOwned {
            kind: "Secret",
            namespace: namespace.to_owned(),
            name: MIRROR_SECRET.to_owned(),
            source: Box::new(source),
        },
    )?;
    Ok(())
}

/// The value of one reference, or why it is not copied.
async fn read(client: &Client, reference: &Reference) -> std::result::Result<Vec<u8>, String> {
    let Reference { namespace, name, key, .. } = reference;
    if reference.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let map = api.get_opt(name).await.map_err(|e| format!("ConfigMap {namespace}/{name}: {e}"))?;
        let map = map.ok_or_else(|| format!("ConfigMap {namespace}/{name} does not exist"))?;
        return map
            .data
            .and_then(|mut d| d.remove(key))
            .map(String::into_bytes)
            .ok_or_else(|| format!("ConfigMap {namespace}/{name} has no key {key}"));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await.map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
    let secret = secret.ok_or_else(|| format!("Secret {namespace}/{name} does not exist"))?;
    if secret.labels().get(OPT_IN_LABEL).map(String::as_str) != Some("true") {
        return Err(format!(
            "Secret {namespace}/{name} lacks the label {OPT_IN_LABEL}: \"true\" that lets the token service use it"
        ));
    }
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|v| v.0)
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reference_has_its_own_key_and_the_directory_layout_the_token_service_reads() {
        let secret = Reference::secret("acme", "okta.client", "client_secret");
        assert_eq!(secret.mirror_key(), "s_acme_okta.client_client_secret");
        assert_eq!(secret.path(), "acme/okta.client/client_secret");
        let bundle = Reference { config_map: true, ..Reference::secret("acme", "corp-ca", "ca.crt") };
        assert_eq!(bundle.mirror_key(), "c_acme_corp-ca_ca.crt");
        assert_eq!(bundle.path(), "configmaps/acme/corp-ca/ca.crt");
        // A namespace or name cannot hold `_`, so these cannot collide.
        let other = Reference::secret("acme", "okta", "client_client_secret");
        assert_ne!(other.mirror_key(), secret.mirror_key());
    }
}
