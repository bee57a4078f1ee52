//! Store rows of objects that carry no finalizer: removed when the watch says
//! the object went, and by a sweep after every relist (which also catches
//! deletions made while no operator ran).
//!
//! ```text
//!  watcher<K> (K::FINALIZED = false) ── Delete(obj) ──► Release::Deleted ──┐
//!                                   └── InitDone   ──► Release::Relisted ─┴─► release loop ─► store.delete
//!                                                   (stored uids the reflector lacks when the sweep runs)
//! ```
//!
//! RoleAssignments are the only such kind: they are the most numerous, and a
//! finalizer would double the API writes of each (see BENCHMARKS.md, initial
//! sync). Nothing outside the cluster hangs on one but its store row.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use super::Result;
use super::reconcile::{Context, Kind, delete_record};
use crate::api::{IdentityProvider, OAuthClient, Organization, Role, RoleAssignment};
use crate::error_chain::error_chain;
use crate::store::{
    AssignmentRecord, DesiredRecord, DesiredStateStore, IdentityProviderRecord, OAuthClientRecord,
    ObjectMeta, OrganizationRecord, ResourceKind, RoleRecord,
};

/// What the release loop is told.
#[derive(Debug)]
pub enum Release {
    /// The object is gone from the cluster.
    Deleted { kind: ResourceKind, meta: ObjectMeta },
    /// A relist of `kind` finished.
    Relisted { kind: ResourceKind },
}

/// Attempts per release before it is left to the next relist's sweep.
const ATTEMPTS: u32 = 5;

/// Applies releases until the channel closes. A failed removal is retried
/// with backoff, then left to the sweep after the next relist.
pub async fn run(mut releases: UnboundedReceiver<Release>, ctx: Arc<Context>) {
    while let Some(release) = releases.recv().await {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match apply(&release, &ctx).await {
                Ok(()) => break,
                Err(e) if attempt == ATTEMPTS => {
                    warn!(
                        ?release,
                        "could not release store rows, leaving it to the next sweep: {}",
                        error_chain(&e)
                    )
                }
                Err(e) => {
                    debug!(retry_in = ?delay, "releasing store rows: {}", error_chain(&e));
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

async fn apply(release: &Release, ctx: &Context) -> Result<()> {
    match release {
        Release::Deleted { kind, meta } => {
            // From the store of its namespace's region only.
            let ctx = &super::residency::home_context(ctx, &meta.namespace).await?;
            delete(*kind, meta, ctx).await?;
            info!(%kind, namespace = %meta.namespace, name = %meta.name, "deleted from the store");
            Ok(())
        }
        Release::Relisted { kind } => {
            let removed = match kind {
                ResourceKind::Organization => sweep::<Organization, OrganizationRecord>(ctx).await?,
                ResourceKind::Role => sweep::<Role, RoleRecord>(ctx).await?,
                ResourceKind::RoleAssignment => sweep::<RoleAssignment, AssignmentRecord>(ctx).await?,
                ResourceKind::IdentityProvider => {
                    sweep::<IdentityProvider, IdentityProviderRecord>(ctx).await?
                }
                ResourceKind::OAuthClient => sweep::<OAuthClient, OAuthClientRecord>(ctx).await?,
            };
            if removed > 0 {
                info!(%kind, removed, "removed from the store what the cluster no longer has");
            }
            Ok(())
        }
    }
}

async fn delete(kind: ResourceKind, meta: &ObjectMeta, ctx: &Context) -> Result<()> {
    match kind {
        ResourceKind::Organization => delete_record::<OrganizationRecord>(meta, ctx).await,
        ResourceKind::Role => delete_record::<RoleRecord>(meta, ctx).await,
        ResourceKind::RoleAssignment => delete_record::<AssignmentRecord>(meta, ctx).await,
        ResourceKind::IdentityProvider => delete_record::<IdentityProviderRecord>(meta, ctx).await,
        ResourceKind::OAuthClient => delete_record::<OAuthClientRecord>(meta, ctx).await,
    }
}

/// Removes the stored rows of kind `R` whose object the reflector no longer
/// has. Read at sweep time, not at the relist: an object created since is in
/// the reflector before any reconcile can have stored it.
async fn sweep<K: Kind, R: DesiredRecord>(ctx: &Context) -> Result<usize> {
    let objects = K::store(&ctx.stores).state();
    let live: HashSet<String> = objects.iter().filter_map(|o| o.uid()).collect();
    let mut namespaces: BTreeSet<String> = objects.iter().filter_map(|o| o.namespace()).collect();
    for org in ctx.stores.organizations.state() {
        namespaces.extend(org.metadata.namespace.clone());
    }
    let mut removed = 0;
    // Every store is swept, each for its own rows.
    for (_, store) in ctx.regions.all() {
        let ctx = &Context { store: store.clone(), ..ctx.clone() };
        removed += sweep_store::<R>(ctx, &namespaces, &live).await?;
    }
    Ok(removed)
}

async fn sweep_store<R: DesiredRecord>(
    ctx: &Context,
    namespaces: &BTreeSet<String>,
    live: &HashSet<String>,
) -> Result<usize> {
    let read = |source| super::Error::StoreRead {
        what: R::KIND.as_str(),
        namespace: String::new(),
        source: Box::new(source),
    };
    let mut removed = 0;
    for namespace in namespaces {
        for uid in ctx.store.list_uids::<R>(namespace).await.map_err(read)? {
            if live.contains(&uid) {
                continue;
            }
            // Read back for its name and generation: the tombstone keeps the
            // generation, so a replayed older write cannot bring it back.
            if let Some(record) = ctx.store.get_by_uid::<R>(&uid).await.map_err(read)? {
                delete_record::<R>(record.meta(), ctx).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
