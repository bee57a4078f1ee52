//! The admin API: `{issuer}/api/v1/…`, JSON, every route behind
//! [`RequirePermission`] with a permission of the organization's catalog,
//! every refusal an RFC 9457 problem document ([`AdminError`]).
//!
//! ```text
//!  GET /o/{org}/api/v1/audit               audit::list     iam.export-audit  filters, cursor pages, newest first
//!  GET /o/{org}/api/v1/audit/head          audit::head     iam.export-audit  the chain's head (to keep outside)
//!  GET /o/{org}/api/v1/audit/verification  audit::verify   iam.export-audit  re-checks the stored chain
//!  GET /o/{org}/api/v1/audit/export        audit::export   iam.export-audit  JSON Lines, oldest first (audited)
//!  GET  /o/{org}/api/v1/users                 users::list        iam.view    keyset pages by userName
//!  GET  /o/{org}/api/v1/users/{id}            users::get         iam.view
//!  POST /o/{org}/api/v1/users/{id}/deactivate users::deactivate  iam.manage  audited, in the change's transaction
//!  POST /o/{org}/api/v1/users/{id}/reactivate users::reactivate  iam.manage
//! ```
//!
//! A caller ([`AdminCaller`]) carries who it is and where it calls from, so
//! that what it changes is audited in the same transaction.

pub mod audit;
pub mod problem;
pub mod users;

use std::marker::PhantomData;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};

pub use problem::AdminError;

use super::require_permission::{Authorized, Permission, RequirePermission};
use super::state::TokenServiceState;
use crate::audit::{Actor, AuditContext, Source};
use crate::authz::PrincipalKind;

/// `iam.export-audit`: read and export the audit trail.
pub struct IamExportAudit;

impl Permission for IamExportAudit {
    const NAME: &'static str = "iam.export-audit";
}

/// `iam.manage`: change the organization's users and groups.
pub struct IamManage;

impl Permission for IamManage {
    const NAME: &'static str = "iam.manage";
}

/// The admin API's routes.
pub fn routes() -> Router<TokenServiceState> {
    Router::new()
        .route("/o/{org}/api/v1/audit", get(audit::list))
        .route("/o/{org}/api/v1/audit/head", get(audit::head))
        .route("/o/{org}/api/v1/audit/verification", get(audit::verify))
        .route("/o/{org}/api/v1/audit/export", get(audit::export))
        .route("/o/{org}/api/v1/users", get(users::list))
        .route("/o/{org}/api/v1/users/{id}", get(users::get))
        .route("/o/{org}/api/v1/users/{id}/deactivate", post(users::deactivate))
        .route("/o/{org}/api/v1/users/{id}/reactivate", post(users::reactivate))
}

/// The namespace of the caller's organization: the store's key.
pub(crate) async fn organization_namespace<P: Permission>(
    state: &TokenServiceState,
    caller: &AdminCaller<P>,
) -> Result<String, AdminError> {
    Ok(state.require_organization(&caller.authorized.organization).await?.namespace.clone())
}

/// A caller holding permission `P`, and where it calls from.
pub struct AdminCaller<P: Permission> {
    pub authorized: Authorized,
    pub source: Source,
    permission: PhantomData<P>,
}

impl<P: Permission> AdminCaller<P> {
    /// Who acts, for the audit events of what this caller does.
    pub fn audit_context(&self) -> AuditContext {
        let claims = &self.authorized.claims;
        let actor = match self.authorized.principal.kind {
            PrincipalKind::User => {
                Actor::user(&claims.sub, &self.authorized.principal.name, Some(&claims.client_id))
            }
            _ => Actor::client(&claims.client_id),
        };
        AuditContext::new(actor, self.source.clone())
    }
}

impl<P: Permission> FromRequestParts<TokenServiceState> for AdminCaller<P> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &TokenServiceState) -> Result<Self, AdminError> {
        let RequirePermission { authorized, .. } =
            RequirePermission::<P>::from_request_parts(parts, state).await?;
        Ok(Self { authorized, source: Source::of_request(parts), permission: PhantomData })
    }
}
