//! Permission checks for services written with axum, against a Portcullis
//! organization's token service.
//!
//! ```text
//!  Authorization: Bearer <jwt>
//!   ──► header: typ at+jwt (RFC 9068), alg in the allow-list (never none, never HS*), kid
//!   ──► key by kid from the issuer's JWKS (discovery → jwks_uri; cached, refetched
//!       on an unknown kid at most once per min_jwks_refresh)
//!   ──► signature, iss, aud ∋ the service's audience, exp/nbf with a small leeway
//!       (a token that verified is remembered, `verified_tokens` of them: its next
//!       requests skip the signature while its key stays in the JWKS and it lives)
//!   ──► VerifiedToken (the claims), or RequirePermission<P>: P in `permissions`,
//!       or in `workspace_permissions[{workspace}]` (the path parameter)
//!   ──► optional check mode: POST {issuer}/api/v1/check {token, permission,
//!       workspace}, which also sees revoked tokens and removed roles at once
//! ```
//!
//! Refusals are RFC 6750 §3: 401 with `WWW-Authenticate: Bearer
//! error="invalid_token"`, 403 with `error="insufficient_scope"`, and the
//! OAuth error JSON as the body.
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use portcullis_guard::{Guard, GuardConfig, RequirePermission, permission};
//!
//! permission!(JourneysPublish = "journeys.publish");
//!
//! async fn publish(allowed: RequirePermission<JourneysPublish>) -> String {
//!     format!("published by {}", allowed.claims.sub)
//! }
//!
//! # fn app() -> Result<Router, portcullis_guard::ConfigError> {
//! let guard = Guard::new(GuardConfig::new("https://id.example.com/o/acme", "https://api.acme.com/journeys"))?;
//! let app = Router::new()
//!     .route("/workspaces/{workspace}/journeys/{id}/publish", post(publish))
//!     .with_state(guard);
//! # Ok(app) }
//! ```
#![forbid(unsafe_code)]

mod check_api;
mod claims;
mod config;
mod error;
mod extract;
mod jwks;
mod verify;

pub use claims::{AccessClaims, RoleClaim};
pub use config::{CheckApiCredentials, ConfigError, GuardConfig};
pub use error::GuardError;
pub use extract::{Guard, Permission, RequirePermission, VerifiedToken};
pub use jsonwebtoken::Algorithm;
