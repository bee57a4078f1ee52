//! Store access for what the token endpoint hands out and takes back:
//! authorization codes (single use), refresh-token families with rotation and
//! reuse detection (decided by [`crate::token::refresh::decide`]), and access
//! tokens revoked before they expire. Codes and refresh tokens are stored only
//! as their SHA-256 ([`SecretHash`], `sha256:<hex>`). Every write here runs in
//! [`Store::begin_unlogged_write`](crate::store::Store) (the writers' turn, no
//! change log: nobody follows these rows).
//!
//! ```text
//!  authorize ──issue_authorization_code──► authorization_codes (hash, 60 s)
//!  token     ──redeem_authorization_code─► used_ms set once ─► refresh_token_families + refresh_tokens
//!              (a second redemption finds used_ms: revokes the family and the access token it issued)
//!            ──find_refresh_grant────────► token + family + user (active?) in one SELECT
//!            ──rotate_refresh_token──────► rotation::RotationWriter: UPDATE … SET counter = next
//!                                          WHERE counter = presented, in groups (rotation.rs)
//!              (exactly one of concurrent rotations updates a row; the others are reuse)
//! ```
//!
//! `organization` is always the organization's name (the issuer path).

mod rotation;

use jiff::{SignedDuration, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _};

use super::error::OAuthError;
use super::issue::{self, TokenUser};
use super::state::TokenServiceState;
use crate::token::pkce::{self, CodeChallenge};
use crate::token::refresh::{
    self, FamilyId, FamilyRecord, IssuedRefreshToken, RefreshDecision, SecretHash, SecretString,
};

pub use rotation::RotationWriter;
use rotation::{Rotation, RotationOutcome};

/// How long an authorization code can be redeemed (RFC 6749 §4.1.2: short).
pub const AUTHORIZATION_CODE_LIFETIME: SignedDuration = SignedDuration::from_secs(60);

/// What the authorization endpoint knows when it issues a code.
#[derive(Clone, Debug)]
pub struct NewAuthorizationCode {
    pub organization: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// S256 challenge; `None` only for confidential clients without require_pkce.
    pub code_challenge: Option<String>,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
}

/// Stores the code hashed (single use, 60 s lifetime) and returns the code to send.
pub async fn issue_authorization_code(
    state: &TokenServiceState,
    code: NewAuthorizationCode,
) -> Result<String, OAuthError> {
    if let Some(challenge) = &code.code_challenge {
        CodeChallenge::parse(challenge)?;
    }
    let value = SecretString::generate(&mut rand::rng());
    let now = state.now();
    let expires = now.checked_add(AUTHORIZATION_CODE_LIFETIME).map_err(OAuthError::server)?;
    let mut tx = state.store().begin_unlogged_write().await?;
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, organization, client_id, user_id, redirect_uri, scope, \
         nonce, code_challenge, auth_time_ms, amr, session_id, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(value.hash().to_string())
    .bind(&code.organization)
    .bind(&code.client_id)
    .bind(&code.user_id)
    .bind(&code.redirect_uri)
    .bind(&code.scope)
    .bind(code.nonce.as_deref())
    .bind(code.code_challenge.as_deref())
    .bind(code.auth_time.as_millisecond())
    .bind(json_list(&code.amr))
    .bind(code.session_id.as_deref())
    .bind(now.as_millisecond())
    .bind(expires.as_millisecond())
    .execute(tx.conn())
    .await
    .map_err(db("store an authorization code"))?;
    tx.commit().await?;
    Ok(value.expose().to_owned())
}

/// Revokes every refresh token issued to sessions of this session id (end-session).
pub async fn revoke_session_grants(
    state: &TokenServiceState,
    organization: &str,
    session_id: &str,
) -> Result<(), OAuthError> {
    let mut tx = state.store().begin_unlogged_write().await?;
    sqlx::query(
        "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = 'end_session' \
         WHERE organization = $2 AND session_id = $3 AND revoked_ms IS NULL",
    )
    .bind(state.now().as_millisecond())
    .bind(organization)
    .bind(session_id)
    .execute(tx.conn())
    .await
    .map_err(db("revoke a session's refresh tokens"))?;
    Ok(tx.commit().await?)
}

