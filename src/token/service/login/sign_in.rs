//! The form posts of a password sign-in: the password, then (when the user
//! has one, or the policy requires one) the TOTP code; the WebAuthn step is in
//! [`super::webauthn`].
//!
//! ```text
//!  POST {issuer}/login       SignInPost (request valid, CSRF) ─ user lookup ─ throttle ─ argon2id ─ active?
//!                             └─ second factor? ─► WebAuthn | TOTP form (+ ticket) | finish | enrolment page
//!  POST {issuer}/login/totp  SignInPost ─ ticket ─ throttle ─ RFC 6238 once ─► finish
//! ```
//!
//! An email routed to an IdentityProvider (home-realm discovery, by rollout
//! stage: `federation::routing`) is sent to single sign-on instead (`sso`);
//! under `Enforced` a password is refused for the provider's users, except
//! its break-glass users.
//!
//! A wrong password and an unknown account get the same answer after the
//! same work (one argon2id hash). While throttled, nothing is checked: the
//! right password is refused too.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};

use super::SourceAddress;
use super::attempt::Attempt;
use super::csrf::MfaTicket;
use super::error::LoginError;
use super::extract::SignInPost;
use super::flow::{Ending, sign_in_fields};
use super::issuer_path;
use super::mfa::{self, SecondFactor};
use super::pages::{FormContext, HiddenFields, Page, TotpPage};
use super::sso;
use super::step::Step;
use super::webauthn::{self, SecondFactorStep};
use crate::federation::routing::{Route, password_refused_by, route};
use crate::store::{User, UserStore as _};
use crate::token::service::error::OAuthError;
use crate::token::service::state::TokenServiceState;

const WRONG_CREDENTIALS: &str = "Wrong user name or password.";

/// Looks a user up by userName, else by email when exactly one user has it.
async fn find_user(
    state: &TokenServiceState,
    namespace: &str,
    typed: &str,
) -> Result<Option<User>, OAuthError> {
    if let Some(user) = state.store().find_user_by_name(namespace, typed).await? {
        return Ok(Some(user));
    }
    if typed.contains('@') {
        let mut users = state.store().find_users_by_email(namespace, typed).await?;
        if users.len() == 1 {
            return Ok(users.pop());
        }
    }
    Ok(None)
}

/// The names a user is known by: the userName and every email.
fn names_of(user: &User) -> Vec<&str> {
    std::iter::once(user.user_name.as_str()).chain(user.emails.iter().map(|e| e.value.as_str())).collect()
}

pub(super) async fn password_step(
    State(state): State<TokenServiceState>,
    source: SourceAddress,
    post: SignInPost,
) -> Result<Response, LoginError> {
    let state = &state;
    let SignInPost { org, params, request, .. } = &post;
    let typed = params.get("username").unwrap_or_default().trim();
    let password = params.get("password").unwrap_or_default();
    let step = Step::Password { post: &post, typed };
    // Home-realm discovery: an email routed to an identity provider goes
    // there (Enforced: always; Testing, Optional: when no password is given).
    let providers = state.identity_providers(org).await?;
    let user = find_user(state, &org.namespace, typed).await?;
    // A break-glass user (listed by userName or email) typing a password
    // keeps the password way in under Enforced.
    let break_glass = !password.is_empty()
        && user.as_ref().is_some_and(|user| password_refused_by(&providers, &names_of(user)).is_none());
    let routed = match route(&providers, typed) {
        Route::Require { provider } if !break_glass => Some(provider),
        Route::Offer { provider } if password.is_empty() => Some(provider),
        _ => None,
    };
    if let Some(entry) = routed.and_then(|name| providers.iter().find(|p| p.name == name)) {
        return sso::begin(state, &post, entry, Some(typed)).await;
    }
    if typed.is_empty() || password.is_empty() {
        let message = "Enter your user name (or email) and password.";
        return Err(step.refused(state, StatusCode::BAD_REQUEST, message).await);
    }
    if !org.spec.authentication.password.enabled {
        let message = "Password sign-in is turned off for this organization.";
        return Err(step.refused(state, StatusCode::FORBIDDEN, message).await);
    }

    let account = match &user {
        Some(user) => user.id.clone(),
        None => format!("unknown:{}", typed.to_lowercase()),
    };
    let now = state.now();
    let attempt = Attempt::begin(state, Attempt::key(org, account), source, now, &step).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.as_ref()).map(|hash| hash.expose());
    let verified = attempt.password_matches(state, password, hash, &step).await?;
    let user = match (verified, user) {
        (true, Some(user)) => user,
        _ => {
            attempt.failed().await?;
            return Err(step.refused(state, StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS).await);
        }
    };
    if !user.active {
        attempt.refused("AccountDisabled").await?;
        return Err(step.refused(state, StatusCode::FORBIDDEN, "This account is disabled.").await);
    }
    // Enforced single sign-on also holds for a user who typed a user name
    // rather than the routed email: the right password does not sign in.
    if password_refused_by(&providers, &names_of(&user)).is_some() {
        attempt.refused("SingleSignOnEnforced").await?;
        let message = "Your organization signs you in through single sign-on. \
                       Enter your work email address, without a password, to continue.";
        return Err(step.refused(state, StatusCode::FORBIDDEN, message).await);
    }
    attempt.succeeded().await?;

    match mfa::second_factor(state, org, &user).await? {
        SecondFactor::NotNeeded => {
            Ending::new(state, org, request, &user.id, vec!["pwd".to_owned()], None)?.finish(state).await
        }
        SecondFactor::Ask { webauthn, totp } => {
            let ticket = MfaTicket {
                user_id: user.id.clone(),
                auth_time: now.as_second(),
                expires: now.as_second() + state.login().form_lifetime.as_secs(),
                first_factor: vec!["pwd".to_owned()],
            };
            if webauthn.is_empty() {
                return Ok(show_totp(state, &post, &ticket, StatusCode::OK, None).into_response());
            }
            let step = SecondFactorStep { post: &post, ticket: &ticket, totp: !totp.is_empty() };
            Ok(webauthn::show_second_factor(state, &step, &webauthn, StatusCode::OK, None)
                .await?
                .into_response())
        }
        SecondFactor::EnrolmentRequired => Err(Page::notice(
            StatusCode::FORBIDDEN,
            "Two-step verification required",
            "Your organization requires a second factor, and your account has none enrolled. \
             Ask your administrator to enrol a security key or an authenticator app for you.",
        )
        .into()),
    }
}

