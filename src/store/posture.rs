//! The compliance posture's counts, read in one snapshot by a few aggregate
//! queries: the database counts, no user is loaded into memory. Which roles
//! are privileged is decided by the caller (role composition lives in the
//! access core) and passed in as role names.
//!
//! ```text
//!  users ─┬─ mfa_enrolments (totp, webauthn) ┐
//!         ├─ webauthn_credentials (passkey, security-key) ├─► one row of counts per organization
//!         └─ role_assignments (User) ∪ memberships ── groups ── role_assignments (Group)
//!  role_assignments (privileged, no expiry) ─► standing privileged grants
//!  scim_sync_health ─► one row per IdentityProvider
//! ```

use std::future::Future;

use sqlx::AssertSqlSafe;

use super::error::query_error;
use super::{Result, Store, column};

/// What the posture asks of an organization's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostureQuery<'a> {
    /// The organization (namespace).
    pub organization: &'a str,
    /// Unix milliseconds: expired assignments hold nothing from here on.
    pub now_ms: i64,
    /// An active user whose last sign-in (or, never signed in, creation) is
    /// before this is stale.
    pub stale_before_ms: i64,
    /// Roles granting a privileged permission, included roles expanded.
    pub privileged_roles: &'a [String],
}

/// The counts of one organization. Users are counted once each, whatever
/// the number of their factors or grants; "grants" are unexpired role
/// assignments, to the user directly or to a group it is a member of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostureCounts {
    pub users: u64,
    pub active_users: u64,
    /// Active users with at least one second factor, and by kind of factor.
    pub mfa_users: u64,
    pub totp_users: u64,
    pub security_key_users: u64,
    pub passkey_users: u64,
    /// Active users holding a privileged role, and those of them with a second factor.
    pub privileged_users: u64,
    pub privileged_mfa_users: u64,
    pub stale_users: u64,
    pub stale_users_with_grants: u64,
    pub inactive_users_with_grants: u64,
    /// Unexpired assignments of a privileged role with no expiry (any principal).
    pub standing_privileged_grants: u64,
    /// Access requests waiting for a decision.
    pub pending_access_requests: u64,
    pub scim: Vec<ScimSyncCounts>,
}

/// SCIM sync health of one IdentityProvider, as the SCIM service recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScimSyncCounts {
    pub identity_provider: String,
    pub last_request_ms: i64,
    pub last_error_ms: Option<i64>,
    pub requests: u64,
    pub errors: u64,
}

