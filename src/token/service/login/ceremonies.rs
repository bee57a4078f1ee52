//! Sign-in ceremonies ([`crate::store::ceremonies`]): what the server must
//! remember between the two requests of a ceremony — webauthn-rs' state
//! (its challenge), or a TOTP secret being enrolled — kept server-side, tied
//! to the browser that started it, short-lived, and taken once.
//!
//! ```text
//!  start:  random id ─► row (purpose, binding, user, state, expiry) ─► id in the page
//!  finish: DELETE … WHERE id AND purpose AND binding AND not expired RETURNING state
//! ```
//!
//! Taking is one `DELETE … RETURNING`: a ceremony answered twice (a replayed
//! assertion) finds nothing the second time.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::secret::{SecretHash, SecretString};
use crate::store::CeremonyStore as _;
use crate::store::Store;
use crate::store::ceremonies::NewCeremony;
use crate::token::service::error::OAuthError;

/// What a ceremony is for; a ceremony only finishes the step it was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// WebAuthn after the password.
    SecondFactor,
    /// WebAuthn without a password (discoverable credential).
    PasskeySignIn,
    /// Enrolling a WebAuthn credential at the account page.
    Register,
    /// Enrolling a TOTP secret at the account page.
    TotpEnrolment,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SecondFactor => "second-factor",
            Purpose::PasskeySignIn => "passkey-sign-in",
            Purpose::Register => "register",
            Purpose::TotpEnrolment => "totp-enrolment",
        }
    }
}

/// The browser a ceremony belongs to: SHA-256 of its pre-login cookie (so a
/// copy of the table does not give the cookie away), or its session id.
pub(super) fn browser_binding(pre_login_id: &str) -> String {
    SecretHash::of(pre_login_id).hex()
}

pub(super) fn session_binding(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// A ceremony taken back: whose it was and its state.
pub(super) struct Taken<T> {
    pub user_id: Option<String>,
    pub state: T,
}

/// Remembers `state` for `lifetime`; returns the ceremony id for the page.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start<T: Serialize>(
    store: &Store,
    organization: &str,
    purpose: Purpose,
    binding: &str,
    user_id: Option<&str>,
    state: &T,
    now: Timestamp,
    lifetime: SignedDuration,
) -> Result<String, OAuthError> {
    let id = SecretString::generate().expose().to_owned();
    let json = serde_json::to_string(state).map_err(OAuthError::server)?;
    let expires = now.checked_add(lifetime).map_err(OAuthError::server)?;
    let ceremony = NewCeremony {
        id: &id,
        organization,
        purpose: purpose.as_str(),
        binding,
        user_id,
        state: &json,
        expires_ms: expires.as_millisecond(),
    };
    store.start_ceremony(&ceremony, now.as_millisecond()).await?;
    Ok(id)
}

/// The ceremony `id`, if it is this browser's, for `purpose`, and live;
/// removed, so it cannot be finished twice.
pub(super) async fn take<T: DeserializeOwned>(
    store: &Store,
    organization: &str,
    purpose: Purpose,
    binding: &str,
    id: &str,
    now: Timestamp,
) -> Result<Option<Taken<T>>, OAuthError> {
    if id.is_empty() {
        return Ok(None);
    }
    let taken =
        store.take_ceremony(organization, purpose.as_str(), binding, id, now.as_millisecond()).await?;
    let Some(taken) = taken else { return Ok(None) };
    Ok(Some(Taken {
        user_id: taken.user_id,
        state: serde_json::from_str(&taken.state).map_err(OAuthError::server)?,
    }))
}
