//! Access requests (migration 0024): a principal asks for a role, in the
//! organization or one workspace, for a bounded time; approvers decide.
//!
//! ```text
//!  create ──► pending ──approve (distinct approvers, as many as needed)──► approved
//!               │  │                     + RoleAssignment (owner 'access-request',
//!               │  │                       expires_at_ms) in the same transaction
//!               │  └──deny──► denied              │
//!               └────revoke──► revoked ◄──revoke──┤ (the assignment deleted)
//!                                                 └──expiry sweep──► expired (the assignment deleted)
//! ```
//!
//! The access index stops honouring the assignment at `expires_at_ms`
//! whether or not the sweep has run; the sweep only records the end and
//! removes the row. Every step appends its audit event (`accessRequest.create`,
//! `.approve`, `.grant`, `.deny`, `.revoke`, `.expire`) in its transaction.
//! Each step also queues its notification (the outbox
//! `access_request_notifications`, delivered by the token service).
//! Who may decide is the token service's question; the store makes each
//! decision atomic (one approver counts once, one grant per request).

use std::future::Future;

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::changes::WriteTx;
use super::desired::sealed::Columns as _;
use super::desired::{DesiredRecord, parse_principal_kind, principal_kind_str, resource_change, upsert_sql};
use super::error::query_error;
use super::records::{AssignmentRecord, ObjectMeta};
use super::{Result, Store, StoreError, column, now_ms};
use crate::audit::event::rfc3339_ms;
use crate::audit::{AuditContext, AuditEntry, Target};
use crate::authz::Principal;

const COLUMNS: &str = "id, organization, requester_kind, requester_name, requested_by, role, workspace, \
                       duration_ms, justification, approvals_needed, status, created_ms, decided_ms, \
                       decided_by, decision_comment, expires_ms, assignment_uid, version";

/// How many due requests one sweep ends at most (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

/// Where a request stands, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessRequestStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Revoked,
}

impl AccessRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRequestStatus::Pending => "pending",
            AccessRequestStatus::Approved => "approved",
            AccessRequestStatus::Denied => "denied",
            AccessRequestStatus::Expired => "expired",
            AccessRequestStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(AccessRequestStatus::Pending),
            "approved" => Some(AccessRequestStatus::Approved),
            "denied" => Some(AccessRequestStatus::Denied),
            "expired" => Some(AccessRequestStatus::Expired),
            "revoked" => Some(AccessRequestStatus::Revoked),
            _ => None,
        }
    }
}

/// One approver's approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// userName or client id, as the audit trail names them.
    pub approver: String,
    pub approved_ms: i64,
    pub comment: Option<String>,
}

/// An access request as stored, with its approvals (oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    /// The organization's namespace.
    pub organization: String,
    pub requester: Principal,
    /// Who filed it: the requester, or an administrator on their behalf.
    pub requested_by: String,
    pub role: String,
    /// `None`: the organization.
    pub workspace: Option<String>,
    pub duration_ms: i64,
    pub justification: String,
    pub approvals_needed: i64,
    pub status: AccessRequestStatus,
    pub created_ms: i64,
    /// When it was approved (the last approval), denied, revoked or expired.
    pub decided_ms: Option<i64>,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    /// The grant's end, once approved.
    pub expires_ms: Option<i64>,
    pub assignment_uid: Option<String>,
    pub version: i64,
    pub approvals: Vec<Approval>,
}

impl AccessRequest {
    /// The phase at `now_ms`: an approved request past its expiry is
    /// `Expired` even before the sweep has recorded it.
    pub fn phase(&self, now_ms: i64) -> AccessRequestStatus {
        match (self.status, self.expires_ms) {
            (AccessRequestStatus::Approved, Some(at)) if at <= now_ms => AccessRequestStatus::Expired,
            (status, _) => status,
        }
    }
}

/// What [`AccessRequestStore::create_access_request`] stores.
#[derive(Clone, Debug)]
pub struct NewAccessRequest {
    pub organization: String,
    pub requester: Principal,
    pub requested_by: String,
    pub role: String,
    pub workspace: Option<String>,
    pub duration_ms: i64,
    pub justification: String,
    pub approvals_needed: i64,
}

