//! What the token endpoint hands out and takes back: authorization codes
//! (single use), refresh-token families with their tokens, and access tokens
//! revoked before they expire. Codes and refresh tokens are stored only as
//! their [`SecretHash`]. Nobody follows these rows: writes take the writers'
//! turn but log no change.
//!
//! ```text
//!  authorize ──insert_authorization_code──► authorization_codes (hash, expiry)
//!  token     ──find_authorization_code; redeem_authorization_code: used_ms set once
//!              (compare-and-set) + refresh_token_families + refresh_tokens, one transaction
//!              (a code found used: revoke_code_issuance — its family and access token)
//!            ──find_refresh_grant──► token + family + user (active?) in one SELECT
//!            ──rotate_refresh_token──► rotation::RotationWriter (groups on SQLite)
//! ```
//!
//! The decisions (is this code still good, is this token reused) are the
//! token service's; the store answers questions and makes the writes atomic.

mod rotation;

use std::future::Future;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

pub use rotation::{Rotation, RotationOutcome, RotationWriter};

use super::error::query_error;
use super::{Result, Store, bool_column_opt, column, json_list, json_list_column};
use crate::audit::{AuditEntry, Target};
use crate::secret::SecretHash;

/// What an authorization code carries from the sign-in to the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrant {
    /// The organization's name (the issuer path).
    pub organization: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// S256 challenge; `None` only for confidential clients without require_pkce.
    pub code_challenge: Option<String>,
    pub auth_time_ms: i64,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
}

/// A code to store: only its hash is kept.
#[derive(Clone, Copy, Debug)]
pub struct NewCode<'a> {
    pub hash: &'a SecretHash,
    pub grant: &'a CodeGrant,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// A code as stored, with what its redemption issued (if it was redeemed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuthorizationCode {
    pub grant: CodeGrant,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    /// The refresh-token family its redemption started.
    pub family_id: Option<String>,
    /// The access token its redemption issued, and when that expires.
    pub access_jti: Option<String>,
    pub access_exp_ms: Option<i64>,
}

/// What a redemption marks on the code.
#[derive(Clone, Debug)]
pub struct CodeUse<'a> {
    pub used_ms: i64,
    pub access_jti: &'a str,
    pub access_exp_ms: i64,
}

/// A refresh-token family at its start, with its first token.
#[derive(Clone, Debug)]
pub struct NewRefreshFamily {
    pub family_id: String,
    pub organization: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time_ms: i64,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
    pub counter: i64,
    pub expires_ms: i64,
    pub first_token_hash: SecretHash,
    pub created_ms: i64,
}

/// A presented refresh token's family as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRefreshToken {
    /// The presented token's own counter.
    pub presented_counter: i64,
    pub family_id: String,
    pub organization: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time_ms: i64,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
    /// The family's current counter: the only token that may still be used.
    pub counter: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// The family's user as a refresh needs it, read with the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantUser {
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The primary address, else the first.
    pub email: Option<String>,
}

