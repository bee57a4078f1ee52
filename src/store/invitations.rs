//! Invitations (migration 0020): an email address invited to the
//! organization or one workspace with roles, accepted once through a link
//! whose token only the mail carries (the store keeps its SHA-256).
//!
//! ```text
//!  create ──► pending ──accept (token, unexpired)──► accepted ──► user (local) + API-owned RoleAssignments
//!               │  ▲                                               in the same transaction
//!               │  └── resend: new token (the old one dead), expiry starts again
//!               └──── revoke ──► revoked
//!  expired = pending with expires_ms in the past (resend revives it)
//! ```
//!
//! Every change appends its audit event (`invitation.create`, `.resend`,
//! `.revoke`, `.accept`) in its transaction. Recording how the mail went
//! ([`InvitationStore::record_invitation_mail`]) is bookkeeping, not audited.

use std::future::Future;

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::changes::WriteTx;
use super::desired::sealed::Columns as _;
use super::desired::{DesiredRecord, resource_change, upsert_sql};
use super::error::query_error;
use super::identity::{UserExtras, insert_user, user_entry};
use super::{AssignmentRecord, NewUser, Result, Store, StoreError, User, column, now_ms};
use crate::audit::{Actor, AuditContext, AuditEntry, Target};
use crate::secret::SecretHash;

const COLUMNS: &str = "id, organization, email, workspace, roles_json, status, invited_by, created_ms, \
                       expires_ms, lifetime_ms, sends, mail_sent_ms, mail_error, accepted_ms, \
                       accepted_user_id, revoked_ms, updated_ms, version";

/// Where an invitation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Waiting for the invitee (expired once `expires_ms` has passed).
    Pending,
    Accepted,
    Revoked,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(InvitationStatus::Pending),
            "accepted" => Some(InvitationStatus::Accepted),
            "revoked" => Some(InvitationStatus::Revoked),
            _ => None,
        }
    }
}

/// An invitation as stored (never its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    pub id: String,
    /// The organization's namespace.
    pub organization: String,
    pub email: String,
    /// `None`: the organization.
    pub workspace: Option<String>,
    pub roles: Vec<String>,
    pub status: InvitationStatus,
    /// Who invited (userName or client id), as the audit trail names them.
    pub invited_by: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub lifetime_ms: i64,
    /// Links made so far: 1, plus one per resend.
    pub sends: i64,
    /// When the last link's mail was handed to the SMTP server.
    pub mail_sent_ms: Option<i64>,
    /// Why the last link's mail could not be sent.
    pub mail_error: Option<String>,
    pub accepted_ms: Option<i64>,
    pub accepted_user_id: Option<String>,
    pub revoked_ms: Option<i64>,
    pub updated_ms: i64,
    pub version: i64,
}

impl Invitation {
    /// `pending`, `expired`, `accepted` or `revoked`, at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        match self.status {
            InvitationStatus::Pending if self.expires_ms <= now_ms => "expired",
            status => status.as_str(),
        }
    }
}

/// What [`InvitationStore::create_invitation`] stores.
#[derive(Clone, Debug)]
pub struct NewInvitation {
    pub organization: String,
    pub email: String,
    pub workspace: Option<String>,
    pub roles: Vec<String>,
    pub token_hash: SecretHash,
    pub invited_by: String,
    pub lifetime_ms: i64,
}

/// Which invitations [`InvitationStore::list_invitations`] returns, oldest
/// first, after the cursor `(created_ms, id)`.
#[derive(Clone, Debug, Default)]
pub struct InvitationFilter {
    /// `pending`, `expired`, `accepted` or `revoked`.
    pub state: Option<String>,
    /// Compared without regard to case.
    pub email: Option<String>,
    pub workspace: Option<String>,
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// What a resend or revocation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvitationChange {
    Done(Invitation),
    /// Accepted or revoked already: nothing changed.
    NotPending(Invitation),
    Absent,
}

