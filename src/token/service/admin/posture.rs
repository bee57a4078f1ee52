//! `GET {issuer}/api/v1/posture`: the organization's compliance posture
//! ([`OrganizationPosture`]), at most a minute old
//! ([`crate::token::service::posture`]).

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::State;

use super::{AdminCaller, AdminError};
use crate::api::OrganizationPosture;
use crate::token::service::check::IamView;
use crate::token::service::state::TokenServiceState;

pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
) -> Result<Json<OrganizationPosture>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let posture = state.posture_cache().posture(&state, &org).await?;
    Ok(Json(OrganizationPosture::clone(&posture)))
}

pub fn get_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("The organization's compliance posture").description(
        "MFA adoption (by method and among privileged users), stale accounts, inactive users \
             still holding grants, standing privileged grants, SCIM sync health and signing key \
             changes to come, access requests waiting for a decision. Computed at most a minute \
             before; `computedAt` says when.",
    )
}
