//! Finishing a single sign-on: the pending request taken (once, by the
//! browser that started it), the upstream identity turned into a local user
//! by the organization's provisioning mode, the provider's groups applied,
//! the MFA policy honoured, then a session and a code as after a password.
//!
//! | provisioning | unknown user                                            |
//! |--------------|---------------------------------------------------------|
//! | `jit`        | created (if the provider has `jit.enabled`), groups hydrated |
//! | `scim`       | refused: the IdP has not provisioned them                |
//! | `disabled`   | refused: only invitations and administrators create users |
//!
//! A known user is the one linked to the upstream subject, or else the user
//! whose userName or email is the identity's, when that email's domain is
//! routed to this provider (a provider is trusted for its own domains only).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::{Refusal, Success, pre_login_cookie, record, refuse, stage_name, token_hash};
use crate::api::{ProvisioningMode, UpstreamMfa};
use crate::federation::UpstreamIdentity;
use crate::federation::routing::{ProviderEntry, email_domain, stage_admits};
use crate::store::{
    Email, FederationStore as _, NewUser, SsoOwner, SsoRequest, StoreError, UpstreamSignIn, User, UserSource,
    UserStore as _,
};
use crate::token::claims::PROVIDER_AMR_PREFIX;
use crate::token::service::error::OAuthError;
use crate::token::service::login::SourceAddress;
use crate::token::service::login::csrf::MfaTicket;
use crate::token::service::login::error::LoginError;
use crate::token::service::login::extract::SignInPost;
use crate::token::service::login::flow::{Ending, PreLogin};
use crate::token::service::login::mfa::{self, SecondFactor};
use crate::token::service::login::pages::Page;
use crate::token::service::login::request::{self, Params};
use crate::token::service::login::sign_in::show_totp;
use crate::token::service::login::webauthn::{self, SecondFactorStep};
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// A pending sign-in taken by the browser that started it.
pub(super) struct Pending {
    pub request: SsoRequest,
    pub pre_login_id: String,
}

/// Takes the pending sign-in named by `token` if this browser started it
/// for provider `idp` and it has not expired.
pub(super) async fn take_pending(
    state: &TokenServiceState,
    org: &OrganizationView,
    idp: &str,
    token: &str,
    headers: &HeaderMap,
) -> Result<Pending, Refusal> {
    if token.is_empty() {
        return Err(Refusal::expired("no state"));
    }
    let Some(pre_login_id) = pre_login_cookie(headers) else {
        return Err(Refusal::expired("no pre-login cookie"));
    };
    let hash = token_hash(token);
    let now = state.now().as_millisecond();
    let store_error =
        |e: StoreError| Refusal::unavailable("StoreUnavailable", crate::error_chain::error_chain(&e));
    let owner = SsoOwner { identity_provider: idp, pre_login_hash: &token_hash(&pre_login_id) };
    let taken =
        state.store().take_sso_request(&org.namespace, &hash, owner, now).await.map_err(store_error)?;
    if let Some(request) = taken {
        return Ok(Pending { request, pre_login_id });
    }
    // Refused: read what is there, to say why in the log.
    let detail = match state.store().find_sso_request(&org.namespace, &hash, now).await {
        Ok(Some(_)) => "the sign-in belongs to another browser or provider",
        _ => "unknown, used or expired state",
    };
    Err(Refusal::expired(detail))
}

/// Whether the provider's rollout stage lets the identity it returned sign
/// in (judged again on that identity: `Testing` admits its test users only).
pub(super) fn admitted(entry: &ProviderEntry, identity: &UpstreamIdentity) -> Result<(), Failure> {
    let names: Vec<&str> =
        identity.user_name.iter().chain(identity.email.iter()).map(String::as_str).collect();
    if stage_admits(&entry.spec, &names) {
        return Ok(());
    }
    Err(Failure::Refused(Refusal::new(
        StatusCode::FORBIDDEN,
        "Single sign-on unavailable",
        "Signing in through this identity provider is not offered to you yet.",
        "NotATestUser",
        format!("stage {} does not admit {names:?}", stage_name(entry)),
    )))
}