/// Codes, refresh-token families and revoked access tokens.
pub trait GrantStore {
    fn insert_authorization_code(&self, code: &NewCode<'_>) -> impl Future<Output = Result<()>> + Send;

    fn find_authorization_code(
        &self,
        code_hash: &SecretHash,
    ) -> impl Future<Output = Result<Option<StoredAuthorizationCode>>> + Send;

    /// Marks the code used, if nobody has yet (compare-and-set), and starts
    /// the refresh-token family, in one transaction. `false`: a concurrent
    /// redemption came first and nothing was written.
    fn redeem_authorization_code(
        &self,
        code_hash: &SecretHash,
        code_use: CodeUse<'_>,
        family: Option<&NewRefreshFamily>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// After a code was presented twice (RFC 6749 §4.1.2): revokes the
    /// family and the access token its first redemption issued.
    fn revoke_code_issuance(
        &self,
        code: &StoredAuthorizationCode,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    fn find_refresh_token(
        &self,
        token_hash: &SecretHash,
    ) -> impl Future<Output = Result<Option<StoredRefreshToken>>> + Send;

    /// The presented token's family and, in the same statement, its user
    /// among the users of `namespace`: `None` when the user is gone or inactive.
    fn find_refresh_grant(
        &self,
        token_hash: &SecretHash,
        namespace: &str,
    ) -> impl Future<Output = Result<Option<(StoredRefreshToken, Option<GrantUser>)>>> + Send;

    /// Replaces the presented token by its successor if the family's
    /// counter is still the presented one; otherwise revokes the family
    /// (the presented token was used concurrently).
    fn rotate_refresh_token(
        &self,
        rotation: Rotation,
    ) -> impl Future<Output = Result<RotationOutcome>> + Send;

    fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Revokes the refresh-token families of one browser session (end-session).
    fn revoke_session_grants(
        &self,
        organization: &str,
        session_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Revokes one access token by its `jti` until it would have expired anyway.
    fn revoke_access_token(
        &self,
        organization: &str,
        jti: &str,
        expires_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    fn is_access_token_revoked(
        &self,
        organization: &str,
        jti: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

const CODE_COLUMNS: &str = "organization, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
                            auth_time_ms, amr, session_id, expires_ms, used_ms, family_id, access_jti, \
                            access_exp_ms";
const PRESENTED_COLUMNS: &str = "t.counter AS presented_counter, f.family_id, f.organization, f.client_id, \
                                 f.user_id, f.scope, f.auth_time_ms, f.amr, f.session_id, f.counter, \
                                 f.expires_ms, f.revoked_ms";

impl GrantStore for Store {
    async fn insert_authorization_code(&self, code: &NewCode<'_>) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        insert_code(tx.conn(), code).await?;
        tx.commit().await
    }

    async fn find_authorization_code(
        &self,
        code_hash: &SecretHash,
    ) -> Result<Option<StoredAuthorizationCode>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = $1"
        )))
        .bind(code_hash.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read an authorization code"))?;
        row.as_ref().map(code_from_row).transpose()
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &SecretHash,
        code_use: CodeUse<'_>,
        family: Option<&NewRefreshFamily>,
    ) -> Result<bool> {
        let mut tx = self.begin_unlogged_write().await?;
        let marked = sqlx::query(
            "UPDATE authorization_codes SET used_ms = $1, family_id = $2, access_jti = $3, access_exp_ms = $4 \
             WHERE code_hash = $5 AND used_ms IS NULL",
        )
        .bind(code_use.used_ms)
        .bind(family.map(|f| f.family_id.as_str()))
        .bind(code_use.access_jti)
        .bind(code_use.access_exp_ms)
        .bind(code_hash.to_string())
        .execute(tx.conn())
        .await
        .map_err(query_error("mark an authorization code used"))?;
        if marked.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(family) = family {
            insert_family(tx.conn(), family).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_code_issuance(&self, code: &StoredAuthorizationCode, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        if let Some(family) = &code.family_id {
            revoke_family_in(tx.conn(), family, "code_reuse", now_ms).await?;
        }
        if let (Some(jti), Some(expires_ms)) = (&code.access_jti, code.access_exp_ms) {
            insert_revoked_jti(tx.conn(), &code.grant.organization, jti, expires_ms).await?;
        }
        let namespace = namespace_of(tx.conn(), &code.grant.organization).await?;
        let entry = AuditEntry::failure(
            "authorizationCode.reuseDetected",
            Target::new("user", Some(&code.grant.user_id), None),
            "code_reuse",
        )
        .with_details(serde_json::json!({
            "client": code.grant.client_id,
            "revokedFamily": code.family_id,
        }));
        tx.audit(&namespace, entry).await?;
        tx.commit().await
    }

    async fn find_refresh_token(&self, token_hash: &SecretHash) -> Result<Option<StoredRefreshToken>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRESENTED_COLUMNS} FROM refresh_tokens t \
             JOIN refresh_token_families f ON f.family_id = t.family_id WHERE t.token_hash = $1"
        )))
        .bind(token_hash.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read a refresh token"))?;
        row.as_ref().map(presented_from_row).transpose()
    }

    async fn find_refresh_grant(
        &self,
        token_hash: &SecretHash,
        namespace: &str,
    ) -> Result<Option<(StoredRefreshToken, Option<GrantUser>)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRESENTED_COLUMNS}, \
             u.active, u.user_name, u.display_name, u.given_name, u.family_name, \
             (SELECT e.value FROM user_emails e WHERE e.user_id = u.id \
              ORDER BY e.is_primary DESC, e.position LIMIT 1) AS email \
             FROM refresh_tokens t JOIN refresh_token_families f ON f.family_id = t.family_id \
             LEFT JOIN users u ON u.id = f.user_id AND u.organization = $2 \
             WHERE t.token_hash = $1"
        )))
        .bind(token_hash.to_string())
        .bind(namespace)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read a refresh token"))?;
        let Some(row) = row else { return Ok(None) };
        let presented = presented_from_row(&row)?;
        const T: &str = "users";
        // NULL when the user is gone.
        let user = if bool_column_opt(&row, T, "active")?.unwrap_or(false) {
            Some(GrantUser {
                user_name: column(&row, T, "user_name")?,
                display_name: column(&row, T, "display_name")?,
                given_name: column(&row, T, "given_name")?,
                family_name: column(&row, T, "family_name")?,
                email: column(&row, "user_emails", "email")?,
            })
        } else {
            None
        };
        Ok(Some((presented, user)))
    }

    async fn rotate_refresh_token(&self, rotation: Rotation) -> Result<RotationOutcome> {
        self.inner.rotations.rotate(self, rotation).await
    }

    async fn revoke_refresh_family(&self, family_id: &str, reason: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        let revoked = revoke_family_in(tx.conn(), family_id, reason, now_ms).await?;
        if let Some((organization, client_id, user_id)) = revoked {
            let namespace = namespace_of(tx.conn(), &organization).await?;
            let target = Target::new("refreshTokenFamily", Some(family_id), None);
            // Reuse is an attack (or a broken client): recorded as what failed.
            let entry = match reason {
                "reuse" => AuditEntry::failure("refreshToken.reuseDetected", target, reason),
                _ => AuditEntry::success("refreshToken.revoke", target).with_reason(reason),
            };
            tx.audit(
                &namespace,
                entry.with_details(serde_json::json!({ "client": client_id, "user": user_id })),
            )
            .await?;
        }
        tx.commit().await
    }

    async fn revoke_session_grants(&self, organization: &str, session_id: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        sqlx::query(
            "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = 'end_session' \
             WHERE organization = $2 AND session_id = $3 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(organization)
        .bind(session_id)
        .execute(tx.conn())
        .await
        .map_err(query_error("revoke a session's refresh tokens"))?;
        tx.commit().await
    }

    async fn revoke_access_token(&self, organization: &str, jti: &str, expires_ms: i64) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        insert_revoked_jti(tx.conn(), organization, jti, expires_ms).await?;
        tx.commit().await
    }

    async fn is_access_token_revoked(&self, organization: &str, jti: &str) -> Result<bool> {
        let row = sqlx::query("SELECT jti FROM revoked_access_tokens WHERE jti = $1 AND organization = $2")
            .bind(jti)
            .bind(organization)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read a revoked access token"))?;
        Ok(row.is_some())
    }
}

