//! Browser sessions: the session cookie and the store's session rows
//! ([`crate::store::sessions`]).
//!
//! ```text
//!  cookie portcullis_session = secret (256 bits)      row: id (public, uuid: the `sid` codes carry),
//!        │                                                 secret_hash = hex(SHA-256(secret)),
//!        └── SHA-256 ──► sessions.secret_hash ─────────►   organization, user, auth_time, amr, expiry
//! ```
//!
//! A new session is made at every sign-in (no fixation); ending one stamps
//! it ended and it never matches again.

use jiff::{SignedDuration, Timestamp};

use crate::secret::{SecretHash, SecretString};
use crate::store::SessionStore as _;
use crate::store::Store;
use crate::store::sessions::{NewSession, StoredSession};
use crate::token::service::error::OAuthError;

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Session {
    pub id: String,
    /// The organization's namespace (the store's key for its users).
    pub organization: String,
    pub user_id: String,
    pub auth_time: Timestamp,
    /// RFC 8176 authentication method references.
    pub amr: Vec<String>,
}

/// A session about to start: the row to store, the session, and the
/// secret for the cookie. The caller stores the row with the sign-in's
/// other writes ([`crate::store::SessionStore::write_sign_in`]).
pub(super) struct NewSignIn {
    pub row: NewSession,
    pub session: Session,
    pub secret: SecretString,
}

/// A new session of `user_id` signed in at `auth_time` by `amr`.
pub(super) fn new(
    organization: &str,
    user_id: &str,
    auth_time: Timestamp,
    amr: Vec<String>,
    lifetime: SignedDuration,
    now: Timestamp,
) -> Result<NewSignIn, OAuthError> {
    let secret = SecretString::generate();
    let id = uuid::Uuid::new_v4().to_string();
    let expires = now.checked_add(lifetime).map_err(OAuthError::server)?;
    let row = NewSession {
        id: id.clone(),
        secret_hash: secret.hash(),
        organization: organization.to_owned(),
        user_id: user_id.to_owned(),
        auth_time_ms: auth_time.as_millisecond(),
        amr: amr.clone(),
        created_ms: now.as_millisecond(),
        expires_ms: expires.as_millisecond(),
    };
    let session =
        Session { id, organization: organization.to_owned(), user_id: user_id.to_owned(), auth_time, amr };
    Ok(NewSignIn { row, session, secret })
}

/// The live session of this organization whose cookie secret is `secret`.
pub(super) async fn find(
    store: &Store,
    organization: &str,
    secret: &str,
    now: Timestamp,
) -> Result<Option<Session>, OAuthError> {
    let Some(stored) =
        store.find_session(organization, &SecretHash::of(secret), now.as_millisecond()).await?
    else {
        return Ok(None);
    };
    let StoredSession { id, organization, user_id, auth_time_ms, amr } = stored;
    let auth_time = Timestamp::from_millisecond(auth_time_ms).map_err(OAuthError::server)?;
    Ok(Some(Session { id, organization, user_id, auth_time, amr }))
}

/// Ends the session; returns whether it was live.
pub(super) async fn end(store: &Store, session: &Session, now: Timestamp) -> Result<bool, OAuthError> {
    Ok(store.end_session(&session.id, now.as_millisecond()).await?)
}
