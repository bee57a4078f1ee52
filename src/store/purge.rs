//! Purging what the token service leaves behind once it can no longer
//! matter: authorization codes, refresh-token families (with their tokens),
//! revoked access tokens' `jti`s, sign-in sessions, WebAuthn ceremonies and
//! sign-in throttle counters whose expiry lies before a given time. Without
//! it these tables grow with every sign-in, forever.
//!
//! Rows go in batches of at most `batch`, each its own short write
//! transaction (on SQLite each takes the writers' turn, so sign-ins and
//! refreshes get theirs in between): a purge never holds locks on a large
//! part of a table. Nobody follows these rows, so nothing is logged.
//!
//! [`tidy`] is one round of the store's housekeeping, with this purge, old
//! single sign-on counts and each organization's audit retention (unless under legal hold): the
//! leading operator runs it in a cluster (`controller::housekeeping`), the
//! standalone server on its own store. Rows are kept [`KEPT_AFTER_EXPIRY`]
//! past their expiry: a redeemed code that comes back a while after it
//! expired still revokes what it issued (RFC 6749 §4.1.2).

use std::future::Future;
use std::time::Duration;

use sqlx::AssertSqlSafe;

use super::audit::AuditStore as _;
use super::changes::ChangeFeed as _;
use super::desired::DesiredStateStore as _;
use super::error::query_error;
use super::federation::FederationStore as _;
use super::{Result, Store, column};
use crate::error_chain::error_chain;

/// How long an expired code, family, revoked `jti`, session or ceremony is kept.
pub const KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Change log entries are kept this long: a follower further behind reloads
/// its whole index instead.
pub const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(3600);
/// Tombstones only have to outlive a write already in flight when the object went.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Rows removed per transaction.
pub const PURGE_BATCH: u32 = 500;
/// Single sign-on counts are read for the last 24 hours; kept twice that.
pub const SSO_COUNTS_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// One round of housekeeping at `now_ms`: prune the change log, purge old
/// tombstones and expired token-service rows. Failures are logged; the next
/// round tries again.
pub async fn tidy(store: &Store, now_ms: i64) {
    let before = |kept: Duration| now_ms.saturating_sub(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX));
    match store.prune_change_log(before(CHANGE_LOG_RETENTION)).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned the change log"),
        Err(e) => tracing::warn!("could not prune the change log: {}", error_chain(&e)),
    }
    match store.purge_tombstones(before(TOMBSTONE_RETENTION)).await {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "purged old tombstones"),
        Err(e) => tracing::warn!("could not purge tombstones: {}", error_chain(&e)),
    }
    match store.purge_expired(before(KEPT_AFTER_EXPIRY), PURGE_BATCH).await {
        Ok(purged) if purged.total() == 0 => {}
        Ok(purged) => {
            tracing::info!(?purged, "purged expired codes, refresh tokens, revoked tokens, sessions")
        }
        Err(e) => tracing::warn!("could not purge expired grants: {}", error_chain(&e)),
    }
    match store.forget_sso_counts(before(SSO_COUNTS_RETENTION)).await {
        Ok(0) => {}
        Ok(forgotten) => tracing::info!(forgotten, "forgot old single sign-on counts"),
        Err(e) => tracing::warn!("could not forget old single sign-on counts: {}", error_chain(&e)),
    }
    match store.apply_audit_retention(now_ms).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "deleted audit events past their organization's retention"),
        Err(e) => tracing::warn!("could not apply the audit retention: {}", error_chain(&e)),
    }
}

/// How many rows one purge removed, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub authorization_codes: u64,
    pub refresh_families: u64,
    pub revoked_access_tokens: u64,
    pub sessions: u64,
    pub ceremonies: u64,
    /// Sign-in throttle counters idle long enough to be forgotten.
    pub throttle_counters: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.authorization_codes
            + self.refresh_families
            + self.revoked_access_tokens
            + self.sessions
            + self.ceremonies
            + self.throttle_counters
    }
}

