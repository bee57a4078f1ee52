//! The compliance posture as the token service serves it: computed by
//! [`crate::posture::compute`] at most once per [`MAX_AGE`] per organization,
//! kept, and shown by the admin API (`GET {issuer}/api/v1/posture`), the page
//! `{issuer}/admin/posture` and the Prometheus gauges below. A request never
//! waits for more than one computation, and the page costs a map lookup when
//! the posture is fresh.
//!
//! ```text
//!  API / page ──► PostureCache::posture ── fresh (< MAX_AGE)? ──► the kept posture
//!                                        └─ else compute (one at a time) ──► keep + set gauges
//!  every REFRESH_EVERY: every organization of the store is recomputed (gauges stay current)
//! ```
//!
//! | gauge | labels |
//! |---|---|
//! | `portcullis_posture_users` | `organization`, `state` (`active`, `inactive`) |
//! | `portcullis_posture_mfa_users` | `organization`, `method` (`any`, `totp`, `security_key`, `passkey`) |
//! | `portcullis_posture_privileged_users` | `organization`, `mfa` (`enrolled`, `not_enrolled`) |
//! | `portcullis_posture_stale_accounts` | `organization`, `grants` (`held`, `none`) |
//! | `portcullis_posture_inactive_users_with_grants` | `organization` |
//! | `portcullis_posture_standing_privileged_grants` | `organization` |
//! | `portcullis_posture_pending_access_requests` | `organization` |
//! | `portcullis_posture_scim_sync_healthy` | `organization`, `identity_provider` (1 or 0) |

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::state::{OrganizationView, TokenServiceState};
use crate::api::OrganizationPosture;
use crate::store::{DesiredStateStore as _, OrganizationRecord, StoreError};

/// How old a kept posture may be when the API or the page shows it, unless
/// set otherwise (`--posture-max-age`).
pub const MAX_AGE: SignedDuration = SignedDuration::from_secs(60);
/// How often every organization's posture is recomputed for the gauges.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

type Labels = Vec<(&'static str, String)>;

struct Kept {
    computed: Timestamp,
    posture: Arc<OrganizationPosture>,
}

/// Each organization's last posture (by namespace), and the gauges.
pub struct PostureCache {
    /// [`MAX_AGE`] unless set, in milliseconds.
    max_age_ms: AtomicI64,
    kept: Mutex<HashMap<String, Arc<Kept>>>,
    /// One computation at a time: concurrent requests for a stale posture
    /// wait for the one running, then find it fresh.
    computing: tokio::sync::Mutex<()>,
    gauges: PostureGauges,
}

impl Default for PostureCache {
    fn default() -> Self {
        Self {
            max_age_ms: AtomicI64::new(i64::try_from(MAX_AGE.as_millis()).unwrap_or(60_000)),
            kept: Mutex::new(HashMap::new()),
            computing: tokio::sync::Mutex::new(()),
            gauges: PostureGauges::new(),
        }
    }
}

impl PostureCache {
    fn fresh(
        &self,
        namespace: &str,
        now: Timestamp,
        max_age: SignedDuration,
    ) -> Option<Arc<OrganizationPosture>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(namespace).filter(|k| now.duration_since(k.computed) < max_age).map(|k| k.posture.clone())
    }

    /// How old a posture may be when shown (zero: computed on every request).
    pub fn set_max_age(&self, max_age: SignedDuration) {
        let ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX).max(0);
        self.max_age_ms.store(ms, Ordering::Relaxed);
    }

    /// The organization's posture, at most the max age old.
    pub async fn posture(
        &self,
        state: &TokenServiceState,
        org: &OrganizationView,
    ) -> Result<Arc<OrganizationPosture>, StoreError> {
        let max_age = SignedDuration::from_millis(self.max_age_ms.load(Ordering::Relaxed));
        self.posture_within(state, org, max_age).await
    }

    async fn posture_within(
        &self,
        state: &TokenServiceState,
        org: &OrganizationView,
        max_age: SignedDuration,
    ) -> Result<Arc<OrganizationPosture>, StoreError> {
        if let Some(posture) = self.fresh(&org.namespace, state.now(), max_age) {
            return Ok(posture);
        }
        let _computing = self.computing.lock().await;
        if let Some(posture) = self.fresh(&org.namespace, state.now(), max_age) {
            return Ok(posture);
        }
        let computed = state.now();
        let posture =
            Arc::new(crate::posture::compute(state.store(), &org.namespace, &org.spec, computed).await?);
        self.gauges.set(&org.name, &posture);
        let kept = Arc::new(Kept { computed, posture: posture.clone() });
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).insert(org.namespace.clone(), kept);
        Ok(posture)
    }

    /// Recomputes every organization of the store (for the gauges).
    pub async fn refresh_all(&self, state: &TokenServiceState) -> Result<(), StoreError> {
        for namespace in state.store().namespaces().await? {
            for record in state.store().list::<OrganizationRecord>(&namespace).await? {
                let org = match state.organization(&record.meta.name).await {
                    Ok(Some(org)) => org,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(organization = %record.meta.name, %error, "posture: organization unreadable");
                        continue;
                    }
                };
                self.posture_within(state, &org, SignedDuration::ZERO).await?;
            }
        }
        Ok(())
    }

    /// The gauges' text exposition.
    pub fn render(&self) -> String {
        self.gauges.render()
    }
}