async fn insert_family(conn: &mut AnyConnection, family: &NewRefreshFamily) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_token_families (family_id, organization, client_id, user_id, scope, auth_time_ms, \
         amr, session_id, counter, created_ms, updated_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
    )
    .bind(family.family_id.as_str())
    .bind(family.organization.as_str())
    .bind(family.client_id.as_str())
    .bind(family.user_id.as_str())
    .bind(family.scope.as_str())
    .bind(family.auth_time_ms)
    .bind(json_list(&family.amr))
    .bind(family.session_id.as_deref())
    .bind(family.counter)
    .bind(family.created_ms)
    .bind(family.expires_ms)
    .execute(&mut *conn)
    .await
    .map_err(query_error("store a refresh-token family"))?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, counter, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(family.first_token_hash.to_string())
    .bind(family.family_id.as_str())
    .bind(family.counter)
    .bind(family.created_ms)
    .execute(&mut *conn)
    .await
    .map_err(query_error("store a refresh token"))?;
    Ok(())
}

/// Revokes the family if it is live; returns its organization, client and
/// user when it was.
async fn revoke_family_in(
    conn: &mut AnyConnection,
    family_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Option<(String, String, String)>> {
    let row = sqlx::query(
        "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = $2 \
         WHERE family_id = $3 AND revoked_ms IS NULL RETURNING organization, client_id, user_id",
    )
    .bind(now_ms)
    .bind(reason)
    .bind(family_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_error("revoke a refresh-token family"))?;
    row.map(|row| {
        const T: &str = "refresh_token_families";
        Ok((column(&row, T, "organization")?, column(&row, T, "client_id")?, column(&row, T, "user_id")?))
    })
    .transpose()
}

/// The namespace of the organization named `name` (grants are keyed by the
/// name, the audit trail by the namespace); the name itself if none is found.
pub(in crate::store) async fn namespace_of(conn: &mut AnyConnection, name: &str) -> Result<String> {
    let row = sqlx::query(super::desired::ISSUER_NAMESPACE)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error("find an organization's namespace"))?;
    let namespace: Option<String> = match row {
        Some(row) => column(&row, "organizations", "namespace")?,
        None => None,
    };
    Ok(namespace.unwrap_or_else(|| name.to_owned()))
}

