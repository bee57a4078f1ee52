//! `GET {issuer}/authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2):
//! validate the request, reuse the browser's session when there is one (and
//! `prompt=login`, `max_age` and the MFA policy as it stands now do not say
//! otherwise), else show the sign-in form.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::error::LoginError;
use super::extract::PathOrganization;
use super::flow::{Ending, PreLogin, current_session, refusal, show_sign_in};
use super::pages::Page;
use super::request::{self, Params, RequestError};
use crate::store::UserStore as _;
use crate::token::service::mfa_policy;
use crate::token::service::state::TokenServiceState;

pub(super) async fn authorize(
    State(state): State<TokenServiceState>,
    PathOrganization(org): PathOrganization,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, LoginError> {
    let state = &state;
    let params = Params::parse(query.unwrap_or_default().as_bytes()).map_err(|reason| {
        let text = format!("The request is malformed: {reason}.");
        Page::notice(StatusCode::BAD_REQUEST, "Sign-in request refused", &text)
    })?;
    let request = request::validate(state, &org.name, &params).await.map_err(|e| refusal(state, &org, e))?;

    if !request.prompt.login
        && let Some((session, _)) = current_session(state, &org, &headers).await?
    {
        let fresh_enough = request
            .max_age
            .is_none_or(|max_age| state.now().as_second() - session.auth_time.as_second() <= max_age);
        let user = state.store().get_user(&org.namespace, &session.user_id).await?.filter(|u| u.active);
        // Roles may have changed since the sign-in: a session without a second
        // factor is not reused for a user the MFA policy now asks one of.
        let satisfies_mfa = match &user {
            Some(user) => mfa_policy::sign_in_satisfies(state, &org, &user.user_name, &session.amr).await?,
            None => false,
        };
        if fresh_enough && user.is_some() && satisfies_mfa {
            let user_id = session.user_id.clone();
            let amr = session.amr.clone();
            return Ending::new(state, &org, &request, &user_id, amr, Some(session))?.finish(state).await;
        }
    }
    // OpenID Connect Core §3.1.2.6: prompt=none and no usable session.
    if request.prompt.none {
        let error = RequestError::ToClient {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error: "login_required",
            description: "the user is not signed in".to_owned(),
        };
        return Err(refusal(state, &org, error));
    }
    let browser = PreLogin::of(state, &org.name, &headers);
    // Read now so the form knows whether to offer single sign-on.
    state.identity_providers(&org).await?;
    Ok(show_sign_in(state, &org, &request, &browser, StatusCode::OK, None, "").into_response())
}
