//! Token introspection (RFC 7662), for the organization's authenticated
//! confidential clients. Access tokens are reported to any of them; a refresh
//! token only to the client it was issued to (RFC 7662 §4: no leaking tokens
//! across clients). Anything else is `{"active": false}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client_auth::{authenticate_client, presented_client};
use super::error::OAuthError;
use super::form::OAuthForm;
use super::grants;
use super::state::TokenServiceState;
use super::verify::{AudienceCheck, verify_access_token};
use crate::token::refresh::RefreshDecision;

#[derive(Deserialize)]
pub struct IntrospectionRequest {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub async fn introspect(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<IntrospectionRequest>,
) -> Result<Json<Value>, OAuthError> {
    let org = state.require_organization(&org).await?;
    let presented =
        presented_client(&headers, request.client_id.as_deref(), request.client_secret.as_deref())?;
    let client = authenticate_client(&state, &org, &presented).await?;
    if !client.confidential {
        return Err(OAuthError::UnauthorizedClient(
            "Only confidential clients may introspect tokens.".into(),
        ));
    }
    let token = request.token.as_deref().ok_or_else(|| OAuthError::invalid_request("token is required."))?;
    let inactive = Json(json!({ "active": false }));
    // RFC 7662 §2.1: the hint only orders the lookups.
    let refresh_first = request.token_type_hint.as_deref() == Some("refresh_token");
    if !refresh_first && let Some(active) = access_token_info(&state, &org, token).await? {
        return Ok(Json(active));
    }
    if let Some(found) = grants::find_refresh_token(&state, token).await?
        && found.organization == org.name
        && found.client_id == client.client_id
        && matches!(
            crate::token::refresh::decide(&found.family, found.presented_counter, state.now()),
            RefreshDecision::Rotate { .. }
        )
    {
        return Ok(Json(json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": found.client_id,
            "sub": found.sign_in.user_id,
            "scope": found.sign_in.scope,
            "exp": found.family.expires_at.as_second(),
            "iss": state.issuer(&org.name),
        })));
    }
    if refresh_first && let Some(active) = access_token_info(&state, &org, token).await? {
        return Ok(Json(active));
    }
    Ok(inactive)
}

async fn access_token_info(
    state: &TokenServiceState,
    org: &super::state::OrganizationView,
    token: &str,
) -> Result<Option<Value>, OAuthError> {
    let Ok(verified) = verify_access_token(state, org, token, AudienceCheck::Any).await else {
        return Ok(None);
    };
    let claims = verified.claims;
    if grants::is_access_token_revoked(state, &org.name, &claims.jti).await? {
        return Ok(None);
    }
    let mut body = serde_json::to_value(&claims).map_err(OAuthError::server)?;
    if let Some(object) = body.as_object_mut() {
        object.insert("active".into(), true.into());
        object.insert("token_type".into(), "Bearer".into());
    }
    Ok(Some(body))
}
