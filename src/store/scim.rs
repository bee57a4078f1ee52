//! What the SCIM service needs of the store beyond [`UserStore`] and
//! [`GroupStore`](super::GroupStore): bearer-token lookup, sync health,
//! filtered and paged reads, and writes that keep a user's extra SCIM
//! attributes or a group's membership changes in one transaction.
//!
//! ```text
//!   scim_tokens (org, idp) ── token_hash ──► which IdentityProvider is calling
//!   scim_sync_health (org, idp)  ◄── counts added in batches by the service; read by the operator
//!   users.scim_json              ── attributes without a column (title, enterprise, …)
//!   users/groups.provisioned_by  ── the IdentityProvider that created them
//! ```
//!
//! Filters arrive already translated by [`super::scim_query`].

use std::future::Future;

use sqlx::any::AnyArguments;
use sqlx::{Any, AssertSqlSafe};
use subtle::ConstantTimeEq;

use super::changes::{Change, WriteTx};
use super::desired::{self, ISSUER_NAMESPACE};
use super::error::query_error;
use super::identity::{
    GROUP_COLUMNS, Member, USER_COLUMNS, UserExtras, group_from_row, group_target, insert_group, insert_user,
    not_found, read_group, update_group_row, update_user_row, user_entry, user_from_row, user_target,
};
use super::records::*;
use super::scim_query::{SqlValue, SqlWhere};
use super::{Backend, Result, Store, StoreError, column, now_ms};
use crate::audit::AuditEntry;
use crate::secret::SecretString;

type AnyQuery<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// Rows bound per statement when a list of ids goes into `IN (…)`.
const ID_BATCH: usize = 500;
/// A filtered page whose matches number at most this many (known from the
/// `totalResults` count, taken first) reads its matches and then sorts them,
/// rather than walking the sort order's index until the page is full. The
/// planner cannot see that the matches of `userName co "r-03"` sit together
/// far down the `userName` order (measured: 40 ms walking, 3 ms for 10,000
/// matches through the trigram index and a top-N sort).
const FILTER_FIRST_MAX: u64 = 20_000;
/// Above this many changed members, one `GroupMembers` change is announced
/// instead of one `Membership` change per member.
const MEMBERSHIP_CHANGES_ONE_BY_ONE: usize = 64;

/// How an IdentityProvider's SCIM client is doing, for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimSyncHealth {
    pub organization: String,
    pub identity_provider: String,
    pub last_request_ms: i64,
    /// The last error the service answered with (client or server), and when.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub request_count: u64,
    pub error_count: u64,
    /// Users and groups this IdentityProvider created that still exist.
    pub users_provisioned: u64,
    pub groups_provisioned: u64,
}

/// Requests of one IdentityProvider's SCIM client counted since the last
/// write of its sync health (the service counts in memory and writes in
/// batches, see `scim::service::sync_health`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScimRequestTally {
    pub requests: u64,
    pub errors: u64,
    pub last_request_ms: i64,
    /// The latest error answered, and when.
    pub last_error: Option<(String, i64)>,
}

impl ScimRequestTally {
    /// Counts one more request, answered with `error` if it failed.
    pub fn count(&mut self, error: Option<&str>, at_ms: i64) {
        self.requests += 1;
        self.last_request_ms = self.last_request_ms.max(at_ms);
        if let Some(error) = error {
            self.errors += 1;
            self.last_error = Some((error.to_owned(), at_ms));
        }
    }

    /// Adds a tally counted earlier (one whose write failed) to this one.
    pub fn absorb(&mut self, earlier: ScimRequestTally) {
        self.requests += earlier.requests;
        self.errors += earlier.errors;
        self.last_request_ms = self.last_request_ms.max(earlier.last_request_ms);
        if self.last_error.is_none() {
            self.last_error = earlier.last_error;
        }
    }
}

/// Who a SCIM bearer token belongs to: an IdentityProvider with SCIM enabled
/// of the Organization named in the request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimTokenOwner {
    /// The Organization's namespace: the store's key for its users and groups.
    pub namespace: String,
    /// The Organization's spec (its provisioning mode).
    pub organization_spec_json: String,
    pub identity_provider: String,
}

