//! The account page of a signed-in user: the second factors enrolled, and
//! enrolling a WebAuthn credential (security key or passkey) or a TOTP app.
//! Every enrolment asks for the password again (a stolen session alone
//! cannot add a factor) and carries a CSRF token bound to the session.
//!
//! ```text
//!  GET  {issuer}/account                  SignedIn ─► factors + forms
//!  POST {issuer}/account/webauthn         AccountPost ─ policy ─ name ─ password ─► start_passkey_registration
//!                                          ─► ceremony (session) ─► page: navigator.credentials.create
//!  POST {issuer}/account/webauthn/finish  AccountPost ─ ceremony taken ─ attestation ─► credential stored
//!  POST {issuer}/account/totp             AccountPost ─ policy ─ name ─ password ─► new secret, sealed, in a
//!                                          ceremony ─► page: key + otpauth URI + first code
//!  POST {issuer}/account/totp/finish      AccountPost ─ ceremony taken ─ first code right ─► enrolment stored
//! ```

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential, Uuid, WebauthnError};

use super::attempt::Attempt;
use super::ceremonies::{self, Purpose, session_binding};
use super::credentials::{self, CredentialKind};
use super::csrf;
use super::error::LoginError;
use super::extract::AccountPost;
use super::pages::{
    AccountPage, CeremonyMode, CeremonyPage, FactorRow, Page, PlainForm, TotpEnrolmentPage, WebAuthnKinds,
};
use super::request::Params;
use super::session::Session;
use super::step::Step;
use super::webauthn::{relying_party, required_relying_party};
use super::{SourceAddress, issuer_path};
use crate::api::MfaMethod;
use crate::secret::SecretString;
use crate::store::{MfaFactor, User, UserStore as _};
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::totp;

/// A signed-in browser at the account page (extracted in [`super::extract`]).
pub(super) struct SignedIn {
    pub org: Arc<OrganizationView>,
    pub session: Session,
    /// The session cookie: the account forms' CSRF tokens are bound to it.
    pub session_secret: String,
    pub user: User,
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

pub(super) async fn account_page(
    state: &TokenServiceState,
    account: &SignedIn,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
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
    let page = AccountPage {
        organization_display_name: &org.display_name,
        user_name: &user.user_name,
        factors,
        message,
        add_webauthn: Some(webauthn_kinds(state, org))
            .filter(|kinds| kinds.passkey || kinds.security_key)
            .map(|kinds| (PlainForm { action: &webauthn_action, hidden: hidden.clone() }, kinds)),
        add_totp: totp_enrolment(org).then(|| PlainForm { action: &totp_action, hidden }),
    };
    Ok(Page::new(status, &page))
}

/// The account page again, saying why the post was refused.
pub(super) async fn refused(
    state: &TokenServiceState,
    account: &SignedIn,
    status: StatusCode,
    message: &str,
) -> LoginError {
    Step::Account { account }.refused(state, status, message).await
}

pub(super) async fn show(
    State(state): State<TokenServiceState>,
    account: SignedIn,
) -> Result<Page, LoginError> {
    account_page(&state, &account, StatusCode::OK, None).await
}

/// Before a factor is added: the organization allows it, it has a name,
/// and the password is given again (throttled like a sign-in).
async fn may_add_factor(
    state: &TokenServiceState,
    account: &SignedIn,
    params: &Params,
    source: SourceAddress,
    allowed: bool,
    not_allowed: &str,
    no_name: &str,
) -> Result<String, LoginError> {
    if !allowed {
        return Err(refused(state, account, StatusCode::FORBIDDEN, not_allowed).await);
    }
    let name = params.get("name").unwrap_or_default().trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(refused(state, account, StatusCode::BAD_REQUEST, no_name).await);
    }
    let step = Step::Account { account };
    let now = state.now();
    let key = Attempt::key(&account.org, account.user.id.clone());
    let attempt = Attempt::begin(state, key, source, now, &step).await?;
    let password = params.get("password").unwrap_or_default();
    let verified = match account.user.password_hash.as_ref().filter(|_| !password.is_empty()) {
        Some(hash) => attempt.password_matches(state, password, Some(hash.expose()), &step).await?,
        None => false,
    };
    if !verified {
        attempt.failed().await?;
        let message = "That password is not right. Enter your password to add a sign-in method.";
        return Err(refused(state, account, StatusCode::UNAUTHORIZED, message).await);
    }
    attempt.succeeded().await?;
    Ok(name.to_owned())
}

