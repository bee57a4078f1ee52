//! Identities the services write: users (with emails and second factors),
//! groups, and memberships, each scoped to one organization.
//!
//! ```text
//!   users ──< user_emails            groups
//!     │  └─< mfa_enrolments            │
//!     └──────────< memberships >───────┘   (group_id, user_id): one row per member
//! ```
//!
//! userNames and group display names are unique per organization regardless
//! of case; a clash is [`StoreError::AlreadyExists`]. Updates can name the
//! version they read (SCIM `If-Match`); a moved-on row is
//! [`StoreError::VersionMismatch`]. Every write records a
//! [`Change`](super::Change) for the follower and other readers.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::changes::{AnyQuery, Change, WriteTx};
use super::error::{is_unique_violation, query_error};
use super::records::*;
use super::scim_query::like_escape;
use super::{Backend, Result, Store, StoreError, bool_column, column, enum_column, now_ms};
use crate::audit::{AuditEntry, Target};
use crate::secret::SecretString;

pub(super) const USER_COLUMNS: &str = "id, organization, user_name, display_name, given_name, family_name, \
                                       external_id, active, source, password_hash, last_login_ms, created_ms, \
                                       updated_ms, version";
/// Rows of the userName order a search reads before it turns to the trigram
/// index (see `list_users_after`).
const SEARCH_WALK: u32 = 2_000;
/// Ids per query when reading users' emails (well under both backends'
/// placeholder limits).
const EMAIL_READ_CHUNK: usize = 500;
pub(super) const GROUP_COLUMNS: &str =
    "id, organization, display_name, source, external_id, created_ms, updated_ms, version";
const MFA_COLUMNS: &str = "id, user_id, kind, label, credential_id, public_key, sign_count, sealed_secret, \
                           created_ms, last_used_ms";

/// Rows added per statement when replacing a group's members.
const MEMBER_BATCH: usize = 500;

/// A member of a group, as SCIM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub user_name: String,
    /// The `display` a SCIM client gave the membership, if any.
    pub display: Option<String>,
}

