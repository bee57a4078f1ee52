//! Accepting an invitation: the page its mail links to, where the invitee
//! chooses a password and becomes a local user with the invited roles.
//!
//! ```text
//!  GET  {issuer}/invitations/{token}  token's SHA-256 ─► pending & unexpired? ─► form (+ pre-login cookie, CSRF)
//!                                                      └► unknown | accepted | revoked | expired: a page saying so
//!  POST {issuer}/invitations/{token}  CSRF ─ password policy ─ argon2id ─► store: invitation consumed, user
//!                                      (source=local), API-owned RoleAssignments, audited ─ one transaction
//!  POST {issuer}/invitations/{token}/sso  CSRF ─► the identity provider routed for the invited address
//!                                      ─► … its callback accepts as that identity (sso/invitation.rs)
//! ```
//!
//! The page offers what the organization's sign-in would: a password when
//! passwords are on, single sign-on when an identity provider is routed for
//! the invited address at its rollout stage, only single sign-on when that
//! stage is `Enforced`. Only one of two concurrent acceptances gets the
//! invitation: the store claims it with a conditional update in the
//! transaction that creates the user.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::csrf;
use super::error::LoginError;
use super::flow::{PreLogin, secure_cookies};
use super::issuer_path;
use super::pages::{InvitationPage, Page, PlainForm, SsoChoice};
use super::request::Params;
use crate::api::{AssignmentScope, ProvisioningMode, RoleAssignment, RoleAssignmentSpec};
use crate::audit::Source;
use crate::federation::routing::{self, ProviderEntry, Route};
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

pub(super) fn refusal_page(refusal: Refusal, invitation: Option<&Invitation>) -> Page {
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

/// How the invitee may accept: with a password of at least `min_length`
/// characters, through `provider`, or both.
struct Choices {
    min_length: Option<usize>,
    provider: Option<ProviderEntry>,
}

/// What the organization's sign-in would offer the invited address; the
/// page saying there is no way when there is none.
async fn choices(
    state: &TokenServiceState,
    org: &OrganizationView,
    invitation: &Invitation,
) -> Result<Choices, LoginError> {
    let providers = state.identity_providers(org).await?;
    let route = routing::route(&providers, &invitation.email);
    let provider = route.provider().and_then(|name| providers.iter().find(|p| p.name == name)).cloned();
    let policy = &org.spec.authentication.password;
    let min_length = (policy.enabled && !matches!(route, Route::Require { .. }))
        .then(|| usize::try_from(policy.min_length).unwrap_or(12).max(1));
    if min_length.is_none() && provider.is_none() {
        return Err(Page::notice(
            StatusCode::CONFLICT,
            "No way to sign in",
            "This organization does not sign people in with passwords, and no identity provider is \
             offered for your address yet. Ask your administrator for access.",
        )
        .into());
    }
    Ok(Choices { min_length, provider })
}

/// Renders the page for `invitation`.
async fn show_form(
    state: &TokenServiceState,
    org: &OrganizationView,
    invitation: &Invitation,
    token: &str,
    browser: &PreLogin,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let choices = choices(state, org, invitation).await?;
    let action = format!("{}/invitations/{token}", issuer_path(state, &org.name));
    let sso_action = format!("{action}/sso");
    let csrf = csrf::csrf_token(&state.login().csrf_key, &org.name, &browser.id);
    let single_sign_on = choices.provider.as_ref().map(|entry| SsoChoice {
        provider: entry.spec.display_name.clone().unwrap_or_else(|| entry.name.clone()),
        form: PlainForm { action: &sso_action, hidden: vec![("csrf", csrf.clone())] },
    });
    let page = InvitationPage {
        organization_display_name: &org.display_name,
        email: &invitation.email,
        invited_by: &invitation.invited_by,
        workspace: invitation.workspace.as_deref(),
        roles: &invitation.roles,
        min_length: choices.min_length,
        form: PlainForm { action: &action, hidden: vec![("csrf", csrf)] },
        single_sign_on,
        message,
    };
    Ok(Page::new(status, &page).with_cookie(browser.set_cookie.clone()))
}

/// Whether the form came from this browser's copy of the page.
fn csrf_ok(state: &TokenServiceState, org: &OrganizationView, browser: &PreLogin, params: &Params) -> bool {
    browser.set_cookie.is_none()
        && params
            .get("csrf")
            .is_some_and(|token| csrf::csrf_matches(&state.login().csrf_key, &org.name, &browser.id, token))
}

const FORM_EXPIRED: &str = "This form expired or was not sent from this site. Please try again.";

fn malformed(reason: impl std::fmt::Display) -> LoginError {
    Page::notice(StatusCode::BAD_REQUEST, "Refused", &format!("The form is malformed: {reason}.")).into()
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
    show_form(&state, &org, &invitation, &token, &browser, StatusCode::OK, None).await
}

/// `POST {issuer}/invitations/{token}/sso`: `csrf`; to the identity
/// provider routed for the invited address.
pub(super) async fn accept_with_sso(
    State(state): State<TokenServiceState>,
    Path((org, token)): Path<(String, String)>,
    source: super::SourceAddress,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, LoginError> {
    let org = organization(&state, &org).await?;
    let invitation = open_invitation(&state, &org, &token).await?;
    let browser = PreLogin::of(&state, &org.name, &headers);
    let params = Params::parse(&body).map_err(malformed)?;
    if !csrf_ok(&state, &org, &browser, &params) {
        let page =
            show_form(&state, &org, &invitation, &token, &browser, StatusCode::FORBIDDEN, Some(FORM_EXPIRED));
        return Err(page.await?.into());
    }
    let Some(entry) = choices(&state, &org, &invitation).await?.provider else {
        return Err(Page::notice(
            StatusCode::CONFLICT,
            "Single sign-on unavailable",
            "No identity provider is offered for your address. Accept the invitation with a password.",
        )
        .into());
    };
    super::sso::begin_invitation(
        &state,
        &org,
        &browser.id,
        &entry,
        &SecretHash::of(&token),
        &invitation.email,
        source,
    )
    .await
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
    let again = async |status: StatusCode, message: &str| -> LoginError {
        match show_form(&state, &org, &invitation, &token, &browser, status, Some(message)).await {
            Ok(page) => page.into(),
            Err(error) => error,
        }
    };
    let params = Params::parse(&body).map_err(malformed)?;
    if !csrf_ok(&state, &org, &browser, &params) {
        return Err(again(StatusCode::FORBIDDEN, FORM_EXPIRED).await);
    }
    let Some(min_length) = choices(&state, &org, &invitation).await?.min_length else {
        let message = "Accept this invitation through your identity provider: passwords are not used here.";
        return Err(again(StatusCode::FORBIDDEN, message).await);
    };
    let password = SecretString::new(params.get("password").unwrap_or_default());
    if password.expose().chars().count() < min_length || password.expose().len() > MAX_PASSWORD_BYTES {
        let message = format!("Choose a password of at least {min_length} characters.");
        return Err(again(StatusCode::BAD_REQUEST, &message).await);
    }
    if params.get("password_again").unwrap_or_default() != password.expose() {
        return Err(again(
            StatusCode::BAD_REQUEST,
            "The two passwords differ. Type the same password twice.",
        )
        .await);
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
pub(super) fn invited_assignments(org: &OrganizationView, invitation: &Invitation) -> Vec<AssignmentRecord> {
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
