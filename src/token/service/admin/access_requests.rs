//! Access requests over the admin API: any user or client of the
//! organization asks for a role for a while; the approvers of the
//! Organization's `spec.accessRequests` policy decide. The store
//! ([`crate::store::access_requests`]) makes each step atomic and audited;
//! this module decides who may take it.
//!
//! ```text
//!  POST /access-requests               the caller asks (or, with iam.manage, files for a user)
//!  GET  /access-requests?mine          the caller's own
//!  GET  /access-requests?pendingForMe  pending ones the caller may approve and has not
//!  GET  /access-requests               all (iam.view)
//!  GET  /access-requests/{id}          the requester, an approver of its scope, or iam.view; else 404
//!  POST /access-requests/{id}/approve  an approver who is not the requester; counted once each
//!  POST /access-requests/{id}/deny     an approver who is not the requester
//!  POST /access-requests/{id}/revoke   the requester (withdraw / give up) or an approver
//! ```
//!
//! An approver holds the policy's role (organization-wide, or in the
//! request's workspace) or its permission in the request's scope, at the
//! moment of the decision.

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, RawPathParams, RawQuery, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, Versioned, created_cursor, page_limit, parse_created_cursor, query_pairs};
use super::openapi::{created, problems};
use super::{AdminError, IamManage};
use crate::api::{AccessRequestPolicy, GoDuration};
use crate::audit::event::rfc3339_ms;
use crate::audit::{Actor, AuditContext, Source};
use crate::authz::{AccessIndex, Decision as AccessCheck, Principal, PrincipalKind, Scope};
use crate::store::access_requests::{
    AccessRequest, AccessRequestFilter, AccessRequestStatus, AccessRequestStore as _, ApprovalOutcome,
    Decision, NewAccessRequest,
};
use crate::store::{DesiredStateStore as _, RoleRecord, RoleScope};
use crate::token::service::error::OAuthError;
use crate::token::service::require_permission::{Authenticated, Permission};
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::service::verify::bearer_token;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;
const MAX_JUSTIFICATION: usize = 2000;
const MAX_COMMENT: usize = 2000;

/// A verified caller of the organization, whatever it holds.
pub struct Member {
    pub authenticated: Authenticated,
    pub source: Source,
}

impl Member {
    fn principal(&self) -> &Principal {
        &self.authenticated.principal
    }

    /// How the audit trail and the request name the caller.
    fn name(&self) -> &str {
        &self.authenticated.principal.name
    }

    fn audit_context(&self) -> AuditContext {
        let claims = &self.authenticated.claims;
        let actor = match self.authenticated.principal.kind {
            PrincipalKind::User => Actor::user(&claims.sub, self.name(), Some(&claims.client_id)),
            _ => Actor::client(&claims.client_id),
        };
        AuditContext::new(actor, self.source.clone())
    }
}

impl FromRequestParts<TokenServiceState> for Member {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &TokenServiceState) -> Result<Self, AdminError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| OAuthError::internal("an access request route needs an {org} path parameter"))?;
        let organization =
            params.iter().find(|(name, _)| *name == "org").map(|(_, value)| value.to_owned()).ok_or_else(
                || OAuthError::internal("an access request route needs an {org} path parameter"),
            )?;
        let token = bearer_token(&parts.headers)?;
        let authenticated = state.authenticate(&organization, token).await?;
        Ok(Self { authenticated, source: Source::of_request(parts) })
    }
}

/// `{id}` of an access request route.
#[derive(Deserialize, JsonSchema)]
pub struct AccessRequestPath {
    id: String,
}

/// What `POST {issuer}/api/v1/access-requests` takes.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewAccessRequestBody {
    /// The role asked for.
    role: String,
    /// The workspace to hold it in; absent: the organization.
    #[serde(default)]
    workspace: Option<String>,
    /// How long, as a Go duration (`2h`, `90m`) or ISO 8601 (`PT2H`); at
    /// most the organization's `spec.accessRequests.maxDuration`.
    duration: String,
    /// Why: shown to the approvers and kept in the audit trail.
    justification: String,
    /// The userName to file the request for (needs `iam.manage`); absent:
    /// the caller asks for itself.
    #[serde(default)]
    requester: Option<String>,
}

