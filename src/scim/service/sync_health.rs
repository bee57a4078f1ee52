//! Sync health, counted in memory and written to the store in batches: at
//! most one upsert per IdentityProvider every [`FLUSH_DELAY`], instead of one
//! per request. A write per request cost a commit each and queued every
//! client of an IdentityProvider on the lock of its one `scim_sync_health`
//! row; the operator reads the row every few seconds, so a quarter of a
//! second of delay changes nothing it reports.
//!
//! ```text
//!  request answered ──► count() ──► pending[(namespace, idp)] += 1
//!                          └─ first since the last flush? spawn: sleep FLUSH_DELAY, flush()
//!  flush() ──► take pending ──► add_scim_requests per IdentityProvider
//!                                 └─ failed? put the counts back, try again later
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::scim::ScimRequestTally;
use crate::store::{ScimStore, Store};

/// How long counted requests wait before they are written.
pub const FLUSH_DELAY: Duration = Duration::from_millis(250);

type Key = (String, String);

/// Requests counted and not yet written, per (namespace, IdentityProvider).
#[derive(Default)]
pub struct SyncHealthTally {
    pending: Mutex<HashMap<Key, ScimRequestTally>>,
    /// A delayed flush is on its way.
    flush_scheduled: AtomicBool,
    /// One flush at a time, so a failed batch is put back before the next is taken.
    flushing: tokio::sync::Mutex<()>,
}

impl SyncHealthTally {
    /// Counts one answered request; schedules a flush if none is scheduled.
    pub fn count(
        self: &Arc<Self>,
        store: &Store,
        namespace: String,
        identity_provider: String,
        error: Option<&str>,
        at_ms: i64,
    ) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry((namespace, identity_provider)).or_default().count(error, at_ms);
        }
        self.schedule(store);
    }

    fn schedule(self: &Arc<Self>, store: &Store) {
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tally, store) = (Arc::clone(self), store.clone());
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_DELAY).await;
            tally.flush(&store).await;
        });
    }

    /// Writes every pending count now. A batch the store refuses is kept and
    /// tried again after [`FLUSH_DELAY`].
    pub async fn flush(self: &Arc<Self>, store: &Store) {
        let _turn = self.flushing.lock().await;
        // Cleared before taking the batch: a request counted after the take
        // schedules the next flush itself.
        self.flush_scheduled.store(false, Ordering::Release);
        let batch = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        let mut failed = false;
        for ((namespace, identity_provider), tally) in batch {
            if let Err(error) = store.add_scim_requests(&namespace, &identity_provider, &tally).await {
                tracing::warn!(%error, %namespace, %identity_provider, "could not record SCIM sync health");
                if let Ok(mut pending) = self.pending.lock() {
                    pending.entry((namespace, identity_provider)).or_default().absorb(tally);
                }
                failed = true;
            }
        }
        if failed {
            self.schedule(store);
        }
    }
}