/// A user with the SCIM attributes that have no column (`users.scim_json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScimUser {
    pub user: User,
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// The IdentityProvider whose SCIM client created the user, if one did.
    pub provisioned_by: Option<String>,
}

/// A group with the IdentityProvider whose SCIM client created it, if one did.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimGroup {
    pub group: Group,
    pub provisioned_by: Option<String>,
}

/// One page of a query, and how many match in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// Which rows a page reads: a translated filter, an `ORDER BY` list from
/// [`super::scim_query::order_by`], and the window. `limit == 0` counts only.
#[derive(Clone, Copy, Debug)]
pub struct PageQuery<'a> {
    pub filter: Option<&'a SqlWhere>,
    pub order_by: &'a str,
    pub offset: u64,
    pub limit: u32,
}

/// How a write changes a group's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChanges {
    /// Exactly these users.
    Replace(Vec<String>),
    /// Row by row: never rewrites the rest of the list.
    Delta { added: Vec<String>, removed: Vec<String> },
}

/// A group's new state after a SCIM write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupWrite<'a> {
    pub display_name: &'a str,
    pub external_id: Option<&'a str>,
    pub members: MemberChanges,
    /// (user id, display) of members whose `display` the client set.
    pub member_displays: &'a [(String, String)],
}

/// The SCIM service's queries.
pub trait ScimStore {
    /// The IdentityProvider of `organization` with SCIM enabled whose token
    /// hashes to `token_hash`. Every stored hash of the organization is
    /// compared in constant time.
    fn scim_provider_for_token(
        &self,
        organization: &str,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<IdentityProviderRecord>>> + Send;
    /// The IdentityProvider (with SCIM enabled) of the Organization called
    /// `organization_name` whose token hashes to `token_hash`, in one query.
    /// Every stored hash of the organization is compared in constant time.
    fn scim_token_owner(
        &self,
        organization_name: &str,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<ScimTokenOwner>>> + Send;
    /// Adds counted requests (and the latest error) to the IdentityProvider's sync health.
    fn add_scim_requests(
        &self,
        organization: &str,
        identity_provider: &str,
        tally: &ScimRequestTally,
    ) -> impl Future<Output = Result<()>> + Send;
    fn scim_sync_health(
        &self,
        organization: &str,
        identity_provider: &str,
    ) -> impl Future<Output = Result<Option<ScimSyncHealth>>> + Send;

    fn search_scim_users(
        &self,
        organization: &str,
        page: PageQuery<'_>,
    ) -> impl Future<Output = Result<Page<ScimUser>>> + Send;
    fn get_scim_user(
        &self,
        organization: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ScimUser>>> + Send;
    fn create_scim_user(
        &self,
        user: &NewUser,
        extra: &serde_json::Map<String, serde_json::Value>,
        provisioned_by: &str,
    ) -> impl Future<Output = Result<ScimUser>> + Send;
    /// Replaces the user's attributes (and, when `password_hash` is given,
    /// its password) in one transaction, if the stored version is still
    /// `expected_version` (when given). No `password_hash` keeps the password.
    fn update_scim_user(
        &self,
        organization: &str,
        id: &str,
        update: &UserUpdate,
        extra: &serde_json::Map<String, serde_json::Value>,
        password_hash: Option<&SecretString>,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<ScimUser>> + Send;
    /// (user id, group id, group display name) for each membership of these users.
    fn groups_of_users(
        &self,
        organization: &str,
        user_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, String, String)>>> + Send;

    fn search_scim_groups(
        &self,
        organization: &str,
        page: PageQuery<'_>,
    ) -> impl Future<Output = Result<Page<Group>>> + Send;
    /// Creates the group with its members, all or nothing.
    /// A group with the IdentityProvider that created it.
    fn get_scim_group(
        &self,
        organization: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ScimGroup>>> + Send;
    /// Creates the group with its members (and the displays given for
    /// them), all or nothing.
    fn create_scim_group(
        &self,
        group: &NewGroup,
        members: &[String],
        member_displays: &[(String, String)],
        provisioned_by: &str,
    ) -> impl Future<Output = Result<Group>> + Send;
    /// Renames the group and changes its members in one transaction, if the
    /// stored version is still `expected_version` (when given).
    fn update_scim_group(
        &self,
        organization: &str,
        id: &str,
        write: &GroupWrite<'_>,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<Group>> + Send;
    /// Whether the group has more than `limit` members; counts no further.
    fn group_has_more_members_than(
        &self,
        organization: &str,
        group_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Members of a group, ordered by userName: all of them, or only those among `only`.
    fn scim_members(
        &self,
        organization: &str,
        group_id: &str,
        only: Option<&[String]>,
    ) -> impl Future<Output = Result<Vec<Member>>> + Send;
}

/// `set_scim_token_hash` of [`DesiredStateStore`](super::DesiredStateStore):
/// stores (or, with `None`, forgets) the hash of an IdentityProvider's SCIM
/// token. Returns whether the IdentityProvider exists; nothing is stored if not.
pub(in crate::store) async fn set_token_hash(
    store: &Store,
    organization: &str,
    identity_provider: &str,
    token_hash: Option<&str>,
) -> Result<bool> {
    let mut conn = store.connection().await?;
    let exists = desired::get_by_name::<IdentityProviderRecord>(&mut conn, organization, identity_provider)
        .await?
        .is_some();
    drop(conn);
    if !exists && token_hash.is_some() {
        return Ok(false);
    }
    let done = match token_hash {
        Some(hash) => sqlx::query(
            "INSERT INTO scim_tokens (organization, identity_provider, token_hash, created_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (organization, identity_provider) \
             DO UPDATE SET token_hash = excluded.token_hash, created_ms = excluded.created_ms",
        )
        .bind(organization)
        .bind(identity_provider)
        .bind(hash)
        .bind(now_ms()),
        None => sqlx::query("DELETE FROM scim_tokens WHERE organization = $1 AND identity_provider = $2")
            .bind(organization)
            .bind(identity_provider),
    }
    .execute(store.pool())
    .await
    .map_err(query_error("set a SCIM token hash"));
    done?;
    Ok(exists)
}

fn bind_values<'q>(mut query: AnyQuery<'q>, values: &[SqlValue]) -> AnyQuery<'q> {
    for value in values {
        query = match value {
            SqlValue::Text(text) => query.bind(text.clone()),
            SqlValue::Int(n) => query.bind(*n),
            SqlValue::Bool(b) => query.bind(*b),
        };
    }
    query
}

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn extra_json(extra: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    if extra.is_empty() { None } else { serde_json::to_string(extra).ok() }
}

async fn count_where(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    organization: &str,
    filter: Option<&SqlWhere>,
) -> Result<u64> {
    let alias = if table == "users" { "u" } else { "g" };
    let condition = filter.map_or_else(String::new, |f| format!(" AND ({})", f.sql));
    let query = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table} {alias} WHERE {alias}.organization = $1{condition}"
    )))
    .bind(organization.to_owned());
    let row = bind_values(query, filter.map_or(&[][..], |f| &f.binds))
        .fetch_one(conn)
        .await
        .map_err(query_error("count SCIM resources"))?;
    let n: i64 = column(&row, table, "n")?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Users matching `condition` (over `$1` = organization and `binds` from
/// `$2`), with their emails and extra attributes.
async fn read_scim_users(
    conn: &mut sqlx::AnyConnection,
    organization: &str,
    condition: &str,
    binds: &[SqlValue],
    tail: &str,
) -> Result<Vec<ScimUser>> {
    read_scim_users_from(conn, organization, condition, binds, tail, false).await
}

/// [`read_scim_users`]; with `matches_first`, all matching rows are read
/// before `tail` orders and cuts them (PostgreSQL only, see [`FILTER_FIRST_MAX`]).
async fn read_scim_users_from(
    conn: &mut sqlx::AnyConnection,
    organization: &str,
    condition: &str,
    binds: &[SqlValue],
    tail: &str,
    matches_first: bool,
) -> Result<Vec<ScimUser>> {
    let sql = if matches_first {
        format!(
            "WITH u AS MATERIALIZED (SELECT * FROM users u WHERE u.organization = $1 AND ({condition})) \
             SELECT {USER_COLUMNS}, scim_json, provisioned_by FROM u {tail}"
        )
    } else {
        format!(
            "SELECT {USER_COLUMNS}, scim_json, provisioned_by FROM users u WHERE u.organization = $1 AND ({condition}) {tail}"
        )
    };
    let query = sqlx::query(AssertSqlSafe(sql)).bind(organization.to_owned());
    let rows =
        bind_values(query, binds).fetch_all(&mut *conn).await.map_err(query_error("read SCIM users"))?;
    let mut users = Vec::with_capacity(rows.len());
    for row in &rows {
        let extra = match column::<Option<String>>(row, "users", "scim_json")? {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                table: "users",
                column: "scim_json",
                source: Box::new(e),
            })?),
            None => None,
        };
        let provisioned_by = column(row, "users", "provisioned_by")?;
        users.push(ScimUser { user: user_from_row(row)?, extra, provisioned_by });
    }
    super::identity::attach_emails(conn, users.iter_mut().map(|u| &mut u.user)).await?;
    Ok(users)
}

