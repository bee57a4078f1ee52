//! The store's housekeeping, done by the leading operator: the change log and
//! tombstones would otherwise grow with every write and every deletion.
//!
//! - Change log entries are kept for [`CHANGE_LOG_RETENTION`]: a follower
//!   further behind than that reloads its whole index instead.
//! - Tombstones are kept for [`TOMBSTONE_RETENTION`]: they only have to
//!   outlive a write already in flight when the object went.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tracing::{info, warn};

use super::reconcile::Context;
use crate::error_chain::error_chain;
use crate::store::{ChangeFeed, DesiredStateStore};

pub const CHANGE_LOG_RETENTION: SignedDuration = SignedDuration::from_hours(1);
pub const TOMBSTONE_RETENTION: SignedDuration = SignedDuration::from_hours(24);
/// How often the store is tidied (first right after the operator starts leading).
pub const INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Tidies the store every [`INTERVAL`] until aborted.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tidy(&ctx).await;
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One round: prune the change log, purge old tombstones. Failures are
/// logged and retried at the next round.
pub async fn tidy(ctx: &Context) {
    let now = ctx.now();
    let before = |retention: SignedDuration| {
        now.as_millisecond().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
    };
    match ctx.store.prune_change_log(before(CHANGE_LOG_RETENTION)).await {
        Ok(0) => {}
        Ok(pruned) => info!(pruned, "pruned the change log"),
        Err(e) => warn!("could not prune the change log: {}", error_chain(&e)),
    }
    match ctx.store.purge_tombstones(before(TOMBSTONE_RETENTION)).await {
        Ok(0) => {}
        Ok(purged) => info!(purged, "purged old tombstones"),
        Err(e) => warn!("could not purge tombstones: {}", error_chain(&e)),
    }
}
