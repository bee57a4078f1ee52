//! What changed, and who is told.
//!
//! Every write transaction records the [`Change`]s it makes and, as its last
//! step, appends one `change_log` row. Then:
//!
//! - PostgreSQL: right after commit the writer calls `pg_notify` on its own
//!   (not in the writing transaction: a notifying transaction holds a
//!   server-wide lock until its commit is flushed, which would queue writers);
//!   one LISTEN connection per [`Store`] feeds the subscribers. A writer that
//!   dies between its commit and the notice delays the change (until the
//!   next notice, or a follower's periodic look at the log), and loses
//!   nothing.
//! - SQLite: the store broadcasts the notice in-process right after commit.
//!
//! A subscriber that may have missed notices (it fell behind, or the LISTEN
//! connection dropped) gets [`ChangeEvent::Missed`] and catches up with
//! [`ChangeFeed::changes_since`]: the log is the source of truth, the
//! notifications only the doorbell.
//!
//! Positions (`seq`). What readers rely on: once they have read up to
//! position N, no commit at or below N appears later, or they would skip it
//! for good. A counter row taken under lock gives that (sequence order is
//! commit order) but makes every writer wait for the one before it to flush
//! its commit to disk: on a durable PostgreSQL, writers queue instead of
//! committing together. A plain sequence does not lock but numbers land out
//! of commit order. So, on PostgreSQL, a change's position is its
//! transaction id (plus the constant `change_feed.xid_offset`, which puts it
//! above the counter's old positions), taken without any lock, and readers
//! only trust positions below the *horizon*: the oldest transaction still
//! running in their snapshot (`pg_snapshot_xmin`), under which nothing can
//! commit any more. A reader may also apply the committed changes it sees
//! above the horizon (applying a change twice is harmless; the follower does,
//! so its index is exactly its snapshot of the store), but it resumes from
//! the horizon. This is how transactional outboxes are read; its cost is that
//! a long-running writer holds back the horizon, and so the feed, until it
//! ends. On SQLite writers take turns anyway: positions still come from
//! `change_counter`, and the horizon is simply its value.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::postgres::PgListener;
use sqlx::{Any, AssertSqlSafe, Transaction};
use tokio::sync::{MutexGuard, broadcast};

use super::error::query_error;
use super::records::ResourceKind;
use super::{Backend, Result, Store, StoreError, column, now_ms};

/// The PostgreSQL NOTIFY channel.
const CHANNEL: &str = "portcullis_changes";

/// One thing that changed. It names what changed, not how: readers fetch the
/// current rows, so applying a change twice or late is harmless.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Change {
    /// A desired-state object was created, updated or deleted.
    Resource { kind: ResourceKind, namespace: String, name: String, uid: String },
    /// A signing key's metadata was written or removed.
    SigningKey { organization: String, kid: String },
    /// A user, its emails or its second factors changed, or it was deleted
    /// (which also ends its memberships).
    User { organization: String, id: String },
    /// A group was created, renamed or deleted (deletion ends its memberships).
    Group { organization: String, id: String },
    /// One user joined or left one group.
    Membership { organization: String, group_id: String, user_id: String },
    /// A group's members were replaced as a whole.
    GroupMembers { organization: String, group_id: String },
}

/// The changes of one committed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    /// Position in the change log: unique, not consecutive, and only read
    /// back below the horizon (see the module documentation).
    pub seq: i64,
    pub organization: String,
    pub changes: Vec<Change>,
}

/// What a [`ChangeSubscription`] receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A transaction committed these changes.
    Committed(Arc<ChangeNotice>),
    /// Notices may have been lost (the subscriber fell behind, or the
    /// PostgreSQL LISTEN connection was re-established): catch up from the
    /// change log with [`ChangeFeed::changes_since`].
    Missed,
}

/// Change notices, as they commit.
pub struct ChangeSubscription {
    events: broadcast::Receiver<ChangeEvent>,
}

impl ChangeSubscription {
    /// The next event; `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<ChangeEvent> {
        match self.events.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ChangeEvent::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is already waiting.
    pub fn try_recv(&mut self) -> Option<ChangeEvent> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(ChangeEvent::Missed),
            Err(_) => None,
        }
    }
}

/// Being told what changed.
pub trait ChangeFeed {
    /// Subscribes to notices of transactions committed from now on. On
    /// PostgreSQL this returns once the LISTEN is in place, so a subscriber
    /// that subscribes and then reads misses nothing.
    fn subscribe(&self) -> impl Future<Output = Result<ChangeSubscription>> + Send;