fn window(page: &PageQuery<'_>, binds: usize) -> (String, i64, i64) {
    let limit_at = binds + 2;
    (
        format!("ORDER BY {} LIMIT ${limit_at} OFFSET ${}", page.order_by, limit_at + 1),
        i64::from(page.limit),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

/// Checks that every id is a user of the organization (the first missing
/// one is [`StoreError::NotFound`]), then adds the memberships that are
/// not there yet. Returns how many rows were added.
/// Sets the `display` of members already in the group (one row each).
async fn set_member_displays(
    tx: &mut WriteTx<'_>,
    group_id: &str,
    displays: &[(String, String)],
) -> Result<()> {
    for (user_id, display) in displays {
        let query = sqlx::query("UPDATE memberships SET display = $1 WHERE group_id = $2 AND user_id = $3")
            .bind(display.clone())
            .bind(group_id.to_owned())
            .bind(user_id.clone());
        tx.execute(query, "set a member's display").await?;
    }
    Ok(())
}

async fn insert_members(
    tx: &mut WriteTx<'_>,
    organization: &str,
    group_id: &str,
    ids: &[String],
) -> Result<u64> {
    let mut unique: Vec<&str> = ids.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut added = 0;
    for batch in unique.chunks(ID_BATCH) {
        let list = placeholders(3, batch.len());
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO memberships (group_id, user_id) \
             SELECT $1, id FROM users WHERE organization = $2 AND id IN ({list}) \
             ON CONFLICT (group_id, user_id) DO NOTHING"
        )))
        .bind(group_id.to_owned())
        .bind(organization.to_owned());
        for id in batch {
            query = query.bind((*id).to_owned());
        }
        added += query.execute(tx.conn()).await.map_err(query_error("add group members"))?.rows_affected();
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM users WHERE organization = $1 AND id IN ({})",
            placeholders(2, batch.len())
        )))
        .bind(organization.to_owned());
        for id in batch {
            query = query.bind((*id).to_owned());
        }
        let found = query.fetch_all(tx.conn()).await.map_err(query_error("check group members"))?;
        if found.len() != batch.len() {
            let found: Vec<String> =
                found.iter().map(|row| column::<String>(row, "users", "id")).collect::<Result<_>>()?;
            let missing =
                batch.iter().find(|id| !found.iter().any(|f| f == *id)).copied().unwrap_or_default();
            return Err(not_found(organization, "user", missing));
        }
    }
    Ok(added)
}

