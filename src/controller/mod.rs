//! `portcullis operator`: the controllers that make Git the source of truth.
//!
//! One reflector per kind is shared by every controller (the stores are the
//! cross-reference snapshot `validation::check` runs on); one controller per
//! kind reconciles it into the store, its status and the objects it owns.
//!
//! ```text
//!  kube-apiserver ──watch──► reflector<K> ──► Store<K> (shared, read by every reconcile)
//!                                 │
//!                                 └─► triggers: the object itself, and what names it
//!                                     (Role ─► RoleAssignments, IdentityProviders, including Roles;
//!                                      Organization ─► everything in its namespace;
//!                                      OAuthClient ─► RoleAssignments of that client)
//!                                          │
//!                                          ▼
//!  Controller<K> ── reconcile(K, Context) ── finalizer ─┬─ apply:   tenants::view (findings, cached)
//!                                                        │            ├─► plan (pure) ─► status (SSA, only if changed)
//!                                                        │            ├─► store.apply(record)       Events on transitions
//!                                                        │            └─► owned Secrets (SSA, labelled)
//!                                                        └─ cleanup: store.delete(uid, generation)
//!                                                                    (an Organization under legal hold stays)
//! ```
//!
//! - [`conditions`]: findings → `metav1.Condition`s (pure).
//! - [`tenants`]: per-namespace findings and role expansion, recomputed only
//!   when a spec in the namespace changed.
//! - [`triggers`]: the watch side — reflectors, relations between kinds.
//! - [`reconcile`]: what every kind shares — finalizer, status, events, backoff.
//! - [`residency`]: which store (default or regional) a namespace's objects go to.
//! - [`release`]: store rows of kinds without a finalizer (RoleAssignments).
//! - [`housekeeping`]: pruning the store's change log, tombstones and expired grants.
//! - [`principals`]: assignments waiting for a user or group, woken by the change feed.
//! - One module per kind with its pure `plan` and its side effects; [`access_request`]
//!   files AccessRequests in the store and mirrors their state (its own controller: no store row
//!   of its own, no reflector others read).
//! - [`secrets`]: owned Secrets (names and signing keys from [`crate::resources`]).
//! - [`workloads`]: the Deployments and Services of the two services.
//! - [`service_keys`]: the services' key-encryption key and login secret (one Secret).
//! - [`operator_status`]: what is wrong with the operator's own settings, and where it shows.
//! - [`leader`]: leader election with a `coordination.k8s.io` Lease.
//! - [`metrics`]: Prometheus metrics and the health probes.

pub mod access_request;
pub mod conditions;
mod error;
pub mod housekeeping;
pub mod identity_provider;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock_tests;
pub mod oauth_client;
pub mod operator_status;
pub mod organization;
pub mod principals;
pub mod reconcile;
pub mod release;
pub mod residency;
pub mod role;
pub mod role_assignment;
pub mod rollout;
pub mod run;
pub mod secrets;
pub mod service_keys;
pub mod tenants;
pub mod triggers;
pub mod upstream_secrets;
pub mod workloads;

pub use error::Error;
pub use reconcile::{Context, Settings};
pub use run::{OperatorConfig, run};
pub use tenants::Stores;

/// The finalizer on Portcullis objects (all kinds but RoleAssignments): their
/// store rows are removed before the object goes.
pub const FINALIZER: &str = "iam.portcullis.dev/finalizer";

/// The one field manager of everything the operator writes by server-side apply.
pub const FIELD_MANAGER: &str = "portcullis-operator";

/// Labels on every object the operator owns, so that a pass can find (and
/// delete) what it no longer wants.
pub mod labels {
    /// `app.kubernetes.io/managed-by`: always [`MANAGED_BY`].
    pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY: &str = "portcullis-operator";
    /// What the object is (`signing-keys`, `scim-token`, `client-secret`,
    /// `token-service`, `scim-service`).
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Kind and name of the Portcullis object that wants it.
    pub const OWNER_KIND: &str = "iam.portcullis.dev/owner-kind";
    pub const OWNER_NAME: &str = "iam.portcullis.dev/owner-name";
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
