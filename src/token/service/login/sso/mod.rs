//! Single sign-on at the sign-in pages: a sign-in sent to the organization's
//! upstream OIDC provider or SAML IdP, and its answer turned into a session
//! and a code like a password sign-in.
//!
//! ```text
//!  POST {issuer}/sso/start   SignInPost (CSRF + request valid) ─ provider usable at its stage?
//!  POST {issuer}/login        (or the sign-in form, for an email routed to a provider: see sign_in.rs)
//!        │ sso_requests row: hash(state), hash(pre-login id), the client's request
//!        └─ OIDC ─► 303 {authorization_endpoint}?state&nonce&code_challenge…
//!                   GET {issuer}/sso/oidc/{idp}/callback?code&state&iss
//!                       row bound to this browser, taken once ─ oidc::finish (iss, code, ID token)
//!        └─ SAML ─► 303 {SingleSignOnService}?SAMLRequest&RelayState   (row: the AuthnRequest ID)
//!                   POST {issuer}/sso/saml/{idp}/acs   verified, identity kept on the row (saml.rs)
//!                   GET  {issuer}/sso/saml/{idp}/resume   row bound to this browser, taken once
//!        ▼
//!  complete: stage admits the user ─ linked / matched / JIT user ─ provider groups ─ MFA policy
//!            ─► session (amr fed [+mfa], idp) ─► code ─► redirect_uri
//! ```
//!
//! An invitation's page starts the same flow (`begin_invitation`); its
//! answer accepts the invitation instead of signing in (`invitation.rs`).
//!
//! The nonce and the PKCE verifier are derived from the `state` token with
//! the login key, so nothing secret about the flow is stored.
//!
//! Every outcome is counted for the IdentityProvider's status (the store's
//! `sso_sign_in_counts` / `sso_health`) and appended to the audit trail
//! (`signIn.sso`: the user, or the refusal's reason; acceptances of an
//! invitation are audited as `invitation.accept` instead), in one write.

mod complete;
mod invitation;
mod oidc;
mod saml;
mod start;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use ring::hmac;

use super::SourceAddress;
use super::cookies;
use super::error::LoginError;
use super::pages::Page;
use crate::audit::{Actor, AuditContext, AuditEntry, Target};
use crate::federation::routing::ProviderEntry;
use crate::federation::upstreams::UpstreamClients;
use crate::secret::SecretHash;
use crate::store::{FederationStore as _, SignInWrites, SsoOutcome, UpstreamSignIn, User};
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// How long a sign-in sent upstream may take to come back.
const SSO_REQUEST_LIFETIME_MS: i64 = 10 * 60 * 1000;

pub(super) fn routes() -> axum::Router<TokenServiceState> {
    axum::Router::new()
        .route("/o/{org}/sso/start", post(start::start))
        .route("/o/{org}/sso/oidc/{idp}/callback", get(oidc::callback))
        .route("/o/{org}/sso/saml/{idp}/metadata", get(saml::metadata))
        .route("/o/{org}/sso/saml/{idp}/acs", post(saml::acs))
        .route("/o/{org}/sso/saml/{idp}/resume", get(saml::resume))
}

pub(super) use start::{begin, begin_invitation};

/// SHA-256 (hex) of a token, as the store keeps it.
fn token_hash(token: &str) -> String {
    SecretHash::of(token).hex()
}

/// A value derived from the sign-in's `state` token with the login key:
/// the nonce and the PKCE verifier need no storage.
fn derived(state: &TokenServiceState, purpose: &str, organization: &str, token: &str) -> String {
    let key: &hmac::Key = &state.login().csrf_key;
    let mut context = hmac::Context::with_key(key);
    for part in ["sso", purpose, organization, token] {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.sign().as_ref())
}

fn flow_values(
    state: &TokenServiceState,
    org: &OrganizationView,
    token: &str,
) -> crate::federation::oidc::FlowValues {
    crate::federation::oidc::FlowValues {
        state: token.to_owned(),
        nonce: derived(state, "nonce", &org.name, token),
        pkce_verifier: derived(state, "pkce", &org.name, token),
    }
}

/// The provider named `name` of the organization.
async fn provider(
    state: &TokenServiceState,
    org: &OrganizationView,
    name: &str,
) -> Result<Option<ProviderEntry>, OAuthError> {
    Ok(state.identity_providers(org).await?.iter().find(|p| p.name == name).cloned())
}

/// The organization of the path, or the page saying there is none.
async fn organization(state: &TokenServiceState, name: &str) -> Result<Arc<OrganizationView>, LoginError> {
    match state.organization(name).await? {
        Some(org) => Ok(org),
        None => {
            Err(Page::notice(StatusCode::NOT_FOUND, "Not found", "There is no organization here.").into())
        }
    }
}

/// The upstream clients trusting the provider's CA bundle, if it names one.
fn clients_for(
    state: &TokenServiceState,
    org: &OrganizationView,
    entry: &ProviderEntry,
) -> Result<Arc<UpstreamClients>, Refusal> {
    let bundle = match &entry.spec.ca_bundle_ref {
        None => None,
        Some(reference) => {
            let secrets = state.upstreams().secrets();
            let text = match reference.kind {
                crate::api::CaBundleKind::Secret => secrets
                    .secret(&org.namespace, &reference.name, &reference.key)
                    .map(|s| s.expose().to_owned()),
                crate::api::CaBundleKind::ConfigMap => {
                    secrets.config_map(&org.namespace, &reference.name, &reference.key)
                }
            };
            Some(text.ok_or_else(|| {
                Refusal::unavailable(
                    "CaBundleMissing",
                    format!("CA bundle {} is not readable", reference.name),
                )
            })?)
        }
    };
    state
        .upstreams()
        .clients(bundle.as_deref().map(str::as_bytes))
        .map_err(|e| Refusal::unavailable("CaBundleInvalid", crate::error_chain::error_chain(&e)))
}

