//! Per-namespace views of the cluster: the findings of `validation::check`
//! (the same implementation `portcullis validate` uses) and the role
//! expansion, computed from the shared reflector stores.
//!
//! ```text
//!   reflector stores ──(one namespace + every Organization)──► validation::check ──► TenantView
//!        ▲                                                                            │ findings by object
//!   triggers: Versions.applied / deleted / relisted                                   │ effective permissions
//!        (only a new generation counts: status writes do not invalidate)              ▼
//!                                                         Tenants: one cached view per namespace
//! ```
//!
//! A view is recomputed when a spec in its namespace (or any Organization)
//! changed since it was computed, or after [`VIEW_TTL`] (expiry of
//! assignments depends on the clock). Concurrent reconciles of one namespace
//! wait for one computation instead of each running its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::api::{IdentityProvider, OAuthClient, Organization, Role, RoleAssignment};
use crate::authz::role_graph::RoleExpansion;
use crate::store::ResourceKind;
use crate::validation::{self, Finding, Snapshot, namespace_of};

/// How long a view is trusted without any change: bounds how late an
/// assignment's expiry shows.
pub const VIEW_TTL: Duration = Duration::from_secs(10);

/// The shared reflector stores, one per kind.
#[derive(Clone)]
pub struct Stores {
    pub organizations: Store<Organization>,
    pub roles: Store<Role>,
    pub role_assignments: Store<RoleAssignment>,
    pub identity_providers: Store<IdentityProvider>,
    pub oauth_clients: Store<OAuthClient>,
}

/// What `validation::check` says about one namespace, by object.
#[derive(Debug, Default)]
pub struct TenantView {
    pub namespace: String,
    /// The namespace's Organization (the oldest, should there be several).
    pub organization: Option<Arc<Organization>>,
    findings: HashMap<(String, String), Vec<Finding>>,
    pub expansion: RoleExpansion,
}

