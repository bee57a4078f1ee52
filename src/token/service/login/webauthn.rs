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

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication, PublicKeyCredential, Url,
    Webauthn, WebauthnBuilder, WebauthnError,
};

use super::ceremonies::{self, Purpose, browser_binding};
use super::credentials::{self, StoredCredential};
use super::csrf::{self, MfaTicket};
use super::flow::{finish, server_error, show_sign_in};
use super::mfa::{self, SecondFactor};
use super::pages::{self, CeremonyMode, CeremonyPage, PlainForm};
use super::request::AuthorizationRequest;
use super::sign_in::{Post, accept_post, open_mfa_step, throttle_message, throttled};
use super::{SourceAddress, issuer_path};
use crate::store::UserStore as _;
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{AccountKey, ThrottleVerdict};

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

fn webauthn_error(error: WebauthnError) -> OAuthError {
    OAuthError::server_because("WebAuthn", error)
}

/// The credential a browser posted, as webauthn-rs reads it.
fn posted_credential(params: &super::request::Params) -> Option<PublicKeyCredential> {
    params.get("credential").and_then(|json| serde_json::from_str(json).ok())
}

/// The second-factor step of one sign-in.
pub(super) struct SecondFactorStep<'a> {
    pub org: &'a OrganizationView,
    pub request: &'a AuthorizationRequest,
    pub pre_login_id: &'a str,
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
) -> Result<Response, OAuthError> {
    let SecondFactorStep { org, request, pre_login_id, ticket, totp } = step;
    let rp =
        relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
    let passkeys: Vec<Passkey> = credentials.iter().map(|c| c.passkey.clone()).collect();
    let (challenge, authentication) = rp.start_passkey_authentication(&passkeys).map_err(webauthn_error)?;
    let login = state.login();
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::SecondFactor,
        &browser_binding(pre_login_id),
        Some(&ticket.user_id),
        &authentication,
        state.now(),
        login.form_lifetime,
    )
    .await?;
    let key = &login.csrf_key;
    let mut hidden = request.hidden_fields();
    hidden.push(("csrf", csrf::csrf_token(key, &org.name, pre_login_id)));
    hidden.push(("ticket", ticket.seal(key, &org.name, pre_login_id)));
    let path = issuer_path(state, &org.name);
    let totp_action = format!("{path}/login/totp");
    let alternative =
        totp.then(|| pages::totp_alternative(&PlainForm { action: &totp_action, hidden: hidden.clone() }));
    hidden.push(("ceremony", ceremony));
    let options = serde_json::to_value(&challenge).map_err(OAuthError::server)?;
    let action = format!("{path}/login/webauthn");
    let text = format!("Use your security key or passkey to finish signing in to {}.", org.display_name);
    let page = pages::ceremony(&CeremonyPage {
        title: "Two-step verification",
        text: &text,
        button: "Use my security key",
        mode: CeremonyMode::Get,
        options: &options,
        form: PlainForm { action: &action, hidden },
        message,
        alternative,
    });
    Ok(pages::respond_with_ceremony(status, page, &[]))
}

