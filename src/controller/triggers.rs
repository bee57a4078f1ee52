//! The watch side: one watcher and reflector per kind, shared by every
//! controller, and the relations that make related objects re-reconcile.
//!
//! ```text
//!  watcher<K> ─(managedFields dropped)─► reflector<K> ─► Store<K> ─► every reconcile, every TenantView
//!                                             │ event, after the store has it
//!                                             ▼
//!                              Triggers::handle ─► Versions (spec changed?) ─► views out of date
//!                                             ├─► K itself, when its spec changed or it needs us
//!                                             └─► K::on_change: Role ─► RoleAssignments naming it,
//!                                                 IdentityProviders mapping to it, Roles including it;
//!                                                 Organization ─► everything in its namespace (and other
//!                                                 Organizations); OAuthClient ─► its RoleAssignments
//! ```
//!
//! Status writes bump no generation, so they trigger nothing: a pass that
//! writes its status is not followed by a pass of its own or of its relatives.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{debug, warn};

use super::FINALIZER;
use super::metrics::Metrics;
use super::reconcile::{Kind, latest_change, store_meta};
use super::release::Release;
use super::tenants::{Stores, Tenants};
use crate::api::{
    IdentityProvider, OAuthClient, Organization, PrincipalKind, ROTATE_KEYS_ANNOTATION, Role, RoleAssignment,
    SCIM_TOKEN_ROTATED_ANNOTATION,
};

/// Annotations by which people ask the operator for something now.
const REQUEST_ANNOTATIONS: [&str; 2] = [ROTATE_KEYS_ANNOTATION, SCIM_TOKEN_ROTATED_ANNOTATION];
use crate::validation::namespace_of;

/// Where each controller's reconcile requests come from.
pub struct Triggers {
    pub stores: Stores,
    pub tenants: Arc<Tenants>,
    pub metrics: Arc<Metrics>,
    pub organizations: UnboundedSender<Arc<Organization>>,
    pub roles: UnboundedSender<Arc<Role>>,
    pub role_assignments: UnboundedSender<Arc<RoleAssignment>>,
    pub identity_providers: UnboundedSender<Arc<IdentityProvider>>,
    pub oauth_clients: UnboundedSender<Arc<OAuthClient>>,
    /// Store rows to remove for kinds without a finalizer.
    pub releases: UnboundedSender<Release>,
    /// The request annotations last seen on each object (by uid): a new
    /// value asks for a pass although the spec did not change.
    requests: Mutex<HashMap<String, String>>,
}

/// The receiving ends, one per controller, and the release loop's.
pub struct TriggerStreams {
    pub organizations: UnboundedReceiver<Arc<Organization>>,
    pub roles: UnboundedReceiver<Arc<Role>>,
    pub role_assignments: UnboundedReceiver<Arc<RoleAssignment>>,
    pub identity_providers: UnboundedReceiver<Arc<IdentityProvider>>,
    pub oauth_clients: UnboundedReceiver<Arc<OAuthClient>>,
    pub releases: UnboundedReceiver<Release>,
}

impl Triggers {
    pub fn new(stores: Stores, tenants: Arc<Tenants>, metrics: Arc<Metrics>) -> (Triggers, TriggerStreams) {
        let (organizations, organizations_rx) = unbounded_channel();
        let (roles, roles_rx) = unbounded_channel();
        let (role_assignments, role_assignments_rx) = unbounded_channel();
        let (identity_providers, identity_providers_rx) = unbounded_channel();
        let (oauth_clients, oauth_clients_rx) = unbounded_channel();
        let (releases, releases_rx) = unbounded_channel();
        (
            Triggers {
                stores,
                tenants,
                metrics,
                organizations,
                roles,
                role_assignments,
                identity_providers,
                oauth_clients,
                releases,
                requests: Mutex::default(),
            },
            TriggerStreams {
                organizations: organizations_rx,
                roles: roles_rx,
                role_assignments: role_assignments_rx,
                identity_providers: identity_providers_rx,
                oauth_clients: oauth_clients_rx,
                releases: releases_rx,
            },
        )
    }