/// The sign-in a code or a refresh-token family carries forward.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub user_id: String,
    pub scope: String,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
}

/// A code redemption as the token endpoint presents it.
pub struct CodeRedemption<'a> {
    pub organization: &'a str,
    pub client_id: &'a str,
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    /// The client must use PKCE (public, or `requirePkce`).
    pub pkce_required: bool,
    /// The `jti` of the access token about to be issued.
    pub access_jti: &'a str,
    pub access_expires: Timestamp,
    /// A refresh-token family to start, when the client gets refresh tokens.
    pub family: Option<(&'a FamilyRecord, &'a IssuedRefreshToken)>,
}

/// A redeemed code: the sign-in it carried and the nonce for the ID token.
#[derive(Clone, Debug)]
pub struct RedeemedCode {
    pub sign_in: SignIn,
    pub nonce: Option<String>,
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6, once: marks the code used and stores the
/// refresh-token family in one transaction. A code that was already used is
/// refused, and what its first redemption issued is revoked (RFC 6749 §4.1.2).
pub async fn redeem_authorization_code(
    state: &TokenServiceState,
    redemption: CodeRedemption<'_>,
) -> Result<RedeemedCode, OAuthError> {
    let code_hash = SecretHash::of(redemption.code).to_string();
    let now = state.now();
    let mut tx = state.store().begin_unlogged_write().await?;
    let row = sqlx::query(
        "SELECT organization, client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time_ms, \
         amr, session_id, expires_ms, used_ms, family_id, access_jti, access_exp_ms FROM authorization_codes \
         WHERE code_hash = $1",
    )
    .bind(&code_hash)
    .fetch_optional(tx.conn())
    .await
    .map_err(db("read an authorization code"))?;
    let Some(row) = row else {
        return Err(OAuthError::invalid_grant("The authorization code is invalid."));
    };
    let code_org: String = get(&row, "organization")?;
    let code_client: String = get(&row, "client_id")?;
    // Another organization's or another client's code: not ours to burn.
    if code_org != redemption.organization || code_client != redemption.client_id {
        return Err(OAuthError::invalid_grant("The authorization code is invalid."));
    }
    if get::<Option<i64>>(&row, "used_ms")?.is_some() {
        let family: Option<String> = get(&row, "family_id")?;
        let jti: Option<String> = get(&row, "access_jti")?;
        let jti_expiry =
            get::<Option<i64>>(&row, "access_exp_ms")?.and_then(|ms| Timestamp::from_millisecond(ms).ok());
        let revoked_jti = jti.zip(jti_expiry);
        revoke_after_code_reuse(tx.conn(), redemption.organization, family, revoked_jti, now).await?;
        tx.commit().await?;
        return Err(OAuthError::invalid_grant("The authorization code was already used."));
    }
    if now.as_millisecond() >= get::<i64>(&row, "expires_ms")? {
        return Err(OAuthError::invalid_grant("The authorization code has expired."));
    }
    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization request, exactly.
    let redirect_uri: String = get(&row, "redirect_uri")?;
    if redemption.redirect_uri != Some(redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request."));
    }
    let challenge = get::<Option<String>>(&row, "code_challenge")?
        .map(|c| CodeChallenge::parse(&c))
        .transpose()
        .map_err(|_| OAuthError::server("a stored code challenge is malformed"))?;
    if redemption.pkce_required && challenge.is_none() {
        return Err(OAuthError::invalid_grant("This client must use PKCE; the code was issued without it."));
    }
    pkce::verify(challenge.as_ref(), redemption.code_verifier)?;

    let family_id = redemption.family.map(|(family, _)| family.family_id.as_str());
    let marked = sqlx::query(
        "UPDATE authorization_codes SET used_ms = $1, family_id = $2, access_jti = $3, access_exp_ms = $4 \
         WHERE code_hash = $5 AND used_ms IS NULL",
    )
    .bind(now.as_millisecond())
    .bind(family_id)
    .bind(redemption.access_jti)
    .bind(redemption.access_expires.as_millisecond())
    .bind(&code_hash)
    .execute(tx.conn())
    .await
    .map_err(db("mark an authorization code used"))?;
    if marked.rows_affected() != 1 {
        // A concurrent redemption won; it has committed by now (row lock).
        drop(tx);
        return Box::pin(redeem_authorization_code(state, redemption)).await;
    }
    let sign_in = SignIn {
        user_id: get(&row, "user_id")?,
        scope: get(&row, "scope")?,
        auth_time: Timestamp::from_millisecond(get(&row, "auth_time_ms")?).map_err(OAuthError::server)?,
        amr: parse_list(&get::<String>(&row, "amr")?)?,
        session_id: get(&row, "session_id")?,
    };
    if let Some((family, first)) = redemption.family {
        insert_family(tx.conn(), redemption.organization, redemption.client_id, &sign_in, family, first, now)
            .await?;
    }
    tx.commit().await?;
    Ok(RedeemedCode { sign_in, nonce: get(&row, "nonce")? })
}

async fn revoke_after_code_reuse(
    conn: &mut AnyConnection,
    organization: &str,
    family: Option<String>,
    jti: Option<(String, Timestamp)>,
    now: Timestamp,
) -> Result<(), OAuthError> {
    tracing::warn!(target: "audit", organization, "authorization code used twice; revoking what it issued");
    if let Some(family) = family {
        revoke_family_in(conn, &family, "code_reuse", now).await?;
    }
    if let Some((jti, expires_at)) = jti {
        insert_revoked_jti(conn, organization, &jti, expires_at).await?;
    }
    Ok(())
}

async fn insert_family(
    conn: &mut AnyConnection,
    organization: &str,
    client_id: &str,
    sign_in: &SignIn,
    family: &FamilyRecord,
    first: &IssuedRefreshToken,
    now: Timestamp,
) -> Result<(), OAuthError> {
    sqlx::query(
        "INSERT INTO refresh_token_families (family_id, organization, client_id, user_id, scope, auth_time_ms, \
         amr, session_id, counter, created_ms, updated_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
    )
    .bind(family.family_id.as_str())
    .bind(organization)
    .bind(client_id)
    .bind(&sign_in.user_id)
    .bind(&sign_in.scope)
    .bind(sign_in.auth_time.as_millisecond())
    .bind(json_list(&sign_in.amr))
    .bind(sign_in.session_id.as_deref())
    .bind(i64::from(family.counter))
    .bind(now.as_millisecond())
    .bind(family.expires_at.as_millisecond())
    .execute(&mut *conn)
    .await
    .map_err(db("store a refresh-token family"))?;
    insert_token(conn, first, now).await
}

async fn insert_token(
    conn: &mut AnyConnection,
    token: &IssuedRefreshToken,
    now: Timestamp,
) -> Result<(), OAuthError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, counter, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(token.hash.to_string())
    .bind(token.family_id.as_str())
    .bind(i64::from(token.counter))
    .bind(now.as_millisecond())
    .execute(&mut *conn)
    .await
    .map_err(db("store a refresh token"))?;
    Ok(())
}

