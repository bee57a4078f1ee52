//! RoleAssignments waiting for their principal: a user or group the services
//! have not created yet (SCIM, JIT sign-in). The store's change feed says when
//! users and groups appear, and the waiting assignments of that organization
//! are reconciled at once, instead of at their next periodic check.
//!
//! ```text
//!  scim / token service ──► users, groups ──► change feed ──► (batched) namespaces touched
//!                                                              └─► trigger pending RoleAssignments there
//! ```
//!
//! The feed's notices reach other processes only on PostgreSQL (NOTIFY); on
//! SQLite they stay in the writing process. So the change log is also read
//! every [`POLL`], which catches what another process wrote to a shared file.
//! The poll resumes where the log's last read ended, not after the newest
//! notice: on PostgreSQL a change may commit after a newer one (see
//! [`crate::store::changes`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use tracing::{debug, warn};

use super::triggers::Triggers;
use crate::api::{PrincipalKind, RoleAssignment};
use crate::error_chain::error_chain;
use crate::store::{Change, ChangeEvent, ChangeFeed, ChangeSubscription, Store};

/// Retry delay when the change feed cannot be subscribed to.
const RESUBSCRIBE: Duration = Duration::from_secs(5);

/// How often the change log is read for what no notice announced.
pub const POLL: Duration = Duration::from_secs(2);

/// Follows the change feed until aborted.
pub async fn run(store: Store, triggers: Arc<Triggers>) {
    loop {
        let (mut subscription, mut read_up_to) = match subscribe(&store).await {
            Ok(subscribed) => subscribed,
            Err(e) => {
                warn!(retry_in = ?RESUBSCRIBE, "cannot follow the store's changes: {}", error_chain(&e));
                tokio::time::sleep(RESUBSCRIBE).await;
                continue;
            }
        };
        // Anything may have appeared while we were not listening.
        trigger_pending(&triggers, None);
        // Notices received that the poll has not passed yet: not triggered twice.
        let mut announced = BTreeSet::new();
        loop {
            let mut touched = Touched::default();
            tokio::select! {
                event = subscription.recv() => {
                    let Some(first) = event else { break };
                    // A burst (a SCIM push of many users) becomes one pass per namespace.
                    touched.add(&first, &mut announced);
                    while let Some(next) = subscription.try_recv() {
                        touched.add(&next, &mut announced);
                    }
                }
                _ = tokio::time::sleep(POLL) => match store.changes_since(None, read_up_to).await {
                    Ok(notices) => {
                        for notice in notices {
                            read_up_to = notice.seq;
                            if !announced.remove(&notice.seq) {
                                touched.add(&ChangeEvent::Committed(Arc::new(notice)), &mut announced);
                            }
                        }
                        announced.retain(|&seq| seq > read_up_to);
                    }
                    Err(e) => debug!("reading the change log: {}", error_chain(&e)),
                },
            }
            touched.trigger(&triggers);
        }
        debug!("the change feed closed; subscribing again");
    }
}

async fn subscribe(store: &Store) -> crate::store::Result<(ChangeSubscription, i64)> {
    let subscription = store.subscribe().await?;
    Ok((subscription, store.horizon().await?))
}

/// Namespaces where principals appeared, or "look everywhere".
#[derive(Default)]
struct Touched {
    everything: bool,
    namespaces: BTreeSet<String>,
}

impl Touched {
    /// Takes in one event; `announced` collects the notices' positions.
    fn add(&mut self, event: &ChangeEvent, announced: &mut BTreeSet<i64>) {
        match event {
            ChangeEvent::Missed => self.everything = true,
            ChangeEvent::Committed(notice) => {
                announced.insert(notice.seq);
                for change in &notice.changes {
                    match change {
                        Change::User { organization, .. } | Change::Group { organization, .. } => {
                            self.namespaces.insert(organization.clone());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Touched {
    fn trigger(self, triggers: &Triggers) {
        if self.everything {
            trigger_pending(triggers, None);
        } else {
            for namespace in &self.namespaces {
                trigger_pending(triggers, Some(namespace));
            }
        }
    }
}

/// Reconciles the RoleAssignments (of one namespace, or all) whose user or
/// group principal is not resolved yet.
fn trigger_pending(triggers: &Triggers, namespace: Option<&str>) {
    triggers.trigger_where::<RoleAssignment>(|ra| {
        namespace.is_none_or(|ns| ra.namespace().as_deref() == Some(ns))
            && matches!(ra.spec.principal.kind, PrincipalKind::User | PrincipalKind::Group)
            && ra.status.as_ref().is_none_or(|s| s.resolved_principal.is_none())
    });
}
