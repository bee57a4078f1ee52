//! IdentityProvider: stored as declared; with SCIM on, it owns a Secret with
//! a generated SCIM bearer token and reports its SCIM endpoint.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use tokio::sync::mpsc::UnboundedSender;

use super::Result;
use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::secrets;
use super::tenants::Stores;
use super::triggers::{self, Triggers};
use crate::api::{CommonStatus, IdentityProvider, IdentityProviderStatus, IdentityProviderType};
use crate::store::{IdentityProviderRecord, ObjectMeta, ResourceKind};

/// Specific conditions of an IdentityProvider.
pub const CONDITION_TYPES: &[&str] = &[
    conditions::ORGANIZATION_FOUND,
    conditions::NO_CONFLICTS,
    conditions::REFERENCES_RESOLVED,
    conditions::WORKSPACE_VALID,
];

/// Component label of the SCIM token Secret.
pub const SCIM_TOKEN_COMPONENT: &str = "scim-token";
/// Key of the bearer token in its Secret.
pub const SCIM_TOKEN_KEY: &str = "token";

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

/// The store's record of an IdentityProvider.
pub fn record(idp: &IdentityProvider, meta: ObjectMeta) -> IdentityProviderRecord {
    IdentityProviderRecord {
        meta,
        protocol: match idp.spec.protocol {
            IdentityProviderType::Oidc => "oidc",
            IdentityProviderType::Saml => "saml",
        }
        .to_owned(),
        stage: format!("{:?}", idp.spec.rollout.stage),
        email_domains: idp.spec.email_domains.clone(),
        scim_enabled: idp.spec.scim.enabled,
        spec_json: serde_json::to_string(&idp.spec).unwrap_or_default(),
    }
}

/// Where this provider's SCIM client sends its requests.
pub fn scim_endpoint(base: &str, namespace: &str, name: &str) -> String {
    format!("{}/scim/v2/{namespace}/{name}", base.trim_end_matches('/'))
}

/// Name of the Secret with an IdentityProvider's SCIM bearer token.
pub fn scim_token_secret_name(idp: &str) -> String {
    format!("{idp}-scim-token")
}

impl Reconciler for IdentityProvider {
    async fn apply(&self, ctx: &Context) -> Result<Applied<IdentityProviderStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let mut report = Report::from_findings(CONDITION_TYPES, view.findings("IdentityProvider", &name));
        let mut error = reconcile::store_record(ctx, &record(self, store_meta(self)?), &mut report).await;

        let secret_name = scim_token_secret_name(&name);
        let (scim_endpoint, scim_token_secret_name) = if self.spec.scim.enabled {
            match secrets::ensure_generated(ctx, self, &secret_name, SCIM_TOKEN_COMPONENT, SCIM_TOKEN_KEY)
                .await
            {
                Ok((token, created)) => {
                    // TODO(store): the store has no column for a SCIM token
                    // hash yet; once it does, write `secrets::hash_secret(&token)`
                    // here (only the hash, never the token).
                    let _hash = secrets::hash_secret(&token);
                    report.set(Desired::new(conditions::SECRET_READY, true, "TokenGenerated", ""));
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
                        reconcile::error_chain(&e),
                    ));
                    error = error.or(Some(e));
                }
            }
            (Some(scim_endpoint(&ctx.settings.scim_base_url, &namespace, &name)), Some(secret_name.clone()))
        } else {
            (None, None)
        };
        let wanted: Vec<&str> = scim_token_secret_name.iter().map(String::as_str).collect();
        if let Err(e) = secrets::delete_unwanted_secrets(ctx, self, &wanted).await {
            error = error.or(Some(e));
        }
        let status = IdentityProviderStatus {
            common: common_status(self, &report, "", ctx.now()),
            scim_endpoint,
            scim_token_secret_name,
        };
        Ok(Applied { status, requeue: None, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<IdentityProviderStatus>> {
        let (namespace, name) = names(self)?;
        secrets::delete_secret(ctx, &namespace, &scim_token_secret_name(&name)).await?;
        reconcile::delete_record::<IdentityProviderRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}
