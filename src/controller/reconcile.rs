//! What every kind's reconcile shares: the finalizer, the status written by
//! server-side apply only when it changed, Events on transitions, the store
//! write, and per-object exponential backoff.
//!
//! ```text
//!  reconcile(obj) ─┬─ deleting? ── finalizer ours? ── K::cleanup ─┬─ Done ──► remove finalizer
//!                  │                                              └─ Blocked(status) ──► status
//!                  └─ finalizer missing? add it (JSON patch, tested) ──► K::apply ──► status ──► Events
//!                     (kinds with FINALIZED = false carry none: see release)
//!  error_policy ── 409: soon, with jitter ── otherwise: base · 2^failures (≤ max), jittered; reset on success
//! ```

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

use super::conditions::{self, Desired, Report};
use super::metrics::Metrics;
use super::operator_status::OperatorStatus;
use super::service_keys::ServiceKeys;
use super::tenants::{Stores, Tenants};
use super::triggers::Triggers;
use super::workloads::WorkloadSettings;
use super::{Error, FIELD_MANAGER, FINALIZER, Result};
use crate::api::CommonStatus;
use crate::audit::{Actor, AuditContext, Source};
use crate::error_chain::error_chain;
use crate::store::{
    DesiredRecord, DesiredStateStore, ObjectMeta, RegionalStores, ResourceKind, Store as StateStore,
};

/// The clock, passed in so that plans are testable.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// What the operator is configured with, beyond its clients.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Public base URL of the token service; an Organization's issuer is
    /// `{base}/o/{name}`. `None` until configured: a `ServicesConfigured`
    /// problem, never a guess.
    pub issuer_base_url: Option<String>,
    /// Public base URL of the SCIM service; an IdentityProvider's endpoint is
    /// `{base}/o/{organization}/scim/v2`.
    pub scim_base_url: Option<String>,
    /// Namespace the operator runs in (its Lease, and the managed services).
    pub operator_namespace: String,
    /// The operator's own Deployment in its namespace, if it runs as one:
    /// where its Events about its settings go (its Lease otherwise).
    pub operator_deployment: Option<String>,
    /// Secret (in the operator's namespace) of the services' keys: see
    /// [`super::service_keys`].
    pub service_keys_secret: String,
    /// How often an object is reconciled without any change (jittered).
    pub resync: Duration,
    /// First retry after a failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// The Deployments and Services to run, if the operator manages them.
    pub workloads: Option<WorkloadSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer_base_url: None,
            scim_base_url: None,
            operator_namespace: "portcullis".to_owned(),
            operator_deployment: None,
            service_keys_secret: super::service_keys::DEFAULT_SECRET_NAME.to_owned(),
            resync: Duration::from_secs(600),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            workloads: None,
        }
    }
}

/// Shared by every reconcile. Each pass gets a copy whose `store` is the one
/// of its namespace's region ([`super::residency`]).
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    /// The store this pass writes to: the default store on the shared
    /// context, the namespace's home store on a pass's copy.
    pub store: StateStore,
    /// Every store: the default and the regional ones.
    pub regions: RegionalStores,
    /// The namespaces' home stores, once found.
    pub homes: Arc<super::residency::Homes>,
    /// This pass's `DataResidency` condition (on a pass's copy only).
    pub residency: Option<super::residency::PassResidency>,
    pub stores: Stores,
    pub tenants: Arc<Tenants>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub backoff: Arc<Backoff>,
    pub clock: Clock,
    /// What is wrong with the operator's settings, for every Organization's
    /// `ServicesConfigured` condition.
    pub operator_status: Arc<OperatorStatus>,
    /// The services' keys once read (the key-encryption key seals signing keys).
    pub service_keys: tokio::sync::watch::Receiver<Option<ServiceKeys>>,
}

impl Context {
    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// The key ring that seals and opens signing keys, once read.
    pub fn key_ring(&self) -> Option<Arc<crate::sealing::KeyRing>> {
        self.service_keys.borrow().as_ref().map(|keys| keys.ring.clone())
    }
}

