//! The sign-in throttle's counters (migration 0017, `login_throttle`): one
//! row per account, per source address and per source's passkey-ceremony
//! starts, in one organization, so that every token-service replica counts
//! against the same ones (N replicas in memory were N times the guesses).
//! The rules are [`crate::token::throttle`]'s; this module only holds the
//! rows and the transactions around them.
//!
//! ```text
//!  begin_counted(counters, now)   any locked as last committed? ─► Throttled (a read, no write)
//!                                 else one write transaction:
//!    for each counter, in key order: INSERT … ON CONFLICT DO UPDATE … RETURNING   (creates and locks the row)
//!    any locked at now? ─► rolled back: Throttled { longest wait }
//!    else each counted (UPDATE failures, last_failure_ms, expires_ms) ─► COMMIT: Allowed
//!  take_back(counters)           UPDATE … failures - 1 (an attempt that checked nothing, or the right secret)
//!  clear(counter)                DELETE (the right password clears its account)
//! ```
//!
//! Concurrent attempts on one counter queue on its row lock (PostgreSQL) or
//! the writers' turn (SQLite), so each sees the ones begun before it: a
//! burst is throttled exactly as a sequence is. Rows are locked in key order,
//! so two attempts never wait for each other in a cycle. Nothing is logged
//! on the change feed: nobody follows these rows.

use std::future::Future;

use jiff::Timestamp;

use super::error::query_error;
use super::{Result, Store, column};
use crate::token::throttle::{Counter, ThrottleRule, ThrottleVerdict};

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThrottleScope {
    /// Failed secrets of one account (its user id, or what was typed).
    Account,
    /// Failed secrets from one source address.
    Source,
    /// Passkey sign-ins started from one source address.
    CeremonyStarts,
}

impl ThrottleScope {
    fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::Account => "account",
            ThrottleScope::Source => "source",
            ThrottleScope::CeremonyStarts => "ceremony-starts",
        }
    }
}

/// One counter and the rule it is throttled by.
#[derive(Clone, Debug)]
pub struct ThrottleCounter<'a> {
    pub scope: ThrottleScope,
    /// The organization's namespace.
    pub organization: &'a str,
    /// The account or the source address.
    pub subject: String,
    pub rule: &'a ThrottleRule,
}

impl ThrottleCounter<'_> {
    fn key(&self) -> String {
        format!("{}\n{}\n{}", self.scope.as_str(), self.organization, self.subject)
    }
}

