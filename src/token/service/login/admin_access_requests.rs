//! `{issuer}/admin/access-requests/{id}`: the approval page the
//! notifications link to. Any signed-in user of the organization may open
//! it; what it shows and allows is the admin API's rule
//! ([`crate::token::service::admin::access_requests`]): the requester, an
//! approver of the request's scope or a holder of `iam.view` sees it (else
//! 404), and only an approver who is not the requester gets the approve and
//! deny buttons and may post them.
//!
//! ```text
//!  GET  …/admin/access-requests/{id}  AdminPage<SignedIn> ─► the request (+ the decision form)
//!  POST …/admin/access-requests/{id}  AdminPagePost (CSRF) ─ action=approve|deny, comment ─► the page, saying what happened
//! ```

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::admin_pages::{AdminPage, AdminPagePost, SignedIn};
use super::error::LoginError;
use super::issuer_path;
use super::pages::{AdminAccessRequestPage, Page};
use crate::store::access_requests::{
    AccessRequestStatus, AccessRequestStore as _, ApprovalOutcome, Decision,
};
use crate::token::service::admin::access_requests::{Standing, phase_name, standing_of};
use crate::token::service::state::TokenServiceState;

/// The longest comment the form takes.
const MAX_COMMENT: usize = 2000;

fn shown(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn not_found() -> LoginError {
    Page::notice(StatusCode::NOT_FOUND, "Not found", "There is no such access request for you here.").into()
}

async fn render(
    state: &TokenServiceState,
    page: &AdminPage<SignedIn>,
    id: &str,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let Some((request, standing)) = standing_of(state, &page.org, &page.principal(), id).await? else {
        return Err(not_found());
    };
    if !standing.sees() {
        return Err(not_found());
    }
    let now = state.now().as_millisecond();
    let phase = request.phase(now);
    let action = format!("{}/admin/access-requests/{}", issuer_path(state, &page.org.name), request.id);
    let approved_by_me =
        request.approvals.iter().any(|a| a.approver.eq_ignore_ascii_case(&page.user.user_name));
    let view = AdminAccessRequestPage {
        organization_display_name: &page.org.display_name,
        user_name: &page.user.user_name,
        action: &action,
        hidden: vec![page.csrf_field(state)],
        requester: &request.requester.name,
        role: &request.role,
        place: request.workspace.as_ref().map_or("the organization".to_owned(), |w| format!("workspace {w}")),
        duration: format!("{} minutes", request.duration_ms / 60_000),
        justification: &request.justification,
        phase: phase_name(phase),
        approvals: request
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "{} at {}{}",
                    a.approver,
                    shown(a.approved_ms),
                    a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
                )
            })
            .collect(),
        approvals_needed: request.approvals_needed,
        expires: request.expires_ms.map(shown),
        can_decide: may_decide(&standing) && phase == AccessRequestStatus::Pending && !approved_by_me,
        why_not: why_not(&standing, phase, approved_by_me),
        message,
        succeeded: status.is_success(),
    };
    Ok(Page::new(status, &view))
}

fn may_decide(standing: &Standing) -> bool {
    standing.approver && !standing.requester
}

/// Why the page shows no buttons, in words.
fn why_not(standing: &Standing, phase: AccessRequestStatus, approved_by_me: bool) -> Option<&'static str> {
    if phase != AccessRequestStatus::Pending {
        None
    } else if standing.requester {
        Some("You asked for this access: someone else must approve it.")
    } else if !standing.approver {
        Some("Only the approvers the organization names may decide this request.")
    } else if approved_by_me {
        Some("You have approved it; another approver's approval is needed.")
    } else {
        None
    }
}

/// `GET {issuer}/admin/access-requests/{id}`.
pub(super) async fn show(
    State(state): State<TokenServiceState>,
    Path((_, id)): Path<(String, String)>,
    page: AdminPage<SignedIn>,
) -> Result<Page, LoginError> {
    render(&state, &page, &id, StatusCode::OK, None).await
}

/// `POST {issuer}/admin/access-requests/{id}`: `action` is `approve` or
/// `deny`, with an optional `comment`.
pub(super) async fn post(
    State(state): State<TokenServiceState>,
    Path((_, id)): Path<(String, String)>,
    post: AdminPagePost<SignedIn>,
) -> Result<Page, LoginError> {
    let page = &post.page;
    let Some((_, standing)) = standing_of(&state, &page.org, &page.principal(), &id).await? else {
        return Err(not_found());
    };
    if !standing.sees() {
        return Err(not_found());
    }
    if !may_decide(&standing) {
        let text = if standing.requester {
            "You asked for this access: someone else must decide it."
        } else {
            "Only the approvers the organization names may decide this request."
        };
        return render(&state, page, &id, StatusCode::FORBIDDEN, Some(text)).await;
    }
    let comment: Option<String> = post.field("comment").map(|c| c.chars().take(MAX_COMMENT).collect());
    let store = state.store().with_audit(page.audit_context());
    let namespace = &page.org.namespace;
    let (status, message) = match post.field("action") {
        Some("approve") => {
            match store.approve_access_request(namespace, &id, &page.principal(), comment.as_deref()).await? {
                ApprovalOutcome::Granted(_) => {
                    (StatusCode::OK, "Approved: the access is granted.".to_owned())
                }
                ApprovalOutcome::Recorded(_) => {
                    (StatusCode::OK, "Your approval is recorded; another approver's is needed.".to_owned())
                }
                ApprovalOutcome::AlreadyApproved(_) => {
                    (StatusCode::CONFLICT, "You have approved it already.".to_owned())
                }
                ApprovalOutcome::NotPending(_) => (StatusCode::CONFLICT, "It is decided already.".to_owned()),
                ApprovalOutcome::Absent => return Err(not_found()),
            }
        }
        Some("deny") => {
            let by = page.user.user_name.clone();
            match store.deny_access_request(namespace, &id, &by, comment.as_deref()).await? {
                Decision::Done(_) => (StatusCode::OK, "Denied.".to_owned()),
                Decision::NotApplicable(_) => (StatusCode::CONFLICT, "It is decided already.".to_owned()),
                Decision::Absent => return Err(not_found()),
            }
        }
        _ => (StatusCode::BAD_REQUEST, "Choose approve or deny.".to_owned()),
    };
    render(&state, page, &id, status, Some(&message)).await
}
