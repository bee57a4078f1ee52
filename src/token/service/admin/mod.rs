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
//!  GET    /o/{org}/api/v1/posture                   posture::get       iam.view    compliance posture, ≤ 1 min old
//!  GET    /o/{org}/api/v1/roles[/{name}]            roles::list|get    iam.view
//!  PUT|DELETE /o/{org}/api/v1/roles/{name}          roles::put|delete  iam.manage-roles  roleSource API only, else 409
//!  GET|POST /o/{org}/api/v1/invitations            invitations::list|create  iam.invite-users  link by mail only
//!  GET    /o/{org}/api/v1/invitations/{id}          invitations::get      iam.invite-users
//!  POST   /o/{org}/api/v1/invitations/{id}/resend   invitations::resend   iam.invite-users  new link, old one dead
//!  POST   /o/{org}/api/v1/invitations/{id}/revoke   invitations::revoke   iam.invite-users
//!  GET    /o/{org}/api/v1/roleAssignments[/{name}]  roles::list|get    iam.view
//!  PUT|DELETE /o/{org}/api/v1/roleAssignments/{name} roles::put|delete iam.manage-roles  roleSource API only, else 409
//!  GET|POST /o/{org}/api/v1/access-requests        access_requests::list|create  (any member)  ?mine, ?pendingForMe
//!  GET    /o/{org}/api/v1/access-requests/{id}      access_requests::get  requester, approver or iam.view
//!  POST   /o/{org}/api/v1/access-requests/{id}/approve|deny|revoke  access_requests::…  the org's approvers
//!  POST   /o/{org}/api/v1/check                     check::check       iam.view    (OAuth 2 error JSON)
//!  GET    /o/{org}/api/v1/openapi.json              openapi::document  (none)      this API's OpenAPI 3.1 document
//! ```
//!
//! Each route is registered with its handler's `*_docs` beside it: the
//! OpenAPI document ([`openapi`]) is generated from this very router, so a
//! route added with `.route` instead of `.api_route` is missing from it (and
//! a test fails).
//!
//! Bodies are JSON of at most [`body::MAX_BODY_BYTES`] (413 beyond), unknown
//! fields refused by path; versions travel as `ETag` / `If-Match`.
//!
//! A caller ([`AdminCaller`]) carries who it is and where it calls from, so
//! that what it changes is audited in the same transaction.

pub mod access_requests;
pub mod audit;
pub mod body;
pub mod groups;
pub mod invitations;
pub mod openapi;
pub mod posture;
pub mod problem;
pub mod roles;
pub mod users;

use std::marker::PhantomData;

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, get_with, post_with, put_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;

pub use problem::AdminError;

use super::check;
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

/// The admin API's routes, and its OpenAPI document at
/// `/o/{org}/api/v1/openapi.json`.
pub fn routes() -> Router<TokenServiceState> {
    openapi::finish(documented_routes()).0
}

/// The admin API's OpenAPI document, with no server (`portcullis openapi`).
pub fn openapi_document() -> serde_json::Value {
    openapi::finish(documented_routes()).1
}

