//! IdentityProvider: stored as declared; with SCIM on, it owns a Secret with
//! a generated SCIM bearer token and reports its SCIM endpoint.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt as _;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use tokio::sync::mpsc::UnboundedSender;

use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::rollout;
use super::secrets;
use super::tenants::Stores;
use super::triggers::{self, Triggers};
use super::{Error, Result};
use crate::api::{CaBundleKind, CommonStatus, IdentityProvider, IdentityProviderStatus, ScimSyncStatus};
use crate::error_chain::error_chain;
use crate::resources::ToRecord as _;
use crate::resources::secrets::{SCIM_TOKEN_COMPONENT, SCIM_TOKEN_KEY, scim_token_secret_name};
use crate::secret::SecretHash;
use crate::store::{
    DesiredStateStore, FederationStore as _, IdentityProviderRecord, ResourceKind, ScimStore, ScimSyncHealth,
};

/// Specific conditions of an IdentityProvider.
pub const CONDITION_TYPES: &[&str] = &[
    conditions::ORGANIZATION_FOUND,
    conditions::NO_CONFLICTS,
    conditions::REFERENCES_RESOLVED,
    conditions::WORKSPACE_VALID,
];

impl Kind for IdentityProvider {
    type Status = IdentityProviderStatus;
    const KIND: ResourceKind = ResourceKind::IdentityProvider;

    fn status(&self) -> Option<&IdentityProviderStatus> {
        self.status.as_ref()
    }
    fn common(status: &IdentityProviderStatus) -> &CommonStatus {
        &status.common
    }
    fn common_mut(status: &mut IdentityProviderStatus) -> &mut CommonStatus {
        &mut status.common
    }
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.identity_providers
    }
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>> {
        &triggers.identity_providers
    }
    fn on_change(&self, triggers: &Triggers) {
        triggers::identity_provider_changed(triggers, self);
    }
    fn on_relist(_triggers: &Triggers) {}
}

/// Where this provider's SCIM client sends its requests: the SCIM base of
/// its organization, `{base}/o/{organization}/scim/v2`, as the SCIM service
/// serves it (the token in its Secret says which provider is calling).
pub fn scim_endpoint(base: &str, organization: &str) -> String {
    format!("{}/o/{organization}/scim/v2", base.trim_end_matches('/'))
}

impl Reconciler for IdentityProvider {
    async fn apply(&self, ctx: &Context) -> Result<Applied<IdentityProviderStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let mut report = Report::from_findings(CONDITION_TYPES, view.findings("IdentityProvider", &name));
        let mut error =
            reconcile::store_record(ctx, self, &self.to_record(store_meta(self)?), &mut report).await;