/// Which requests [`AccessRequestStore::list_access_requests`] returns,
/// oldest first, after the cursor `(created_ms, id)`.
#[derive(Clone, Debug, Default)]
pub struct AccessRequestFilter {
    pub requester: Option<Principal>,
    pub status: Option<AccessRequestStatus>,
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// What an approval did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The last approval needed: approved, and the grant made.
    Granted(AccessRequest),
    /// Recorded; more approvers are needed.
    Recorded(AccessRequest),
    /// This approver had approved already: nothing changed.
    AlreadyApproved(AccessRequest),
    /// Not pending any more: nothing changed.
    NotPending(AccessRequest),
    Absent,
}

/// What a denial or revocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Done(AccessRequest),
    /// Not in a state this decision applies to: nothing changed.
    NotApplicable(AccessRequest),
    Absent,
}

/// The step a notification tells of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationEvent {
    Requested,
    Approved,
    Denied,
    Expired,
    Revoked,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Requested => "requested",
            NotificationEvent::Approved => "approved",
            NotificationEvent::Denied => "denied",
            NotificationEvent::Expired => "expired",
            NotificationEvent::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "requested" => Some(NotificationEvent::Requested),
            "approved" => Some(NotificationEvent::Approved),
            "denied" => Some(NotificationEvent::Denied),
            "expired" => Some(NotificationEvent::Expired),
            "revoked" => Some(NotificationEvent::Revoked),
            _ => None,
        }
    }
}

/// A queued notification a worker has claimed until `lease_until_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedNotification {
    pub id: String,
    /// The organization's namespace.
    pub organization: String,
    pub request_id: String,
    pub event: NotificationEvent,
    pub created_ms: i64,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Webhook URLs that have accepted it already.
    pub delivered: Vec<String>,
}

/// What became of an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Every webhook accepted it.
    Delivered,
    /// Some did not: try again at `next_attempt_ms`.
    Retry { next_attempt_ms: i64, error: String },
    /// Attempts spent (or nothing can be sent): stop.
    GiveUp { error: String },
}

pub trait AccessRequestStore {
    /// Stores a pending request (audited `accessRequest.create`).
    /// `AlreadyExists` when the requester has a pending one for the same
    /// role and scope.
    fn create_access_request(
        &self,
        new: &NewAccessRequest,
    ) -> impl Future<Output = Result<AccessRequest>> + Send;

    /// Stores a pending request under `id` (an AccessRequest object's uid),
    /// once: if a request of that id exists already (a replayed reconcile,
    /// a second operator) it is returned unchanged, and nothing is audited
    /// or notified again.
    fn file_access_request(
        &self,
        id: &str,
        new: &NewAccessRequest,
    ) -> impl Future<Output = Result<AccessRequest>> + Send;

