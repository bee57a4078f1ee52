//! What `kubectl portcullis` reads and changes in the cluster, through the
//! kubeconfig: the organization of a namespace, a client's Secret, and the
//! two chores the operator carries out when asked by an annotation (a key
//! rotation) or a deleted Secret (a new SCIM token).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use crate::api::{
    IdentityProvider, OAuthClient, Organization, ROTATE_KEYS_ANNOTATION, RoleAssignment,
    SCIM_TOKEN_ROTATED_ANNOTATION,
};
use crate::controller::organization::signing_keys_secret_name;
use crate::resources::secrets::SCIM_TOKEN_KEY;
use crate::resources::signing_keys::KEYS_DOCUMENT;
use crate::secret::SecretString;
use crate::token::keys::KeyMeta;

/// The field manager of this tool's writes, as kubectl's are `kubectl`.
const FIELD_MANAGER: &str = "kubectl-portcullis";
/// How long to wait for the operator to carry a chore out.
const OPERATOR_DEADLINE: Duration = Duration::from_secs(60);

/// A connection to the cluster, in one namespace.
pub struct Cluster {
    client: Client,
    pub namespace: String,
}

impl Cluster {
    /// Connects as kubectl would with the same flags.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> anyhow::Result<Self> {
        let file = match kubeconfig {
            Some(path) => {
                Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?
            }
            None => Kubeconfig::read().context("reading the kubeconfig (KUBECONFIG or ~/.kube/config)")?,
        };
        let options =
            KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
        let config = Config::from_custom_kubeconfig(file, &options).await.context("using the kubeconfig")?;
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_owned);
        let client = Client::try_from(config).context("connecting to the cluster")?;
        Ok(Self { client, namespace })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The namespace's Organization (Portcullis allows one per namespace).
    pub async fn organization(&self) -> anyhow::Result<Organization> {
        let list =
            self.api::<Organization>().list(&Default::default()).await.context("listing Organizations")?;
        let mut items = list.items.into_iter();
        match (items.next(), items.next()) {
            (Some(org), None) => Ok(org),
            (None, _) => bail!("namespace {} holds no Organization (is -n right?)", self.namespace),
            (Some(_), Some(_)) => bail!("namespace {} holds more than one Organization", self.namespace),
        }
    }

    /// The client secret of OAuthClient `name`, from the Secret its status names.
    pub async fn client_secret(&self, name: &str) -> anyhow::Result<SecretString> {
        let client = self
            .api::<OAuthClient>()
            .get_opt(name)
            .await
            .context("reading the OAuthClient")?
            .ok_or_else(|| anyhow!("no OAuthClient {name} in namespace {}", self.namespace))?;
        let secret_name = client.status.and_then(|s| s.secret_name).ok_or_else(|| {
            anyhow!("OAuthClient {name} has no client secret (a public client cannot call the admin API)")
        })?;
        let secret = self
            .api::<Secret>()
            .get(&secret_name)
            .await
            .with_context(|| format!("reading Secret {secret_name}"))?;
        let value = secret_value(&secret, crate::resources::secrets::CLIENT_SECRET_KEY)
            .ok_or_else(|| anyhow!("Secret {secret_name} has no client secret yet"))?;
        Ok(value)
    }

    /// The RoleAssignment whose uid is `uid`, by name, if Kubernetes has it
    /// (one written through the admin API under `roleSource: API` is not).
    pub async fn assignment_name(&self, uid: &str) -> Option<String> {
        let list = self.api::<RoleAssignment>().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|a| a.uid().as_deref() == Some(uid)).map(|a| a.name_any())
    }

    /// Annotates Organization `name` with a rotation request, then waits for
    /// the operator to publish the key that will take over.
    pub async fn rotate_keys(&self, name: &str) -> anyhow::Result<()> {
        let organizations = self.api::<Organization>();
        let org = organizations
            .get_opt(name)
            .await
            .context("reading the Organization")?
            .ok_or_else(|| anyhow!("no Organization {name} in namespace {}", self.namespace))?;
        let secret_name = signing_keys_secret_name(name);
        let before = self.published_keys(&secret_name).await.unwrap_or_default();
        let requested = jiff::Timestamp::now();
        let patch =
            json!({ "metadata": { "annotations": { ROTATE_KEYS_ANNOTATION: requested.to_string() } } });
        organizations
            .patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch))
            .await
            .context("annotating the Organization")?;
        eprintln!("rotation of {}/{name}'s signing keys asked for at {requested}", self.namespace);

        let published = self
            .await_operator("the operator to publish the next signing key", || async {
                let keys = self.published_keys(&secret_name).await?;
                keys.into_iter().find(|key| !before.iter().any(|old| old.kid == key.kid))
            })
            .await?;
        let overlap = org.spec.tokens.key_rotation.overlap.signed();
        let signs_from = overlap.and_then(|o| published.created_at.checked_add(o).ok());
        println!(
            "published key {} ({}); it signs from {}, once relying parties have had it for the overlap",
            published.kid,
            published.algorithm.as_str(),
            signs_from.map_or_else(|| "the end of the overlap".to_owned(), |t| t.to_string())
        );
        Ok(())
    }

    /// The keys listed in the operator's export of an organization's keys
    /// (only `keys.json`, the public metadata, is read).
    async fn published_keys(&self, secret_name: &str) -> Option<Vec<KeyMeta>> {
        let secret = self.api::<Secret>().get_opt(secret_name).await.ok()??;
        let document = secret.data?.remove(KEYS_DOCUMENT)?;
        serde_json::from_slice(&document.0).ok()
    }

    /// Deletes IdentityProvider `name`'s SCIM token Secret, nudges the
    /// operator (an annotation), and returns the token it generates in its
    /// place. The old token stops working as soon as the operator has stored
    /// the new one's hash.
    pub async fn rotate_scim_token(&self, name: &str) -> anyhow::Result<SecretString> {
        let providers = self.api::<IdentityProvider>();
        let provider = providers
            .get_opt(name)
            .await
            .context("reading the IdentityProvider")?
            .ok_or_else(|| anyhow!("no IdentityProvider {name} in namespace {}", self.namespace))?;
        let secret_name = provider.status.and_then(|s| s.scim_token_secret_name).ok_or_else(|| {
            anyhow!("IdentityProvider {name} has no SCIM token (is spec.scim.enabled true?)")
        })?;
        let secrets = self.api::<Secret>();
        let old_uid = secrets
            .get_opt(&secret_name)
            .await
            .context("reading the SCIM token Secret")?
            .and_then(|s| s.uid());
        if old_uid.is_some() {
            secrets
                .delete(&secret_name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting Secret {secret_name}"))?;
        }
        let patch = json!({ "metadata": { "annotations": {
            SCIM_TOKEN_ROTATED_ANNOTATION: jiff::Timestamp::now().to_string()
        } } });
        providers
            .patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch))
            .await
            .context("annotating the IdentityProvider")?;
        let token = self
            .await_operator("the operator to generate the new SCIM token", || async {
                let secret = secrets.get_opt(&secret_name).await.ok()??;
                if secret.uid() == old_uid {
                    return None;
                }
                secret_value(&secret, SCIM_TOKEN_KEY)
            })
            .await?;
        eprintln!(
            "new SCIM token for {}/{name} (shown once; Secret {secret_name} keeps it): set it as the bearer token of the provider's SCIM app; the old one no longer works",
            self.namespace
        );
        Ok(token)
    }

    /// Polls `probe` until it gives a value or [`OPERATOR_DEADLINE`] passes.
    async fn await_operator<T, F, Fut>(&self, what: &str, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + OPERATOR_DEADLINE;
        loop {
            if let Some(value) = probe().await {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "waited {}s for {what}; is the operator running? (kubectl get events -n {})",
                    OPERATOR_DEADLINE.as_secs(),
                    self.namespace
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<SecretString> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    (!text.is_empty()).then(|| SecretString::new(text))
}