async fn delete_members(tx: &mut WriteTx<'_>, group_id: &str, ids: &[String]) -> Result<u64> {
    let mut removed = 0;
    for batch in ids.chunks(ID_BATCH) {
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM memberships WHERE group_id = $1 AND user_id IN ({})",
            placeholders(2, batch.len())
        )))
        .bind(group_id.to_owned());
        for id in batch {
            query = query.bind(id.clone());
        }
        removed +=
            query.execute(tx.conn()).await.map_err(query_error("remove group members"))?.rows_affected();
    }
    Ok(removed)
}

fn record_membership(tx: &mut WriteTx<'_>, organization: &str, group_id: &str, users: &[&String]) {
    if users.len() > MEMBERSHIP_CHANGES_ONE_BY_ONE {
        tx.record(Change::GroupMembers {
            organization: organization.to_owned(),
            group_id: group_id.to_owned(),
        });
        return;
    }
    for user in users {
        tx.record(Change::Membership {
            organization: organization.to_owned(),
            group_id: group_id.to_owned(),
            user_id: (*user).clone(),
        });
    }
}

impl ScimStore for Store {
    async fn scim_provider_for_token(
        &self,
        organization: &str,
        token_hash: &str,
    ) -> Result<Option<IdentityProviderRecord>> {
        let rows =
            sqlx::query("SELECT identity_provider, token_hash FROM scim_tokens WHERE organization = $1")
                .bind(organization)
                .fetch_all(self.pool())
                .await
                .map_err(query_error("read SCIM token hashes"))?;
        let mut matched: Option<String> = None;
        for row in &rows {
            let stored: String = column(row, "scim_tokens", "token_hash")?;
            // Equal lengths always (sha256:<64 hex>); compare every row regardless.
            let equal: bool = stored.as_bytes().ct_eq(token_hash.as_bytes()).into();
            if equal {
                matched = Some(column(row, "scim_tokens", "identity_provider")?);
            }
        }
        let Some(name) = matched else { return Ok(None) };
        let mut conn = self.connection().await?;
        let provider = desired::get_by_name::<IdentityProviderRecord>(&mut conn, organization, &name).await?;
        Ok(provider.filter(|p| p.scim_enabled))
    }

