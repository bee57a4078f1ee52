//! An [`AccessIndex`] of one organization that follows the store: loaded once,
//! then updated change by change, and published to readers as immutable
//! snapshots through `tokio::sync::watch`.
//!
//! ```text
//!  ChangeSubscription ──notice──► catch up: one read snapshot of the store
//!                                   ├─ change_log rows since the last seq (this organization)
//!                                   └─ current rows of what they name ──► Vec<IndexOp>
//!                                                                          │
//!            ┌──────────── apply to the spare copy, publish it ◄───────────┘
//!            ▼
//!   watch::Sender<Arc<IndexSnapshot>> ──► readers (clone the Arc, drop it after the request)
//! ```
//!
//! Consistency: every catch-up reads, in one snapshot, every change logged
//! since the last horizon and the rows they name, and resumes from this
//! snapshot's horizon (see [`super::changes`]); so each published index is
//! exactly the store's state at some commit — never half a transaction — and
//! no change is skipped. Changes committed above the horizon are read again
//! next time (harmless), and while there are some the follower looks again
//! shortly even without a notice, to move its `seq` past them. Readers hold
//! an `Arc` to a snapshot that is never mutated.
//!
//! Cost: two copies of the index are kept (left-right). A batch of operations
//! is applied to the copy readers do not see, which is then published; the
//! copy it replaces is brought up to date with the same operations on the next
//! batch, once no reader holds it any more. If a reader still does, the
//! follower reloads from the store instead (rare: readers hold snapshots for
//! the length of a request). Names of users and groups are compared without
//! regard to case, by the index itself ([`crate::authz::name_key`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admin::Owner;
use super::changes::{self, ChangeEvent, ChangeFeed, ChangeSubscription};
use super::desired::{self, parse_principal_kind};
use super::error::query_error;
use super::records::*;
use super::{Change, Result, Store, bool_column, column, enum_column};
use crate::authz::role_graph::RoleDefinition;
use crate::authz::{AccessIndex, Assignment, Principal, Scope};

/// What readers see: the index as of change `seq`.
#[derive(Debug)]
pub struct IndexSnapshot {
    /// Every change at or below this position is reflected (and possibly
    /// some above it).
    pub seq: i64,
    pub index: AccessIndex,
}

/// Keeps an organization's index in step with the store until dropped.
pub struct IndexFollower {
    snapshots: watch::Receiver<Arc<IndexSnapshot>>,
    task: JoinHandle<()>,
}

impl Drop for IndexFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IndexFollower {
    /// Subscribes to changes, loads the organization's state, publishes the
    /// first snapshot and starts following.
    pub async fn start(store: Store, organization: impl Into<String>) -> Result<Self> {
        let organization = organization.into();
        // Subscribe before loading: a change committed in between is then
        // both in the load and announced, and applying it again is harmless.
        let subscription = store.subscribe().await?;
        let mut state = FollowerState::new(store, organization);
        let first = state.reload().await?;
        let (sender, snapshots) = watch::channel(first);
        let task = tokio::spawn(state.run(subscription, sender));
        Ok(Self { snapshots, task })
    }

    /// A receiver that sees every snapshot published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<IndexSnapshot>> {
        self.snapshots.clone()
    }

    /// The latest snapshot. Cheap; hold it for one request, not longer.
    pub fn current(&self) -> Arc<IndexSnapshot> {
        self.snapshots.borrow().clone()
    }
}

/// One change to an index, kept so that the other copy can replay it.
#[derive(Clone, Debug)]
enum IndexOp {
    SetCatalog(Vec<String>),
    SetApprovalRequired(Vec<String>),
    ResetRoles(Vec<(String, RoleDefinition)>),
    ApplyRole(String, RoleDefinition),
    DeleteRole(String),
    ApplyAssignment(Assignment),
    DeleteAssignment(String),
    ApplyUser(String, bool),
    DeleteUser(String),
    SetGroupMembers(String, Vec<String>),
    AddMember(String, String),
    RemoveMember(String, String),
    DeleteGroup(String),
}

