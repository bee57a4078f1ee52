//! Accepting an invitation: the page its mail links to, where the invitee
//! chooses a password and becomes a local user with the invited roles.
//!
//! ```text
//!  GET  {issuer}/invitations/{token}  token's SHA-256 ─► pending & unexpired? ─► form (+ pre-login cookie, CSRF)
//!                                                      └► unknown | accepted | revoked | expired: a page saying so
//!  POST {issuer}/invitations/{token}  CSRF ─ password policy ─ argon2id ─► store: invitation consumed, user
//!                                      (source=local), API-owned RoleAssignments, audited ─ one transaction
//! ```
//!
//! Only one of two concurrent acceptances gets the invitation: the store
//! claims it with a conditional update in the transaction that creates the
//! user. Accepting through single sign-on instead of a password is not
//! offered (yet): an invitee whose domain an identity provider serves signs
//! in there, and a RoleAssignment in Git or through the admin API gives the
//! roles.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::csrf;
use super::error::LoginError;
use super::flow::{PreLogin, secure_cookies};
use super::issuer_path;
use super::pages::{InvitationPage, Page, PlainForm};
use super::request::Params;
use crate::api::{AssignmentScope, ProvisioningMode, RoleAssignment, RoleAssignmentSpec};
use crate::audit::Source;
use crate::resources::records::ToRecord as _;
use crate::secret::{SecretHash, SecretString};
use crate::store::{
    Acceptance, AssignmentRecord, Email, Invitation, InvitationStatus, InvitationStore as _, NewUser,
    ObjectMeta, Refusal, StoreError, UserSource,
};
use crate::token::password::{MAX_PASSWORD_BYTES, PasswordError};
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// The link's token: 256 bits in base64url (43 characters); anything else is no link of ours.
fn plausible_token(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn refusal_page(refusal: Refusal, invitation: Option<&Invitation>) -> Page {
    let inviter = invitation.map_or("your administrator", |i| i.invited_by.as_str());
    match refusal {
        Refusal::Unknown => Page::notice(
            StatusCode::NOT_FOUND,
            "Invitation not found",
            "This invitation link is not valid. If you were sent a newer invitation, use the link in \
             the most recent mail: each new mail replaces the link before it.",
        ),
        Refusal::AlreadyAccepted => Page::notice(
            StatusCode::GONE,
            "Invitation already accepted",
            "This invitation has been accepted already: a link works once. Sign in with your email \
             address and the password you chose.",
        ),
        Refusal::Revoked => Page::notice(
            StatusCode::GONE,
            "Invitation withdrawn",
            &format!("This invitation was withdrawn. Ask {inviter} if you still need access."),
        ),
        Refusal::Expired => Page::notice(
            StatusCode::GONE,
            "Invitation expired",
            &format!("This invitation has expired. Ask {inviter} to send it again."),
        ),
    }
}

/// The invitation of `token` if it can still be accepted, else the page saying why not.
async fn open_invitation(
    state: &TokenServiceState,
    org: &OrganizationView,
    token: &str,
) -> Result<Invitation, LoginError> {
    if org.spec.provisioning.mode == ProvisioningMode::Scim {
        return Err(Page::notice(
            StatusCode::CONFLICT,
            "Invitations are turned off",
            "This organization now provisions its users through its identity provider. Ask your \
             administrator to add you there.",
        )
        .into());
    }
    if !plausible_token(token) {
        return Err(refusal_page(Refusal::Unknown, None).into());
    }
    let Some(invitation) = state.store().invitation_by_token(&org.namespace, &SecretHash::of(token)).await?
    else {
        return Err(refusal_page(Refusal::Unknown, None).into());
    };
    let refusal = match invitation.status {
        InvitationStatus::Accepted => Some(Refusal::AlreadyAccepted),
        InvitationStatus::Revoked => Some(Refusal::Revoked),
        InvitationStatus::Pending if invitation.expires_ms <= state.now().as_millisecond() => {
            Some(Refusal::Expired)
        }
        InvitationStatus::Pending => None,
    };
    match refusal {
        Some(refusal) => Err(refusal_page(refusal, Some(&invitation)).into()),
        None => Ok(invitation),
    }
}

async fn organization(
    state: &TokenServiceState,
    name: &str,
) -> Result<std::sync::Arc<OrganizationView>, LoginError> {
    match state.organization(name).await? {
        Some(org) => Ok(org),
        None => {
            Err(Page::notice(StatusCode::NOT_FOUND, "Not found", "There is no organization here.").into())
        }
    }
}

fn password_policy(org: &OrganizationView) -> Result<usize, LoginError> {
    let policy = &org.spec.authentication.password;
    if !policy.enabled {
        return Err(Page::notice(
            StatusCode::CONFLICT,
            "Passwords are turned off",
            "This organization does not sign people in with passwords, and accepting an invitation \
             through single sign-on is not offered yet. Ask your administrator for access.",
        )
        .into());
    }
    Ok(usize::try_from(policy.min_length).unwrap_or(12).max(1))
}

/// Renders the form for `invitation`.
fn show_form(
    state: &TokenServiceState,
    org: &OrganizationView,
    invitation: &Invitation,
    token: &str,
    browser: &PreLogin,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let min_length = password_policy(org)?;
    let action = format!("{}/invitations/{token}", issuer_path(state, &org.name));
    let hidden = vec![("csrf", csrf::csrf_token(&state.login().csrf_key, &org.name, &browser.id))];
    let page = InvitationPage {
        organization_display_name: &org.display_name,
        email: &invitation.email,
        invited_by: &invitation.invited_by,
        workspace: invitation.workspace.as_deref(),
        roles: &invitation.roles,
        min_length,
        form: PlainForm { action: &action, hidden },
        message,
    };
    Ok(Page::new(status, &page).with_cookie(browser.set_cookie.clone()))
}

/// `GET {issuer}/invitations/{token}`.
pub(super) async fn show(
    State(state): State<TokenServiceState>,
    Path((org, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Page, LoginError> {
    let org = organization(&state, &org).await?;
    let invitation = open_invitation(&state, &org, &token).await?;
    let browser = PreLogin::of(&state, &org.name, &headers);
    show_form(&state, &org, &invitation, &token, &browser, StatusCode::OK, None)
}

/// `POST {issuer}/invitations/{token}`: `csrf`, `password`, `password_again`.
pub(super) async fn accept(
    State(state): State<TokenServiceState>,
    Path((org, token)): Path<(String, String)>,
    source: Source,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, LoginError> {
    let org = organization(&state, &org).await?;
    let invitation = open_invitation(&state, &org, &token).await?;
    let browser = PreLogin::of(&state, &org.name, &headers);
    let again = |status: StatusCode, message: &str| -> LoginError {
        match show_form(&state, &org, &invitation, &token, &browser, status, Some(message)) {
            Ok(page) => page.into(),
            Err(error) => error,
        }
    };
    let params = Params::parse(&body).map_err(|reason| {
        LoginError::from(Page::notice(
            StatusCode::BAD_REQUEST,
            "Refused",
            &format!("The form is malformed: {reason}."),
        ))
    })?;
    let csrf_ok = browser.set_cookie.is_none()
        && params
            .get("csrf")
            .is_some_and(|token| csrf::csrf_matches(&state.login().csrf_key, &org.name, &browser.id, token));
    if !csrf_ok {
        let message = "This form expired or was not sent from this site. Please try again.";
        return Err(again(StatusCode::FORBIDDEN, message));
    }
    let min_length = password_policy(&org)?;
    let password = SecretString::new(params.get("password").unwrap_or_default());
    if password.expose().chars().count() < min_length || password.expose().len() > MAX_PASSWORD_BYTES {
        let message = format!("Choose a password of at least {min_length} characters.");
        return Err(again(StatusCode::BAD_REQUEST, &message));
    }
    if params.get("password_again").unwrap_or_default() != password.expose() {
        return Err(again(
            StatusCode::BAD_REQUEST,
            "The two passwords differ. Type the same password twice.",
        ));
    }
    let hash = state.login().hasher().hash(password.expose()).await.map_err(|error| match error {
        PasswordError::Busy => LoginError::from(
            Page::notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Too many requests at once; try again shortly.",
            )
            .retry_after(std::time::Duration::from_secs(1)),
        ),
        other => LoginError::Server(crate::token::service::OAuthError::server(other)),
    })?;
    let user = NewUser {
        emails: vec![Email::primary(&invitation.email)],
        password_hash: Some(SecretString::new(hash)),
        ..NewUser::new(org.namespace.clone(), invitation.email.clone(), UserSource::Local)
    };
    let assignments = invited_assignments(&org, &invitation);
    let accepted = state
        .store()
        .accept_invitation(&org.namespace, &SecretHash::of(&token), &user, assignments, source)
        .await;
    match accepted {
        Ok(Acceptance::Accepted { user }) => {
            let text = format!(
                "Your account {} at {} is ready. Sign in to the organization's applications with this \
                 email address and the password you chose.",
                user.user_name, org.display_name
            );
            // The pre-login cookie has done its work.
            let clear = super::cookies::clear(
                super::cookies::PRE_LOGIN,
                &issuer_path(&state, &org.name),
                secure_cookies(&state),
            );
            Ok(Page::notice(StatusCode::OK, "Invitation accepted", &text)
                .with_cookie(Some(clear))
                .into_response())
        }
        Ok(Acceptance::Refused(refusal)) => Err(refusal_page(refusal, Some(&invitation)).into()),
        Err(StoreError::AlreadyExists { value, .. }) => Err(Page::notice(
            StatusCode::CONFLICT,
            "Account exists",
            &format!("An account named {value} exists already. Sign in with it, or ask your administrator."),
        )
        .into()),
        Err(error) => Err(error.into()),
    }
}

/// One RoleAssignment per invited role, naming the new user by its userName
/// (the invited email), in the invitation's workspace if it has one.
fn invited_assignments(org: &OrganizationView, invitation: &Invitation) -> Vec<AssignmentRecord> {
    invitation
        .roles
        .iter()
        .map(|role| {
            let name = format!("invitation-{}-{role}", invitation.id);
            let spec = RoleAssignmentSpec {
                principal: crate::api::Principal {
                    kind: crate::api::PrincipalKind::User,
                    name: invitation.email.clone(),
                },
                role: role.clone(),
                scope: if invitation.workspace.is_some() {
                    AssignmentScope::Workspace
                } else {
                    AssignmentScope::Organization
                },
                workspace: invitation.workspace.clone(),
                expires_at: None,
                reason: Some(format!("Invitation {} accepted", invitation.id)),
            };
            RoleAssignment::new(&name, spec).to_record(ObjectMeta::new(
                String::new(),
                org.namespace.clone(),
                name.clone(),
                1,
            ))
        })
        .collect()
}
