//! Single sign-on through upstream identity providers: the protocol cores
//! the token service signs people in with and the operator health-checks
//! upstreams with. No store, no HTTP routes of ours: those are in
//! `token::service::login::sso`. SAML 2.0 is not served yet.
//!
//! ```text
//!  IdentityProvider (OIDC) ──► oidc::OidcRelyingParty ──► identity::UpstreamIdentity
//!  http::UpstreamHttp: timeouts, no redirects, CA bundle,        │
//!  https only (http on loopback)                                 ▼
//!                                                   routing: home realm + rollout stage
//! ```
//!
//! - [`http`]: the one HTTP client to upstreams.
//! - [`oidc`]: discovery, code flow with PKCE, ID token validation, claim mapping.
//! - [`routing`]: which provider an email goes to, by rollout stage.
//! - [`identity`]: what a verified upstream sign-in says.
//! - [`upstreams`]: the clients per CA bundle, and where client secrets are read.

pub mod http;
pub mod identity;
pub mod oidc;
pub mod routing;
pub mod upstreams;

pub use identity::UpstreamIdentity;