    async fn scim_token_owner(
        &self,
        organization_name: &str,
        token_hash: &str,
    ) -> Result<Option<ScimTokenOwner>> {
        // An issuer name held by two namespaces serves neither, as in
        // `organization_by_name`.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT o.namespace AS namespace, o.spec_json AS spec_json, \
             t.identity_provider AS identity_provider, t.token_hash AS token_hash \
             FROM organizations o \
             JOIN scim_tokens t ON t.organization = o.namespace \
             JOIN identity_providers i ON i.namespace = t.organization AND i.name = t.identity_provider \
             WHERE i.scim_enabled = TRUE AND o.namespace = ({ISSUER_NAMESPACE})"
        )))
        .bind(organization_name)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("find the owner of a SCIM token"))?;
        let mut owner = None;
        for row in &rows {
            let stored: String = column(row, "scim_tokens", "token_hash")?;
            // Equal lengths always (sha256:<64 hex>); compare every row regardless.
            let equal: bool = stored.as_bytes().ct_eq(token_hash.as_bytes()).into();
            if equal {
                owner = Some(ScimTokenOwner {
                    namespace: column(row, "organizations", "namespace")?,
                    organization_spec_json: column(row, "organizations", "spec_json")?,
                    identity_provider: column(row, "scim_tokens", "identity_provider")?,
                });
            }
        }
        Ok(owner)
    }

    async fn add_scim_requests(
        &self,
        organization: &str,
        identity_provider: &str,
        tally: &ScimRequestTally,
    ) -> Result<()> {
        let requests = i64::try_from(tally.requests).unwrap_or(i64::MAX);
        let errors = i64::try_from(tally.errors).unwrap_or(i64::MAX);
        let (last_error, last_error_ms) = match &tally.last_error {
            Some((error, at)) => (Some(error.clone()), Some(*at)),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO scim_sync_health (organization, identity_provider, last_request_ms, last_error, \
             last_error_ms, request_count, error_count) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (organization, identity_provider) DO UPDATE SET \
             last_request_ms = CASE WHEN excluded.last_request_ms > scim_sync_health.last_request_ms \
             THEN excluded.last_request_ms ELSE scim_sync_health.last_request_ms END, \
             last_error = COALESCE(excluded.last_error, scim_sync_health.last_error), \
             last_error_ms = COALESCE(excluded.last_error_ms, scim_sync_health.last_error_ms), \
             request_count = scim_sync_health.request_count + excluded.request_count, \
             error_count = scim_sync_health.error_count + excluded.error_count",
        )
        .bind(organization)
        .bind(identity_provider)
        .bind(tally.last_request_ms)
        .bind(last_error)
        .bind(last_error_ms)
        .bind(requests)
        .bind(errors)
        .execute(self.pool())
        .await
        .map_err(query_error("record SCIM requests"))?;
        Ok(())
    }

    async fn scim_sync_health(
        &self,
        organization: &str,
        identity_provider: &str,
    ) -> Result<Option<ScimSyncHealth>> {
        let row = sqlx::query(
            "SELECT last_request_ms, last_error, last_error_ms, request_count, error_count, \
             (SELECT COUNT(*) FROM users WHERE organization = $1 AND provisioned_by = $2) AS users_provisioned, \
             (SELECT COUNT(*) FROM groups WHERE organization = $1 AND provisioned_by = $2) AS groups_provisioned \
             FROM scim_sync_health WHERE organization = $1 AND identity_provider = $2",
        )
        .bind(organization)
        .bind(identity_provider)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read SCIM sync health"))?;
        let Some(row) = row else { return Ok(None) };
        const T: &str = "scim_sync_health";
        let count = |name| column::<i64>(&row, T, name).map(|n| u64::try_from(n).unwrap_or_default());
        Ok(Some(ScimSyncHealth {
            organization: organization.to_owned(),
            identity_provider: identity_provider.to_owned(),
            last_request_ms: column(&row, T, "last_request_ms")?,
            last_error: column(&row, T, "last_error")?,
            last_error_ms: column(&row, T, "last_error_ms")?,
            request_count: count("request_count")?,
            error_count: count("error_count")?,
            users_provisioned: count("users_provisioned")?,
            groups_provisioned: count("groups_provisioned")?,
        }))
    }

    async fn search_scim_users(&self, organization: &str, page: PageQuery<'_>) -> Result<Page<ScimUser>> {
        let mut tx = self.begin_read().await?;
        let total = count_where(&mut tx, "users", organization, page.filter).await?;
        if page.limit == 0 || total == 0 {
            return Ok(Page { total, items: Vec::new() });
        }
        let (condition, mut binds) = match page.filter {
            Some(filter) => (filter.sql.clone(), filter.binds.clone()),
            None => ("1 = 1".to_owned(), Vec::new()),
        };
        let (tail, limit, offset) = window(&page, binds.len());
        binds.push(SqlValue::Int(limit));
        binds.push(SqlValue::Int(offset));
        let matches_first =
            self.backend() == Backend::Postgres && page.filter.is_some() && total <= FILTER_FIRST_MAX;
        let items =
            read_scim_users_from(&mut tx, organization, &condition, &binds, &tail, matches_first).await?;
        Ok(Page { total, items })
    }

    async fn get_scim_user(&self, organization: &str, id: &str) -> Result<Option<ScimUser>> {
        let mut conn = self.connection().await?;
        let binds = [SqlValue::Text(id.to_owned())];
        Ok(read_scim_users(&mut conn, organization, "u.id = $2", &binds, "").await?.pop())
    }

    async fn create_scim_user(
        &self,
        user: &NewUser,
        extra: &serde_json::Map<String, serde_json::Value>,
        provisioned_by: &str,
    ) -> Result<ScimUser> {
        let mut tx = self.begin_write(&user.organization).await?;
        let scim_json = extra_json(extra);
        let extras = UserExtras { scim_json: scim_json.as_deref(), provisioned_by: Some(provisioned_by) };
        let created = insert_user(&mut tx, user, extras).await?;
        tx.audit(user_entry("user.create", &created)).await?;
        tx.commit().await?;
        // Exactly what was written: no need to read it back.
        Ok(ScimUser {
            user: created,
            extra: (!extra.is_empty()).then(|| extra.clone()),
            provisioned_by: Some(provisioned_by.to_owned()),
        })
    }

    async fn update_scim_user(
        &self,
        organization: &str,
        id: &str,
        update: &UserUpdate,
        extra: &serde_json::Map<String, serde_json::Value>,
        password_hash: Option<&SecretString>,
        expected_version: Option<i64>,
    ) -> Result<ScimUser> {
        let mut tx = self.begin_write(organization).await?;
        let scim_json = extra_json(extra);
        update_user_row(&mut tx, organization, id, update, Some(scim_json.as_deref()), expected_version)
            .await?;
        if let Some(hash) = password_hash {
            let query =
                sqlx::query("UPDATE users SET password_hash = $1 WHERE organization = $2 AND id = $3")
                    .bind(hash.expose().to_owned())
                    .bind(organization.to_owned())
                    .bind(id.to_owned());
            tx.execute(query, "set a password hash").await?;
        }
        let binds = [SqlValue::Text(id.to_owned())];
        let updated = read_scim_users(tx.conn(), organization, "u.id = $2", &binds, "")
            .await?
            .pop()
            .ok_or_else(|| not_found(organization, "user", id))?;
        tx.audit(user_entry("user.update", &updated.user)).await?;
        if password_hash.is_some() {
            tx.audit(AuditEntry::success("user.setPassword", user_target(id, &updated.user.user_name)))
                .await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn groups_of_users(
        &self,
        organization: &str,
        user_ids: &[String],
    ) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for batch in user_ids.chunks(ID_BATCH) {
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT m.user_id AS user_id, g.id AS group_id, g.display_name AS display_name \
                 FROM memberships m JOIN groups g ON g.id = m.group_id \
                 WHERE g.organization = $1 AND m.user_id IN ({}) ORDER BY g.display_name_key",
                placeholders(2, batch.len())
            )))
            .bind(organization.to_owned());
            for id in batch {
                query = query.bind(id.clone());
            }
            let rows = query.fetch_all(self.pool()).await.map_err(query_error("read users' groups"))?;
            for row in &rows {
                out.push((
                    column(row, "memberships", "user_id")?,
                    column(row, "groups", "group_id")?,
                    column(row, "groups", "display_name")?,
                ));
            }
        }
        Ok(out)
    }

    async fn search_scim_groups(&self, organization: &str, page: PageQuery<'_>) -> Result<Page<Group>> {
        let mut tx = self.begin_read().await?;
        let total = count_where(&mut tx, "groups", organization, page.filter).await?;
        if page.limit == 0 || total == 0 {
            return Ok(Page { total, items: Vec::new() });
        }
        let (condition, mut binds) = match page.filter {
            Some(filter) => (filter.sql.clone(), filter.binds.clone()),
            None => ("1 = 1".to_owned(), Vec::new()),
        };
        let (tail, limit, offset) = window(&page, binds.len());
        binds.push(SqlValue::Int(limit));
        binds.push(SqlValue::Int(offset));
        let query = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.organization = $1 AND ({condition}) {tail}"
        )))
        .bind(organization.to_owned());
        let rows =
            bind_values(query, &binds).fetch_all(&mut *tx).await.map_err(query_error("read SCIM groups"))?;
        let items = rows.iter().map(group_from_row).collect::<Result<_>>()?;
        Ok(Page { total, items })
    }

    async fn get_scim_group(&self, organization: &str, id: &str) -> Result<Option<ScimGroup>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS}, provisioned_by FROM groups WHERE organization = $1 AND id = $2"
        )))
        .bind(organization)
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read a group"))?;
        row.map(|row| {
            Ok(ScimGroup {
                group: group_from_row(&row)?,
                provisioned_by: column(&row, "groups", "provisioned_by")?,
            })
        })
        .transpose()
    }

    async fn create_scim_group(
        &self,
        group: &NewGroup,
        members: &[String],
        member_displays: &[(String, String)],
        provisioned_by: &str,
    ) -> Result<Group> {
        let mut tx = self.begin_write(&group.organization).await?;
        let (id, _) = insert_group(&mut tx, group, Some(provisioned_by)).await?;
        insert_members(&mut tx, &group.organization, &id, members).await?;
        set_member_displays(&mut tx, &id, member_displays).await?;
        let member_count = members.len();
        let members: Vec<&String> = members.iter().collect();
        record_membership(&mut tx, &group.organization, &id, &members);
        let created = read_group(tx.conn(), &group.organization, "id = $2", &id).await?;
        let entry = AuditEntry::success("group.create", group_target(&id, &group.display_name))
            .with_details(serde_json::json!({ "members": member_count }));
        tx.audit(entry).await?;
        tx.commit().await?;
        created.ok_or_else(|| not_found(&group.organization, "group", &id))
    }

    async fn update_scim_group(
        &self,
        organization: &str,
        id: &str,
        write: &GroupWrite<'_>,
        expected_version: Option<i64>,
    ) -> Result<Group> {
        let mut tx = self.begin_write(organization).await?;
        update_group_row(&mut tx, organization, id, write.display_name, write.external_id, expected_version)
            .await?;
        let members = match &write.members {
            MemberChanges::Replace(members) => serde_json::json!({ "replacedWith": members.len() }),
            // Who joined or left, unless the list would swamp the trail.
            MemberChanges::Delta { added, removed } if added.len() + removed.len() <= 100 => {
                serde_json::json!({ "added": added, "removed": removed })
            }
            MemberChanges::Delta { added, removed } => {
                serde_json::json!({ "addedCount": added.len(), "removedCount": removed.len() })
            }
        };
        let entry = AuditEntry::success("group.update", group_target(id, write.display_name))
            .with_details(serde_json::json!({ "members": members }));
        tx.audit(entry).await?;
        match &write.members {
            MemberChanges::Replace(members) => {
                sqlx::query("DELETE FROM memberships WHERE group_id = $1")
                    .bind(id)
                    .execute(tx.conn())
                    .await
                    .map_err(query_error("clear a group's members"))?;
                insert_members(&mut tx, organization, id, members).await?;
                tx.record(Change::GroupMembers {
                    organization: organization.to_owned(),
                    group_id: id.to_owned(),
                });
            }
            MemberChanges::Delta { added, removed } => {
                delete_members(&mut tx, id, removed).await?;
                insert_members(&mut tx, organization, id, added).await?;
                let changed: Vec<&String> = added.iter().chain(removed).collect();
                record_membership(&mut tx, organization, id, &changed);
            }
        }
        set_member_displays(&mut tx, id, write.member_displays).await?;
        let updated = read_group(tx.conn(), organization, "id = $2", id).await?;
        tx.commit().await?;
        updated.ok_or_else(|| not_found(organization, "group", id))
    }

    async fn group_has_more_members_than(
        &self,
        organization: &str,
        group_id: &str,
        limit: u32,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM memberships m JOIN groups g ON g.id = m.group_id \
             WHERE g.organization = $1 AND m.group_id = $2 LIMIT $3) AS capped",
        )
        .bind(organization.to_owned())
        .bind(group_id.to_owned())
        .bind(i64::from(limit) + 1)
        .fetch_one(self.pool())
        .await
        .map_err(query_error("count group members"))?;
        let n: i64 = column(&row, "memberships", "n")?;
        Ok(n > i64::from(limit))
    }

    async fn scim_members(
        &self,
        organization: &str,
        group_id: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<Member>> {
        let base = "SELECT u.id AS user_id, u.user_name AS user_name, m.display AS display FROM memberships m \
                    JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 AND u.organization = $2";
        let mut members = Vec::new();
        let mut read = |rows: Vec<sqlx::any::AnyRow>| -> Result<()> {
            for row in &rows {
                members.push(Member {
                    user_id: column(row, "memberships", "user_id")?,
                    user_name: column(row, "memberships", "user_name")?,
                    display: column(row, "memberships", "display")?,
                });
            }
            Ok(())
        };
        match only {
            None => {
                let rows = sqlx::query(AssertSqlSafe(format!("{base} ORDER BY u.user_name_key")))
                    .bind(group_id)
                    .bind(organization)
                    .fetch_all(self.pool())
                    .await
                    .map_err(query_error("list group members"))?;
                read(rows)?;
            }
            Some(ids) => {
                for batch in ids.chunks(ID_BATCH) {
                    let mut query = sqlx::query(AssertSqlSafe(format!(
                        "{base} AND m.user_id IN ({}) ORDER BY u.user_name_key",
                        placeholders(3, batch.len())
                    )))
                    .bind(group_id.to_owned())
                    .bind(organization.to_owned());
                    for id in batch {
                        query = query.bind(id.clone());
                    }
                    read(query.fetch_all(self.pool()).await.map_err(query_error("list group members"))?)?;
                }
            }
        }
        Ok(members)
    }
}
