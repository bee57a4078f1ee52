//! The second factor at sign-in: whether one is asked for (the organization's
//! MFA policy and the user's enrolments), and checking a TOTP code once.
//!
//! ```text
//!  a factor the policy's methods allow is enrolled ─► ask for it (even when not required: the user opted in)
//!        WebAuthn credentials (methods ∋ WebAuthn)  ─► WebAuthn step, TOTP offered beside it if enrolled
//!        TOTP only (methods ∋ TOTP)                 ─► TOTP step
//!  none, MFA required (Always / PrivilegedRoles and the user holds a privileged permission)
//!                                                   ─► "enrolment required" page
//!  none, not required                               ─► signed in with the password alone
//! ```
//!
//! TOTP secrets are sealed with the login key, the organization's namespace
//! and the user id as associated data ([`crate::token::totp::TotpSealer`]).
//! The last accepted step of each enrolment is in `totp_last_steps`; a step
//! is taken by one conditional upsert, so two racing posts of one code cannot
//! both succeed.

use jiff::Timestamp;

use crate::api::MfaMethod;
use crate::store::{MfaEnrolment, MfaFactor, User, UserStore as _};
use crate::token::service::error::OAuthError;
use crate::token::service::mfa_policy;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::totp;

use super::credentials::{self, StoredCredential};
use super::webauthn::relying_party;

/// What the user must do after the password.
#[derive(Debug)]
pub(super) enum SecondFactor {
    /// Nothing: signed in.
    NotNeeded,
    /// One of these: an assertion of a WebAuthn credential, or a TOTP code
    /// (at least one of the two lists is not empty).
    Ask { webauthn: Vec<StoredCredential>, totp: Vec<MfaEnrolment> },
    /// Required, and the user has no factor the policy accepts.
    EnrolmentRequired,
}

pub(super) async fn second_factor(
    state: &TokenServiceState,
    org: &OrganizationView,
    user: &User,
) -> Result<SecondFactor, OAuthError> {
    let policy = &org.spec.authentication.mfa;
    let enrolments = state.store().list_mfa_enrolments(&org.namespace, &user.id).await?;
    let totp: Vec<MfaEnrolment> = enrolments
        .into_iter()
        .filter(|e| matches!(e.factor, MfaFactor::Totp { .. }) && policy.methods.contains(&MfaMethod::Totp))
        .collect();
    // Without a relying party (a base URL on an IP address) no assertion can be checked.
    let webauthn = if policy.methods.contains(&MfaMethod::WebAuthn) && relying_party(state, org).is_some() {
        credentials::for_user(state.store(), &org.namespace, &user.id).await?
    } else {
        Vec::new()
    };
    if !totp.is_empty() || !webauthn.is_empty() {
        return Ok(SecondFactor::Ask { webauthn, totp });
    }
    let required = mfa_policy::second_factor_required(state, org, &user.user_name).await?;
    Ok(if required { SecondFactor::EnrolmentRequired } else { SecondFactor::NotNeeded })
}

/// The enrolment whose code `code` is, now, for the first time; `None` for a
/// wrong, stale or replayed code.
pub(super) async fn check_totp(
    state: &TokenServiceState,
    org: &OrganizationView,
    user: &User,
    enrolments: &[MfaEnrolment],
    code: &str,
    now: Timestamp,
) -> Result<Option<String>, OAuthError> {
    for enrolment in enrolments {
        let MfaFactor::Totp { sealed_secret } = &enrolment.factor else { continue };
        let secret = match state.login().totp_sealer().open(&org.namespace, &user.id, sealed_secret.expose())
        {
            Ok(secret) => zeroize::Zeroizing::new(secret),
            Err(error) => {
                tracing::warn!(enrolment = %enrolment.id, %error, "a TOTP enrolment cannot be opened");
                continue;
            }
        };
        let last = state.store().last_totp_step(&enrolment.id).await?;
        let Some(step) = totp::verify(&secret, code, now, last) else { continue };
        if state.store().take_totp_step(&enrolment.id, step).await? {
            state.store().record_mfa_use(&org.namespace, &enrolment.id, None, now.as_millisecond()).await?;
            return Ok(Some(enrolment.id.clone()));
        }
    }
    Ok(None)
}
