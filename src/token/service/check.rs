//! The check API: `POST {issuer}/api/v1/check` with a principal, a permission
//! and a scope; answers the access core's decision and its reason. Protected by
//! [`RequirePermission`] with `iam.view` (reading who may do what is viewing
//! the organization's IAM).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::OAuthError;
use super::require_permission::{Permission, RequirePermission};
use super::state::TokenServiceState;
use crate::authz::{Decision, Principal, PrincipalKind, Scope};

/// The permission the check API requires.
pub struct IamView;

impl Permission for IamView {
    const NAME: &'static str = "iam.view";
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    principal: PrincipalRequest,
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
    let kind = match request.principal.kind {
        PrincipalKindRequest::User => PrincipalKind::User,
        PrincipalKindRequest::Group => PrincipalKind::Group,
        PrincipalKindRequest::Client => PrincipalKind::Client,
    };
    let principal = Principal { kind, name: request.principal.name };
    let scope = match request.workspace {
        Some(workspace) => Scope::Workspace(workspace),
        None => Scope::Organization,
    };
    let org = state.require_organization(&caller.organization).await?;
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