/// The hidden fields of a step after the password: the sign-in form's, and the ticket.
pub(super) fn second_step_fields(
    state: &TokenServiceState,
    post: &SignInPost,
    ticket: &MfaTicket,
) -> HiddenFields {
    let mut hidden = sign_in_fields(state, &post.org, &post.request, &post.browser);
    hidden.push(("ticket", ticket.seal(&state.login().csrf_key, &post.org.name, &post.browser.id)));
    hidden
}

/// The TOTP step of this sign-in.
pub(super) fn show_totp(
    state: &TokenServiceState,
    post: &SignInPost,
    ticket: &MfaTicket,
    status: StatusCode,
    message: Option<&str>,
) -> Page {
    let action = format!("{}/login/totp", issuer_path(state, &post.org.name));
    let page = TotpPage {
        form: FormContext {
            organization_display_name: &post.org.display_name,
            client_display_name: post.request.client_name(),
            action: &action,
            hidden: second_step_fields(state, post, ticket),
            message,
        },
    };
    Page::new(status, &page)
}

/// The ticket an MFA step carries and the user it names, or the sign-in
/// page instead: the ticket expired or belongs to another browser, or the
/// user is gone or may no longer sign in.
pub(super) async fn open_mfa_step(
    state: &TokenServiceState,
    post: &SignInPost,
) -> Result<(MfaTicket, User), LoginError> {
    let SignInPost { org, params, browser, .. } = post;
    let presented = params.get("ticket").unwrap_or_default();
    let Some(ticket) =
        MfaTicket::open(&state.login().csrf_key, &org.name, &browser.id, presented, state.now())
    else {
        return Err(post.sign_in_again(
            state,
            StatusCode::FORBIDDEN,
            "Your sign-in expired. Please sign in again.",
        ));
    };
    match state.store().get_user(&org.namespace, &ticket.user_id).await? {
        Some(user) if user.active => Ok((ticket, user)),
        _ => Err(post.sign_in_again(state, StatusCode::FORBIDDEN, "This account cannot sign in.")),
    }
}

pub(super) async fn totp_step(
    State(state): State<TokenServiceState>,
    source: SourceAddress,
    post: SignInPost,
) -> Result<Response, LoginError> {
    let state = &state;
    let SignInPost { org, params, request, .. } = &post;
    let now = state.now();
    let (ticket, user) = open_mfa_step(state, &post).await?;
    let step = Step::Totp { post: &post, ticket: &ticket };
    let attempt = Attempt::begin(state, Attempt::key(org, user.id.clone()), source, now, &step).await?;
    let enrolments = match mfa::second_factor(state, org, &user).await? {
        SecondFactor::Ask { totp, .. } if !totp.is_empty() => totp,
        _ => {
            let message = "Your sign-in changed. Please sign in again.";
            return Err(post.sign_in_again(state, StatusCode::FORBIDDEN, message));
        }
    };
    let code = params.get("code").unwrap_or_default();
    if mfa::check_totp(state, org, &user, &enrolments, code, now).await?.is_none() {
        attempt.failed().await?;
        let message = "That code is not right, or it was used already. Enter the current code.";
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, message).await);
    }
    attempt.succeeded().await?;
    let amr = [ticket.first_factor.as_slice(), &["otp".to_owned(), "mfa".to_owned()]].concat();
    Ending::new(state, org, request, &user.id, amr, None)?.finish(state).await
}