/// The enrolment ceremony this session started for `purpose`, taken once;
/// the account page again (`expired`) when it is gone or not this user's.
async fn take_enrolment<T: DeserializeOwned>(
    state: &TokenServiceState,
    account: &SignedIn,
    purpose: Purpose,
    params: &Params,
    expired: &str,
) -> Result<T, LoginError> {
    let SignedIn { org, user, session, .. } = account;
    let ceremony: Option<ceremonies::Taken<T>> = ceremonies::take(
        state.store(),
        &org.namespace,
        purpose,
        &session_binding(&session.id),
        params.get("ceremony").unwrap_or_default(),
        state.now(),
    )
    .await?;
    match ceremony {
        Some(taken) if taken.user_id.as_deref() == Some(user.id.as_str()) => Ok(taken.state),
        _ => Err(refused(state, account, StatusCode::FORBIDDEN, expired).await),
    }
}

/// Remembers `pending` for this session's enrolment ceremony; returns its id.
async fn start_enrolment(
    state: &TokenServiceState,
    account: &SignedIn,
    purpose: Purpose,
    pending: &impl Serialize,
) -> Result<String, LoginError> {
    let SignedIn { org, user, session, .. } = account;
    Ok(ceremonies::start(
        state.store(),
        &org.namespace,
        purpose,
        &session_binding(&session.id),
        Some(&user.id),
        pending,
        state.now(),
        state.login().form_lifetime,
    )
    .await?)
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
    source: SourceAddress,
    AccountPost { account, params }: AccountPost,
) -> Result<Page, LoginError> {
    let state = &state;
    let SignedIn { org, user, .. } = &account;
    let passkey = params.get("kind") == Some("passkey");
    let kinds = webauthn_kinds(state, org);
    let allowed = if passkey { kinds.passkey } else { kinds.security_key };
    let not_allowed = "Your organization does not allow adding this kind of sign-in method.";
    let no_name = "Give the security key a name (up to 64 characters).";
    let name = may_add_factor(state, &account, &params, source, allowed, not_allowed, no_name).await?;
    let rp = required_relying_party(state, org)?;
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
    let pending = Registration { state: registration, name, passkey };
    let ceremony = start_enrolment(state, &account, Purpose::Register, &pending).await?;
    let action = format!("{}/account/webauthn/finish", issuer_path(state, &org.name));
    let page = CeremonyPage {
        title: if passkey { "Add a passkey" } else { "Add a security key" },
        text: "Press the button, then follow your browser: touch your security key or unlock your device.",
        button: "Create",
        mode: CeremonyMode::Create,
        options: &options,
        form: PlainForm {
            action: &action,
            hidden: vec![csrf_field(state, &account), ("ceremony", ceremony)],
        },
        message: None,
        totp_alternative: None,
    };
    Ok(Page::ceremony(StatusCode::OK, &page))
}