    fn get_access_request(
        &self,
        organization: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<AccessRequest>>> + Send;

    fn list_access_requests(
        &self,
        organization: &str,
        filter: &AccessRequestFilter,
    ) -> impl Future<Output = Result<Vec<AccessRequest>>> + Send;

    /// Records `approver`'s approval of a pending request (audited
    /// `accessRequest.approve`); the one that completes the approvals
    /// needed also approves it and stores its grant, expiring `duration`
    /// from now (audited `accessRequest.grant`). Concurrent approvals are
    /// serialised on the request's row, so exactly one grants.
    fn approve_access_request(
        &self,
        organization: &str,
        id: &str,
        approver: &Principal,
        comment: Option<&str>,
    ) -> impl Future<Output = Result<ApprovalOutcome>> + Send;

    /// Denies a pending request (audited `accessRequest.deny`).
    fn deny_access_request(
        &self,
        organization: &str,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> impl Future<Output = Result<Decision>> + Send;

    /// Ends a pending or approved request before its time, deleting its
    /// grant (audited `accessRequest.revoke`).
    fn revoke_access_request(
        &self,
        organization: &str,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> impl Future<Output = Result<Decision>> + Send;

    /// Marks approved requests whose grant has ended at `now_ms` expired and
    /// deletes their grants, each in its own transaction (audited
    /// `accessRequest.expire` by the system); at most a batch per call.
    fn expire_access_requests(&self, now_ms: i64) -> impl Future<Output = Result<Vec<AccessRequest>>> + Send;

    /// When the next approved request's grant ends, if any does.
    fn next_access_request_expiry(&self) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Claims up to `limit` queued notifications due at `now_ms` whose lease
    /// (if any) has run out, leasing each until `lease_until_ms`; a row
    /// another worker claimed first is skipped.
    fn claim_access_request_notifications(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedNotification>>> + Send;

    /// Records an attempt: the webhooks that accepted it so far, and what next.
    fn finish_access_request_notification(
        &self,
        id: &str,
        delivered: &[String],
        outcome: &NotificationOutcome,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
}

fn corrupt(column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        table: "access_requests",
        column,
        source: format!("unknown value {value:?}").into(),
    }
}

fn read_request(row: &AnyRow) -> Result<AccessRequest> {
    const T: &str = "access_requests";
    let status: String = column(row, T, "status")?;
    let kind: String = column(row, T, "requester_kind")?;
    Ok(AccessRequest {
        id: column(row, T, "id")?,
        organization: column(row, T, "organization")?,
        requester: Principal {
            kind: parse_principal_kind(&kind).ok_or_else(|| corrupt("requester_kind", &kind))?,
            name: column(row, T, "requester_name")?,
        },
        requested_by: column(row, T, "requested_by")?,
        role: column(row, T, "role")?,
        workspace: column(row, T, "workspace")?,
        duration_ms: column(row, T, "duration_ms")?,
        justification: column(row, T, "justification")?,
        approvals_needed: column(row, T, "approvals_needed")?,
        status: AccessRequestStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        created_ms: column(row, T, "created_ms")?,
        decided_ms: column(row, T, "decided_ms")?,
        decided_by: column(row, T, "decided_by")?,
        decision_comment: column(row, T, "decision_comment")?,
        expires_ms: column(row, T, "expires_ms")?,
        assignment_uid: column(row, T, "assignment_uid")?,
        version: column(row, T, "version")?,
        approvals: Vec::new(),
    })
}

/// The requester's key: as the access index compares principals.
fn principal_key(principal: &Principal) -> String {
    format!("{}:{}", principal_kind_str(principal.kind), principal.keyed().name)
}

fn target(request: &AccessRequest) -> Target {
    let name = format!("{} {}", principal_kind_str(request.requester.kind), request.requester.name);
    Target::new("accessRequest", Some(&request.id), Some(&name))
}

fn details(request: &AccessRequest) -> serde_json::Value {
    serde_json::json!({
        "requester": request.requester.name,
        "role": request.role,
        "workspace": request.workspace,
        "durationSeconds": request.duration_ms / 1000,
        "expiresAt": request.expires_ms.map(rfc3339_ms),
    })
}

/// The request `id` of the organization with its approvals, read in `conn`.
async fn read_full(
    conn: &mut sqlx::AnyConnection,
    organization: &str,
    id: &str,
) -> Result<Option<AccessRequest>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_requests WHERE organization = $1 AND id = $2"
    )))
    .bind(organization)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_error("read an access request"))?;
    let Some(row) = row else { return Ok(None) };
    let mut request = read_request(&row)?;
    request.approvals = approvals_of(conn, &request.id).await?;
    Ok(Some(request))
}

