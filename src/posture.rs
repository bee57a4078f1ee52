//! The compliance posture of an organization: which of its roles are
//! privileged (role composition, here), the counts the store aggregates
//! ([`crate::store::posture`]), and what is derived from them (percentages,
//! key changes to come). The operator writes it into the Organization's
//! status; the token service serves it (API, page, gauges) from a cache.
//!
//! ```text
//!  spec.permissions (privileged) + roles ──expand_roles──► privileged role names ─┐
//!  store ── posture_counts (aggregate SQL, one snapshot) ◄─────────────────────────┘
//!        ── signing keys ──► key changes to come
//!                              └──► OrganizationPosture (api)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::api::{KeyRotationPosture, MfaPosture, OrganizationPosture, OrganizationSpec, ScimSyncPosture};
use crate::authz::role_graph::{RoleDefinition, expand_roles};
use crate::store::{
    DesiredStateStore as _, PostureCounts, PostureQuery, PostureStore as _, RoleRecord, SigningKeyRecord,
    SigningKeyState, Store, StoreError,
};

/// Computes the posture of the organization kept under `namespace`.
pub async fn compute(
    store: &Store,
    namespace: &str,
    spec: &OrganizationSpec,
    now: Timestamp,
) -> Result<OrganizationPosture, StoreError> {
    let roles = store.list::<RoleRecord>(namespace).await?;
    let privileged_roles = privileged_roles(spec, &roles);
    let now_ms = now.as_millisecond();
    let threshold = SignedDuration::from_hours(24 * i64::from(spec.stale_account_threshold_days.max(1)));
    let counts = store
        .posture_counts(&PostureQuery {
            organization: namespace,
            now_ms,
            stale_before_ms: now_ms.saturating_sub(threshold.as_millis().try_into().unwrap_or(i64::MAX)),
            privileged_roles: &privileged_roles,
        })
        .await?;
    let keys = store.list_signing_keys(namespace).await?;
    Ok(derive(&counts, &keys, spec, now))
}

/// The roles whose expansion (included roles, wildcards) reaches a
/// permission the catalog marks privileged, by name.
pub fn privileged_roles(spec: &OrganizationSpec, roles: &[RoleRecord]) -> Vec<String> {
    let privileged: BTreeSet<&str> =
        spec.permissions.iter().filter(|p| p.privileged).map(|p| p.name.as_str()).collect();
    if privileged.is_empty() {
        return Vec::new();
    }
    let catalog: BTreeSet<String> = spec.permissions.iter().map(|p| p.name.clone()).collect();
    let definitions: BTreeMap<String, RoleDefinition> = roles
        .iter()
        .map(|r| {
            let definition =
                RoleDefinition { grants: r.permissions.clone(), included_roles: r.included_roles.clone() };
            (r.meta.name.clone(), definition)
        })
        .collect();
    expand_roles(&catalog, &definitions)
        .effective
        .into_iter()
        .filter(|(_, permissions)| permissions.iter().any(|p| privileged.contains(p.as_str())))
        .map(|(name, _)| name)
        .collect()
}

/// `part` of `whole` in percent, rounded down (never overstating adoption);
/// none of nothing.
pub fn percent(part: u64, whole: u64) -> Option<u32> {
    if whole == 0 {
        return None;
    }
    u32::try_from(part.min(whole).saturating_mul(100) / whole).ok()
}

