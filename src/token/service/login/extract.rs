//! The extractors of the login handlers: what a request must carry before a
//! handler sees it, each refusal answered by [`LoginError`].
//!
//! ```text
//!  PathOrganization  {org} of the path ─► the organization                   │ 404 page
//!  SignInPost        + form ─ authorization request valid again ─ CSRF token │ 400 page, redirect to the
//!                      of this browser's pre-login cookie                     │ client, 403 sign-in form
//!  SignedIn          + session cookie ─ live session ─ active user            │ 401 page
//!  AccountPost       + form ─ account token of this session                   │ 400 page, 403 account page
//! ```

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::account::{self, SignedIn};
use super::csrf;
use super::error::LoginError;
use super::flow::{PreLogin, current_session, show_sign_in};
use super::pages::Page;
use super::request::{self, AuthorizationRequest, Params};
use crate::store::UserStore as _;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// Why a sign-in form post is refused when its CSRF token does not match.
pub(super) const FORM_EXPIRED: &str =
    "Your sign-in form expired or was not sent from this site. Please sign in again.";
/// The same for the account page's forms.
const ACCOUNT_FORM_EXPIRED: &str = "This form expired or was not sent from this site. Please try again.";

/// The organization whose issuer path the request is under.
pub(super) struct PathOrganization(pub Arc<OrganizationView>);

impl FromRequestParts<TokenServiceState> for PathOrganization {
    type Rejection = LoginError;

    async fn from_request_parts(parts: &mut Parts, state: &TokenServiceState) -> Result<Self, LoginError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        match state.organization(&name).await? {
            Some(org) => Ok(PathOrganization(org)),
            None => {
                Err(Page::notice(StatusCode::NOT_FOUND, "Not found", "There is no organization here.").into())
            }
        }
    }
}

/// A form's fields, or the page saying it is malformed.
fn form_fields(body: &[u8], title: &str) -> Result<Params, LoginError> {
    Params::parse(body).map_err(|reason| {
        Page::notice(StatusCode::BAD_REQUEST, title, &format!("The form is malformed: {reason}.")).into()
    })
}

/// A sign-in form post from the browser that was shown the form: the
/// authorization request it carries passed validation again, and its CSRF
/// token matches this browser's pre-login cookie.
pub(super) struct SignInPost {
    pub org: Arc<OrganizationView>,
    pub params: Params,
    pub request: AuthorizationRequest,
    pub browser: PreLogin,
    /// Where the post came from (after the trusted-proxy rules), for audit.
    pub source: super::SourceAddress,
}

impl FromRequest<TokenServiceState> for SignInPost {
    type Rejection = LoginError;

    async fn from_request(request: Request, state: &TokenServiceState) -> Result<Self, LoginError> {
        let (mut parts, body) = request.into_parts();
        let PathOrganization(org) = PathOrganization::from_request_parts(&mut parts, state).await?;
        let browser = PreLogin::of(state, &org.name, &parts.headers);
        let Ok(source) = super::SourceAddress::from_request_parts(&mut parts, state).await;
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await?;
        let params = form_fields(&body, "Sign-in refused")?;
        let request = request::validate(state, &org.name, &params)
            .await
            .map_err(|error| super::flow::refusal(state, &org, error))?;
        // A new cookie: this browser was never shown a form.
        let matches = browser.set_cookie.is_none()
            && params.get("csrf").is_some_and(|token| {
                csrf::csrf_matches(&state.login().csrf_key, &org.name, &browser.id, token)
            });
        if !matches {
            let page =
                show_sign_in(state, &org, &request, &browser, StatusCode::FORBIDDEN, Some(FORM_EXPIRED), "");
            return Err(page.into());
        }
        Ok(SignInPost { org, params, request, browser, source })
    }
}

impl SignInPost {
    /// The sign-in form again, saying why.
    pub fn sign_in_again(&self, state: &TokenServiceState, status: StatusCode, message: &str) -> LoginError {
        show_sign_in(state, &self.org, &self.request, &self.browser, status, Some(message), "").into()
    }
}

impl FromRequestParts<TokenServiceState> for SignedIn {
    type Rejection = LoginError;

    async fn from_request_parts(parts: &mut Parts, state: &TokenServiceState) -> Result<Self, LoginError> {
        let PathOrganization(org) = PathOrganization::from_request_parts(parts, state).await?;
        let not_signed_in = || {
            let text = "Sign in to an application of this organization first, then open this page again.";
            LoginError::from(Page::notice(StatusCode::UNAUTHORIZED, "Not signed in", text))
        };
        let Some((session, session_secret)) = current_session(state, &org, &parts.headers).await? else {
            return Err(not_signed_in());
        };
        match state.store().get_user(&org.namespace, &session.user_id).await? {
            Some(user) if user.active => Ok(SignedIn { org, session, session_secret, user }),
            _ => Err(not_signed_in()),
        }
    }
}

/// A form post of the account page: a signed-in browser, and a CSRF token
/// bound to its session.
pub(super) struct AccountPost {
    pub account: SignedIn,
    pub params: Params,
}

impl FromRequest<TokenServiceState> for AccountPost {
    type Rejection = LoginError;

    async fn from_request(request: Request, state: &TokenServiceState) -> Result<Self, LoginError> {
        let (mut parts, body) = request.into_parts();
        let account = SignedIn::from_request_parts(&mut parts, state).await?;
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await?;
        let params = form_fields(&body, "Refused")?;
        let matches = params.get("csrf").is_some_and(|token| {
            let key = &state.login().csrf_key;
            csrf::account_token_matches(key, &account.org.name, &account.session_secret, token)
        });
        if !matches {
            return Err(account::refused(state, &account, StatusCode::FORBIDDEN, ACCOUNT_FORM_EXPIRED).await);
        }
        Ok(AccountPost { account, params })
    }
}
