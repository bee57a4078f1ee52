//! From a folder of manifests to the store: what the operator does for a
//! cluster, done for a folder, with the operator's own pieces.
//!
//! ```text
//!  read_dir ──► validation::report::validate_set (as `portcullis validate`) + Secret references
//!     │              └─ any error: nothing is written; the last valid state keeps being served
//!     ▼
//!  records (resources::ToRecord) ──► store.apply   (new spec: generation + 1)
//!  objects no longer in the folder                       ──► store.delete
//!  client secrets, SCIM tokens (folder Secrets or generated into the data directory) ──► hashes
//!  signing keys (resources::signing_keys: the operator's rotation) ──► store, sealed under DATA/key-encryption.key
//! ```
//!
//! A manifest carries no uid or generation: an object keeps the uid it was
//! first stored under, and its generation goes up by one whenever its spec
//! changes, so the store's rules against stale writes hold as in a cluster.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::data_dir::{DataDir, DataDirError};
use crate::api::{GrantType, IdentityProvider, OAuthClient, Organization};
use crate::audit::AuditContext;
use crate::manifests::{self, ManifestSet, Resource};
use crate::resources::{ToRecord, secrets, signing_keys};
use crate::secret::{SecretHash, SecretString};
use crate::store::{
    ApplyOutcome, AssignmentRecord, DesiredRecord, DesiredStateStore as _, IdentityProviderRecord,
    OAuthClientRecord, ObjectMeta, OrganizationRecord, RoleRecord, Store, StoreError,
};
use crate::validation::report::{Report, object_ref, validate_set};
use crate::validation::{Severity, namespace_of};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("the data directory: {0}")]
    DataDir(#[from] DataDirError),
    #[error("the signing keys of {organization}: {problem}")]
    Keys { organization: String, problem: String },
    #[error("{kind} {namespace}/{name} was not stored: {outcome:?}")]
    Refused { kind: &'static str, namespace: String, name: String, outcome: ApplyOutcome },
}

/// What a pass over the folder came to.
#[derive(Debug)]
pub enum Pass {
    /// The folder has errors (sorted `file:line` reports, warnings included);
    /// nothing was written.
    Rejected(Vec<Report>),
    Applied(Applied),
}

/// A folder taken into the store.
#[derive(Debug, Default)]
pub struct Applied {
    /// Warnings about the folder (it had no errors).
    pub warnings: Vec<Report>,
    /// Objects written or deleted.
    pub changed: usize,
    /// The credentials clients need, for the start-up banner.
    pub credentials: Vec<Credential>,
    /// When a signing key is next due to change state.
    pub wake_at: Option<Timestamp>,
    /// The folder as read (for the bootstrap administrator).
    pub set: ManifestSet,
}

/// A credential someone needs to reach the services.
#[derive(Debug)]
pub enum Credential {
    /// A confidential OAuthClient's secret.
    ClientSecret { organization: String, client_id: String, secret: SecretSource, client_credentials: bool },
    /// An IdentityProvider's SCIM bearer token.
    ScimToken { organization: String, identity_provider: String, secret: SecretSource },
}

/// Where a secret's value came from. `Debug` never shows it.
pub enum SecretSource {
    /// Generated into the data directory; `created` on this run.
    Generated { value: String, created: bool, path: std::path::PathBuf },
    /// A `v1/Secret` in the manifests folder.
    Manifest { secret: String, key: String },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Generated { created, path, .. } => f
                .debug_struct("Generated")
                .field("created", created)
                .field("path", path)
                .finish_non_exhaustive(),
            SecretSource::Manifest { secret, key } => {
                f.debug_struct("Manifest").field("secret", secret).field("key", key).finish()
            }
        }
    }
}

/// Hashes already handed to the store by this process, so that an unchanged
/// folder writes nothing.
#[derive(Debug, Default)]
pub struct Written {
    scim_token_hashes: HashMap<(String, String), Option<String>>,
}