/// A refresh-token family as stored, with the presented token's counter.
#[derive(Clone, Debug)]
pub struct PresentedRefreshToken {
    pub organization: String,
    pub client_id: String,
    pub family: FamilyRecord,
    pub presented_counter: u32,
    pub sign_in: SignIn,
}

/// A presented refresh token for the refresh grant: its family, and the
/// family's user as the tokens need it, `None` when the user is gone or
/// disabled (read in the same statement: no user read of its own).
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    pub presented: PresentedRefreshToken,
    pub user: Option<TokenUser>,
}

/// Finds the family of a presented refresh token (introspection, revocation).
pub async fn find_refresh_token(
    state: &TokenServiceState,
    presented: &str,
) -> Result<Option<PresentedRefreshToken>, OAuthError> {
    let row = sqlx::query(
        "SELECT t.counter AS presented_counter, f.family_id, f.organization, f.client_id, f.user_id, f.scope, \
         f.auth_time_ms, f.amr, f.session_id, f.counter, f.expires_ms, f.revoked_ms \
         FROM refresh_tokens t JOIN refresh_token_families f ON f.family_id = t.family_id \
         WHERE t.token_hash = $1",
    )
    .bind(SecretHash::of(presented).to_string())
    .fetch_optional(state.store().pool())
    .await
    .map_err(db("read a refresh token"))?;
    row.as_ref().map(presented_from_row).transpose()
}