async fn approvals_of(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Vec<Approval>> {
    const T: &str = "access_request_approvals";
    let rows = sqlx::query(
        "SELECT approver, approved_ms, comment FROM access_request_approvals \
         WHERE request_id = $1 ORDER BY approved_ms, approver_key",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error("read an access request's approvals"))?;
    rows.iter()
        .map(|row| {
            Ok(Approval {
                approver: column(row, T, "approver")?,
                approved_ms: column(row, T, "approved_ms")?,
                comment: column(row, T, "comment")?,
            })
        })
        .collect()
}

/// The request as it now reads in the transaction (it must exist).
async fn reread(tx: &mut WriteTx<'_>, organization: &str, id: &str) -> Result<AccessRequest> {
    read_full(tx.conn(), organization, id)
        .await?
        .ok_or_else(|| super::identity::not_found(organization, "access request", id))
}

/// Queues the notification of a step, in the step's transaction: it is
/// sent if and only if the step happened.
async fn enqueue(
    tx: &mut WriteTx<'_>,
    request: &AccessRequest,
    event: NotificationEvent,
    now: i64,
) -> Result<()> {
    tx.execute(
        sqlx::query(
            "INSERT INTO access_request_notifications (id, organization, request_id, event, created_ms, \
             attempts, next_attempt_ms, delivered_json) VALUES ($1, $2, $3, $4, $5, 0, $5, '[]')",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(request.organization.as_str())
        .bind(request.id.as_str())
        .bind(event.as_str())
        .bind(now),
        "queue an access request notification",
    )
    .await?;
    Ok(())
}

/// The RoleAssignment an approval grants: the requester, the role, the
/// scope, until `expires_ms`; owned by the request.
fn grant_record(request: &AccessRequest, expires_ms: i64) -> AssignmentRecord {
    let uid = format!("access-request-{}", request.id);
    let spec = serde_json::json!({
        "principal": { "kind": principal_kind_str(request.requester.kind), "name": request.requester.name },
        "role": request.role,
        "scope": if request.workspace.is_some() { "Workspace" } else { "Organization" },
        "workspace": request.workspace,
        "expiresAt": rfc3339_ms(expires_ms),
        "reason": format!("access request {}", request.id),
    });
    AssignmentRecord {
        meta: ObjectMeta::new(&uid, &request.organization, &uid, 1),
        principal_kind: request.requester.kind,
        principal_name: request.requester.name.clone(),
        role: request.role.clone(),
        workspace: request.workspace.clone(),
        expires_at_ms: Some(expires_ms),
        spec_json: spec.to_string(),
    }
}

async fn insert_grant(tx: &mut WriteTx<'_>, record: &AssignmentRecord) -> Result<()> {
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
        .map_err(query_error("store an access request's grant"))?;
    tx.execute(
        sqlx::query("UPDATE role_assignments SET owner = 'access-request' WHERE uid = $1")
            .bind(meta.uid.as_str()),
        "mark a grant as its access request's",
    )
    .await?;
    tx.record(resource_change(AssignmentRecord::KIND, &meta.namespace, &meta.name, &meta.uid));
    Ok(())
}

/// Deletes the request's grant, if it has one (a no-op once deleted).
async fn delete_grant(tx: &mut WriteTx<'_>, request: &AccessRequest) -> Result<()> {
    let Some(uid) = &request.assignment_uid else { return Ok(()) };
    let deleted = tx
        .execute(
            sqlx::query("DELETE FROM role_assignments WHERE uid = $1 AND owner = 'access-request'")
                .bind(uid.as_str()),
            "delete an access request's grant",
        )
        .await?;
    if deleted > 0 {
        tx.record(resource_change(AssignmentRecord::KIND, &request.organization, uid, uid));
    }
    Ok(())
}

/// Moves a request out of `from` (compare-and-set) to `to`, with who and why.
async fn transition(
    tx: &mut WriteTx<'_>,
    request: &AccessRequest,
    from: &[AccessRequestStatus],
    to: AccessRequestStatus,
    by: &str,
    comment: Option<&str>,
    now: i64,
) -> Result<bool> {
    let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    // Only the fixed status words are formatted in; every value is bound.
    let sql = format!(
        "UPDATE access_requests SET status = $1, decided_ms = $2, decided_by = $3, decision_comment = $4, \
         updated_ms = $2, version = version + 1 WHERE id = $5 AND status IN ({})",
        states.join(", ")
    );
    let changed = tx
        .execute(
            sqlx::query(AssertSqlSafe(sql))
                .bind(to.as_str())
                .bind(now)
                .bind(by)
                .bind(comment.map(str::to_owned))
                .bind(request.id.as_str()),
            "decide an access request",
        )
        .await?;
    Ok(changed > 0)
}

/// Stores a pending request under `id`; `None` if that id is taken.
/// `AlreadyExists` when the requester has a pending one for the same role
/// and scope.
async fn create(store: &Store, id: &str, new: &NewAccessRequest) -> Result<Option<AccessRequest>> {
    let now = now_ms();
    let key = principal_key(&new.requester);
    let mut tx = store.begin_write(&new.organization).await?;
    let pending = sqlx::query(
        "SELECT id FROM access_requests WHERE organization = $1 AND requester_key = $2 \
             AND status = 'pending' AND role = $3 AND COALESCE(workspace, '') = $4",
    )
    .bind(new.organization.as_str())
    .bind(key.as_str())
    .bind(new.role.as_str())
    .bind(new.workspace.clone().unwrap_or_default())
    .fetch_optional(tx.conn())
    .await
    .map_err(query_error("look for a pending access request"))?;
    if pending.is_some() {
        return Err(StoreError::AlreadyExists {
            organization: new.organization.clone(),
            what: "pending access request for",
            value: format!("{} ({})", new.role, new.workspace.as_deref().unwrap_or("organization")),
        });
    }
    let inserted = tx
        .execute(
            sqlx::query(
                "INSERT INTO access_requests (id, organization, requester_kind, requester_name, \
                 requester_key, requested_by, role, workspace, duration_ms, justification, \
                 approvals_needed, status, created_ms, updated_ms, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $12, 1) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(new.organization.as_str())
            .bind(principal_kind_str(new.requester.kind))
            .bind(new.requester.name.as_str())
            .bind(key.as_str())
            .bind(new.requested_by.as_str())
            .bind(new.role.as_str())
            .bind(new.workspace.clone())
            .bind(new.duration_ms)
            .bind(new.justification.as_str())
            .bind(new.approvals_needed)
            .bind(now),
            "create an access request",
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    let request = reread(&mut tx, &new.organization, id).await?;
    let mut entry_details = details(&request);
    entry_details["justification"] = serde_json::Value::String(request.justification.clone());
    entry_details["approvalsNeeded"] = request.approvals_needed.into();
    tx.audit(AuditEntry::success("accessRequest.create", target(&request)).with_details(entry_details))
        .await?;
    enqueue(&mut tx, &request, NotificationEvent::Requested, now).await?;
    tx.commit().await?;
    Ok(Some(request))
}

impl AccessRequestStore for Store {
    async fn create_access_request(&self, new: &NewAccessRequest) -> Result<AccessRequest> {
        let id = uuid::Uuid::new_v4().to_string();
        create(self, &id, new).await?.ok_or_else(|| StoreError::AlreadyExists {
            organization: new.organization.clone(),
            what: "access request",
            value: id,
        })
    }

    async fn file_access_request(&self, id: &str, new: &NewAccessRequest) -> Result<AccessRequest> {
        if let Some(filed) = self.get_access_request(&new.organization, id).await? {
            return Ok(filed);
        }
        let refused = match create(self, id, new).await {
            Ok(Some(request)) => return Ok(request),
            Ok(None) => None,
            Err(error @ StoreError::AlreadyExists { .. }) => Some(error),
            Err(error) => return Err(error),
        };
        // Filed meanwhile by another writer: the same request. Otherwise the
        // requester's pending request for the same role and scope stands.
        match (self.get_access_request(&new.organization, id).await?, refused) {
            (Some(filed), _) => Ok(filed),
            (None, Some(error)) => Err(error),
            (None, None) => Err(StoreError::AlreadyExists {
                organization: new.organization.clone(),
                what: "access request",
                value: id.to_owned(),
            }),
        }
    }

    async fn get_access_request(&self, organization: &str, id: &str) -> Result<Option<AccessRequest>> {
        let mut conn = self.connection().await?;
        read_full(&mut conn, organization, id).await
    }

    async fn list_access_requests(
        &self,
        organization: &str,
        filter: &AccessRequestFilter,
    ) -> Result<Vec<AccessRequest>> {
        let mut conditions = vec!["organization = $1".to_owned()];
        let mut texts: Vec<String> = vec![organization.to_owned()];
        if let Some(requester) = &filter.requester {
            texts.push(principal_key(requester));
            conditions.push(format!("requester_key = ${}", texts.len()));
        }
        if let Some(status) = filter.status {
            texts.push(status.as_str().to_owned());
            conditions.push(format!("status = ${}", texts.len()));
        }
        let mut numbers: Vec<i64> = Vec::new();
        if let Some((created, id)) = &filter.after {
            texts.push(id.clone());
            let id_at = texts.len();
            numbers.push(*created);
            let created_at = texts.len() + numbers.len();
            conditions.push(format!(
                "(created_ms > ${created_at} OR (created_ms = ${created_at} AND id > ${id_at}))"
            ));
        }
        numbers.push(i64::from(filter.limit));
        let limit_at = texts.len() + numbers.len();
        // Only placeholders are formatted in; every value is bound, texts first.
        let sql = format!(
            "SELECT {COLUMNS} FROM access_requests WHERE {} ORDER BY created_ms, id LIMIT ${limit_at}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for text in texts {
            query = query.bind(text);
        }
        for number in numbers {
            query = query.bind(number);
        }
        let mut conn = self.connection().await?;
        let rows = query.fetch_all(&mut *conn).await.map_err(query_error("list access requests"))?;
        let mut requests = rows.iter().map(read_request).collect::<Result<Vec<_>>>()?;
        for request in &mut requests {
            request.approvals = approvals_of(&mut conn, &request.id).await?;
        }
        Ok(requests)
    }

    async fn approve_access_request(
        &self,
        organization: &str,
        id: &str,
        approver: &Principal,
        comment: Option<&str>,
    ) -> Result<ApprovalOutcome> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        // Claim the row first: on PostgreSQL a concurrent approval waits here
        // and then counts this one's approval, so exactly one of them grants.
        let claimed = tx
            .execute(
                sqlx::query(
                    "UPDATE access_requests SET updated_ms = $1, version = version + 1 \
                     WHERE organization = $2 AND id = $3 AND status = 'pending'",
                )
                .bind(now)
                .bind(organization)
                .bind(id),
                "claim an access request",
            )
            .await?;
        if claimed == 0 {
            drop(tx);
            return Ok(match self.get_access_request(organization, id).await? {
                Some(request) => ApprovalOutcome::NotPending(request),
                None => ApprovalOutcome::Absent,
            });
        }
        let inserted = tx
            .execute(
                sqlx::query(
                    "INSERT INTO access_request_approvals (request_id, approver_key, approver, approved_ms, \
                     comment) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, approver_key) DO NOTHING",
                )
                .bind(id)
                .bind(principal_key(approver))
                .bind(approver.name.as_str())
                .bind(now)
                .bind(comment.map(str::to_owned)),
                "record an approval",
            )
            .await?;
        if inserted == 0 {
            drop(tx);
            return Ok(match self.get_access_request(organization, id).await? {
                Some(request) => ApprovalOutcome::AlreadyApproved(request),
                None => ApprovalOutcome::Absent,
            });
        }
        let request = reread(&mut tx, organization, id).await?;
        let approvals = request.approvals.len() as i64;
        tx.audit(AuditEntry::success("accessRequest.approve", target(&request)).with_details(
            serde_json::json!({
                "role": request.role,
                "workspace": request.workspace,
                "approvals": approvals,
                "approvalsNeeded": request.approvals_needed,
                "comment": comment,
            }),
        ))
        .await?;
        if approvals < request.approvals_needed {
            tx.commit().await?;
            return Ok(ApprovalOutcome::Recorded(request));
        }
        let expires = now.saturating_add(request.duration_ms);
        let grant = grant_record(&request, expires);
        insert_grant(&mut tx, &grant).await?;
        tx.execute(
            sqlx::query(
                "UPDATE access_requests SET status = 'approved', decided_ms = $1, decided_by = $2, \
                 decision_comment = $3, expires_ms = $4, assignment_uid = $5 WHERE id = $6",
            )
            .bind(now)
            .bind(approver.name.as_str())
            .bind(comment.map(str::to_owned))
            .bind(expires)
            .bind(grant.meta.uid.as_str())
            .bind(id),
            "approve an access request",
        )
        .await?;
        let request = reread(&mut tx, organization, id).await?;
        let mut grant_details = details(&request);
        grant_details["assignment"] = serde_json::Value::String(grant.meta.uid.clone());
        let approvers: Vec<&str> = request.approvals.iter().map(|a| a.approver.as_str()).collect();
        grant_details["approvers"] = serde_json::json!(approvers);
        tx.audit(AuditEntry::success("accessRequest.grant", target(&request)).with_details(grant_details))
            .await?;
        enqueue(&mut tx, &request, NotificationEvent::Approved, now).await?;
        tx.commit().await?;
        Ok(ApprovalOutcome::Granted(request))
    }

    async fn deny_access_request(
        &self,
        organization: &str,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Decision> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        let Some(stored) = read_full(tx.conn(), organization, id).await? else {
            return Ok(Decision::Absent);
        };
        let pending = [AccessRequestStatus::Pending];
        if !transition(&mut tx, &stored, &pending, AccessRequestStatus::Denied, by, comment, now).await? {
            return Ok(Decision::NotApplicable(stored));
        }
        let request = reread(&mut tx, organization, id).await?;
        let mut entry_details = details(&request);
        entry_details["comment"] = comment.into();
        tx.audit(AuditEntry::success("accessRequest.deny", target(&request)).with_details(entry_details))
            .await?;
        enqueue(&mut tx, &request, NotificationEvent::Denied, now).await?;
        tx.commit().await?;
        Ok(Decision::Done(request))
    }

    async fn revoke_access_request(
        &self,
        organization: &str,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Decision> {
        let now = now_ms();
        let mut tx = self.begin_write(organization).await?;
        let Some(stored) = read_full(tx.conn(), organization, id).await? else {
            return Ok(Decision::Absent);
        };
        // An approved request whose grant has ended is expired, not revocable.
        let live = stored.phase(now);
        if !matches!(live, AccessRequestStatus::Pending | AccessRequestStatus::Approved) {
            return Ok(Decision::NotApplicable(stored));
        }
        let from = [AccessRequestStatus::Pending, AccessRequestStatus::Approved];
        if !transition(&mut tx, &stored, &from, AccessRequestStatus::Revoked, by, comment, now).await? {
            return Ok(Decision::NotApplicable(stored));
        }
        delete_grant(&mut tx, &stored).await?;
        let request = reread(&mut tx, organization, id).await?;
        let mut entry_details = details(&request);
        entry_details["comment"] = comment.into();
        entry_details["was"] = live.as_str().into();
        tx.audit(AuditEntry::success("accessRequest.revoke", target(&request)).with_details(entry_details))
            .await?;
        enqueue(&mut tx, &request, NotificationEvent::Revoked, now).await?;
        tx.commit().await?;
        Ok(Decision::Done(request))
    }

    async fn expire_access_requests(&self, now_ms: i64) -> Result<Vec<AccessRequest>> {
        let due = {
            let mut conn = self.connection().await?;
            let rows = sqlx::query(
                "SELECT organization, id FROM access_requests WHERE status = 'approved' AND expires_ms <= $1 \
                 ORDER BY expires_ms LIMIT $2",
            )
            .bind(now_ms)
            .bind(SWEEP_BATCH)
            .fetch_all(&mut *conn)
            .await
            .map_err(query_error("find expired access requests"))?;
            rows.iter()
                .map(|row| {
                    Ok((
                        column::<String>(row, "access_requests", "organization")?,
                        column::<String>(row, "access_requests", "id")?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?
        };
        let system = AuditContext::system("access-request-expiry");
        let mut expired = Vec::new();
        for (organization, id) in due {
            let mut tx = self.begin_write(&organization).await?;
            let Some(stored) = read_full(tx.conn(), &organization, &id).await? else { continue };
            let approved = [AccessRequestStatus::Approved];
            let end = stored.expires_ms.unwrap_or(now_ms);
            // Recorded as ended when the grant ended, not when the sweep came.
            if !transition(&mut tx, &stored, &approved, AccessRequestStatus::Expired, "system", None, end)
                .await?
            {
                continue;
            }
            delete_grant(&mut tx, &stored).await?;
            let request = reread(&mut tx, &organization, &id).await?;
            tx.audit_as(
                &system,
                AuditEntry::success("accessRequest.expire", target(&request)).with_details(details(&request)),
            )
            .await?;
            enqueue(&mut tx, &request, NotificationEvent::Expired, now_ms).await?;
            tx.commit().await?;
            expired.push(request);
        }
        Ok(expired)
    }

    async fn next_access_request_expiry(&self) -> Result<Option<i64>> {
        let mut conn = self.connection().await?;
        let row =
            sqlx::query("SELECT MIN(expires_ms) AS next FROM access_requests WHERE status = 'approved'")
                .fetch_one(&mut *conn)
                .await
                .map_err(query_error("find the next access request expiry"))?;
        column(&row, "access_requests", "next")
    }

    async fn claim_access_request_notifications(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedNotification>> {
        // SQLite has one writer: the claim takes the writers' turn.
        let mut tx = self.begin_unlogged_write().await?;
        let due = sqlx::query(
            "SELECT id FROM access_request_notifications WHERE done_ms IS NULL AND next_attempt_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $1) ORDER BY next_attempt_ms LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(tx.conn())
        .await
        .map_err(query_error("find due access request notifications"))?;
        let mut claimed = Vec::new();
        for row in &due {
            let id: String = column(row, N, "id")?;
            // Compare-and-set on the lease: of two workers, one wins the row.
            let row = sqlx::query(
                "UPDATE access_request_notifications SET lease_until_ms = $1 WHERE id = $2 \
                 AND done_ms IS NULL AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 RETURNING id, organization, request_id, event, created_ms, attempts, delivered_json",
            )
            .bind(lease_until_ms)
            .bind(id.as_str())
            .bind(now_ms)
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("claim an access request notification"))?;
            if let Some(row) = row {
                claimed.push(read_claimed(&row)?);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_access_request_notification(
        &self,
        id: &str,
        delivered: &[String],
        outcome: &NotificationOutcome,
        now_ms: i64,
    ) -> Result<()> {
        let delivered = serde_json::to_string(delivered).unwrap_or_else(|_| "[]".to_owned());
        let (done, next, error) = match outcome {
            NotificationOutcome::Delivered => (Some(now_ms), now_ms, None),
            NotificationOutcome::Retry { next_attempt_ms, error } => {
                (None, *next_attempt_ms, Some(error.clone()))
            }
            NotificationOutcome::GiveUp { error } => (Some(now_ms), now_ms, Some(error.clone())),
        };
        let mut tx = self.begin_unlogged_write().await?;
        sqlx::query(
            "UPDATE access_request_notifications SET attempts = attempts + 1, delivered_json = $1, \
             done_ms = $2, next_attempt_ms = $3, last_error = $4, lease_until_ms = NULL WHERE id = $5",
        )
        .bind(delivered)
        .bind(done)
        .bind(next)
        .bind(error)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(query_error("record an access request notification attempt"))?;
        tx.commit().await
    }
}

const N: &str = "access_request_notifications";

fn read_claimed(row: &AnyRow) -> Result<ClaimedNotification> {
    let event: String = column(row, N, "event")?;
    let delivered: String = column(row, N, "delivered_json")?;
    Ok(ClaimedNotification {
        id: column(row, N, "id")?,
        organization: column(row, N, "organization")?,
        request_id: column(row, N, "request_id")?,
        event: NotificationEvent::parse(&event).ok_or_else(|| StoreError::Corrupt {
            table: N,
            column: "event",
            source: format!("unknown event {event:?}").into(),
        })?,
        created_ms: column(row, N, "created_ms")?,
        attempts: column(row, N, "attempts")?,
        delivered: serde_json::from_str(&delivered).map_err(|e| StoreError::Corrupt {
            table: N,
            column: "delivered_json",
            source: Box::new(e),
        })?,
    })
}

/// The longest the expiry sweep waits between two rounds: a request
/// approved while it waits is recorded expired at most this late (its
/// grant stops counting at its expiry all the same).
pub const EXPIRY_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Ends approved access requests whose grant has run out: at start (so
/// what expired while nothing ran is recorded), then at each next expiry,
/// waiting at most [`EXPIRY_MAX_WAIT`]. Run by the leading operator and
/// by standalone mode; failures are logged and retried at the next round.
pub async fn expire_periodically(store: Store) {
    loop {
        let now = now_ms();
        match store.expire_access_requests(now).await {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => tracing::info!(expired = expired.len(), "access requests expired, grants removed"),
            Err(e) => {
                tracing::warn!("could not expire access requests: {}", crate::error_chain::error_chain(&e))
            }
        }
        let wait = match store.next_access_request_expiry().await {
            Ok(Some(at)) => {
                let until = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                std::time::Duration::from_millis(until).min(EXPIRY_MAX_WAIT)
            }
            Ok(None) => EXPIRY_MAX_WAIT,
            Err(e) => {
                tracing::warn!(
                    "could not read the next access request expiry: {}",
                    crate::error_chain::error_chain(&e)
                );
                EXPIRY_MAX_WAIT
            }
        };
        // A round right at the expiry instant finds it due (`<=`).
        tokio::time::sleep(wait.max(std::time::Duration::from_millis(50))).await;
    }
}
