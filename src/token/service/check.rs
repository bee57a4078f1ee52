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

use aide::generate::GenContext;
use aide::openapi::{Operation, ReferenceOr, RequestBody, Response, StatusCode as DocStatus};
use aide::transform::TransformOperation;
use aide::{OperationInput, OperationOutput};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admin::openapi::{document_permission, schema_content, string_header};
use super::error::{ErrorDocument, OAuthError};
use super::require_permission::{Permission, RequirePermission, principal_of};
use super::state::{OrganizationView, TokenServiceState};
use super::verify::{AudienceCheck, verify_access_token};
use crate::authz::{Decision, Principal, PrincipalKind, Scope};

/// The permission the check API requires.
pub struct IamView;

impl Permission for IamView {
    const NAME: &'static str = "iam.view";
}

/// May this principal do this, in the organization or a workspace?
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Exactly one of `principal` and `token`.
    #[serde(default)]
    principal: Option<PrincipalRequest>,
    /// An access token of this organization, any audience: its principal.
    #[serde(default)]
    token: Option<String>,
    permission: String,
    /// A workspace name; absent for the organization scope.
    #[serde(default)]
    workspace: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequest {
    kind: PrincipalKindRequest,
    name: String,
}

#[derive(Deserialize, JsonSchema)]
pub enum PrincipalKindRequest {
    User,
    Group,
    Client,
}

pub async fn check(
    State(state): State<TokenServiceState>,
    caller: RequirePermission<IamView>,
    body: Bytes,
) -> Result<Json<CheckAnswer>, OAuthError> {
    let request: CheckRequest = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("The request body is not a check request: {e}")))?;
    let org = state.require_organization(&caller.organization).await?;
    let principal = match (request.principal, request.token) {
        (Some(principal), None) => principal.into_principal(),
        (None, Some(token)) => match principal_of_token(&state, &org, &token).await? {
            Ok(principal) => principal,
            Err((reason, explanation)) => {
                return Ok(Json(CheckAnswer { allowed: false, reason, explanation, grant: None }));
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
    let explanation = decision.to_string();
    let body = match decision {
        Decision::Allowed(grant) => CheckAnswer {
            allowed: true,
            reason: "Allowed",
            explanation,
            grant: Some(GrantAnswer {
                assignment: grant.assignment().to_owned(),
                role: grant.role().to_owned(),
                group: grant.group().map(str::to_owned),
                workspace: match grant.scope() {
                    Scope::Workspace(w) => Some(w.clone()),
                    Scope::Organization => None,
                },
            }),
        },
        Decision::Denied(denial) => {
            CheckAnswer { allowed: false, reason: denial.code(), explanation, grant: None }
        }
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

/// The access core's decision.
#[derive(Serialize, JsonSchema)]
pub struct CheckAnswer {
    pub allowed: bool,
    /// `Allowed`, or why not (`NoGrant`, `Inactive`, …).
    pub reason: &'static str,
    /// The decision in a sentence.
    pub explanation: String,
    /// The grant that allows it (when allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantAnswer>,
}

#[derive(Serialize, JsonSchema)]
pub struct GrantAnswer {
    /// The role assignment's uid.
    pub assignment: String,
    pub role: String,
    pub group: Option<String>,
    pub workspace: Option<String>,
}

pub fn check_docs(mut op: TransformOperation<'_>) -> TransformOperation<'_> {
    let body = aide::generate::in_context(|ctx| RequestBody {
        description: None,
        content: [("application/json".to_owned(), schema_content::<CheckRequest>(ctx))].into_iter().collect(),
        required: true,
        extensions: Default::default(),
    });
    op.inner_mut().request_body = Some(ReferenceOr::Item(body));
    op.summary("May a principal do something? The access core's decision and its reason")
        .description("Errors are OAuth 2 error JSON (RFC 6749 §5.2, RFC 6750 §3.1), not problem documents.")
        .with(|mut op| {
            let response = oauth_error_response(400);
            op.inner_mut()
                .responses
                .get_or_insert_with(Default::default)
                .responses
                .insert(DocStatus::Code(400), ReferenceOr::Item(response));
            op
        })
}

/// An OAuth 2 error response of `status`.
fn oauth_error_response(status: u16) -> Response {
    aide::generate::in_context(|ctx| oauth_error_response_in(ctx, status))
}

fn oauth_error_response_in(ctx: &mut GenContext, status: u16) -> Response {
    let description = match status {
        400 => "The body is not a check request (`invalid_request`).",
        401 => "No valid access token (`invalid_token`, with the RFC 6750 challenge).",
        403 => "The token's principal lacks the permission (`insufficient_scope`).",
        404 => "No such organization.",
        _ => "The server could not complete the request.",
    };
    let mut response = Response {
        description: description.to_owned(),
        content: [("application/json".to_owned(), schema_content::<ErrorDocument<'static>>(ctx))]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    if matches!(status, 401 | 403) {
        response
            .headers
            .insert("WWW-Authenticate".to_owned(), string_header("The RFC 6750 bearer challenge."));
    }
    response
}

/// The bearer token and the permission, refused as OAuth 2 errors.
impl<P: Permission> OperationInput for RequirePermission<P> {
    fn operation_input(_ctx: &mut GenContext, operation: &mut Operation) {
        document_permission::<P>(operation);
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        _operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, Response)> {
        [401, 403, 404, 500]
            .into_iter()
            .map(|status| (Some(DocStatus::Code(status)), oauth_error_response_in(ctx, status)))
            .collect()
    }
}

impl OperationOutput for OAuthError {
    type Inner = ();
}
