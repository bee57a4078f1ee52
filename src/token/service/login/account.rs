//! The account page of a signed-in user: the second factors enrolled, and
//! enrolling a WebAuthn credential (security key or passkey) or a TOTP app.
//! Every enrolment asks for the password again (a stolen session alone
//! cannot add a factor) and carries a CSRF token bound to the session.
//!
//! ```text
//!  GET  {issuer}/account                  session ─► factors + forms
//!  POST {issuer}/account/webauthn         session ─ CSRF ─ password ─ policy ─► start_passkey_registration
//!                                          ─► ceremony (session) ─► page: navigator.credentials.create
//!  POST {issuer}/account/webauthn/finish  session ─ CSRF ─ ceremony taken ─ attestation ─► credential stored
//!  POST {issuer}/account/totp             session ─ CSRF ─ password ─ policy ─► new secret, sealed, in a
//!                                          ceremony ─► page: key + otpauth URI + first code
//!  POST {issuer}/account/totp/finish      session ─ CSRF ─ ceremony taken ─ first code right ─► enrolment stored
//! ```

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential, Uuid, WebauthnError};

use super::ceremonies::{self, Purpose, session_binding};
use super::credentials::{self, CredentialKind};
use super::csrf;
use super::flow::{self, current_session, server_error};
use super::pages::{self, AccountPage, CeremonyMode, CeremonyPage, FactorRow, PlainForm, WebAuthnKinds};
use super::request::Params;
use super::session::Session;
use super::sign_in::{throttle_message, throttled};
use super::webauthn::relying_party;
use super::{SourceAddress, issuer_path};
use crate::api::MfaMethod;
use crate::secret::SecretString;
use crate::store::{MfaFactor, User, UserStore as _};
use crate::token::password::PasswordError;
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{AccountKey, ThrottleVerdict};
use crate::token::totp;

const FORM_EXPIRED: &str = "This form expired or was not sent from this site. Please try again.";

/// A signed-in browser at the account page.
struct SignedIn {
    org: Arc<OrganizationView>,
    session: Session,
    /// The session cookie: the account forms' CSRF tokens are bound to it.
    session_secret: String,
    user: User,
}

async fn signed_in(
    state: &TokenServiceState,
    organization: &str,
    headers: &HeaderMap,
) -> Result<SignedIn, Response> {
    let org = flow::organization(state, organization).await?;
    let not_signed_in = || {
        pages::respond(
            StatusCode::UNAUTHORIZED,
            pages::notice(
                "Not signed in",
                "Sign in to an application of this organization first, then open this page again.",
            ),
            &[],
        )
    };
    let Some((session, session_secret)) =
        current_session(state, &org, headers).await.map_err(server_error)?
    else {
        return Err(not_signed_in());
    };
    let user = match state.store().get_user(&org.namespace, &session.user_id).await {
        Ok(Some(user)) if user.active => user,
        Ok(_) => return Err(not_signed_in()),
        Err(error) => return Err(server_error(error.into())),
    };
    Ok(SignedIn { org, session, session_secret, user })
}

/// The signed-in browser and its form, once the CSRF token matched the session.
async fn accept_post(
    state: &TokenServiceState,
    organization: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SignedIn, Params), Response> {
    let account = signed_in(state, organization, headers).await?;
    let params = Params::parse(body).map_err(|reason| {
        pages::respond(
            StatusCode::BAD_REQUEST,
            pages::notice("Refused", &format!("The form is malformed: {reason}.")),
            &[],
        )
    })?;
    let key = &state.login().csrf_key;
    let matches = params.get("csrf").is_some_and(|token| {
        csrf::account_token_matches(key, &account.org.name, &account.session_secret, token)
    });
    if !matches {
        return Err(account_page(state, &account, StatusCode::FORBIDDEN, Some(FORM_EXPIRED))
            .await
            .unwrap_or_else(server_error));
    }
    Ok((account, params))
}

fn csrf_field(state: &TokenServiceState, account: &SignedIn) -> (&'static str, String) {
    ("csrf", csrf::account_token(&state.login().csrf_key, &account.org.name, &account.session_secret))
}