/// A Portcullis kind as the operator sees it.
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Status: Clone + Debug + Default + PartialEq + Serialize + Send + Sync;
    const KIND: ResourceKind;
    /// Whether objects of this kind carry [`FINALIZER`], so that their store
    /// rows go before they do. Kinds without it are released by
    /// [`super::release`] on their Delete event and after every relist.
    const FINALIZED: bool = true;

    fn status(&self) -> Option<&Self::Status>;
    fn common(status: &Self::Status) -> &CommonStatus;
    fn common_mut(status: &mut Self::Status) -> &mut CommonStatus;
    fn store(stores: &Stores) -> &Store<Self>;
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>>;

    /// Triggers what depends on this object, after its spec changed or it went.
    fn on_change(&self, triggers: &Triggers);
    /// Triggers what depends on any object of this kind, after a relist.
    fn on_relist(triggers: &Triggers);
}

/// What an apply pass produced.
pub struct Applied<S> {
    pub status: S,
    /// When to look again (a key rotation, an expiry); the resync otherwise.
    pub requeue: Option<Duration>,
    /// Returned after the status is written, so that the failure shows there
    /// and the object is retried with backoff.
    pub error: Option<Error>,
}

/// What a cleanup pass decided.
pub enum Cleanup<S> {
    /// Everything outside the cluster is gone: the finalizer can be removed.
    Done,
    /// Deletion is refused for now; this status says why.
    Blocked(S),
}

/// The per-kind half of a reconcile.
pub trait Reconciler: Kind {
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Applied<Self::Status>>> + Send;
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Cleanup<Self::Status>>> + Send;
}

/// Namespace and name of an object.
pub fn names<K: Kind>(obj: &K) -> Result<(String, String)> {
    let kind = K::KIND.as_str();
    let namespace = obj.namespace().ok_or(Error::MissingMetadata { kind, field: "metadata.namespace" })?;
    let name = obj.meta().name.clone().ok_or(Error::MissingMetadata { kind, field: "metadata.name" })?;
    Ok((namespace, name))
}

/// The store's identity of an object: uid and generation.
pub fn store_meta<K: Kind>(obj: &K) -> Result<ObjectMeta> {
    let (namespace, name) = names(obj)?;
    let uid = obj.uid().ok_or(Error::MissingMetadata { kind: K::KIND.as_str(), field: "metadata.uid" })?;
    Ok(ObjectMeta::new(uid, namespace, name, obj.meta().generation.unwrap_or(1)))
}

fn backoff_key<K: Kind>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The controller's reconcile function for kind `K`.
pub async fn reconcile<K: Reconciler>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_once(&obj, &ctx).await;
    ctx.metrics.reconciled(K::KIND, started.elapsed(), result.as_ref().err());
    if result.is_ok() {
        ctx.backoff.reset(&backoff_key(&*obj));
    }
    result
}