async fn insert_revoked_jti(
    conn: &mut AnyConnection,
    organization: &str,
    jti: &str,
    expires_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, organization, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(organization)
    .bind(expires_ms)
    .execute(&mut *conn)
    .await
    .map_err(query_error("revoke an access token"))?;
    Ok(())
}

fn code_from_row(row: &AnyRow) -> Result<StoredAuthorizationCode> {
    const T: &str = "authorization_codes";
    Ok(StoredAuthorizationCode {
        grant: CodeGrant {
            organization: column(row, T, "organization")?,
            client_id: column(row, T, "client_id")?,
            user_id: column(row, T, "user_id")?,
            redirect_uri: column(row, T, "redirect_uri")?,
            scope: column(row, T, "scope")?,
            nonce: column(row, T, "nonce")?,
            code_challenge: column(row, T, "code_challenge")?,
            auth_time_ms: column(row, T, "auth_time_ms")?,
            amr: json_list_column(row, T, "amr")?,
            session_id: column(row, T, "session_id")?,
        },
        expires_ms: column(row, T, "expires_ms")?,
        used_ms: column(row, T, "used_ms")?,
        family_id: column(row, T, "family_id")?,
        access_jti: column(row, T, "access_jti")?,
        access_exp_ms: column(row, T, "access_exp_ms")?,
    })
}

fn presented_from_row(row: &AnyRow) -> Result<StoredRefreshToken> {
    const T: &str = "refresh_token_families";
    Ok(StoredRefreshToken {
        presented_counter: column(row, "refresh_tokens", "presented_counter")?,
        family_id: column(row, T, "family_id")?,
        organization: column(row, T, "organization")?,
        client_id: column(row, T, "client_id")?,
        user_id: column(row, T, "user_id")?,
        scope: column(row, T, "scope")?,
        auth_time_ms: column(row, T, "auth_time_ms")?,
        amr: json_list_column(row, T, "amr")?,
        session_id: column(row, T, "session_id")?,
        counter: column(row, T, "counter")?,
        expires_ms: column(row, T, "expires_ms")?,
        revoked_ms: column(row, T, "revoked_ms")?,
    })
}

/// Stores a code within `conn`'s transaction.
pub(super) async fn insert_code(conn: &mut sqlx::AnyConnection, code: &NewCode<'_>) -> Result<()> {
    let grant = code.grant;
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, organization, client_id, user_id, redirect_uri, scope, \
         nonce, code_challenge, auth_time_ms, amr, session_id, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(code.hash.to_string())
    .bind(grant.organization.as_str())
    .bind(grant.client_id.as_str())
    .bind(grant.user_id.as_str())
    .bind(grant.redirect_uri.as_str())
    .bind(grant.scope.as_str())
    .bind(grant.nonce.as_deref())
    .bind(grant.code_challenge.as_deref())
    .bind(grant.auth_time_ms)
    .bind(json_list(&grant.amr))
    .bind(grant.session_id.as_deref())
    .bind(code.created_ms)
    .bind(code.expires_ms)
    .execute(conn)
    .await
    .map_err(query_error("store an authorization code"))?;
    Ok(())
}
