//! What the sign-in handlers share: showing the sign-in form (with its
//! pre-login cookie and CSRF token), answering a refused request, and
//! finishing a sign-in with a session, a code and the redirect.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cookies;
use super::csrf::{self, random_token};
use super::pages::{self, FormContext, PlainForm};
use super::request::{AuthorizationRequest, RequestError, redirect_to};
use super::session::{self, Session};
use super::webauthn::passkeys_offered;
use super::{cookies_need_https, duration_secs, issuer_path};
use crate::store::UserStore as _;
use crate::token::service::error::OAuthError;
use crate::token::service::grants::{self, CodeGrant};
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// How long the pre-login cookie lives: long enough to leave a form open.
const PRE_LOGIN_COOKIE_SECS: u64 = 60 * 60;

/// A fault of ours at a sign-in page: logged, and a plain page for the user.
pub(super) fn server_error(error: OAuthError) -> Response {
    tracing::error!(%error, "sign-in failed on our side");
    pages::respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::notice("Something went wrong", "Signing in failed on our side. Please try again later."),
        &[],
    )
}

pub(super) fn unknown_organization() -> Response {
    pages::respond(StatusCode::NOT_FOUND, pages::notice("Not found", "There is no organization here."), &[])
}

/// The organization named in the path, or the page to answer with.
pub(super) async fn organization(
    state: &TokenServiceState,
    name: &str,
) -> Result<std::sync::Arc<OrganizationView>, Response> {
    match state.organization(name).await {
        Ok(Some(org)) => Ok(org),
        Ok(None) => Err(unknown_organization()),
        Err(error) => Err(server_error(error)),
    }
}

/// RFC 6749 §4.1.2.1: untrusted client or redirect URI → a page here;
/// anything else → back to the client with `error`.
pub(super) fn refusal(state: &TokenServiceState, org: &OrganizationView, error: RequestError) -> Response {
    match error {
        RequestError::Untrusted(reason) => {
            pages::respond(StatusCode::BAD_REQUEST, pages::notice("Sign-in request refused", &reason), &[])
        }
        RequestError::ToClient { redirect_uri, state: client_state, error, description } => {
            let location = redirect_to(
                &redirect_uri,
                client_state.as_deref(),
                &state.issuer(&org.name),
                &[("error", error), ("error_description", &description)],
            );
            see_other(&location, &[])
        }
        RequestError::Server(error) => server_error(error),
    }
}

/// 303 to `location`, never cached.
pub(super) fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            headers.insert(header::LOCATION, value);
        }
        Err(_) => return server_error(OAuthError::internal("a redirect location is not a valid header")),
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in set_cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Whether this deployment's cookies carry `Secure`.
pub(super) fn secure_cookies(state: &TokenServiceState) -> bool {
    cookies_need_https(state.public_base_url())
}

/// The browser's pre-login id, and the `Set-Cookie` to send when it is new.
pub(super) fn pre_login_id(
    state: &TokenServiceState,
    org: &OrganizationView,
    headers: &HeaderMap,
) -> (String, Option<String>) {
    match cookies::read(headers, cookies::PRE_LOGIN) {
        Some(id) => (id, None),
        None => {
            let id = random_token();
            let cookie = cookies::set(
                cookies::PRE_LOGIN,
                &id,
                &issuer_path(state, &org.name),
                PRE_LOGIN_COOKIE_SECS,
                secure_cookies(state),
            );
            (id, Some(cookie))
        }
    }
}

/// The sign-in form; `fresh_cookie` forces a new pre-login id (after a CSRF failure).
pub(super) fn show_sign_in(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
    user_name: &str,
) -> Response {
    let (id, set_cookie) = pre_login_id(state, org, headers);
    let mut hidden = request.hidden_fields();
    hidden.push(("csrf", csrf::csrf_token(&state.login().csrf_key, &org.name, &id)));
    let action = format!("{}/login", issuer_path(state, &org.name));
    let passkey_action = format!("{action}/passkey/start");
    let passkey_hidden = hidden.clone();
    let page = pages::sign_in(
        &FormContext {
            organization_display_name: &org.display_name,
            client_display_name: request.client.display_name.as_deref().unwrap_or(&request.client.client_id),
            action: &action,
            hidden,
            message,
        },
        user_name,
        passkeys_offered(state, org)
            .then_some(PlainForm { action: &passkey_action, hidden: passkey_hidden })
            .as_ref(),
    );
    let cookies: Vec<String> = set_cookie.into_iter().collect();
    pages::respond(status, page, &cookies)
}

/// The live session of the browser, for this organization.
pub(super) async fn current_session(
    state: &TokenServiceState,
    org: &OrganizationView,
    headers: &HeaderMap,
) -> Result<Option<(Session, String)>, OAuthError> {
    let Some(secret) = cookies::read(headers, cookies::SESSION) else { return Ok(None) };
    Ok(session::find(state.store(), &org.namespace, &secret, state.now()).await?.map(|s| (s, secret)))
}

/// Ends the sign-in: a new session (unless `existing`), the code, the redirect.
pub(super) async fn finish(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    user_id: &str,
    amr: Vec<String>,
    existing: Option<Session>,
) -> Result<Response, OAuthError> {
    let now = state.now();
    let mut set_cookies = Vec::new();
    let session = match existing {
        Some(session) => session,
        None => {
            let login = state.login();
            let (session, secret) = session::create(
                state.store(),
                &org.namespace,
                user_id,
                now,
                amr,
                login.session_lifetime,
                now,
            )
            .await?;
            let path = issuer_path(state, &org.name);
            let secure = secure_cookies(state);
            set_cookies.push(cookies::set(
                cookies::SESSION,
                &secret,
                &path,
                duration_secs(login.session_lifetime),
                secure,
            ));
            set_cookies.push(cookies::clear(cookies::PRE_LOGIN, &path, secure));
            state.store().record_login(&org.namespace, user_id, now.as_millisecond()).await?;
            session
        }
    };
    let code = grants::issue_authorization_code(
        state,
        CodeGrant {
            organization: org.name.clone(),
            client_id: request.client.client_id.clone(),
            user_id: user_id.to_owned(),
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scope.clone(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            auth_time_ms: session.auth_time.as_millisecond(),
            amr: session.amr.clone(),
            session_id: Some(session.id.clone()),
        },
    )
    .await?;
    let location = request.redirect_with(&state.issuer(&org.name), &[("code", &code)]);
    Ok(see_other(&location, &set_cookies))
}
