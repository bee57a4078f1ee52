//! What the admin API asks of the store beyond the identity and desired-state
//! traits: roles and role assignments it owns (`owner = 'api'`, migration
//! 0017) beside the synced ones, who provisions a user or group, and the
//! bulk resets of one user (second factors, sessions and refresh families).
//!
//! ```text
//!  roles / role_assignments ── owner 'manifest' ── operator sweep, folder sync (may delete)
//!                           ├─ owner 'api' ──────── admin API only (roleSource: API)
//!                           └─ owner 'access-request' ── an approved access request, until it
//!                                                        expires or is revoked (RoleAssignments only)
//!  both ──► change_log ──► follower ──► access index (no difference between them)
//! ```
//!
//! Every write appends its audit event in its own transaction, as the
//! store handle's actor ([`Store::with_audit`]).

use std::future::Future;

use sqlx::AssertSqlSafe;

use super::desired::{DesiredRecord, resource_change, upsert_sql};
use super::error::{is_unique_violation, query_error};
use super::identity::{not_found, user_change};
use super::{Result, Store, column, now_ms};
use crate::audit::{AuditEntry, Target};

/// Who keeps a Role or RoleAssignment row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A manifest (Kubernetes or the standalone folder): a sync rewrites it.
    Manifest,
    /// The admin API.
    Api,
    /// An approved access request (only a RoleAssignment): its decision
    /// or the expiry sweep removes it, nothing else.
    AccessRequest,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Manifest => "manifest",
            Owner::Api => "api",
            Owner::AccessRequest => "access-request",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "api" => Owner::Api,
            "access-request" => Owner::AccessRequest,
            _ => Owner::Manifest,
        }
    }
}

/// What became of an admin API write of a Role or RoleAssignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiWrite<R> {
    /// Stored as the record now reads (its generation is its version).
    Written(R),
    /// A manifest owns that name: the write would be undone by the next sync.
    OwnedByManifest,
    /// An access request's grant holds that name: revoke the request instead.
    OwnedByAccessRequest,
    /// The stored version is not the one the caller read.
    VersionMismatch { stored: i64 },
    /// Nothing of that name (update or delete).
    Absent,
}

/// What [`AdminStore::reset_second_factors`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactorsRemoved {
    /// `mfa_enrolments` rows: TOTP secrets and WebAuthn second factors.
    pub enrolments: u64,
    /// `webauthn_credentials` rows: passkeys and security keys.
    pub webauthn_credentials: u64,
}

/// What [`AdminStore::revoke_user_access`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessRevoked {
    pub sessions: u64,
    pub refresh_families: u64,
}