pub(super) async fn webauthn_finish(
    State(state): State<TokenServiceState>,
    AccountPost { account, params }: AccountPost,
) -> Result<Page, LoginError> {
    let state = &state;
    let SignedIn { org, user, .. } = &account;
    let expired = "Adding the security key took too long or was already done. Please start again.";
    let registration: Registration =
        take_enrolment(state, &account, Purpose::Register, &params, expired).await?;
    let credential: Option<RegisterPublicKeyCredential> =
        params.get("credential").and_then(|json| serde_json::from_str(json).ok());
    let rp = required_relying_party(state, org)?;
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
            return Err(refused(state, &account, StatusCode::BAD_REQUEST, message).await);
        }
        None => {
            let message = "No answer from a security key arrived. It was not added.";
            return Err(refused(state, &account, StatusCode::BAD_REQUEST, message).await);
        }
    };
    let kind = if registration.passkey { CredentialKind::Passkey } else { CredentialKind::SecurityKey };
    let now = state.now();
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
        return Err(
            refused(state, &account, StatusCode::CONFLICT, "That security key is enrolled already.").await
        );
    }
    let message = format!("Added “{}”.", registration.name);
    account_page(state, &account, StatusCode::OK, Some(&message)).await
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
    source: SourceAddress,
    AccountPost { account, params }: AccountPost,
) -> Result<Page, LoginError> {
    let state = &state;
    let SignedIn { org, user, .. } = &account;
    let not_allowed = "Your organization does not allow authenticator apps.";
    let no_name = "Give the authenticator app a name (up to 64 characters).";
    let allowed = totp_enrolment(org);
    let name = may_add_factor(state, &account, &params, source, allowed, not_allowed, no_name).await?;
    let secret = zeroize::Zeroizing::new(totp::generate_secret().map_err(OAuthError::server)?);
    let sealed_secret = state
        .login()
        .totp_sealer()
        .seal(&org.namespace, &user.id, secret.as_ref())
        .map_err(OAuthError::server)?;
    show_totp_code_form(state, &account, &TotpEnrolment { sealed_secret, name }, StatusCode::OK, None).await
}

/// The pending secret, opened.
fn open_pending_secret(
    state: &TokenServiceState,
    account: &SignedIn,
    pending: &TotpEnrolment,
) -> Result<zeroize::Zeroizing<Vec<u8>>, OAuthError> {
    let opened =
        state.login().totp_sealer().open(&account.org.namespace, &account.user.id, &pending.sealed_secret);
    Ok(zeroize::Zeroizing::new(opened.map_err(OAuthError::server)?))
}

/// Remembers the pending secret in a new ceremony and asks for its first code.
async fn show_totp_code_form(
    state: &TokenServiceState,
    account: &SignedIn,
    pending: &TotpEnrolment,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Page, LoginError> {
    let SignedIn { org, user, .. } = account;
    let secret = open_pending_secret(state, account, pending)?;
    let ceremony = start_enrolment(state, account, Purpose::TotpEnrolment, pending).await?;
    let uri = totp::provisioning_uri(&org.display_name, &user.user_name, &secret);
    let key_text = uri.split("secret=").nth(1).and_then(|rest| rest.split('&').next()).unwrap_or_default();
    let action = format!("{}/account/totp/finish", issuer_path(state, &org.name));
    let page = TotpEnrolmentPage {
        provisioning_uri: &uri,
        secret_text: key_text,
        form: PlainForm { action: &action, hidden: vec![csrf_field(state, account), ("ceremony", ceremony)] },
        message,
    };
    Ok(Page::new(status, &page))
}

pub(super) async fn totp_finish(
    State(state): State<TokenServiceState>,
    AccountPost { account, params }: AccountPost,
) -> Result<Page, LoginError> {
    let state = &state;
    let SignedIn { org, user, .. } = &account;
    let expired = "Adding the authenticator app took too long or was already done. Please start again.";
    let pending: TotpEnrolment =
        take_enrolment(state, &account, Purpose::TotpEnrolment, &params, expired).await?;
    let secret = open_pending_secret(state, &account, &pending)?;
    let now = state.now();
    let Some(step) = totp::verify(&secret, params.get("code").unwrap_or_default(), now, None) else {
        let message = "That code is not right. Enter the code your app shows now.";
        let page =
            show_totp_code_form(state, &account, &pending, StatusCode::UNAUTHORIZED, Some(message)).await?;
        return Err(page.into());
    };
    let factor = MfaFactor::Totp { sealed_secret: SecretString::new(pending.sealed_secret.clone()) };
    let enrolment = state
        .store()
        .add_mfa_enrolment(&org.namespace, &user.id, Some(&pending.name), &factor, now.as_millisecond())
        .await?;
    // The code just shown is spent: it does not also pass a sign-in.
    state.store().take_totp_step(&enrolment.id, step).await?;
    let message = format!("Added “{}”.", pending.name);
    account_page(state, &account, StatusCode::OK, Some(&message)).await
}
