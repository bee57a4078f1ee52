//! The admin API: `{issuer}/api/v1/…`, JSON, every route behind
//! [`RequirePermission`] with a permission of the organization's catalog,
//! every refusal an RFC 9457 problem document ([`AdminError`]).
//!
//! ```text
//!  GET /o/{org}/api/v1/audit               audit::list     iam.export-audit  filters, cursor pages, newest first
//!  GET /o/{org}/api/v1/audit/head          audit::head     iam.export-audit  the chain's head (to keep outside)
//!  GET /o/{org}/api/v1/audit/verification  audit::verify   iam.export-audit  re-checks the stored chain
//!  GET /o/{org}/api/v1/audit/export        audit::export   iam.export-audit  JSON Lines, oldest first (audited)
//!  GET    /o/{org}/api/v1/users                     users::list        iam.view    keyset pages by userName
//!  POST   /o/{org}/api/v1/users                     users::create      iam.manage  local user, optional password
//!  GET    /o/{org}/api/v1/users/{id}                users::get         iam.view    + effective permissions and trail
//!  PATCH  /o/{org}/api/v1/users/{id}                users::update      iam.manage  merge patch, If-Match → 412
//!  DELETE /o/{org}/api/v1/users/{id}                users::delete      iam.manage
//!  POST   /o/{org}/api/v1/users/{id}/deactivate     users::deactivate  iam.manage  audited, in the change's transaction
//!  POST   /o/{org}/api/v1/users/{id}/reactivate     users::reactivate  iam.manage
//!  DELETE /o/{org}/api/v1/users/{id}/second-factors users::reset_second_factors  iam.manage  TOTP + WebAuthn
//!  DELETE /o/{org}/api/v1/users/{id}/sessions       users::revoke_sessions       iam.manage  sessions + refresh families
//!  GET    /o/{org}/api/v1/groups                    groups::list       iam.view
//!  POST   /o/{org}/api/v1/groups                    groups::create     iam.manage  internal groups only
//!  GET|PATCH|DELETE /o/{org}/api/v1/groups/{id}     groups::…          iam.view | iam.manage (idp groups: 409)
//!  GET    /o/{org}/api/v1/groups/{id}/members       groups::members    iam.view
//!  PUT|DELETE /o/{org}/api/v1/groups/{id}/members/{user_id}  groups::…  iam.manage
//!  GET    /o/{org}/api/v1/roles[/{name}]            roles::list|get    iam.view
//!  PUT|DELETE /o/{org}/api/v1/roles/{name}          roles::put|delete  iam.manage-roles  roleSource API only, else 409
//!  GET|POST /o/{org}/api/v1/invitations            invitations::list|create  iam.invite-users  link by mail only
//!  GET    /o/{org}/api/v1/invitations/{id}          invitations::get      iam.invite-users
//!  POST   /o/{org}/api/v1/invitations/{id}/resend   invitations::resend   iam.invite-users  new link, old one dead
//!  POST   /o/{org}/api/v1/invitations/{id}/revoke   invitations::revoke   iam.invite-users
//!  GET    /o/{org}/api/v1/roleAssignments[/{name}]  roles::list|get    iam.view
//!  PUT|DELETE /o/{org}/api/v1/roleAssignments/{name} roles::put|delete iam.manage-roles  roleSource API only, else 409
//! ```
//!
//! Bodies are JSON of at most [`body::MAX_BODY_BYTES`] (413 beyond), unknown
//! fields refused by path; versions travel as `ETag` / `If-Match`.
//!
//! A caller ([`AdminCaller`]) carries who it is and where it calls from, so
//! that what it changes is audited in the same transaction.

pub mod audit;
pub mod body;
pub mod groups;
pub mod invitations;
pub mod problem;
pub mod roles;
pub mod users;

use std::marker::PhantomData;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post, put};

pub use problem::AdminError;

use super::require_permission::{Authorized, Permission, RequirePermission};
use super::state::TokenServiceState;
use crate::api::{Role, RoleAssignment};
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

/// `iam.invite-users`: invite users, resend and revoke invitations.
pub struct IamInviteUsers;

impl Permission for IamInviteUsers {
    const NAME: &'static str = "iam.invite-users";
}

/// `iam.manage-roles`: change roles and role assignments (under `roleSource: API`).
pub struct IamManageRoles;

impl Permission for IamManageRoles {
    const NAME: &'static str = "iam.manage-roles";
}

/// The admin API's routes.
pub fn routes() -> Router<TokenServiceState> {
    Router::new()
        .route("/o/{org}/api/v1/audit", get(audit::list))
        .route("/o/{org}/api/v1/audit/head", get(audit::head))
        .route("/o/{org}/api/v1/audit/verification", get(audit::verify))
        .route("/o/{org}/api/v1/audit/export", get(audit::export))
        .route("/o/{org}/api/v1/users", get(users::list).post(users::create))
        .route("/o/{org}/api/v1/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route("/o/{org}/api/v1/users/{id}/deactivate", post(users::deactivate))
        .route("/o/{org}/api/v1/users/{id}/reactivate", post(users::reactivate))
        .route(
            "/o/{org}/api/v1/users/{id}/second-factors",
            axum::routing::delete(users::reset_second_factors),
        )
        .route("/o/{org}/api/v1/users/{id}/sessions", axum::routing::delete(users::revoke_sessions))
        .route("/o/{org}/api/v1/groups", get(groups::list).post(groups::create))
        .route("/o/{org}/api/v1/groups/{id}", get(groups::get).patch(groups::update).delete(groups::delete))
        .route("/o/{org}/api/v1/groups/{id}/members", get(groups::members))
        .route(
            "/o/{org}/api/v1/groups/{id}/members/{user_id}",
            put(groups::add_member).delete(groups::remove_member),
        )
        .route("/o/{org}/api/v1/invitations", get(invitations::list).post(invitations::create))
        .route("/o/{org}/api/v1/invitations/{id}", get(invitations::get))
        .route("/o/{org}/api/v1/invitations/{id}/resend", post(invitations::resend))
        .route("/o/{org}/api/v1/invitations/{id}/revoke", post(invitations::revoke))
        .route("/o/{org}/api/v1/roles", get(roles::list::<Role>))
        .route(
            "/o/{org}/api/v1/roles/{name}",
            get(roles::get::<Role>).put(roles::put::<Role>).delete(roles::delete::<Role>),
        )
        .route("/o/{org}/api/v1/roleAssignments", get(roles::list::<RoleAssignment>))
        .route(
            "/o/{org}/api/v1/roleAssignments/{name}",
            get(roles::get::<RoleAssignment>)
                .put(roles::put::<RoleAssignment>)
                .delete(roles::delete::<RoleAssignment>),
        )
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
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