/// What approve, deny and revoke take (the body may be empty).
#[derive(Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DecisionBody {
    /// Kept with the decision and in the audit trail.
    #[serde(default)]
    comment: Option<String>,
}

/// An access request as the API shows it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestView {
    pub id: String,
    pub requester: RequesterView,
    /// Who filed it (the requester, or an administrator for them).
    pub requested_by: String,
    pub role: String,
    pub workspace: Option<String>,
    /// The duration asked for, in seconds.
    pub duration_seconds: i64,
    pub justification: String,
    /// `Pending`, `Approved`, `Denied`, `Expired` or `Revoked`.
    #[schemars(extend("enum" = ["Pending", "Approved", "Denied", "Expired", "Revoked"]))]
    pub phase: &'static str,
    pub approvals_needed: i64,
    pub approvals: Vec<ApprovalView>,
    pub created_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    /// When the grant ends (ended), once approved.
    pub expires_at: Option<String>,
    pub version: i64,
}

/// Who asked.
#[derive(Serialize, JsonSchema)]
pub struct RequesterView {
    /// `User` or `Client`.
    pub kind: &'static str,
    pub name: String,
}

/// One approval.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    pub approver: String,
    pub approved_at: String,
    pub comment: Option<String>,
}

/// A page of access requests.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestList {
    pub access_requests: Vec<AccessRequestView>,
    /// Present when there is a next page: its `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The query of a list of access requests.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestQuery {
    /// Only the caller's own requests (no value needed).
    pub mine: Option<String>,
    /// Only pending requests the caller may approve and has not yet.
    pub pending_for_me: Option<String>,
    /// `pending`, `approved`, `denied`, `expired` or `revoked`, as stored.
    pub status: Option<String>,
    /// How many at most (default 100, at most 500).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

pub(crate) fn phase_name(status: AccessRequestStatus) -> &'static str {
    match status {
        AccessRequestStatus::Pending => "Pending",
        AccessRequestStatus::Approved => "Approved",
        AccessRequestStatus::Denied => "Denied",
        AccessRequestStatus::Expired => "Expired",
        AccessRequestStatus::Revoked => "Revoked",
    }
}

fn view(request: &AccessRequest, now_ms: i64) -> AccessRequestView {
    AccessRequestView {
        id: request.id.clone(),
        requester: RequesterView {
            kind: match request.requester.kind {
                PrincipalKind::User => "User",
                PrincipalKind::Group => "Group",
                PrincipalKind::Client => "Client",
            },
            name: request.requester.name.clone(),
        },
        requested_by: request.requested_by.clone(),
        role: request.role.clone(),
        workspace: request.workspace.clone(),
        duration_seconds: request.duration_ms / 1000,
        justification: request.justification.clone(),
        phase: phase_name(request.phase(now_ms)),
        approvals_needed: request.approvals_needed,
        approvals: request
            .approvals
            .iter()
            .map(|a| ApprovalView {
                approver: a.approver.clone(),
                approved_at: rfc3339_ms(a.approved_ms),
                comment: a.comment.clone(),
            })
            .collect(),
        created_at: rfc3339_ms(request.created_ms),
        decided_at: request.decided_ms.map(rfc3339_ms),
        decided_by: request.decided_by.clone(),
        decision_comment: request.decision_comment.clone(),
        expires_at: request.expires_ms.map(rfc3339_ms),
        version: request.version,
    }
}

fn refused(status: StatusCode, code: &'static str, detail: impl Into<String>) -> AdminError {
    AdminError::Refused { status, code, detail: detail.into() }
}

/// The organization's policy; 409 when it has none.
fn policy(org: &OrganizationView) -> Result<&AccessRequestPolicy, AdminError> {
    org.spec.access_requests.as_ref().ok_or_else(|| {
        refused(
            StatusCode::CONFLICT,
            "access-requests-disabled",
            "This organization takes no access requests: its Organization has no spec.accessRequests \
             (who approves, and for how long).",
        )
    })
}

