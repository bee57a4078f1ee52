//! Invitations over the admin API, all with `iam.invite-users`: create
//! (the link goes by mail only), list, get, resend (a new link; the old one
//! stops working) and revoke, each audited in its transaction. The checks
//! and the mail are [`crate::token::service::invitations`]'s, shared with
//! the admin page.
//!
//! The answer never holds the link or its token. `mail.status` says how the
//! mail went: `sent`, or `failed` with the SMTP server's reason (the
//! invitation is kept; resend to try again).

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::Query;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, Versioned, created_cursor, page_limit, parse_created_cursor, query_pairs};
use super::openapi::{created, problems};
use super::{AdminCaller, AdminError, IamInviteUsers};
use crate::api::GoDuration;
use crate::audit::event::rfc3339_ms;
use crate::store::{Invitation, InvitationFilter, InvitationStore as _};
use crate::token::service::invitations::{self, InvitationError, InvitationRequest, Inviter, MailOutcome};
use crate::token::service::state::TokenServiceState;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;
const STATES: [&str; 4] = ["pending", "expired", "accepted", "revoked"];

/// `{id}` of an invitation route.
#[derive(Deserialize, JsonSchema)]
pub struct InvitationPath {
    id: String,
}

/// What `POST {issuer}/api/v1/invitations` takes.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewInvitationBody {
    email: String,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// How long the link works, as a Go duration (`168h`, `30m`); default 7 days.
    #[serde(default)]
    expires_in: Option<String>,
}

fn inviter<P: crate::token::service::require_permission::Permission>(caller: &AdminCaller<P>) -> Inviter {
    Inviter {
        principal: caller.authorized.principal.clone(),
        name: caller.authorized.principal.name.to_string(),
        audit: caller.audit_context(),
    }
}

/// `POST {issuer}/api/v1/invitations`: 201 with the invitation, its
/// `Location` and `ETag`, and how its mail went.
pub async fn create(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamInviteUsers>,
    body: JsonBody<NewInvitationBody>,
) -> Result<Versioned<InvitationView>, AdminError> {
    let body = body.read()?;
    let lifetime = match body.expires_in {
        Some(text) => Some(
            GoDuration::new(text)
                .positive()
                .ok_or_else(|| AdminError::invalid_field("expiresIn", "a duration such as 168h or 30m"))?,
        ),
        None => None,
    };
    let org = state.require_organization(&caller.authorized.organization).await?;
    let request =
        InvitationRequest { email: body.email, workspace: body.workspace, roles: body.roles, lifetime };
    let (invitation, mail) =
        invitations::create(&state, &org, &inviter(&caller), request).await.map_err(problem)?;
    let location = format!("{}/api/v1/invitations/{}", state.issuer(&org.name), invitation.id);
    Ok(Versioned::created(invitation.version, invitation_view(&state, &invitation, Some(&mail)), location))
}

/// `GET {issuer}/api/v1/invitations?state=&email=&workspace=&limit=&cursor=`:
/// oldest first, in pages.
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamInviteUsers>,
    RawQuery(query): RawQuery,
) -> Result<Json<InvitationList>, AdminError> {
    let mut filter = parse_query(query.as_deref().unwrap_or_default())?;
    let limit = filter.limit;
    filter.limit += 1;
    let org = state.require_organization(&caller.authorized.organization).await?;
    let now = state.now().as_millisecond();
    let mut found = state.store().list_invitations(&org.namespace, &filter, now).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = found.last().filter(|_| more).map(|last| created_cursor(last.created_ms, &last.id));
    let invitations = found.iter().map(|i| invitation_view(&state, i, None)).collect();
    Ok(Json(InvitationList { invitations, next_cursor }))
}

/// `GET {issuer}/api/v1/invitations/{id}`.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamInviteUsers>,
    Path(path): Path<InvitationPath>,
) -> Result<Versioned<InvitationView>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let invitation = state
        .store()
        .get_invitation(&org.namespace, &path.id)
        .await?
        .ok_or_else(|| problem(InvitationError::NotFound(path.id.clone())))?;
    Ok(Versioned::ok(invitation.version, invitation_view(&state, &invitation, None)))
}

/// `POST {issuer}/api/v1/invitations/{id}/resend`: a new link by mail; the
/// previous one no longer works, and the lifetime starts again.
pub async fn resend(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamInviteUsers>,
    Path(path): Path<InvitationPath>,
) -> Result<Versioned<InvitationView>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let (invitation, mail) =
        invitations::resend(&state, &org, &inviter(&caller), &path.id).await.map_err(problem)?;
    Ok(Versioned::ok(invitation.version, invitation_view(&state, &invitation, Some(&mail))))
}

/// `POST {issuer}/api/v1/invitations/{id}/revoke`: the link stops working.
pub async fn revoke(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamInviteUsers>,
    Path(path): Path<InvitationPath>,
) -> Result<Versioned<InvitationView>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let invitation = invitations::revoke(&state, &org, &inviter(&caller), &path.id).await.map_err(problem)?;
    Ok(Versioned::ok(invitation.version, invitation_view(&state, &invitation, None)))
}

/// An invitation as the API shows it (never its link).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub workspace: Option<String>,
    pub roles: Vec<String>,
    /// `pending`, `expired`, `accepted` or `revoked`.
    #[schemars(extend("enum" = ["pending", "expired", "accepted", "revoked"]))]
    pub state: String,
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
    /// How many links were sent (the first, and each resend).
    pub links: i64,
    pub mail: MailView,
    pub accepted_at: Option<String>,
    /// The user the acceptance created.
    pub user_id: Option<String>,
    pub revoked_at: Option<String>,
    pub version: i64,
}

