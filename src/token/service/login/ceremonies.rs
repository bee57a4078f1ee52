//! The `webauthn_ceremonies` table (migration 0006): what the server must
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
use ring::digest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row as _;

use super::csrf::random_token;
use crate::store::Store;
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
    let digest = digest::digest(&digest::SHA256, pre_login_id.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn session_binding(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// A ceremony taken back: whose it was and its state.
pub(super) struct Taken<T> {
    pub user_id: Option<String>,
    pub state: T,
}

fn store_error(what: &'static str) -> impl Fn(sqlx::Error) -> OAuthError {
    move |e| OAuthError::server(format!("{what}: {e}"))
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
    let id = random_token();
    let json = serde_json::to_string(state).map_err(OAuthError::server)?;
    let expires = now.checked_add(lifetime).map_err(OAuthError::server)?;
    let mut tx = store.begin_write(organization).await?;
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, organization, purpose, binding, user_id, state, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.clone())
    .bind(organization.to_owned())
    .bind(purpose.as_str())
    .bind(binding.to_owned())
    .bind(user_id.map(str::to_owned))
    .bind(json)
    .bind(expires.as_millisecond())
    .execute(tx.conn())
    .await
    .map_err(store_error("start a WebAuthn ceremony"))?;
    // Ceremonies nobody finished are of no use: keep the table small.
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_ms < $1")
        .bind(now.as_millisecond())
        .execute(tx.conn())
        .await
        .map_err(store_error("forget expired WebAuthn ceremonies"))?;
    tx.commit().await?;
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
    let mut tx = store.begin_write(organization).await?;
    let row = sqlx::query(
        "DELETE FROM webauthn_ceremonies \
         WHERE id = $1 AND organization = $2 AND purpose = $3 AND binding = $4 AND expires_ms > $5 \
         RETURNING user_id, state",
    )
    .bind(id.to_owned())
    .bind(organization.to_owned())
    .bind(purpose.as_str())
    .bind(binding.to_owned())
    .bind(now.as_millisecond())
    .fetch_optional(tx.conn())
    .await
    .map_err(store_error("take a WebAuthn ceremony"))?;
    tx.commit().await?;
    let Some(row) = row else { return Ok(None) };
    let read = |e: sqlx::Error| OAuthError::server(format!("read a WebAuthn ceremony: {e}"));
    let user_id: Option<String> = row.try_get("user_id").map_err(read)?;
    let state: String = row.try_get("state").map_err(read)?;
    Ok(Some(Taken { user_id, state: serde_json::from_str(&state).map_err(OAuthError::server)? }))
}
