//! OAuthClient: stored as declared. A Confidential client without its own
//! `clientSecretRef` gets a generated secret in an owned Secret; only the
//! hash of the secret goes to the store.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use tokio::sync::mpsc::UnboundedSender;

use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::secrets;
use super::tenants::Stores;
use super::triggers::{self, Triggers};
use super::{Error, Result};
use crate::api::{CommonStatus, OAuthClient, OAuthClientStatus};
use crate::error_chain::error_chain;
use crate::resources::ToRecord as _;
use crate::resources::secrets::{CLIENT_SECRET_COMPONENT, generated_secret_name, secret_plan};
use crate::secret::{SecretHash, SecretString};
use crate::store::{DesiredStateStore, OAuthClientRecord, ResourceKind};

/// Specific conditions of an OAuthClient.
pub const CONDITION_TYPES: &[&str] = &[conditions::ORGANIZATION_FOUND];

impl Kind for OAuthClient {
    type Status = OAuthClientStatus;
    const KIND: ResourceKind = ResourceKind::OAuthClient;

    fn status(&self) -> Option<&OAuthClientStatus> {
        self.status.as_ref()
    }
    fn common(status: &OAuthClientStatus) -> &CommonStatus {
        &status.common
    }
    fn common_mut(status: &mut OAuthClientStatus) -> &mut CommonStatus {
        &mut status.common
    }
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.oauth_clients
    }
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>> {
        &triggers.oauth_clients
    }
    fn on_change(&self, triggers: &Triggers) {
        triggers::oauth_client_changed(triggers, self);
    }
    fn on_relist(triggers: &Triggers) {
        triggers.trigger_where::<crate::api::RoleAssignment>(|_| true);
    }
}

impl Reconciler for OAuthClient {
    async fn apply(&self, ctx: &Context) -> Result<Applied<OAuthClientStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let mut report = Report::from_findings(CONDITION_TYPES, view.findings("OAuthClient", &name));
        let mut error =
            reconcile::store_record(ctx, self, &self.to_record(store_meta(self)?), &mut report).await;

        let plan = secret_plan(self, &name);
        let mut wanted = Vec::new();
        if let Some((secret_name, key, generated)) = &plan {
            let value = if *generated {
                wanted.push(secret_name.as_str());
                secrets::ensure_generated(ctx, self, secret_name, CLIENT_SECRET_COMPONENT, key)
                    .await
                    .map(|(value, created)| (Some(value), created))
            } else {
                secrets::get_secret(ctx, &namespace, secret_name)
                    .await
                    .map(|s| (s.as_ref().and_then(|s| secrets::secret_value(s, key)), false))
            };
            match value {
                Ok((Some(value), created)) => {
                    if error.is_none()
                        && let Err(e) = store_secret_hash(ctx, &namespace, &name, &value).await
                    {
                        report.set(Desired::new(
                            conditions::SECRET_READY,
                            false,
                            "StoreUnavailable",
                            e.to_string(),
                        ));
                        error = Some(e);
                    } else {
                        report.set(Desired::new(conditions::SECRET_READY, true, "SecretAvailable", ""));
                    }
                    if created {
                        let event = Event {
                            type_: EventType::Normal,
                            reason: "ClientSecretGenerated".to_owned(),
                            note: Some(format!("client secret generated into Secret {secret_name}")),
                            action: "GenerateSecret".to_owned(),
                            secondary: None,
                        };
                        reconcile::publish(ctx, self, &event).await;
                    }
                }
                Ok((None, _)) => report.set(Desired::new(
                    conditions::SECRET_READY,
                    false,
                    "SecretNotFound",
                    format!("Secret {secret_name} has no key {key}"),
                )),
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
        }
        if let Err(e) = secrets::delete_unwanted_secrets(ctx, self, &wanted).await {
            error = error.or(Some(e));
        }
        let status = OAuthClientStatus {
            common: common_status(self, &report, "", ctx.now()),
            secret_name: plan.map(|(secret_name, _, _)| secret_name),
        };
        Ok(Applied { status, requeue: None, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<OAuthClientStatus>> {
        let (namespace, name) = names(self)?;
        secrets::delete_secret(ctx, &namespace, &generated_secret_name(&name)).await?;
        reconcile::delete_record::<OAuthClientRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}

/// Writes the hash of the client secret, unless the store already has it.
async fn store_secret_hash(ctx: &Context, namespace: &str, name: &str, value: &str) -> Result<()> {
    let hash = SecretString::new(SecretHash::of(value).to_string());
    let read = |source| Error::StoreRead {
        what: "OAuth clients",
        namespace: namespace.to_owned(),
        source: Box::new(source),
    };
    let stored = ctx.store.get::<OAuthClientRecord>(namespace, name).await.map_err(read)?;
    if stored.and_then(|r| r.secret_hash).as_ref() == Some(&hash) {
        return Ok(());
    }
    ctx.store.set_oauth_client_secret_hash(namespace, name, Some(&hash)).await.map_err(|source| {
        Error::StoreWrite {
            kind: "OAuthClient",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    })?;
    Ok(())
}
