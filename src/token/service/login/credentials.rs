//! The `webauthn_credentials` table (migration 0006): each user's WebAuthn
//! credentials in one organization, as webauthn-rs' serialised `Passkey`
//! with a name the user chose, and when it was made and last used.
//!
//! ```text
//!  enrolment ──insert──► row (credential_id unique per organization)
//!  sign-in   ──for_user / by_credential_id──► Passkey ─► webauthn-rs ─► record_use (counter, backup state)
//! ```

use sqlx::Row as _;
use sqlx::any::AnyRow;
use webauthn_rs::prelude::{AuthenticationResult, Passkey};

use crate::store::Store;
use crate::token::service::error::OAuthError;

/// What an enrolled credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CredentialKind {
    /// Discoverable, user-verifying: signs in without a password.
    Passkey,
    /// A second factor after the password.
    SecurityKey,
}

impl CredentialKind {
    fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Passkey => "passkey",
            CredentialKind::SecurityKey => "security-key",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "passkey" => Some(CredentialKind::Passkey),
            "security-key" => Some(CredentialKind::SecurityKey),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct StoredCredential {
    pub id: String,
    pub user_id: String,
    pub kind: CredentialKind,
    pub name: String,
    pub passkey: Passkey,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

const COLUMNS: &str = "id, user_id, kind, name, passkey, created_ms, last_used_ms";

fn store_error(what: &'static str) -> impl Fn(sqlx::Error) -> OAuthError {
    move |e| OAuthError::server(format!("{what}: {e}"))
}

/// The credential id as stored: base64url, no padding.
pub(super) fn credential_key(credential_id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential_id)
}

fn from_row(row: &AnyRow) -> Result<StoredCredential, OAuthError> {
    let read = |e: sqlx::Error| OAuthError::server(format!("read a WebAuthn credential: {e}"));
    let kind: String = row.try_get("kind").map_err(read)?;
    let passkey: String = row.try_get("passkey").map_err(read)?;
    Ok(StoredCredential {
        id: row.try_get("id").map_err(read)?,
        user_id: row.try_get("user_id").map_err(read)?,
        kind: CredentialKind::parse(&kind)
            .ok_or_else(|| OAuthError::server(format!("unknown WebAuthn credential kind {kind:?}")))?,
        name: row.try_get("name").map_err(read)?,
        passkey: serde_json::from_str(&passkey).map_err(OAuthError::server)?,
        created_ms: row.try_get("created_ms").map_err(read)?,
        last_used_ms: row.try_get("last_used_ms").map_err(read)?,
    })
}

/// The user's credentials, oldest first.
pub(super) async fn for_user(
    store: &Store,
    organization: &str,
    user_id: &str,
) -> Result<Vec<StoredCredential>, OAuthError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webauthn_credentials WHERE organization = $1 AND user_id = $2 \
         ORDER BY created_ms, id"
    )))
    .bind(organization.to_owned())
    .bind(user_id.to_owned())
    .fetch_all(store.pool())
    .await
    .map_err(store_error("list WebAuthn credentials"))?;
    rows.iter().map(from_row).collect()
}

/// The credential of this organization with this id, whoever holds it.
pub(super) async fn by_credential_id(
    store: &Store,
    organization: &str,
    credential_id: &[u8],
) -> Result<Option<StoredCredential>, OAuthError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webauthn_credentials WHERE organization = $1 AND credential_id = $2"
    )))
    .bind(organization.to_owned())
    .bind(credential_key(credential_id))
    .fetch_optional(store.pool())
    .await
    .map_err(store_error("look up a WebAuthn credential"))?;
    row.as_ref().map(from_row).transpose()
}

/// Stores a credential; `false` if its id is enrolled in this organization already.
pub(super) async fn insert(
    store: &Store,
    organization: &str,
    user_id: &str,
    kind: CredentialKind,
    name: &str,
    passkey: &Passkey,
    now_ms: i64,
) -> Result<bool, OAuthError> {
    let json = serde_json::to_string(passkey).map_err(OAuthError::server)?;
    let credential_id = credential_key(passkey.cred_id().as_ref());
    let mut tx = store.begin_write(organization).await?;
    let done = sqlx::query(
        "INSERT INTO webauthn_credentials \
         (id, organization, user_id, credential_id, kind, name, passkey, sign_count, backed_up, created_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7, 0, 0, $8 \
         WHERE NOT EXISTS (SELECT 1 FROM webauthn_credentials WHERE organization = $2 AND credential_id = $4)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(organization.to_owned())
    .bind(user_id.to_owned())
    .bind(credential_id)
    .bind(kind.as_str())
    .bind(name.to_owned())
    .bind(json)
    .bind(now_ms)
    .execute(tx.conn())
    .await
    .map_err(store_error("store a WebAuthn credential"))?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// After a good assertion: the new counter and backup state, and the time.
/// The row is only written if the stored counter is still below the new one,
/// so two racing uses of one counter value cannot both count.
pub(super) async fn record_use(
    store: &Store,
    organization: &str,
    credential: &StoredCredential,
    result: &AuthenticationResult,
    now_ms: i64,
) -> Result<bool, OAuthError> {
    let mut passkey = credential.passkey.clone();
    passkey.update_credential(result);
    let json = serde_json::to_string(&passkey).map_err(OAuthError::server)?;
    let counter = i64::from(result.counter());
    let mut tx = store.begin_write(organization).await?;
    let done = sqlx::query(
        "UPDATE webauthn_credentials SET passkey = $1, sign_count = $2, backed_up = $3, last_used_ms = $4 \
         WHERE id = $5 AND (sign_count < $2 OR $2 = 0)",
    )
    .bind(json)
    .bind(counter)
    .bind(i64::from(result.backup_state()))
    .bind(now_ms)
    .bind(credential.id.clone())
    .execute(tx.conn())
    .await
    .map_err(store_error("record the use of a WebAuthn credential"))?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}
