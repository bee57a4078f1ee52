//! Organization: the tenant. Stored with its catalog and workspaces; its
//! signing keys rotated in the store (sealed) and exported to a Secret it
//! owns; reports its issuer URL, and whether the operator's settings let the
//! services serve it (`ServicesConfigured`), and its compliance posture
//! (`status.posture`, recomputed every [`POSTURE_EVERY`]). Deleting it under
//! legal hold is refused until the hold is lifted.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::secrets;
use super::tenants::Stores;
use super::triggers::{self, Triggers};
use super::{Error, Result};
use crate::api::{
    CertificateExpiry, CommonStatus, Organization, OrganizationPosture, OrganizationStatus,
    ROTATE_KEYS_ANNOTATION,
};
use crate::error_chain::error_chain;
use crate::resources::ToRecord as _;
use crate::resources::signing_keys::{self, KeysProblem, Rotation};
use crate::store::{DesiredStateStore, GroupStore, OrganizationRecord, ResourceKind, UserStore};
use crate::token::keys::KeyError;
use crate::validation::Reason;

/// Specific conditions of an Organization.
pub const CONDITION_TYPES: &[&str] = &[conditions::NO_CONFLICTS];

/// Component label of the signing-key Secret.
pub const SIGNING_KEYS_COMPONENT: &str = "signing-keys";

impl Kind for Organization {
    type Status = OrganizationStatus;
    const KIND: ResourceKind = ResourceKind::Organization;

    fn status(&self) -> Option<&OrganizationStatus> {
        self.status.as_ref()
    }
    fn common(status: &OrganizationStatus) -> &CommonStatus {
        &status.common
    }
    fn common_mut(status: &mut OrganizationStatus) -> &mut CommonStatus {
        &mut status.common
    }
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.organizations
    }
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>> {
        &triggers.organizations
    }
    fn on_change(&self, triggers: &Triggers) {
        triggers::organization_changed(triggers, self);
    }
    fn on_relist(triggers: &Triggers) {
        triggers.trigger_where::<crate::api::Role>(|_| true);
        triggers.trigger_where::<crate::api::RoleAssignment>(|_| true);
        triggers.trigger_where::<crate::api::IdentityProvider>(|_| true);
        triggers.trigger_where::<crate::api::OAuthClient>(|_| true);
    }
}

/// The OpenID issuer of an organization: `{base}/o/{name}`.
pub fn issuer_url(base: &str, name: &str) -> String {
    format!("{}/o/{name}", base.trim_end_matches('/'))
}

/// Name of the Secret holding an organization's signing keys.
pub fn signing_keys_secret_name(org: &str) -> String {
    format!("{org}-signing-keys")
}