fn apply_ops(index: &mut AccessIndex, ops: &[IndexOp]) {
    for op in ops {
        match op {
            IndexOp::SetCatalog(catalog) => index.set_catalog(catalog.iter().cloned()),
            IndexOp::SetApprovalRequired(permissions) => {
                index.set_approval_required(permissions.iter().cloned())
            }
            IndexOp::ResetRoles(roles) => index.reset_roles(roles.iter().cloned()),
            IndexOp::ApplyRole(name, role) => index.apply_role(name, role.clone()),
            IndexOp::DeleteRole(name) => index.delete_role(name),
            IndexOp::ApplyAssignment(assignment) => index.apply_assignment(assignment.clone()),
            IndexOp::DeleteAssignment(id) => index.delete_assignment(id),
            IndexOp::ApplyUser(name, active) => index.apply_user(name, *active),
            IndexOp::DeleteUser(name) => index.delete_user(name),
            IndexOp::SetGroupMembers(group, members) => {
                index.set_group_members(group, members.iter().cloned())
            }
            IndexOp::AddMember(group, user) => index.add_member(group, user),
            IndexOp::RemoveMember(group, user) => index.remove_member(group, user),
            IndexOp::DeleteGroup(group) => index.delete_group(group),
        }
    }
}

struct FollowerState {
    store: Store,
    organization: String,
    /// The horizon of the last catch-up: where the next one resumes.
    seq: i64,
    /// Whether changes above `seq` were applied: their position is then not
    /// covered by the published `seq` until the horizon passes them.
    above_horizon: bool,
    /// Ids to name keys, to undo what a deleted or renamed user or group did.
    users: HashMap<String, String>,
    groups: HashMap<String, String>,
    /// IdentityProvider name to how many group mappings it put in the index
    /// (assignments `idp:{name}:{i}`), to take them out again.
    idp_mappings: HashMap<String, usize>,
    /// The copy readers do not see, if we own it outright …
    spare: Option<AccessIndex>,
    /// … or the previously published one, once readers let go of it.
    previous: Option<Arc<IndexSnapshot>>,
    /// Operations the spare (or previous) copy still lacks.
    lag: Vec<IndexOp>,
}

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How soon to look again while changes above the horizon wait for older
/// writers to end (usually a few milliseconds).
const HORIZON_RECHECK: Duration = Duration::from_millis(10);
/// How long a follower waits for a notice before it reads the log anyway.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

impl FollowerState {
    fn new(store: Store, organization: String) -> Self {
        Self {
            store,
            organization,
            seq: 0,
            above_horizon: false,
            users: HashMap::new(),
            groups: HashMap::new(),
            idp_mappings: HashMap::new(),
            spare: None,
            previous: None,
            lag: Vec::new(),
        }
    }