/// Why a single sign-on was refused: what the user is shown, and what is
/// counted and audited.
#[derive(Debug)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
    /// Short reason for counters and audit (`IdTokenInvalid`, `RequestUnknown`…).
    pub reason: &'static str,
    /// What happened, for the log and the IdentityProvider's status; never shown.
    pub detail: String,
}

impl Refusal {
    fn new(
        status: StatusCode,
        title: &'static str,
        message: impl Into<String>,
        reason: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self { status, title, message: message.into(), reason, detail: detail.into() }
    }

    /// The upstream's answer could not be trusted.
    fn untrusted(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Single sign-on failed",
            "The answer from your identity provider could not be accepted. Please try signing in again.",
            reason,
            detail,
        )
    }

    /// Sign-in through the provider cannot work now (configuration, outage).
    fn unavailable(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Single sign-on unavailable",
            "Signing in through your identity provider is not possible right now. Please try again later.",
            reason,
            detail,
        )
    }

    /// The sign-in expired or started in another browser.
    fn expired(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in expired or was started in another browser. Please go back to the application and sign in again.",
            "RequestUnknown",
            detail,
        )
    }

    fn page(&self) -> LoginError {
        Page::notice(self.status, self.title, &self.message).into()
    }
}

/// Counts and audits a refusal through `provider`, and answers with its page.
async fn refuse(
    state: &TokenServiceState,
    org: &OrganizationView,
    provider: &str,
    stage: &str,
    source: &SourceAddress,
    refusal: Refusal,
) -> LoginError {
    tracing::info!(
        target: "audit",
        event = "sso.sign_in",
        outcome = "failure",
        organization = %org.namespace,
        identity_provider = provider,
        reason = refusal.reason,
        detail = %refusal.detail,
        "single sign-on refused"
    );
    let failure = Err((refusal.reason, refusal.detail.as_str()));
    if let Err(error) = record(state, org, provider, stage, source, failure).await {
        tracing::warn!(%error, "could not record a refused single sign-on");
    }
    refusal.page()
}

/// What a successful single sign-on writes with its record: what the
/// upstream says of the user and, unless a second factor comes first, the
/// session and code it answers with.
struct Success<'a> {
    user: &'a User,
    sign_in: UpstreamSignIn<'a>,
    ending: Option<SignInWrites<'a>>,
}

/// Counts one sign-in through `provider` and appends its audit event
/// (`signIn.sso`: the user it signed in, or why it was refused; the
/// upstream identity is not trusted then, so the actor is anonymous), with
/// what a successful one writes ([`Success`]), in one write.
async fn record(
    state: &TokenServiceState,
    org: &OrganizationView,
    provider: &str,
    stage: &str,
    source: &SourceAddress,
    outcome: Result<&Success<'_>, (&str, &str)>,
) -> Result<(), OAuthError> {
    let (actor, entry, sign_in, ending) = match outcome {
        Ok(Success { user, sign_in, ending }) => (
            Actor::user(&user.id, &user.user_name, None),
            AuditEntry::success("signIn.sso", Target::new("user", Some(&user.id), Some(&user.user_name))),
            Some(sign_in),
            ending.as_ref(),
        ),
        Err((reason, _)) => (
            Actor::anonymous(None),
            AuditEntry::failure("signIn.sso", Target::new("identityProvider", None, Some(provider)), reason),
            None,
            None,
        ),
    };
    let actor = Actor { identity_provider: Some(provider.to_owned()), ..actor };
    let entry = entry.with_details(serde_json::json!({ "identityProvider": provider, "stage": stage }));
    let store = state.store().with_audit(AuditContext::new(actor, source.audit_source()));
    let outcome = sso_outcome(state, org, provider, stage, outcome.err());
    store.record_sso_sign_in(&outcome, entry, sign_in, ending).await?;
    Ok(())
}

/// Counts one outcome that has an audit event of its own (an invitation's
/// acceptance); a failure to count is logged, never shown.
async fn count(
    state: &TokenServiceState,
    org: &OrganizationView,
    provider: &str,
    stage: &str,
    failure: Option<(&str, &str)>,
) {
    let outcome = sso_outcome(state, org, provider, stage, failure);
    if let Err(error) = state.store().record_sso_outcome(&outcome).await {
        tracing::warn!(%error, "could not count a single sign-on");
    }
}

fn sso_outcome<'a>(
    state: &TokenServiceState,
    org: &'a OrganizationView,
    provider: &'a str,
    stage: &'a str,
    failure: Option<(&'a str, &'a str)>,
) -> SsoOutcome<'a> {
    SsoOutcome {
        organization: &org.namespace,
        identity_provider: provider,
        stage,
        failure,
        at_ms: state.now().as_millisecond(),
    }
}

/// The browser's pre-login id, if it sent exactly one.
fn pre_login_cookie(headers: &HeaderMap) -> Option<String> {
    cookies::read(headers, cookies::PRE_LOGIN)
}

fn stage_name(entry: &ProviderEntry) -> &'static str {
    entry.spec.rollout.stage.as_str()
}
