//! `GET {issuer}/authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2):
//! validate the request, reuse the browser's session when there is one (and
//! `prompt=login` or `max_age` do not say otherwise), else show the sign-in form.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::flow::{self, current_session, finish, refusal, server_error, show_sign_in};
use super::pages;
use super::request::{self, Params, RequestError};
use crate::store::UserStore as _;
use crate::token::service::state::TokenServiceState;

pub(super) async fn authorize(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let org = match flow::organization(&state, &organization).await {
        Ok(org) => org,
        Err(page) => return page,
    };
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(reason) => {
            return pages::respond(
                StatusCode::BAD_REQUEST,
                pages::notice("Sign-in request refused", &format!("The request is malformed: {reason}.")),
                &[],
            );
        }
    };
    let request = match request::validate(&state, &organization, &params).await {
        Ok(request) => request,
        Err(error) => return refusal(&state, &org, error),
    };

    if !request.prompt.login {
        let session = match current_session(&state, &org, &headers).await {
            Ok(session) => session,
            Err(error) => return server_error(error),
        };
        if let Some((session, _)) = session {
            let fresh_enough = request
                .max_age
                .is_none_or(|max_age| state.now().as_second() - session.auth_time.as_second() <= max_age);
            let active = match state.store().get_user(&org.namespace, &session.user_id).await {
                Ok(user) => user.is_some_and(|user| user.active),
                Err(error) => return server_error(error.into()),
            };
            if fresh_enough && active {
                let user_id = session.user_id.clone();
                let amr = session.amr.clone();
                return finish(&state, &org, &request, &user_id, amr, Some(session))
                    .await
                    .unwrap_or_else(server_error);
            }
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
        return refusal(&state, &org, error);
    }
    show_sign_in(&state, &org, &request, &headers, StatusCode::OK, None, "")
}