/// Users and their second factors.
pub trait UserStore {
    /// Creates a user with a new id.
    fn create_user(&self, user: &NewUser) -> impl Future<Output = Result<User>> + Send;
    fn get_user(&self, organization: &str, id: &str) -> impl Future<Output = Result<Option<User>>> + Send;
    /// By userName, regardless of case.
    fn find_user_by_name(
        &self,
        organization: &str,
        user_name: &str,
    ) -> impl Future<Output = Result<Option<User>>> + Send;
    fn find_user_by_external_id(
        &self,
        organization: &str,
        external_id: &str,
    ) -> impl Future<Output = Result<Option<User>>> + Send;
    /// Users with this address, regardless of case.
    fn find_users_by_email(
        &self,
        organization: &str,
        email: &str,
    ) -> impl Future<Output = Result<Vec<User>>> + Send;
    /// A page of users ordered by userName.
    fn list_users(
        &self,
        organization: &str,
        offset: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<User>>> + Send;
    /// One page of users ordered by userName (case-insensitive), those after
    /// `after_user_name` when given: keyset pages that stay stable while
    /// users are added or removed (the admin API's cursor). With `matching`,
    /// only users whose userName contains it (case-insensitive; on
    /// PostgreSQL the trigram index of SCIM's `co` answers it).
    fn list_users_after(
        &self,
        organization: &str,
        after_user_name: Option<&str>,
        matching: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<User>>> + Send;

    fn count_users(&self, organization: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Replaces the SCIM-managed attributes, if the stored version is still
    /// `expected_version` (when given).
    fn update_user(
        &self,
        organization: &str,
        id: &str,
        update: &UserUpdate,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<User>> + Send;
    fn set_user_active(
        &self,
        organization: &str,
        id: &str,
        active: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    fn set_password_hash(
        &self,
        organization: &str,
        id: &str,
        password_hash: Option<&SecretString>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Notes a sign-in: bookkeeping, neither announced nor versioned (the
    /// ETag stays: what the user is did not change).
    fn record_login(
        &self,
        organization: &str,
        id: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes the user, its emails, factors and memberships. Returns whether it existed.
    fn delete_user(&self, organization: &str, id: &str) -> impl Future<Output = Result<bool>> + Send;

    fn add_mfa_enrolment(
        &self,
        organization: &str,
        user_id: &str,
        label: Option<&str>,
        factor: &MfaFactor,
        at_ms: i64,
    ) -> impl Future<Output = Result<MfaEnrolment>> + Send;
    fn list_mfa_enrolments(
        &self,
        organization: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<MfaEnrolment>>> + Send;
    /// Notes a successful use, and the WebAuthn signature counter it carried.
    /// Returns whether the enrolment exists.
    fn record_mfa_use(
        &self,
        organization: &str,
        enrolment_id: &str,
        sign_count: Option<i64>,
        at_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn delete_mfa_enrolment(
        &self,
        organization: &str,
        enrolment_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The last TOTP time step accepted for this enrolment.
    fn last_totp_step(&self, enrolment_id: &str) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Records `step` as used if it is later than the stored one; `false` if
    /// it is not (a replay, possibly a concurrent one).
    fn take_totp_step(&self, enrolment_id: &str, step: i64) -> impl Future<Output = Result<bool>> + Send;
}

/// Groups and memberships.
pub trait GroupStore {
    fn create_group(&self, group: &NewGroup) -> impl Future<Output = Result<Group>> + Send;
    fn get_group(&self, organization: &str, id: &str) -> impl Future<Output = Result<Option<Group>>> + Send;
    /// By display name, regardless of case.
    fn find_group_by_name(
        &self,
        organization: &str,
        display_name: &str,
    ) -> impl Future<Output = Result<Option<Group>>> + Send;
    fn list_groups(
        &self,
        organization: &str,
        offset: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Group>>> + Send;
    fn count_groups(&self, organization: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Renames the group or changes its externalId.
    fn update_group(
        &self,
        organization: &str,
        id: &str,
        display_name: &str,
        external_id: Option<&str>,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<Group>> + Send;
    /// Deletes the group and its memberships. Returns whether it existed.
    fn delete_group(&self, organization: &str, id: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Adds one member: one row. Returns false if it already was one.
    fn add_member(
        &self,
        organization: &str,
        group_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Returns false if it was not a member.
    fn remove_member(
        &self,
        organization: &str,
        group_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Makes exactly these users the members, all or nothing.
    fn replace_members(
        &self,
        organization: &str,
        group_id: &str,
        user_ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// A page of members ordered by userName.
    fn list_members(
        &self,
        organization: &str,
        group_id: &str,
        offset: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Member>>> + Send;
    fn count_members(&self, organization: &str, group_id: &str) -> impl Future<Output = Result<u64>> + Send;
    fn groups_of_user(
        &self,
        organization: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<Group>>> + Send;
}

pub(super) fn user_change(organization: &str, id: &str) -> Change {
    Change::User { organization: organization.to_owned(), id: id.to_owned() }
}

pub(super) fn group_change(organization: &str, id: &str) -> Change {
    Change::Group { organization: organization.to_owned(), id: id.to_owned() }
}

pub(super) fn not_found(organization: &str, what: &'static str, id: &str) -> StoreError {
    StoreError::NotFound { organization: organization.to_owned(), what, id: id.to_owned() }
}

impl UserStore for Store {
    async fn create_user(&self, user: &NewUser) -> Result<User> {
        let mut tx = self.begin_write(&user.organization).await?;
        let created = insert_user(&mut tx, user, UserExtras::default()).await?;
        tx.audit(user_entry("user.create", &created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_user(&self, organization: &str, id: &str) -> Result<Option<User>> {
        let mut conn = self.connection().await?;
        read_user(&mut conn, organization, "id = $2", id).await
    }

    async fn find_user_by_name(&self, organization: &str, user_name: &str) -> Result<Option<User>> {
        let mut conn = self.connection().await?;
        read_user(&mut conn, organization, "user_name_key = $2", &name_key(user_name)).await
    }

    async fn find_user_by_external_id(&self, organization: &str, external_id: &str) -> Result<Option<User>> {
        let mut conn = self.connection().await?;
        read_user(&mut conn, organization, "external_id = $2", external_id).await
    }

    async fn find_users_by_email(&self, organization: &str, email: &str) -> Result<Vec<User>> {
        let mut conn = self.connection().await?;
        read_users(
            &mut conn,
            "users WHERE organization = $1 \
             AND id IN (SELECT user_id FROM user_emails WHERE organization = $1 AND value_key = $2) \
             ORDER BY user_name_key",
            organization,
            |q| q.bind(name_key(email)),
        )
        .await
    }

    async fn list_users(&self, organization: &str, offset: u64, limit: u32) -> Result<Vec<User>> {
        let mut conn = self.connection().await?;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        read_users(
            &mut conn,
            "users WHERE organization = $1 ORDER BY user_name_key LIMIT $2 OFFSET $3",
            organization,
            |q| q.bind(i64::from(limit)).bind(offset),
        )
        .await
    }

    async fn list_users_after(
        &self,
        organization: &str,
        after_user_name: Option<&str>,
        matching: Option<&str>,
        limit: u32,
    ) -> Result<Vec<User>> {
        let mut conn = self.connection().await?;
        let after = after_user_name.map(name_key).unwrap_or_default();
        let limit = i64::from(limit);
        let Some(text) = matching else {
            return read_users(
                &mut conn,
                "users WHERE organization = $1 AND user_name_key > $2 ORDER BY user_name_key LIMIT $3",
                organization,
                |q| q.bind(after.clone()).bind(limit),
            )
            .await;
        };
        let text = name_key(text);
        let pattern = format!("%{}%", like_escape(&text));
        // Walking the userName index and filtering finds a page at once when
        // matches are spread through the order, but reads the whole rest of
        // the organization when they sit together far down it (`r-09` in
        // `user-090000` …). So: a bounded walk first, then, if it did not
        // fill the page, the trigram index's candidates sorted (PostgreSQL;
        // trigrams need three characters). Placeholders in the order they
        // are bound: SQLite numbers `$n` by first appearance.
        let walked = read_users(
            &mut conn,
            &format!(
                "(SELECT * FROM users WHERE organization = $1 AND user_name_key > $2 \
                 ORDER BY user_name_key LIMIT {SEARCH_WALK}) AS users \
                 WHERE user_name_key LIKE $3 ESCAPE '\\' ORDER BY user_name_key LIMIT $4"
            ),
            organization,
            |q| q.bind(after.clone()).bind(pattern.clone()).bind(limit),
        )
        .await?;
        if i64::try_from(walked.len()).unwrap_or(i64::MAX) >= limit {
            return Ok(walked);
        }
        let source = if self.backend() == Backend::Postgres && text.chars().count() >= 3 {
            // MATERIALIZED keeps the planner from walking the index again.
            "(WITH hits AS MATERIALIZED (SELECT * FROM users WHERE organization = $1 \
              AND user_name_key LIKE $2 ESCAPE '\\') SELECT * FROM hits) AS users \
             WHERE user_name_key > $3 ORDER BY user_name_key LIMIT $4"
        } else {
            "users WHERE organization = $1 AND user_name_key LIKE $2 ESCAPE '\\' \
             AND user_name_key > $3 ORDER BY user_name_key LIMIT $4"
        };
        read_users(&mut conn, source, organization, |q| {
            q.bind(pattern.clone()).bind(after.clone()).bind(limit)
        })
        .await
    }

    async fn count_users(&self, organization: &str) -> Result<u64> {
        count(self, "SELECT COUNT(*) AS n FROM users WHERE organization = $1", organization, None).await
    }

    async fn update_user(
        &self,
        organization: &str,
        id: &str,
        update: &UserUpdate,
        expected_version: Option<i64>,
    ) -> Result<User> {
        let mut tx = self.begin_write(organization).await?;
        update_user_row(&mut tx, organization, id, update, None, expected_version).await?;
        let updated = read_user(tx.conn(), organization, "id = $2", id)
            .await?
            .ok_or_else(|| not_found(organization, "user", id))?;
        tx.audit(user_entry("user.update", &updated)).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn set_user_active(&self, organization: &str, id: &str, active: bool) -> Result<()> {
        let action = if active { "user.reactivate" } else { "user.deactivate" };
        update_user_column(self, organization, id, "active", "set a user's status", action, |q| {
            q.bind(active)
        })
        .await
    }

    async fn set_password_hash(
        &self,
        organization: &str,
        id: &str,
        password_hash: Option<&SecretString>,
    ) -> Result<()> {
        let hash = password_hash.map(|h| h.expose().to_owned());
        let action = if hash.is_some() { "user.setPassword" } else { "user.removePassword" };
        update_user_column(self, organization, id, "password_hash", "set a password hash", action, |q| {
            q.bind(hash)
        })
        .await
    }

    async fn record_login(&self, organization: &str, id: &str, at_ms: i64) -> Result<()> {
        // Bookkeeping, not a change of what the user is: the version (ETag)
        // stays and nothing is logged (no follower reloads the user for it).
        let mut tx = self.begin_unlogged_write().await?;
        let updated = set_last_login(tx.conn(), organization, id, at_ms).await?;
        tx.commit().await?;
        match updated {
            0 => Err(not_found(organization, "user", id)),
            _ => Ok(()),
        }
    }

    async fn delete_user(&self, organization: &str, id: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let row = sqlx::query("DELETE FROM users WHERE organization = $1 AND id = $2 RETURNING user_name")
            .bind(organization)
            .bind(id)
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("delete a user"))?;
        let Some(row) = row else { return Ok(false) };
        let user_name: String = column(&row, "users", "user_name")?;
        tx.record(user_change(organization, id));
        tx.audit(AuditEntry::success("user.delete", user_target(id, &user_name))).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_mfa_enrolment(
        &self,
        organization: &str,
        user_id: &str,
        label: Option<&str>,
        factor: &MfaFactor,
        at_ms: i64,
    ) -> Result<MfaEnrolment> {
        let id = uuid::Uuid::new_v4().to_string();
        let (kind, credential_id, public_key, sign_count, sealed) = match factor {
            MfaFactor::WebAuthn { credential_id, public_key, sign_count } => {
                ("webauthn", Some(credential_id.clone()), Some(public_key.clone()), *sign_count, None)
            }
            MfaFactor::Totp { sealed_secret } => {
                ("totp", None, None, 0, Some(sealed_secret.expose().to_owned()))
            }
        };
        let mut tx = self.begin_write(organization).await?;
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO mfa_enrolments ({MFA_COLUMNS}) \
             SELECT $1, id, $2, $3, $4, $5, $6, $7, $8, NULL FROM users WHERE organization = $9 AND id = $10"
        )))
        .bind(id.as_str())
        .bind(kind)
        .bind(label.map(str::to_owned))
        .bind(credential_id.clone())
        .bind(public_key)
        .bind(sign_count)
        .bind(sealed)
        .bind(at_ms)
        .bind(organization)
        .bind(user_id)
        .execute(tx.conn())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    organization: organization.to_owned(),
                    what: "WebAuthn credential",
                    value: credential_id.clone().unwrap_or_default(),
                }
            } else {
                query_error("add a second factor")(e)
            }
        })?;
        if done.rows_affected() == 0 {
            return Err(not_found(organization, "user", user_id));
        }
        tx.record(user_change(organization, user_id));
        let entry = AuditEntry::success("mfa.enrol", Target::new("user", Some(user_id), None))
            .with_details(serde_json::json!({ "factor": kind, "enrolment": id, "label": label }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(MfaEnrolment {
            id,
            user_id: user_id.to_owned(),
            label: label.map(str::to_owned),
            factor: factor.clone(),
            created_ms: at_ms,
            last_used_ms: None,
        })
    }

    async fn list_mfa_enrolments(&self, organization: &str, user_id: &str) -> Result<Vec<MfaEnrolment>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MFA_COLUMNS} FROM mfa_enrolments \
             WHERE user_id = $1 AND user_id IN (SELECT id FROM users WHERE organization = $2) ORDER BY created_ms, id"
        )))
        .bind(user_id)
        .bind(organization)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list second factors"))?;
        rows.iter().map(mfa_from_row).collect()
    }

    async fn record_mfa_use(
        &self,
        organization: &str,
        enrolment_id: &str,
        sign_count: Option<i64>,
        at_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let row = sqlx::query(
            "UPDATE mfa_enrolments SET last_used_ms = $1, sign_count = COALESCE($2, sign_count) \
             WHERE id = $3 AND user_id IN (SELECT id FROM users WHERE organization = $4) RETURNING user_id",
        )
        .bind(at_ms)
        .bind(sign_count)
        .bind(enrolment_id)
        .bind(organization)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("record a second-factor use"))?;
        let Some(row) = row else { return Ok(false) };
        let user_id: String = column(&row, "mfa_enrolments", "user_id")?;
        tx.record(user_change(organization, &user_id));
        tx.commit().await?;
        Ok(true)
    }

    async fn last_totp_step(&self, enrolment_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT last_step FROM totp_last_steps WHERE enrolment_id = $1")
            .bind(enrolment_id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read the last TOTP step"))?;
        row.map(|row| column(&row, "totp_last_steps", "last_step")).transpose()
    }

    async fn take_totp_step(&self, enrolment_id: &str, step: i64) -> Result<bool> {
        let mut tx = self.begin_unlogged_write().await?;
        let done = sqlx::query(
            "INSERT INTO totp_last_steps (enrolment_id, last_step) VALUES ($1, $2) \
             ON CONFLICT (enrolment_id) DO UPDATE SET last_step = excluded.last_step \
             WHERE totp_last_steps.last_step < excluded.last_step",
        )
        .bind(enrolment_id)
        .bind(step)
        .execute(tx.conn())
        .await
        .map_err(query_error("record a TOTP step"))?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_mfa_enrolment(&self, organization: &str, enrolment_id: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let row = sqlx::query(
            "DELETE FROM mfa_enrolments WHERE id = $1 AND user_id IN (SELECT id FROM users WHERE organization = $2) \
             RETURNING user_id, kind",
        )
        .bind(enrolment_id)
        .bind(organization)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("delete a second factor"))?;
        let Some(row) = row else { return Ok(false) };
        let user_id: String = column(&row, "mfa_enrolments", "user_id")?;
        tx.record(user_change(organization, &user_id));
        let kind: String = column(&row, "mfa_enrolments", "kind")?;
        let entry = AuditEntry::success("mfa.remove", Target::new("user", Some(&user_id), None))
            .with_details(serde_json::json!({ "factor": kind, "enrolment": enrolment_id }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl GroupStore for Store {
    async fn create_group(&self, group: &NewGroup) -> Result<Group> {
        let mut tx = self.begin_write(&group.organization).await?;
        let (id, now) = insert_group(&mut tx, group, None).await?;
        tx.audit(AuditEntry::success("group.create", group_target(&id, &group.display_name))).await?;
        tx.commit().await?;
        Ok(Group {
            id,
            organization: group.organization.clone(),
            display_name: group.display_name.clone(),
            source: group.source,
            external_id: group.external_id.clone(),
            created_ms: now,
            updated_ms: now,
            version: 1,
        })
    }

    async fn get_group(&self, organization: &str, id: &str) -> Result<Option<Group>> {
        let mut conn = self.connection().await?;
        read_group(&mut conn, organization, "id = $2", id).await
    }

    async fn find_group_by_name(&self, organization: &str, display_name: &str) -> Result<Option<Group>> {
        let mut conn = self.connection().await?;
        read_group(&mut conn, organization, "display_name_key = $2", &name_key(display_name)).await
    }

    async fn list_groups(&self, organization: &str, offset: u64, limit: u32) -> Result<Vec<Group>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE organization = $1 ORDER BY display_name_key LIMIT $2 OFFSET $3"
        )))
        .bind(organization)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list groups"))?;
        rows.iter().map(group_from_row).collect()
    }

    async fn count_groups(&self, organization: &str) -> Result<u64> {
        count(self, "SELECT COUNT(*) AS n FROM groups WHERE organization = $1", organization, None).await
    }

    async fn update_group(
        &self,
        organization: &str,
        id: &str,
        display_name: &str,
        external_id: Option<&str>,
        expected_version: Option<i64>,
    ) -> Result<Group> {
        let mut tx = self.begin_write(organization).await?;
        update_group_row(&mut tx, organization, id, display_name, external_id, expected_version).await?;
        let updated = read_group(tx.conn(), organization, "id = $2", id)
            .await?
            .ok_or_else(|| not_found(organization, "group", id))?;
        tx.audit(AuditEntry::success("group.update", group_target(id, &updated.display_name))).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_group(&self, organization: &str, id: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let row =
            sqlx::query("DELETE FROM groups WHERE organization = $1 AND id = $2 RETURNING display_name")
                .bind(organization)
                .bind(id)
                .fetch_optional(tx.conn())
                .await
                .map_err(query_error("delete a group"))?;
        let Some(row) = row else { return Ok(false) };
        let display_name: String = column(&row, "groups", "display_name")?;
        tx.record(group_change(organization, id));
        tx.audit(AuditEntry::success("group.delete", group_target(id, &display_name))).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_member(&self, organization: &str, group_id: &str, user_id: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        // One statement checks that both belong to the organization and adds the row.
        let done = sqlx::query(
            "INSERT INTO memberships (group_id, user_id) \
             SELECT g.id, u.id FROM groups g, users u \
             WHERE g.id = $1 AND g.organization = $3 AND u.id = $2 AND u.organization = $3 \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(organization)
        .execute(tx.conn())
        .await
        .map_err(query_error("add a group member"))?;
        if done.rows_affected() == 0 {
            ensure_member_parties(&mut tx, organization, group_id, user_id).await?;
            return Ok(false);
        }
        touch_group(&mut tx, group_id).await?;
        tx.record(Change::Membership {
            organization: organization.to_owned(),
            group_id: group_id.to_owned(),
            user_id: user_id.to_owned(),
        });
        tx.audit(membership_entry("group.addMember", group_id, user_id)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_member(&self, organization: &str, group_id: &str, user_id: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let done = sqlx::query(
            "DELETE FROM memberships WHERE group_id = $1 AND user_id = $2 \
             AND group_id IN (SELECT id FROM groups WHERE organization = $3)",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(organization)
        .execute(tx.conn())
        .await
        .map_err(query_error("remove a group member"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        touch_group(&mut tx, group_id).await?;
        tx.record(Change::Membership {
            organization: organization.to_owned(),
            group_id: group_id.to_owned(),
            user_id: user_id.to_owned(),
        });
        tx.audit(membership_entry("group.removeMember", group_id, user_id)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replace_members(&self, organization: &str, group_id: &str, user_ids: &[String]) -> Result<()> {
        let wanted: BTreeSet<&str> = user_ids.iter().map(String::as_str).collect();
        let mut tx = self.begin_write(organization).await?;
        if read_group(tx.conn(), organization, "id = $2", group_id).await?.is_none() {
            return Err(not_found(organization, "group", group_id));
        }
        sqlx::query("DELETE FROM memberships WHERE group_id = $1")
            .bind(group_id)
            .execute(tx.conn())
            .await
            .map_err(query_error("clear a group's members"))?;
        let wanted: Vec<&str> = wanted.into_iter().collect();
        for batch in wanted.chunks(MEMBER_BATCH) {
            let placeholders: Vec<String> = (3..3 + batch.len()).map(|i| format!("${i}")).collect();
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO memberships (group_id, user_id) \
                 SELECT $1, id FROM users WHERE organization = $2 AND id IN ({})",
                placeholders.join(", ")
            )))
            .bind(group_id)
            .bind(organization);
            for user in batch {
                query = query.bind(*user);
            }
            let done = query.execute(tx.conn()).await.map_err(query_error("add group members"))?;
            if done.rows_affected() != batch.len() as u64 {
                // Some id is not a user of this organization: roll back all of it.
                let missing = first_missing_user(&mut tx, organization, batch).await?;
                return Err(not_found(organization, "user", &missing));
            }
        }
        touch_group(&mut tx, group_id).await?;
        tx.record(Change::GroupMembers {
            organization: organization.to_owned(),
            group_id: group_id.to_owned(),
        });
        let entry = AuditEntry::success("group.replaceMembers", Target::new("group", Some(group_id), None))
            .with_details(serde_json::json!({ "members": wanted.len() }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_members(
        &self,
        organization: &str,
        group_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.id AS user_id, u.user_name AS user_name, m.display AS display FROM memberships m \
             JOIN users u ON u.id = m.user_id \
             WHERE m.group_id = $1 AND u.organization = $2 ORDER BY u.user_name_key LIMIT $3 OFFSET $4",
        )
        .bind(group_id)
        .bind(organization)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list group members"))?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user_id: column(row, "memberships", "user_id")?,
                    user_name: column(row, "memberships", "user_name")?,
                    display: column(row, "memberships", "display")?,
                })
            })
            .collect()
    }

    async fn count_members(&self, organization: &str, group_id: &str) -> Result<u64> {
        count(
            self,
            "SELECT COUNT(*) AS n FROM memberships m JOIN groups g ON g.id = m.group_id \
             WHERE g.organization = $1 AND m.group_id = $2",
            organization,
            Some(group_id),
        )
        .await
    }

    async fn groups_of_user(&self, organization: &str, user_id: &str) -> Result<Vec<Group>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE organization = $1 \
             AND id IN (SELECT group_id FROM memberships WHERE user_id = $2) ORDER BY display_name_key"
        )))
        .bind(organization)
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list a user's groups"))?;
        rows.iter().map(group_from_row).collect()
    }
}

// === Helpers. ===

pub(super) fn user_name_taken(
    error: sqlx::Error,
    organization: &str,
    user_name: &str,
    operation: &'static str,
) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::AlreadyExists {
            organization: organization.to_owned(),
            what: "userName",
            value: user_name.to_owned(),
        }
    } else {
        query_error(operation)(error)
    }
}

pub(super) fn group_name_taken(
    error: sqlx::Error,
    organization: &str,
    name: &str,
    operation: &'static str,
) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::AlreadyExists {
            organization: organization.to_owned(),
            what: "group displayName",
            value: name.to_owned(),
        }
    } else {
        query_error(operation)(error)
    }
}

/// Why a conditional update touched no row: the row is gone, or its version moved on.
pub(super) async fn missing_or_moved_on(
    tx: &mut WriteTx<'_>,
    table: &'static str,
    what: &'static str,
    organization: &str,
    id: &str,
    expected: Option<i64>,
) -> StoreError {
    let found = sqlx::query(AssertSqlSafe(format!(
        "SELECT version FROM {table} WHERE organization = $1 AND id = $2"
    )))
    .bind(organization)
    .bind(id)
    .fetch_optional(tx.conn())
    .await;
    match (found, expected) {
        (Ok(Some(row)), Some(expected)) => match column::<i64>(&row, table, "version") {
            Ok(found) => StoreError::VersionMismatch { what, id: id.to_owned(), expected, found },
            Err(error) => error,
        },
        (Ok(_), _) => not_found(organization, what, id),
        (Err(error), _) => query_error("read a version")(error),
    }
}

async fn update_user_column(
    store: &Store,
    organization: &str,
    id: &str,
    column_name: &'static str,
    operation: &'static str,
    action: &'static str,
    bind: impl FnOnce(AnyQuery<'static>) -> AnyQuery<'static>,
) -> Result<()> {
    let query = sqlx::query(AssertSqlSafe(format!(
        "UPDATE users SET {column_name} = $1, updated_ms = $2, version = version + 1 \
         WHERE organization = $3 AND id = $4 RETURNING user_name"
    )));
    let query = bind(query).bind(now_ms()).bind(organization.to_owned()).bind(id.to_owned());
    let mut tx = store.begin_write(organization).await?;
    let row = query.fetch_optional(tx.conn()).await.map_err(query_error(operation))?;
    let Some(row) = row else { return Err(not_found(organization, "user", id)) };
    let user_name: String = column(&row, "users", "user_name")?;
    tx.record(user_change(organization, id));
    tx.audit(AuditEntry::success(action, user_target(id, &user_name))).await?;
    tx.commit().await?;
    Ok(())
}

/// The audit target of a user.
/// Sets a user's last sign-in on `conn` (bookkeeping: the version stays and
/// nothing is logged); how many rows it changed.
pub(super) async fn set_last_login(
    conn: &mut AnyConnection,
    organization: &str,
    id: &str,
    at_ms: i64,
) -> Result<u64> {
    let done = sqlx::query("UPDATE users SET last_login_ms = $1 WHERE organization = $2 AND id = $3")
        .bind(at_ms)
        .bind(organization)
        .bind(id)
        .execute(conn)
        .await
        .map_err(query_error("record a login"))?;
    Ok(done.rows_affected())
}

pub(super) fn user_target(id: &str, user_name: &str) -> Target {
    Target::new("user", Some(id), Some(user_name))
}

/// The audit target of a group.
pub(super) fn group_target(id: &str, display_name: &str) -> Target {
    Target::new("group", Some(id), Some(display_name))
}

/// `action` on `user`, with what a reader of the trail wants to see of it.
pub(super) fn user_entry(action: &str, user: &User) -> AuditEntry {
    AuditEntry::success(action, user_target(&user.id, &user.user_name)).with_details(serde_json::json!({
        "active": user.active,
        "source": user.source.as_str(),
        "emails": user.emails.iter().map(|e| e.value.as_str()).collect::<Vec<_>>(),
    }))
}

fn membership_entry(action: &str, group_id: &str, user_id: &str) -> AuditEntry {
    AuditEntry::success(action, Target::new("group", Some(group_id), None))
        .with_details(serde_json::json!({ "user": user_id }))
}

/// What a SCIM write keeps beside the columns every user has.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct UserExtras<'a> {
    /// Attributes without a column (title, the enterprise extension, …).
    pub scim_json: Option<&'a str>,
    /// The IdentityProvider that created the user.
    pub provisioned_by: Option<&'a str>,
}

/// The one INSERT of a user, for administration and SCIM alike; returns the
/// user as written.
pub(super) async fn insert_user(
    tx: &mut WriteTx<'_>,
    user: &NewUser,
    extras: UserExtras<'_>,
) -> Result<User> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO users ({USER_COLUMNS}, user_name_key, scim_json, provisioned_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11, 1, $12, $13, $14)"
    )))
    .bind(id.as_str())
    .bind(user.organization.as_str())
    .bind(user.user_name.as_str())
    .bind(user.display_name.clone())
    .bind(user.given_name.clone())
    .bind(user.family_name.clone())
    .bind(user.external_id.clone())
    .bind(user.active)
    .bind(user.source.as_str())
    .bind(user.password_hash.as_ref().map(|h| h.expose().to_owned()))
    .bind(now)
    .bind(name_key(&user.user_name))
    .bind(extras.scim_json)
    .bind(extras.provisioned_by)
    .execute(tx.conn())
    .await
    .map_err(|e| user_name_taken(e, &user.organization, &user.user_name, "create a user"))?;
    write_emails(tx, &user.organization, &id, &user.emails).await?;
    tx.record(user_change(&user.organization, &id));
    Ok(User {
        id,
        organization: user.organization.clone(),
        user_name: user.user_name.clone(),
        display_name: user.display_name.clone(),
        given_name: user.given_name.clone(),
        family_name: user.family_name.clone(),
        external_id: user.external_id.clone(),
        emails: user.emails.clone(),
        active: user.active,
        source: user.source,
        password_hash: user.password_hash.clone(),
        last_login_ms: None,
        created_ms: now,
        updated_ms: now,
        version: 1,
    })
}

/// The one UPDATE of a user's attributes (and emails), if its version is
/// still `expected_version` (when given). `scim_json`: `Some` replaces the
/// SCIM extras (`Some(None)` clears them), `None` keeps them.
pub(super) async fn update_user_row(
    tx: &mut WriteTx<'_>,
    organization: &str,
    id: &str,
    update: &UserUpdate,
    scim_json: Option<Option<&str>>,
    expected_version: Option<i64>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE users SET user_name = $1, user_name_key = $2, display_name = $3, given_name = $4, \
         family_name = $5, external_id = $6, active = $7, \
         scim_json = CASE WHEN $8 THEN $9 ELSE scim_json END, updated_ms = $10, version = version + 1 \
         WHERE organization = $11 AND id = $12 AND ($13 IS NULL OR version = $13)",
    )
    .bind(update.user_name.as_str())
    .bind(name_key(&update.user_name))
    .bind(update.display_name.clone())
    .bind(update.given_name.clone())
    .bind(update.family_name.clone())
    .bind(update.external_id.clone())
    .bind(update.active)
    .bind(scim_json.is_some())
    .bind(scim_json.flatten())
    .bind(now_ms())
    .bind(organization)
    .bind(id)
    .bind(expected_version)
    .execute(tx.conn())
    .await
    .map_err(|e| user_name_taken(e, organization, &update.user_name, "update a user"))?;
    if done.rows_affected() == 0 {
        return Err(missing_or_moved_on(tx, "users", "user", organization, id, expected_version).await);
    }
    tx.execute(sqlx::query("DELETE FROM user_emails WHERE user_id = $1").bind(id), "replace a user's emails")
        .await?;
    write_emails(tx, organization, id, &update.emails).await?;
    tx.record(user_change(organization, id));
    Ok(())
}

/// The one INSERT of a group; returns its id and creation time.
pub(super) async fn insert_group(
    tx: &mut WriteTx<'_>,
    group: &NewGroup,
    provisioned_by: Option<&str>,
) -> Result<(String, i64)> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO groups ({GROUP_COLUMNS}, display_name_key, provisioned_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7, $8)"
    )))
    .bind(id.as_str())
    .bind(group.organization.as_str())
    .bind(group.display_name.as_str())
    .bind(group.source.as_str())
    .bind(group.external_id.clone())
    .bind(now)
    .bind(name_key(&group.display_name))
    .bind(provisioned_by)
    .execute(tx.conn())
    .await
    .map_err(|e| group_name_taken(e, &group.organization, &group.display_name, "create a group"))?;
    tx.record(group_change(&group.organization, &id));
    Ok((id, now))
}

/// The one UPDATE of a group's name and externalId, if its version is still
/// `expected_version` (when given).
pub(super) async fn update_group_row(
    tx: &mut WriteTx<'_>,
    organization: &str,
    id: &str,
    display_name: &str,
    external_id: Option<&str>,
    expected_version: Option<i64>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE groups SET display_name = $1, display_name_key = $2, external_id = $3, updated_ms = $4, \
         version = version + 1 WHERE organization = $5 AND id = $6 AND ($7 IS NULL OR version = $7)",
    )
    .bind(display_name)
    .bind(name_key(display_name))
    .bind(external_id.map(str::to_owned))
    .bind(now_ms())
    .bind(organization)
    .bind(id)
    .bind(expected_version)
    .execute(tx.conn())
    .await
    .map_err(|e| group_name_taken(e, organization, display_name, "update a group"))?;
    if done.rows_affected() == 0 {
        return Err(missing_or_moved_on(tx, "groups", "group", organization, id, expected_version).await);
    }
    tx.record(group_change(organization, id));
    Ok(())
}

pub(super) async fn write_emails(
    tx: &mut WriteTx<'_>,
    organization: &str,
    user_id: &str,
    emails: &[Email],
) -> Result<()> {
    for (position, email) in emails.iter().enumerate() {
        sqlx::query(
            "INSERT INTO user_emails (user_id, position, organization, value, value_key, kind, is_primary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user_id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(organization)
        .bind(email.value.as_str())
        .bind(name_key(&email.value))
        .bind(email.kind.clone())
        .bind(email.primary)
        .execute(tx.conn())
        .await
        .map_err(query_error("write a user's emails"))?;
    }
    Ok(())
}

/// Bumps a group's version (its SCIM ETag) when its members change.
async fn touch_group(tx: &mut WriteTx<'_>, group_id: &str) -> Result<()> {
    sqlx::query("UPDATE groups SET version = version + 1, updated_ms = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(group_id)
        .execute(tx.conn())
        .await
        .map_err(query_error("bump a group's version"))?;
    Ok(())
}

/// After an insert that added nothing: an error if the group or the user is
/// not in the organization, `Ok` if the membership already existed.
async fn ensure_member_parties(
    tx: &mut WriteTx<'_>,
    organization: &str,
    group_id: &str,
    user_id: &str,
) -> Result<()> {
    if read_group(tx.conn(), organization, "id = $2", group_id).await?.is_none() {
        return Err(not_found(organization, "group", group_id));
    }
    let user = sqlx::query("SELECT id FROM users WHERE organization = $1 AND id = $2")
        .bind(organization)
        .bind(user_id)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a user"))?;
    match user {
        Some(_) => Ok(()),
        None => Err(not_found(organization, "user", user_id)),
    }
}

async fn first_missing_user(tx: &mut WriteTx<'_>, organization: &str, ids: &[&str]) -> Result<String> {
    for id in ids {
        let found = sqlx::query("SELECT id FROM users WHERE organization = $1 AND id = $2")
            .bind(organization)
            .bind(*id)
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("read a user"))?;
        if found.is_none() {
            return Ok((*id).to_owned());
        }
    }
    Ok(String::new())
}

async fn count(store: &Store, sql: &'static str, organization: &str, id: Option<&str>) -> Result<u64> {
    let mut query = sqlx::query(sql).bind(organization);
    if let Some(id) = id {
        query = query.bind(id);
    }
    let row = query.fetch_one(store.pool()).await.map_err(query_error("count"))?;
    let n: i64 = column(&row, "count", "n")?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// One user matching `filter` (over `$1` = organization and `$2` = value).
async fn read_user(
    conn: &mut AnyConnection,
    organization: &str,
    filter: &str,
    value: &str,
) -> Result<Option<User>> {
    let mut users =
        read_users(conn, &format!("users WHERE organization = $1 AND {filter} LIMIT 1"), organization, |q| {
            q.bind(value.to_owned())
        })
        .await?;
    Ok(users.pop())
}

/// Users from `source` (what follows `FROM`: the table `users`, or a
/// subquery named `users`, and its conditions; `$1` is the organization and
/// `bind` adds the rest), with their emails.
pub(super) async fn read_users(
    conn: &mut AnyConnection,
    source: &str,
    organization: &str,
    bind: impl Fn(
        sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<Vec<User>> {
    let rows =
        bind(sqlx::query(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM {source}"))).bind(organization))
            .fetch_all(&mut *conn)
            .await
            .map_err(query_error("read users"))?;
    let mut users: Vec<User> = rows.iter().map(user_from_row).collect::<Result<_>>()?;
    attach_emails(conn, users.iter_mut()).await?;
    Ok(users)
}

/// Reads the emails of `users` by id (in batches, ordered as stored) and
/// puts each on its user: what every reader of users does after its own
/// query, rather than running that query's conditions a second time.
pub(super) async fn attach_emails<'a>(
    conn: &mut AnyConnection,
    users: impl IntoIterator<Item = &'a mut User>,
) -> Result<()> {
    let mut users: Vec<&mut User> = users.into_iter().collect();
    let position: HashMap<String, usize> =
        users.iter().enumerate().map(|(n, user)| (user.id.clone(), n)).collect();
    let ids: Vec<String> = users.iter().map(|user| user.id.clone()).collect();
    for chunk in ids.chunks(EMAIL_READ_CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT user_id, value, kind, is_primary FROM user_emails \
             WHERE user_id IN ({}) ORDER BY user_id, position",
            placeholders.join(", ")
        )));
        for id in chunk {
            query = query.bind(id.clone());
        }
        let rows = query.fetch_all(&mut *conn).await.map_err(query_error("read users' emails"))?;
        for row in &rows {
            let user_id: String = column(row, "user_emails", "user_id")?;
            let email = Email {
                value: column(row, "user_emails", "value")?,
                kind: column(row, "user_emails", "kind")?,
                primary: bool_column(row, "user_emails", "is_primary")?,
            };
            if let Some(&n) = position.get(&user_id) {
                users[n].emails.push(email);
            }
        }
    }
    Ok(())
}

pub(super) fn user_from_row(row: &AnyRow) -> Result<User> {
    const T: &str = "users";
    Ok(User {
        id: column(row, T, "id")?,
        organization: column(row, T, "organization")?,
        user_name: column(row, T, "user_name")?,
        display_name: column(row, T, "display_name")?,
        given_name: column(row, T, "given_name")?,
        family_name: column(row, T, "family_name")?,
        external_id: column(row, T, "external_id")?,
        emails: Vec::new(),
        active: bool_column(row, T, "active")?,
        source: enum_column(row, T, "source", UserSource::parse)?,
        password_hash: column::<Option<String>>(row, T, "password_hash")?.map(SecretString::from),
        last_login_ms: column(row, T, "last_login_ms")?,
        created_ms: column(row, T, "created_ms")?,
        updated_ms: column(row, T, "updated_ms")?,
        version: column(row, T, "version")?,
    })
}

pub(super) async fn read_group(
    conn: &mut AnyConnection,
    organization: &str,
    filter: &str,
    value: &str,
) -> Result<Option<Group>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE organization = $1 AND {filter}"
    )))
    .bind(organization)
    .bind(value)
    .fetch_optional(conn)
    .await
    .map_err(query_error("read a group"))?;
    row.as_ref().map(group_from_row).transpose()
}

