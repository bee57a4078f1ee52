//! The token service: an OpenID provider per organization over HTTP, issuer
//! `{public base URL}/o/{organization}`.
//!
//! ```text
//!  GET  /o/{org}/.well-known/openid-configuration  discovery     (OIDC Discovery §4)
//!  GET  /o/{org}/jwks                              jwks          (RFC 7517 §5)
//!  POST /o/{org}/token                             token         (RFC 6749 §3.2, grants.rs for the store)
//!  GET|POST /o/{org}/userinfo                      userinfo      (OIDC Core §5.3)
//!  POST /o/{org}/introspect                        introspect    (RFC 7662)
//!  POST /o/{org}/revoke                            revoke        (RFC 7009)
//!  POST /o/{org}/api/v1/check                      check         (require_permission: the
//!                                                                 `@requires_permission` of the seeds;
//!                                                                 routed with the admin API)
//!  GET  /o/{org}/api/v1/audit…                    admin/        (the admin API: problem JSON,
//!                                                                 its OpenAPI document)
//!  …    /o/{org}/authorize, login pages, end_session  login/ (the LOGIN helper's routes)
//!  GET|POST /o/{org}/invitations/{token}          login/invitation (accepting an invitation)
//!  GET|POST /o/{org}/admin/…                      login/admin_pages (pages for administrators)
//! ```
//!
//! Every handler resolves `{org}` first: an unknown organization is 404, and
//! clients, codes and tokens are looked up within that organization only.

pub mod access_notifications;
pub mod admin;
pub mod check;
pub mod client_auth;
mod discovery;
pub mod error;
mod form;
pub mod grants;
pub mod introspect;
pub mod invitations;
pub mod issue;
mod jwks;
pub mod keys;
pub mod login;
pub mod mfa_policy;
pub mod posture;
pub mod require_permission;
mod revoke;
pub mod state;
mod token;
mod userinfo;
pub mod verify;

use axum::Router;
use axum::routing::{get, post};

pub use error::OAuthError;
pub use state::{
    ClientView, Clock, ManualClock, OrganizationView, SystemClock, TokenServiceConfig, TokenServiceState,
};

/// The whole service, ready for `axum::serve`.
pub fn router(state: TokenServiceState) -> Router {
    Router::new()
        .route("/o/{org}/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/o/{org}/jwks", get(jwks::jwks))
        .route("/o/{org}/token", post(token::token))
        .route("/o/{org}/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/o/{org}/introspect", post(introspect::introspect))
        .route("/o/{org}/revoke", post(revoke::revoke))
        .merge(admin::routes())
        .merge(
            login::routes()
                .layer(axum::middleware::from_fn_with_state(state.clone(), login::branding::brand)),
        )
        .with_state(state)
}