fn scope_of(workspace: Option<&str>) -> Scope {
    match workspace {
        Some(workspace) => Scope::Workspace(workspace.to_owned()),
        None => Scope::Organization,
    }
}

/// Whether `principal` may decide requests in `scope` under `policy`, at `now` (seconds).
fn is_approver(
    index: &AccessIndex,
    policy: &AccessRequestPolicy,
    principal: &Principal,
    scope: &Scope,
    now: i64,
) -> bool {
    if let Some(permission) = &policy.approvers.permission
        && matches!(index.check(principal, permission, scope, now), AccessCheck::Allowed(_))
    {
        return true;
    }
    if let Some(role) = &policy.approvers.role {
        return index.assigned_roles(principal, now).iter().any(|grant| {
            grant.role() == role && (*grant.scope() == Scope::Organization || grant.scope() == scope)
        });
    }
    false
}

fn same_principal(a: &Principal, b: &Principal) -> bool {
    a.keyed() == b.keyed()
}

/// A duration as a Go duration (`2h`) or ISO 8601 (`PT2H`).
fn parse_duration(text: &str) -> Option<jiff::SignedDuration> {
    GoDuration::new(text.trim())
        .positive()
        .or_else(|| text.trim().parse::<jiff::SignedDuration>().ok().filter(|d| d.is_positive()))
}

fn optional_text(field: &str, text: Option<String>, max: usize) -> Result<Option<String>, AdminError> {
    match text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        Some(text) if text.chars().count() > max => {
            Err(AdminError::invalid_field(field, format!("at most {max} characters")))
        }
        other => Ok(other),
    }
}

/// `POST {issuer}/api/v1/access-requests`: 201 with the pending request.
pub async fn create(
    State(state): State<TokenServiceState>,
    caller: Member,
    body: JsonBody<NewAccessRequestBody>,
) -> Result<Versioned<AccessRequestView>, AdminError> {
    let org = caller.authenticated.org.clone();
    let policy = policy(&org)?;
    let body = body.read()?;
    let now = state.now();
    let index = state.access_index(&org).await?;
    let requester = match &body.requester {
        Some(name)
            if !(caller.principal().kind == PrincipalKind::User
                && same_principal(caller.principal(), &Principal::user(name.clone()))) =>
        {
            let on_behalf =
                index.index.check(caller.principal(), IamManage::NAME, &Scope::Organization, now.as_second());
            if !matches!(on_behalf, AccessCheck::Allowed(_)) {
                return Err(refused(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "Filing an access request for someone else requires the permission {}.",
                        IamManage::NAME
                    ),
                ));
            }
            Principal::user(name.clone())
        }
        _ => caller.principal().clone(),
    };
    if requester.kind == PrincipalKind::Group {
        return Err(AdminError::invalid_field("requester", "a user or a client asks, not a group"));
    }
    let role = state.store().get::<RoleRecord>(&org.namespace, &body.role).await?.ok_or_else(|| {
        AdminError::invalid_field("role", format!("no role {} in this organization", body.role))
    })?;
    if let Some(workspace) = &body.workspace
        && !org.spec.workspaces.iter().any(|w| &w.name == workspace)
    {
        return Err(AdminError::invalid_field(
            "workspace",
            format!("the organization declares no workspace {workspace}"),
        ));
    }
    if role.scope == RoleScope::Workspace && body.workspace.is_none() {
        return Err(AdminError::invalid_field(
            "workspace",
            format!("the role {} is granted in a workspace: name one", body.role),
        ));
    }
    let duration = parse_duration(&body.duration).ok_or_else(|| {
        AdminError::invalid_field("duration", "a positive duration such as 2h, 90m or PT2H")
    })?;
    let max = policy.max_duration.positive().ok_or_else(|| {
        refused(
            StatusCode::CONFLICT,
            "access-requests-misconfigured",
            format!(
                "The organization's spec.accessRequests.maxDuration {} is not a duration.",
                policy.max_duration
            ),
        )
    })?;
    if duration > max {
        return Err(AdminError::invalid_field(
            "duration",
            format!("at most {} (the organization's spec.accessRequests.maxDuration)", policy.max_duration),
        ));
    }
    let justification = optional_text("justification", Some(body.justification), MAX_JUSTIFICATION)?
        .ok_or_else(|| AdminError::invalid_field("justification", "say why the access is needed"))?;
    let approvals_needed = if policy.two_approvers_for.contains(&body.role) { 2 } else { 1 };
    let new = NewAccessRequest {
        organization: org.namespace.clone(),
        requester,
        requested_by: caller.name().to_owned(),
        role: body.role,
        workspace: body.workspace,
        duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
        justification,
        approvals_needed,
    };
    let store = state.store().with_audit(caller.audit_context());
    let request = store.create_access_request(&new).await.map_err(|error| match error {
        crate::store::StoreError::AlreadyExists { .. } => AdminError::Conflict(
            "There is a pending access request for this role and scope already: wait for its decision, \
             or revoke it first."
                .to_owned(),
        ),
        other => other.into(),
    })?;
    let location = format!("{}/api/v1/access-requests/{}", state.issuer(&org.name), request.id);
    Ok(Versioned::created(request.version, view(&request, now.as_millisecond()), location))
}