pub(super) async fn webauthn_step(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let post = match accept_post(&state, &organization, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    webauthn_step_inner(&state, &post, source, &headers).await.unwrap_or_else(server_error)
}

async fn webauthn_step_inner(
    state: &TokenServiceState,
    post: &Post,
    source: SourceAddress,
    headers: &HeaderMap,
) -> Result<Response, OAuthError> {
    let Post { org, params, request, pre_login_id } = post;
    let login = state.login();
    let now = state.now();
    let sign_in_again =
        |message: &str| show_sign_in(state, org, request, headers, StatusCode::FORBIDDEN, Some(message), "");
    let (ticket, user) = match open_mfa_step(state, post, headers).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    // The policy may have changed since the password: ask it again.
    let (webauthn, totp) = match mfa::second_factor(state, org, &user).await? {
        SecondFactor::Ask { webauthn, totp } if !webauthn.is_empty() => (webauthn, totp),
        _ => return Ok(sign_in_again("Security keys cannot be used to sign in here. Please sign in again.")),
    };
    let step = SecondFactorStep { org, request, pre_login_id, ticket: &ticket, totp: !totp.is_empty() };
    let account = AccountKey { organization: org.namespace.clone(), account: user.id.clone() };
    if let ThrottleVerdict::Throttled { retry_after } = login.throttle.check(&account, source.0.into(), now) {
        let message = throttle_message(retry_after);
        let page = show_second_factor(state, &step, &webauthn, StatusCode::TOO_MANY_REQUESTS, Some(&message))
            .await?;
        return Ok(throttled(page, retry_after));
    }

    let ceremony: Option<ceremonies::Taken<PasskeyAuthentication>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::SecondFactor,
        &browser_binding(pre_login_id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let verdict = match (ceremony, posted_credential(params)) {
        (Some(ceremony), Some(credential)) if ceremony.user_id.as_deref() == Some(user.id.as_str()) => {
            // Only the user's own credentials: the ceremony allowed no others either.
            match webauthn.iter().find(|c| c.passkey.cred_id().as_ref() == credential.raw_id.as_ref()) {
                Some(stored) => {
                    let rp = relying_party(state, org)
                        .ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
                    let outcome = rp.finish_passkey_authentication(&credential, &ceremony.state);
                    check_assertion(state, stored, outcome, now).await?
                }
                None => Err(WRONG_KEY),
            }
        }
        _ => Err(WRONG_KEY),
    };
    match verdict {
        Ok(()) => {
            login.throttle.record_success(&account);
            let amr = vec!["pwd".to_owned(), "hwk".to_owned(), "mfa".to_owned()];
            finish(state, org, request, &user.id, amr, None).await
        }
        Err(message) => {
            login.throttle.record_failure(&account, source.0.into(), now);
            show_second_factor(state, &step, &webauthn, StatusCode::UNAUTHORIZED, Some(message)).await
        }
    }
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
async fn show_passkey(
    state: &TokenServiceState,
    org: &OrganizationView,
    request: &AuthorizationRequest,
    pre_login_id: &str,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, OAuthError> {
    let rp =
        relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
    let (mut challenge, authentication) = rp.start_discoverable_authentication().map_err(webauthn_error)?;
    // A button press starts it, not the browser's autofill.
    challenge.mediation = None;
    let login = state.login();
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::PasskeySignIn,
        &browser_binding(pre_login_id),
        None,
        &authentication,
        state.now(),
        login.form_lifetime,
    )
    .await?;
    let mut hidden = request.hidden_fields();
    hidden.push(("csrf", csrf::csrf_token(&login.csrf_key, &org.name, pre_login_id)));
    hidden.push(("ceremony", ceremony));
    let options = serde_json::to_value(&challenge).map_err(OAuthError::server)?;
    let action = format!("{}/login/passkey", issuer_path(state, &org.name));
    let text = format!("Use your passkey for {} on this device, or your security key.", org.display_name);
    let page = pages::ceremony(&CeremonyPage {
        title: "Sign in with a passkey",
        text: &text,
        button: "Use my passkey",
        mode: CeremonyMode::Get,
        options: &options,
        form: PlainForm { action: &action, hidden },
        message,
        alternative: None,
    });
    Ok(pages::respond_with_ceremony(status, page, &[]))
}

/// Whether the organization's sign-in form offers passkeys.
pub(super) fn passkeys_offered(state: &TokenServiceState, org: &OrganizationView) -> bool {
    org.spec.authentication.passkeys.enabled && relying_party(state, org).is_some()
}

pub(super) async fn passkey_start(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let post = match accept_post(&state, &organization, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    let Post { org, request, pre_login_id, .. } = &post;
    if !passkeys_offered(&state, org) {
        return show_sign_in(&state, org, request, &headers, StatusCode::FORBIDDEN, Some(PASSKEYS_OFF), "");
    }
    show_passkey(&state, org, request, pre_login_id, StatusCode::OK, None).await.unwrap_or_else(server_error)
}

pub(super) async fn passkey_step(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let post = match accept_post(&state, &organization, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    passkey_step_inner(&state, &post, source, &headers).await.unwrap_or_else(server_error)
}

async fn passkey_step_inner(
    state: &TokenServiceState,
    post: &Post,
    source: SourceAddress,
    headers: &HeaderMap,
) -> Result<Response, OAuthError> {
    let Post { org, params, request, pre_login_id } = post;
    if !passkeys_offered(state, org) {
        return Ok(show_sign_in(state, org, request, headers, StatusCode::FORBIDDEN, Some(PASSKEYS_OFF), ""));
    }
    let login = state.login();
    let now = state.now();
    let again = |status, message: &'static str| {
        show_passkey(state, org, request, pre_login_id, status, Some(message))
    };
    let ceremony: Option<ceremonies::Taken<DiscoverableAuthentication>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::PasskeySignIn,
        &browser_binding(pre_login_id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let (Some(ceremony), Some(credential)) = (ceremony, posted_credential(params)) else {
        return again(StatusCode::UNAUTHORIZED, WRONG_KEY).await;
    };
    let rp =
        relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
    let Ok((user_handle, credential_id)) = rp.identify_discoverable_authentication(&credential) else {
        return again(StatusCode::UNAUTHORIZED, WRONG_KEY).await;
    };
    // The credential must be enrolled in this organization, by the user its handle names.
    let stored = credentials::by_credential_id(state.store(), &org.namespace, credential_id).await?;
    let Some(stored) = stored.filter(|c| c.user_id == user_handle.hyphenated().to_string()) else {
        return again(StatusCode::UNAUTHORIZED, WRONG_KEY).await;
    };
    let user = match state.store().get_user(&org.namespace, &stored.user_id).await? {
        Some(user) if user.active => user,
        _ => return again(StatusCode::FORBIDDEN, "This account cannot sign in.").await,
    };
    let account = AccountKey { organization: org.namespace.clone(), account: user.id.clone() };
    if let ThrottleVerdict::Throttled { retry_after } = login.throttle.check(&account, source.0.into(), now) {
        let message = throttle_message(retry_after);
        let status = StatusCode::TOO_MANY_REQUESTS;
        let page = show_passkey(state, org, request, pre_login_id, status, Some(&message)).await?;
        return Ok(throttled(page, retry_after));
    }
    let outcome = rp.finish_discoverable_authentication(
        &credential,
        ceremony.state,
        &[DiscoverableKey::from(&stored.passkey)],
    );
    match check_assertion(state, &stored, outcome, now).await? {
        Ok(()) => {
            login.throttle.record_success(&account);
            // User verification and possession of the key: both factors.
            let amr = vec!["hwk".to_owned(), "mfa".to_owned()];
            finish(state, org, request, &user.id, amr, None).await
        }
        Err(message) => {
            login.throttle.record_failure(&account, source.0.into(), now);
            again(StatusCode::UNAUTHORIZED, message).await
        }
    }
}
