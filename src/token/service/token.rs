//! The token endpoint (RFC 6749 §3.2): `authorization_code` with PKCE,
//! `refresh_token` with rotation, `client_credentials`. No implicit and no
//! password grant (RFC 9700 §2.1.2, §2.4).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::client_auth::{authenticate_client, presented_client};
use super::error::OAuthError;
use super::form::OAuthForm;
use super::grants::{self, CodeRedemption};
use super::issue::{self, CLIENT_SCOPES, IdTokenInput, Subject, TokenUser, USER_SCOPES};
use super::mfa_policy;
use super::state::{ClientView, OrganizationView, TokenServiceState};
use crate::api::GrantType;
use crate::http_metrics::TokenIssued;
use crate::store::UserStore as _;
use crate::token::refresh;

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

pub async fn token(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<TokenRequest>,
) -> Result<Response, OAuthError> {
    let org = state.require_organization(&org).await?;
    let presented =
        presented_client(&headers, request.client_id.as_deref(), request.client_secret.as_deref())?;
    let client = authenticate_client(&state, &org, &presented).await?;
    let (response, grant_type) = match request.grant_type.as_deref() {
        Some("client_credentials") => {
            (client_credentials(&state, &org, &client, &request).await?, "client_credentials")
        }
        Some("authorization_code") => {
            (authorization_code(&state, &org, &client, &request).await?, "authorization_code")
        }
        Some("refresh_token") => (refresh_token(&state, &org, &client, &request).await?, "refresh_token"),
        Some(_) => {
            return Err(OAuthError::UnsupportedGrantType(
                "Supported grant types: authorization_code, refresh_token, client_credentials.".into(),
            ));
        }
        None => return Err(OAuthError::invalid_request("grant_type is required.")),
    };
    let mut response = Json(response).into_response();
    // RFC 6749 §5.1.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // For the metrics port (crate::http_metrics): tokens issued, by grant.
    response.extensions_mut().insert(TokenIssued { grant_type });
    Ok(response)
}

fn require_grant(client: &ClientView, grant: GrantType, name: &str) -> Result<(), OAuthError> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(OAuthError::UnauthorizedClient(format!("This client may not use the {name} grant.").into()))
    }
}

/// RFC 6749 §4.4: the client's own roles (RoleAssignments with principal kind `Client`).
async fn client_credentials(
    state: &TokenServiceState,
    org: &OrganizationView,
    client: &ClientView,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, GrantType::ClientCredentials, "client_credentials")?;
    if !client.confidential {
        return Err(OAuthError::UnauthorizedClient("A public client cannot use client_credentials.".into()));
    }
    let scopes = issue::parse_scope(request.scope.as_deref(), CLIENT_SCOPES)?;
    let keys = state.key_set(org).await?;
    let access = issue::access_token(state, org, &keys, client, Subject::Client, &scopes, None, None).await?;
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: None,
        id_token: None,
        scope: access.claims.scope,
    })
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5.
async fn authorization_code(
    state: &TokenServiceState,
    org: &OrganizationView,
    client: &ClientView,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, GrantType::AuthorizationCode, "authorization_code")?;
    let code = request.code.as_deref().ok_or_else(|| OAuthError::invalid_request("code is required."))?;
    let keys = state.key_set(org).await?;
    let jti = issue::new_jti();
    let family = if client.allows_grant(GrantType::RefreshToken) {
        Some(
            refresh::start_family(state.now(), org.refresh_token_lifetime, &mut rand::rng())
                .map_err(OAuthError::server)?,
        )
    } else {
        None
    };
    let redeemed = grants::redeem_authorization_code(
        state,
        CodeRedemption {
            organization: &org.name,
            client_id: &client.client_id,
            code,
            redirect_uri: request.redirect_uri.as_deref(),
            code_verifier: request.code_verifier.as_deref(),
            pkce_required: client.pkce_required(),
            access_jti: &jti,
            access_expires: issue::access_expiry(state, org),
            family: family.as_ref().map(|(record, first)| (record, first)),
        },
    )
    .await?;
    let sign_in = redeemed.sign_in;
    let user = match active_user(state, org, &sign_in.user_id).await {
        Ok(user) => user,
        Err(error) => {
            if let Some((record, _)) = &family {
                grants::revoke_family(state, &record.family_id, "user_inactive").await?;
            }
            return Err(error);
        }
    };
    let scopes = issue::parse_scope(Some(&sign_in.scope), USER_SCOPES)?;
    let access = issue::access_token(
        state,
        org,
        &keys,
        client,
        Subject::User(&user),
        &scopes,
        Some(sign_in.auth_time),
        Some(jti),
    )
    .await?;
    let id_token = if scopes.iter().any(|s| s == "openid") {
        Some(issue::id_token(
            state,
            org,
            &keys,
            client,
            IdTokenInput {
                user: &user,
                scopes: &scopes,
                nonce: redeemed.nonce,
                auth_time: sign_in.auth_time,
                amr: sign_in.amr.clone(),
                access_token: &access.token,
            },
        )?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: family.map(|(_, first)| first.token.expose().to_owned()),
        id_token,
        scope: access.claims.scope,
    })
}