        let secret_name = scim_token_secret_name(&name);
        let (scim_endpoint, scim_token_secret_name) = if self.spec.scim.enabled {
            match secrets::ensure_generated(ctx, self, &secret_name, SCIM_TOKEN_COMPONENT, SCIM_TOKEN_KEY)
                .await
            {
                Ok((token, created)) => {
                    // The SCIM service compares presented tokens with this hash.
                    let hash = SecretHash::of(&token).to_string();
                    match set_token_hash(ctx, &namespace, &name, Some(&hash)).await {
                        Ok(()) => {
                            report.set(Desired::new(conditions::SECRET_READY, true, "TokenGenerated", ""))
                        }
                        Err(e) => {
                            report.set(Desired::new(
                                conditions::SECRET_READY,
                                false,
                                "StoreUnavailable",
                                error_chain(&e),
                            ));
                            error = error.or(Some(e));
                        }
                    }
                    if created {
                        let event = Event {
                            type_: EventType::Normal,
                            reason: "ScimTokenGenerated".to_owned(),
                            note: Some(format!("SCIM bearer token generated into Secret {secret_name}")),
                            action: "GenerateSecret".to_owned(),
                            secondary: None,
                        };
                        reconcile::publish(ctx, self, &event).await;
                    }
                }
                Err(e) => {
                    report.set(Desired::new(
                        conditions::SECRET_READY,
                        false,
                        "SecretNotWritten",
                        error_chain(&e),
                    ));
                    error = error.or(Some(e));
                }
            }
            // Unknown without the operator's SCIM base URL (a ServicesConfigured
            // problem of the Organization) or without an Organization.
            let organization = ctx
                .stores
                .organizations
                .state()
                .iter()
                .find(|org| org.namespace().as_deref() == Some(namespace.as_str()))
                .map(|org| org.name_any());
            let endpoint =
                ctx.settings.scim_base_url.as_deref().zip(organization).map(|(b, o)| scim_endpoint(b, &o));
            (endpoint, Some(secret_name.clone()))
        } else {
            // SCIM turned off: the old token stops working at once.
            if let Err(e) = set_token_hash(ctx, &namespace, &name, None).await {
                error = error.or(Some(e));
            }
            (None, None)
        };
        let wanted: Vec<&str> = scim_token_secret_name.iter().map(String::as_str).collect();
        if let Err(e) = secrets::delete_unwanted_secrets(ctx, self, &wanted).await {
            error = error.or(Some(e));
        }
        // Sync health changes with every SCIM request: look again soon, and
        // keep the last known figures if the store cannot be read now.
        let (scim_sync, requeue) = if self.spec.scim.enabled {
            let health = ctx.store.scim_sync_health(&namespace, &name).await;
            let previous = self.status.as_ref().and_then(|s| s.scim_sync.clone());
            (health.map(|h| h.map(|h| sync_status(&h))).unwrap_or(previous), Some(SYNC_HEALTH_REFRESH))
        } else {
            (None, None)
        };
        // The rollout: the upstream asked, sign-ins counted, readiness told.
        let now = ctx.now();
        let ca_bundle = ca_bundle(ctx, &namespace, self).await;
        let upstream = match ca_bundle {
            Ok(bundle) => rollout::check_upstream(self, bundle.as_deref(), now).await,
            Err(message) => rollout::UpstreamCheck {
                healthy: false,
                reason: "CaBundleMissing",
                message,
                certificate_not_after: None,
            },
        };
        let health = ctx.store.sso_health(&namespace, &name, now.as_millisecond()).await.unwrap_or_default();
        let stage = self.spec.rollout.stage;
        report.set(upstream.condition());
        report.set(rollout::readiness(stage, self.spec.rollout.break_glass_users.len(), &upstream, &health));
        let previous_rollout = self.status.as_ref().and_then(|s| s.rollout.as_ref());
        let rollout = rollout::status(stage, previous_rollout, &upstream, &health, now);
        let requeue =
            Some(requeue.map_or(rollout::HEALTH_CHECK_INTERVAL, |r| r.min(rollout::HEALTH_CHECK_INTERVAL)));

        let status = IdentityProviderStatus {
            common: common_status(self, &report, "", now),
            scim_endpoint,
            scim_token_secret_name,
            scim_sync,
            rollout: Some(rollout),
        };
        Ok(Applied { status, requeue, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<IdentityProviderStatus>> {
        let (namespace, name) = names(self)?;
        secrets::delete_secret(ctx, &namespace, &scim_token_secret_name(&name)).await?;
        reconcile::delete_record::<IdentityProviderRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}

/// The PEM of the CA bundle `idp` names, if any; an error message when it
/// names one that cannot be read.
async fn ca_bundle(
    ctx: &Context,
    namespace: &str,
    idp: &IdentityProvider,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(reference) = &idp.spec.ca_bundle_ref else { return Ok(None) };
    let (kind, value) = match reference.kind {
        CaBundleKind::Secret => {
            let secret =
                secrets::get_secret(ctx, namespace, &reference.name).await.map_err(|e| error_chain(&e))?;
            ("Secret", secret.and_then(|s| s.data?.remove(&reference.key)).map(|bytes| bytes.0))
        }
        CaBundleKind::ConfigMap => {
            let api: kube::Api<ConfigMap> = kube::Api::namespaced(ctx.client.clone(), namespace);
            let map = api.get_opt(&reference.name).await.map_err(|e| error_chain(&e))?;
            ("ConfigMap", map.and_then(|m| m.data?.remove(&reference.key)).map(String::into_bytes))
        }
    };
    value
        .map(Some)
        .ok_or_else(|| format!("{kind} {}/{} has no key {}", namespace, reference.name, reference.key))
}

/// Stores (or clears) the hash of the IdentityProvider's SCIM token; never the token.
async fn set_token_hash(ctx: &Context, namespace: &str, name: &str, hash: Option<&str>) -> Result<()> {
    ctx.store.set_scim_token_hash(namespace, name, hash).await.map_err(|source| Error::StoreWrite {
        kind: "IdentityProvider",
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    })?;
    Ok(())
}

/// How often the status of an IdentityProvider with SCIM on takes in the
/// SCIM service's sync health.
pub const SYNC_HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// The status's view of the store's sync health.
pub fn sync_status(health: &ScimSyncHealth) -> ScimSyncStatus {
    let time = |ms: i64| jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default();
    ScimSyncStatus {
        last_request_time: time(health.last_request_ms),
        last_error: health.last_error.clone(),
        last_error_time: health.last_error_ms.map(time),
        requests: health.request_count,
        errors: health.error_count,
        users_provisioned: health.users_provisioned,
        groups_provisioned: health.groups_provisioned,
    }
}
