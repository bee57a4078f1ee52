//! The store's housekeeping, done by the leading operator
//! ([`crate::store::purge::tidy`]): the change log, tombstones and the token
//! service's expired codes, refresh-token families, revoked access tokens and
//! sessions would otherwise grow with every write, deletion and sign-in.

use std::sync::Arc;
use std::time::Duration;

use super::reconcile::Context;

/// How often the store is tidied (first right after the operator starts leading).
pub const INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Tidies the store every [`INTERVAL`] until aborted.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tidy(&ctx).await;
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One round over every store, regional ones included (failures are logged
/// and retried at the next round).
pub async fn tidy(ctx: &Context) {
    for (_, store) in ctx.regions.all() {
        crate::store::purge::tidy(store, ctx.now().as_millisecond()).await;
    }
}