/// Why a link was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No invitation has that token: mistyped, or replaced by a resend.
    Unknown,
    AlreadyAccepted,
    Revoked,
    Expired,
}

/// What [`InvitationStore::accept_invitation`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// The user it created (boxed: the refusals are small).
    Accepted {
        user: Box<User>,
    },
    Refused(Refusal),
}

pub trait InvitationStore {
    /// Stores a pending invitation (audited `invitation.create`).
    /// `AlreadyExists` when the address has a pending, unexpired one.
    fn create_invitation(&self, new: &NewInvitation) -> impl Future<Output = Result<Invitation>> + Send;

    fn get_invitation(
        &self,
        organization: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Invitation>>> + Send;

    fn list_invitations(
        &self,
        organization: &str,
        filter: &InvitationFilter,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<Invitation>>> + Send;

    /// The invitation whose link carries a token of this hash, whatever its state.
    fn invitation_by_token(
        &self,
        organization: &str,
        token_hash: &SecretHash,
    ) -> impl Future<Output = Result<Option<Invitation>>> + Send;

    /// A new link for a pending (or expired) invitation: the token is
    /// replaced, so the previous link no longer works, and the lifetime
    /// starts again (audited `invitation.resend`).
    fn resend_invitation(
        &self,
        organization: &str,
        id: &str,
        token_hash: &SecretHash,
    ) -> impl Future<Output = Result<InvitationChange>> + Send;

    /// Revokes a pending invitation (audited `invitation.revoke`).
    fn revoke_invitation(
        &self,
        organization: &str,
        id: &str,
    ) -> impl Future<Output = Result<InvitationChange>> + Send;

    /// How the mail of link number `sends` went; ignored once a later link exists.
    fn record_invitation_mail(
        &self,
        organization: &str,
        id: &str,
        sends: i64,
        error: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Accepts the invitation of this token in one transaction: the
    /// invitation consumed (only one of concurrent acceptances gets it),
    /// `user` created, `assignments` stored as the admin API's (owner
    /// `api`), audited as the new user (`user.create`, `invitation.accept`).
    /// `AlreadyExists` if `user`'s userName is taken (nothing changes).
    fn accept_invitation(
        &self,
        organization: &str,
        token_hash: &SecretHash,
        user: &NewUser,
        assignments: Vec<AssignmentRecord>,
        source: crate::audit::Source,
    ) -> impl Future<Output = Result<Acceptance>> + Send;
}

fn read_invitation(row: &AnyRow) -> Result<Invitation> {
    const T: &str = "invitations";
    let status: String = column(row, T, "status")?;
    let roles: String = column(row, T, "roles_json")?;
    Ok(Invitation {
        id: column(row, T, "id")?,
        organization: column(row, T, "organization")?,
        email: column(row, T, "email")?,
        workspace: column(row, T, "workspace")?,
        roles: serde_json::from_str(&roles).map_err(|e| StoreError::Corrupt {
            table: T,
            column: "roles_json",
            source: Box::new(e),
        })?,
        status: InvitationStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            table: T,
            column: "status",
            source: format!("unknown status {status:?}").into(),
        })?,
        invited_by: column(row, T, "invited_by")?,
        created_ms: column(row, T, "created_ms")?,
        expires_ms: column(row, T, "expires_ms")?,
        lifetime_ms: column(row, T, "lifetime_ms")?,
        sends: column(row, T, "sends")?,
        mail_sent_ms: column(row, T, "mail_sent_ms")?,
        mail_error: column(row, T, "mail_error")?,
        accepted_ms: column(row, T, "accepted_ms")?,
        accepted_user_id: column(row, T, "accepted_user_id")?,
        revoked_ms: column(row, T, "revoked_ms")?,
        updated_ms: column(row, T, "updated_ms")?,
        version: column(row, T, "version")?,
    })
}

fn target(invitation: &Invitation) -> Target {
    Target::new("invitation", Some(&invitation.id), Some(&invitation.email))
}

fn details(invitation: &Invitation) -> serde_json::Value {
    serde_json::json!({
        "workspace": invitation.workspace,
        "roles": invitation.roles,
        "expiresAt": crate::audit::event::rfc3339_ms(invitation.expires_ms),
    })
}

/// The invitation `id` of the organization, read in the transaction.
async fn read_in(tx: &mut WriteTx<'_>, organization: &str, id: &str) -> Result<Option<Invitation>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE organization = $1 AND id = $2"
    )))
    .bind(organization)
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(query_error("read an invitation"))?;
    row.as_ref().map(read_invitation).transpose()
}

