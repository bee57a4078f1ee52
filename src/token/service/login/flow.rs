//! What the sign-in handlers share: the browser's pre-login cookie, showing
//! the sign-in form (with its CSRF token), answering a refused request, and
//! finishing a sign-in with a session, a code and the redirect ([`Ending`]).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cookies;
use super::csrf::{self, random_token};
use super::error::LoginError;
use super::pages::{FormContext, HiddenFields, Page, PlainForm, SignInPage};
use super::request::{AuthorizationRequest, RequestError, redirect_to};
use super::session::{self, NewSignIn, Session};
use super::webauthn::passkeys_offered;
use super::{cookies_need_https, duration_secs, issuer_path};
use crate::store::{SessionStore as _, SignInWrites};
use crate::token::service::error::OAuthError;
use crate::token::service::grants::{CodeGrant, NewAuthorizationCode};
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// How long the pre-login cookie lives: long enough to leave a form open.
const PRE_LOGIN_COOKIE_SECS: u64 = 60 * 60;

/// RFC 6749 §4.1.2.1: untrusted client or redirect URI → a page here;
/// anything else → back to the client with `error`.
pub(super) fn refusal(state: &TokenServiceState, org: &OrganizationView, error: RequestError) -> LoginError {
    match error {
        RequestError::Untrusted(reason) => {
            Page::notice(StatusCode::BAD_REQUEST, "Sign-in request refused", &reason).into()
        }
        RequestError::ToClient { redirect_uri, state: client_state, error, description } => {
            let location = redirect_to(
                &redirect_uri,
                client_state.as_deref(),
                &state.issuer(&org.name),
                &[("error", error), ("error_description", &description)],
            );
            LoginError::ToClient { location }
        }
        RequestError::Server(error) => error.into(),
    }
}

/// 303 to `location`, never cached.
pub(super) fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return LoginError::from(OAuthError::internal("a redirect location is not a valid header"))
            .into_response();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
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

/// The browser's pre-login id: binds CSRF tokens, MFA tickets and sign-in
/// ceremonies to one browser.
pub(super) struct PreLogin {
    pub id: String,
    /// The `Set-Cookie` to send when the browser had no cookie: a new id.
    pub set_cookie: Option<String>,
}

impl PreLogin {
    /// The id of the browser's cookie for `organization`'s issuer path, or a new one.
    pub fn of(state: &TokenServiceState, organization: &str, headers: &HeaderMap) -> Self {
        match cookies::read(headers, cookies::PRE_LOGIN) {
            Some(id) => PreLogin { id, set_cookie: None },
            None => {
                let id = random_token();
                let cookie = cookies::set(
                    cookies::PRE_LOGIN,
                    &id,
                    &issuer_path(state, organization),
                    PRE_LOGIN_COOKIE_SECS,
                    secure_cookies(state),
                );
                PreLogin { id, set_cookie: Some(cookie) }
            }
        }
    }
}

/// The authorization request and this browser's CSRF token, as hidden fields
/// of a sign-in form.
pub(super) fn sign_in_fields(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    browser: &PreLogin,
) -> HiddenFields {
    let mut hidden = request.hidden_fields();
    hidden.push(("csrf", csrf::csrf_token(&state.login().csrf_key, &org.name, &browser.id)));
    hidden
}

/// The sign-in form (and the pre-login cookie, when the browser gets a new one).
pub(super) fn show_sign_in(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    browser: &PreLogin,
    status: StatusCode,
    message: Option<&str>,
    user_name: &str,
) -> Page {
    let hidden = sign_in_fields(state, org, request, browser);
    let action = format!("{}/login", issuer_path(state, &org.name));
    let passkey_action = format!("{action}/passkey/start");
    let passkey =
        passkeys_offered(state, org).then(|| PlainForm { action: &passkey_action, hidden: hidden.clone() });
    let page = SignInPage {
        form: FormContext {
            organization_display_name: &org.display_name,
            client_display_name: request.client_name(),
            action: &action,
            hidden,
            message,
        },
        user_name,
        passkey,
        single_sign_on: state.offers_single_sign_on(org),
    };
    Page::new(status, &page).with_cookie(browser.set_cookie.clone())
}

/// The live session of the browser, for this organization, and its cookie's secret.
pub(super) async fn current_session(
    state: &TokenServiceState,
    org: &OrganizationView,
    headers: &HeaderMap,
) -> Result<Option<(Session, String)>, OAuthError> {
    let Some(secret) = cookies::read(headers, cookies::SESSION) else { return Ok(None) };
    Ok(session::find(state.store(), &org.namespace, &secret, state.now()).await?.map(|s| (s, secret)))
}

/// A sign-in's end before it is written: the session it starts (unless the
/// browser's goes on), the code, and the redirect that carries them. Other
/// sign-ins [`Ending::finish`] it; single sign-on writes it with its own
/// record, in the same transaction.
pub(super) struct Ending {
    started: Option<NewSignIn>,
    code: NewAuthorizationCode,
    /// The redirect to the client, to send once the writes are done.
    pub response: Response,
}

impl Ending {
    pub fn new(
        state: &TokenServiceState,
        org: &OrganizationView,
        request: &AuthorizationRequest,
        user_id: &str,
        amr: Vec<String>,
        existing: Option<Session>,
    ) -> Result<Self, LoginError> {
        let now = state.now();
        let login = state.login();
        let (session, started) = match existing {
            Some(session) => (session, None),
            None => {
                let started = session::new(&org.namespace, user_id, now, amr, login.session_lifetime, now)?;
                (started.session.clone(), Some(started))
            }
        };
        let grant = CodeGrant {
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
        };
        let code = NewAuthorizationCode::new(state, grant)?;
        let mut set_cookies = Vec::new();
        if let Some(started) = &started {
            let path = issuer_path(state, &org.name);
            let secure = secure_cookies(state);
            let lifetime = duration_secs(login.session_lifetime);
            set_cookies.push(cookies::set(
                cookies::SESSION,
                started.secret.expose(),
                &path,
                lifetime,
                secure,
            ));
            set_cookies.push(cookies::clear(cookies::PRE_LOGIN, &path, secure));
        }
        let location = request.redirect_with(&state.issuer(&org.name), &[("code", code.value.expose())]);
        let response = see_other(&location, &set_cookies);
        Ok(Self { started, code, response })
    }

    /// Ends the sign-in: a new session, the user's last login and the code in
    /// one write, then the redirect.
    pub async fn finish(self, state: &TokenServiceState) -> Result<Response, LoginError> {
        state.store().write_sign_in(&self.writes()).await.map_err(OAuthError::from)?;
        Ok(self.response)
    }

    /// What the store writes for it.
    pub fn writes(&self) -> SignInWrites<'_> {
        SignInWrites { session: self.started.as_ref().map(|s| &s.row), code: self.code.stored() }
    }
}