/// The user a single sign-on signed in, whether it created them (JIT), and
/// how it answers.
struct SignedIn {
    user: User,
    created: bool,
    answer: Answer,
}

/// A signed-in user's answer: the redirect to the client, whose session and
/// code are written with the sign-in's record; or a page first (a second
/// factor to give or to enrol), which writes nothing.
enum Answer {
    Redirect(Box<Ending>),
    Page(Response),
}

/// Why finishing a single sign-on did not go on.
pub(super) enum Failure {
    /// Refused for a reason of the sign-in: counted, audited, shown.
    Refused(Refusal),
    /// Anything else (the client's request is no longer valid, a fault of ours).
    Other(LoginError),
}

impl From<LoginError> for Failure {
    fn from(error: LoginError) -> Self {
        Failure::Other(error)
    }
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure::Other(error.into())
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Other(error.into())
    }
}

/// Signs the upstream identity in, answering with the redirect to the
/// client (or a second-factor step, or a refusal page).
pub(super) async fn sign_in(
    state: &TokenServiceState,
    org: &Arc<OrganizationView>,
    entry: &ProviderEntry,
    pending: SsoRequest,
    pre_login_id: &str,
    identity: UpstreamIdentity,
    source: SourceAddress,
) -> Result<Response, LoginError> {
    let stage = stage_name(entry);
    match sign_in_inner(state, org, entry, &pending, pre_login_id, &identity, source.clone()).await {
        Ok(SignedIn { user, created, answer }) => {
            // The link and the provider's groups (a JIT user's link was made
            // with it), the session and the code, the count and the audit
            // event: one write, before the answer, so the client's code is
            // redeemed with the groups in place. Fail closed: a sign-in the
            // trail cannot record does not happen.
            let sign_in = UpstreamSignIn {
                organization: &org.namespace,
                identity_provider: &entry.name,
                subject: &identity.subject,
                user_id: &user.id,
                at_ms: state.now().as_millisecond(),
                groups: identity.groups.as_deref().filter(|_| created || entry.spec.jit.sync_on_sign_in),
                remove_others: !created,
            };
            let ending = match &answer {
                Answer::Redirect(ending) => Some(ending.writes()),
                Answer::Page(_) => None,
            };
            let success = Success { user: &user, sign_in, ending };
            record(state, org, &entry.name, stage, &source, Ok(&success)).await?;
            tracing::info!(
                target: "audit",
                event = "sso.sign_in",
                outcome = "success",
                organization = %org.namespace,
                identity_provider = %entry.name,
                user_id = %user.id,
                subject = %identity.subject,
                upstream_mfa = identity.upstream_mfa(),
                "signed in through single sign-on"
            );
            Ok(match answer {
                Answer::Redirect(ending) => ending.response,
                Answer::Page(page) => page,
            })
        }
        Err(Failure::Refused(refusal)) => Err(refuse(state, org, &entry.name, stage, &source, refusal).await),
        Err(Failure::Other(error)) => {
            if let LoginError::Server(fault) = &error {
                let detail = fault.to_string();
                let failure = Err(("ServerError", detail.as_str()));
                if let Err(error) = record(state, org, &entry.name, stage, &source, failure).await {
                    tracing::warn!(%error, "could not record a failed single sign-on");
                }
            }
            Err(error)
        }
    }
}