/// The controller's error policy: conflicts are retried soon; anything else
/// with exponential backoff per object, jittered.
pub fn error_policy<K: Reconciler>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = backoff_key(&*obj);
    if error.is_conflict() {
        debug!(object = %key, "conflict, retrying: {error}");
        return Action::requeue(jitter(Duration::from_millis(500), &key, 0));
    }
    let delay = ctx.backoff.failed(&key);
    warn!(object = %key, retry_in = ?delay, error = %error_chain(error), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_once<K: Reconciler>(obj: &Arc<K>, shared: &Context) -> Result<Action> {
    let (namespace, name) = names(&**obj)?;
    let placement = super::residency::place(shared, &namespace).await?;
    let ctx = &Context {
        residency: Some(super::residency::PassResidency {
            condition: placement.condition.clone(),
            has_store: placement.store.is_some(),
        }),
        store: match (placement.store, obj.meta().deletion_timestamp.is_some(), K::KIND) {
            (Some(store), _, _) => store,
            // Nowhere to write: a deletion has nothing to remove but the
            // default store's rows; an Organization writes nothing and says
            // why in its condition; anything else waits.
            (None, true, _) | (None, _, ResourceKind::Organization) => shared.store.clone(),
            (None, false, _) => {
                return Err(Error::NoStoreForNamespace { namespace, reason: placement.condition.message });
            }
        },
        ..shared.clone()
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    let resync = jitter(ctx.settings.resync, &backoff_key(&**obj), 0);

    if obj.meta().deletion_timestamp.is_some() {
        // An unfinalized object held by someone else's finalizer is released now.
        if !has_finalizer && K::FINALIZED {
            return Ok(Action::await_change());
        }
        return match obj.cleanup(ctx).await? {
            Cleanup::Done => {
                if has_finalizer {
                    remove_finalizer(&api, &**obj, &namespace, &name).await?;
                }
                info!(kind = %K::KIND, %namespace, %name, "deleted from the store");
                Ok(Action::await_change())
            }
            Cleanup::Blocked(status) => {
                write_status(&api, &**obj, status, ctx, &namespace, &name).await?;
                Ok(Action::requeue(resync))
            }
        };
    }

    match (has_finalizer, K::FINALIZED) {
        (false, true) => add_finalizer(&api, &**obj, &namespace, &name).await?,
        // Left by an operator version that finalized this kind.
        (true, false) => remove_finalizer(&api, &**obj, &namespace, &name).await?,
        _ => {}
    }
    let applied = obj.apply(ctx).await?;
    write_status(&api, &**obj, applied.status, ctx, &namespace, &name).await?;
    if let Some(error) = applied.error {
        return Err(error);
    }
    Ok(Action::requeue(applied.requeue.map_or(resync, |r| r.min(resync))))
}

async fn add_finalizer<K: Kind>(api: &Api<K>, obj: &K, namespace: &str, name: &str) -> Result<()> {
    add_finalizer_of(api, obj, K::KIND.as_str(), namespace, name).await
}

async fn remove_finalizer<K: Kind>(api: &Api<K>, obj: &K, namespace: &str, name: &str) -> Result<()> {
    remove_finalizer_of(api, obj, K::KIND.as_str(), namespace, name).await
}

/// Adds [`FINALIZER`] to an object of any kind (`kind` names it in errors).
pub(super) async fn add_finalizer_of<K>(
    api: &Api<K>,
    obj: &K,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    // As kube's `finalizer` helper: the test makes a concurrent change to the
    // list fail (and be retried) instead of being overwritten.
    let patch = if obj.finalizers().is_empty() {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    } else {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": obj.finalizers() },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await.map_err(|source| {
        Error::AddFinalizer {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    })?;
    Ok(())
}

/// Removes [`FINALIZER`] from an object of any kind, if it has it.
pub(super) async fn remove_finalizer_of<K>(
    api: &Api<K>,
    obj: &K,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{index}");
    let patch = serde_json::json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap_or_default();
    match api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(()),
        // Already gone: nothing holds it any more.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::RemoveFinalizer {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// Writes the whole status by server-side apply, unless it is what the
/// object already has; then publishes an Event per transition.
async fn write_status<K: Kind>(
    api: &Api<K>,
    obj: &K,
    status: K::Status,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let previous = obj.status().cloned().unwrap_or_default();
    if obj.status() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await.map_err(
        |source| Error::PatchStatus {
            kind: K::KIND.as_str(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        },
    )?;
    let transitions =
        conditions::transitions(&K::common(&previous).conditions, &K::common(&status).conditions);
    for transition in transitions {
        let type_ = if transition.warning { EventType::Warning } else { EventType::Normal };
        let event = Event {
            type_,
            reason: transition.reason.clone(),
            note: Some(event_note(&transition)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        publish(ctx, obj, &event).await;
    }
    Ok(())
}

fn event_note(transition: &conditions::Transition) -> String {
    let state = if transition.status { "True" } else { "False" };
    let mut note = format!("{} is {state}", transition.type_);
    if !transition.message.is_empty() {
        note.push_str(": ");
        note.push_str(&transition.message);
    }
    // events.k8s.io notes are limited to 1 kB.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    note
}

/// Publishes an Event about `obj`; a failure is logged, never fatal.
pub async fn publish<K: Kind>(ctx: &Context, obj: &K, event: &Event) {
    if let Err(error) = ctx.recorder.publish(event, &obj.object_ref(&())).await {
        warn!(kind = %K::KIND, name = %obj.name_any(), reason = %event.reason, "could not publish an event: {error}");
    }
}

/// The most recent `managedFields` entry of a change to what the object
/// asks for, without its field set: who (the field manager) and when. The
/// operator's own entries (finalizer, status) are not such a change.
pub fn latest_change(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ManagedFieldsEntry> {
    let latest = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().is_none_or(str::is_empty))
        .filter(|entry| entry.manager.as_deref().is_some_and(|manager| manager != FIELD_MANAGER))
        .max_by_key(|entry| entry.time.as_ref().map(|time| time.0))?;
    Some(ManagedFieldsEntry { fields_v1: None, fields_type: None, ..latest.clone() })
}

/// Who changed `obj`, as far as the operator can see: the field manager of
/// its latest change ([`latest_change`]). The API server's own audit log
/// knows the requesting user; the object does not carry it.
pub fn changed_by<K: Kind>(obj: &K) -> AuditContext {
    let manager = latest_change(obj.meta()).and_then(|entry| entry.manager);
    AuditContext::new(Actor::kubernetes(manager.as_deref()), Source::default())
}

/// Writes a desired-state record of `obj` and reports the outcome under
/// `Stored`; the store audits the change as made by [`changed_by`]. Returns
/// the error to fail the pass with, if the store failed.
pub async fn store_record<K: Kind, R: DesiredRecord>(
    ctx: &Context,
    obj: &K,
    record: &R,
    report: &mut Report,
) -> Option<Error> {
    let meta = record.meta();
    match ctx.store.with_audit(changed_by(obj)).apply(record).await {
        Ok(outcome) => {
            debug!(kind = %R::KIND, namespace = %meta.namespace, name = %meta.name, ?outcome, "stored");
            report.set(Desired::new(conditions::STORED, true, "Stored", ""));
            None
        }
        Err(source) if source.is_conflict() => {
            report.set(Desired::new(conditions::STORED, false, "StoreConflict", source.to_string()));
            None
        }
        Err(source) => {
            report.set(Desired::new(
                conditions::STORED,
                false,
                "StoreUnavailable",
                format!("the store refused the write: {}", error_chain(&source)),
            ));
            Some(Error::StoreWrite {
                kind: R::KIND.as_str(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                source: Box::new(source),
            })
        }
    }
}

/// Removes a desired-state record as of the object's generation.
/// The object is gone or going, so nothing says who deleted it: the audit
/// event names Kubernetes without a manager.
pub async fn delete_record<R: DesiredRecord>(meta: &ObjectMeta, ctx: &Context) -> Result<()> {
    let deleted_by = AuditContext::new(Actor::kubernetes(None), Source::default());
    ctx.store.with_audit(deleted_by).delete::<R>(meta).await.map_err(|source| Error::StoreDelete {
        kind: R::KIND.as_str(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        source: Box::new(source),
    })?;
    if R::KIND == ResourceKind::Organization {
        ctx.homes.forget(&meta.namespace);
    }
    Ok(())
}

/// The status's common part: generation and conditions from a report.
pub fn common_status<K: Kind>(
    obj: &K,
    report: &Report,
    ready_message: &str,
    now: jiff::Timestamp,
) -> CommonStatus {
    let previous = obj.status().map(|s| K::common(s).conditions.clone()).unwrap_or_default();
    CommonStatus {
        observed_generation: obj.meta().generation,
        conditions: report.conditions(ready_message, &previous, obj.meta().generation, now),
    }
}

/// Per-object failure counts for exponential backoff.
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { failures: Mutex::default(), base, max }
    }

    /// Counts a failure and returns how long to wait before the next try:
    /// `base · 2^(failures-1)`, at most `max`, times a jitter in [0.5, 1].
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        let exponent = (*count - 1).min(30);
        let delay = self.base.saturating_mul(1u32 << exponent).min(self.max);
        jitter(delay, key, *count)
    }

    /// Forgets the failures of an object after a success.
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or_default()
    }
}

/// `delay` scaled into [delay/2, delay], differently per object and attempt,
/// so that objects failing together do not retry together.
pub fn jitter(delay: Duration, key: &str, attempt: u32) -> Duration {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    attempt.hash(&mut hasher);
    let fraction = (hasher.finish() % 1000) as f64 / 1000.0;
    delay.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_and_resets() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.failed("Role/acme/r")).collect();
        for (i, delay) in delays.iter().enumerate() {
            let nominal = Duration::from_millis(100).saturating_mul(1 << i).min(Duration::from_secs(2));
            assert!(*delay >= nominal / 2 && *delay <= nominal, "try {i}: {delay:?} vs {nominal:?}");
        }
        assert!(delays[7] >= Duration::from_secs(1), "capped, not wrapped");
        assert_eq!(backoff.failures("Role/acme/r"), 8);
        backoff.reset("Role/acme/r");
        assert!(backoff.failed("Role/acme/r") <= Duration::from_millis(100));
        assert_eq!(backoff.failures("Role/acme/other"), 0, "per object");
    }

    #[test]
    fn jitter_spreads_objects_apart() {
        let delay = Duration::from_secs(10);
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|i| jitter(delay, &format!("RoleAssignment/acme/a{i}"), 1)).collect();
        assert!(spread.len() > 15, "{spread:?}");
        assert!(spread.iter().all(|d| *d >= delay / 2 && *d <= delay));
    }
}