/// `GET {issuer}/api/v1/access-requests?mine|pendingForMe&status=&limit=&cursor=`: oldest first.
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: Member,
    RawQuery(query): RawQuery,
) -> Result<Json<AccessRequestList>, AdminError> {
    let org = caller.authenticated.org.clone();
    let mut filter = AccessRequestFilter { limit: DEFAULT_PAGE, ..AccessRequestFilter::default() };
    let (mut mine, mut pending_for_me) = (false, false);
    for (name, value) in query_pairs(query.as_deref().unwrap_or_default())? {
        match name.as_ref() {
            "mine" => mine = true,
            "pendingForMe" => pending_for_me = true,
            "limit" => filter.limit = page_limit(&value, MAX_PAGE)?,
            "status" => {
                filter.status = Some(AccessRequestStatus::parse(&value).ok_or_else(|| {
                    AdminError::invalid_parameter(
                        "status",
                        "one of pending, approved, denied, expired, revoked",
                    )
                })?);
            }
            "cursor" => filter.after = Some(parse_created_cursor(&value)?),
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    let now = state.now();
    let index = state.access_index(&org).await?;
    if mine {
        filter.requester = Some(caller.principal().clone());
    } else if pending_for_me {
        filter.status = Some(AccessRequestStatus::Pending);
    } else {
        let view_all =
            index.index.check(caller.principal(), "iam.view", &Scope::Organization, now.as_second());
        if !matches!(view_all, AccessCheck::Allowed(_)) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Listing every access request requires the permission iam.view; ask for ?mine or ?pendingForMe.",
            ));
        }
    }
    // `?pendingForMe` keeps only what the caller may decide, which needs the
    // access index: pages are read until `limit` of those are found.
    let pending_for = (pending_for_me && !mine).then(|| policy(&org)).transpose()?;
    let me = caller.principal();
    let decidable = |request: &AccessRequest| {
        pending_for.is_none_or(|policy| {
            !same_principal(&request.requester, me)
                && !request
                    .approvals
                    .iter()
                    .any(|a| same_principal(&Principal { kind: me.kind, name: a.approver.clone() }, me))
                && is_approver(
                    &index.index,
                    policy,
                    me,
                    &scope_of(request.workspace.as_deref()),
                    now.as_second(),
                )
        })
    };
    // One more than `limit` is looked for, to know whether a next page has any.
    let limit = filter.limit as usize;
    filter.limit += 1;
    let mut found = Vec::new();
    loop {
        let page = state.store().list_access_requests(&org.namespace, &filter).await?;
        let last_page = page.len() < filter.limit as usize;
        for request in page {
            filter.after = Some((request.created_ms, request.id.clone()));
            if decidable(&request) {
                found.push(request);
                if found.len() > limit {
                    break;
                }
            }
        }
        if found.len() > limit || last_page {
            break;
        }
    }
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = found.last().filter(|_| more).map(|last| created_cursor(last.created_ms, &last.id));
    let access_requests = found.iter().map(|r| view(r, now.as_millisecond())).collect();
    Ok(Json(AccessRequestList { access_requests, next_cursor }))
}

