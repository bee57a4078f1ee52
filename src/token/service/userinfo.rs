//! The UserInfo endpoint (OpenID Connect Core §5.3): claims about the user an
//! access token was issued for, by its scopes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::error::OAuthError;
use super::grants;
use super::issue::{display_name, primary_email};
use super::state::TokenServiceState;
use super::verify::{AudienceCheck, bearer_token, verify_access_token};
use crate::store::UserStore as _;

pub async fn userinfo(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, OAuthError> {
    let org = state.require_organization(&org).await?;
    let token = bearer_token(&headers)?;
    let verified = verify_access_token(&state, &org, token, AudienceCheck::Any)
        .await
        .map_err(|e| OAuthError::invalid_token(e.description()))?;
    let claims = verified.claims;
    if grants::is_access_token_revoked(&state, &org.name, &claims.jti).await? {
        return Err(OAuthError::invalid_token("The token was revoked."));
    }
    if !claims.scopes().any(|s| s == "openid") {
        return Err(OAuthError::InsufficientScope("The token was not issued with scope openid.".into()));
    }
    // A client_credentials token has no user behind it.
    let user = state
        .store()
        .get_user(&org.namespace, &claims.sub)
        .await?
        .filter(|user| user.active)
        .ok_or_else(|| OAuthError::invalid_token("The token's user does not exist or is inactive."))?;
    let mut body = Map::new();
    body.insert("sub".into(), user.id.clone().into());
    if claims.scopes().any(|s| s == "profile") {
        body.insert("preferred_username".into(), user.user_name.clone().into());
        if let Some(name) = display_name(&user) {
            body.insert("name".into(), name.into());
        }
        if let Some(given) = &user.given_name {
            body.insert("given_name".into(), given.clone().into());
        }
        if let Some(family) = &user.family_name {
            body.insert("family_name".into(), family.clone().into());
        }
    }
    if claims.scopes().any(|s| s == "email")
        && let Some(email) = primary_email(&user)
    {
        body.insert("email".into(), email.into());
        body.insert("email_verified".into(), false.into());
    }
    Ok(Json(Value::Object(body)))
}