/// How the invitation's mail went.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailView {
    /// `sent`, `failed` (resend to try again) or `sending`.
    #[schemars(extend("enum" = ["sent", "failed", "sending"]))]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// The SMTP server's reason, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of invitations.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationList {
    pub invitations: Vec<InvitationView>,
    /// Present when there is a next page: its `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The invitation as the API shows it. `mail`: the outcome of a send this
/// request made, else what the store recorded.
fn invitation_view(
    state: &TokenServiceState,
    invitation: &Invitation,
    mail: Option<&MailOutcome>,
) -> InvitationView {
    let view = |status, sent_at, error: Option<&String>| MailView { status, sent_at, error: error.cloned() };
    let mail = match mail {
        Some(MailOutcome::Sent) => view("sent", None, None),
        Some(MailOutcome::Failed(error)) => view("failed", None, Some(error)),
        None => match (&invitation.mail_sent_ms, &invitation.mail_error) {
            (Some(at), _) => view("sent", Some(rfc3339_ms(*at)), None),
            (None, Some(error)) => view("failed", None, Some(error)),
            (None, None) => view("sending", None, None),
        },
    };
    InvitationView {
        id: invitation.id.clone(),
        email: invitation.email.clone(),
        workspace: invitation.workspace.clone(),
        roles: invitation.roles.clone(),
        state: invitation.state(state.now().as_millisecond()).to_string(),
        invited_by: invitation.invited_by.clone(),
        created_at: rfc3339_ms(invitation.created_ms),
        expires_at: rfc3339_ms(invitation.expires_ms),
        links: invitation.sends,
        mail,
        accepted_at: invitation.accepted_ms.map(rfc3339_ms),
        user_id: invitation.accepted_user_id.clone(),
        revoked_at: invitation.revoked_ms.map(rfc3339_ms),
        version: invitation.version,
    }
}

pub fn create_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Invite an email address: the link goes by mail only")
        .with(created)
        .with(|op| problems(op, &[400, 403, 409, 413]))
}

pub fn list_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("List invitations, oldest first")
        .input::<Query<InvitationQuery>>()
        .with(|op| problems(op, &[400]))
}

pub fn get_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("An invitation")
}

pub fn resend_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Send a new link; the previous one stops working").with(|op| problems(op, &[409]))
}

pub fn revoke_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Revoke an invitation: its link stops working").with(|op| problems(op, &[409]))
}

/// The query of a list of invitations.
#[derive(Deserialize, JsonSchema)]
pub struct InvitationQuery {
    /// `pending`, `expired`, `accepted` or `revoked`.
    pub state: Option<String>,
    pub email: Option<String>,
    pub workspace: Option<String>,
    /// How many at most (default 100, at most 500).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The problem document of each refusal.
pub(crate) fn problem(error: InvitationError) -> AdminError {
    let refused =
        |status: StatusCode, code: &'static str, detail: String| AdminError::Refused { status, code, detail };
    match error {
        InvitationError::Invalid { field, detail } => AdminError::invalid_field(&field, detail),
        InvitationError::ScimProvisioning => refused(
            StatusCode::CONFLICT,
            "provisioned-by-scim",
            "This organization provisions its users through SCIM (spec.provisioning.mode: scim): \
             add the person in the identity provider instead of inviting them."
                .to_owned(),
        ),
        InvitationError::RolesKeptInGit => refused(
            StatusCode::CONFLICT,
            "managed-in-git",
            "This organization keeps its role assignments in Git (spec.administration.roleSource: \
             GitOps): invite without roles, and add a RoleAssignment naming the invited email to Git; \
             it takes effect when the invitation is accepted."
                .to_owned(),
        ),
        InvitationError::Escalation { role, permission } => refused(
            StatusCode::FORBIDDEN,
            "escalation",
            format!(
                "The role {role} grants {permission}, which you do not hold there: an invitation \
                 grants nothing its inviter lacks."
            ),
        ),
        InvitationError::UserExists(email) => {
            AdminError::Conflict(format!("A user {email} already exists in this organization."))
        }
        InvitationError::AlreadyInvited(email) => AdminError::Conflict(format!(
            "{email} has a pending invitation already: resend it, or revoke it first."
        )),
        InvitationError::MailNotConfigured => refused(
            StatusCode::CONFLICT,
            "mail-not-configured",
            "This token service has no SMTP server (--smtp-url), so no invitation link can be sent."
                .to_owned(),
        ),
        InvitationError::NotFound(id) => AdminError::NotFound { kind: "invitation", id },
        InvitationError::NotPending { id, state } => {
            AdminError::Conflict(format!("The invitation {id} is {state}: only a pending one can change."))
        }
        InvitationError::Store(error) => error.into(),
        InvitationError::Server(error) => error.into(),
    }
}

/// `state`, `email`, `workspace`, `limit`, `cursor` (`{created_ms}:{id}`, base64url).
fn parse_query(query: &str) -> Result<InvitationFilter, AdminError> {
    let mut filter = InvitationFilter { limit: DEFAULT_PAGE, ..InvitationFilter::default() };
    for (name, value) in query_pairs(query)? {
        match name.as_ref() {
            "limit" => {
                filter.limit = page_limit(&value, MAX_PAGE)?;
            }
            "cursor" => filter.after = Some(parse_created_cursor(&value)?),
            "state" if STATES.contains(&value.as_ref()) => filter.state = Some(value.into_owned()),
            "state" => {
                return Err(AdminError::invalid_parameter("state", format!("one of {}", STATES.join(", "))));
            }
            "email" => filter.email = Some(value.into_owned()),
            "workspace" => filter.workspace = Some(value.into_owned()),
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    Ok(filter)
}