fn shown(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Which WebAuthn credentials the organization lets users enrol: passkeys
/// (when passkey sign-in is on), security keys (when WebAuthn is an MFA method).
fn webauthn_kinds(state: &TokenServiceState, org: &OrganizationView) -> WebAuthnKinds {
    if relying_party(state, org).is_none() {
        return WebAuthnKinds { passkey: false, security_key: false };
    }
    WebAuthnKinds {
        passkey: org.spec.authentication.passkeys.enabled,
        security_key: org.spec.authentication.mfa.methods.contains(&MfaMethod::WebAuthn),
    }
}

fn totp_enrolment(org: &OrganizationView) -> bool {
    org.spec.authentication.mfa.methods.contains(&MfaMethod::Totp)
}

async fn account_page(
    state: &TokenServiceState,
    account: &SignedIn,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, .. } = account;
    let mut factors: Vec<FactorRow> = credentials::for_user(state.store(), &org.namespace, &user.id)
        .await?
        .into_iter()
        .map(|c| FactorRow {
            kind: match c.kind {
                CredentialKind::Passkey => "Passkey",
                CredentialKind::SecurityKey => "Security key",
            },
            name: c.name,
            created: shown(c.created_ms),
            last_used: c.last_used_ms.map(shown),
        })
        .collect();
    for enrolment in state.store().list_mfa_enrolments(&org.namespace, &user.id).await? {
        if matches!(enrolment.factor, MfaFactor::Totp { .. }) {
            factors.push(FactorRow {
                kind: "Authenticator app",
                name: enrolment.label.unwrap_or_default(),
                created: shown(enrolment.created_ms),
                last_used: enrolment.last_used_ms.map(shown),
            });
        }
    }
    let path = issuer_path(state, &org.name);
    let webauthn_action = format!("{path}/account/webauthn");
    let totp_action = format!("{path}/account/totp");
    let hidden = vec![csrf_field(state, account)];
    let page = pages::account(&AccountPage {
        organization_display_name: &org.display_name,
        user_name: &user.user_name,
        factors,
        message,
        add_webauthn: Some(webauthn_kinds(state, org))
            .filter(|kinds| kinds.passkey || kinds.security_key)
            .map(|kinds| (PlainForm { action: &webauthn_action, hidden: hidden.clone() }, kinds)),
        add_totp: totp_enrolment(org).then(|| PlainForm { action: &totp_action, hidden }),
    });
    Ok(pages::respond(status, page, &[]))
}

pub(super) async fn show(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    headers: HeaderMap,
) -> Response {
    match signed_in(&state, &organization, &headers).await {
        Ok(account) => {
            account_page(&state, &account, StatusCode::OK, None).await.unwrap_or_else(server_error)
        }
        Err(page) => page,
    }
}

/// The password again, throttled like a sign-in; `Err` is the page to answer with.
async fn confirm_password(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
    source: SourceAddress,
) -> Result<Result<(), Response>, OAuthError> {
    let login = state.login();
    let now = state.now();
    let key = AccountKey { organization: account.org.namespace.clone(), account: account.user.id.clone() };
    if let ThrottleVerdict::Throttled { retry_after } = login.throttle.check(&key, source.0.into(), now) {
        let message = throttle_message(retry_after);
        let page = account_page(state, account, StatusCode::TOO_MANY_REQUESTS, Some(&message)).await?;
        return Ok(Err(throttled(page, retry_after)));
    }
    let password = params.get("password").unwrap_or_default();
    let verified = match &account.user.password_hash {
        Some(hash) if !password.is_empty() => match login.hasher.verify(password, hash.expose()).await {
            Ok(verified) => verified,
            Err(PasswordError::TooLong) => false,
            Err(PasswordError::Busy) => {
                let message = "We are busy. Please try again in a moment.";
                let page =
                    account_page(state, account, StatusCode::SERVICE_UNAVAILABLE, Some(message)).await?;
                return Ok(Err(throttled(page, std::time::Duration::from_secs(1))));
            }
            Err(error) => return Err(OAuthError::server_because("password check", error)),
        },
        _ => false,
    };
    if !verified {
        login.throttle.record_failure(&key, source.0.into(), now);
        let message = "That password is not right. Enter your password to add a sign-in method.";
        return Ok(Err(account_page(state, account, StatusCode::UNAUTHORIZED, Some(message)).await?));
    }
    login.throttle.record_success(&key);
    Ok(Ok(()))
}

fn factor_name(params: &Params) -> Option<String> {
    let name = params.get("name").unwrap_or_default().trim();
    (!name.is_empty() && name.chars().count() <= 64).then(|| name.to_owned())
}

// === WebAuthn enrolment. ===

/// What the registration ceremony remembers between its two requests.
#[derive(Serialize, Deserialize)]
struct Registration {
    state: PasskeyRegistration,
    name: String,
    passkey: bool,
}

pub(super) async fn webauthn_start(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, params) = match accept_post(&state, &organization, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(page) => return page,
    };
    webauthn_start_inner(&state, &account, &params, source).await.unwrap_or_else(server_error)
}