/// The posture's read; see the [module docs](self).
pub trait PostureStore {
    fn posture_counts(&self, query: &PostureQuery<'_>) -> impl Future<Output = Result<PostureCounts>> + Send;
}

/// `role IN ($first, …)` for `count` roles bound from `$first`; a condition
/// that holds for no row when there are none.
fn role_in(count: usize, first: usize) -> String {
    if count == 0 {
        return "1 = 0".to_owned();
    }
    let placeholders: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    format!("ra.role IN ({})", placeholders.join(", "))
}

fn count(row: &sqlx::any::AnyRow, table: &'static str, name: &'static str) -> Result<u64> {
    Ok(u64::try_from(column::<i64>(row, table, name)?).unwrap_or(0))
}

impl PostureStore for Store {
    async fn posture_counts(&self, query: &PostureQuery<'_>) -> Result<PostureCounts> {
        let privileged = role_in(query.privileged_roles.len(), 4);
        // Names are matched as the access index keys them: user and group
        // names without regard to case (the store keeps their lowercase key).
        let users_sql = format!(
            "WITH totp AS (\
               SELECT DISTINCT e.user_id FROM mfa_enrolments e JOIN users u ON u.id = e.user_id \
               WHERE u.organization = $1 AND e.kind = 'totp'), \
             security_keys AS (\
               SELECT DISTINCT k.user_id FROM (\
                 SELECT e.user_id FROM mfa_enrolments e JOIN users u ON u.id = e.user_id \
                 WHERE u.organization = $1 AND e.kind = 'webauthn' \
                 UNION ALL SELECT w.user_id FROM webauthn_credentials w \
                 WHERE w.organization = $1 AND w.kind = 'security-key') k), \
             passkeys AS (\
               SELECT DISTINCT w.user_id FROM webauthn_credentials w \
               WHERE w.organization = $1 AND w.kind = 'passkey'), \
             held AS (\
               SELECT u.id AS user_id, CASE WHEN {privileged} THEN 1 ELSE 0 END AS privileged \
               FROM users u JOIN role_assignments ra ON ra.namespace = u.organization \
                 AND ra.principal_kind = 'User' AND LOWER(ra.principal_name) = u.user_name_key \
               WHERE u.organization = $1 AND (ra.expires_at_ms IS NULL OR ra.expires_at_ms > $2) \
               UNION ALL \
               SELECT m.user_id AS user_id, CASE WHEN {privileged} THEN 1 ELSE 0 END AS privileged \
               FROM groups g JOIN memberships m ON m.group_id = g.id \
                 JOIN role_assignments ra ON ra.namespace = g.organization \
                 AND ra.principal_kind = 'Group' AND LOWER(ra.principal_name) = g.display_name_key \
               WHERE g.organization = $1 AND (ra.expires_at_ms IS NULL OR ra.expires_at_ms > $2)), \
             holders AS (SELECT user_id, MAX(privileged) AS privileged FROM held GROUP BY user_id), \
             flags AS (\
               SELECT u.active AS active, \
                 CASE WHEN t.user_id IS NULL THEN 0 ELSE 1 END AS totp, \
                 CASE WHEN k.user_id IS NULL THEN 0 ELSE 1 END AS security_key, \
                 CASE WHEN p.user_id IS NULL THEN 0 ELSE 1 END AS passkey, \
                 CASE WHEN t.user_id IS NULL AND k.user_id IS NULL AND p.user_id IS NULL THEN 0 ELSE 1 END AS mfa, \
                 CASE WHEN h.user_id IS NULL THEN 0 ELSE 1 END AS holds, \
                 COALESCE(h.privileged, 0) AS privileged, \
                 CASE WHEN COALESCE(u.last_login_ms, u.created_ms) < $3 THEN 1 ELSE 0 END AS stale \
               FROM users u \
               LEFT JOIN totp t ON t.user_id = u.id \
               LEFT JOIN security_keys k ON k.user_id = u.id \
               LEFT JOIN passkeys p ON p.user_id = u.id \
               LEFT JOIN holders h ON h.user_id = u.id \
               WHERE u.organization = $1) \
             SELECT COUNT(*) AS users, \
               COUNT(CASE WHEN active THEN 1 END) AS active_users, \
               COUNT(CASE WHEN active AND mfa = 1 THEN 1 END) AS mfa_users, \
               COUNT(CASE WHEN active AND totp = 1 THEN 1 END) AS totp_users, \
               COUNT(CASE WHEN active AND security_key = 1 THEN 1 END) AS security_key_users, \
               COUNT(CASE WHEN active AND passkey = 1 THEN 1 END) AS passkey_users, \
               COUNT(CASE WHEN active AND privileged = 1 THEN 1 END) AS privileged_users, \
               COUNT(CASE WHEN active AND privileged = 1 AND mfa = 1 THEN 1 END) AS privileged_mfa_users, \
               COUNT(CASE WHEN active AND stale = 1 THEN 1 END) AS stale_users, \
               COUNT(CASE WHEN active AND stale = 1 AND holds = 1 THEN 1 END) AS stale_users_with_grants, \
               COUNT(CASE WHEN NOT active AND holds = 1 THEN 1 END) AS inactive_users_with_grants \
             FROM flags"
        );
        let mut tx = self.begin_read().await?;
        // Only placeholders are formatted in; every value is bound.
        let mut users = sqlx::query(AssertSqlSafe(users_sql))
            .bind(query.organization)
            .bind(query.now_ms)
            .bind(query.stale_before_ms);
        for role in query.privileged_roles {
            users = users.bind(role.as_str());
        }
        let row = users.fetch_one(&mut *tx).await.map_err(query_error("count the posture's users"))?;
        const U: &str = "users";
        let mut counts = PostureCounts {
            users: count(&row, U, "users")?,
            active_users: count(&row, U, "active_users")?,
            mfa_users: count(&row, U, "mfa_users")?,
            totp_users: count(&row, U, "totp_users")?,
            security_key_users: count(&row, U, "security_key_users")?,
            passkey_users: count(&row, U, "passkey_users")?,
            privileged_users: count(&row, U, "privileged_users")?,
            privileged_mfa_users: count(&row, U, "privileged_mfa_users")?,
            stale_users: count(&row, U, "stale_users")?,
            stale_users_with_grants: count(&row, U, "stale_users_with_grants")?,
            inactive_users_with_grants: count(&row, U, "inactive_users_with_grants")?,
            ..PostureCounts::default()
        };

        let standing_sql = format!(
            "SELECT COUNT(*) AS standing FROM role_assignments ra \
             WHERE ra.namespace = $1 AND ra.expires_at_ms IS NULL AND {}",
            role_in(query.privileged_roles.len(), 2)
        );
        let mut standing = sqlx::query(AssertSqlSafe(standing_sql)).bind(query.organization);
        for role in query.privileged_roles {
            standing = standing.bind(role.as_str());
        }
        let row =
            standing.fetch_one(&mut *tx).await.map_err(query_error("count standing privileged grants"))?;
        counts.standing_privileged_grants = count(&row, "role_assignments", "standing")?;

        let row = sqlx::query(
            "SELECT COUNT(*) AS pending FROM access_requests WHERE organization = $1 AND status = 'pending'",
        )
        .bind(query.organization)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("count pending access requests"))?;
        counts.pending_access_requests = count(&row, "access_requests", "pending")?;

        let rows = sqlx::query(
            "SELECT identity_provider, last_request_ms, last_error_ms, request_count, error_count \
             FROM scim_sync_health WHERE organization = $1 ORDER BY identity_provider",
        )
        .bind(query.organization)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("read SCIM sync health"))?;
        const S: &str = "scim_sync_health";
        for row in &rows {
            counts.scim.push(ScimSyncCounts {
                identity_provider: column(row, S, "identity_provider")?,
                last_request_ms: column(row, S, "last_request_ms")?,
                last_error_ms: column(row, S, "last_error_ms")?,
                requests: count(row, S, "request_count")?,
                errors: count(row, S, "error_count")?,
            });
        }
        Ok(counts)
    }
}