impl TenantView {
    /// Reads the namespace's objects (and every Organization) out of the stores.
    pub fn compute(namespace: &str, stores: &Stores) -> TenantView {
        fn in_namespace<K: kube::Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            namespace: &str,
        ) -> Vec<K> {
            store
                .state()
                .iter()
                .filter(|o| namespace_of(o.as_ref()) == namespace)
                .map(|o| (**o).clone())
                .collect()
        }
        let organizations: Vec<Organization> =
            stores.organizations.state().iter().map(|o| (**o).clone()).collect();
        TenantView::build(
            namespace,
            organizations,
            in_namespace(&stores.roles, namespace),
            in_namespace(&stores.role_assignments, namespace),
            in_namespace(&stores.identity_providers, namespace),
            in_namespace(&stores.oauth_clients, namespace),
        )
    }

    /// Runs the checks over these objects. Pure apart from the clock the
    /// expiry check reads.
    pub fn build(
        namespace: &str,
        mut organizations: Vec<Organization>,
        roles: Vec<Role>,
        role_assignments: Vec<RoleAssignment>,
        identity_providers: Vec<IdentityProvider>,
        oauth_clients: Vec<OAuthClient>,
    ) -> TenantView {
        // The older Organization of a namespace is the real one; the checks
        // report the later one as the duplicate.
        organizations.sort_by(|a, b| {
            let created = |o: &Organization| o.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let snapshot = Snapshot {
            organizations: &organizations,
            roles: &roles,
            role_assignments: &role_assignments,
            identity_providers: &identity_providers,
            oauth_clients: &oauth_clients,
        };
        let mut findings: HashMap<(String, String), Vec<Finding>> = HashMap::new();
        for finding in validation::check(&snapshot) {
            if finding.object.namespace == namespace {
                let key = (finding.object.kind.clone(), finding.object.name.clone());
                findings.entry(key).or_default().push(finding);
            }
        }
        let organization = organizations.iter().find(|o| namespace_of(*o) == namespace).cloned();
        let expansion = match &organization {
            Some(org) => validation::expand(org, &roles.iter().collect::<Vec<_>>()),
            None => RoleExpansion::default(),
        };
        TenantView {
            namespace: namespace.to_owned(),
            organization: organization.map(Arc::new),
            findings,
            expansion,
        }
    }

    /// The findings about one object, in the order `check` reported them.
    pub fn findings(&self, kind: &str, name: &str) -> &[Finding] {
        self.findings.get(&(kind.to_owned(), name.to_owned())).map(Vec::as_slice).unwrap_or_default()
    }

    /// The catalog permissions a role gives, sorted; empty without an Organization.
    pub fn effective_permissions(&self, role: &str) -> Vec<String> {
        self.expansion.effective.get(role).map(|p| p.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Which specs have been seen, to tell a spec change (new generation) from a
/// status write, and to version each namespace's view.
#[derive(Debug, Default)]
pub struct Versions {
    /// Bumped when a kind was listed anew (start, or after a watch expired).
    epoch: u64,
    /// Bumped by any Organization change: duplicates and email domains are
    /// checked across namespaces.
    organizations: u64,
    namespaces: HashMap<String, u64>,
    generations: HashMap<(ResourceKind, String), i64>,
}

/// The version a view was computed at.
type VersionKey = (u64, u64, u64);

impl Versions {
    /// Notes an object as seen; returns whether its spec is new (a new object,
    /// or a new generation).
    pub fn applied(&mut self, kind: ResourceKind, namespace: &str, uid: &str, generation: i64) -> bool {
        let previous = self.generations.insert((kind, uid.to_owned()), generation);
        let changed = previous != Some(generation);
        if changed {
            self.bump(kind, namespace);
        }
        changed
    }

    /// Notes an object as gone.
    pub fn deleted(&mut self, kind: ResourceKind, namespace: &str, uid: &str) {
        self.generations.remove(&(kind, uid.to_owned()));
        self.bump(kind, namespace);
    }

    /// A kind is being listed anew: forget what was seen of it.
    pub fn restarted(&mut self, kind: ResourceKind) {
        self.generations.retain(|(k, _), _| *k != kind);
    }

    /// A listing finished: every view is out of date.
    pub fn relisted(&mut self) {
        self.epoch += 1;
    }

    fn bump(&mut self, kind: ResourceKind, namespace: &str) {
        *self.namespaces.entry(namespace.to_owned()).or_default() += 1;
        if kind == ResourceKind::Organization {
            self.organizations += 1;
        }
    }

    fn key(&self, namespace: &str) -> VersionKey {
        (self.epoch, self.organizations, self.namespaces.get(namespace).copied().unwrap_or_default())
    }
}

struct CachedView {
    key: VersionKey,
    computed: Instant,
    view: Arc<TenantView>,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedView>>>;

/// The cached views, one per namespace.
#[derive(Default)]
pub struct Tenants {
    versions: Mutex<Versions>,
    views: Mutex<HashMap<String, Slot>>,
}

impl Tenants {
    /// The versions, for the watch side to update.
    pub fn versions(&self) -> MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The namespace's view, recomputed if a spec changed since the cached one.
    pub async fn view(&self, namespace: &str, stores: &Stores) -> Arc<TenantView> {
        let slot = {
            let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            views.entry(namespace.to_owned()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        // Read the version before the stores: a change landing during the
        // computation then makes this view out of date, never the reverse.
        let key = self.versions().key(namespace);
        if let Some(hit) = cached.as_ref().filter(|c| c.key == key && c.computed.elapsed() < VIEW_TTL) {
            return hit.view.clone();
        }
        let view = Arc::new(TenantView::compute(namespace, stores));
        *cached = Some(CachedView { key, computed: Instant::now(), view: view.clone() });
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_generation_invalidates_a_namespace() {
        let mut versions = Versions::default();
        assert!(versions.applied(ResourceKind::Role, "acme", "u1", 1));
        let key = versions.key("acme");
        assert!(!versions.applied(ResourceKind::Role, "acme", "u1", 1), "a status write");
        assert_eq!(versions.key("acme"), key);
        assert!(versions.applied(ResourceKind::Role, "acme", "u1", 2));
        assert_ne!(versions.key("acme"), key);
        let other = versions.key("globex");
        versions.applied(ResourceKind::Role, "acme", "u2", 1);
        assert_eq!(versions.key("globex"), other, "other namespaces keep their view");
        versions.applied(ResourceKind::Organization, "acme", "o1", 1);
        assert_ne!(versions.key("globex"), other, "organizations are checked across namespaces");
        let before = versions.key("globex");
        versions.relisted();
        assert_ne!(versions.key("globex"), before);
    }
}