/// Reads the folder and, if it has no errors, makes the store match it.
pub async fn sync(
    dir: &Path,
    store: &Store,
    data: &DataDir,
    written: &mut Written,
    now: Timestamp,
) -> Result<Pass, SyncError> {
    let set = match manifests::read_dir(dir) {
        Ok(set) => set,
        Err(error) => {
            return Ok(Pass::Rejected(vec![Report {
                file: dir.display().to_string(),
                line: 0,
                severity: Severity::Error,
                message: format!("cannot read: {error}"),
            }]));
        }
    };
    // What the folder changes is audited as done by the folder sync.
    let store = &store.with_audit(AuditContext::system("manifests-folder"));
    let mut reports = validate_set(&set);
    reports.extend(missing_secrets(&set));
    reports.sort();
    if reports.iter().any(|r| r.severity == Severity::Error) {
        return Ok(Pass::Rejected(reports));
    }
    let mut applied = Applied { warnings: reports, ..Applied::default() };
    applied.changed = write_records(&set, store).await?;
    applied.credentials = write_secret_hashes(&set, store, data, written).await?;
    applied.wake_at = rotate_signing_keys(&set, store, data, now).await?;
    applied.set = set;
    Ok(Pass::Applied(applied))
}

/// References to Secrets the folder does not have: an error for an
/// OAuthClient (it could never authenticate), a warning for an
/// IdentityProvider's upstream client secret (only sign-in through that
/// provider is affected).
fn missing_secrets(set: &ManifestSet) -> Vec<Report> {
    let mut reports = Vec::new();
    for manifest in &set.manifests {
        let (reference, severity) = match &manifest.resource {
            Resource::OAuthClient(client) => match &client.spec.client_secret_ref {
                Some(reference) => (reference, Severity::Error),
                None => continue,
            },
            Resource::IdentityProvider(idp) => match &idp.spec.oidc {
                Some(oidc) => (&oidc.client_secret_ref, Severity::Warning),
                None => continue,
            },
            _ => continue,
        };
        let object = object_ref(&manifest.resource);
        if set.secret_value(&object.namespace, &reference.name, &reference.key).is_some() {
            continue;
        }
        reports.push(Report {
            file: manifest.source.file.display().to_string(),
            line: manifest.source.line_of(&["spec", "clientSecretRef", "name"], Some(&reference.name)),
            severity,
            message: format!(
                "{} {}: clientSecretRef names key {} of Secret {}/{}, which is not in the manifests folder \
                 [SecretNotFound]",
                object.kind, object.name, reference.key, object.namespace, reference.name
            ),
        });
    }
    reports
}

/// Stores every object of the folder and deletes what is no longer in it;
/// returns how many objects changed.
async fn write_records(set: &ManifestSet, store: &Store) -> Result<usize, SyncError> {
    let mut changed = 0;
    let mut present: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut namespaces: BTreeSet<String> = store.namespaces().await?.into_iter().collect();
    // Organizations first and assignments last: an assignment never names a
    // role the store has not seen yet.
    let mut ordered: Vec<&Resource> = set.manifests.iter().map(|m| &m.resource).collect();
    ordered.sort_by_key(|resource| match resource {
        Resource::Organization(_) => 0,
        Resource::Role(_) => 1,
        Resource::OAuthClient(_) => 2,
        Resource::IdentityProvider(_) => 3,
        Resource::RoleAssignment(_) => 4,
    });
    for resource in ordered {
        let written = match resource {
            Resource::Organization(o) => put(store, o).await?,
            Resource::Role(o) => put(store, o).await?,
            Resource::OAuthClient(o) => put(store, o).await?,
            Resource::IdentityProvider(o) => put(store, o).await?,
            Resource::RoleAssignment(o) => put(store, o).await?,
        };
        changed += usize::from(written);
        let object = object_ref(resource);
        namespaces.insert(object.namespace.clone());
        present.insert((object.kind, object.namespace, object.name));
    }
    for namespace in &namespaces {
        changed += remove_absent::<AssignmentRecord>(store, namespace, "RoleAssignment", &present).await?;
        changed +=
            remove_absent::<IdentityProviderRecord>(store, namespace, "IdentityProvider", &present).await?;
        changed += remove_absent::<OAuthClientRecord>(store, namespace, "OAuthClient", &present).await?;
        changed += remove_absent::<RoleRecord>(store, namespace, "Role", &present).await?;
        changed += remove_absent::<OrganizationRecord>(store, namespace, "Organization", &present).await?;
    }
    Ok(changed)
}

