//! `GET|POST {issuer}/end_session`: OpenID Connect RP-Initiated Logout 1.0.
//!
//! ```text
//!  id_token_hint (ours: signature, iss; expired is fine) ─► the client (its aud)
//!  client_id (must agree with the hint)                   ─► the client
//!  post_logout_redirect_uri ─► exactly one of the client's list, else an error page (no redirect)
//!  session cookie ─► hint names its user: end now │ no hint: ask first (a form with a MACed token,
//!                                                 │ so another site cannot sign the user out)
//!     ended ─► grants::revoke_session_grants, cookie cleared ─► redirect ?state= │ "signed out" page
//! ```

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::SignedDuration;

use super::cookies;
use super::csrf;
use super::error::LoginError;
use super::extract::PathOrganization;
use super::flow::{current_session, secure_cookies, see_other};
use super::issuer_path;
use super::pages::{LogoutConfirmPage, Page, PlainForm};
use super::request::Params;
use super::session;
use crate::token::claims::IdTokenClaims;
use crate::token::jwt::{self, TokenType, Validation};
use crate::token::service::error::OAuthError;
use crate::token::service::grants;
use crate::token::service::state::{ClientView, OrganizationView, TokenServiceState};

/// An ID token used as a hint may have expired long ago (RP-Initiated Logout §2).
const HINT_LEEWAY: SignedDuration = SignedDuration::from_hours(24 * 30);

pub(super) async fn end_session_get(
    State(state): State<TokenServiceState>,
    PathOrganization(org): PathOrganization,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, LoginError> {
    end_session(&state, &org, query.unwrap_or_default().as_bytes(), &headers, false).await
}

pub(super) async fn end_session_post(
    State(state): State<TokenServiceState>,
    PathOrganization(org): PathOrganization,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LoginError> {
    end_session(&state, &org, &body, &headers, true).await
}

/// The "request refused" page, saying why.
fn refused(text: &str) -> LoginError {
    Page::notice(StatusCode::BAD_REQUEST, "Sign-out request refused", text).into()
}

async fn end_session(
    state: &TokenServiceState,
    org: &OrganizationView,
    encoded: &[u8],
    headers: &HeaderMap,
    posted: bool,
) -> Result<Response, LoginError> {
    let params =
        Params::parse(encoded).map_err(|reason| refused(&format!("The request is malformed: {reason}.")))?;
    let hint = match params.get("id_token_hint") {
        Some(token) => match verify_hint(state, org, token).await? {
            Some(claims) => Some(claims),
            None => return Err(refused("The id_token_hint was not issued here.")),
        },
        None => None,
    };
    let hinted_client = hint.as_ref().and_then(|claims| claims.aud.as_slice().first().cloned());
    let client_id = match (params.get("client_id"), hinted_client.as_deref()) {
        (Some(given), Some(hinted)) if given != hinted => {
            return Err(refused("client_id does not match the id_token_hint."));
        }
        (Some(given), _) => Some(given.to_owned()),
        (None, hinted) => hinted.map(str::to_owned),
    };
    let client: Option<Arc<ClientView>> = match &client_id {
        Some(id) => match state.client(&org.name, id).await? {
            Some(client) => Some(client),
            None => return Err(refused("The application is not registered here.")),
        },
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let Some(client) = &client else {
                return Err(refused("post_logout_redirect_uri needs an id_token_hint or a client_id."));
            };
            if !client.post_logout_redirect_uris.iter().any(|registered| registered == uri) {
                return Err(refused("The post_logout_redirect_uri is not registered for this application."));
            }
            Some(uri.to_owned())
        }
    };
    let client_state = params.get("state");

    let path = issuer_path(state, &org.name);
    let secure = secure_cookies(state);
    let mut set_cookies = Vec::new();
    if let Some((session, secret)) = current_session(state, org, headers).await? {
        let confirmed = match &hint {
            // The hint names whom the client signed in; another user's session is left alone.
            Some(claims) => claims.sub == session.user_id,
            None => {
                posted
                    && params.get("logout_token").is_some_and(|token| {
                        csrf::logout_token_matches(&state.login().csrf_key, &org.name, &secret, token)
                    })
            }
        };
        if hint.is_none() && !confirmed {
            let mut hidden =
                vec![("logout_token", csrf::logout_token(&state.login().csrf_key, &org.name, &secret))];
            let carried =
                [("client_id", client_id.as_deref()), ("post_logout_redirect_uri", redirect.as_deref())];
            for (name, value) in carried.into_iter().chain([("state", client_state)]) {
                if let Some(value) = value {
                    hidden.push((name, value.to_owned()));
                }
            }
            let action = format!("{path}/end_session");
            let status = if posted { StatusCode::FORBIDDEN } else { StatusCode::OK };
            let page = LogoutConfirmPage {
                organization_display_name: &org.display_name,
                form: PlainForm { action: &action, hidden },
            };
            return Ok(Page::new(status, &page).into_response());
        }
        if confirmed {
            session::end(state.store(), &session, state.now()).await?;
            grants::revoke_session_grants(state, &org.name, &session.id).await?;
            set_cookies.push(cookies::clear(cookies::SESSION, &path, secure));
        }
    }
    Ok(match redirect {
        Some(uri) => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(value) = client_state {
                query.append_pair("state", value);
            }
            let query = query.finish();
            let location = match (query.is_empty(), uri.contains('?')) {
                (true, _) => uri,
                (false, true) => format!("{uri}&{query}"),
                (false, false) => format!("{uri}?{query}"),
            };
            see_other(&location, &set_cookies)
        }
        None => {
            let text = format!("You are signed out of {}.", org.display_name);
            Page::notice(StatusCode::OK, "Signed out", &text).with_cookies(set_cookies).into_response()
        }
    })
}

/// The hint's claims if it is an ID token we signed for this issuer (expired or not).
async fn verify_hint(
    state: &TokenServiceState,
    org: &OrganizationView,
    token: &str,
) -> Result<Option<IdTokenClaims>, OAuthError> {
    // The audience is needed to verify; read it unverified first, then verify with it.
    let Some(audience) = unverified_audience(token) else { return Ok(None) };
    let keys = state.key_set(org).await?;
    let issuer = state.issuer(&org.name);
    let mut validation = Validation::new(TokenType::Id, &issuer, &audience, state.now());
    validation.leeway = HINT_LEEWAY;
    Ok(jwt::verify::<IdTokenClaims>(token, &keys, &validation).ok().map(|verified| verified.claims))
}

fn unverified_audience(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match value.get("aud")? {
        serde_json::Value::String(aud) => Some(aud.clone()),
        serde_json::Value::Array(list) => list.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}