    async fn run(mut self, mut subscription: ChangeSubscription, sender: watch::Sender<Arc<IndexSnapshot>>) {
        let mut retry = RETRY_MIN;
        let mut pending = false;
        loop {
            if !pending {
                // No notice may come for changes above the horizon: look
                // again once older writers are done. Nor, on PostgreSQL, for
                // a change whose writer died between its commit and its
                // notice: look now and then when nothing arrives.
                let wait = if self.above_horizon { HORIZON_RECHECK } else { IDLE_RECHECK };
                let next = tokio::time::timeout(wait, subscription.recv()).await.ok();
                match next {
                    None => pending = true,
                    Some(None) => return,
                    Some(Some(event)) => pending = self.concerns_us(&event),
                }
            }
            // Coalesce whatever else has arrived into the same catch-up.
            while let Some(event) = subscription.try_recv() {
                pending |= self.concerns_us(&event);
            }
            if !pending {
                continue;
            }
            match self.catch_up(&sender).await {
                Ok(()) => {
                    pending = false;
                    retry = RETRY_MIN;
                }
                Err(error) => {
                    tracing::warn!(%error, organization = %self.organization, "index follower could not catch up; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            if sender.is_closed() {
                return;
            }
        }
    }

    fn concerns_us(&self, event: &ChangeEvent) -> bool {
        match event {
            ChangeEvent::Committed(notice) => {
                notice.organization == self.organization && notice.seq > self.seq
            }
            ChangeEvent::Missed => true,
        }
    }

    /// Reads what changed since `self.seq` in one snapshot and publishes the result.
    async fn catch_up(&mut self, sender: &watch::Sender<Arc<IndexSnapshot>>) -> Result<()> {
        let mut tx = self.store.begin_read().await?;
        let horizon = changes::read_horizon(&mut tx, self.store.inner.backend).await?.max(self.seq);
        if changes::pruned_through(&mut tx).await? > self.seq {
            // The log no longer reaches back to where we are.
            drop(tx);
            let snapshot = self.reload().await?;
            self.publish_reloaded(sender, snapshot);
            return Ok(());
        }
        // Everything committed in this snapshot, also above the horizon, so
        // that the index is this snapshot of the store.
        let notices = changes::read_log(&mut tx, Some(&self.organization), self.seq, i64::MAX).await?;
        let above_horizon = notices.last().is_some_and(|notice| notice.seq > horizon);
        let changes: Vec<Change> = notices.into_iter().flat_map(|n| n.changes).collect();
        let ops = self.ops_for(&mut tx, &changes).await?;
        drop(tx);
        // Changes applied last time above the horizon need a snapshot at a
        // `seq` that covers them, even when reading them again changes nothing.
        let owed = std::mem::replace(&mut self.above_horizon, above_horizon);
        if ops.is_empty() && !owed {
            self.seq = horizon;
            return Ok(());
        }
        self.publish(sender, horizon, ops).await
    }

    async fn publish(
        &mut self,
        sender: &watch::Sender<Arc<IndexSnapshot>>,
        seq: i64,
        ops: Vec<IndexOp>,
    ) -> Result<()> {
        let other = match (self.spare.take(), self.previous.take()) {
            (Some(index), _) => Some(index),
            (None, Some(previous)) => Arc::try_unwrap(previous).ok().map(|snapshot| snapshot.index),
            (None, None) => None,
        };
        let Some(mut index) = other else {
            tracing::debug!(organization = %self.organization, "a reader still holds the old index; reloading");
            let snapshot = self.reload().await?;
            self.publish_reloaded(sender, snapshot);
            return Ok(());
        };
        apply_ops(&mut index, &self.lag);
        apply_ops(&mut index, &ops);
        self.seq = seq;
        self.previous = Some(sender.send_replace(Arc::new(IndexSnapshot { seq, index })));
        self.lag = ops;
        Ok(())
    }

    fn publish_reloaded(&mut self, sender: &watch::Sender<Arc<IndexSnapshot>>, snapshot: Arc<IndexSnapshot>) {
        // `reload` left the spare copy in `self.spare`; the replaced snapshot
        // is not needed any more.
        drop(sender.send_replace(snapshot));
        self.previous = None;
    }

    /// Loads everything in one snapshot into two fresh copies: one to
    /// publish, one spare. Returns the one to publish.
    async fn reload(&mut self) -> Result<Arc<IndexSnapshot>> {
        let mut tx = self.store.begin_read().await?;
        let seq = changes::read_horizon(&mut tx, self.store.inner.backend).await?;
        let above_horizon =
            !changes::read_log(&mut tx, Some(&self.organization), seq, i64::MAX).await?.is_empty();
        let (mut ops, users, groups) = load_all(&mut tx, &self.organization).await?;
        self.idp_mappings.clear();
        for provider in desired::list::<IdentityProviderRecord>(&mut tx, &self.organization).await? {
            let mappings = group_mappings(&provider);
            self.idp_mappings.insert(provider.meta.name.clone(), mappings.len());
            ops.extend(mappings.into_iter().map(IndexOp::ApplyAssignment));
        }
        drop(tx);
        let mut published = AccessIndex::new();
        apply_ops(&mut published, &ops);
        let mut spare = AccessIndex::new();
        apply_ops(&mut spare, &ops);
        self.users = users;
        self.groups = groups;
        self.spare = Some(spare);
        self.previous = None;
        self.lag = Vec::new();
        self.seq = seq;
        self.above_horizon = above_horizon;
        Ok(Arc::new(IndexSnapshot { seq, index: published }))
    }

    /// The operations that bring the index from the last state to the one in
    /// the snapshot `conn` reads, given what changed in between.
    async fn ops_for(&mut self, conn: &mut AnyConnection, changes: &[Change]) -> Result<Vec<IndexOp>> {
        let organization = self.organization.clone();
        let mut organization_changed = false;
        let mut roles = BTreeSet::new();
        let mut assignments = BTreeSet::new();
        let mut users = BTreeSet::new();
        let mut groups = BTreeSet::new();
        let mut memberships = BTreeSet::new();
        let mut replaced = BTreeSet::new();
        let mut providers = BTreeSet::new();
        for change in changes {
            match change {
                Change::Resource { kind: ResourceKind::Organization, .. } => organization_changed = true,
                Change::Resource { kind: ResourceKind::Role, name, .. } => {
                    roles.insert(name.clone());
                }
                Change::Resource { kind: ResourceKind::RoleAssignment, uid, .. } => {
                    assignments.insert(uid.clone());
                }
                Change::Resource { kind: ResourceKind::IdentityProvider, name, .. } => {
                    providers.insert(name.clone());
                }
                Change::Resource { .. } | Change::SigningKey { .. } => {}
                Change::User { id, .. } => {
                    users.insert(id.clone());
                }
                Change::Group { id, .. } => {
                    groups.insert(id.clone());
                }
                Change::Membership { group_id, user_id, .. } => {
                    memberships.insert((group_id.clone(), user_id.clone()));
                }
                Change::GroupMembers { group_id, .. } => {
                    replaced.insert(group_id.clone());
                }
            }
        }

        let mut ops = Vec::new();
        if organization_changed {
            ops.extend(organization_ops(desired::organization_of(conn, &organization).await?));
        }
        for name in roles {
            match desired::get_by_name::<RoleRecord>(conn, &organization, &name).await? {
                Some(role) => ops.push(IndexOp::ApplyRole(name, role_definition(&role))),
                None => ops.push(IndexOp::DeleteRole(name)),
            }
        }
        for uid in assignments {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE uid = $1 AND namespace = $2"
            )))
            .bind(uid.as_str())
            .bind(organization.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(query_error("read an assignment"))?;
            match row {
                Some(row) => ops.push(IndexOp::ApplyAssignment(assignment_of_row(&row)?)),
                None => ops.push(IndexOp::DeleteAssignment(uid)),
            }
        }
        // An IdentityProvider's group mappings are assignments to the
        // groups of those names: replaced as a whole when it changes.
        for name in providers {
            let before = self.idp_mappings.remove(&name).unwrap_or(0);
            ops.extend((0..before).map(|i| IndexOp::DeleteAssignment(mapping_id(&name, i))));
            if let Some(provider) =
                desired::get_by_name::<IdentityProviderRecord>(conn, &organization, &name).await?
            {
                let mappings = group_mappings(&provider);
                self.idp_mappings.insert(name, mappings.len());
                ops.extend(mappings.into_iter().map(IndexOp::ApplyAssignment));
            }
        }

        // Users and groups in three steps, so that a name passed from one
        // user (or group) to another within the batch ends up right: first
        // forget old names, then apply current ones, then single memberships.
        let mut current_users = Vec::new();
        for id in &users {
            let now = user_status(conn, &organization, id).await?;
            let before = self.users.get(id).cloned();
            if before.is_some() && before != now.as_ref().map(|(name, _)| name.clone()) {
                ops.push(IndexOp::DeleteUser(before.clone().unwrap_or_default()));
            }
            current_users.push((id.clone(), before, now));
        }
        let mut current_groups = Vec::new();
        for id in &groups {
            let now = group_name(conn, &organization, id).await?;
            let before = self.groups.get(id).cloned();
            if before.is_some() && before != now {
                ops.push(IndexOp::DeleteGroup(before.clone().unwrap_or_default()));
            }
            current_groups.push((id.clone(), before, now));
        }
        for (id, before, now) in current_users {
            match now {
                Some((name, active)) => {
                    ops.push(IndexOp::ApplyUser(name.clone(), active));
                    if before.as_ref() != Some(&name) {
                        for group in group_names_of_user(conn, &organization, &id).await? {
                            ops.push(IndexOp::AddMember(group, name.clone()));
                        }
                    }
                    self.users.insert(id, name);
                }
                None => {
                    self.users.remove(&id);
                }
            }
        }
        for (id, before, now) in current_groups {
            match now {
                Some(name) => {
                    if before.as_ref() != Some(&name) {
                        replaced.insert(id.clone());
                    }
                    self.groups.insert(id, name);
                }
                None => {
                    self.groups.remove(&id);
                    replaced.remove(&id);
                }
            }
        }
        for id in replaced {
            if let Some(name) = self.groups.get(&id).cloned().or(group_name(conn, &organization, &id).await?)
            {
                let members = member_names(conn, &id).await?;
                self.groups.insert(id, name.clone());
                ops.push(IndexOp::SetGroupMembers(name, members));
            }
        }
        for (group_id, user_id) in memberships {
            match membership_names(conn, &organization, &group_id, &user_id).await? {
                Some((group, user)) => ops.push(IndexOp::AddMember(group, user)),
                None => {
                    if let (Some(group), Some(user)) = (self.groups.get(&group_id), self.users.get(&user_id))
                    {
                        ops.push(IndexOp::RemoveMember(group.clone(), user.clone()));
                    }
                }
            }
        }
        Ok(ops)
    }
}

