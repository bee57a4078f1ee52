//! WebAuthn at sign-in (webauthn-rs): the relying party, the second-factor
//! step after the password, and passkey sign-in without one.
//!
//! ```text
//!  relying party   id = host of the public base URL, origin = its scheme://host[:port]
//!  after password  start_passkey_authentication(the user's credentials) ─► ceremony (browser, user) ─► page
//!  POST {issuer}/login/webauthn        CSRF ─ ticket ─ throttle ─ ceremony taken ─ assertion of one of
//!                                      the user's credentials ─ counter moved on ─► finish (pwd hwk mfa)
//!  POST {issuer}/login/passkey/start   CSRF ─ passkeys enabled ─► start_discoverable_authentication ─► ceremony
//!  POST {issuer}/login/passkey         CSRF ─ ceremony taken ─ user handle + credential id ─ throttle ─
//!                                      assertion with user verification ─ counter ─► finish (hwk mfa)
//! ```
//!
//! Every credential is a webauthn-rs `Passkey`, so every assertion needs user
//! verification (PIN or biometric); an assertion whose counter does not move
//! past the stored one (a cloned authenticator) is refused by webauthn-rs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication, PublicKeyCredential, Url,
    Webauthn, WebauthnBuilder, WebauthnError,
};

use super::attempt::Attempt;
use super::ceremonies::{self, Purpose, browser_binding};
use super::credentials::{self, StoredCredential};
use super::csrf::MfaTicket;
use super::error::LoginError;
use super::extract::SignInPost;
use super::flow::{Ending, show_sign_in, sign_in_fields};
use super::mfa::{self, SecondFactor};
use super::pages::{CeremonyMode, CeremonyPage, Page, PlainForm};
use super::request::Params;
use super::sign_in::{open_mfa_step, second_step_fields};
use super::step::Step;
use super::throttle::Throttle;
use super::{SourceAddress, issuer_path};
use crate::store::UserStore as _;
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{SourceKey, ThrottleVerdict};

const WRONG_KEY: &str = "That security key or passkey is not one enrolled for your account, or its answer \
                         was not right. Try again.";
const CLONED_KEY: &str = "That security key answered with a signature counter it had used before, so it may \
                          have been copied. It was refused; ask your administrator for help.";
const PASSKEYS_OFF: &str = "Passkey sign-in is turned off for this organization.";

/// The relying party of `org`'s pages; `None` where WebAuthn cannot work
/// (a public base URL whose host is an IP address: WebAuthn needs a domain).
pub(super) fn relying_party(state: &TokenServiceState, org: &OrganizationView) -> Option<Webauthn> {
    let built = Url::parse(state.public_base_url()).map_err(|e| e.to_string()).and_then(|base| {
        let host = base.host_str().unwrap_or_default().to_owned();
        let origin = Url::parse(&base.origin().ascii_serialization()).map_err(|e| e.to_string())?;
        let name = if org.display_name.is_empty() { &org.name } else { &org.display_name };
        WebauthnBuilder::new(&host, &origin)
            .and_then(|builder| builder.rp_name(name).build())
            .map_err(|e| e.to_string())
    });
    match built {
        Ok(webauthn) => Some(webauthn),
        Err(error) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(%error, "WebAuthn is off: the public base URL does not give a relying party id");
            });
            None
        }
    }
}

/// The relying party, where the page that got here needed one.
pub(super) fn required_relying_party(
    state: &TokenServiceState,
    org: &OrganizationView,
) -> Result<Webauthn, OAuthError> {
    relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))
}

fn webauthn_error(error: WebauthnError) -> OAuthError {
    OAuthError::server_because("WebAuthn", error)
}

/// The credential a browser posted, as webauthn-rs reads it.
fn posted_credential(params: &Params) -> Option<PublicKeyCredential> {
    params.get("credential").and_then(|json| serde_json::from_str(json).ok())
}

/// The second-factor step of one sign-in.
pub(super) struct SecondFactorStep<'a> {
    pub post: &'a SignInPost,
    pub ticket: &'a MfaTicket,
    /// Whether a TOTP code is offered beside WebAuthn.
    pub totp: bool,
}