pub trait AdminStore {
    /// The owner of each row of kind `R` in the namespace, by name.
    fn owners<R: DesiredRecord>(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<(String, Owner)>>> + Send;

    /// Creates (no `expected_generation`, the name must be free) or replaces
    /// (the stored generation must be `expected_generation`) an API-owned
    /// record; its `meta.uid` and `meta.generation` are chosen here.
    fn put_api_record<R: DesiredRecord>(
        &self,
        record: R,
        expected_generation: Option<i64>,
    ) -> impl Future<Output = Result<ApiWrite<R>>> + Send;

    /// Deletes an API-owned record by name.
    fn delete_api_record<R: DesiredRecord>(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<ApiWrite<()>>> + Send;

    /// The IdentityProvider that provisioned the user (SCIM, or its first
    /// single sign-on for a JIT user); `None` if none did.
    fn user_provisioner(
        &self,
        namespace: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// The IdentityProvider that pushes the group, if one does.
    fn group_provisioner(
        &self,
        namespace: &str,
        group_id: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Removes every second factor of the user: TOTP enrolments and WebAuthn
    /// credentials (security keys and passkeys). `NotFound` if no such user.
    fn reset_second_factors(
        &self,
        namespace: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<FactorsRemoved>> + Send;

    /// Ends the user's live browser sessions and revokes its live refresh
    /// families (access tokens already issued run out on their own).
    fn revoke_user_access(
        &self,
        namespace: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<AccessRevoked>> + Send;
}

/// `role.create`, `roleAssignment.delete`…
fn action(kind: super::ResourceKind, verb: &str) -> String {
    let kind = kind.as_str();
    let mut name = kind[..1].to_ascii_lowercase();
    name.push_str(&kind[1..]);
    format!("{name}.{verb}")
}

impl AdminStore for Store {
    async fn owners<R: DesiredRecord>(&self, namespace: &str) -> Result<Vec<(String, Owner)>> {
        debug_assert!(R::OWNED, "{} has no owner column", R::TABLE);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, owner FROM {} WHERE namespace = $1 ORDER BY name",
            R::TABLE
        )))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list owners"))?;
        rows.iter()
            .map(|row| {
                let owner: String = column(row, R::TABLE, "owner")?;
                Ok((column(row, R::TABLE, "name")?, Owner::parse(&owner)))
            })
            .collect()
    }

    async fn put_api_record<R: DesiredRecord>(
        &self,
        mut record: R,
        expected_generation: Option<i64>,
    ) -> Result<ApiWrite<R>> {
        let (namespace, name) = (record.meta().namespace.clone(), record.meta().name.clone());
        let mut tx = self.begin_write(&namespace).await?;
        let stored = sqlx::query(AssertSqlSafe(format!(
            "SELECT uid, generation, owner FROM {} WHERE namespace = $1 AND name = $2",
            R::TABLE
        )))
        .bind(namespace.as_str())
        .bind(name.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a role or assignment"))?;
        let (uid, generation, verb) = match (stored, expected_generation) {
            (Some(row), expected) => {
                let owner: String = column(&row, R::TABLE, "owner")?;
                match Owner::parse(&owner) {
                    Owner::Manifest => return Ok(ApiWrite::OwnedByManifest),
                    Owner::AccessRequest => return Ok(ApiWrite::OwnedByAccessRequest),
                    Owner::Api => {}
                }
                let generation: i64 = column(&row, R::TABLE, "generation")?;
                match expected {
                    Some(expected) if expected == generation => {}
                    // A create of a name the API already holds, or a stale update.
                    _ => return Ok(ApiWrite::VersionMismatch { stored: generation }),
                }
                (column::<String>(&row, R::TABLE, "uid")?, generation + 1, "update")
            }
            (None, Some(_)) => return Ok(ApiWrite::Absent),
            (None, None) => (format!("api-{}", uuid::Uuid::new_v4()), 1, "create"),
        };
        record.meta_mut().uid.clone_from(&uid);
        record.meta_mut().generation = generation;
        let query = sqlx::query(AssertSqlSafe(upsert_sql::<R>()))
            .bind(uid.as_str())
            .bind(namespace.as_str())
            .bind(name.as_str())
            .bind(generation)
            .bind(record.spec_json().to_owned());
        let written = record.bind_columns(query).bind(now_ms()).execute(tx.conn()).await;
        match written {
            // A concurrent create of the same name committed first.
            Err(error) if is_unique_violation(&error) => return Ok(ApiWrite::VersionMismatch { stored: 1 }),
            other => other.map_err(query_error("write a role or assignment"))?,
        };
        sqlx::query(AssertSqlSafe(format!("UPDATE {} SET owner = 'api' WHERE uid = $1", R::TABLE)))
            .bind(uid.as_str())
            .execute(tx.conn())
            .await
            .map_err(query_error("mark a row as the admin API's"))?;
        tx.record(resource_change(R::KIND, &namespace, &name, &uid));
        let spec: serde_json::Value = serde_json::from_str(record.spec_json()).unwrap_or_default();
        tx.audit(
            AuditEntry::success(
                &action(R::KIND, verb),
                Target::new(R::KIND.as_str(), Some(&uid), Some(&name)),
            )
            .with_details(serde_json::json!({ "spec": spec, "generation": generation })),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiWrite::Written(record))
    }

    async fn delete_api_record<R: DesiredRecord>(&self, namespace: &str, name: &str) -> Result<ApiWrite<()>> {
        let mut tx = self.begin_write(namespace).await?;
        let stored = sqlx::query(AssertSqlSafe(format!(
            "SELECT uid, owner FROM {} WHERE namespace = $1 AND name = $2",
            R::TABLE
        )))
        .bind(namespace)
        .bind(name)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a role or assignment"))?;
        let Some(row) = stored else { return Ok(ApiWrite::Absent) };
        let owner: String = column(&row, R::TABLE, "owner")?;
        match Owner::parse(&owner) {
            Owner::Manifest => return Ok(ApiWrite::OwnedByManifest),
            Owner::AccessRequest => return Ok(ApiWrite::OwnedByAccessRequest),
            Owner::Api => {}
        }
        let uid: String = column(&row, R::TABLE, "uid")?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE uid = $1", R::TABLE)))
            .bind(uid.as_str())
            .execute(tx.conn())
            .await
            .map_err(query_error("delete a role or assignment"))?;
        tx.record(resource_change(R::KIND, namespace, name, &uid));
        tx.audit(AuditEntry::success(
            &action(R::KIND, "delete"),
            Target::new(R::KIND.as_str(), Some(&uid), Some(name)),
        ))
        .await?;
        tx.commit().await?;
        Ok(ApiWrite::Written(()))
    }

    async fn user_provisioner(&self, namespace: &str, user_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT COALESCE(u.provisioned_by, \
                 (SELECT MIN(f.identity_provider) FROM federated_identities f WHERE f.user_id = u.id)) AS idp \
             FROM users u WHERE u.organization = $1 AND u.id = $2",
        )
        .bind(namespace)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read who provisioned a user"))?;
        match row {
            Some(row) => column(&row, "users", "idp"),
            None => Ok(None),
        }
    }

    async fn group_provisioner(&self, namespace: &str, group_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT provisioned_by FROM groups WHERE organization = $1 AND id = $2")
            .bind(namespace)
            .bind(group_id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read who provisioned a group"))?;
        match row {
            Some(row) => column(&row, "groups", "provisioned_by"),
            None => Ok(None),
        }
    }

    async fn reset_second_factors(&self, namespace: &str, user_id: &str) -> Result<FactorsRemoved> {
        let mut tx = self.begin_write(namespace).await?;
        let user_name = user_name_in(&mut tx, namespace, user_id).await?;
        let enrolments = tx
            .execute(
                sqlx::query("DELETE FROM mfa_enrolments WHERE user_id = $1").bind(user_id),
                "remove second factors",
            )
            .await?;
        let webauthn_credentials = tx
            .execute(
                sqlx::query("DELETE FROM webauthn_credentials WHERE user_id = $1").bind(user_id),
                "remove WebAuthn credentials",
            )
            .await?;
        tx.record(user_change(namespace, user_id));
        tx.audit(
            AuditEntry::success(
                "user.resetSecondFactors",
                Target::new("user", Some(user_id), Some(&user_name)),
            )
            .with_details(serde_json::json!({
                "enrolments": enrolments,
                "webauthnCredentials": webauthn_credentials,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(FactorsRemoved { enrolments, webauthn_credentials })
    }

    async fn revoke_user_access(&self, namespace: &str, user_id: &str) -> Result<AccessRevoked> {
        let now = now_ms();
        let mut tx = self.begin_write(namespace).await?;
        let user_name = user_name_in(&mut tx, namespace, user_id).await?;
        let sessions = tx
            .execute(
                sqlx::query("UPDATE sessions SET ended_ms = $1 WHERE user_id = $2 AND ended_ms IS NULL")
                    .bind(now)
                    .bind(user_id),
                "end a user's sessions",
            )
            .await?;
        let refresh_families = tx
            .execute(
                sqlx::query(
                    "UPDATE refresh_token_families SET revoked_ms = $1, revoked_reason = 'admin' \
                     WHERE user_id = $2 AND revoked_ms IS NULL",
                )
                .bind(now)
                .bind(user_id),
                "revoke a user's refresh tokens",
            )
            .await?;
        tx.audit(
            AuditEntry::success("user.revokeSessions", Target::new("user", Some(user_id), Some(&user_name)))
                .with_details(
                    serde_json::json!({ "sessions": sessions, "refreshTokenFamilies": refresh_families }),
                ),
        )
        .await?;
        tx.commit().await?;
        Ok(AccessRevoked { sessions, refresh_families })
    }
}

/// The userName of a user of the namespace, read in the transaction (and so
/// checked to belong to it before anything of it is touched).
async fn user_name_in(
    tx: &mut super::changes::WriteTx<'_>,
    namespace: &str,
    user_id: &str,
) -> Result<String> {
    let row = sqlx::query("SELECT user_name FROM users WHERE organization = $1 AND id = $2")
        .bind(namespace)
        .bind(user_id)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a user"))?;
    match row {
        Some(row) => column(&row, "users", "user_name"),
        None => Err(not_found(namespace, "user", user_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ResourceKind;

    #[test]
    fn actions_name_the_kind_in_camel_case() {
        assert_eq!(action(ResourceKind::RoleAssignment, "create"), "roleAssignment.create");
        assert_eq!(action(ResourceKind::Role, "delete"), "role.delete");
    }
}