fn mapping_id(provider: &str, index: usize) -> String {
    format!("idp:{provider}:{index}")
}

/// An IdentityProvider's `groupMappings` as assignments to groups by name
/// (the groups its sign-ins hydrate). A spec that does not parse maps nothing.
fn group_mappings(provider: &IdentityProviderRecord) -> Vec<Assignment> {
    match serde_json::from_str::<crate::api::IdentityProviderSpec>(&provider.spec_json) {
        Ok(spec) => group_mapping_assignments(&provider.meta.name, &spec),
        Err(error) => {
            tracing::error!(name = %provider.meta.name, %error, "an IdentityProvider's stored spec is unreadable");
            Vec::new()
        }
    }
}

/// What the index takes of an IdentityProvider's `groupMappings`: the
/// group of that name holds the role in the scope, with no end; the i-th
/// mapping's assignment id is `idp:{provider}:{i}`. Also how `portcullis
/// diff` reads a folder's mappings, so a review grants as the services do.
pub fn group_mapping_assignments(provider: &str, spec: &crate::api::IdentityProviderSpec) -> Vec<Assignment> {
    spec.group_mappings
        .iter()
        .enumerate()
        .map(|(i, mapping)| Assignment {
            id: mapping_id(provider, i),
            principal: Principal::group(mapping.group.clone()),
            role: mapping.role.clone(),
            scope: mapping.workspace.clone().map(Scope::Workspace).unwrap_or(Scope::Organization),
            expires_at: None,
            approved_request: false,
        })
        .collect()
}