fn rfc3339(at_ms: i64) -> String {
    Timestamp::from_millisecond(at_ms)
        .map(|at| at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The posture from the store's counts and the organization's signing keys.
pub fn derive(
    counts: &PostureCounts,
    keys: &[SigningKeyRecord],
    spec: &OrganizationSpec,
    now: Timestamp,
) -> OrganizationPosture {
    OrganizationPosture {
        computed_at: rfc3339(now.as_millisecond()),
        users: counts.users,
        active_users: counts.active_users,
        mfa_adoption_percent: percent(counts.mfa_users, counts.active_users),
        mfa: MfaPosture {
            enrolled: counts.mfa_users,
            totp: counts.totp_users,
            security_key: counts.security_key_users,
            passkey: counts.passkey_users,
            privileged_users: counts.privileged_users,
            privileged_enrolled: counts.privileged_mfa_users,
            privileged_adoption_percent: percent(counts.privileged_mfa_users, counts.privileged_users),
        },
        stale_account_threshold_days: spec.stale_account_threshold_days,
        stale_accounts: counts.stale_users,
        stale_accounts_with_grants: counts.stale_users_with_grants,
        inactive_users_with_grants: counts.inactive_users_with_grants,
        standing_privileged_grants: counts.standing_privileged_grants,
        pending_access_requests: counts.pending_access_requests,
        scim_sync: counts
            .scim
            .iter()
            .map(|s| ScimSyncPosture {
                identity_provider: s.identity_provider.clone(),
                last_request_time: rfc3339(s.last_request_ms),
                last_error_time: s.last_error_ms.map(rfc3339),
                requests: s.requests,
                errors: s.errors,
                healthy: s.last_error_ms.is_none_or(|error| error < s.last_request_ms),
            })
            .collect(),
        key_rotations: key_rotations(keys, spec, now),
        certificate_expiries: Vec::new(),
    }
}

/// The signing key changes to come, soonest first: keys that start signing
/// or leave the key set, and when the active key is due for rotation.
fn key_rotations(
    keys: &[SigningKeyRecord],
    spec: &OrganizationSpec,
    now: Timestamp,
) -> Vec<KeyRotationPosture> {
    let now_ms = now.as_millisecond();
    let period_ms = spec
        .tokens
        .key_rotation
        .period
        .signed()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(720 * 3_600_000);
    let mut events: Vec<(i64, &str, &str)> = Vec::new();
    for key in keys {
        match key.state {
            SigningKeyState::Next => events.extend(
                key.activates_ms.filter(|at| *at > now_ms).map(|at| (at, "activates", key.kid.as_str())),
            ),
            SigningKeyState::Active => {
                let since = key.activates_ms.unwrap_or(key.created_ms);
                events.push((since.saturating_add(period_ms), "rotation due", key.kid.as_str()));
            }
            SigningKeyState::Retiring => events
                .extend(key.retires_ms.filter(|at| *at > now_ms).map(|at| (at, "retires", key.kid.as_str()))),
        }
    }
    events.sort();
    events
        .into_iter()
        .map(|(at, event, kid)| KeyRotationPosture {
            kid: kid.to_owned(),
            event: event.to_owned(),
            at: rfc3339(at),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PermissionDefinition;
    use crate::store::{ObjectMeta, RoleScope, SigningKeyRecord};

    fn spec(permissions: &[(&str, bool)]) -> OrganizationSpec {
        let mut spec: OrganizationSpec =
            serde_json::from_value(serde_json::json!({ "displayName": "Acme" })).expect("a minimal spec");
        spec.permissions = permissions
            .iter()
            .map(|(name, privileged)| PermissionDefinition {
                name: (*name).to_owned(),
                description: None,
                privileged: *privileged,
            })
            .collect();
        spec
    }

    fn role(name: &str, permissions: &[&str], included: &[&str]) -> RoleRecord {
        RoleRecord {
            meta: ObjectMeta::new(name, "acme", name, 1),
            scope: RoleScope::Organization,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            included_roles: included.iter().map(|r| (*r).to_owned()).collect(),
            spec_json: String::new(),
        }
    }

    #[test]
    fn a_role_is_privileged_through_wildcards_and_included_roles() {
        let spec = spec(&[("iam.manage", true), ("journeys.view", false), ("journeys.publish", false)]);
        let roles = [
            role("admin", &["iam.*"], &[]),
            role("editor", &["journeys.*"], &[]),
            role("lead", &["journeys.view"], &["admin"]),
            role("everything", &["*"], &[]),
        ];
        assert_eq!(privileged_roles(&spec, &roles), ["admin", "everything", "lead"]);
        assert!(privileged_roles(&self::spec(&[("iam.manage", false)]), &roles).is_empty());
    }

    fn key(
        kid: &str,
        state: SigningKeyState,
        created_ms: i64,
        activates_ms: Option<i64>,
        retires_ms: Option<i64>,
    ) -> SigningKeyRecord {
        SigningKeyRecord {
            organization: "acme".into(),
            kid: kid.into(),
            algorithm: "ES256".into(),
            state,
            public_jwk: "{}".into(),
            created_ms,
            activates_ms,
            retires_ms,
        }
    }

    #[test]
    fn key_changes_come_soonest_first_and_sync_health_follows_the_last_request() {
        let day = 24 * 3_600_000_i64;
        let now = Timestamp::from_millisecond(100 * day).unwrap();
        let keys = [
            // Active since day 90: the default period (720h) makes it due on day 120.
            key("active", SigningKeyState::Active, 90 * day, Some(90 * day), None),
            key("next", SigningKeyState::Next, 99 * day, Some(101 * day), None),
            key("old", SigningKeyState::Retiring, 60 * day, Some(60 * day), Some(100 * day + 1)),
            key("gone", SigningKeyState::Retiring, 10 * day, Some(10 * day), Some(50 * day)),
        ];
        let counts = PostureCounts {
            scim: vec![
                crate::store::ScimSyncCounts {
                    identity_provider: "okta".into(),
                    last_request_ms: 99 * day,
                    last_error_ms: Some(99 * day),
                    requests: 10,
                    errors: 1,
                },
                crate::store::ScimSyncCounts {
                    identity_provider: "entra".into(),
                    last_request_ms: 99 * day,
                    last_error_ms: Some(98 * day),
                    requests: 10,
                    errors: 1,
                },
            ],
            ..PostureCounts::default()
        };
        let posture = derive(&counts, &keys, &spec(&[]), now);
        let events: Vec<(&str, &str)> =
            posture.key_rotations.iter().map(|k| (k.kid.as_str(), k.event.as_str())).collect();
        assert_eq!(events, [("old", "retires"), ("next", "activates"), ("active", "rotation due")]);
        assert_eq!(posture.key_rotations[2].at, "1970-05-01T00:00:00Z");
        let health: Vec<bool> = posture.scim_sync.iter().map(|s| s.healthy).collect();
        assert_eq!(health, [false, true], "okta's last request failed; entra's error came before");
        assert_eq!(posture.mfa_adoption_percent, None, "nobody to count");
    }

    #[test]
    fn percentages_round_down_and_are_absent_without_users() {
        assert_eq!(percent(2, 3), Some(66));
        assert_eq!(percent(3, 3), Some(100));
        assert_eq!(percent(0, 0), None);
        assert_eq!(percent(1, 10_000), Some(0));
    }
}