    /// Whether `obj` carries a request annotation (`kubectl portcullis
    /// rotate-keys`, `scim-token`) with a value not seen before.
    fn new_request<K: Kind>(&self, obj: &K) -> bool {
        let annotations = obj.annotations();
        let value: Vec<&str> = REQUEST_ANNOTATIONS
            .iter()
            .filter_map(|name| annotations.get(*name).map(String::as_str))
            .collect();
        let uid = obj.uid().unwrap_or_default();
        let mut seen = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if value.is_empty() {
            seen.remove(&uid);
            return false;
        }
        let value = value.join("\n");
        seen.insert(uid, value.clone()).as_ref() != Some(&value)
    }

    /// Handles one watch event of kind `K`, after the reflector applied it.
    pub fn handle<K: Kind>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => {
                let spec_changed = self.tenants.versions().applied(
                    K::KIND,
                    &namespace_of(obj),
                    obj.uid().as_deref().unwrap_or_default(),
                    obj.meta().generation.unwrap_or_default(),
                );
                let requested = self.new_request(obj);
                if spec_changed || requested || needs_reconcile(obj) {
                    self.trigger(obj);
                }
                if spec_changed {
                    obj.on_change(self);
                }
            }
            watcher::Event::Delete(obj) => {
                self.tenants.versions().deleted(
                    K::KIND,
                    &namespace_of(obj),
                    obj.uid().as_deref().unwrap_or_default(),
                );
                if !K::FINALIZED
                    && let Ok(meta) = store_meta(obj)
                {
                    let _ = self.releases.send(Release::Deleted { kind: K::KIND, meta });
                }
                obj.on_change(self);
            }
            watcher::Event::Init => self.tenants.versions().restarted(K::KIND),
            watcher::Event::InitApply(obj) => {
                // Every object gets a pass after a relist anyway.
                self.new_request(obj);
                self.tenants.versions().applied(
                    K::KIND,
                    &namespace_of(obj),
                    obj.uid().as_deref().unwrap_or_default(),
                    obj.meta().generation.unwrap_or_default(),
                );
            }
            watcher::Event::InitDone => {
                self.tenants.versions().relisted();
                for obj in K::store(&self.stores).state() {
                    let _ = K::sender(self).send(obj);
                }
                K::on_relist(self);
                if !K::FINALIZED {
                    let _ = self.releases.send(Release::Relisted { kind: K::KIND });
                }
            }
        }
        self.metrics.objects(K::KIND, K::store(&self.stores).len());
    }

    /// Asks for a reconcile of this object (as the store has it now).
    pub fn trigger<K: Kind>(&self, obj: &K) {
        if let Some(current) = K::store(&self.stores).get(&ObjectRef::from_obj(obj)) {
            let _ = K::sender(self).send(current);
        }
    }

    /// Asks for a reconcile of every object of kind `K` that `select` picks.
    pub fn trigger_where<K: Kind>(&self, select: impl Fn(&K) -> bool) {
        for obj in K::store(&self.stores).state() {
            if select(&obj) {
                let _ = K::sender(self).send(obj);
            }
        }
    }

    /// Every Portcullis object in a namespace, and every Organization.
    pub fn trigger_namespace(&self, namespace: &str) {
        let in_ns = |ns: Option<String>| ns.as_deref() == Some(namespace);
        self.trigger_where::<Organization>(|_| true);
        self.trigger_where::<Role>(|o| in_ns(o.namespace()));
        self.trigger_where::<RoleAssignment>(|o| in_ns(o.namespace()));
        self.trigger_where::<IdentityProvider>(|o| in_ns(o.namespace()));
        self.trigger_where::<OAuthClient>(|o| in_ns(o.namespace()));
    }

    /// The roles of a namespace that include `role`, directly or not.
    pub fn roles_including(&self, namespace: &str, role: &str) -> BTreeSet<String> {
        let roles: Vec<Arc<Role>> = self
            .stores
            .roles
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(namespace))
            .collect();
        let mut found = BTreeSet::new();
        let mut frontier = vec![role.to_owned()];
        while let Some(current) = frontier.pop() {
            for r in &roles {
                let name = r.name_any();
                if r.spec.included_roles.contains(&current) && name != role && found.insert(name.clone()) {
                    frontier.push(name);
                }
            }
        }
        found
    }
}