/// A new assertion ceremony over the user's credentials, and its page.
pub(super) async fn show_second_factor(
    state: &TokenServiceState,
    step: &SecondFactorStep<'_>,
    credentials: &[StoredCredential],
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let SecondFactorStep { post, ticket, totp } = step;
    let org = &post.org;
    let rp = required_relying_party(state, org)?;
    let passkeys: Vec<Passkey> = credentials.iter().map(|c| c.passkey.clone()).collect();
    let (challenge, authentication) = rp.start_passkey_authentication(&passkeys).map_err(webauthn_error)?;
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::SecondFactor,
        &browser_binding(&post.browser.id),
        Some(&ticket.user_id),
        &authentication,
        state.now(),
        state.login().form_lifetime,
    )
    .await?;
    let mut hidden = second_step_fields(state, post, ticket);
    let path = issuer_path(state, &org.name);
    let totp_action = format!("{path}/login/totp");
    let totp_alternative = totp.then(|| PlainForm { action: &totp_action, hidden: hidden.clone() });
    hidden.push(("ceremony", ceremony));
    let options = serde_json::to_value(&challenge).map_err(OAuthError::server)?;
    let action = format!("{path}/login/webauthn");
    let text = format!("Use your security key or passkey to finish signing in to {}.", org.display_name);
    let page = CeremonyPage {
        title: "Two-step verification",
        text: &text,
        button: "Use my security key",
        mode: CeremonyMode::Get,
        options: &options,
        form: PlainForm { action: &action, hidden },
        message,
        totp_alternative,
    };
    Ok(Page::ceremony(status, &page))
}

pub(super) async fn webauthn_step(
    State(state): State<TokenServiceState>,
    source: SourceAddress,
    post: SignInPost,
) -> Result<Response, LoginError> {
    let state = &state;
    let SignInPost { org, params, request, browser, .. } = &post;
    let now = state.now();
    let (ticket, user) = open_mfa_step(state, &post).await?;
    // The policy may have changed since the password: ask it again.
    let (webauthn, totp) = match mfa::second_factor(state, org, &user).await? {
        SecondFactor::Ask { webauthn, totp } if !webauthn.is_empty() => (webauthn, totp),
        _ => {
            let message = "Security keys cannot be used to sign in here. Please sign in again.";
            return Err(post.sign_in_again(state, StatusCode::FORBIDDEN, message));
        }
    };
    let step = SecondFactorStep { post: &post, ticket: &ticket, totp: !totp.is_empty() };
    let step = Step::SecondFactor { step: &step, credentials: &webauthn };
    let attempt = Attempt::begin(state, Attempt::key(org, user.id.clone()), source, now, &step).await?;

    let ceremony: Option<ceremonies::Taken<PasskeyAuthentication>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::SecondFactor,
        &browser_binding(&browser.id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let verdict = match (ceremony, posted_credential(params)) {
        (Some(ceremony), Some(credential)) if ceremony.user_id.as_deref() == Some(user.id.as_str()) => {
            // Only the user's own credentials: the ceremony allowed no others either.
            match webauthn.iter().find(|c| c.passkey.cred_id().as_ref() == credential.raw_id.as_ref()) {
                Some(stored) => {
                    let rp = required_relying_party(state, org)?;
                    let outcome = rp.finish_passkey_authentication(&credential, &ceremony.state);
                    check_assertion(state, stored, outcome, now).await?
                }
                None => Err(WRONG_KEY),
            }
        }
        _ => Err(WRONG_KEY),
    };
    if let Err(message) = verdict {
        attempt.failed().await?;
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, message).await);
    }
    attempt.succeeded().await?;
    let amr = [ticket.first_factor.as_slice(), &["hwk".to_owned(), "mfa".to_owned()]].concat();
    Ending::new(state, org, request, &user.id, amr, None)?.finish(state).await
}

/// webauthn-rs' verdict on an assertion, and the credential's new counter
/// stored; `Err` carries what to tell the user.
async fn check_assertion(
    state: &TokenServiceState,
    stored: &StoredCredential,
    outcome: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
    now: jiff::Timestamp,
) -> Result<Result<(), &'static str>, OAuthError> {
    match outcome {
        Ok(result) => {
            let recorded =
                credentials::record_use(state.store(), stored, &result, now.as_millisecond()).await?;
            // Not recorded: another sign-in took this counter value first.
            Ok(if recorded { Ok(()) } else { Err(CLONED_KEY) })
        }
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(credential = %stored.id, user = %stored.user_id, "a WebAuthn counter went backwards");
            Ok(Err(CLONED_KEY))
        }
        Err(error) => {
            tracing::info!(%error, "a WebAuthn assertion was refused");
            Ok(Err(WRONG_KEY))
        }
    }
}

// === Passkey sign-in: no password, a discoverable credential with user verification. ===