async fn sign_in_inner(
    state: &TokenServiceState,
    org: &Arc<OrganizationView>,
    entry: &ProviderEntry,
    pending: &SsoRequest,
    pre_login_id: &str,
    identity: &UpstreamIdentity,
    source: SourceAddress,
) -> Result<SignedIn, Failure> {
    // The client's request, validated again as on every step.
    let pairs: Vec<(String, String)> = serde_json::from_str(&pending.authorization_request)
        .map_err(|e| OAuthError::internal(format!("a stored authorization request is unreadable: {e}")))?;
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let params = Params::parse(encoded.as_bytes()).map_err(|reason| {
        OAuthError::internal(format!("a stored authorization request is unreadable: {reason}"))
    })?;
    let request = request::validate(state, &org.name, &params)
        .await
        .map_err(|error| crate::token::service::login::flow::refusal(state, org, error))?;

    admitted(entry, identity)?;
    let Some(login_name) = identity.login_name().map(str::to_owned) else {
        return Err(Failure::Refused(Refusal::untrusted(
            "ClaimMissing",
            "the identity has no user name or email",
        )));
    };

    let (user, created) = match find_user(state, org, entry, identity, &login_name).await? {
        Some(user) => (user, false),
        None => (provision(state, org, entry, identity, &login_name).await?, true),
    };
    if !user.active {
        return Err(Failure::Refused(Refusal::new(
            StatusCode::FORBIDDEN,
            "Account disabled",
            "This account is disabled.",
            "UserInactive",
            format!("user {} is inactive", user.id),
        )));
    }
    if entry.spec.jit.sync_on_sign_in && !created {
        refresh_attributes(state, org, &user, identity).await?;
    }

    let mut amr = vec!["fed".to_owned(), format!("{PROVIDER_AMR_PREFIX}{}", entry.name)];
    let upstream_counts =
        identity.upstream_mfa() && org.spec.authentication.mfa.upstream_mfa == UpstreamMfa::Accept;
    if upstream_counts {
        amr.push("mfa".to_owned());
        let ending = Ending::new(state, org, &request, &user.id, amr, None)?;
        return Ok(SignedIn { user, created, answer: Answer::Redirect(Box::new(ending)) });
    }
    let page = match mfa::second_factor(state, org, &user).await? {
        SecondFactor::NotNeeded => {
            let ending = Ending::new(state, org, &request, &user.id, amr, None)?;
            return Ok(SignedIn { user, created, answer: Answer::Redirect(Box::new(ending)) });
        }
        SecondFactor::Ask { webauthn, totp } => {
            // The second factor's steps are the password sign-in's: they
            // read the request, the browser and the ticket from a post.
            let post = SignInPost {
                org: org.clone(),
                params,
                request,
                browser: PreLogin { id: pre_login_id.to_owned(), set_cookie: None },
                source,
            };
            let at = state.now();
            let ticket = MfaTicket {
                user_id: user.id.clone(),
                auth_time: at.as_second(),
                expires: at.as_second() + state.login().form_lifetime.as_secs(),
                first_factor: amr,
            };
            if webauthn.is_empty() {
                show_totp(state, &post, &ticket, StatusCode::OK, None).into_response()
            } else {
                let step = SecondFactorStep { post: &post, ticket: &ticket, totp: !totp.is_empty() };
                webauthn::show_second_factor(state, &step, &webauthn, StatusCode::OK, None)
                    .await?
                    .into_response()
            }
        }
        SecondFactor::EnrolmentRequired => Page::notice(
            StatusCode::FORBIDDEN,
            "Two-step verification required",
            "Your organization requires a second factor here, and your account has none enrolled. \
             Ask your administrator to enrol a security key or an authenticator app for you.",
        )
        .into_response(),
    };
    Ok(SignedIn { user, created, answer: Answer::Page(page) })
}