/// Whether an object needs a pass even though its spec did not change: our
/// finalizer is missing (someone removed it), or is there on a kind that
/// carries none (left by an earlier version). A status changed by someone
/// else is put right by the periodic resync.
fn needs_reconcile<K: Kind>(obj: &K) -> bool {
    let ours = obj.finalizers().iter().any(|f| f == FINALIZER);
    if K::FINALIZED { obj.meta().deletion_timestamp.is_none() && !ours } else { ours }
}

/// Runs the watcher and reflector of kind `K` until the stream ends (never,
/// unless the task is aborted): API errors are retried with backoff and
/// expired watches (410 Gone) relisted by kube's watcher.
pub async fn drive<K: Kind>(api: Api<K>, writer: reflector::store::Writer<K>, triggers: Arc<Triggers>) {
    let events = watcher(api, watcher::Config::default().any_semantic())
        // managedFields are half of each object's size: only who changed
        // the object last is kept (for its audit events).
        .modify(|obj| {
            let latest = latest_change(obj.meta());
            obj.meta_mut().managed_fields = latest.map(|entry| vec![entry]);
        })
        .default_backoff();
    let mut events = std::pin::pin!(reflector::reflector(writer, events));
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => triggers.handle(&event),
            Err(error) => {
                triggers.metrics.watch_error(K::KIND);
                warn!(kind = %K::KIND, "watch failed, retrying: {error}");
            }
        }
    }
    debug!(kind = %K::KIND, "watch ended");
}

// === Relations ===

/// Organization: everything in its namespace, and the other Organizations
/// (names and email domains are unique across namespaces).
pub(crate) fn organization_changed(triggers: &Triggers, org: &Organization) {
    triggers.trigger_namespace(&namespace_of(org));
}

/// Role: what names it.
pub(crate) fn role_changed(triggers: &Triggers, role: &Role) {
    let namespace = namespace_of(role);
    let name = role.name_any();
    let same_ns = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());
    triggers.trigger_where::<RoleAssignment>(|ra| same_ns(ra.namespace()) && ra.spec.role == name);
    triggers.trigger_where::<IdentityProvider>(|idp| {
        same_ns(idp.namespace()) && idp.spec.group_mappings.iter().any(|m| m.role == name)
    });
    let including = triggers.roles_including(&namespace, &name);
    triggers.trigger_where::<Role>(|r| same_ns(r.namespace()) && including.contains(&r.name_any()));
}

/// IdentityProvider: the others of its namespace (email domains are unique).
pub(crate) fn identity_provider_changed(triggers: &Triggers, idp: &IdentityProvider) {
    let namespace = namespace_of(idp);
    let name = idp.name_any();
    triggers.trigger_where::<IdentityProvider>(|o| namespace_of(o) == namespace && o.name_any() != name);
}

/// OAuthClient: the assignments to it.
pub(crate) fn oauth_client_changed(triggers: &Triggers, client: &OAuthClient) {
    let namespace = namespace_of(client);
    let name = client.name_any();
    triggers.trigger_where::<RoleAssignment>(|ra| {
        namespace_of(ra) == namespace
            && ra.spec.principal.kind == PrincipalKind::Client
            && ra.spec.principal.name == name
    });
}
