//! Refresh-token rotations in the store, committed in groups.
//!
//! A rotation is a compare-and-set on the family's counter plus the
//! successor's hash: of concurrent rotations of one token exactly one moves
//! the counter; the others lose and revoke the family (reuse). One writer
//! task per store takes every rotation waiting at that moment and commits
//! them in one transaction of four statements whatever their number: the
//! commit (on a durable PostgreSQL, a WAL flush; on SQLite, the write lock
//! too) and each round trip are paid once per group instead of once per
//! refresh.
//!
//! On PostgreSQL several replicas commit groups at once, each locking the
//! rows of its families in the order the server scans them; two groups
//! that share two families could deadlock. The server then aborts one,
//! which is run again once (its transaction rolled back whole).
//!
//! ```text
//!  refresh ─► Rotation ─► queue ─► writer task: BEGIN (SQLite: IMMEDIATE, the store's write turn)
//!   (await the outcome)            UPDATE families SET counter = counter + 1 WHERE
//!                                    (family_id = $f1 AND counter = $c1) OR … RETURNING family_id
//!                                  INSERT INTO refresh_tokens VALUES (successors of the winners)
//!                                  UPDATE families SET revoked_ms … WHERE family_id IN (losers)
//!                                  COMMIT ─► each waiting refresh: Rotated | Lost
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::secret::SecretHash;
use crate::store::error::query_error;
use crate::store::{Result, Store, StoreError, WeakStore, column};

/// The most rotations committed in one transaction (bounds the statements'
/// parameter lists; groups rarely reach it).
const MAX_GROUP: usize = 64;

/// One refresh token to replace by its successor, as decided by
/// [`crate::token::refresh::decide`]: the successor's counter is
/// `presented_counter + 1`.
#[derive(Debug)]
pub struct Rotation {
    pub family_id: String,
    pub presented_counter: i64,
    pub successor_hash: SecretHash,
    pub now_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationOutcome {
    /// The counter moved and the successor is stored.
    Rotated,
    /// Another rotation of the same token came first: the family is revoked.
    Lost,
}

/// Where rotations wait for the writer task, started on first use.
#[derive(Default)]
pub struct RotationWriter {
    queue: OnceLock<mpsc::UnboundedSender<Waiting>>,
}

/// A rotation and who waits for its outcome. The queue needs no bound: every
/// entry is a request awaiting its answer.
struct Waiting {
    rotation: Rotation,
    outcome: oneshot::Sender<Result<RotationOutcome, Arc<StoreError>>>,
}

impl RotationWriter {
    /// Rotates, committed once this returns `Rotated` or `Lost`.
    pub async fn rotate(&self, store: &Store, rotation: Rotation) -> Result<RotationOutcome> {
        let queue = self.queue.get_or_init(|| start_writer(store.downgrade()));
        let (outcome, answer) = oneshot::channel();
        queue.send(Waiting { rotation, outcome }).map_err(|_| StoreError::WriterStopped)?;
        answer
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map_err(|source| StoreError::GroupCommit { source })
    }
}

/// The writer task. It holds the store only while it commits a group (the
/// store owns the queue): it ends when the store is dropped.
fn start_writer(store: WeakStore) -> mpsc::UnboundedSender<Waiting> {
    let (queue, mut waiting) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while waiting.recv_many(&mut group, MAX_GROUP).await > 0 {
            // A request that went away (client gone) rotates nothing, as
            // when its own transaction would have been dropped.
            group.retain(|w: &Waiting| !w.outcome.is_closed());
            let Some(store) = store.upgrade() else { break };
            if !group.is_empty() {
                commit_group(&store, &mut group).await;
            }
        }
    });
    queue
}

/// Commits `group` in one transaction and answers (and empties) it.
async fn commit_group(store: &Store, group: &mut Vec<Waiting>) {
    let rotations: Vec<&Rotation> = group.iter().map(|w| &w.rotation).collect();
    let attempt = || async {
        let mut tx = store.begin_unlogged_write().await?;
        let outcomes = apply(tx.conn(), &rotations).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(outcomes)
    };
    let committed = match attempt().await {
        Err(error) if is_deadlock(&error) => attempt().await,
        done => done,
    }
    .map_err(Arc::new);
    if let Err(error) = &committed {
        let error = crate::error_chain::ErrorChain(&**error);
        tracing::error!(%error, rotations = group.len(), "refresh-token rotations failed");
    }
    // A requester that went away meanwhile has nobody to tell.
    for (n, waiting) in group.drain(..).enumerate() {
        let outcome = match &committed {
            Ok(outcomes) => Ok(outcomes[n]),
            Err(error) => Err(error.clone()),
        };
        let _ = waiting.outcome.send(outcome);
    }
}

