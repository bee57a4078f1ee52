//! The form posts of a password sign-in: the password, then (when the user
//! has one, or the policy requires one) the TOTP code; the WebAuthn step is in
//! [`super::webauthn`].
//!
//! ```text
//!  POST {issuer}/login       request valid? ─ CSRF ─ user lookup ─ throttle ─ argon2id ─ active?
//!                             └─ second factor? ─► WebAuthn | TOTP form (+ ticket) | finish | enrolment page
//!  POST {issuer}/login/totp  request valid? ─ CSRF ─ ticket ─ throttle ─ RFC 6238 once ─► finish
//! ```
//!
//! A wrong password and an unknown account get the same answer after the
//! same work (one argon2id hash). While throttled, nothing is checked: the
//! right password is refused too.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::csrf::{self, MfaTicket};
use super::flow::{self, finish, pre_login_id, refusal, server_error, show_sign_in};
use super::mfa::{self, SecondFactor};
use super::pages::{self, FormContext};
use super::request::{self, AuthorizationRequest, Params};
use super::webauthn::{self, SecondFactorStep};
use super::{SourceAddress, issuer_path};
use crate::store::{User, UserStore as _};
use crate::token::password::PasswordError;
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{AccountKey, ThrottleVerdict};

const WRONG_CREDENTIALS: &str = "Wrong user name or password.";
pub(super) const FORM_EXPIRED: &str =
    "Your sign-in form expired or was not sent from this site. Please sign in again.";

/// A validated form post: the organization, its fields and the authorization request they carry.
pub(super) struct Post {
    pub org: std::sync::Arc<OrganizationView>,
    pub params: Params,
    pub request: AuthorizationRequest,
    /// The browser's pre-login id, once the CSRF token matched it.
    pub pre_login_id: String,
}

