//! Browser sessions: the `sessions` table (migration 0004) and the session cookie.
//!
//! ```text
//!  cookie portcullis_session = secret (256 bits)      row: id (public, uuid: the `sid` codes carry),
//!        │                                                 secret_hash = hex(SHA-256(secret)),
//!        └── SHA-256 ──► sessions.secret_hash ─────────►   organization, user, auth_time, amr, expiry
//! ```
//!
//! Only the hash of the cookie is stored: a copy of the database does not
//! let anyone into a session. A new session is made at every sign-in (no
//! fixation); ending one stamps `ended_ms` and it never matches again.

use jiff::{SignedDuration, Timestamp};
use ring::digest;
use sqlx::Row as _;

use super::csrf::random_token;
use crate::store::Store;
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

fn secret_hash(secret: &str) -> String {
    let digest = digest::digest(&digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

fn store_error(what: &'static str) -> impl Fn(sqlx::Error) -> OAuthError {
    move |e| OAuthError::server(format!("{what}: {e}"))
}

/// Starts a session; returns it and the secret for the cookie.
pub(super) async fn create(
    store: &Store,
    organization: &str,
    user_id: &str,
    auth_time: Timestamp,
    amr: Vec<String>,
    lifetime: SignedDuration,
    now: Timestamp,
) -> Result<(Session, String), OAuthError> {
    let secret = random_token();
    let id = uuid::Uuid::new_v4().to_string();
    let expires = now.checked_add(lifetime).map_err(OAuthError::server)?;
    let amr_json = serde_json::to_string(&amr).map_err(OAuthError::server)?;
    let mut tx = store.begin_write(organization).await?;
    sqlx::query(
        "INSERT INTO sessions (id, secret_hash, organization, user_id, auth_time_ms, amr, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.clone())
    .bind(secret_hash(&secret))
    .bind(organization.to_owned())
    .bind(user_id.to_owned())
    .bind(ms(auth_time))
    .bind(amr_json)
    .bind(ms(now))
    .bind(ms(expires))
    .execute(tx.conn())
    .await
    .map_err(store_error("create a session"))?;
    // Sessions long expired are of no use to anyone: keep the table small.
    let stale = ms(now) - SignedDuration::from_hours(24).as_millis() as i64;
    sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
        .bind(stale)
        .execute(tx.conn())
        .await
        .map_err(store_error("forget expired sessions"))?;
    tx.commit().await?;
    let session =
        Session { id, organization: organization.to_owned(), user_id: user_id.to_owned(), auth_time, amr };
    Ok((session, secret))
}

/// The live session of this organization whose cookie secret is `secret`.
pub(super) async fn find(
    store: &Store,
    organization: &str,
    secret: &str,
    now: Timestamp,
) -> Result<Option<Session>, OAuthError> {
    let row = sqlx::query(
        "SELECT id, organization, user_id, auth_time_ms, amr FROM sessions \
         WHERE secret_hash = $1 AND organization = $2 AND ended_ms IS NULL AND expires_ms > $3",
    )
    .bind(secret_hash(secret))
    .bind(organization.to_owned())
    .bind(ms(now))
    .fetch_optional(store.pool())
    .await
    .map_err(store_error("look up a session"))?;
    let Some(row) = row else { return Ok(None) };
    let read = |e: sqlx::Error| OAuthError::server(format!("read a session: {e}"));
    let auth_time_ms: i64 = row.try_get("auth_time_ms").map_err(read)?;
    let amr: String = row.try_get("amr").map_err(read)?;
    Ok(Some(Session {
        id: row.try_get("id").map_err(read)?,
        organization: row.try_get("organization").map_err(read)?,
        user_id: row.try_get("user_id").map_err(read)?,
        auth_time: Timestamp::from_millisecond(auth_time_ms).map_err(OAuthError::server)?,
        amr: serde_json::from_str(&amr).map_err(OAuthError::server)?,
    }))
}

/// Ends the session; returns whether it was live.
pub(super) async fn end(store: &Store, session: &Session, now: Timestamp) -> Result<bool, OAuthError> {
    let mut tx = store.begin_write(&session.organization).await?;
    let done = sqlx::query("UPDATE sessions SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL")
        .bind(ms(now))
        .bind(session.id.clone())
        .execute(tx.conn())
        .await
        .map_err(store_error("end a session"))?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_hash_is_sha256_hex_of_the_cookie() {
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