/// PostgreSQL aborted the transaction to break a deadlock (SQLSTATE 40P01).
fn is_deadlock(error: &StoreError) -> bool {
    match error {
        StoreError::Query { source, .. } => {
            source.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "40P01")
        }
        _ => false,
    }
}

/// Runs `rotations` in the caller's transaction; one outcome each, in order.
async fn apply<R>(conn: &mut AnyConnection, rotations: &[R]) -> Result<Vec<RotationOutcome>>
where
    R: std::borrow::Borrow<Rotation>,
{
    let rotations: Vec<&Rotation> = rotations.iter().map(R::borrow).collect();
    let Some(now) = rotations.iter().map(|r| r.now_ms).max() else { return Ok(Vec::new()) };
    // Of several rotations of one family in a group only the first can win:
    // the later ones would find the counter moved, one after the other.
    let mut seen = HashSet::new();
    let first: Vec<bool> = rotations.iter().map(|r| seen.insert(r.family_id.as_str())).collect();
    let candidates: Vec<&Rotation> =
        rotations.iter().zip(&first).filter(|(_, first)| **first).map(|(r, _)| *r).collect();

    // Compare-and-set: a family moves only from the presented counter. (A
    // chain of ORs, not a row-value IN list, which SQLite would not look up
    // by the primary key.)
    let matches: Vec<String> = (0..candidates.len())
        .map(|n| format!("(family_id = ${} AND counter = ${})", 2 + 2 * n, 3 + 2 * n))
        .collect();
    let sql = format!(
        "UPDATE refresh_token_families SET counter = counter + 1, updated_ms = $1 \
         WHERE revoked_ms IS NULL AND ({}) RETURNING family_id",
        matches.join(" OR ")
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for rotation in &candidates {
        update = update.bind(rotation.family_id.as_str()).bind(rotation.presented_counter);
    }
    let moved: HashSet<String> = update
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error("rotate refresh tokens"))?
        .iter()
        .map(|row| column::<String>(row, "refresh_token_families", "family_id"))
        .collect::<Result<_, _>>()?;

    let outcomes: Vec<RotationOutcome> = rotations
        .iter()
        .zip(&first)
        .map(|(r, first)| {
            if *first && moved.contains(r.family_id.as_str()) {
                RotationOutcome::Rotated
            } else {
                RotationOutcome::Lost
            }
        })
        .collect();
    let winners: Vec<&Rotation> = rotations
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == RotationOutcome::Rotated)
        .map(|(r, _)| *r)
        .collect();

    if !winners.is_empty() {
        let sql = format!(
            "INSERT INTO refresh_tokens (token_hash, family_id, counter, created_ms) VALUES {}",
            tuples(1, winners.len(), 4)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for rotation in winners {
            insert = insert
                .bind(rotation.successor_hash.to_string())
                .bind(rotation.family_id.as_str())
                .bind(rotation.presented_counter + 1)
                .bind(rotation.now_ms);
        }
        insert.execute(&mut *conn).await.map_err(query_error("store refresh tokens"))?;
    }

    let mut losers: Vec<&str> = rotations
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == RotationOutcome::Lost)
        .map(|(r, _)| r.family_id.as_str())
        .collect();
    losers.sort_unstable();
    losers.dedup();
    if !losers.is_empty() {
        let sql = format!(
            "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = 'reuse' \
             WHERE revoked_ms IS NULL AND family_id IN ({})",
            parameters(2, losers.len())
        );
        let mut revoke = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for family in losers {
            revoke = revoke.bind(family);
        }
        revoke.execute(&mut *conn).await.map_err(query_error("revoke refresh-token families"))?;
    }
    Ok(outcomes)
}

/// `$first, …`: `count` numbered parameters.
fn parameters(first: usize, count: usize) -> String {
    let mut text = String::new();
    for n in first..first + count {
        let separator = if n == first { "" } else { ", " };
        let _ = write!(text, "{separator}${n}");
    }
    text
}

/// `($first, …), (…), …`: `rows` tuples of `width` numbered parameters.
fn tuples(first: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", parameters(first + row * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::{parameters, tuples};

    #[test]
    fn parameters_are_numbered_in_order() {
        assert_eq!(parameters(2, 3), "$2, $3, $4");
        assert_eq!(tuples(2, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(tuples(1, 1, 4), "($1, $2, $3, $4)");
    }
}
