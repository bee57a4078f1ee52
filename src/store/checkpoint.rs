//! The write-ahead log of a SQLite file store, checkpointed in the
//! background.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the log
//! past 1,000 pages: that commit then waits while the log is copied into the
//! database file and the file is synced, 5 to 7 ms on this project's test
//! machine, on a sign-in's or a SCIM write's path (one single sign-on
//! callback in a hundred, measured in BENCHMARKS.md). So every connection
//! turns it off ([`NO_AUTOMATIC_CHECKPOINT`]) and a task of the store
//! checkpoints every [`EVERY`] instead, PASSIVE: it copies what no reader
//! still needs and never waits for the writer, so a commit only appends to
//! the log. A crash loses nothing either way: the log is the data until it
//! is copied.

use std::time::Duration;

use super::Store;

/// Run on each connection of a SQLite file store as it opens.
pub(super) const NO_AUTOMATIC_CHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 0";

/// How often the log is checkpointed.
const EVERY: Duration = Duration::from_millis(250);

/// Checkpoints `store`'s log every [`EVERY`] until the store is dropped.
pub(super) fn start(store: &Store) {
    let weak = store.downgrade();
    let mut shutdown = store.inner.shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let Some(store) = weak.upgrade() else { return };
            if store.pool().is_closed() {
                return;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(store.pool()).await {
                tracing::warn!(%error, "could not checkpoint the SQLite write-ahead log; trying again");
            }
        }
    });
}