/// Organization, fields, request and CSRF token, or the page to answer with.
pub(super) async fn accept_post(
    state: &TokenServiceState,
    organization: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Post, Response> {
    let org = flow::organization(state, organization).await?;
    let params = Params::parse(body).map_err(|reason| {
        pages::respond(
            StatusCode::BAD_REQUEST,
            pages::notice("Sign-in refused", &format!("The form is malformed: {reason}.")),
            &[],
        )
    })?;
    let request =
        request::validate(state, organization, &params).await.map_err(|e| refusal(state, &org, e))?;
    let (id, fresh) = pre_login_id(state, &org, headers);
    let matches = fresh.is_none()
        && params
            .get("csrf")
            .is_some_and(|token| csrf::csrf_matches(&state.login().csrf_key, &org.name, &id, token));
    if !matches {
        return Err(show_sign_in(
            state,
            &org,
            &request,
            headers,
            StatusCode::FORBIDDEN,
            Some(FORM_EXPIRED),
            "",
        ));
    }
    Ok(Post { org, params, request, pre_login_id: id })
}

pub(super) fn throttled(mut response: Response, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs().max(1);
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub(super) fn throttle_message(retry_after: Duration) -> String {
    format!("Too many failed sign-in attempts. Try again in {} seconds.", retry_after.as_secs().max(1))
}

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

pub(super) async fn password_step(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let post = match accept_post(&state, &organization, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    password_step_inner(&state, &post, source, &headers).await.unwrap_or_else(server_error)
}

async fn password_step_inner(
    state: &TokenServiceState,
    post: &Post,
    source: SourceAddress,
    headers: &HeaderMap,
) -> Result<Response, OAuthError> {
    let Post { org, params, request, pre_login_id } = post;
    let typed = params.get("username").unwrap_or_default().trim();
    let password = params.get("password").unwrap_or_default();
    let form_again =
        |status, message: &str| show_sign_in(state, org, request, headers, status, Some(message), typed);
    if typed.is_empty() || password.is_empty() {
        return Ok(form_again(StatusCode::BAD_REQUEST, "Enter your user name (or email) and password."));
    }
    if !org.spec.authentication.password.enabled {
        return Ok(form_again(
            StatusCode::FORBIDDEN,
            "Password sign-in is turned off for this organization.",
        ));
    }

    let user = find_user(state, &org.namespace, typed).await?;
    let account = AccountKey {
        organization: org.namespace.clone(),
        account: match &user {
            Some(user) => user.id.clone(),
            None => format!("unknown:{}", typed.to_lowercase()),
        },
    };
    let login = state.login();
    let now = state.now();
    if let ThrottleVerdict::Throttled { retry_after } = login.throttle.check(&account, source.0.into(), now) {
        let page = form_again(StatusCode::TOO_MANY_REQUESTS, &throttle_message(retry_after));
        return Ok(throttled(page, retry_after));
    }

    let outcome = match user.as_ref().and_then(|u| u.password_hash.as_ref()) {
        Some(hash) => login.hasher.verify(password, hash.expose()).await,
        None => {
            login.hasher.verify_unknown_account(password).await;
            Ok(false)
        }
    };
    let verified = match outcome {
        Ok(verified) => verified,
        Err(PasswordError::Busy) => {
            let page =
                form_again(StatusCode::SERVICE_UNAVAILABLE, "We are busy. Please try again in a moment.");
            return Ok(throttled(page, Duration::from_secs(1)));
        }
        Err(PasswordError::TooLong) => false,
        Err(error) => return Err(OAuthError::server_because("password check", error)),
    };
    let user = match (verified, user) {
        (true, Some(user)) => user,
        _ => {
            login.throttle.record_failure(&account, source.0.into(), now);
            return Ok(form_again(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS));
        }
    };
    if !user.active {
        return Ok(form_again(StatusCode::FORBIDDEN, "This account is disabled."));
    }
    login.throttle.record_success(&account);

    match mfa::second_factor(state, org, &user).await? {
        SecondFactor::NotNeeded => finish(state, org, request, &user.id, vec!["pwd".to_owned()], None).await,
        SecondFactor::Ask { webauthn, totp } => {
            let ticket = MfaTicket {
                user_id: user.id.clone(),
                auth_time: now.as_second(),
                expires: now.as_second() + login.form_lifetime.as_secs(),
            };
            if webauthn.is_empty() {
                return Ok(show_totp(state, org, request, pre_login_id, &ticket, StatusCode::OK, None));
            }
            let step =
                SecondFactorStep { org, request, pre_login_id, ticket: &ticket, totp: !totp.is_empty() };
            webauthn::show_second_factor(state, &step, &webauthn, StatusCode::OK, None).await
        }
        SecondFactor::EnrolmentRequired => Ok(pages::respond(
            StatusCode::FORBIDDEN,
            pages::notice(
                "Two-step verification required",
                "Your organization requires a second factor, and your account has none enrolled. \
                 Ask your administrator to enrol a security key or an authenticator app for you.",
            ),
            &[],
        )),
    }
}

pub(super) fn show_totp(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    pre_login_id: &str,
    ticket: &MfaTicket,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let key = &state.login().csrf_key;
    let mut hidden = request.hidden_fields();
    hidden.push(("csrf", csrf::csrf_token(key, &org.name, pre_login_id)));
    hidden.push(("ticket", ticket.seal(key, &org.name, pre_login_id)));
    let action = format!("{}/login/totp", issuer_path(state, &org.name));
    let page = pages::totp(&FormContext {
        organization_display_name: &org.display_name,
        client_display_name: request.client.display_name.as_deref().unwrap_or(&request.client.client_id),
        action: &action,
        hidden,
        message,
    });
    pages::respond(status, page, &[])
}

pub(super) async fn totp_step(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let post = match accept_post(&state, &organization, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    totp_step_inner(&state, &post, source, &headers).await.unwrap_or_else(server_error)
}

/// The ticket an MFA step carries and the user it names, or the sign-in
/// page to show instead: the ticket expired or belongs to another browser,
/// or the user is gone or may no longer sign in.
pub(super) async fn open_mfa_step(
    state: &TokenServiceState,
    post: &Post,
    headers: &HeaderMap,
) -> Result<Result<(MfaTicket, User), Response>, OAuthError> {
    let Post { org, params, request, pre_login_id } = post;
    let sign_in_again =
        |message: &str| show_sign_in(state, org, request, headers, StatusCode::FORBIDDEN, Some(message), "");
    let presented = params.get("ticket").unwrap_or_default();
    let Some(ticket) =
        MfaTicket::open(&state.login().csrf_key, &org.name, pre_login_id, presented, state.now())
    else {
        return Ok(Err(sign_in_again("Your sign-in expired. Please sign in again.")));
    };
    match state.store().get_user(&org.namespace, &ticket.user_id).await? {
        Some(user) if user.active => Ok(Ok((ticket, user))),
        _ => Ok(Err(sign_in_again("This account cannot sign in."))),
    }
}

async fn totp_step_inner(
    state: &TokenServiceState,
    post: &Post,
    source: SourceAddress,
    headers: &HeaderMap,
) -> Result<Response, OAuthError> {
    let Post { org, params, request, pre_login_id } = post;
    let login = state.login();
    let now = state.now();
    let sign_in_again =
        |message: &str| show_sign_in(state, org, request, headers, StatusCode::FORBIDDEN, Some(message), "");
    let (ticket, user) = match open_mfa_step(state, post, headers).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let account = AccountKey { organization: org.namespace.clone(), account: user.id.clone() };
    if let ThrottleVerdict::Throttled { retry_after } = login.throttle.check(&account, source.0.into(), now) {
        let page = show_totp(
            state,
            org,
            request,
            pre_login_id,
            &ticket,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&throttle_message(retry_after)),
        );
        return Ok(throttled(page, retry_after));
    }
    let enrolments = match mfa::second_factor(state, org, &user).await? {
        SecondFactor::Ask { totp, .. } if !totp.is_empty() => totp,
        _ => return Ok(sign_in_again("Your sign-in changed. Please sign in again.")),
    };
    let code = params.get("code").unwrap_or_default();
    match mfa::check_totp(state, org, &user, &enrolments, code, now).await? {
        Some(_) => {
            login.throttle.record_success(&account);
            let amr = vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()];
            finish(state, org, request, &user.id, amr, None).await
        }
        None => {
            login.throttle.record_failure(&account, source.0.into(), now);
            Ok(show_totp(
                state,
                org,
                request,
                pre_login_id,
                &ticket,
                StatusCode::UNAUTHORIZED,
                Some("That code is not right, or it was used already. Enter the current code."),
            ))
        }
    }
}
