//! Token revocation (RFC 7009). A refresh token revokes its whole family; an
//! access token is revoked by `jti` until it expires (introspection and
//! userinfo then refuse it). Unknown tokens, and tokens of other clients, are
//! answered 200 like any other (§2.2): the answer tells nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::client_auth::{authenticate_client, presented_client};
use super::error::OAuthError;
use super::form::OAuthForm;
use super::grants;
use super::state::TokenServiceState;
use super::verify::{AudienceCheck, verify_access_token};

#[derive(Deserialize)]
pub struct RevocationRequest {
    token: Option<String>,
    #[allow(dead_code, reason = "RFC 7009 §2.1: only a hint; both kinds are tried")]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub async fn revoke(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<RevocationRequest>,
) -> Result<StatusCode, OAuthError> {
    let org = state.require_organization(&org).await?;
    let presented =
        presented_client(&headers, request.client_id.as_deref(), request.client_secret.as_deref())?;
    let client = authenticate_client(&state, &org, &presented).await?;
    let token = request.token.as_deref().ok_or_else(|| OAuthError::invalid_request("token is required."))?;

    if let Some(found) = grants::find_refresh_token(&state, token).await? {
        if found.organization == org.name && found.client_id == client.client_id {
            grants::revoke_family(&state, &found.family.family_id, "revoked").await?;
        }
        return Ok(StatusCode::OK);
    }
    if let Ok(verified) = verify_access_token(&state, &org, token, AudienceCheck::Any).await
        && verified.claims.client_id == client.client_id
    {
        let expires = jiff::Timestamp::from_second(verified.claims.exp).map_err(OAuthError::server)?;
        grants::revoke_access_token(&state, &org.name, &verified.claims.jti, expires).await?;
    }
    Ok(StatusCode::OK)
}
