//! Single sign-on state the token service shares between its replicas and
//! with the operator.
//!
//! ```text
//!  sso_requests (id_hash)          a sign-in sent upstream: bound to the browser's pre-login id,
//!                                  the client's request (or the invitation) to resume, the SAML
//!                                  request ID; taken once
//!  saml_assertions_seen            assertion IDs accepted (replay cache), until they expire
//!  federated_identities            (org, idp, upstream subject) ──► users.id
//!  groups (source idp) ─< memberships   hydrated from the upstream's groups claim at sign-in
//!  sso_sign_in_counts (hour)       successes / failures per hour ┐
//!  sso_health                      last error, last success,      ├─► operator ─► IdentityProvider status
//!                                  successes in the current stage ┘
//! ```

use std::collections::BTreeSet;
use std::future::Future;

use sqlx::any::AnyRow;

use super::changes::{Change, WriteTx};
use super::error::query_error;
use super::identity::{UserExtras, insert_group, insert_user, read_users};
use super::records::*;
use super::sessions::{SignInWrites, write_sign_in};
use super::{Result, Store, column};
use crate::audit::AuditEntry;

const HOUR_MS: i64 = 60 * 60 * 1000;

/// A sign-in sent to an upstream, waiting for its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoRequest {
    /// SHA-256 (hex) of the `state` / `RelayState` token.
    pub id_hash: String,
    pub organization: String,
    pub identity_provider: String,
    /// SHA-256 (hex) of the browser's pre-login id.
    pub pre_login_hash: String,
    /// SAML: the AuthnRequest ID the response must answer.
    pub saml_request_id: Option<String>,
    /// The client's authorization request, to resume (JSON).
    pub authorization_request: String,
    /// `sha256:<hex>` of the invitation link's token, when the sign-in
    /// accepts an invitation instead (`authorization_request` is then `[]`).
    pub invitation_hash: Option<String>,
    /// SAML: the identity the ACS verified (JSON), once it has.
    pub verified_identity: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// One sign-in's outcome, for the counts and the last error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoOutcome<'a> {
    pub organization: &'a str,
    pub identity_provider: &'a str,
    /// The rollout stage in force at the time.
    pub stage: &'a str,
    /// `None`: success. `Some((reason, message))`: failure.
    pub failure: Option<(&'a str, &'a str)>,
    pub at_ms: i64,
}

/// Who may take a pending sign-in: the provider answering it, and the
/// browser that started it (SHA-256 hex of its pre-login id).
#[derive(Clone, Copy, Debug)]
pub struct SsoOwner<'a> {
    pub identity_provider: &'a str,
    pub pre_login_hash: &'a str,
}

/// A SAML assertion the ACS accepted, for the replay cache.
#[derive(Clone, Copy, Debug)]
pub struct SeenAssertion<'a> {
    pub identity_provider: &'a str,
    pub assertion_id: &'a str,
    /// Remembered until then (its NotOnOrAfter, with leeway).
    pub expires_ms: i64,
}

/// What became of a verified SAML assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamlAcceptance {
    /// Its identity is kept on the pending sign-in.
    Accepted,
    /// Its ID was presented before: a replay.
    Replayed,
    /// The pending sign-in is gone or holds an identity already.
    AlreadyAnswered,
}

/// What a sign-in through a provider says of the user: the upstream
/// subject is theirs (this sign-in noted on the link), and with `groups`,
/// their memberships of the provider's groups are those (as
/// [`FederationStore::sync_upstream_groups`] makes them).
#[derive(Clone, Copy, Debug)]
pub struct UpstreamSignIn<'a> {
    pub organization: &'a str,
    pub identity_provider: &'a str,
    pub subject: &'a str,
    pub user_id: &'a str,
    pub at_ms: i64,
    pub groups: Option<&'a [String]>,
    /// With `groups`: leave the provider's groups not listed.
    pub remove_others: bool,
}

/// What the operator reports of an IdentityProvider's sign-ins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsoHealth {
    pub sign_ins_24h: u64,
    pub failures_24h: u64,
    pub stage: Option<String>,
    /// Successful sign-ins since the stage was last seen to change.
    pub successes_in_stage: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_reason: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// The store as single sign-on needs it.
pub trait FederationStore {
    /// Records a sign-in sent upstream; drops expired ones on the way.
    fn create_sso_request(&self, request: &SsoRequest) -> impl Future<Output = Result<()>> + Send;

