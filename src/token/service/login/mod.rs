//! Sign-in for the authorization code flow: the authorize endpoint, the
//! server-rendered sign-in pages (password, then WebAuthn or TOTP when the
//! user has one; or a passkey alone), browser sessions, the account page
//! where a signed-in user enrols second factors, and RP-initiated logout.
//!
//! ```text
//!  GET  {issuer}/authorize ──request::validate──► bad client / redirect_uri: error page (never redirects)
//!        │ session cookie valid, no prompt=login ──────────────────────────┐
//!        ▼ else: pre-login cookie + CSRF token, sign-in form               │
//!  POST {issuer}/login        CSRF, throttle, argon2id, active?             │
//!        │ factor enrolled (or MFA required) ─► WebAuthn / TOTP form + MAC'd ticket
//!  POST {issuer}/login/webauthn  CSRF, ticket, throttle, assertion, counter  │
//!  POST {issuer}/login/totp   CSRF, ticket, throttle, RFC 6238, replay      │
//!  POST {issuer}/login/passkey(/start)  CSRF, discoverable assertion + UV   │
//!        ▼                                                                  ▼
//!      session row + cookie ─► grants::issue_authorization_code ─► 303 redirect_uri?code&state&iss
//!  GET|POST {issuer}/end_session ─► session ended, grants::revoke_session_grants, post_logout_redirect_uri
//!  GET {issuer}/account (+ POST …/webauthn, …/totp) ─► enrolment, password again + CSRF
//!  GET|POST {issuer}/invitations/{token} ─► a new local user with the invited roles
//!  GET|POST {issuer}/admin/invitations ─► AdminPage: session + iam.invite-users, else sign in and back
//!  GET {issuer}/admin/posture ─► AdminPage: session + iam.view (charts of the compliance posture)
//! ```
//!
//! - [`request`]: the authorization request, validated (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2).
//! - [`extract`]: what a request must carry before a handler runs (a sign-in
//!   form post with this browser's CSRF token, a signed-in form post).
//! - [`error`]: [`LoginError`](error::LoginError), each refusal rendering itself.
//! - [`attempt`]: the throttle, checked and fed in one place; [`step`]: the page each step shows again;
//!   [`throttle`]: its counters in the store, shared by every replica.
//! - [`pages`]: the HTML, askama templates in `templates/` on one base layout, escaped by the engine.
//! - [`csrf`]: the pre-login cookie, CSRF tokens and MFA tickets (HMAC).
//! - [`session`]: the `sessions` table and the session cookie.
//! - [`authorize`], [`sign_in`], [`webauthn`], [`account`], [`end_session`]: the handlers, each its
//!   business logic only.
//! - [`credentials`], [`ceremonies`]: the WebAuthn credentials and ceremony state in the store.
//! - [`invitation`]: accepting an invitation from its mailed link.
//! - [`admin_pages`]: the extractor of pages for administrators (session +
//!   permission, sign-in and back); [`admin_invitations`]: the invitations page.
//! - [`sso`]: single sign-on through the organization's IdentityProviders (OIDC, SAML).
//!
//! The keys for CSRF tokens, tickets and sealing TOTP secrets come from one
//! secret ([`LoginConfig::secret`]); replicas must share it.

mod account;
mod admin_access_requests;
mod admin_invitations;
mod admin_pages;
mod admin_posture;
mod attempt;
mod authorize;
pub(super) mod branding;
mod ceremonies;
mod cookies;
mod credentials;
mod csrf;
mod end_session;
mod error;
mod extract;
mod flow;
mod forwarded;
mod invitation;
mod mfa;
mod pages;
mod request;
mod session;
mod sign_in;
mod sso;
mod step;
mod throttle;
mod webauthn;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use jiff::SignedDuration;
use ring::hkdf;
use ring::hmac;

use super::state::TokenServiceState;
use crate::token::password::PasswordHasher;
use crate::token::throttle::ThrottlePolicy;
use crate::token::totp::TotpSealer;

/// HKDF info of the key that seals TOTP secrets.
const TOTP_SEALING_INFO: &[u8] = b"totp sealing";

/// How the sign-in pages behave.
#[derive(Clone)]
pub struct LoginConfig {
    /// argon2id hashes running at once (each holds 19 MiB).
    pub max_concurrent_hashes: usize,
    pub throttle: ThrottlePolicy,
    /// At least 32 random bytes, shared by every replica; CSRF, ticket and
    /// TOTP-sealing keys are derived from it. `None`: random per process
    /// (one replica; TOTP secrets sealed by another process do not open).
    pub secret: Option<Vec<u8>>,
    /// How long a browser session lasts.
    pub session_lifetime: SignedDuration,
    /// How long a sign-in form (and a TOTP step after the password) stays valid.
    pub form_lifetime: SignedDuration,
    /// Reverse proxies whose `X-Forwarded-For` hops are believed when
    /// throttling by source; empty: the TCP peer is the source.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for LoginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConfig")
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("throttle", &self.throttle)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("session_lifetime", &self.session_lifetime)
            .field("form_lifetime", &self.form_lifetime)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_concurrent_hashes: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            throttle: ThrottlePolicy::default(),
            secret: None,
            session_lifetime: SignedDuration::from_hours(12),
            form_lifetime: SignedDuration::from_mins(10),
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the sign-in pages share: the hasher, the throttle's policy (its
/// counters are in the store, shared by every replica) and the keys.
pub struct LoginState {
    hasher: PasswordHasher,
    throttle: ThrottlePolicy,
    csrf_key: hmac::Key,
    totp_sealer: TotpSealer,
    session_lifetime: SignedDuration,
    form_lifetime: SignedDuration,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState").field("hasher", &self.hasher).finish_non_exhaustive()
    }
}