/// What the index takes of a stored Role. Also how `portcullis diff` reads
/// a folder's roles, so a review expands them as the services do.
pub fn role_definition(role: &RoleRecord) -> RoleDefinition {
    RoleDefinition { grants: role.permissions.clone(), included_roles: role.included_roles.clone() }
}

/// What the index takes of an Organization: its catalog and the
/// permissions only an approved access request gives.
fn organization_ops(organization: Option<OrganizationRecord>) -> [IndexOp; 2] {
    let Some(organization) = organization else {
        return [IndexOp::SetCatalog(Vec::new()), IndexOp::SetApprovalRequired(Vec::new())];
    };
    let approval_required = approval_required(&organization);
    [IndexOp::SetCatalog(organization.catalog), IndexOp::SetApprovalRequired(approval_required)]
}

/// `spec.approvalRequired` of a stored Organization.
fn approval_required(organization: &OrganizationRecord) -> Vec<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        #[serde(default)]
        approval_required: Vec<String>,
    }
    match serde_json::from_str::<Spec>(&organization.spec_json) {
        Ok(spec) => spec.approval_required,
        Err(error) => {
            tracing::error!(name = %organization.meta.name, %error, "an Organization's stored spec is unreadable");
            Vec::new()
        }
    }
}

/// What the index reads of a `role_assignments` row.
const ASSIGNMENT_COLUMNS: &str = "uid, principal_kind, principal_name, role, workspace, expires_at_ms, owner";