/// The sign-in throttle's counters.
pub trait ThrottleStore {
    /// Checks every counter at `now` and, when none is locked, counts one
    /// failure against each, in one transaction; when one is, counts nothing
    /// and says how long the longest lockout lasts.
    fn begin_counted(
        &self,
        counters: &[ThrottleCounter<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<ThrottleVerdict>> + Send;

    /// Takes one count back from each counter (never below zero).
    fn take_back(&self, counters: &[ThrottleCounter<'_>]) -> impl Future<Output = Result<()>> + Send;

    /// Forgets `cleared` and takes one count back from each of `taken_back`,
    /// in one transaction (a right password: its account starts again, its
    /// source keeps its earlier failures).
    fn clear_and_take_back(
        &self,
        cleared: &ThrottleCounter<'_>,
        taken_back: &[ThrottleCounter<'_>],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The failures a counter holds now (0 when it has none): for tests and monitoring.
    fn throttle_failures(&self, counter: &ThrottleCounter<'_>) -> impl Future<Output = Result<u32>> + Send;
}

const T: &str = "login_throttle";

impl ThrottleStore for Store {
    async fn begin_counted(
        &self,
        counters: &[ThrottleCounter<'_>],
        now: Timestamp,
    ) -> Result<ThrottleVerdict> {
        let mut ordered: Vec<(String, &ThrottleCounter<'_>)> =
            counters.iter().map(|c| (c.key(), c)).collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        ordered.dedup_by(|a, b| a.0 == b.0);
        // A locked counter is refused on a read, without a write
        // transaction: a flood at a locked account or source costs no
        // writes (nor, on SQLite, the writers' turn refreshes wait for).
        for (key, counter) in &ordered {
            let held = self.throttle_counter(key).await?;
            if let Some(retry_after) = held.and_then(|held| counter.rule.locked_for(&held, now)) {
                return Ok(ThrottleVerdict::Throttled { retry_after });
            }
        }
        let now_ms = now.as_millisecond();
        let mut tx = self.begin_unlogged_write().await?;
        let mut held = Vec::with_capacity(ordered.len());
        for (key, counter) in &ordered {
            // The no-op update takes the row lock (PostgreSQL) until commit,
            // and returns the latest committed counts, not a snapshot's.
            let row = sqlx::query(
                "INSERT INTO login_throttle (counter_key, organization, failures, last_failure_ms, expires_ms) \
                 VALUES ($1, $2, 0, $3, $3) \
                 ON CONFLICT (counter_key) DO UPDATE SET failures = login_throttle.failures \
                 RETURNING failures, last_failure_ms",
            )
            .bind(key.as_str())
            .bind(counter.organization)
            .bind(now_ms)
            .fetch_one(tx.conn())
            .await
            .map_err(query_error("hold a sign-in throttle counter"))?;
            held.push(counter_of(&row, Some(now))?);
        }
        let locked =
            ordered.iter().zip(&held).filter_map(|((_, c), held)| c.rule.locked_for(held, now)).max();
        if let Some(retry_after) = locked {
            // Dropped: rolled back, nothing counted (and no empty row made).
            return Ok(ThrottleVerdict::Throttled { retry_after });
        }
        for ((key, counter), held) in ordered.iter().zip(&held) {
            let counted = counter.rule.counted(*held, now);
            let expires_ms = counter.rule.forgotten_at(&counted).as_millisecond();
            sqlx::query(
                "UPDATE login_throttle SET failures = $2, last_failure_ms = $3, expires_ms = $4 \
                 WHERE counter_key = $1",
            )
            .bind(key.as_str())
            .bind(i64::from(counted.failures))
            .bind(counted.last_failure.as_millisecond())
            .bind(expires_ms)
            .execute(tx.conn())
            .await
            .map_err(query_error("count a sign-in attempt"))?;
        }
        tx.commit().await?;
        Ok(ThrottleVerdict::Allowed)
    }

    async fn take_back(&self, counters: &[ThrottleCounter<'_>]) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        for counter in counters {
            take_back_in(&mut tx, counter).await?;
        }
        tx.commit().await
    }

    async fn clear_and_take_back(
        &self,
        cleared: &ThrottleCounter<'_>,
        taken_back: &[ThrottleCounter<'_>],
    ) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        sqlx::query("DELETE FROM login_throttle WHERE counter_key = $1")
            .bind(cleared.key())
            .execute(tx.conn())
            .await
            .map_err(query_error("clear a sign-in throttle counter"))?;
        for counter in taken_back {
            take_back_in(&mut tx, counter).await?;
        }
        tx.commit().await
    }

    async fn throttle_failures(&self, counter: &ThrottleCounter<'_>) -> Result<u32> {
        Ok(self.throttle_counter(&counter.key()).await?.map_or(0, |held| held.failures))
    }
}

impl Store {
    /// A counter as last committed, without locking it.
    async fn throttle_counter(&self, key: &str) -> Result<Option<Counter>> {
        let row = sqlx::query("SELECT failures, last_failure_ms FROM login_throttle WHERE counter_key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read a sign-in throttle counter"))?;
        row.map(|row| counter_of(&row, None)).transpose()
    }
}

/// The counter in `row` (`failures`, `last_failure_ms`); a time out of range is `fallback`'s, or the epoch.
fn counter_of(row: &sqlx::any::AnyRow, fallback: Option<Timestamp>) -> Result<Counter> {
    let failures: i64 = column(row, T, "failures")?;
    let last_failure_ms: i64 = column(row, T, "last_failure_ms")?;
    Ok(Counter {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        last_failure: Timestamp::from_millisecond(last_failure_ms)
            .unwrap_or(fallback.unwrap_or(Timestamp::UNIX_EPOCH)),
    })
}

async fn take_back_in(tx: &mut super::UnloggedWriteTx<'_>, counter: &ThrottleCounter<'_>) -> Result<()> {
    sqlx::query("UPDATE login_throttle SET failures = failures - 1 WHERE counter_key = $1 AND failures > 0")
        .bind(counter.key())
        .execute(tx.conn())
        .await
        .map_err(query_error("take back a sign-in attempt"))?;
    Ok(())
}