/// Who a principal is to a request.
pub(crate) struct Standing {
    pub requester: bool,
    pub approver: bool,
    pub viewer: bool,
}

impl Standing {
    /// Whether the principal may see the request at all.
    pub fn sees(&self) -> bool {
        self.requester || self.approver || self.viewer
    }
}

/// The request `id` of `org` and who `me` is to it; `None` when there is no
/// such request. Shared by the API and the approval page.
pub(crate) async fn standing_of(
    state: &TokenServiceState,
    org: &OrganizationView,
    me: &Principal,
    id: &str,
) -> Result<Option<(AccessRequest, Standing)>, OAuthError> {
    let Some(request) = state.store().get_access_request(&org.namespace, id).await? else { return Ok(None) };
    let index = state.access_index(org).await?;
    let now = state.now().as_second();
    let scope = scope_of(request.workspace.as_deref());
    let standing = Standing {
        requester: same_principal(&request.requester, me),
        approver: org
            .spec
            .access_requests
            .as_ref()
            .is_some_and(|policy| is_approver(&index.index, policy, me, &scope, now)),
        viewer: matches!(
            index.index.check(me, "iam.view", &Scope::Organization, now),
            AccessCheck::Allowed(_)
        ),
    };
    Ok(Some((request, standing)))
}

/// The request of the caller's organization, and who the caller is to it;
/// 404 for one the caller may not see (as for one that does not exist).
async fn load(
    state: &TokenServiceState,
    caller: &Member,
    id: &str,
) -> Result<(AccessRequest, Standing), AdminError> {
    match standing_of(state, &caller.authenticated.org, caller.principal(), id).await? {
        Some((request, standing)) if standing.sees() => Ok((request, standing)),
        _ => Err(AdminError::NotFound { kind: "access request", id: id.to_owned() }),
    }
}

/// `GET {issuer}/api/v1/access-requests/{id}`.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: Member,
    Path(path): Path<AccessRequestPath>,
) -> Result<Versioned<AccessRequestView>, AdminError> {
    let (request, _) = load(&state, &caller, &path.id).await?;
    Ok(Versioned::ok(request.version, view(&request, state.now().as_millisecond())))
}

/// Refuses a decision by the requester, or by someone who is not an approver.
fn require_decider(standing: &Standing, verb: &str) -> Result<(), AdminError> {
    if standing.requester {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "self-approval",
            format!("You asked for this access: someone else must {verb} it."),
        ));
    }
    if !standing.approver {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not-an-approver",
            format!(
                "Only the approvers the organization names (spec.accessRequests.approvers) may {verb} an \
                 access request for this scope."
            ),
        ));
    }
    Ok(())
}

fn not_pending(request: &AccessRequest, now_ms: i64) -> AdminError {
    AdminError::Conflict(format!(
        "The access request {} is {}: only a pending one can be decided.",
        request.id,
        phase_name(request.phase(now_ms))
    ))
}