/// Finds the family of a presented refresh token and, in the same
/// statement, its user among the users of `namespace` (the organization's).
pub async fn find_refresh_grant(
    state: &TokenServiceState,
    presented: &str,
    namespace: &str,
) -> Result<Option<RefreshGrant>, OAuthError> {
    let row = sqlx::query(
        "SELECT t.counter AS presented_counter, f.family_id, f.organization, f.client_id, f.user_id, f.scope, \
         f.auth_time_ms, f.amr, f.session_id, f.counter, f.expires_ms, f.revoked_ms, \
         u.active, u.user_name, u.display_name, u.given_name, u.family_name, \
         (SELECT e.value FROM user_emails e WHERE e.user_id = u.id \
          ORDER BY e.is_primary DESC, e.position LIMIT 1) AS email \
         FROM refresh_tokens t JOIN refresh_token_families f ON f.family_id = t.family_id \
         LEFT JOIN users u ON u.id = f.user_id AND u.organization = $2 \
         WHERE t.token_hash = $1",
    )
    .bind(SecretHash::of(presented).to_string())
    .bind(namespace)
    .fetch_optional(state.store().pool())
    .await
    .map_err(db("read a refresh token"))?;
    let Some(row) = row else { return Ok(None) };
    let presented = presented_from_row(&row)?;
    // BOOLEAN on PostgreSQL, INTEGER 0/1 on SQLite; NULL when the user is gone.
    let active = match row.try_get::<Option<bool>, _>("active") {
        Ok(active) => active.unwrap_or(false),
        Err(_) => get::<Option<i64>>(&row, "active")?.is_some_and(|a| a != 0),
    };
    let user = if active {
        Some(TokenUser {
            id: presented.sign_in.user_id.clone(),
            user_name: get(&row, "user_name")?,
            email: get(&row, "email")?,
            name: issue::name_of(
                get::<Option<String>>(&row, "display_name")?.as_deref(),
                get::<Option<String>>(&row, "given_name")?.as_deref(),
                get::<Option<String>>(&row, "family_name")?.as_deref(),
            ),
        })
    } else {
        None
    };
    Ok(Some(RefreshGrant { presented, user }))
}

fn presented_from_row(row: &AnyRow) -> Result<PresentedRefreshToken, OAuthError> {
    let counter = |name| -> Result<u32, OAuthError> {
        u32::try_from(get::<i64>(row, name)?).map_err(|_| OAuthError::server("refresh counter out of range"))
    };
    let millis = |name| -> Result<Timestamp, OAuthError> {
        Timestamp::from_millisecond(get(row, name)?).map_err(OAuthError::server)
    };
    Ok(PresentedRefreshToken {
        organization: get(row, "organization")?,
        client_id: get(row, "client_id")?,
        family: FamilyRecord {
            family_id: FamilyId::from_stored(get(row, "family_id")?),
            counter: counter("counter")?,
            revoked: get::<Option<i64>>(row, "revoked_ms")?.is_some(),
            expires_at: millis("expires_ms")?,
        },
        presented_counter: counter("presented_counter")?,
        sign_in: SignIn {
            user_id: get(row, "user_id")?,
            scope: get(row, "scope")?,
            auth_time: millis("auth_time_ms")?,
            amr: parse_list(&get::<String>(row, "amr")?)?,
            session_id: get(row, "session_id")?,
        },
    })
}