impl Reconciler for Organization {
    async fn apply(&self, ctx: &Context) -> Result<Applied<OrganizationStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let findings = view.findings("Organization", &name);
        let mut report = Report::from_findings(CONDITION_TYPES, findings);
        let now = ctx.now();
        let mut error = None;
        let duplicate = findings.iter().any(|f| f.reason == Reason::DuplicateOrganization);
        // No store of its region to write to: nothing is written anywhere.
        let unplaced = ctx.residency.as_ref().is_some_and(|residency| !residency.has_store);
        if let Some(residency) = &ctx.residency {
            report.set(residency.condition.clone());
        }
        let mut requeue = None;
        if !duplicate && !unplaced {
            error = reconcile::store_record(ctx, self, &self.to_record(store_meta(self)?), &mut report).await;
            if error.is_none() {
                match reconcile_signing_keys(self, ctx, &namespace, &name, now).await {
                    Ok((next, sealed_with)) => {
                        requeue = Some(next);
                        // The key-encryption key's id (a hash prefix, revealing
                        // nothing) tells whoever rotates it when re-sealing is done.
                        report.set(Desired::new(
                            conditions::SIGNING_KEYS_READY,
                            true,
                            "KeysCurrent",
                            format!("sealed in the store under key-encryption key {sealed_with}"),
                        ));
                    }
                    Err(e @ Error::Generate { .. }) => {
                        report.set(Desired::new(
                            conditions::SIGNING_KEYS_READY,
                            false,
                            "KeyGenerationFailed",
                            e.to_string(),
                        ));
                    }
                    // Both wait for the services' keys to change, which
                    // triggers every Organization: no retry meanwhile.
                    Err(Error::NoKeyEncryptionKey) => {
                        report.set(Desired::new(
                            conditions::SIGNING_KEYS_READY,
                            false,
                            "KeyEncryptionKeyUnavailable",
                            "waiting for the key-encryption key that seals signing keys in the store (see ServicesConfigured)",
                        ));
                    }
                    Err(e @ Error::SealedKeys { .. }) => {
                        report.set(Desired::new(
                            conditions::SIGNING_KEYS_READY,
                            false,
                            "SealedKeysUnreadable",
                            format!(
                                "{e}; nothing was changed. Restore the key-encryption key they were sealed with \
                                 (as previous-key-encryption-key of the operator's service-keys Secret)"
                            ),
                        ));
                    }
                    Err(e) => {
                        report.set(Desired::new(
                            conditions::SIGNING_KEYS_READY,
                            false,
                            "KeysNotWritten",
                            error_chain(&e),
                        ));
                        error = Some(e);
                    }
                }
            }
        }
        report.set(ctx.operator_status.condition());
        // Recomputed on every pass and at least every POSTURE_EVERY; a failed
        // computation keeps the last posture (and says so in the log).
        let posture =
            if duplicate || unplaced { None } else { organization_posture(self, ctx, &namespace, now).await };
        requeue = Some(requeue.map_or(POSTURE_EVERY, |next: Duration| next.min(POSTURE_EVERY)));
        let status = OrganizationStatus {
            common: common_status(self, &report, "", now),
            issuer: ctx.settings.issuer_base_url.as_deref().map(|base| issuer_url(base, &name)),
            posture: posture.or_else(|| self.status.as_ref().and_then(|s| s.posture.clone())),
        };
        Ok(Applied { status, requeue, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<OrganizationStatus>> {
        let (namespace, name) = names(self)?;
        if self.spec.legal_hold {
            return Ok(Cleanup::Blocked(blocked_status(self, ctx.now())));
        }
        secrets::delete_secret(ctx, &namespace, &signing_keys_secret_name(&name)).await?;
        let keys = ctx.store.list_signing_keys(&namespace).await.map_err(|source| Error::StoreRead {
            what: "signing keys",
            namespace: namespace.clone(),
            source: Box::new(source),
        })?;
        for key in keys {
            ctx.store.delete_signing_key(&namespace, &key.kid).await.map_err(|source| {
                Error::StoreDelete {
                    kind: "SigningKey",
                    namespace: namespace.clone(),
                    name: key.kid.clone(),
                    source: Box::new(source),
                }
            })?;
        }
        purge_identities(ctx, &namespace).await?;
        reconcile::delete_record::<OrganizationRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}

/// How often the posture in the status is recomputed when nothing else
/// brings the Organization back.
pub const POSTURE_EVERY: Duration = Duration::from_secs(300);

/// The organization's compliance posture, with the certificate expiries its
/// IdentityProviders' rollout checks found; none when the store cannot be read.
async fn organization_posture(
    org: &Organization,
    ctx: &Context,
    namespace: &str,
    now: jiff::Timestamp,
) -> Option<OrganizationPosture> {
    let mut posture = match crate::posture::compute(&ctx.store, namespace, &org.spec, now).await {
        Ok(posture) => posture,
        Err(error) => {
            warn!(organization = %org.name_any(), error = %error_chain(&error), "posture not computed; keeping the last one");
            return None;
        }
    };
    let mut expiries: Vec<CertificateExpiry> = ctx
        .stores
        .identity_providers
        .state()
        .iter()
        .filter(|idp| idp.namespace().as_deref() == Some(namespace))
        .filter_map(|idp| {
            let not_after = idp.status.as_ref()?.rollout.as_ref()?.certificate_not_after.clone()?;
            Some(CertificateExpiry { identity_provider: idp.name_any(), not_after })
        })
        .collect();
    expiries.sort_by(|a, b| a.not_after.cmp(&b.not_after));
    posture.certificate_expiries = expiries;
    Some(posture)
}

/// The status while deletion is refused: everything as it was, plus
/// `DeletionBlocked` (and Ready keeps saying what it said).
pub fn blocked_status(org: &Organization, now: jiff::Timestamp) -> OrganizationStatus {
    let mut status = org.status.clone().unwrap_or_default();
    let previous = status.common.conditions.clone();
    let blocked = conditions::finalize(
        vec![Desired::new(
            conditions::DELETION_BLOCKED,
            true,
            "LegalHold",
            "the organization is under legal hold: its data is kept and the deletion waits until spec.legalHold is false",
        )],
        &previous,
        org.meta().generation,
        now,
    );
    status.common.conditions.retain(|c| c.type_ != conditions::DELETION_BLOCKED);
    status.common.conditions.extend(blocked);
    status.common.observed_generation = org.meta().generation;
    status
}

/// Removes the users and groups of an organization being deleted (no legal hold).
async fn purge_identities(ctx: &Context, namespace: &str) -> Result<()> {
    let read = |source| Error::StoreRead {
        what: "identities",
        namespace: namespace.to_owned(),
        source: Box::new(source),
    };
    let delete = |source| Error::StoreDelete {
        kind: "identity",
        namespace: namespace.to_owned(),
        name: namespace.to_owned(),
        source: Box::new(source),
    };
    loop {
        let users = ctx.store.list_users(namespace, 0, 500).await.map_err(read)?;
        if users.is_empty() {
            break;
        }
        for user in users {
            ctx.store.delete_user(namespace, &user.id).await.map_err(delete)?;
        }
    }
    loop {
        let groups = ctx.store.list_groups(namespace, 0, 500).await.map_err(read)?;
        if groups.is_empty() {
            break;
        }
        for group in groups {
            ctx.store.delete_group(namespace, &group.id).await.map_err(delete)?;
        }
    }
    Ok(())
}

/// When a rotation was asked for, from the Organization's annotation; a
/// value that is not an RFC 3339 time is ignored (and logged).
fn rotation_requested(org: &Organization) -> Option<jiff::Timestamp> {
    let value = org.annotations().get(ROTATE_KEYS_ANNOTATION)?;
    match value.parse() {
        Ok(at) => Some(at),
        Err(error) => {
            warn!(organization = %org.name_any(), %value, %error, "ignoring {ROTATE_KEYS_ANNOTATION}: not an RFC 3339 time");
            None
        }
    }
}

/// Brings the signing keys in line with the rotation plan: the store first
/// (sealed private keys and public records, what the token service reads),
/// then the Secret `{org}-signing-keys` as an export. Returns when to look
/// again, and the id of the key-encryption key every key is now sealed under.
async fn reconcile_signing_keys(
    org: &Organization,
    ctx: &Context,
    namespace: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<(Duration, String)> {
    let ring = ctx.key_ring().ok_or(Error::NoKeyEncryptionKey)?;
    let secret_name = signing_keys_secret_name(name);
    let corrupt = |problem: String| Error::CorruptKeys {
        namespace: namespace.to_owned(),
        name: secret_name.clone(),
        problem,
    };
    let existing = secrets::get_secret(ctx, namespace, &secret_name).await?;
    let exported = existing.as_ref().and_then(|s| s.data.clone()).unwrap_or_default();
    let policy = signing_keys::rotation_policy(&org.spec.tokens)
        .map_err(|e| corrupt(e.to_string()))?
        .requested_at(rotation_requested(org));
    let rotation = signing_keys::rotate(&ctx.store, &ring, namespace, &exported, &policy, now)
        .await
        .map_err(|problem| match problem {
            KeysProblem::Store(source) => Error::StoreWrite {
                kind: "SigningKey",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: Box::new(source),
            },
            KeysProblem::Sealed { .. } | KeysProblem::SealedPayload { .. } => Error::SealedKeys {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                problem: problem.to_string(),
            },
            KeysProblem::Key(KeyError::Generate { .. }) | KeysProblem::Seal { .. } => {
                Error::Generate { what: "signing key" }
            }
            other => corrupt(other.to_string()),
        })?;

    // The export follows the store: rewritten whenever it says otherwise.
    let wanted = signing_keys::secret_data(&rotation.keys);
    let owner_refs_current = existing
        .as_ref()
        .is_some_and(|s| s.owner_references().iter().any(|r| Some(&r.uid) == org.uid().as_ref()));
    if existing.is_none() || !owner_refs_current || exported != wanted {
        let secret = Secret {
            metadata: secrets::owned_meta(org, &secret_name, SIGNING_KEYS_COMPONENT),
            type_: Some("Opaque".to_owned()),
            data: Some(wanted),
            ..Secret::default()
        };
        secrets::apply_secret(ctx, &secret).await?;
    }

    let Rotation { plan, created, imported, .. } = rotation;
    let rotated = !plan.promote.is_empty();
    if created.is_some() || rotated || !plan.delete.is_empty() || !imported.is_empty() {
        info!(%namespace, organization = %name, ?created, removed = ?plan.delete, ?imported, rotated, "signing keys updated");
        let note = format!(
            "signing keys: {} generated, {} removed{}{}",
            usize::from(created.is_some()),
            plan.delete.len(),
            if imported.is_empty() {
                String::new()
            } else {
                format!(", {} taken from {secret_name}", imported.len())
            },
            if rotated { ", a new key signs from now on" } else { "" }
        );
        let event = Event {
            type_: EventType::Normal,
            reason: if rotated { "SigningKeyRotated" } else { "SigningKeysUpdated" }.to_owned(),
            note: Some(note),
            action: "RotateKeys".to_owned(),
            secondary: None,
        };
        reconcile::publish(ctx, org, &event).await;
    }
    let wait = plan.wake_at.map_or(SignedDuration::from_hours(24), |at| at.duration_since(now));
    Ok((
        Duration::try_from(wait).unwrap_or_default().max(Duration::from_secs(1)),
        ring.current().id().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrganizationSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn org(legal_hold: bool) -> Organization {
        let mut spec: OrganizationSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Acme",
            "permissions": [{"name": "journeys.view"}, {"name": "journeys.edit"}],
            "workspaces": [{"name": "emea"}],
        }))
        .unwrap();
        spec.legal_hold = legal_hold;
        let mut org = Organization::new("acme", spec);
        org.metadata.namespace = Some("acme".into());
        org.metadata.generation = Some(4);
        org
    }

    #[test]
    fn the_issuer_is_under_the_base_url() {
        assert_eq!(issuer_url("https://id.example.com/", "acme"), "https://id.example.com/o/acme");
    }

    #[test]
    fn a_blocked_deletion_keeps_the_status_and_says_why() {
        let mut org = org(true);
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        org.status = Some(OrganizationStatus {
            common: CommonStatus {
                observed_generation: Some(3),
                conditions: conditions::finalize(
                    vec![Desired::new("Ready", true, "Reconciled", "")],
                    &[],
                    Some(3),
                    now,
                ),
            },
            issuer: Some("https://id/o/acme".into()),
            posture: None,
        });
        let status = blocked_status(&org, now);
        assert_eq!(status.issuer.as_deref(), Some("https://id/o/acme"));
        let blocked = conditions::find(&status.common.conditions, "DeletionBlocked").unwrap();
        assert_eq!((blocked.status.as_str(), blocked.reason.as_str()), ("True", "LegalHold"));
        assert_eq!(blocked.last_transition_time, Time(now));
        assert!(conditions::find(&status.common.conditions, "Ready").is_some());
        assert_eq!(status.common.observed_generation, Some(4));
        // Planning again changes nothing: no write on the next pass.
        org.status = Some(status.clone());
        assert_eq!(blocked_status(&org, now + jiff::SignedDuration::from_secs(60)), status);
    }
}
