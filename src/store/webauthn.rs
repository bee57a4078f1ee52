//! Each user's WebAuthn credentials in one organization (migration 0006,
//! `webauthn_credentials`): webauthn-rs' serialised `Passkey` with a name the
//! user chose, and when it was made and last used. No change is logged.
//!
//! ```text
//!  enrolment ──insert (credential id unique per organization)──► row
//!  sign-in   ──by user / by credential id──► Passkey ─► webauthn-rs ─► record_use (counter, backup state)
//! ```

use std::future::Future;

use sqlx::any::AnyRow;

use super::error::query_error;
use super::{Result, Store, StoreError, column};
use crate::audit::{AuditEntry, Target};

/// What an enrolled credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// Discoverable, user-verifying: signs in without a password.
    Passkey,
    /// A second factor after the password.
    SecurityKey,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Passkey => "passkey",
            CredentialKind::SecurityKey => "security-key",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "passkey" => Some(CredentialKind::Passkey),
            "security-key" => Some(CredentialKind::SecurityKey),
            _ => None,
        }
    }
}

/// A credential as enrolled.
#[derive(Clone, Debug)]
pub struct NewWebAuthnCredential<'a> {
    pub organization: &'a str,
    pub user_id: &'a str,
    /// base64url, no padding.
    pub credential_id: &'a str,
    pub kind: CredentialKind,
    pub name: &'a str,
    /// webauthn-rs' `Passkey`, serialised.
    pub passkey: &'a str,
    pub created_ms: i64,
}

/// A credential as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebAuthnCredential {
    pub id: String,
    pub user_id: String,
    pub kind: CredentialKind,
    pub name: String,
    /// webauthn-rs' `Passkey`, serialised.
    pub passkey: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// A good assertion's effect on its credential.
#[derive(Clone, Debug)]
pub struct CredentialUse<'a> {
    /// The credential's row id.
    pub id: &'a str,
    /// The `Passkey` updated by the assertion, serialised.
    pub passkey: &'a str,
    pub counter: i64,
    pub backed_up: bool,
    pub used_ms: i64,
}

pub trait WebAuthnCredentialStore {
    /// The user's credentials, oldest first.
    fn webauthn_credentials(
        &self,
        organization: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<WebAuthnCredential>>> + Send;

    /// The credential of this organization with this id, whoever holds it.
    fn webauthn_credential_by_id(
        &self,
        organization: &str,
        credential_id: &str,
    ) -> impl Future<Output = Result<Option<WebAuthnCredential>>> + Send;

    /// Stores a credential; `false` if its id is enrolled in this organization already.
    fn insert_webauthn_credential(
        &self,
        credential: &NewWebAuthnCredential<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Writes the use only if the stored counter is still below the new one
    /// (or the authenticator keeps none), so two racing uses of one counter
    /// value cannot both count. Returns whether it was written.
    fn record_webauthn_use(&self, used: &CredentialUse<'_>) -> impl Future<Output = Result<bool>> + Send;
}

const COLUMNS: &str = "id, user_id, kind, name, passkey, created_ms, last_used_ms";

impl WebAuthnCredentialStore for Store {
    async fn webauthn_credentials(
        &self,
        organization: &str,
        user_id: &str,
    ) -> Result<Vec<WebAuthnCredential>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webauthn_credentials WHERE organization = $1 AND user_id = $2 \
             ORDER BY created_ms, id"
        )))
        .bind(organization)
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list WebAuthn credentials"))?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn webauthn_credential_by_id(
        &self,
        organization: &str,
        credential_id: &str,
    ) -> Result<Option<WebAuthnCredential>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webauthn_credentials WHERE organization = $1 AND credential_id = $2"
        )))
        .bind(organization)
        .bind(credential_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("look up a WebAuthn credential"))?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn insert_webauthn_credential(&self, credential: &NewWebAuthnCredential<'_>) -> Result<bool> {
        let mut tx = self.begin_unlogged_write().await?;
        let done = sqlx::query(
            "INSERT INTO webauthn_credentials \
             (id, organization, user_id, credential_id, kind, name, passkey, sign_count, backed_up, created_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, 0, 0, $8 \
             WHERE NOT EXISTS (SELECT 1 FROM webauthn_credentials WHERE organization = $2 AND credential_id = $4)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(credential.organization)
        .bind(credential.user_id)
        .bind(credential.credential_id)
        .bind(credential.kind.as_str())
        .bind(credential.name)
        .bind(credential.passkey)
        .bind(credential.created_ms)
        .execute(tx.conn())
        .await
        .map_err(query_error("store a WebAuthn credential"))?;
        let added = done.rows_affected() == 1;
        if added {
            let entry = AuditEntry::success("mfa.enrol", Target::new("user", Some(credential.user_id), None))
                .with_details(
                    serde_json::json!({ "factor": credential.kind.as_str(), "label": credential.name }),
                );
            tx.audit(credential.organization, entry).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn record_webauthn_use(&self, used: &CredentialUse<'_>) -> Result<bool> {
        let mut tx = self.begin_unlogged_write().await?;
        let done = sqlx::query(
            "UPDATE webauthn_credentials SET passkey = $1, sign_count = $2, backed_up = $3, last_used_ms = $4 \
             WHERE id = $5 AND (sign_count < $2 OR $2 = 0)",
        )
        .bind(used.passkey)
        .bind(used.counter)
        .bind(i64::from(used.backed_up))
        .bind(used.used_ms)
        .bind(used.id)
        .execute(tx.conn())
        .await
        .map_err(query_error("record the use of a WebAuthn credential"))?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

fn credential_from_row(row: &AnyRow) -> Result<WebAuthnCredential> {
    const T: &str = "webauthn_credentials";
    let kind: String = column(row, T, "kind")?;
    Ok(WebAuthnCredential {
        id: column(row, T, "id")?,
        user_id: column(row, T, "user_id")?,
        kind: CredentialKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            table: T,
            column: "kind",
            source: format!("unknown WebAuthn credential kind {kind:?}").into(),
        })?,
        name: column(row, T, "name")?,
        passkey: column(row, T, "passkey")?,
        created_ms: column(row, T, "created_ms")?,
        last_used_ms: column(row, T, "last_used_ms")?,
    })
}