/// The assignment of a row of [`ASSIGNMENT_COLUMNS`]: an approved access
/// request's grant is the row that request owns (`owner`, which only the
/// store's access request steps write), never one a manifest or the admin
/// API could name.
fn assignment_of_row(row: &sqlx::any::AnyRow) -> Result<Assignment> {
    const T: &str = "role_assignments";
    let kind = enum_column(row, T, "principal_kind", parse_principal_kind)?;
    let name: String = column(row, T, "principal_name")?;
    let workspace: Option<String> = column(row, T, "workspace")?;
    let expires_at_ms: Option<i64> = column(row, T, "expires_at_ms")?;
    let owner: String = column(row, T, "owner")?;
    Ok(Assignment {
        id: column(row, T, "uid")?,
        principal: Principal { kind, name },
        role: column(row, T, "role")?,
        scope: workspace.map(Scope::Workspace).unwrap_or(Scope::Organization),
        // The index counts in seconds; rounding down ends access early, never late.
        expires_at: expires_at_ms.map(|ms| ms.div_euclid(1000)),
        approved_request: owner == Owner::AccessRequest.as_str(),
    })
}

/// What the index takes of a RoleAssignment manifest (expiry in seconds):
/// how `portcullis diff` reads a folder's assignments. A manifest is never
/// an access request's grant.
pub fn assignment(record: &AssignmentRecord) -> Assignment {
    let principal = Principal { kind: record.principal_kind, name: record.principal_name.clone() };
    Assignment {
        id: record.meta.uid.clone(),
        principal,
        role: record.role.clone(),
        scope: match &record.workspace {
            Some(workspace) => Scope::Workspace(workspace.clone()),
            None => Scope::Organization,
        },
        // The index counts in seconds; rounding down ends access early, never late.
        expires_at: record.expires_at_ms.map(|ms| ms.div_euclid(1000)),
        approved_request: false,
    }
}

type Loaded = (Vec<IndexOp>, HashMap<String, String>, HashMap<String, String>);