/// Stores one object unless the store already has its spec: under its old
/// uid and the next generation, or, if new, a fresh uid at generation 1.
async fn put<K: ResourceExt + ToRecord>(store: &Store, object: &K) -> Result<bool, SyncError> {
    let namespace = namespace_of(object);
    let name = object.name_any();
    let meta = match store.get::<K::Record>(&namespace, &name).await? {
        Some(stored) if object.to_record(stored.meta().clone()).spec_json() == stored.spec_json() => {
            return Ok(false);
        }
        Some(stored) => ObjectMeta { generation: stored.meta().generation + 1, ..stored.meta().clone() },
        None => ObjectMeta::new(uuid::Uuid::new_v4().to_string(), namespace.as_str(), name.as_str(), 1),
    };
    match store.apply(&object.to_record(meta)).await? {
        ApplyOutcome::Applied { .. } | ApplyOutcome::Unchanged => Ok(true),
        outcome => Err(SyncError::Refused { kind: K::Record::KIND.as_str(), namespace, name, outcome }),
    }
}

/// Deletes the stored objects of one kind and namespace that the folder no
/// longer has; returns how many.
async fn remove_absent<R: DesiredRecord>(
    store: &Store,
    namespace: &str,
    kind: &str,
    present: &BTreeSet<(String, String, String)>,
) -> Result<usize, SyncError> {
    let mut removed = 0;
    for stored in store.list_synced::<R>(namespace).await? {
        let meta = stored.meta();
        if !present.contains(&(kind.to_owned(), meta.namespace.clone(), meta.name.clone())) {
            store.delete::<R>(meta).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The namespace's Organization name (the issuer path), if the folder has one.
fn organization_of(set: &ManifestSet, namespace: &str) -> Option<String> {
    set.manifests.iter().find_map(|m| match &m.resource {
        Resource::Organization(o) if namespace_of(o) == namespace => Some(o.name_any()),
        _ => None,
    })
}

/// Client secrets and SCIM tokens: from the folder's Secrets, or generated
/// into the data directory; only their hashes reach the store.
async fn write_secret_hashes(
    set: &ManifestSet,
    store: &Store,
    data: &DataDir,
    written: &mut Written,
) -> Result<Vec<Credential>, SyncError> {
    let mut credentials = Vec::new();
    for manifest in &set.manifests {
        match &manifest.resource {
            Resource::OAuthClient(client) => {
                if let Some(credential) = client_secret(set, store, data, client).await? {
                    credentials.push(credential);
                }
            }
            Resource::IdentityProvider(idp) => {
                if let Some(credential) = scim_token(set, store, data, written, idp).await? {
                    credentials.push(credential);
                }
            }
            _ => {}
        }
    }
    Ok(credentials)
}

async fn client_secret(
    set: &ManifestSet,
    store: &Store,
    data: &DataDir,
    client: &OAuthClient,
) -> Result<Option<Credential>, SyncError> {
    let (namespace, name) = (namespace_of(client), client.name_any());
    let Some((secret_name, key, generated)) = secrets::secret_plan(client, &name) else {
        return Ok(None);
    };
    let (value, secret) = if generated {
        let made = data.generated_secret(&namespace, &secret_name, &key)?;
        (
            made.value.clone(),
            SecretSource::Generated { value: made.value, created: made.created, path: made.path },
        )
    } else {
        let value = set.secret_value(&namespace, &secret_name, &key).unwrap_or_default().to_owned();
        (value, SecretSource::Manifest { secret: secret_name, key })
    };
    let hash = SecretString::new(SecretHash::of(&value).to_string());
    let stored = store.get::<OAuthClientRecord>(&namespace, &name).await?;
    if stored.and_then(|r| r.secret_hash).as_ref() != Some(&hash) {
        store.set_oauth_client_secret_hash(&namespace, &name, Some(&hash)).await?;
    }
    Ok(Some(Credential::ClientSecret {
        organization: organization_of(set, &namespace).unwrap_or(namespace),
        client_id: name,
        secret,
        client_credentials: client.spec.grant_types.contains(&GrantType::ClientCredentials),
    }))
}

async fn scim_token(
    set: &ManifestSet,
    store: &Store,
    data: &DataDir,
    written: &mut Written,
    idp: &IdentityProvider,
) -> Result<Option<Credential>, SyncError> {
    let (namespace, name) = (namespace_of(idp), idp.name_any());
    let (hash, credential) = if idp.spec.scim.enabled {
        let secret_name = secrets::scim_token_secret_name(&name);
        let made = data.generated_secret(&namespace, &secret_name, secrets::SCIM_TOKEN_KEY)?;
        let hash = SecretHash::of(&made.value).to_string();
        let credential = Credential::ScimToken {
            organization: organization_of(set, &namespace).unwrap_or_else(|| namespace.clone()),
            identity_provider: name.clone(),
            secret: SecretSource::Generated { value: made.value, created: made.created, path: made.path },
        };
        (Some(hash), Some(credential))
    } else {
        (None, None)
    };
    let key = (namespace.clone(), name.clone());
    if written.scim_token_hashes.get(&key) != Some(&hash) {
        store.set_scim_token_hash(&namespace, &name, hash.as_deref()).await?;
        written.scim_token_hashes.insert(key, hash);
    }
    Ok(credential)
}

/// Each Organization's signing keys, by the operator's rotation, kept in the
/// store sealed under the data directory's key-encryption key (keys an
/// earlier version kept in `DATA/keys` are taken in once). Returns when the
/// next key changes state.
async fn rotate_signing_keys(
    set: &ManifestSet,
    store: &Store,
    data: &DataDir,
    now: Timestamp,
) -> Result<Option<Timestamp>, SyncError> {
    let mut wake_at: Option<Timestamp> = None;
    for manifest in &set.manifests {
        let Resource::Organization(org) = &manifest.resource else { continue };
        let next = rotate_organization_keys(org, store, data, now).await?;
        wake_at = Some(wake_at.map_or(next, |at| at.min(next)));
    }
    Ok(wake_at)
}

async fn rotate_organization_keys(
    org: &Organization,
    store: &Store,
    data: &DataDir,
    now: Timestamp,
) -> Result<Timestamp, SyncError> {
    let (namespace, name) = (namespace_of(org), org.name_any());
    let problem = |problem: String| SyncError::Keys { organization: name.clone(), problem };
    let ring = data.key_ring()?;
    let earlier = data.read_keys(&name)?;
    let policy = signing_keys::rotation_policy(&org.spec.tokens).map_err(|e| problem(e.to_string()))?;
    let rotation = signing_keys::rotate(store, &ring, &namespace, &earlier, &policy, now)
        .await
        .map_err(|e| problem(e.to_string()))?;
    if !rotation.imported.is_empty() {
        tracing::info!(organization = %name, kids = ?rotation.imported, "signing keys of an earlier version taken from the data directory into the store");
    }
    if rotation.created.is_some() || !rotation.plan.promote.is_empty() {
        tracing::info!(organization = %name, created = ?rotation.created, rotated = !rotation.plan.promote.is_empty(), "signing keys updated");
    }
    Ok(rotation.plan.wake_at.unwrap_or(now + SignedDuration::from_hours(24)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const ORG: &str = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  namespace: acme\nspec:\n  displayName: Acme\n  permissions:\n    - name: data.view\n    - name: data.edit\n";
    const ROLE: &str = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata:\n  name: viewer\n  namespace: acme\nspec:\n  scope: Organization\n  permissions: [data.view]\n";

    async fn applied(dir: &Path, store: &Store, data: &DataDir) -> Applied {
        match sync(dir, store, data, &mut Written::default(), Timestamp::now()).await.unwrap() {
            Pass::Applied(applied) => applied,
            Pass::Rejected(reports) => panic!("rejected: {reports:#?}"),
        }
    }

    #[tokio::test]
    async fn a_changed_spec_is_a_new_generation_of_the_same_object_and_a_removed_file_a_delete() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let data_root = tempfile::tempdir().unwrap();
        let data = DataDir::open(&data_root.path().join("data")).unwrap();
        let dir = folder(&[("org.yaml", ORG), ("role.yaml", ROLE)]);
        assert_eq!(applied(dir.path(), &store, &data).await.changed, 2);
        let first = store.get::<RoleRecord>("acme", "viewer").await.unwrap().unwrap();
        assert_eq!(applied(dir.path(), &store, &data).await.changed, 0, "an unchanged folder writes nothing");

        std::fs::write(dir.path().join("role.yaml"), ROLE.replace("[data.view]", "[data.view, data.edit]"))
            .unwrap();
        assert_eq!(applied(dir.path(), &store, &data).await.changed, 1);
        let second = store.get::<RoleRecord>("acme", "viewer").await.unwrap().unwrap();
        assert_eq!((second.meta.uid.as_str(), second.meta.generation), (first.meta.uid.as_str(), 2));
        assert_eq!(second.permissions, ["data.view", "data.edit"]);

        std::fs::remove_file(dir.path().join("role.yaml")).unwrap();
        assert_eq!(applied(dir.path(), &store, &data).await.changed, 1);
        assert!(store.get::<RoleRecord>("acme", "viewer").await.unwrap().is_none());
        let keys = store.list_signing_keys("acme").await.unwrap();
        assert_eq!(keys.len(), 1, "one active key from the first pass on: {keys:?}");
    }

    #[tokio::test]
    async fn a_folder_with_an_error_writes_nothing_and_says_where() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let data_root = tempfile::tempdir().unwrap();
        let data = DataDir::open(&data_root.path().join("data")).unwrap();
        let dir = folder(&[("org.yaml", ORG), ("role.yaml", ROLE)]);
        applied(dir.path(), &store, &data).await;
        std::fs::write(dir.path().join("role.yaml"), ROLE.replace("scope: Organization", "scope: Galaxy"))
            .unwrap();
        let pass = sync(dir.path(), &store, &data, &mut Written::default(), Timestamp::now()).await.unwrap();
        let Pass::Rejected(reports) = pass else { panic!("{pass:?}") };
        let error = reports.iter().find(|r| r.severity == Severity::Error).unwrap();
        assert!(error.file.ends_with("role.yaml") && error.line == 7, "{error}");
        let role = store.get::<RoleRecord>("acme", "viewer").await.unwrap().unwrap();
        assert_eq!(role.permissions, ["data.view"], "the last valid state stays");
    }

    #[tokio::test]
    async fn a_client_secret_ref_must_be_in_the_folder() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let data_root = tempfile::tempdir().unwrap();
        let data = DataDir::open(&data_root.path().join("data")).unwrap();
        let client = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: ci\n  namespace: acme\nspec:\n  displayName: CI\n  type: Confidential\n  grantTypes: [client_credentials]\n  clientSecretRef:\n    name: ci-secret\n    key: value\n";
        let dir = folder(&[("org.yaml", ORG), ("client.yaml", client)]);
        let pass = sync(dir.path(), &store, &data, &mut Written::default(), Timestamp::now()).await.unwrap();
        let Pass::Rejected(reports) = pass else { panic!("{pass:?}") };
        assert!(
            reports.iter().any(|r| r.message.contains("[SecretNotFound]") && r.line == 11),
            "{reports:#?}"
        );

        let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ci-secret\n  namespace: acme\nstringData:\n  value: from-the-folder\n";
        std::fs::write(dir.path().join("secret.yaml"), secret).unwrap();
        let applied = applied(dir.path(), &store, &data).await;
        assert!(matches!(
            &applied.credentials[..],
            [Credential::ClientSecret { secret: SecretSource::Manifest { .. }, .. }]
        ));
        let stored = store.get::<OAuthClientRecord>("acme", "ci").await.unwrap().unwrap();
        assert_eq!(
            stored.secret_hash,
            Some(SecretString::new(SecretHash::of("from-the-folder").to_string()))
        );
    }
}