    /// The logged notices after `after_seq`, of one organization or of all,
    /// in order, up to the horizon: none will ever appear between `after_seq`
    /// and the last one returned, so that is where to resume.
    fn changes_since(
        &self,
        organization: Option<&str>,
        after_seq: i64,
    ) -> impl Future<Output = Result<Vec<ChangeNotice>>> + Send;

    /// The position of the last committed change: a follower whose `seq`
    /// has reached it reflects every change committed before the call. Not a
    /// place to resume reading from (changes may still commit below it on
    /// PostgreSQL); [`ChangeFeed::changes_since`] says where that is.
    fn current_seq(&self) -> impl Future<Output = Result<i64>> + Send;

    /// The position at or below which every change has committed (or never
    /// will): where to start reading the log with
    /// [`ChangeFeed::changes_since`] to miss nothing from now on.
    fn horizon(&self) -> impl Future<Output = Result<i64>> + Send;

    /// Drops log entries committed before `before_ms`. A follower that was
    /// further behind reloads everything.
    fn prune_change_log(&self, before_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

impl ChangeFeed for Store {
    async fn subscribe(&self) -> Result<ChangeSubscription> {
        let events = self.inner.events.subscribe();
        if self.inner.backend == Backend::Postgres {
            self.inner.listener.get_or_try_init(|| start_listener(self)).await?;
        }
        Ok(ChangeSubscription { events })
    }

    async fn changes_since(&self, organization: Option<&str>, after_seq: i64) -> Result<Vec<ChangeNotice>> {
        // One read snapshot, so the horizon is that of the rows read.
        let mut tx = self.begin_read().await?;
        let horizon = read_horizon(&mut tx, self.inner.backend).await?;
        read_log(&mut tx, organization, after_seq, horizon).await
    }

    async fn current_seq(&self) -> Result<i64> {
        let mut tx = self.begin_read().await?;
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM change_log")
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error("read the change log"))?;
        let logged: Option<i64> = column(&row, "change_log", "seq")?;
        Ok(logged.unwrap_or(0).max(pruned_through(&mut tx).await?))
    }

    async fn horizon(&self) -> Result<i64> {
        let mut tx = self.begin_read().await?;
        read_horizon(&mut tx, self.inner.backend).await
    }

    async fn prune_change_log(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.begin_unlogged_write().await?;
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM change_log WHERE committed_ms < $1")
            .bind(before_ms)
            .fetch_one(tx.conn())
            .await
            .map_err(query_error("prune the change log"))?;
        let Some(through) = column::<Option<i64>>(&row, "change_log", "seq")? else {
            return Ok(0);
        };
        let done = sqlx::query("DELETE FROM change_log WHERE seq <= $1 AND committed_ms < $2")
            .bind(through)
            .bind(before_ms)
            .execute(tx.conn())
            .await
            .map_err(query_error("prune the change log"))?;
        // Readers behind this point can no longer catch up from the log.
        sqlx::query(
            "UPDATE change_feed SET pruned_through = CASE WHEN pruned_through > $1 THEN pruned_through ELSE $1 END \
             WHERE id = 1",
        )
        .bind(through)
        .execute(tx.conn())
        .await
        .map_err(query_error("prune the change log"))?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// The position below which no change can commit any more, as of the
/// snapshot `conn` reads (see the module documentation).
pub(in crate::store) async fn read_horizon(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<i64> {
    let query = match backend {
        Backend::Sqlite => "SELECT seq FROM change_counter WHERE id = 1",
        Backend::Postgres => {
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + xid_offset - 1 AS seq \
             FROM change_feed WHERE id = 1"
        }
    };
    let row = sqlx::query(query).fetch_one(conn).await.map_err(query_error("read the change horizon"))?;
    column(&row, "change_feed", "seq")
}

/// The highest position pruned from the log: a reader behind it reloads.
pub(in crate::store) async fn pruned_through(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    let row = sqlx::query("SELECT pruned_through FROM change_feed WHERE id = 1")
        .fetch_one(conn)
        .await
        .map_err(query_error("read the change feed"))?;
    column(&row, "change_feed", "pruned_through")
}

/// Notices with `after < seq <= up_to`, oldest first.
pub(in crate::store) async fn read_log(
    conn: &mut sqlx::AnyConnection,
    organization: Option<&str>,
    after: i64,
    up_to: i64,
) -> Result<Vec<ChangeNotice>> {
    let rows =
        match organization {
            Some(organization) => {
                sqlx::query(
                    "SELECT seq, organization, changes FROM change_log \
                 WHERE organization = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                )
                .bind(organization.to_owned())
                .bind(after)
                .bind(up_to)
                .fetch_all(conn)
                .await
            }
            None => sqlx::query(
                "SELECT seq, organization, changes FROM change_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(after)
            .bind(up_to)
            .fetch_all(conn)
            .await,
        }
        .map_err(query_error("read the change log"))?;
    rows.iter().map(notice_from_row).collect()
}

fn notice_from_row(row: &AnyRow) -> Result<ChangeNotice> {
    let changes: String = column(row, "change_log", "changes")?;
    Ok(ChangeNotice {
        seq: column(row, "change_log", "seq")?,
        organization: column(row, "change_log", "organization")?,
        changes: serde_json::from_str(&changes).map_err(|e| StoreError::Corrupt {
            table: "change_log",
            column: "changes",
            source: Box::new(e),
        })?,
    })
}

/// A statement with its parameters bound, not yet run.
pub(in crate::store) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// A write transaction and the changes it has made so far.
pub(in crate::store) struct WriteTx<'s> {
    store: &'s Store,
    tx: Transaction<'static, Any>,
    /// Held until the notice is published (SQLite only).
    turn: Option<MutexGuard<'s, ()>>,
    organization: String,
    changes: Vec<Change>,
    /// Whether an audit event was appended (the sealer is woken at commit).
    audited: bool,
}

impl<'s> WriteTx<'s> {
    pub(in crate::store) fn new(
        store: &'s Store,
        tx: Transaction<'static, Any>,
        turn: Option<MutexGuard<'s, ()>>,
        organization: &str,
    ) -> Self {
        Self { store, tx, turn, organization: organization.to_owned(), changes: Vec::new(), audited: false }
    }

    pub(in crate::store) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Runs one statement; how many rows it touched.
    pub(in crate::store) async fn execute(
        &mut self,
        query: AnyQuery<'_>,
        operation: &'static str,
    ) -> Result<u64> {
        Ok(query.execute(&mut *self.tx).await.map_err(query_error(operation))?.rows_affected())
    }

    pub(in crate::store) fn record(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// Appends the audit event of `entry` to this transaction: committed
    /// with the write it records, or not at all.
    pub(in crate::store) async fn audit(&mut self, entry: crate::audit::AuditEntry) -> Result<()> {
        let context = self.store.audit_context();
        super::audit::append_in(&mut self.tx, &context, &self.organization, entry).await?;
        self.audited = true;
        Ok(())
    }

    /// Appends `entry` as `context` rather than the store handle's actor:
    /// for a write whose actor exists only once it is done (an accepted
    /// invitation's new user).
    pub(in crate::store) async fn audit_as(
        &mut self,
        context: &crate::audit::AuditContext,
        entry: crate::audit::AuditEntry,
    ) -> Result<()> {
        super::audit::append_in(&mut self.tx, context, &self.organization, entry).await?;
        self.audited = true;
        Ok(())
    }

    /// Commits; returns the change's sequence number, or `None` if the
    /// transaction changed nothing (nothing is logged or announced then).
    pub(in crate::store) async fn commit(mut self) -> Result<Option<i64>> {
        if self.changes.is_empty() {
            self.tx.commit().await.map_err(query_error("commit"))?;
            if self.audited {
                self.store.wake_sealer();
            }
            return Ok(None);
        }
        let changes = serde_json::to_string(&self.changes).map_err(|e| StoreError::Corrupt {
            table: "change_log",
            column: "changes",
            source: Box::new(e),
        })?;
        let seq = append_to_log(&mut self.tx, self.store.inner.backend, &self.organization, changes).await?;
        self.tx.commit().await.map_err(query_error("commit"))?;

        if self.audited {
            self.store.wake_sealer();
        }
        let notice = ChangeNotice { seq, organization: self.organization, changes: self.changes };
        match self.store.inner.backend {
            Backend::Sqlite => {
                // No subscriber is not an error.
                let _ = self.store.inner.events.send(ChangeEvent::Committed(Arc::new(notice)));
            }
            Backend::Postgres => {
                if let Err(error) = notify(self.store.pool(), &notice).await {
                    // Committed all the same: readers find it at the next notice.
                    tracing::warn!(%error, seq, "could not announce a committed change");
                }
            }
        }
        drop(self.turn);
        Ok(Some(seq))
    }
}

/// Appends the log row at the transaction's position. PostgreSQL: its
/// transaction id, taken without a lock (see the module documentation).
/// SQLite: the next value of the counter, whose writers take turns anyway.
async fn append_to_log(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    organization: &str,
    changes: String,
) -> Result<i64> {
    const NEXT_SEQ: &str = "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq";
    const APPEND: &str = "INSERT INTO change_log (seq, organization, committed_ms, changes)";
    if backend == Backend::Postgres {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{APPEND} SELECT pg_current_xact_id()::text::bigint + xid_offset, $1, $2, $3 \
             FROM change_feed WHERE id = 1 RETURNING seq"
        )))
        .bind(organization.to_owned())
        .bind(now_ms())
        .bind(changes)
        .fetch_one(&mut **tx)
        .await
        .map_err(query_error("append to the change log"))?;
        return column(&row, "change_log", "seq");
    }
    let row = sqlx::query(NEXT_SEQ)
        .fetch_one(&mut **tx)
        .await
        .map_err(query_error("take the next change sequence number"))?;
    let seq: i64 = column(&row, "change_counter", "seq")?;
    sqlx::query(AssertSqlSafe(format!("{APPEND} VALUES ($1, $2, $3, $4)")))
        .bind(seq)
        .bind(organization.to_owned())
        .bind(now_ms())
        .bind(changes)
        .execute(&mut **tx)
        .await
        .map_err(query_error("append to the change log"))?;
    Ok(seq)
}

// === PostgreSQL: one LISTEN connection per store. ===

/// NOTIFY's payload: with the changes when they fit its 8000-byte limit;
/// otherwise without, and listeners read the row by seq.
fn notice_payload(notice: &ChangeNotice) -> String {
    let with_changes = serde_json::json!({
        "seq": notice.seq,
        "organization": notice.organization,
        "changes": notice.changes,
    })
    .to_string();
    if with_changes.len() <= 7900 {
        return with_changes;
    }
    serde_json::json!({ "seq": notice.seq, "organization": notice.organization }).to_string()
}

/// Announces a committed change.
async fn notify(pool: &sqlx::AnyPool, notice: &ChangeNotice) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(notice_payload(notice))
        .execute(pool)
        .await
        .map_err(query_error("announce a change"))?;
    Ok(())
}

#[derive(Deserialize)]
struct Payload {
    seq: i64,
    organization: String,
    /// Absent when the changes did not fit in a notification.
    changes: Option<Vec<Change>>,
}

async fn start_listener(store: &Store) -> Result<()> {
    let mut listener =
        PgListener::connect(&store.inner.url).await.map_err(|source| StoreError::Listen { source })?;
    listener.listen(CHANNEL).await.map_err(|source| StoreError::Listen { source })?;
    let events = store.inner.events.clone();
    let pool = store.inner.pool.clone();
    let mut shutdown = store.inner.shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                next = listener.try_recv() => match next {
                    Ok(Some(notification)) => {
                        let event = match notification_event(notification.payload(), &pool).await {
                            Ok(event) => event,
                            Err(error) => {
                                tracing::warn!(%error, "unreadable change notification; subscribers will catch up");
                                ChangeEvent::Missed
                            }
                        };
                        let _ = events.send(event);
                    }
                    // The connection dropped and was re-established: whatever
                    // was committed meanwhile was not delivered.
                    Ok(None) => {
                        let _ = events.send(ChangeEvent::Missed);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "change notification connection failed; retrying");
                        let _ = events.send(ChangeEvent::Missed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    Ok(())
}

async fn notification_event(payload: &str, pool: &sqlx::AnyPool) -> Result<ChangeEvent> {
    let payload: Payload = serde_json::from_str(payload).map_err(|e| StoreError::Corrupt {
        table: "change_log",
        column: "notification",
        source: Box::new(e),
    })?;
    let changes = match payload.changes {
        Some(changes) => changes,
        None => {
            let mut conn = pool.acquire().await.map_err(query_error("acquire a connection"))?;
            read_log(&mut conn, Some(&payload.organization), payload.seq - 1, payload.seq)
                .await?
                .into_iter()
                .next()
                .map(|notice| notice.changes)
                .unwrap_or_default()
        }
    };
    Ok(ChangeEvent::Committed(Arc::new(ChangeNotice {
        seq: payload.seq,
        organization: payload.organization,
        changes,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_too_large_for_notify_go_without_their_changes() {
        let user =
            |i: usize| Change::User { organization: "acme".into(), id: format!("{i:04}-{}", "x".repeat(40)) };
        let small = ChangeNotice { seq: 7, organization: "acme".into(), changes: vec![user(1)] };
        let parsed: Payload = serde_json::from_str(&notice_payload(&small)).unwrap();
        assert_eq!(parsed.changes, Some(small.changes.clone()));

        let large =
            ChangeNotice { seq: 8, organization: "acme".into(), changes: (0..200).map(user).collect() };
        let payload = notice_payload(&large);
        assert!(payload.len() < 8000, "{} bytes", payload.len());
        let parsed: Payload = serde_json::from_str(&payload).unwrap();
        assert_eq!((parsed.seq, parsed.organization.as_str(), parsed.changes), (8, "acme", None));
    }
}