/// `POST {issuer}/api/v1/access-requests/{id}/approve`: records the
/// caller's approval; the last one needed grants the role until `expiresAt`.
pub async fn approve(
    State(state): State<TokenServiceState>,
    caller: Member,
    Path(path): Path<AccessRequestPath>,
    body: JsonBody<DecisionBody>,
) -> Result<Versioned<AccessRequestView>, AdminError> {
    let (_, standing) = load(&state, &caller, &path.id).await?;
    require_decider(&standing, "approve")?;
    let comment = optional_text("comment", body.read_or_default()?.comment, MAX_COMMENT)?;
    let org = &caller.authenticated.org;
    let store = state.store().with_audit(caller.audit_context());
    let outcome = store
        .approve_access_request(&org.namespace, &path.id, caller.principal(), comment.as_deref())
        .await?;
    let now = state.now().as_millisecond();
    match outcome {
        ApprovalOutcome::Granted(request) | ApprovalOutcome::Recorded(request) => {
            Ok(Versioned::ok(request.version, view(&request, now)))
        }
        ApprovalOutcome::AlreadyApproved(_) => Err(AdminError::Conflict(
            "You have approved this request already; another approver's approval is needed.".to_owned(),
        )),
        ApprovalOutcome::NotPending(request) => Err(not_pending(&request, now)),
        ApprovalOutcome::Absent => Err(AdminError::NotFound { kind: "access request", id: path.id }),
    }
}

/// `POST {issuer}/api/v1/access-requests/{id}/deny`.
pub async fn deny(
    State(state): State<TokenServiceState>,
    caller: Member,
    Path(path): Path<AccessRequestPath>,
    body: JsonBody<DecisionBody>,
) -> Result<Versioned<AccessRequestView>, AdminError> {
    let (_, standing) = load(&state, &caller, &path.id).await?;
    require_decider(&standing, "deny")?;
    let comment = optional_text("comment", body.read_or_default()?.comment, MAX_COMMENT)?;
    let org = &caller.authenticated.org;
    let store = state.store().with_audit(caller.audit_context());
    let decision =
        store.deny_access_request(&org.namespace, &path.id, caller.name(), comment.as_deref()).await?;
    decided(decision, &path.id, state.now().as_millisecond())
}

/// `POST {issuer}/api/v1/access-requests/{id}/revoke`: the requester
/// withdraws or gives the access up, or an approver ends it; the grant
/// stops at once.
pub async fn revoke(
    State(state): State<TokenServiceState>,
    caller: Member,
    Path(path): Path<AccessRequestPath>,
    body: JsonBody<DecisionBody>,
) -> Result<Versioned<AccessRequestView>, AdminError> {
    let (_, standing) = load(&state, &caller, &path.id).await?;
    if !(standing.requester || standing.approver) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not-an-approver",
            "Only the requester or an approver may revoke an access request.",
        ));
    }
    let comment = optional_text("comment", body.read_or_default()?.comment, MAX_COMMENT)?;
    let org = &caller.authenticated.org;
    let store = state.store().with_audit(caller.audit_context());
    let decision =
        store.revoke_access_request(&org.namespace, &path.id, caller.name(), comment.as_deref()).await?;
    decided(decision, &path.id, state.now().as_millisecond())
}

fn decided(decision: Decision, id: &str, now_ms: i64) -> Result<Versioned<AccessRequestView>, AdminError> {
    match decision {
        Decision::Done(request) => Ok(Versioned::ok(request.version, view(&request, now_ms))),
        Decision::NotApplicable(request) => Err(AdminError::Conflict(format!(
            "The access request {} is {}: nothing to change.",
            request.id,
            phase_name(request.phase(now_ms))
        ))),
        Decision::Absent => Err(AdminError::NotFound { kind: "access request", id: id.to_owned() }),
    }
}

pub fn create_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Ask for a role for a while; approvers decide")
        .with(created)
        .with(|op| problems(op, &[400, 403, 409, 413]))
}

pub fn list_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("List access requests: ?mine, ?pendingForMe, or all with iam.view")
        .input::<Query<AccessRequestQuery>>()
        .with(|op| problems(op, &[400, 403]))
}

pub fn get_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("An access request (its requester, an approver, or iam.view)")
}

pub fn approve_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Approve (never your own); the last approval needed grants the role")
        .with(|op| problems(op, &[400, 403, 409]))
}

pub fn deny_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Deny a pending access request").with(|op| problems(op, &[400, 403, 409]))
}

pub fn revoke_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Withdraw or end an access request; its grant stops at once")
        .with(|op| problems(op, &[400, 403, 409]))
}
