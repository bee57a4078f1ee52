//! AccessRequest: filed in the store once, then the store's request
//! mirrored into `.status`. Approvers decide through the admin API or the
//! approval page (a kubectl user is not a Portcullis identity); this
//! controller only files, mirrors and withdraws.
//!
//! ```text
//!  AccessRequest (uid U) ── finalizer ──► check spec (Organization, policy, Role, workspace,
//!        │                                 requester, duration ≤ maxDuration)
//!        │                                   ├─ invalid: Filed False (reason), nothing stored
//!        │                                   └─ store.file_access_request(id = U)   (once: a replayed
//!        │                                        pass or a second operator finds it filed)
//!        │◄── status: phase, approvals, expiresAt, requestId ◄── store (re-read while Pending,
//!        │                                                        and at the grant's expiry)
//!  deleted ──► store.revoke_access_request(U): a pending one is withdrawn, an approved one's
//!              grant removed (both read Revoked); finalizer removed
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource as _, ResourceExt};
use tracing::{debug, info, warn};

use super::conditions::{self, Desired, Report};
use super::reconcile::{self, Context, add_finalizer_of, jitter, remove_finalizer_of};
use super::{Error, FIELD_MANAGER, FINALIZER, Result};
use crate::api::{
    AccessRequest, AccessRequestApproval, AccessRequestPhase, AccessRequestSpec, AccessRequestStatus,
    CommonStatus, Organization, Role,
};
use crate::audit::event::rfc3339_ms;
use crate::audit::{Actor, AuditContext, Source};
use crate::authz::Principal;
use crate::store::access_requests::{self as stored, AccessRequestStore as _, NewAccessRequest};
use crate::store::{Store, UserStore as _};

const KIND: &str = "AccessRequest";

/// How often a pending request's approvals are read again from the store.
pub const PENDING_RECHECK: Duration = Duration::from_secs(2);
/// How soon a refused request is planned again: what it names (its role,
/// requester, organization) may simply not have been seen yet, and nothing
/// else wakes it (its spec cannot change).
pub const REFUSED_RECHECK: Duration = Duration::from_secs(5);

/// Runs the AccessRequest controller until the stream ends.
pub async fn run(ctx: Arc<Context>, config: controller::Config) {
    let api = Api::<AccessRequest>::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .with_config(config)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(kind = KIND, "{}", crate::error_chain::error_chain(&e));
            }
        })
        .await;
}

fn error_policy(obj: Arc<AccessRequest>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{KIND}/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    if error.is_conflict() {
        return Action::requeue(jitter(Duration::from_millis(500), &key, 0));
    }
    let delay = ctx.backoff.failed(&key);
    warn!(object = %key, retry_in = ?delay, error = %crate::error_chain::error_chain(error), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile(obj: Arc<AccessRequest>, ctx: Arc<Context>) -> Result<Action> {
    let namespace =
        obj.namespace().ok_or(Error::MissingMetadata { kind: KIND, field: "metadata.namespace" })?;
    let name =
        obj.meta().name.clone().ok_or(Error::MissingMetadata { kind: KIND, field: "metadata.name" })?;
    let uid = obj.uid().ok_or(Error::MissingMetadata { kind: KIND, field: "metadata.uid" })?;
    let api: Api<AccessRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let placement = super::residency::place(&ctx, &namespace).await?;
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);

    if obj.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        // Nothing was filed where there is no store.
        if let Some(store) = &placement.store {
            withdraw(store, &namespace, &name, &uid).await?;
        }
        remove_finalizer_of(&api, &*obj, KIND, &namespace, &name).await?;
        info!(kind = KIND, %namespace, %name, "withdrawn from the store");
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer_of(&api, &*obj, KIND, &namespace, &name).await?;
    }

    let now = ctx.now();
    let (status, requeue) = match placement.store {
        None => {
            let mut report = Report::default();
            report.set(Desired::new(
                conditions::FILED,
                false,
                placement.condition.reason.clone(),
                placement.condition.message.clone(),
            ));
            (status_of(&obj, &report, None, now), None)
        }
        Some(store) => file_and_mirror(&obj, &namespace, &name, &uid, &store, &ctx).await?,
    };
    write_status(&api, &obj, status, &namespace, &name).await?;
    ctx.backoff.reset(&format!("{KIND}/{namespace}/{name}"));
    let resync = jitter(ctx.settings.resync, &format!("{KIND}/{namespace}/{name}"), 0);
    Ok(Action::requeue(requeue.map_or(resync, |r| r.min(resync))))
}