/// A value bound to a list query's placeholder.
enum Bind {
    Text(String),
    Number(i64),
}

/// Adds `value` to the list query's binds; its placeholder (`$3`).
fn next(binds: &mut Vec<Bind>, value: Bind) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

impl InvitationStore for Store {
    async fn create_invitation(&self, new: &NewInvitation) -> Result<Invitation> {
        let now = now_ms();
        let email_key = new.email.to_lowercase();
        let mut tx = self.begin_write(&new.organization).await?;
        let pending = sqlx::query(
            "SELECT id FROM invitations WHERE organization = $1 AND email_key = $2 \
             AND status = 'pending' AND expires_ms > $3",
        )
        .bind(new.organization.as_str())
        .bind(email_key.as_str())
        .bind(now)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("look for a pending invitation"))?;
        if pending.is_some() {
            return Err(StoreError::AlreadyExists {
                organization: new.organization.clone(),
                what: "pending invitation for",
                value: new.email.clone(),
            });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let roles = serde_json::to_string(&new.roles).unwrap_or_else(|_| "[]".to_owned());
        let expires = now.saturating_add(new.lifetime_ms);
        tx.execute(
            sqlx::query(
                "INSERT INTO invitations (id, organization, email, email_key, workspace, roles_json, \
                 token_hash, status, invited_by, created_ms, expires_ms, lifetime_ms, sends, updated_ms, \
                 version) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, 1, $9, 1)",
            )
            .bind(id.as_str())
            .bind(new.organization.as_str())
            .bind(new.email.as_str())
            .bind(email_key.as_str())
            .bind(new.workspace.clone())
            .bind(roles)
            .bind(new.token_hash.hex())
            .bind(new.invited_by.as_str())
            .bind(now)
            .bind(expires)
            .bind(new.lifetime_ms),
            "create an invitation",
        )
        .await?;
        let invitation = read_in(&mut tx, &new.organization, &id)
            .await?
            .ok_or_else(|| super::identity::not_found(&new.organization, "invitation", &id))?;
        tx.audit(
            AuditEntry::success("invitation.create", target(&invitation)).with_details(details(&invitation)),
        )
        .await?;
        tx.commit().await?;
        Ok(invitation)
    }

