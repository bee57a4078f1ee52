//! Browser sessions (migration 0004): one row per sign-in, found by the hash
//! of its cookie, ended once.
//!
//! ```text
//!  cookie secret ── SHA-256 (hex) ──► sessions.secret_hash ──► id (public: the `sid`),
//!                                                              organization, user, auth_time, amr, expiry
//! ```
//!
//! Only the hash of the cookie is stored: a copy of the database does not let
//! anyone into a session. Nobody follows these rows: no change is logged.

use std::future::Future;

use sqlx::any::AnyRow;

use super::error::query_error;
use super::grants::{NewCode, insert_code};
use super::identity::set_last_login;
use super::{Result, Store, column, json_list, json_list_column};
use crate::secret::SecretHash;

/// A session as a sign-in starts it.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub secret_hash: SecretHash,
    /// The organization's namespace.
    pub organization: String,
    pub user_id: String,
    pub auth_time_ms: i64,
    /// RFC 8176 authentication method references.
    pub amr: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub id: String,
    pub organization: String,
    pub user_id: String,
    pub auth_time_ms: i64,
    pub amr: Vec<String>,
}

/// What a sign-in writes: the new session and the user's last login (none
/// when the browser's session goes on), and the authorization code it
/// answers its client with.
pub struct SignInWrites<'a> {
    pub session: Option<&'a NewSession>,
    pub code: NewCode<'a>,
}

pub trait SessionStore {
    /// Stores a new session. Expired ones are the purge's
    /// ([`crate::store::purge`]).
    fn create_session(&self, session: &NewSession) -> impl Future<Output = Result<()>> + Send;

    /// A sign-in's writes, in one transaction ([`SignInWrites`]).
    fn write_sign_in(&self, writes: &SignInWrites<'_>) -> impl Future<Output = Result<()>> + Send;

    /// The live session of this organization whose cookie hashes to `secret_hash`.
    fn find_session(
        &self,
        organization: &str,
        secret_hash: &SecretHash,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<StoredSession>>> + Send;

    /// Ends the session; returns whether it was live.
    fn end_session(&self, id: &str, now_ms: i64) -> impl Future<Output = Result<bool>> + Send;
}

impl SessionStore for Store {
    async fn create_session(&self, session: &NewSession) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        insert_session(tx.conn(), session).await?;
        tx.commit().await
    }

    async fn write_sign_in(&self, writes: &SignInWrites<'_>) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        write_sign_in(tx.conn(), writes).await?;
        tx.commit().await
    }

    async fn find_session(
        &self,
        organization: &str,
        secret_hash: &SecretHash,
        now_ms: i64,
    ) -> Result<Option<StoredSession>> {
        let row = sqlx::query(
            "SELECT id, organization, user_id, auth_time_ms, amr FROM sessions \
             WHERE secret_hash = $1 AND organization = $2 AND ended_ms IS NULL AND expires_ms > $3",
        )
        .bind(secret_hash.hex())
        .bind(organization)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("look up a session"))?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn end_session(&self, id: &str, now_ms: i64) -> Result<bool> {
        let mut tx = self.begin_unlogged_write().await?;
        let done = sqlx::query("UPDATE sessions SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(query_error("end a session"))?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

fn session_from_row(row: &AnyRow) -> Result<StoredSession> {
    const T: &str = "sessions";
    Ok(StoredSession {
        id: column(row, T, "id")?,
        organization: column(row, T, "organization")?,
        user_id: column(row, T, "user_id")?,
        auth_time_ms: column(row, T, "auth_time_ms")?,
        amr: json_list_column(row, T, "amr")?,
    })
}

/// Writes a sign-in within `conn`'s transaction (single sign-on writes it
/// with its record, [`crate::store::FederationStore::record_sso_sign_in`]).
pub(super) async fn write_sign_in(conn: &mut sqlx::AnyConnection, writes: &SignInWrites<'_>) -> Result<()> {
    if let Some(session) = writes.session {
        insert_session(&mut *conn, session).await?;
        set_last_login(&mut *conn, &session.organization, &session.user_id, session.created_ms).await?;
    }
    insert_code(conn, &writes.code).await
}

/// Stores a session within `conn`'s transaction.
async fn insert_session(conn: &mut sqlx::AnyConnection, session: &NewSession) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, secret_hash, organization, user_id, auth_time_ms, amr, created_ms, \
         expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(session.id.as_str())
    .bind(session.secret_hash.hex())
    .bind(session.organization.as_str())
    .bind(session.user_id.as_str())
    .bind(session.auth_time_ms)
    .bind(json_list(&session.amr))
    .bind(session.created_ms)
    .bind(session.expires_ms)
    .execute(conn)
    .await
    .map_err(query_error("create a session"))?;
    Ok(())
}