/// An unknown user, by the organization's provisioning mode: created (JIT,
/// when the provider allows it), or refused with a page saying why.
async fn provision(
    state: &TokenServiceState,
    org: &OrganizationView,
    entry: &ProviderEntry,
    identity: &UpstreamIdentity,
    login_name: &str,
) -> Result<User, Failure> {
    let now = state.now().as_millisecond();
    match (org.spec.provisioning.mode, entry.spec.jit.enabled) {
        (ProvisioningMode::Jit, true) => {
            let new = NewUser {
                display_name: identity.display_name.clone(),
                emails: identity.email.iter().map(|e| Email::primary(e.clone())).collect(),
                ..NewUser::new(&org.namespace, login_name, UserSource::Jit)
            };
            match state.store().create_jit_user(&new, &entry.name, &identity.subject, now).await {
                Ok(user) => {
                    tracing::info!(
                        target: "audit",
                        event = "user.jit_created",
                        organization = %org.namespace,
                        identity_provider = %entry.name,
                        user_id = %user.id,
                        "user created at first single sign-on"
                    );
                    Ok(user)
                }
                Err(StoreError::AlreadyExists { .. }) => Err(Failure::Refused(Refusal::new(
                    StatusCode::CONFLICT,
                    "Account conflict",
                    "An account with your name already exists here and is not linked to your identity provider. Ask your administrator.",
                    "UserNameTaken",
                    format!("userName {login_name:?} exists, not linkable"),
                ))),
                Err(error) => Err(error.into()),
            }
        }
        (ProvisioningMode::Scim, _) => {
            let provider = entry.spec.display_name.clone().unwrap_or_else(|| entry.name.clone());
            Err(Failure::Refused(Refusal::new(
                StatusCode::FORBIDDEN,
                "Account not provisioned",
                format!(
                    "{provider} has not provisioned an account for you in {}. Ask your administrator to assign you to this application in {provider}.",
                    org.display_name
                ),
                "NotProvisioned",
                format!("{login_name:?} unknown; provisioning is scim"),
            )))
        }
        _ => Err(Failure::Refused(Refusal::new(
            StatusCode::FORBIDDEN,
            "No account",
            format!(
                "There is no account for you in {}. Accounts here are created by invitation or by an administrator.",
                org.display_name
            ),
            "NoAccount",
            format!("{login_name:?} unknown; no JIT provisioning through {}", entry.name),
        ))),
    }
}

/// The user this identity is: linked before, or matched by name or email
/// within the provider's routed domains.
async fn find_user(
    state: &TokenServiceState,
    org: &OrganizationView,
    entry: &ProviderEntry,
    identity: &UpstreamIdentity,
    login_name: &str,
) -> Result<Option<User>, OAuthError> {
    let store = state.store();
    if let Some(user) = store.linked_user(&org.namespace, &entry.name, &identity.subject).await? {
        return Ok(Some(user));
    }
    let trusted = |name: &str| {
        email_domain(name)
            .is_some_and(|d| entry.spec.email_domains.iter().any(|e| e.eq_ignore_ascii_case(&d)))
    };
    if trusted(login_name)
        && let Some(user) = store.find_user_by_name(&org.namespace, login_name).await?
    {
        return Ok(Some(user));
    }
    if let Some(email) = identity.email.as_deref().filter(|e| trusted(e)) {
        let mut users = store.find_users_by_email(&org.namespace, email).await?;
        if users.len() == 1 {
            return Ok(users.pop());
        }
    }
    Ok(None)
}

/// `syncOnSignIn`: the display name and email follow the upstream.
async fn refresh_attributes(
    state: &TokenServiceState,
    org: &OrganizationView,
    user: &User,
    identity: &UpstreamIdentity,
) -> Result<(), OAuthError> {
    let mut update = crate::store::UserUpdate::from(user);
    if let Some(name) = &identity.display_name {
        update.display_name = Some(name.clone());
    }
    if let Some(email) = &identity.email
        && !user.emails.iter().any(|e| e.primary && e.value.eq_ignore_ascii_case(email))
    {
        update.emails = vec![Email::primary(email.clone())];
    }
    if update != crate::store::UserUpdate::from(user) {
        state.store().update_user(&org.namespace, &user.id, &update, None).await?;
    }
    Ok(())
}