    async fn get_invitation(&self, organization: &str, id: &str) -> Result<Option<Invitation>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE organization = $1 AND id = $2"
        )))
        .bind(organization)
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read an invitation"))?;
        row.as_ref().map(read_invitation).transpose()
    }

    async fn list_invitations(
        &self,
        organization: &str,
        filter: &InvitationFilter,
        now_ms: i64,
    ) -> Result<Vec<Invitation>> {
        let mut conditions = vec!["organization = $1".to_owned()];
        let mut binds = vec![Bind::Text(organization.to_owned())];
        match filter.state.as_deref() {
            Some("pending") => {
                let now = next(&mut binds, Bind::Number(now_ms));
                conditions.push(format!("status = 'pending' AND expires_ms > {now}"));
            }
            Some("expired") => {
                let now = next(&mut binds, Bind::Number(now_ms));
                conditions.push(format!("status = 'pending' AND expires_ms <= {now}"));
            }
            Some(other) => {
                let status = next(&mut binds, Bind::Text(other.to_owned()));
                conditions.push(format!("status = {status}"));
            }
            None => {}
        }
        if let Some(email) = &filter.email {
            let key = next(&mut binds, Bind::Text(email.to_lowercase()));
            conditions.push(format!("email_key = {key}"));
        }
        if let Some(workspace) = &filter.workspace {
            let workspace = next(&mut binds, Bind::Text(workspace.clone()));
            conditions.push(format!("workspace = {workspace}"));
        }
        if let Some((created, id)) = &filter.after {
            let created_a = next(&mut binds, Bind::Number(*created));
            let created_b = next(&mut binds, Bind::Number(*created));
            let id = next(&mut binds, Bind::Text(id.clone()));
            conditions
                .push(format!("(created_ms > {created_a} OR (created_ms = {created_b} AND id > {id}))"));
        }
        let limit = next(&mut binds, Bind::Number(i64::from(filter.limit)));
        let sql = format!(
            "SELECT {COLUMNS} FROM invitations WHERE {} ORDER BY created_ms, id LIMIT {limit}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Number(number) => query.bind(number),
            };
        }
        let rows = query.fetch_all(self.pool()).await.map_err(query_error("list invitations"))?;
        rows.iter().map(read_invitation).collect()
    }

    async fn invitation_by_token(
        &self,
        organization: &str,
        token_hash: &SecretHash,
    ) -> Result<Option<Invitation>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE organization = $1 AND token_hash = $2"
        )))
        .bind(organization)
        .bind(token_hash.hex())
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("find an invitation by its link"))?;
        row.as_ref().map(read_invitation).transpose()
    }

    async fn resend_invitation(
        &self,
        organization: &str,
        id: &str,
        token_hash: &SecretHash,
    ) -> Result<InvitationChange> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        let Some(stored) = read_in(&mut tx, organization, id).await? else {
            return Ok(InvitationChange::Absent);
        };
        if stored.status != InvitationStatus::Pending {
            return Ok(InvitationChange::NotPending(stored));
        }
        tx.execute(
            sqlx::query(
                "UPDATE invitations SET token_hash = $1, expires_ms = $2 + lifetime_ms, sends = sends + 1, \
                 mail_sent_ms = NULL, mail_error = NULL, updated_ms = $2, version = version + 1 \
                 WHERE id = $3 AND status = 'pending'",
            )
            .bind(token_hash.hex())
            .bind(now)
            .bind(id),
            "resend an invitation",
        )
        .await?;
        let invitation = read_in(&mut tx, organization, id)
            .await?
            .ok_or_else(|| super::identity::not_found(organization, "invitation", id))?;
        tx.audit(
            AuditEntry::success("invitation.resend", target(&invitation))
                .with_details(serde_json::json!({ "link": invitation.sends, "expiresAt":
                    crate::audit::event::rfc3339_ms(invitation.expires_ms) })),
        )
        .await?;
        tx.commit().await?;
        Ok(InvitationChange::Done(invitation))
    }

    async fn revoke_invitation(&self, organization: &str, id: &str) -> Result<InvitationChange> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        let Some(stored) = read_in(&mut tx, organization, id).await? else {
            return Ok(InvitationChange::Absent);
        };
        if stored.status != InvitationStatus::Pending {
            return Ok(InvitationChange::NotPending(stored));
        }
        tx.execute(
            sqlx::query(
                "UPDATE invitations SET status = 'revoked', revoked_ms = $1, updated_ms = $1, \
                 version = version + 1 WHERE id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(id),
            "revoke an invitation",
        )
        .await?;
        let invitation = read_in(&mut tx, organization, id)
            .await?
            .ok_or_else(|| super::identity::not_found(organization, "invitation", id))?;
        tx.audit(AuditEntry::success("invitation.revoke", target(&invitation))).await?;
        tx.commit().await?;
        Ok(InvitationChange::Done(invitation))
    }

    async fn record_invitation_mail(
        &self,
        organization: &str,
        id: &str,
        sends: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let sent = error.is_none().then_some(now);
        sqlx::query(
            "UPDATE invitations SET mail_sent_ms = $1, mail_error = $2 \
             WHERE organization = $3 AND id = $4 AND sends = $5",
        )
        .bind(sent)
        .bind(error.map(str::to_owned))
        .bind(organization)
        .bind(id)
        .bind(sends)
        .execute(self.pool())
        .await
        .map_err(query_error("record an invitation's mail"))?;
        Ok(())
    }

    async fn accept_invitation(
        &self,
        organization: &str,
        token_hash: &SecretHash,
        user: &NewUser,
        assignments: Vec<AssignmentRecord>,
        source: crate::audit::Source,
    ) -> Result<Acceptance> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        // Claim the invitation first: on PostgreSQL a concurrent acceptance
        // waits on this row and then finds it no longer pending.
        let claimed = tx
            .execute(
                sqlx::query(
                    "UPDATE invitations SET status = 'accepted', accepted_ms = $1, updated_ms = $1, \
                     version = version + 1 \
                     WHERE organization = $2 AND token_hash = $3 AND status = 'pending' AND expires_ms > $1",
                )
                .bind(now)
                .bind(organization)
                .bind(token_hash.hex()),
                "accept an invitation",
            )
            .await?;
        if claimed == 0 {
            drop(tx);
            let refusal = match self.invitation_by_token(organization, token_hash).await? {
                None => Refusal::Unknown,
                Some(found) => match found.status {
                    InvitationStatus::Accepted => Refusal::AlreadyAccepted,
                    InvitationStatus::Revoked => Refusal::Revoked,
                    InvitationStatus::Pending => Refusal::Expired,
                },
            };
            return Ok(Acceptance::Refused(refusal));
        }
        let created = insert_user(&mut tx, user, UserExtras::default()).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE invitations SET accepted_user_id = $1 WHERE organization = $2 AND token_hash = $3 \
             RETURNING {COLUMNS}"
        )))
        .bind(created.id.as_str())
        .bind(organization)
        .bind(token_hash.hex())
        .fetch_one(tx.conn())
        .await
        .map_err(query_error("link an invitation to its user"))?;
        let invitation = read_invitation(&row)?;
        for mut record in assignments {
            record.meta.uid = format!("api-{}", uuid::Uuid::new_v4());
            record.meta.generation = 1;
            insert_api_assignment(&mut tx, &record).await?;
        }
        let context = AuditContext::new(Actor::user(&created.id, &created.user_name, None), source);
        tx.audit_as(&context, user_entry("user.create", &created)).await?;
        tx.audit_as(
            &context,
            AuditEntry::success("invitation.accept", target(&invitation)).with_details(serde_json::json!({
                "userId": created.id,
                "workspace": invitation.workspace,
                "roles": invitation.roles,
                "invitedBy": invitation.invited_by,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(Acceptance::Accepted { user: Box::new(created) })
    }
}

/// Inserts a RoleAssignment the admin API owns (no sync removes it).
async fn insert_api_assignment(tx: &mut WriteTx<'_>, record: &AssignmentRecord) -> Result<()> {
    let meta = &record.meta;
    let query = sqlx::query(AssertSqlSafe(upsert_sql::<AssignmentRecord>()))
        .bind(meta.uid.as_str())
        .bind(meta.namespace.as_str())
        .bind(meta.name.as_str())
        .bind(meta.generation)
        .bind(record.spec_json.clone());
    record
        .bind_columns(query)
        .bind(now_ms())
        .execute(tx.conn())
        .await
        .map_err(query_error("store an invited role assignment"))?;
    tx.execute(
        sqlx::query("UPDATE role_assignments SET owner = 'api' WHERE uid = $1").bind(meta.uid.as_str()),
        "mark an invited role assignment as the admin API's",
    )
    .await?;
    tx.record(resource_change(AssignmentRecord::KIND, &meta.namespace, &meta.name, &meta.uid));
    Ok(())
}