fn documented_routes() -> ApiRouter<TokenServiceState> {
    openapi::prepare_generator();
    ApiRouter::new()
        .api_route("/o/{org}/api/v1/audit", get_with(audit::list, audit::list_docs))
        .api_route("/o/{org}/api/v1/audit/head", get_with(audit::head, audit::head_docs))
        .api_route("/o/{org}/api/v1/audit/verification", get_with(audit::verify, audit::verify_docs))
        .api_route("/o/{org}/api/v1/audit/export", get_with(audit::export, audit::export_docs))
        .api_route(
            "/o/{org}/api/v1/users",
            get_with(users::list, users::list_docs).post_with(users::create, users::create_docs),
        )
        .api_route(
            "/o/{org}/api/v1/users/{id}",
            get_with(users::get, users::get_docs)
                .patch_with(users::update, users::update_docs)
                .delete_with(users::delete, users::delete_docs),
        )
        .api_route(
            "/o/{org}/api/v1/users/{id}/deactivate",
            post_with(users::deactivate, users::deactivate_docs),
        )
        .api_route(
            "/o/{org}/api/v1/users/{id}/reactivate",
            post_with(users::reactivate, users::reactivate_docs),
        )
        .api_route(
            "/o/{org}/api/v1/users/{id}/second-factors",
            delete_with(users::reset_second_factors, users::reset_second_factors_docs),
        )
        .api_route(
            "/o/{org}/api/v1/users/{id}/sessions",
            delete_with(users::revoke_sessions, users::revoke_sessions_docs),
        )
        .api_route(
            "/o/{org}/api/v1/groups",
            get_with(groups::list, groups::list_docs).post_with(groups::create, groups::create_docs),
        )
        .api_route(
            "/o/{org}/api/v1/groups/{id}",
            get_with(groups::get, groups::get_docs)
                .patch_with(groups::update, groups::update_docs)
                .delete_with(groups::delete, groups::delete_docs),
        )
        .api_route("/o/{org}/api/v1/groups/{id}/members", get_with(groups::members, groups::members_docs))
        .api_route(
            "/o/{org}/api/v1/groups/{id}/members/{user_id}",
            put_with(groups::add_member, groups::add_member_docs)
                .delete_with(groups::remove_member, groups::remove_member_docs),
        )
        .api_route(
            "/o/{org}/api/v1/invitations",
            get_with(invitations::list, invitations::list_docs)
                .post_with(invitations::create, invitations::create_docs),
        )
        .api_route("/o/{org}/api/v1/invitations/{id}", get_with(invitations::get, invitations::get_docs))
        .api_route(
            "/o/{org}/api/v1/invitations/{id}/resend",
            post_with(invitations::resend, invitations::resend_docs),
        )
        .api_route(
            "/o/{org}/api/v1/invitations/{id}/revoke",
            post_with(invitations::revoke, invitations::revoke_docs),
        )
        .api_route(
            "/o/{org}/api/v1/access-requests",
            get_with(access_requests::list, access_requests::list_docs)
                .post_with(access_requests::create, access_requests::create_docs),
        )
        .api_route(
            "/o/{org}/api/v1/access-requests/{id}",
            get_with(access_requests::get, access_requests::get_docs),
        )
        .api_route(
            "/o/{org}/api/v1/access-requests/{id}/approve",
            post_with(access_requests::approve, access_requests::approve_docs),
        )
        .api_route(
            "/o/{org}/api/v1/access-requests/{id}/deny",
            post_with(access_requests::deny, access_requests::deny_docs),
        )
        .api_route(
            "/o/{org}/api/v1/access-requests/{id}/revoke",
            post_with(access_requests::revoke, access_requests::revoke_docs),
        )
        .api_route("/o/{org}/api/v1/posture", get_with(posture::get, posture::get_docs))
        .api_route("/o/{org}/api/v1/roles", get_with(roles::list::<Role>, roles::list_docs::<Role>))
        .api_route(
            "/o/{org}/api/v1/roles/{name}",
            get_with(roles::get::<Role>, roles::get_docs::<Role>)
                .put_with(roles::put::<Role>, roles::put_docs::<Role>)
                .delete_with(roles::delete::<Role>, roles::delete_docs::<Role>),
        )
        .api_route(
            "/o/{org}/api/v1/roleAssignments",
            get_with(roles::list::<RoleAssignment>, roles::list_docs::<RoleAssignment>),
        )
        .api_route(
            "/o/{org}/api/v1/roleAssignments/{name}",
            get_with(roles::get::<RoleAssignment>, roles::get_docs::<RoleAssignment>)
                .put_with(roles::put::<RoleAssignment>, roles::put_docs::<RoleAssignment>)
                .delete_with(roles::delete::<RoleAssignment>, roles::delete_docs::<RoleAssignment>),
        )
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        // Outside the admin API's body limit, as they always were.
        .api_route("/o/{org}/api/v1/check", post_with(check::check, check::check_docs))
        .api_route("/o/{org}/api/v1/openapi.json", get_with(openapi::document, openapi::document_docs))
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