/// Removing expired token-service rows.
pub trait PurgeStore {
    /// Removes every code, refresh-token family, revoked `jti`, session and
    /// ceremony that expired before `before_ms`, at most `batch` rows per
    /// transaction.
    fn purge_expired(&self, before_ms: i64, batch: u32) -> impl Future<Output = Result<Purged>> + Send;
}

/// A table whose rows carry their own expiry, keyed by one column.
struct Expiring {
    table: &'static str,
    key: &'static str,
    what: &'static str,
}

const CODES: Expiring =
    Expiring { table: "authorization_codes", key: "code_hash", what: "purge authorization codes" };
const REVOKED: Expiring =
    Expiring { table: "revoked_access_tokens", key: "jti", what: "purge revoked access tokens" };
const SESSIONS: Expiring = Expiring { table: "sessions", key: "id", what: "purge sessions" };
const THROTTLE_COUNTERS: Expiring =
    Expiring { table: "login_throttle", key: "counter_key", what: "purge sign-in throttle counters" };
const CEREMONIES: Expiring =
    Expiring { table: "webauthn_ceremonies", key: "id", what: "purge WebAuthn ceremonies" };

impl PurgeStore for Store {
    async fn purge_expired(&self, before_ms: i64, batch: u32) -> Result<Purged> {
        let batch = i64::from(batch.max(1));
        Ok(Purged {
            authorization_codes: self.purge_table(&CODES, before_ms, batch).await?,
            refresh_families: self.purge_refresh_families(before_ms, batch).await?,
            revoked_access_tokens: self.purge_table(&REVOKED, before_ms, batch).await?,
            sessions: self.purge_table(&SESSIONS, before_ms, batch).await?,
            ceremonies: self.purge_table(&CEREMONIES, before_ms, batch).await?,
            throttle_counters: self.purge_table(&THROTTLE_COUNTERS, before_ms, batch).await?,
        })
    }
}

impl Store {
    async fn purge_table(&self, expiring: &Expiring, before_ms: i64, batch: i64) -> Result<u64> {
        let Expiring { table, key, what } = expiring;
        let statement = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE expires_ms < $1 LIMIT $2)"
        );
        let mut purged = 0;
        loop {
            let mut tx = self.begin_unlogged_write().await?;
            let done = sqlx::query(AssertSqlSafe(statement.as_str()))
                .bind(before_ms)
                .bind(batch)
                .execute(tx.conn())
                .await
                .map_err(query_error(what))?
                .rows_affected();
            tx.commit().await?;
            purged += done;
            if done < batch.unsigned_abs() {
                return Ok(purged);
            }
        }
    }

    /// A family and its tokens go together: ids first, then both tables.
    async fn purge_refresh_families(&self, before_ms: i64, batch: i64) -> Result<u64> {
        let mut purged = 0;
        loop {
            let mut tx = self.begin_unlogged_write().await?;
            let rows = sqlx::query(
                "SELECT family_id FROM refresh_token_families WHERE expires_ms < $1 ORDER BY expires_ms LIMIT $2",
            )
            .bind(before_ms)
            .bind(batch)
            .fetch_all(tx.conn())
            .await
            .map_err(query_error("find expired refresh-token families"))?;
            let ids: Vec<String> = rows
                .iter()
                .map(|row| column(row, "refresh_token_families", "family_id"))
                .collect::<Result<_>>()?;
            if ids.is_empty() {
                return Ok(purged);
            }
            let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let list = placeholders.join(", ");
            for (table, what) in [
                ("refresh_tokens", "purge refresh tokens"),
                ("refresh_token_families", "purge refresh-token families"),
            ] {
                let statement = format!("DELETE FROM {table} WHERE family_id IN ({list})");
                let mut query = sqlx::query(AssertSqlSafe(statement));
                for id in &ids {
                    query = query.bind(id.as_str());
                }
                query.execute(tx.conn()).await.map_err(query_error(what))?;
            }
            tx.commit().await?;
            purged += ids.len() as u64;
            if (ids.len() as i64) < batch {
                return Ok(purged);
            }
        }
    }
}
