//! Signing keys with their private half, sealed: the store is where the
//! operator keeps an organization's keys and where every token-service
//! replica reads them, announced on the change feed like any other write.
//!
//! ```text
//!  operator / standalone ──put_sealed_signing_key(record, sealed)──► signing_keys (public columns + sealed_key)
//!                                                                         │ Change::SigningKey
//!  token service ◄──sealed_signing_keys(organization)── (opened with the key-encryption key, cached
//!                                                         until the next change of that organization)
//! ```
//!
//! The store never sees a key-encryption key: sealing and opening are the
//! caller's ([`crate::sealing`]); here the sealed value is opaque text.

use std::future::Future;

use super::changes::Change;
use super::error::query_error;
use super::records::{SigningKeyRecord, SigningKeyState};
use super::{Result, Store, column, enum_column, now_ms};
use crate::audit::{AuditEntry, Target};

/// A signing key's public record and its sealed private half (`None` for a
/// key written before private keys lived in the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSigningKey {
    pub record: SigningKeyRecord,
    pub sealed: Option<String>,
}

/// Signing keys with their sealed private halves.
pub trait SealedSigningKeyStore {
    /// Writes a key's public record and its sealed private half in one
    /// transaction (creating or replacing the row).
    fn put_sealed_signing_key(
        &self,
        record: &SigningKeyRecord,
        sealed: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every key of an organization (its namespace), oldest first.
    fn sealed_signing_keys(
        &self,
        organization: &str,
    ) -> impl Future<Output = Result<Vec<SealedSigningKey>>> + Send;
}

/// The audit event of a key written: `signingKey.create` for a new key, else
/// `signingKey.update` (a state change such as `next` → `active` is the
/// rotation; the same state is a re-seal under another key-encryption key).
fn key_audit(record: &SigningKeyRecord, previous_state: Option<&str>) -> AuditEntry {
    let action = if previous_state.is_some() { "signingKey.update" } else { "signingKey.create" };
    AuditEntry::success(action, Target::new("signingKey", Some(&record.kid), Some(&record.kid))).with_details(
        serde_json::json!({
            "state": record.state.as_str(),
            "previousState": previous_state,
            "algorithm": record.algorithm.as_str(),
        }),
    )
}

impl SealedSigningKeyStore for Store {
    async fn put_sealed_signing_key(&self, record: &SigningKeyRecord, sealed: &str) -> Result<()> {
        let mut tx = self.begin_write(&record.organization).await?;
        let previous = sqlx::query("SELECT state FROM signing_keys WHERE organization = $1 AND kid = $2")
            .bind(record.organization.as_str())
            .bind(record.kid.as_str())
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("read a signing key's state"))?
            .map(|row| column::<String>(&row, "signing_keys", "state"))
            .transpose()?;
        sqlx::query(
            "INSERT INTO signing_keys (organization, kid, algorithm, state, public_jwk, created_ms, activates_ms, \
             retires_ms, updated_ms, sealed_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (organization, kid) DO UPDATE SET algorithm = excluded.algorithm, state = excluded.state, \
             public_jwk = excluded.public_jwk, created_ms = excluded.created_ms, \
             activates_ms = excluded.activates_ms, retires_ms = excluded.retires_ms, \
             updated_ms = excluded.updated_ms, sealed_key = excluded.sealed_key",
        )
        .bind(record.organization.as_str())
        .bind(record.kid.as_str())
        .bind(record.algorithm.as_str())
        .bind(record.state.as_str())
        .bind(record.public_jwk.as_str())
        .bind(record.created_ms)
        .bind(record.activates_ms)
        .bind(record.retires_ms)
        .bind(now_ms())
        .bind(sealed)
        .execute(tx.conn())
        .await
        .map_err(query_error("write a sealed signing key"))?;
        tx.record(Change::SigningKey { organization: record.organization.clone(), kid: record.kid.clone() });
        tx.audit(key_audit(record, previous.as_deref())).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sealed_signing_keys(&self, organization: &str) -> Result<Vec<SealedSigningKey>> {
        let rows = sqlx::query(
            "SELECT organization, kid, algorithm, state, public_jwk, created_ms, activates_ms, retires_ms, \
             sealed_key FROM signing_keys WHERE organization = $1 ORDER BY created_ms, kid",
        )
        .bind(organization)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list sealed signing keys"))?;
        rows.iter()
            .map(|row| {
                const T: &str = "signing_keys";
                Ok(SealedSigningKey {
                    record: SigningKeyRecord {
                        organization: column(row, T, "organization")?,
                        kid: column(row, T, "kid")?,
                        algorithm: column(row, T, "algorithm")?,
                        state: enum_column(row, T, "state", SigningKeyState::parse)?,
                        public_jwk: column(row, T, "public_jwk")?,
                        created_ms: column(row, T, "created_ms")?,
                        activates_ms: column(row, T, "activates_ms")?,
                        retires_ms: column(row, T, "retires_ms")?,
                    },
                    sealed: column(row, T, "sealed_key")?,
                })
            })
            .collect()
    }
}
