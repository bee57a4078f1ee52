//! OpenID Connect Discovery 1.0 §4 (and the same document for RFC 8414).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::OAuthError;
use super::issue::USER_SCOPES;
use super::state::TokenServiceState;

pub async fn openid_configuration(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
) -> Result<Json<Value>, OAuthError> {
    let org = state.require_organization(&org).await?;
    let issuer = state.issuer(&org.name);
    // The policy's algorithm, and those of keys still published.
    let mut algorithms = vec![org.signing_algorithm.as_str()];
    if let Ok(keys) = state.key_set(&org).await {
        for meta in keys.metas() {
            if !algorithms.contains(&meta.algorithm.as_str()) {
                algorithms.push(meta.algorithm.as_str());
            }
        }
    }
    Ok(Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/end_session"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "scopes_supported": USER_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "azp",
                             "email", "email_verified", "name", "preferred_username"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })))
}