/// Files the request (once) and reads back where it stands.
async fn file_and_mirror(
    obj: &AccessRequest,
    namespace: &str,
    name: &str,
    uid: &str,
    store: &Store,
    ctx: &Context,
) -> Result<(AccessRequestStatus, Option<Duration>)> {
    let read = |source| Error::StoreRead {
        what: "access requests",
        namespace: namespace.to_owned(),
        source: Box::new(source),
    };
    let now = ctx.now();
    let mut report = Report::default();
    let filed = match store.get_access_request(namespace, uid).await.map_err(read)? {
        Some(filed) => filed,
        None => {
            let view = ctx.tenants.view(namespace, &ctx.stores).await;
            let roles: Vec<Arc<Role>> = ctx
                .stores
                .roles
                .state()
                .into_iter()
                .filter(|r| r.namespace().as_deref() == Some(namespace))
                .collect();
            let requester_exists =
                store.find_user_by_name(namespace, &obj.spec.requester).await.map_err(read)?.is_some();
            let new = match plan(
                &obj.spec,
                namespace,
                name,
                view.organization.as_deref(),
                &roles,
                requester_exists,
            ) {
                Ok(new) => new,
                Err((reason, message)) => {
                    report.set(Desired::new(conditions::FILED, false, reason, message));
                    return Ok((status_of(obj, &report, None, now), Some(REFUSED_RECHECK)));
                }
            };
            let filer = store.with_audit(filed_by(obj));
            match filer.file_access_request(uid, &new).await {
                Ok(filed) => filed,
                Err(crate::store::StoreError::AlreadyExists { .. }) => {
                    report.set(Desired::new(
                        conditions::FILED,
                        false,
                        "AlreadyPending",
                        format!(
                            "{} has a pending access request for {} in {} already: wait for its decision, \
                             or revoke it",
                            new.requester.name,
                            new.role,
                            new.workspace.as_deref().unwrap_or("the organization")
                        ),
                    ));
                    return Ok((status_of(obj, &report, None, now), Some(Duration::from_secs(30))));
                }
                Err(source) => {
                    return Err(Error::StoreWrite {
                        kind: KIND,
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        source: Box::new(source),
                    });
                }
            }
        }
    };
    report.set(Desired::new(conditions::FILED, true, "Filed", format!("access request {}", filed.id)));
    let now_ms = now.as_millisecond();
    let phase = filed.phase(now_ms);
    let requeue = match phase {
        stored::AccessRequestStatus::Pending => Some(PENDING_RECHECK),
        // Say Expired once it is.
        stored::AccessRequestStatus::Approved => filed.expires_ms.map(|at| {
            Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)) + Duration::from_secs(1)
        }),
        _ => None,
    };
    Ok((status_of(obj, &report, Some(&filed), now), requeue))
}