struct PostureGauges {
    registry: Registry,
    families: HashMap<&'static str, Family<Labels, Gauge>>,
}

const GAUGES: &[(&str, &str)] = &[
    ("users", "Users, by state"),
    ("mfa_users", "Active users with a second factor, by method (any: at least one)"),
    ("privileged_users", "Active users holding a privileged permission, by second-factor enrolment"),
    (
        "stale_accounts",
        "Active users without a sign-in for staleAccountThresholdDays, by whether they hold grants",
    ),
    ("inactive_users_with_grants", "Deactivated users still named by role assignments"),
    ("standing_privileged_grants", "Role assignments of a privileged role without expiry"),
    ("pending_access_requests", "Access requests waiting for approval"),
    ("scim_sync_healthy", "Whether an IdentityProvider's last SCIM request was answered without error"),
];

impl PostureGauges {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis_posture");
        let mut families = HashMap::new();
        for (name, help) in GAUGES {
            let family = Family::<Labels, Gauge>::default();
            registry.register(*name, *help, family.clone());
            families.insert(*name, family);
        }
        Self { registry, families }
    }

    fn gauge(&self, name: &'static str, organization: &str, extra: &[(&'static str, &str)]) -> Option<Gauge> {
        let mut labels: Labels = vec![("organization", organization.to_owned())];
        labels.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.families.get(name).map(|family| family.get_or_create(&labels).clone())
    }

    fn set(&self, organization: &str, posture: &OrganizationPosture) {
        let value = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let set = |name, extra: &[(&'static str, &str)], n: u64| {
            if let Some(gauge) = self.gauge(name, organization, extra) {
                gauge.set(value(n));
            }
        };
        let mfa = &posture.mfa;
        set("users", &[("state", "active")], posture.active_users);
        set("users", &[("state", "inactive")], posture.users.saturating_sub(posture.active_users));
        set("mfa_users", &[("method", "any")], mfa.enrolled);
        set("mfa_users", &[("method", "totp")], mfa.totp);
        set("mfa_users", &[("method", "security_key")], mfa.security_key);
        set("mfa_users", &[("method", "passkey")], mfa.passkey);
        set("privileged_users", &[("mfa", "enrolled")], mfa.privileged_enrolled);
        set(
            "privileged_users",
            &[("mfa", "not_enrolled")],
            mfa.privileged_users.saturating_sub(mfa.privileged_enrolled),
        );
        set("stale_accounts", &[("grants", "held")], posture.stale_accounts_with_grants);
        set(
            "stale_accounts",
            &[("grants", "none")],
            posture.stale_accounts.saturating_sub(posture.stale_accounts_with_grants),
        );
        set("inactive_users_with_grants", &[], posture.inactive_users_with_grants);
        set("standing_privileged_grants", &[], posture.standing_privileged_grants);
        set("pending_access_requests", &[], posture.pending_access_requests);
        for scim in &posture.scim_sync {
            set(
                "scim_sync_healthy",
                &[("identity_provider", &scim.identity_provider)],
                u64::from(scim.healthy),
            );
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
