//! The check API: `POST {issuer}/api/v1/check` with a principal, a permission
//! and a scope; answers the access core's decision and its reason. Protected by
//! [`RequirePermission`] with `iam.view` (reading who may do what is viewing
//! the organization's IAM).
//!
//! Instead of a principal, a resource server may send the access token it was
//! presented (`"token"`): the principal is then the token's, and a token that
//! is revoked (RFC 7009) or no longer verifies is answered `allowed: false`
//! with reason `RevokedToken` or `InvalidToken`. This is how
//! `portcullis-guard`'s check mode sees revocations at once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::OAuthError;
use super::require_permission::{Permission, RequirePermission, principal_of};
use super::state::{OrganizationView, TokenServiceState};
use super::verify::{AudienceCheck, verify_access_token};
use crate::authz::{Decision, Principal, PrincipalKind, Scope};

/// The permission the check API requires.
pub struct IamView;

impl Permission for IamView {
    const NAME: &'static str = "iam.view";
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    /// Exactly one of `principal` and `token`.
    #[serde(default)]
    principal: Option<PrincipalRequest>,
    /// An access token of this organization, any audience.
    #[serde(default)]
    token: Option<String>,
    permission: String,
    /// A workspace name; absent for the organization scope.
    #[serde(default)]
    workspace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalRequest {
    kind: PrincipalKindRequest,
    name: String,
}

#[derive(Deserialize)]
enum PrincipalKindRequest {
    User,
    Group,
    Client,
}

pub async fn check(
    State(state): State<TokenServiceState>,
    caller: RequirePermission<IamView>,
    body: Bytes,
) -> Result<Json<Value>, OAuthError> {
    let request: CheckRequest = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("The request body is not a check request: {e}")))?;
    let org = state.require_organization(&caller.organization).await?;
    let principal = match (request.principal, request.token) {
        (Some(principal), None) => principal.into_principal(),
        (None, Some(token)) => match principal_of_token(&state, &org, &token).await? {
            Ok(principal) => principal,
            Err((reason, explanation)) => {
                return Ok(Json(json!({ "allowed": false, "reason": reason, "explanation": explanation })));
            }
        },
        _ => return Err(OAuthError::invalid_request("Give exactly one of principal and token.")),
    };
    let scope = match request.workspace {
        Some(workspace) => Scope::Workspace(workspace),
        None => Scope::Organization,
    };
    let index = state.access_index(&org).await?;
    let decision = index.index.check(&principal, &request.permission, &scope, state.now().as_second());
    let body = match decision {
        Decision::Allowed(grant) => json!({
            "allowed": true,
            "reason": "Allowed",
            "explanation": decision.to_string(),
            "grant": {
                "assignment": grant.assignment(),
                "role": grant.role(),
                "group": grant.group(),
                "workspace": match grant.scope() { Scope::Workspace(w) => Some(w.as_str()), Scope::Organization => None },
            },
        }),
        Decision::Denied(denial) => json!({
            "allowed": false,
            "reason": denial.code(),
            "explanation": decision.to_string(),
        }),
    };
    Ok(Json(body))
}

impl PrincipalRequest {
    fn into_principal(self) -> Principal {
        let kind = match self.kind {
            PrincipalKindRequest::User => PrincipalKind::User,
            PrincipalKindRequest::Group => PrincipalKind::Group,
            PrincipalKindRequest::Client => PrincipalKind::Client,
        };
        Principal { kind, name: self.name }
    }
}

/// The principal of an access token presented to a resource server, or why
/// the token speaks for no one (a reason code and its explanation).
async fn principal_of_token(
    state: &TokenServiceState,
    org: &OrganizationView,
    token: &str,
) -> Result<Result<Principal, (&'static str, String)>, OAuthError> {
    let claims = match verify_access_token(state, org, token, AudienceCheck::Any).await {
        Ok(verified) => verified.claims,
        Err(e) => return Ok(Err(("InvalidToken", e.description().to_string()))),
    };
    if claims.org != org.name {
        return Ok(Err(("InvalidToken", "The token was issued for another organization.".into())));
    }
    if super::grants::is_access_token_revoked(state, &org.name, &claims.jti).await? {
        return Ok(Err(("RevokedToken", "The token has been revoked.".into())));
    }
    Ok(principal_of(state, org, &claims)
        .await?
        .ok_or_else(|| ("InvalidToken", "The token's user no longer exists.".to_string())))
}