pub(super) fn group_from_row(row: &AnyRow) -> Result<Group> {
    const T: &str = "groups";
    Ok(Group {
        id: column(row, T, "id")?,
        organization: column(row, T, "organization")?,
        display_name: column(row, T, "display_name")?,
        source: enum_column(row, T, "source", GroupSource::parse)?,
        external_id: column(row, T, "external_id")?,
        created_ms: column(row, T, "created_ms")?,
        updated_ms: column(row, T, "updated_ms")?,
        version: column(row, T, "version")?,
    })
}

fn mfa_from_row(row: &AnyRow) -> Result<MfaEnrolment> {
    const T: &str = "mfa_enrolments";
    let kind: String = column(row, T, "kind")?;
    let factor = match kind.as_str() {
        "webauthn" => MfaFactor::WebAuthn {
            credential_id: column::<Option<String>>(row, T, "credential_id")?.unwrap_or_default(),
            public_key: column::<Option<String>>(row, T, "public_key")?.unwrap_or_default(),
            sign_count: column(row, T, "sign_count")?,
        },
        "totp" => MfaFactor::Totp {
            sealed_secret: SecretString::from(
                column::<Option<String>>(row, T, "sealed_secret")?.unwrap_or_default(),
            ),
        },
        other => {
            return Err(StoreError::Corrupt {
                table: T,
                column: "kind",
                source: format!("unknown {other:?}").into(),
            });
        }
    };
    Ok(MfaEnrolment {
        id: column(row, T, "id")?,
        user_id: column(row, T, "user_id")?,
        label: column(row, T, "label")?,
        factor,
        created_ms: column(row, T, "created_ms")?,
        last_used_ms: column(row, T, "last_used_ms")?,
    })
}