    /// The pending sign-in, if it exists and has not expired (the SAML ACS
    /// reads it before the browser comes back to take it).
    fn find_sso_request(
        &self,
        organization: &str,
        id_hash: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<SsoRequest>>> + Send;

    /// Takes (deletes and returns) the pending sign-in if `owner` started
    /// it and it has not expired: each is used once, whichever replica is
    /// asked, and one presented by another browser or provider is left to
    /// its own.
    fn take_sso_request(
        &self,
        organization: &str,
        id_hash: &str,
        owner: SsoOwner<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<SsoRequest>>> + Send;

    /// What the ACS verified, in one transaction: the assertion's ID
    /// remembered until it expires (the replay cache), and the identity
    /// kept on the pending SAML sign-in.
    fn accept_saml_assertion(
        &self,
        organization: &str,
        id_hash: &str,
        assertion: &SeenAssertion<'_>,
        identity_json: &str,
    ) -> impl Future<Output = Result<SamlAcceptance>> + Send;

    /// The local user an upstream subject is linked to.
    fn linked_user(
        &self,
        organization: &str,
        identity_provider: &str,
        subject: &str,
    ) -> impl Future<Output = Result<Option<User>>> + Send;

    /// Writes what a sign-in through the provider says of the user, in one
    /// transaction.
    fn link_upstream_sign_in(&self, sign_in: &UpstreamSignIn<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Creates a user at first sign-in (JIT), linked to the upstream subject,
    /// in one transaction.
    fn create_jit_user(
        &self,
        user: &NewUser,
        identity_provider: &str,
        subject: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<User>> + Send;

    /// Makes the user's provider-managed memberships those of `groups`:
    /// creates missing groups as `source=idp` groups of the provider, adds
    /// the user to each; with `remove_others`, removes them from the
    /// provider's groups that are not listed. Groups managed in Portcullis
    /// (or by another provider) are never touched. One transaction.
    fn sync_upstream_groups(
        &self,
        organization: &str,
        identity_provider: &str,
        user_id: &str,
        groups: &[String],
        remove_others: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Counts one sign-in's outcome.
    fn record_sso_outcome(&self, outcome: &SsoOutcome<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Counts one sign-in's outcome and appends its audit event (as the
    /// store handle's actor), with what a successful one says of the user
    /// ([`FederationStore::link_upstream_sign_in`]) and, when it signs the
    /// user in there and then, its session and code, in one transaction.
    fn record_sso_sign_in(
        &self,
        outcome: &SsoOutcome<'_>,
        entry: AuditEntry,
        sign_in: Option<&UpstreamSignIn<'_>>,
        writes: Option<&SignInWrites<'_>>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets the counts of hours before `before_ms` (the purge's).
    fn forget_sso_counts(&self, before_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Sign-ins of the last 24 hours before `now_ms`, and the last error.
    fn sso_health(
        &self,
        organization: &str,
        identity_provider: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<SsoHealth>> + Send;
}

const REQUEST_COLUMNS: &str = "id_hash, organization, identity_provider, pre_login_hash, saml_request_id, \
                               authorization_request, verified_identity, created_ms, expires_ms, \
                               invitation_hash";

fn request_from_row(row: &AnyRow) -> Result<SsoRequest> {
    const T: &str = "sso_requests";
    Ok(SsoRequest {
        id_hash: column(row, T, "id_hash")?,
        organization: column(row, T, "organization")?,
        identity_provider: column(row, T, "identity_provider")?,
        pre_login_hash: column(row, T, "pre_login_hash")?,
        saml_request_id: column(row, T, "saml_request_id")?,
        authorization_request: column(row, T, "authorization_request")?,
        verified_identity: column(row, T, "verified_identity")?,
        created_ms: column(row, T, "created_ms")?,
        expires_ms: column(row, T, "expires_ms")?,
        invitation_hash: column(row, T, "invitation_hash")?,
    })
}

impl FederationStore for Store {
    async fn create_sso_request(&self, request: &SsoRequest) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        for table in ["sso_requests", "saml_assertions_seen"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE expires_ms < $1")))
                .bind(request.created_ms)
                .execute(tx.conn())
                .await
                .map_err(query_error("drop expired sign-in state"))?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sso_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(request.id_hash.as_str())
        .bind(request.organization.as_str())
        .bind(request.identity_provider.as_str())
        .bind(request.pre_login_hash.as_str())
        .bind(request.saml_request_id.clone())
        .bind(request.authorization_request.as_str())
        .bind(request.verified_identity.clone())
        .bind(request.created_ms)
        .bind(request.expires_ms)
        .bind(request.invitation_hash.clone())
        .execute(tx.conn())
        .await
        .map_err(query_error("record a sign-in sent upstream"))?;
        tx.commit().await
    }

    async fn find_sso_request(
        &self,
        organization: &str,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SsoRequest>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM sso_requests \
             WHERE organization = $1 AND id_hash = $2 AND expires_ms > $3"
        )))
        .bind(organization)
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read a pending sign-in"))?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn take_sso_request(
        &self,
        organization: &str,
        id_hash: &str,
        owner: SsoOwner<'_>,
        now_ms: i64,
    ) -> Result<Option<SsoRequest>> {
        // One statement, atomic on its own: no transaction around it.
        let _turn = self.write_turn().await;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM sso_requests WHERE organization = $1 AND id_hash = $2 AND identity_provider = $3 \
             AND pre_login_hash = $4 AND expires_ms > $5 RETURNING {REQUEST_COLUMNS}"
        )))
        .bind(organization)
        .bind(id_hash)
        .bind(owner.identity_provider)
        .bind(owner.pre_login_hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("take a pending sign-in"))?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn accept_saml_assertion(
        &self,
        organization: &str,
        id_hash: &str,
        assertion: &SeenAssertion<'_>,
        identity_json: &str,
    ) -> Result<SamlAcceptance> {
        let mut tx = self.begin_unlogged_write().await?;
        let first_time = sqlx::query(
            "INSERT INTO saml_assertions_seen (organization, identity_provider, assertion_id, expires_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (organization, identity_provider, assertion_id) DO NOTHING",
        )
        .bind(organization)
        .bind(assertion.identity_provider)
        .bind(assertion.assertion_id)
        .bind(assertion.expires_ms)
        .execute(tx.conn())
        .await
        .map_err(query_error("remember a SAML assertion"))?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(SamlAcceptance::Replayed);
        }
        let kept = sqlx::query(
            "UPDATE sso_requests SET verified_identity = $1 \
             WHERE organization = $2 AND id_hash = $3 AND verified_identity IS NULL",
        )
        .bind(identity_json)
        .bind(organization)
        .bind(id_hash)
        .execute(tx.conn())
        .await
        .map_err(query_error("keep a verified SAML identity"))?
        .rows_affected()
            == 1;
        // The assertion is remembered either way: it was presented.
        tx.commit().await?;
        Ok(if kept { SamlAcceptance::Accepted } else { SamlAcceptance::AlreadyAnswered })
    }

    async fn linked_user(
        &self,
        organization: &str,
        identity_provider: &str,
        subject: &str,
    ) -> Result<Option<User>> {
        let mut conn = self.connection().await?;
        read_users(
            &mut conn,
            "users WHERE organization = $1 AND id = (SELECT user_id FROM federated_identities \
             WHERE organization = $1 AND identity_provider = $2 AND subject = $3)",
            organization,
            |query| query.bind(identity_provider.to_owned()).bind(subject.to_owned()),
        )
        .await
        .map(|mut users| users.pop())
    }

    async fn link_upstream_sign_in(&self, sign_in: &UpstreamSignIn<'_>) -> Result<()> {
        let mut tx = self.begin_write(sign_in.organization).await?;
        write_upstream_sign_in(&mut tx, sign_in).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_jit_user(
        &self,
        user: &NewUser,
        identity_provider: &str,
        subject: &str,
        at_ms: i64,
    ) -> Result<User> {
        let mut tx = self.begin_write(&user.organization).await?;
        let extras = UserExtras { scim_json: None, provisioned_by: Some(identity_provider) };
        let created = insert_user(&mut tx, user, extras).await?;
        link(tx.conn(), &user.organization, identity_provider, subject, &created.id, at_ms).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn sync_upstream_groups(
        &self,
        organization: &str,
        identity_provider: &str,
        user_id: &str,
        groups: &[String],
        remove_others: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write(organization).await?;
        GroupSync { organization, identity_provider }.apply(&mut tx, user_id, groups, remove_others).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_sso_outcome(&self, outcome: &SsoOutcome<'_>) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        count_outcome(tx.conn(), outcome).await?;
        tx.commit().await
    }

    async fn record_sso_sign_in(
        &self,
        outcome: &SsoOutcome<'_>,
        entry: AuditEntry,
        sign_in: Option<&UpstreamSignIn<'_>>,
        writes: Option<&SignInWrites<'_>>,
    ) -> Result<()> {
        let mut tx = self.begin_write(outcome.organization).await?;
        if let Some(sign_in) = sign_in {
            write_upstream_sign_in(&mut tx, sign_in).await?;
        }
        if let Some(writes) = writes {
            write_sign_in(tx.conn(), writes).await?;
        }
        count_outcome(tx.conn(), outcome).await?;
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_sso_counts(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.begin_unlogged_write().await?;
        let done = sqlx::query("DELETE FROM sso_sign_in_counts WHERE hour < $1")
            .bind(before_ms.div_euclid(HOUR_MS))
            .execute(tx.conn())
            .await
            .map_err(query_error("forget old sign-in counts"))?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn sso_health(
        &self,
        organization: &str,
        identity_provider: &str,
        now_ms: i64,
    ) -> Result<SsoHealth> {
        let since = (now_ms - 24 * HOUR_MS).div_euclid(HOUR_MS);
        let counts = sqlx::query(
            "SELECT CAST(COALESCE(SUM(successes), 0) AS BIGINT) AS successes, \
             CAST(COALESCE(SUM(failures), 0) AS BIGINT) AS failures \
             FROM sso_sign_in_counts WHERE organization = $1 AND identity_provider = $2 AND hour > $3",
        )
        .bind(organization)
        .bind(identity_provider)
        .bind(since)
        .fetch_one(self.pool())
        .await
        .map_err(query_error("count recent sign-ins"))?;
        let count = |name: &'static str| -> Result<u64> {
            Ok(u64::try_from(column::<i64>(&counts, "sso_sign_in_counts", name)?).unwrap_or(0))
        };
        let successes = count("successes")?;
        let failures = count("failures")?;
        let row = sqlx::query(
            "SELECT stage, successes_in_stage, last_success_ms, last_error, last_error_reason, last_error_ms \
             FROM sso_health WHERE organization = $1 AND identity_provider = $2",
        )
        .bind(organization)
        .bind(identity_provider)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read sign-in health"))?;
        let mut health =
            SsoHealth { sign_ins_24h: successes + failures, failures_24h: failures, ..SsoHealth::default() };
        if let Some(row) = row {
            const T: &str = "sso_health";
            health.stage = Some(column(&row, T, "stage")?);
            health.successes_in_stage =
                u64::try_from(column::<i64>(&row, T, "successes_in_stage")?).unwrap_or(0);
            health.last_success_ms = column(&row, T, "last_success_ms")?;
            health.last_error = column(&row, T, "last_error")?;
            health.last_error_reason = column(&row, T, "last_error_reason")?;
            health.last_error_ms = column(&row, T, "last_error_ms")?;
        }
        Ok(health)
    }
}

/// The link, and the provider's groups when the sign-in carries them, within `tx`.
async fn write_upstream_sign_in(tx: &mut WriteTx<'_>, sign_in: &UpstreamSignIn<'_>) -> Result<()> {
    let UpstreamSignIn { organization, identity_provider, subject, user_id, at_ms, groups, remove_others } =
        *sign_in;
    link(tx.conn(), organization, identity_provider, subject, user_id, at_ms).await?;
    if let Some(groups) = groups {
        GroupSync { organization, identity_provider }.apply(tx, user_id, groups, remove_others).await?;
    }
    Ok(())
}

/// Counts one outcome in its hour, and keeps the last success or error.
async fn count_outcome(conn: &mut sqlx::AnyConnection, outcome: &SsoOutcome<'_>) -> Result<()> {
    let (successes, failures) = if outcome.failure.is_none() { (1_i64, 0_i64) } else { (0, 1) };
    let hour = outcome.at_ms.div_euclid(HOUR_MS);
    sqlx::query(
        "INSERT INTO sso_sign_in_counts (organization, identity_provider, hour, successes, failures) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization, identity_provider, hour) DO UPDATE SET \
             successes = sso_sign_in_counts.successes + excluded.successes, \
             failures = sso_sign_in_counts.failures + excluded.failures",
    )
    .bind(outcome.organization)
    .bind(outcome.identity_provider)
    .bind(hour)
    .bind(successes)
    .bind(failures)
    .execute(&mut *conn)
    .await
    .map_err(query_error("count a sign-in"))?;
    let (error, reason, error_ms, success_ms) = match outcome.failure {
        Some((reason, message)) => (Some(message), Some(reason), Some(outcome.at_ms), None),
        None => (None, None, None, Some(outcome.at_ms)),
    };
    // A change of stage starts the count of successes in the stage again.
    sqlx::query(
        "INSERT INTO sso_health (organization, identity_provider, stage, successes_in_stage, \
             last_success_ms, last_error, last_error_reason, last_error_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (organization, identity_provider) DO UPDATE SET \
             successes_in_stage = CASE WHEN sso_health.stage = excluded.stage \
               THEN sso_health.successes_in_stage + excluded.successes_in_stage \
               ELSE excluded.successes_in_stage END, \
             stage = excluded.stage, \
             last_success_ms = COALESCE(excluded.last_success_ms, sso_health.last_success_ms), \
             last_error = COALESCE(excluded.last_error, sso_health.last_error), \
             last_error_reason = COALESCE(excluded.last_error_reason, sso_health.last_error_reason), \
             last_error_ms = COALESCE(excluded.last_error_ms, sso_health.last_error_ms)",
    )
    .bind(outcome.organization)
    .bind(outcome.identity_provider)
    .bind(outcome.stage)
    .bind(successes)
    .bind(success_ms)
    .bind(error.map(str::to_owned))
    .bind(reason.map(str::to_owned))
    .bind(error_ms)
    .execute(&mut *conn)
    .await
    .map_err(query_error("record a sign-in outcome"))?;
    Ok(())
}

/// The provider-managed memberships of one provider in one organization.
struct GroupSync<'a> {
    organization: &'a str,
    identity_provider: &'a str,
}

impl GroupSync<'_> {
    /// Makes the user's memberships of the provider's groups those of
    /// `groups`, within `tx` (see [`FederationStore::sync_upstream_groups`]).
    async fn apply(
        &self,
        tx: &mut WriteTx<'_>,
        user_id: &str,
        groups: &[String],
        remove_others: bool,
    ) -> Result<()> {
        let mut wanted = BTreeSet::new();
        for name in groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            let found = sqlx::query(
                "SELECT id, source, provisioned_by FROM groups WHERE organization = $1 AND display_name_key = $2",
            )
            .bind(self.organization)
            .bind(name_key(name))
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("read a provider group"))?;
            let group_id = match found {
                Some(row) => {
                    let source: String = column(&row, "groups", "source")?;
                    let owner: Option<String> = column(&row, "groups", "provisioned_by")?;
                    // A group managed here, or by another provider, with this name is left alone.
                    if source != GroupSource::Idp.as_str() || owner.as_deref() != Some(self.identity_provider)
                    {
                        continue;
                    }
                    column(&row, "groups", "id")?
                }
                None => {
                    let new = NewGroup {
                        organization: self.organization.to_owned(),
                        display_name: name.to_owned(),
                        source: GroupSource::Idp,
                        external_id: None,
                    };
                    insert_group(tx, &new, Some(self.identity_provider)).await?.0
                }
            };
            wanted.insert(group_id.clone());
            let added = sqlx::query(
                "INSERT INTO memberships (group_id, user_id) VALUES ($1, $2) ON CONFLICT (group_id, user_id) DO NOTHING",
            )
            .bind(group_id.as_str())
            .bind(user_id)
            .execute(tx.conn())
            .await
            .map_err(query_error("add a provider group member"))?;
            if added.rows_affected() > 0 {
                record_membership(tx, self.organization, &group_id, user_id);
            }
        }
        if remove_others {
            let rows = sqlx::query(
                "SELECT m.group_id FROM memberships m JOIN groups g ON g.id = m.group_id \
                 WHERE m.user_id = $1 AND g.organization = $2 AND g.source = 'idp' AND g.provisioned_by = $3",
            )
            .bind(user_id)
            .bind(self.organization)
            .bind(self.identity_provider)
            .fetch_all(tx.conn())
            .await
            .map_err(query_error("read provider group memberships"))?;
            for row in &rows {
                let group_id: String = column(row, "memberships", "group_id")?;
                if wanted.contains(&group_id) {
                    continue;
                }
                sqlx::query("DELETE FROM memberships WHERE group_id = $1 AND user_id = $2")
                    .bind(group_id.as_str())
                    .bind(user_id)
                    .execute(tx.conn())
                    .await
                    .map_err(query_error("remove a provider group member"))?;
                record_membership(tx, self.organization, &group_id, user_id);
            }
        }
        Ok(())
    }
}

async fn link(
    conn: &mut sqlx::AnyConnection,
    organization: &str,
    identity_provider: &str,
    subject: &str,
    user_id: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO federated_identities (organization, identity_provider, subject, user_id, created_ms, \
         last_sign_in_ms) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (organization, identity_provider, subject) DO UPDATE SET \
         user_id = excluded.user_id, last_sign_in_ms = excluded.last_sign_in_ms",
    )
    .bind(organization)
    .bind(identity_provider)
    .bind(subject)
    .bind(user_id)
    .bind(at_ms)
    .execute(conn)
    .await
    .map_err(query_error("link an upstream identity"))?;
    Ok(())
}

fn record_membership(tx: &mut WriteTx<'_>, organization: &str, group_id: &str, user_id: &str) {
    tx.record(Change::Membership {
        organization: organization.to_owned(),
        group_id: group_id.to_owned(),
        user_id: user_id.to_owned(),
    });
}