/// A new discoverable ceremony and its page.
pub(super) async fn show_passkey(
    state: &TokenServiceState,
    post: &SignInPost,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let SignInPost { org, request, browser, .. } = post;
    let rp = required_relying_party(state, org)?;
    let (mut challenge, authentication) = rp.start_discoverable_authentication().map_err(webauthn_error)?;
    // A button press starts it, not the browser's autofill.
    challenge.mediation = None;
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::PasskeySignIn,
        &browser_binding(&browser.id),
        None,
        &authentication,
        state.now(),
        state.login().form_lifetime,
    )
    .await?;
    let mut hidden = sign_in_fields(state, org, request, browser);
    hidden.push(("ceremony", ceremony));
    let options = serde_json::to_value(&challenge).map_err(OAuthError::server)?;
    let action = format!("{}/login/passkey", issuer_path(state, &org.name));
    let text = format!("Use your passkey for {} on this device, or your security key.", org.display_name);
    let page = CeremonyPage {
        title: "Sign in with a passkey",
        text: &text,
        button: "Use my passkey",
        mode: CeremonyMode::Get,
        options: &options,
        form: PlainForm { action: &action, hidden },
        message,
        totp_alternative: None,
    };
    Ok(Page::ceremony(status, &page))
}

/// Whether the organization's sign-in form offers passkeys.
pub(super) fn passkeys_offered(state: &TokenServiceState, org: &OrganizationView) -> bool {
    org.spec.authentication.passkeys.enabled && relying_party(state, org).is_some()
}

pub(super) async fn passkey_start(
    State(state): State<TokenServiceState>,
    source: SourceAddress,
    post: SignInPost,
) -> Result<Response, LoginError> {
    if !passkeys_offered(&state, &post.org) {
        return Err(post.sign_in_again(&state, StatusCode::FORBIDDEN, PASSKEYS_OFF));
    }
    // Anyone may start one, and each start stores a ceremony: bounded per source.
    let throttle = Throttle::of(&state);
    if let ThrottleVerdict::Throttled { retry_after } =
        throttle.begin_ceremony(&post.org.namespace, SourceKey::from(source.ip), state.now()).await?
    {
        let message = format!(
            "Too many passkey sign-ins were started from your network. Try again in {} seconds.",
            retry_after.as_secs().max(1)
        );
        let page = show_sign_in(
            &state,
            &post.org,
            &post.request,
            &post.browser,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&message),
            "",
        );
        return Err(page.retry_after(retry_after).into());
    }
    Ok(show_passkey(&state, &post, StatusCode::OK, None).await?.into_response())
}

pub(super) async fn passkey_step(
    State(state): State<TokenServiceState>,
    source: SourceAddress,
    post: SignInPost,
) -> Result<Response, LoginError> {
    let state = &state;
    let SignInPost { org, params, request, browser, .. } = &post;
    if !passkeys_offered(state, org) {
        return Err(post.sign_in_again(state, StatusCode::FORBIDDEN, PASSKEYS_OFF));
    }
    let now = state.now();
    let step = Step::Passkey { post: &post };
    let ceremony: Option<ceremonies::Taken<DiscoverableAuthentication>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::PasskeySignIn,
        &browser_binding(&browser.id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let (Some(ceremony), Some(credential)) = (ceremony, posted_credential(params)) else {
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, WRONG_KEY).await);
    };
    let rp = required_relying_party(state, org)?;
    let Ok((user_handle, credential_id)) = rp.identify_discoverable_authentication(&credential) else {
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, WRONG_KEY).await);
    };
    // The credential must be enrolled in this organization, by the user its handle names.
    let stored = credentials::by_credential_id(state.store(), &org.namespace, credential_id).await?;
    let Some(stored) = stored.filter(|c| c.user_id == user_handle.hyphenated().to_string()) else {
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, WRONG_KEY).await);
    };
    let user = match state.store().get_user(&org.namespace, &stored.user_id).await? {
        Some(user) if user.active => user,
        _ => return Err(step.refused(state, StatusCode::FORBIDDEN, "This account cannot sign in.").await),
    };
    let attempt = Attempt::begin(state, Attempt::key(org, user.id.clone()), source, now, &step).await?;
    let outcome = rp.finish_discoverable_authentication(
        &credential,
        ceremony.state,
        &[DiscoverableKey::from(&stored.passkey)],
    );
    if let Err(message) = check_assertion(state, &stored, outcome, now).await? {
        attempt.failed().await?;
        return Err(step.refused(state, StatusCode::UNAUTHORIZED, message).await);
    }
    attempt.succeeded().await?;
    // User verification and possession of the key: both factors.
    let amr = vec!["hwk".to_owned(), "mfa".to_owned()];
    Ending::new(state, org, request, &user.id, amr, None)?.finish(state).await
}