impl Default for LoginState {
    fn default() -> Self {
        Self::new(LoginConfig::default())
    }
}

impl LoginState {
    pub fn new(config: LoginConfig) -> Self {
        let secret = config.secret.unwrap_or_else(random_secret);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis login v1").extract(&secret);
        let csrf_key = prk
            .expand(&[b"csrf and tickets"], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .expect("HKDF output of one HMAC key length");
        let mut totp_key = [0u8; 32];
        prk.expand(&[TOTP_SEALING_INFO], Len32)
            .and_then(|okm| okm.fill(&mut totp_key))
            .expect("HKDF output of 32 bytes");
        Self {
            hasher: PasswordHasher::new(config.max_concurrent_hashes),
            throttle: config.throttle,
            csrf_key,
            totp_sealer: TotpSealer::new(&totp_key),
            session_lifetime: config.session_lifetime,
            form_lifetime: config.form_lifetime,
            trusted_proxies: config.trusted_proxies,
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub fn throttle(&self) -> &ThrottlePolicy {
        &self.throttle
    }

    /// Seals TOTP secrets for `mfa_enrolments` (enrolment, and tests).
    pub fn totp_sealer(&self) -> &TotpSealer {
        &self.totp_sealer
    }
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn random_secret() -> Vec<u8> {
    use ring::rand::SecureRandom as _;
    let mut secret = vec![0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).expect("the system has randomness");
    secret
}

/// The sign-in routes, under each organization's issuer path.
pub fn routes() -> axum::Router<TokenServiceState> {
    axum::Router::new()
        .route("/o/{org}/authorize", get(authorize::authorize))
        .route("/o/{org}/login", post(sign_in::password_step))
        .route("/o/{org}/login/totp", post(sign_in::totp_step))
        .route("/o/{org}/login/webauthn", post(webauthn::webauthn_step))
        .route("/o/{org}/login/passkey/start", post(webauthn::passkey_start))
        .route("/o/{org}/login/passkey", post(webauthn::passkey_step))
        .route("/o/{org}/account", get(account::show))
        .route("/o/{org}/account/webauthn", post(account::webauthn_start))
        .route("/o/{org}/account/webauthn/finish", post(account::webauthn_finish))
        .route("/o/{org}/account/totp", post(account::totp_start))
        .route("/o/{org}/account/totp/finish", post(account::totp_finish))
        .route("/o/{org}/end_session", get(end_session::end_session_get).post(end_session::end_session_post))
        .route("/o/{org}/invitations/{token}", get(invitation::show).post(invitation::accept))
        .route("/o/{org}/invitations/{token}/sso", post(invitation::accept_with_sso))
        .route("/o/{org}/admin/signed-in", get(admin_pages::signed_in))
        .route("/o/{org}/admin/invitations", get(admin_invitations::show).post(admin_invitations::post))
        .route("/o/{org}/admin/posture", get(admin_posture::show))
        .route(
            "/o/{org}/admin/access-requests/{id}",
            get(admin_access_requests::show).post(admin_access_requests::post),
        )
        .merge(sso::routes())
}

/// Where a request came from, for throttling and the audit trail: the TCP
/// peer, or behind the trusted proxies of [`LoginConfig::trusted_proxies`]
/// the client they forwarded ([`forwarded::client_address`]), and its
/// `User-Agent`. Needs the server to run with connect info
/// (`crate::listener` gives it); without it every request counts as one
/// source (and a warning says so).
#[derive(Clone, Debug)]
pub(crate) struct SourceAddress {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl SourceAddress {
    /// The audit trail's view of it.
    pub fn audit_source(&self) -> crate::audit::Source {
        crate::audit::Source {
            address: crate::audit::source_address(Some(self.ip)),
            user_agent: self.user_agent.clone(),
        }
    }
}

impl FromRequestParts<TokenServiceState> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &TokenServiceState,
    ) -> Result<Self, Self::Rejection> {
        // The same cut and reading of the header as every audit source.
        let user_agent = crate::audit::Source::of_request(parts).user_agent;
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(address)) => {
                let trusted = &state.login().trusted_proxies;
                let ip = forwarded::client_address(address.ip(), &parts.headers, trusted);
                Ok(SourceAddress { ip, user_agent })
            }
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "no peer address on requests (serve with connect info): \
                         sign-in throttling per source treats all requests as one source"
                    );
                });
                Ok(SourceAddress { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), user_agent })
            }
        }
    }
}

/// Whether cookies may go without `Secure`: only for `http` on a loopback host
/// (local development and tests); everywhere else they need HTTPS.
fn cookies_need_https(public_base_url: &str) -> bool {
    let Some(rest) = public_base_url.strip_prefix("http://") else { return true };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The path of the issuer URL (the base URL's path prefix included): cookies are scoped to it.
fn issuer_path(state: &TokenServiceState, organization: &str) -> String {
    let issuer = state.issuer(organization);
    let after_scheme = issuer.split_once("://").map_or(issuer.as_str(), |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(index) => after_scheme[index..].to_owned(),
        None => "/".to_owned(),
    }
}

fn duration_secs(duration: SignedDuration) -> u64 {
    Duration::try_from(duration).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_may_skip_secure_only_for_http_on_loopback() {
        assert!(!cookies_need_https("http://127.0.0.1:8080"));
        assert!(!cookies_need_https("http://localhost:3000/iam"));
        assert!(!cookies_need_https("http://[::1]:80"));
        assert!(cookies_need_https("https://127.0.0.1"));
        assert!(cookies_need_https("http://example.com"));
        assert!(cookies_need_https("http://127.0.0.1.evil.com"));
        assert!(cookies_need_https("https://login.example.com"));
    }
}