/// What the spec files, or why it cannot be filed: `(reason, message)`.
fn plan(
    spec: &AccessRequestSpec,
    namespace: &str,
    name: &str,
    organization: Option<&Organization>,
    roles: &[Arc<Role>],
    requester_exists: bool,
) -> std::result::Result<NewAccessRequest, (&'static str, String)> {
    let Some(organization) = organization else {
        return Err(("OrganizationNotFound", format!("namespace {namespace} has no Organization")));
    };
    let organization_name = organization.name_any();
    if let Some(asked) = spec.organization.as_ref().filter(|asked| **asked != organization_name) {
        return Err((
            "OrganizationMismatch",
            format!("spec.organization is {asked}, but namespace {namespace} holds {organization_name}"),
        ));
    }
    let Some(policy) = &organization.spec.access_requests else {
        return Err((
            "AccessRequestsDisabled",
            format!(
                "Organization {organization_name} has no spec.accessRequests (who approves, for how long)"
            ),
        ));
    };
    let Some(role) = roles.iter().find(|r| r.name_any() == spec.role) else {
        return Err(("RoleNotFound", format!("no Role {} in namespace {namespace}", spec.role)));
    };
    match &spec.workspace {
        Some(workspace) if !organization.spec.workspaces.iter().any(|w| &w.name == workspace) => {
            return Err((
                "WorkspaceNotFound",
                format!("Organization {organization_name} declares no workspace {workspace}"),
            ));
        }
        None if role.spec.scope == crate::api::RoleScope::Workspace => {
            return Err((
                "WorkspaceRequired",
                format!("the role {} is granted in a workspace: name one", spec.role),
            ));
        }
        _ => {}
    }
    if !requester_exists {
        return Err((
            "RequesterNotFound",
            format!("no user {} in Organization {organization_name}", spec.requester),
        ));
    }
    let Some(duration) = spec.duration.positive() else {
        return Err(("InvalidDuration", format!("{} is not a positive duration", spec.duration)));
    };
    match policy.max_duration.positive() {
        Some(max) if duration <= max => {}
        _ => {
            return Err((
                "DurationTooLong",
                format!(
                    "{} is longer than spec.accessRequests.maxDuration {}",
                    spec.duration, policy.max_duration
                ),
            ));
        }
    }
    Ok(NewAccessRequest {
        organization: namespace.to_owned(),
        requester: Principal::user(spec.requester.clone()),
        requested_by: format!("AccessRequest {namespace}/{name}"),
        role: spec.role.clone(),
        workspace: spec.workspace.clone(),
        duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
        justification: spec.justification.trim().to_owned(),
        approvals_needed: if policy.two_approvers_for.contains(&spec.role) { 2 } else { 1 },
    })
}

/// Who filed it, as far as the object tells: the field manager of its
/// latest change (`kubectl-client-side-apply`, `argocd-controller`…).
fn filed_by(obj: &AccessRequest) -> AuditContext {
    let manager = reconcile::latest_change(obj.meta()).and_then(|entry| entry.manager);
    AuditContext::new(Actor::kubernetes(manager.as_deref()), Source::default())
}

