//! Single sign-on through upstream identity providers: the protocol cores
//! the token service signs people in with and the operator health-checks
//! upstreams with. No store, no HTTP routes of ours: those are in
//! `token::service::login::sso`.
//!
//! ```text
//!  IdentityProvider (OIDC) ──► oidc::OidcRelyingParty ──────┐
//!  IdentityProvider (SAML) ──► saml::SamlServiceProvider ───┴─► identity::UpstreamIdentity
//!  http::UpstreamHttp: timeouts, no redirects, CA bundle,        │
//!  https only (http on loopback)                                 ▼
//!                                                   routing: home realm + rollout stage
//! ```
//!
//! - [`http`]: the one HTTP client to upstreams.
//! - [`oidc`]: discovery, code flow with PKCE, ID token validation, claim mapping.
//! - [`saml`]: IdP metadata, AuthnRequest, response verification (XSW, XXE, replay inputs), attribute mapping.
//! - [`routing`]: which provider an email goes to, by rollout stage.
//! - [`identity`]: what a verified upstream sign-in says.
//! - [`upstreams`]: the clients per CA bundle, and where client secrets are read.

pub mod http;
pub mod identity;
pub mod oidc;
pub mod routing;
pub mod saml;
pub mod upstreams;

pub use identity::UpstreamIdentity;
