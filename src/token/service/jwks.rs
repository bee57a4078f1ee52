//! The JWK Set (RFC 7517 §5): every key in state next, active and retiring.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::OAuthError;
use super::state::TokenServiceState;

/// How long relying parties may cache the set. Short next to the rotation
/// overlap, so a `next` key is known long before it signs.
const MAX_AGE: &str = "public, max-age=300";

pub async fn jwks(
    State(state): State<TokenServiceState>,
    Path(org): Path<String>,
) -> Result<Response, OAuthError> {
    let org = state.require_organization(&org).await?;
    let keys = state.key_set(&org).await?;
    let mut response = Json(keys.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    Ok(response)
}