async fn webauthn_start_inner(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
    source: SourceAddress,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, session, .. } = account;
    let passkey = params.get("kind") == Some("passkey");
    let kinds = webauthn_kinds(state, org);
    let allowed = if passkey { kinds.passkey } else { kinds.security_key };
    if !allowed {
        let message = "Your organization does not allow adding this kind of sign-in method.";
        return account_page(state, account, StatusCode::FORBIDDEN, Some(message)).await;
    }
    let Some(name) = factor_name(params) else {
        let message = "Give the security key a name (up to 64 characters).";
        return account_page(state, account, StatusCode::BAD_REQUEST, Some(message)).await;
    };
    if let Err(page) = confirm_password(state, account, params, source).await? {
        return Ok(page);
    }
    let rp =
        relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
    let user_handle = Uuid::parse_str(&user.id).map_err(OAuthError::server)?;
    let existing: Vec<_> = credentials::for_user(state.store(), &org.namespace, &user.id)
        .await?
        .into_iter()
        .map(|c| c.passkey.cred_id().clone())
        .collect();
    let display_name = user.display_name.as_deref().unwrap_or(&user.user_name);
    let (challenge, registration) = rp
        .start_passkey_registration(user_handle, &user.user_name, display_name, Some(existing))
        .map_err(|e| OAuthError::server_because("WebAuthn", e))?;
    let mut options = serde_json::to_value(&challenge).map_err(OAuthError::server)?;
    if passkey {
        // A passkey must be discoverable: it is found without a user name
        // (WebAuthn §5.4.4; webauthn-rs leaves it to the authenticator).
        let selection = &mut options["publicKey"]["authenticatorSelection"];
        selection["residentKey"] = "required".into();
        selection["requireResidentKey"] = true.into();
    }
    let login = state.login();
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::Register,
        &session_binding(&session.id),
        Some(&user.id),
        &Registration { state: registration, name, passkey },
        state.now(),
        login.form_lifetime,
    )
    .await?;
    let action = format!("{}/account/webauthn/finish", issuer_path(state, &org.name));
    let page = pages::ceremony(&CeremonyPage {
        title: if passkey { "Add a passkey" } else { "Add a security key" },
        text: "Press the button, then follow your browser: touch your security key or unlock your device.",
        button: "Create",
        mode: CeremonyMode::Create,
        options: &options,
        form: PlainForm { action: &action, hidden: vec![csrf_field(state, account), ("ceremony", ceremony)] },
        message: None,
        alternative: None,
    });
    Ok(pages::respond_with_ceremony(StatusCode::OK, page, &[]))
}

pub(super) async fn webauthn_finish(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, params) = match accept_post(&state, &organization, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(page) => return page,
    };
    webauthn_finish_inner(&state, &account, &params).await.unwrap_or_else(server_error)
}

async fn webauthn_finish_inner(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, session, .. } = account;
    let now = state.now();
    let ceremony: Option<ceremonies::Taken<Registration>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::Register,
        &session_binding(&session.id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let Some(ceremony) = ceremony.filter(|c| c.user_id.as_deref() == Some(user.id.as_str())) else {
        let message = "Adding the security key took too long or was already done. Please start again.";
        return account_page(state, account, StatusCode::FORBIDDEN, Some(message)).await;
    };
    let credential: Option<RegisterPublicKeyCredential> =
        params.get("credential").and_then(|json| serde_json::from_str(json).ok());
    let rp =
        relying_party(state, org).ok_or_else(|| OAuthError::internal("WebAuthn has no relying party"))?;
    let registration = ceremony.state;
    let passkey = match credential.map(|c| rp.finish_passkey_registration(&c, &registration.state)) {
        Some(Ok(passkey)) => passkey,
        Some(Err(error)) => {
            tracing::info!(%error, "a WebAuthn registration was refused");
            let message = match error {
                WebauthnError::UserNotVerified => {
                    "Your security key did not verify you (PIN or biometric). It was not added."
                }
                _ => "Your security key's answer was not right. It was not added.",
            };
            return account_page(state, account, StatusCode::BAD_REQUEST, Some(message)).await;
        }
        None => {
            let message = "No answer from a security key arrived. It was not added.";
            return account_page(state, account, StatusCode::BAD_REQUEST, Some(message)).await;
        }
    };
    let kind = if registration.passkey { CredentialKind::Passkey } else { CredentialKind::SecurityKey };
    let inserted = credentials::insert(
        state.store(),
        &org.namespace,
        &user.id,
        kind,
        &registration.name,
        &passkey,
        now.as_millisecond(),
    )
    .await?;
    if !inserted {
        let message = "That security key is enrolled already.";
        return account_page(state, account, StatusCode::CONFLICT, Some(message)).await;
    }
    let message = format!("Added “{}”.", registration.name);
    account_page(state, account, StatusCode::OK, Some(&message)).await
}