/// RFC 6749 §6, rotating the refresh token (RFC 9700 §4.14.2).
async fn refresh_token(
    state: &TokenServiceState,
    org: &OrganizationView,
    client: &ClientView,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, GrantType::RefreshToken, "refresh_token")?;
    let presented = request
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required."))?;
    let grant = grants::find_refresh_grant(state, presented, &org.namespace).await?;
    // Another organization's or another client's token is not ours to judge.
    let Some(grant) =
        grant.filter(|g| g.presented.organization == org.name && g.presented.client_id == client.client_id)
    else {
        return Err(OAuthError::invalid_grant("The refresh token is invalid."));
    };
    let found = &grant.presented;
    let granted = issue::parse_scope(Some(&found.sign_in.scope), USER_SCOPES)?;
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scopes = match request.scope.as_deref() {
        Some(asked) => {
            let asked = issue::parse_scope(Some(asked), USER_SCOPES)?;
            if let Some(extra) = asked.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::InvalidScope(format!("Scope {extra:?} was not granted.").into()));
            }
            asked
        }
        None => granted,
    };
    let keys = state.key_set(org).await?;
    let Some(user) = &grant.user else {
        return Err(OAuthError::invalid_grant("The user is no longer active."));
    };
    // Roles may have changed since the sign-in: a family signed in without a
    // second factor ends once the MFA policy asks this user for one.
    if !mfa_policy::sign_in_satisfies(state, org, &user.user_name, &found.sign_in.amr).await? {
        grants::revoke_family(state, &found.family.family_id, "mfa_required").await?;
        return Err(OAuthError::invalid_grant(
            "The organization now requires a second factor for this user: sign in again.",
        ));
    }
    let successor = grants::rotate_refresh_token(state, found).await?;
    let access = issue::access_token(
        state,
        org,
        &keys,
        client,
        Subject::User(user),
        &scopes,
        Some(found.sign_in.auth_time),
        None,
    )
    .await?;
    // OpenID Connect Core §12.2: a refreshed ID token keeps the sign-in's facts.
    let id_token = if scopes.iter().any(|s| s == "openid") {
        Some(issue::id_token(
            state,
            org,
            &keys,
            client,
            IdTokenInput {
                user,
                scopes: &scopes,
                nonce: None,
                auth_time: found.sign_in.auth_time,
                amr: found.sign_in.amr.clone(),
                access_token: &access.token,
            },
        )?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: Some(successor.token.expose().to_owned()),
        id_token,
        scope: access.claims.scope,
    })
}

/// The signed-in user, if it still exists and is active.
async fn active_user(
    state: &TokenServiceState,
    org: &OrganizationView,
    user_id: &str,
) -> Result<TokenUser, OAuthError> {
    match state.store().get_user(&org.namespace, user_id).await? {
        Some(user) if user.active => Ok(TokenUser::from(&user)),
        _ => Err(OAuthError::invalid_grant("The user is no longer active.")),
    }
}
