//! Role: stored as declared; its status lists the catalog permissions it
//! really gives (wildcards and included roles expanded by the shared role
//! graph), so a reviewer sees the effect of a change.

use std::sync::Arc;

use kube::runtime::reflector::Store;
use tokio::sync::mpsc::UnboundedSender;

use super::Result;
use super::conditions::{self, Report};
use super::reconcile::{self, Applied, Cleanup, Context, Kind, Reconciler, common_status, names, store_meta};
use super::tenants::{Stores, TenantView};
use super::triggers::{self, Triggers};
use crate::api::{CommonStatus, IdentityProvider, Role, RoleAssignment, RoleStatus};
use crate::resources::ToRecord as _;
use crate::store::{ResourceKind, RoleRecord};

/// Specific conditions of a Role.
pub const CONDITION_TYPES: &[&str] = &[
    conditions::ORGANIZATION_FOUND,
    conditions::PERMISSIONS_KNOWN,
    conditions::REFERENCES_RESOLVED,
    conditions::INCLUSION_ACYCLIC,
];

impl Kind for Role {
    type Status = RoleStatus;
    const KIND: ResourceKind = ResourceKind::Role;

    fn status(&self) -> Option<&RoleStatus> {
        self.status.as_ref()
    }
    fn common(status: &RoleStatus) -> &CommonStatus {
        &status.common
    }
    fn common_mut(status: &mut RoleStatus) -> &mut CommonStatus {
        &mut status.common
    }
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.roles
    }
    fn sender(triggers: &Triggers) -> &UnboundedSender<Arc<Self>> {
        &triggers.roles
    }
    fn on_change(&self, triggers: &Triggers) {
        triggers::role_changed(triggers, self);
    }
    fn on_relist(triggers: &Triggers) {
        triggers.trigger_where::<RoleAssignment>(|_| true);
        triggers.trigger_where::<IdentityProvider>(|_| true);
    }
}

/// The status of a Role from what the checks found (before the store write).
pub fn plan(name: &str, view: &TenantView) -> (Report, Vec<String>) {
    let report = Report::from_findings(CONDITION_TYPES, view.findings("Role", name));
    (report, view.effective_permissions(name))
}

impl Reconciler for Role {
    async fn apply(&self, ctx: &Context) -> Result<Applied<RoleStatus>> {
        let (namespace, name) = names(self)?;
        let view = ctx.tenants.view(&namespace, &ctx.stores).await;
        let (mut report, effective_permissions) = plan(&name, &view);
        let error = reconcile::store_record(ctx, self, &self.to_record(store_meta(self)?), &mut report).await;
        let message = format!("grants {} permissions", effective_permissions.len());
        let status =
            RoleStatus { common: common_status(self, &report, &message, ctx.now()), effective_permissions };
        Ok(Applied { status, requeue: None, error })
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Cleanup<RoleStatus>> {
        reconcile::delete_record::<RoleRecord>(&store_meta(self)?, ctx).await?;
        Ok(Cleanup::Done)
    }
}