/// The deleted object's request: a pending one withdrawn, an approved
/// one's grant revoked. Anything else (decided, ended, never filed) stays.
async fn withdraw(store: &Store, namespace: &str, name: &str, uid: &str) -> Result<()> {
    let deleted_by = AuditContext::new(Actor::kubernetes(None), Source::default());
    let comment = format!("AccessRequest {namespace}/{name} was deleted");
    store
        .with_audit(deleted_by)
        .revoke_access_request(namespace, uid, "kubernetes", Some(&comment))
        .await
        .map_err(|source| Error::StoreWrite {
            kind: KIND,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(())
}

fn phase_of(status: stored::AccessRequestStatus) -> AccessRequestPhase {
    match status {
        stored::AccessRequestStatus::Pending => AccessRequestPhase::Pending,
        stored::AccessRequestStatus::Approved => AccessRequestPhase::Approved,
        stored::AccessRequestStatus::Denied => AccessRequestPhase::Denied,
        stored::AccessRequestStatus::Expired => AccessRequestPhase::Expired,
        stored::AccessRequestStatus::Revoked => AccessRequestPhase::Revoked,
    }
}

/// The whole status: conditions from the report, the rest from the store.
fn status_of(
    obj: &AccessRequest,
    report: &Report,
    filed: Option<&stored::AccessRequest>,
    now: jiff::Timestamp,
) -> AccessRequestStatus {
    let previous = obj.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let generation = obj.meta().generation;
    let common = CommonStatus {
        observed_generation: generation,
        conditions: report.conditions("", &previous, generation, now),
    };
    let Some(filed) = filed else { return AccessRequestStatus { common, ..AccessRequestStatus::default() } };
    AccessRequestStatus {
        common,
        phase: Some(phase_of(filed.phase(now.as_millisecond()))),
        request_id: Some(filed.id.clone()),
        approvals: filed
            .approvals
            .iter()
            .map(|a| AccessRequestApproval {
                approver: a.approver.clone(),
                approved_at: rfc3339_ms(a.approved_ms),
                comment: a.comment.clone(),
            })
            .collect(),
        expires_at: filed.expires_ms.map(rfc3339_ms),
        decided_by: filed.decided_by.clone(),
        decided_at: filed.decided_ms.map(rfc3339_ms),
    }
}

/// Writes the whole status by server-side apply, unless it is unchanged.
async fn write_status(
    api: &Api<AccessRequest>,
    obj: &AccessRequest,
    status: AccessRequestStatus,
    namespace: &str,
    name: &str,
) -> Result<()> {
    if obj.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": KIND,
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await.map_err(
        |source| Error::PatchStatus {
            kind: KIND,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessRequestPolicy, Approvers, GoDuration, OrganizationSpec, RoleSpec};

    fn organization() -> Organization {
        let mut spec: OrganizationSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Acme",
            "workspaces": [{ "name": "emea" }],
        }))
        .unwrap();
        spec.access_requests = Some(AccessRequestPolicy {
            approvers: Approvers { role: None, permission: Some("iam.approve-access".into()) },
            two_approvers_for: vec!["officer".into()],
            max_duration: GoDuration::new("8h"),
            notifications: vec![],
        });
        let mut org = Organization::new("acme", spec);
        org.metadata.namespace = Some("acme".into());
        org
    }

    fn roles() -> Vec<Arc<Role>> {
        let spec: RoleSpec =
            serde_json::from_value(serde_json::json!({ "scope": "Workspace", "permissions": ["a.b"] }))
                .unwrap();
        vec![Arc::new(Role::new("officer", spec))]
    }

    fn spec(role: &str, workspace: Option<&str>, duration: &str) -> AccessRequestSpec {
        AccessRequestSpec {
            organization: None,
            requester: "ada@acme.test".into(),
            role: role.into(),
            workspace: workspace.map(str::to_owned),
            duration: GoDuration::new(duration),
            justification: " audit ".into(),
        }
    }

    fn reason(result: std::result::Result<NewAccessRequest, (&'static str, String)>) -> &'static str {
        result.err().map_or("filed", |(reason, _)| reason)
    }

    #[test]
    fn a_valid_spec_is_filed_with_the_policys_approvals_and_an_invalid_one_says_why() {
        let org = organization();
        let roles = roles();
        let new = plan(&spec("officer", Some("emea"), "2h"), "acme", "r", Some(&org), &roles, true).unwrap();
        assert_eq!((new.approvals_needed, new.duration_ms), (2, 7_200_000));
        assert_eq!(
            (new.justification.as_str(), new.requested_by.as_str()),
            ("audit", "AccessRequest acme/r")
        );

        let plan_of =
            |spec: AccessRequestSpec, exists| reason(plan(&spec, "acme", "r", Some(&org), &roles, exists));
        assert_eq!(plan_of(spec("nope", Some("emea"), "2h"), true), "RoleNotFound");
        assert_eq!(plan_of(spec("officer", Some("mars"), "2h"), true), "WorkspaceNotFound");
        assert_eq!(plan_of(spec("officer", None, "2h"), true), "WorkspaceRequired");
        assert_eq!(plan_of(spec("officer", Some("emea"), "2h"), false), "RequesterNotFound");
        assert_eq!(plan_of(spec("officer", Some("emea"), "9h"), true), "DurationTooLong");
        assert_eq!(plan_of(spec("officer", Some("emea"), "0s"), true), "InvalidDuration");
        let other =
            AccessRequestSpec { organization: Some("globex".into()), ..spec("officer", Some("emea"), "1h") };
        assert_eq!(plan_of(other, true), "OrganizationMismatch");
        assert_eq!(
            reason(plan(&spec("officer", Some("emea"), "1h"), "acme", "r", None, &roles, true)),
            "OrganizationNotFound"
        );
    }
}