/// Everything the index needs about an organization, as operations on an
/// empty index, plus the id → name maps.
async fn load_all(conn: &mut AnyConnection, organization: &str) -> Result<Loaded> {
    let mut ops = Vec::new();
    ops.extend(organization_ops(desired::organization_of(conn, organization).await?));
    let roles = desired::list::<RoleRecord>(conn, organization).await?;
    ops.push(IndexOp::ResetRoles(roles.iter().map(|r| (r.meta.name.clone(), role_definition(r))).collect()));

    // Assignments are the bulk: read only the columns the index needs.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE namespace = $1"
    )))
    .bind(organization)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error("load assignments"))?;
    for row in &rows {
        ops.push(IndexOp::ApplyAssignment(assignment_of_row(row)?));
    }

    let mut users = HashMap::new();
    let rows = sqlx::query("SELECT id, user_name_key, active FROM users WHERE organization = $1")
        .bind(organization)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error("load users"))?;
    for row in &rows {
        let name: String = column(row, "users", "user_name_key")?;
        ops.push(IndexOp::ApplyUser(name.clone(), bool_column(row, "users", "active")?));
        users.insert(column(row, "users", "id")?, name);
    }

    let mut groups = HashMap::new();
    let rows = sqlx::query("SELECT id, display_name_key FROM groups WHERE organization = $1")
        .bind(organization)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error("load groups"))?;
    for row in &rows {
        groups.insert(
            column::<String>(row, "groups", "id")?,
            column::<String>(row, "groups", "display_name_key")?,
        );
    }
    let rows = sqlx::query(
        "SELECT m.group_id AS group_id, m.user_id AS user_id FROM memberships m \
         JOIN groups g ON g.id = m.group_id WHERE g.organization = $1",
    )
    .bind(organization)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error("load memberships"))?;
    let mut members: HashMap<&str, Vec<String>> = HashMap::new();
    for row in &rows {
        let group_id: String = column(row, "memberships", "group_id")?;
        let user_id: String = column(row, "memberships", "user_id")?;
        if let (Some((group_id, _)), Some(user)) = (groups.get_key_value(&group_id), users.get(&user_id)) {
            members.entry(group_id.as_str()).or_default().push(user.clone());
        }
    }
    for (group_id, names) in members {
        if let Some(group) = groups.get(group_id) {
            ops.push(IndexOp::SetGroupMembers(group.clone(), names));
        }
    }
    Ok((ops, users, groups))
}

async fn user_status(
    conn: &mut AnyConnection,
    organization: &str,
    id: &str,
) -> Result<Option<(String, bool)>> {
    let row = sqlx::query("SELECT user_name_key, active FROM users WHERE organization = $1 AND id = $2")
        .bind(organization)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(query_error("read a user"))?;
    row.map(|row| Ok((column(&row, "users", "user_name_key")?, bool_column(&row, "users", "active")?)))
        .transpose()
}

async fn group_name(conn: &mut AnyConnection, organization: &str, id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT display_name_key FROM groups WHERE organization = $1 AND id = $2")
        .bind(organization)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(query_error("read a group"))?;
    row.map(|row| column(&row, "groups", "display_name_key")).transpose()
}

async fn group_names_of_user(
    conn: &mut AnyConnection,
    organization: &str,
    user_id: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT g.display_name_key AS name FROM memberships m JOIN groups g ON g.id = m.group_id \
         WHERE m.user_id = $1 AND g.organization = $2",
    )
    .bind(user_id)
    .bind(organization)
    .fetch_all(conn)
    .await
    .map_err(query_error("read a user's groups"))?;
    rows.iter().map(|row| column(row, "groups", "name")).collect()
}

async fn member_names(conn: &mut AnyConnection, group_id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT u.user_name_key AS name FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await
    .map_err(query_error("read a group's members"))?;
    rows.iter().map(|row| column(row, "users", "name")).collect()
}

async fn membership_names(
    conn: &mut AnyConnection,
    organization: &str,
    group_id: &str,
    user_id: &str,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT g.display_name_key AS group_name, u.user_name_key AS user_name FROM memberships m \
         JOIN groups g ON g.id = m.group_id JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 AND m.user_id = $2 AND g.organization = $3",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(organization)
    .fetch_optional(conn)
    .await
    .map_err(query_error("read a membership"))?;
    row.map(|row| Ok((column(&row, "memberships", "group_name")?, column(&row, "memberships", "user_name")?)))
        .transpose()
}
