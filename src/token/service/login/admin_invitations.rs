//! `{issuer}/admin/invitations`: the page where an administrator with
//! `iam.invite-users` invites people and resends or revokes what is still
//! open. The same checks, store writes and mail as the admin API
//! ([`crate::token::service::invitations`]).
//!
//! ```text
//!  GET  {issuer}/admin/invitations  AdminPage<iam.invite-users> ─► form + pending/expired invitations
//!  POST {issuer}/admin/invitations  AdminPagePost (CSRF) ─ action=create|resend|revoke ─► the page, saying what happened
//! ```

use axum::extract::State;
use axum::http::StatusCode;

use super::admin_pages::{AdminPage, AdminPagePost};
use super::error::LoginError;
use super::issuer_path;
use super::pages::{AdminInvitationsPage, InvitationRow, Page};
use crate::store::{DesiredStateStore as _, InvitationFilter, InvitationStore as _, RoleRecord};
use crate::token::service::admin::IamInviteUsers;
use crate::token::service::invitations::{self, InvitationError, InvitationRequest, Inviter, MailOutcome};
use crate::token::service::state::TokenServiceState;

/// How many open invitations the page lists.
const LISTED: u32 = 200;

fn shown(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

async fn render(
    state: &TokenServiceState,
    page: &AdminPage<IamInviteUsers>,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let org = &page.org;
    let now = state.now().as_millisecond();
    let mut rows = Vec::new();
    for wanted in ["pending", "expired"] {
        let filter = InvitationFilter { state: Some(wanted.to_owned()), limit: LISTED, ..Default::default() };
        for invitation in state.store().list_invitations(&org.namespace, &filter, now).await? {
            rows.push(InvitationRow {
                place: invitation
                    .workspace
                    .as_ref()
                    .map_or("organization".to_owned(), |w| format!("workspace {w}")),
                roles: invitation.roles.join(", "),
                state: invitation.state(now),
                expires: shown(invitation.expires_ms),
                mail: match (&invitation.mail_sent_ms, &invitation.mail_error) {
                    (Some(at), _) => format!("sent {}", shown(*at)),
                    (None, Some(error)) => format!("failed: {error}"),
                    (None, None) => "not sent yet".to_owned(),
                },
                id: invitation.id,
                email: invitation.email,
            });
        }
    }
    let mut roles: Vec<String> =
        state.store().list::<RoleRecord>(&org.namespace).await?.into_iter().map(|r| r.meta.name).collect();
    roles.sort();
    let action = format!("{}/admin/invitations", issuer_path(state, &org.name));
    let view = AdminInvitationsPage {
        organization_display_name: &org.display_name,
        user_name: &page.user.user_name,
        action: &action,
        hidden: vec![page.csrf_field(state)],
        workspaces: org.spec.workspaces.iter().map(|w| w.name.clone()).collect(),
        roles,
        invitations: rows,
        message,
        succeeded: status.is_success(),
    };
    Ok(Page::new(status, &view))
}

/// `GET {issuer}/admin/invitations`.
pub(super) async fn show(
    State(state): State<TokenServiceState>,
    page: AdminPage<IamInviteUsers>,
) -> Result<Page, LoginError> {
    render(&state, &page, StatusCode::OK, None).await
}

/// `POST {issuer}/admin/invitations`: `action` is `create` (`email`,
/// `workspace`, `role`…), `resend` or `revoke` (`id`).
pub(super) async fn post(
    State(state): State<TokenServiceState>,
    post: AdminPagePost<IamInviteUsers>,
) -> Result<Page, LoginError> {
    let page = &post.page;
    let inviter = Inviter {
        principal: page.principal(),
        name: page.user.user_name.clone(),
        audit: page.audit_context(),
    };
    let id = post.field("id").unwrap_or_default().to_owned();
    let done = match post.field("action") {
        Some("create") => {
            let request = InvitationRequest {
                email: post.field("email").unwrap_or_default().to_owned(),
                workspace: post.field("workspace").map(str::to_owned),
                roles: post.all("role"),
                lifetime: None,
            };
            invitations::create(&state, &page.org, &inviter, request)
                .await
                .map(|(invitation, mail)| mailed("Invited", &invitation.email, &mail))
        }
        Some("resend") => invitations::resend(&state, &page.org, &inviter, &id)
            .await
            .map(|(invitation, mail)| mailed("Sent a new link to", &invitation.email, &mail)),
        Some("revoke") => invitations::revoke(&state, &page.org, &inviter, &id)
            .await
            .map(|invitation| format!("Revoked the invitation of {}.", invitation.email)),
        _ => return render(&state, page, StatusCode::BAD_REQUEST, Some("Choose what to do.")).await,
    };
    match done {
        Ok(message) => render(&state, page, StatusCode::OK, Some(&message)).await,
        Err(error) => {
            let (status, message) = explain(error)?;
            render(&state, page, status, Some(&message)).await
        }
    }
}

fn mailed(what: &str, email: &str, mail: &MailOutcome) -> String {
    match mail {
        MailOutcome::Sent => format!("{what} {email}: the link is on its way by mail."),
        MailOutcome::Failed(error) => {
            format!("{what} {email}, but the mail could not be sent ({error}). Resend to try again.")
        }
    }
}

/// What the page says about a refusal; faults of ours stay errors.
fn explain(error: InvitationError) -> Result<(StatusCode, String), LoginError> {
    let message = match error {
        InvitationError::Invalid { field, detail } => {
            (StatusCode::BAD_REQUEST, format!("{field}: {detail}."))
        }
        InvitationError::ScimProvisioning => (
            StatusCode::CONFLICT,
            "This organization provisions its users through SCIM: add the person in the identity provider."
                .to_owned(),
        ),
        InvitationError::RolesKeptInGit => (
            StatusCode::CONFLICT,
            "Role assignments are kept in Git here: invite without roles and add a RoleAssignment to Git."
                .to_owned(),
        ),
        InvitationError::Escalation { role, permission } => (
            StatusCode::FORBIDDEN,
            format!("The role {role} grants {permission}, which you do not hold: you cannot grant it."),
        ),
        InvitationError::UserExists(email) => {
            (StatusCode::CONFLICT, format!("A user {email} exists already."))
        }
        InvitationError::AlreadyInvited(email) => {
            (StatusCode::CONFLICT, format!("{email} has a pending invitation already: resend or revoke it."))
        }
        InvitationError::MailNotConfigured => (
            StatusCode::CONFLICT,
            "This service has no SMTP server configured, so invitations cannot be sent.".to_owned(),
        ),
        InvitationError::NotFound(_) => {
            (StatusCode::NOT_FOUND, "That invitation no longer exists.".to_owned())
        }
        InvitationError::NotPending { state, .. } => {
            (StatusCode::CONFLICT, format!("That invitation is {state} already."))
        }
        InvitationError::Store(error) => return Err(error.into()),
        InvitationError::Server(error) => return Err(error.into()),
    };
    Ok(message)
}