// === TOTP enrolment. ===

/// The secret being enrolled, sealed as it will be stored, and its name.
#[derive(Serialize, Deserialize)]
struct TotpEnrolment {
    sealed_secret: String,
    name: String,
}

pub(super) async fn totp_start(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, params) = match accept_post(&state, &organization, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(page) => return page,
    };
    totp_start_inner(&state, &account, &params, source).await.unwrap_or_else(server_error)
}

async fn totp_start_inner(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
    source: SourceAddress,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, .. } = account;
    if !totp_enrolment(org) {
        let message = "Your organization does not allow authenticator apps.";
        return account_page(state, account, StatusCode::FORBIDDEN, Some(message)).await;
    }
    let Some(name) = factor_name(params) else {
        let message = "Give the authenticator app a name (up to 64 characters).";
        return account_page(state, account, StatusCode::BAD_REQUEST, Some(message)).await;
    };
    if let Err(page) = confirm_password(state, account, params, source).await? {
        return Ok(page);
    }
    let secret = zeroize::Zeroizing::new(totp::generate_secret().map_err(OAuthError::server)?);
    let sealed_secret = state
        .login()
        .totp_sealer()
        .seal(&org.namespace, &user.id, secret.as_ref())
        .map_err(OAuthError::server)?;
    show_totp_code_form(state, account, &TotpEnrolment { sealed_secret, name }, StatusCode::OK, None).await
}

/// Remembers the pending secret in a new ceremony and asks for its first code.
async fn show_totp_code_form(
    state: &TokenServiceState,
    account: &SignedIn,
    pending: &TotpEnrolment,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, session, .. } = account;
    let secret = zeroize::Zeroizing::new(
        state
            .login()
            .totp_sealer()
            .open(&org.namespace, &user.id, &pending.sealed_secret)
            .map_err(OAuthError::server)?,
    );
    let ceremony = ceremonies::start(
        state.store(),
        &org.namespace,
        Purpose::TotpEnrolment,
        &session_binding(&session.id),
        Some(&user.id),
        pending,
        state.now(),
        state.login().form_lifetime,
    )
    .await?;
    let uri = totp::provisioning_uri(&org.display_name, &user.user_name, &secret);
    let key_text = uri.split("secret=").nth(1).and_then(|rest| rest.split('&').next()).unwrap_or_default();
    let action = format!("{}/account/totp/finish", issuer_path(state, &org.name));
    let form =
        PlainForm { action: &action, hidden: vec![csrf_field(state, account), ("ceremony", ceremony)] };
    Ok(pages::respond(status, pages::totp_enrolment(&uri, key_text, &form, message), &[]))
}

pub(super) async fn totp_finish(
    State(state): State<TokenServiceState>,
    Path(organization): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, params) = match accept_post(&state, &organization, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(page) => return page,
    };
    totp_finish_inner(&state, &account, &params).await.unwrap_or_else(server_error)
}

async fn totp_finish_inner(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
) -> Result<Response, OAuthError> {
    let SignedIn { org, user, session, .. } = account;
    let now = state.now();
    let ceremony: Option<ceremonies::Taken<TotpEnrolment>> = ceremonies::take(
        state.store(),
        &org.namespace,
        Purpose::TotpEnrolment,
        &session_binding(&session.id),
        params.get("ceremony").unwrap_or_default(),
        now,
    )
    .await?;
    let Some(pending) = ceremony.filter(|c| c.user_id.as_deref() == Some(user.id.as_str())) else {
        let message = "Adding the authenticator app took too long or was already done. Please start again.";
        return account_page(state, account, StatusCode::FORBIDDEN, Some(message)).await;
    };
    let pending = pending.state;
    let secret = zeroize::Zeroizing::new(
        state
            .login()
            .totp_sealer()
            .open(&org.namespace, &user.id, &pending.sealed_secret)
            .map_err(OAuthError::server)?,
    );
    let Some(step) = totp::verify(&secret, params.get("code").unwrap_or_default(), now, None) else {
        let message = "That code is not right. Enter the code your app shows now.";
        return show_totp_code_form(state, account, &pending, StatusCode::UNAUTHORIZED, Some(message)).await;
    };
    let factor = MfaFactor::Totp { sealed_secret: SecretString::new(pending.sealed_secret.clone()) };
    let enrolment = state
        .store()
        .add_mfa_enrolment(&org.namespace, &user.id, Some(&pending.name), &factor, now.as_millisecond())
        .await?;
    // The code just shown is spent: it does not also pass a sign-in.
    state.store().take_totp_step(&enrolment.id, step).await?;
    let message = format!("Added “{}”.", pending.name);
    account_page(state, account, StatusCode::OK, Some(&message)).await
}
