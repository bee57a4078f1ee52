//! RoleAssignment: stored as declared (an assignment naming a missing role
//! grants nothing, and takes effect once the role exists); its status says
//! whether its principal exists yet.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::mpsc::UnboundedSender;

use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::tenants::{Stores, TenantView, VIEW_TTL};
use super::triggers::Triggers;
use super::{Error, Result};
use crate::api::{CommonStatus, PrincipalKind, RoleAssignment, RoleAssignmentStatus};
use crate::error_chain::error_chain;
use crate::resources::ToRecord as _;
use crate::store::{AssignmentRecord, GroupStore, ResourceKind, UserStore};

/// Specific conditions of a RoleAssignment (plus `PrincipalResolved`, which
/// is informational).
pub const CONDITION_TYPES: &[&str] =
    &[conditions::ORGANIZATION_FOUND, conditions::REFERENCES_RESOLVED, conditions::WORKSPACE_VALID];

/// How often an assignment whose principal does not exist yet looks again.
/// (Jittered per object by the controller's resync.)
/// A safety net: [`super::principals`] reconciles them as soon as the
/// change feed says a user or group appeared.
pub const PENDING_RECHECK: Duration = Duration::from_secs(300);

impl Kind for RoleAssignment {
    type Status = RoleAssignmentStatus;
    const KIND: ResourceKind = ResourceKind::RoleAssignment;
    /// The most numerous kind: a finalizer would double its API writes.
    const FINALIZED: bool = false;

    fn status(&self) -> Option<&RoleAssignmentStatus> {
        self.status.as_ref()
    }
    fn common(status: &RoleAssignmentStatus) -> &CommonStatus {
        &status.common
    }
    fn common_mut(status: &mut RoleAssignmentStatus) -> &mut CommonStatus {
        &mut status.common
    }
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.role_assignments
    }
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>> {
        &triggers.role_assignments
    }
    fn on_change(&self, _triggers: &Triggers) {}
    fn on_relist(_triggers: &Triggers) {}
}

/// Who the principal turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Its identifier: `User/{id}`, `Group/{id}` or `Client/{name}`.
    Found(String),
    Pending,
    /// The store could not be asked; the previous answer stands.
    Unknown,
}

/// The report of an assignment, before the store write.
pub fn plan(ra: &RoleAssignment, name: &str, view: &TenantView, resolution: &Resolution) -> Report {
    let mut report = Report::from_findings(CONDITION_TYPES, view.findings("RoleAssignment", name));
    let principal = &ra.spec.principal;
    match resolution {
        Resolution::Found(id) => report.set(Desired::new(
            conditions::PRINCIPAL_RESOLVED,
            true,
            "PrincipalFound",
            format!("{:?} {} is {id}", principal.kind, principal.name),
        )),
        Resolution::Pending => report.set(Desired::new(
            conditions::PRINCIPAL_RESOLVED,
            false,
            "PrincipalPending",
            format!(
                "{:?} {} does not exist yet; the assignment takes effect when it appears",
                principal.kind, principal.name
            ),
        )),
        Resolution::Unknown => report.set(Desired::new(
            conditions::PRINCIPAL_RESOLVED,
            false,
            "PrincipalUnknown",
            "the store could not be asked whether the principal exists",
        )),
    }
    report
}

async fn resolve(ra: &RoleAssignment, namespace: &str, ctx: &Context) -> Result<Resolution> {
    let name = &ra.spec.principal.name;
    let read = |source| Error::StoreRead {
        what: "principals",
        namespace: namespace.to_owned(),
        source: Box::new(source),
    };
    Ok(match ra.spec.principal.kind {
        PrincipalKind::User => match ctx.store.find_user_by_name(namespace, name).await.map_err(read)? {
            Some(user) => Resolution::Found(format!("User/{}", user.id)),
            None => Resolution::Pending,
        },
        PrincipalKind::Group => match ctx.store.find_group_by_name(namespace, name).await.map_err(read)? {
            Some(group) => Resolution::Found(format!("Group/{}", group.id)),
            None => Resolution::Pending,
        },
        PrincipalKind::Client => {
            let exists = ctx
                .stores
                .oauth_clients
                .state()
                .iter()
                .any(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == *name);
            if exists { Resolution::Found(format!("Client/{name}")) } else { Resolution::Pending }
        }
    })
}

impl Reconciler for RoleAssignment {
    async fn apply(&self, ctx: &Context) -> Result<Applied<RoleAssignmentStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let (resolution, read_error) = match resolve(self, &namespace, ctx).await {
            Ok(resolution) => (resolution, None),
            Err(e) => (Resolution::Unknown, Some(e)),
        };
        let mut report = plan(self, &name, &view, &resolution);
        // A store that cannot be read will not take a write either: say so
        // at once instead of waiting for a second timeout.
        let error = match read_error {
            Some(e) => {
                report.set(Desired::new(
                    conditions::STORED,
                    false,
                    "StoreUnavailable",
                    format!("the store could not be read: {}", error_chain(&e)),
                ));
                Some(e)
            }
            None => reconcile::store_record(ctx, self, &self.to_record(store_meta(self)?), &mut report).await,
        };
        let now = ctx.now();
        let resolved_principal = match &resolution {
            Resolution::Found(id) => Some(id.clone()),
            Resolution::Pending => None,
            Resolution::Unknown => self.status.as_ref().and_then(|s| s.resolved_principal.clone()),
        };
        let mut requeue = resolved_principal.is_none().then_some(PENDING_RECHECK);
        // Look again just after expiry, so the status says so.
        if let Some(expires) = self.spec.expires_at.filter(|at| *at > now) {
            let until = now.duration_until(expires).unsigned_abs() + VIEW_TTL + Duration::from_secs(1);
            requeue = Some(requeue.map_or(until, |r| r.min(until)));
        }
        let status =
            RoleAssignmentStatus { common: common_status(self, &report, "", now), resolved_principal };
        Ok(Applied { status, requeue, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<RoleAssignmentStatus>> {
        reconcile::delete_record::<AssignmentRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}