/// RFC 6749 §6 with RFC 9700 §4.14.2 rotation: the presented token's
/// successor, or `invalid_grant` (and, for a replayed token, the whole family
/// revoked and audited).
pub async fn rotate_refresh_token(
    state: &TokenServiceState,
    presented: &PresentedRefreshToken,
) -> Result<IssuedRefreshToken, OAuthError> {
    let now = state.now();
    let family_id = &presented.family.family_id;
    match refresh::decide(&presented.family, presented.presented_counter, now) {
        RefreshDecision::Rotate { next_counter } => {
            let successor = refresh::successor(family_id, next_counter, &mut rand::rng());
            let rotation = Rotation {
                family_id: family_id.clone(),
                presented_counter: presented.presented_counter,
                successor_hash: successor.hash,
                now,
            };
            match state.rotations().rotate(state.store(), rotation).await? {
                RotationOutcome::Rotated => Ok(successor),
                // Another request rotated this token first. A client racing
                // itself cannot be told from a thief racing the client (on
                // PostgreSQL a loser may even read the new counter): fail
                // closed, as reuse; the rotation revoked the whole family.
                RotationOutcome::Lost => {
                    audit_reuse(presented);
                    Err(OAuthError::invalid_grant("The refresh token was already used."))
                }
            }
        }
        RefreshDecision::ReuseDetected { revoke_family } => {
            let mut tx = state.store().begin_unlogged_write().await?;
            revoke_family_in(tx.conn(), revoke_family.as_str(), "reuse", now).await?;
            tx.commit().await?;
            audit_reuse(presented);
            Err(OAuthError::invalid_grant("The refresh token was already used."))
        }
        RefreshDecision::Expired => Err(OAuthError::invalid_grant("The refresh token has expired.")),
        RefreshDecision::Revoked => Err(OAuthError::invalid_grant("The refresh token was revoked.")),
    }
}

fn audit_reuse(presented: &PresentedRefreshToken) {
    tracing::warn!(
        target: "audit",
        organization = %presented.organization,
        client_id = %presented.client_id,
        family = %presented.family.family_id.as_str(),
        user_id = %presented.sign_in.user_id,
        "refresh token reused; revoked its whole family"
    );
}

/// Revokes a family (RFC 7009 for refresh tokens, logout, admin).
pub async fn revoke_family(
    state: &TokenServiceState,
    family_id: &FamilyId,
    reason: &str,
) -> Result<(), OAuthError> {
    let mut tx = state.store().begin_unlogged_write().await?;
    revoke_family_in(tx.conn(), family_id.as_str(), reason, state.now()).await?;
    Ok(tx.commit().await?)
}

async fn revoke_family_in(
    conn: &mut AnyConnection,
    family_id: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), OAuthError> {
    sqlx::query(
        "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = $2 \
         WHERE family_id = $3 AND revoked_ms IS NULL",
    )
    .bind(now.as_millisecond())
    .bind(reason)
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(db("revoke a refresh-token family"))?;
    Ok(())
}

/// Revokes one access token by its `jti` until it would have expired anyway.
pub async fn revoke_access_token(
    state: &TokenServiceState,
    organization: &str,
    jti: &str,
    expires_at: Timestamp,
) -> Result<(), OAuthError> {
    let mut tx = state.store().begin_unlogged_write().await?;
    insert_revoked_jti(tx.conn(), organization, jti, expires_at).await?;
    Ok(tx.commit().await?)
}

async fn insert_revoked_jti(
    conn: &mut AnyConnection,
    organization: &str,
    jti: &str,
    expires_at: Timestamp,
) -> Result<(), OAuthError> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, organization, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(organization)
    .bind(expires_at.as_millisecond())
    .execute(&mut *conn)
    .await
    .map_err(db("revoke an access token"))?;
    Ok(())
}

/// Whether an access token was revoked before its expiry.
pub async fn is_access_token_revoked(
    state: &TokenServiceState,
    organization: &str,
    jti: &str,
) -> Result<bool, OAuthError> {
    let row = sqlx::query("SELECT jti FROM revoked_access_tokens WHERE jti = $1 AND organization = $2")
        .bind(jti)
        .bind(organization)
        .fetch_optional(state.store().pool())
        .await
        .map_err(db("read a revoked access token"))?;
    Ok(row.is_some())
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> OAuthError {
    move |error| OAuthError::server(format!("{what}: {error}"))
}

fn get<T>(row: &AnyRow, column: &'static str) -> Result<T, OAuthError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(|e| OAuthError::server(format!("column {column}: {e}")))
}

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_list(text: &str) -> Result<Vec<String>, OAuthError> {
    serde_json::from_str(text).map_err(|e| OAuthError::server(format!("stored list: {e}")))
}
