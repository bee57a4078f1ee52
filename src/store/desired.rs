//! Desired state: what the operator declares, one table per kind, written as
//! idempotent upserts keyed by the Kubernetes object's uid.
//!
//! Rules, the same for every kind:
//!
//! - A write applies when its generation is greater than the stored one, or
//!   equal with a different `spec_json` (a writer without generations, such as
//!   standalone mode, may keep generation 1). An older generation is
//!   [`ApplyOutcome::Stale`]; the same generation and spec is
//!   [`ApplyOutcome::Unchanged`]. Neither is logged or announced.
//! - One object per `(namespace, name)`: a write for a new uid at a taken name
//!   means the old object was deleted and recreated, so the old one is
//!   tombstoned in the same transaction. (An Organization with another name in
//!   the same namespace is refused instead: one Organization per namespace.)
//! - A delete names the uid and the generation the deleter saw. It removes the
//!   object unless a newer generation is stored (then it is stale and ignored),
//!   and leaves a tombstone: a later write of that uid applies only with a
//!   greater generation. Kubernetes never reuses a uid and bumps the generation
//!   when it marks an object for deletion, so a replayed or late write from
//!   before the delete can never bring the object back, and a delete can
//!   never remove an object that is newer than what its deleter saw.

use std::future::Future;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::changes::{Change, WriteTx};
use super::error::query_error;
use super::records::*;
use super::{
    Result, Store, StoreError, bool_column, column, enum_column, json_list, json_list_column, now_ms,
};
use crate::audit::{AuditEntry, Target};
use crate::secret::SecretString;

type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored, and announced under this change sequence number.
    Applied { seq: i64 },
    /// The same generation and spec were already stored.
    Unchanged,
    /// A newer generation is stored; the write was ignored.
    Stale { stored_generation: i64 },
    /// The object was deleted at this generation or later; the write was ignored.
    Deleted { deleted_generation: i64 },
}

/// What became of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed, and announced under this change sequence number.
    Deleted { seq: i64 },
    /// Nothing was stored under the uid; the tombstone is recorded all the same.
    Absent,
    /// A newer generation is stored than the deleter saw; nothing was removed.
    Stale { stored_generation: i64 },
}

/// A kind of desired-state record. Implemented for the five record types of
/// [`records`](super::records); sealed.
pub trait DesiredRecord: sealed::Columns + Clone + Send + Sync + Unpin + 'static {
    const KIND: ResourceKind;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn spec_json(&self) -> &str;
}

pub(in crate::store) mod sealed {
    use super::*;

    /// How a kind maps onto its table. Private to the store.
    pub trait Columns: Sized {
        const TABLE: &'static str;
        /// Columns a spec write sets, besides the common ones.
        const COLUMNS: &'static [&'static str];
        /// Columns read besides the common ones and [`Self::COLUMNS`].
        const EXTRA_READ: &'static [&'static str] = &[];
        fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>;
        fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self>;
        /// Whether the table has an `owner` column (migration 0017): rows
        /// the admin API wrote (`api`) beside those a sync owns (`manifest`).
        const OWNED: bool = false;
    }
}

/// The filter, after `namespace = $1`, of the rows a sync owns (and may remove).
fn synced_rows<R: DesiredRecord>() -> &'static str {
    if R::OWNED { " AND owner = 'manifest'" } else { "" }
}

use sealed::Columns;

const COMMON: &str = "uid, namespace, name, generation, spec_json";

fn select_sql<R: DesiredRecord>(filter: &str) -> String {
    let mut columns: Vec<&str> = R::COLUMNS.to_vec();
    columns.extend_from_slice(R::EXTRA_READ);
    format!("SELECT {COMMON}, {} FROM {} WHERE {filter}", columns.join(", "), R::TABLE)
}

pub(in crate::store) fn upsert_sql<R: DesiredRecord>() -> String {
    let table = R::TABLE;
    let columns = R::COLUMNS.join(", ");
    let placeholders: Vec<String> = (6..6 + R::COLUMNS.len()).map(|i| format!("${i}")).collect();
    let updated = 6 + R::COLUMNS.len();
    let assignments: Vec<String> = R::COLUMNS.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "INSERT INTO {table} ({COMMON}, {columns}, updated_ms) VALUES ($1, $2, $3, $4, $5, {}, ${updated}) \
         ON CONFLICT (uid) DO UPDATE SET namespace = excluded.namespace, name = excluded.name, \
         generation = excluded.generation, spec_json = excluded.spec_json, {}, updated_ms = excluded.updated_ms \
         WHERE {table}.generation < excluded.generation \
            OR ({table}.generation = excluded.generation AND {table}.spec_json <> excluded.spec_json) \
         RETURNING uid",
        placeholders.join(", "),
        assignments.join(", "),
    )
}

fn read_record<R: DesiredRecord>(row: &AnyRow) -> Result<R> {
    let table = R::TABLE;
    let meta = ObjectMeta {
        uid: column(row, table, "uid")?,
        namespace: column(row, table, "namespace")?,
        name: column(row, table, "name")?,
        generation: column(row, table, "generation")?,
    };
    R::from_row(meta, column(row, table, "spec_json")?, row)
}

pub(in crate::store) fn resource_change(
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Change {
    Change::Resource { kind, namespace: namespace.to_owned(), name: name.to_owned(), uid: uid.to_owned() }
}

/// The audit event of a stored change to a Portcullis resource, done by the
/// store handle's actor: the Kubernetes field manager the operator saw, or
/// the folder sync of standalone mode. Appended only through a handle that
/// names who acts ([`Store::with_audit`]): the operator's and the folder
/// sync's always do; a bare handle is a test's or a benchmark's seeding.
fn resource_audit(kind: ResourceKind, verb: &str, meta: &ObjectMeta) -> AuditEntry {
    let name = format!("{}/{}", meta.namespace, meta.name);
    AuditEntry::success(
        &format!("{}.{verb}", kind.audit_noun()),
        Target::new(kind.as_str(), Some(&meta.uid), Some(&name)),
    )
    .with_details(serde_json::json!({ "generation": meta.generation }))
}

/// The namespace of the one Organization whose name (its issuer path) is
/// `$1`; no row when none, or when two namespaces claim the name: a tenant
/// is never guessed. The one rule of every service that resolves an issuer.
pub(in crate::store) const ISSUER_NAMESPACE: &str =
    "SELECT MIN(namespace) AS namespace FROM organizations WHERE name = $1 HAVING COUNT(*) = 1";

/// Reading and writing desired state.
pub trait DesiredStateStore {
    /// The Organization whose issuer path is `name`, by the rule of
    /// [`ISSUER_NAMESPACE`]: `None` when no namespace, or several, hold it.
    fn organization_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<OrganizationRecord>>> + Send;

    /// Inserts or updates the object keyed by `record.meta().uid`, following
    /// the [module rules](self).
    fn apply<R: DesiredRecord>(&self, record: &R) -> impl Future<Output = Result<ApplyOutcome>> + Send;

    /// Deletes the object `meta.uid` as of `meta.generation`, following the
    /// [module rules](self).
    fn delete<R: DesiredRecord>(
        &self,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<DeleteOutcome>> + Send;

    fn get<R: DesiredRecord>(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<R>>> + Send;

    fn get_by_uid<R: DesiredRecord>(&self, uid: &str) -> impl Future<Output = Result<Option<R>>> + Send;

    /// Every object of a kind in a namespace, by name.
    fn list<R: DesiredRecord>(&self, namespace: &str) -> impl Future<Output = Result<Vec<R>>> + Send;

    /// Every object of a kind in a namespace that a sync owns (not those the
    /// admin API wrote under `roleSource: API`), by name: what a sync may
    /// remove when its manifest is gone.
    fn list_synced<R: DesiredRecord>(&self, namespace: &str) -> impl Future<Output = Result<Vec<R>>> + Send;

    /// The uids stored for a kind in a namespace that a sync owns (not those
    /// the admin API wrote), so a controller that has listed the cluster can
    /// delete what no longer exists there.
    fn list_uids<R: DesiredRecord>(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Every namespace holding desired state of any kind, sorted.
    fn namespaces(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Forgets tombstones older than `before_ms`; returns how many.
    fn purge_tombstones(&self, before_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Sets (or clears) the hash of an OAuthClient's secret. Returns whether
    /// the client exists.
    fn set_oauth_client_secret_hash(
        &self,
        namespace: &str,
        name: &str,
        secret_hash: Option<&SecretString>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Sets (or, with `None`, clears) the hash (`sha256:<hex>`) of an
    /// IdentityProvider's SCIM bearer token. Returns whether the
    /// IdentityProvider exists; nothing is stored if it does not.
    fn set_scim_token_hash(
        &self,
        namespace: &str,
        identity_provider: &str,
        token_hash: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;

    fn put_signing_key(&self, key: &SigningKeyRecord) -> impl Future<Output = Result<()>> + Send;

    /// Returns whether the key existed.
    fn delete_signing_key(&self, organization: &str, kid: &str) -> impl Future<Output = Result<bool>> + Send;

    /// An organization's keys, oldest first.
    fn list_signing_keys(
        &self,
        organization: &str,
    ) -> impl Future<Output = Result<Vec<SigningKeyRecord>>> + Send;
}

impl DesiredStateStore for Store {
    async fn apply<R: DesiredRecord>(&self, record: &R) -> Result<ApplyOutcome> {
        let meta = record.meta();
        let mut tx = self.begin_write(&meta.namespace).await?;

        if let Some(deleted_generation) = tombstone_generation(&mut tx, &meta.uid).await? {
            if deleted_generation >= meta.generation {
                return Ok(ApplyOutcome::Deleted { deleted_generation });
            }
            sqlx::query("DELETE FROM tombstones WHERE uid = $1")
                .bind(meta.uid.as_str())
                .execute(tx.conn())
                .await
                .map_err(query_error("clear a tombstone"))?;
        }

        if R::KIND == ResourceKind::Organization {
            refuse_second_organization(&mut tx, meta).await?;
        }
        displace_same_name::<R>(&mut tx, meta).await?;

        let sql = upsert_sql::<R>();
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(meta.uid.as_str())
            .bind(meta.namespace.as_str())
            .bind(meta.name.as_str())
            .bind(meta.generation)
            .bind(record.spec_json());
        let written = record
            .bind_columns(query)
            .bind(now_ms())
            .fetch_optional(tx.conn())
            .await
            .map_err(query_error("upsert a desired-state object"))?;

        if written.is_none() {
            let stored_generation = stored_generation::<R>(&mut tx, &meta.uid).await?.unwrap_or_default();
            // Dropping the transaction rolls back any displacement above.
            return Ok(if stored_generation > meta.generation {
                ApplyOutcome::Stale { stored_generation }
            } else {
                ApplyOutcome::Unchanged
            });
        }
        tx.record(resource_change(R::KIND, &meta.namespace, &meta.name, &meta.uid));
        if self.audit.is_some() {
            tx.audit(resource_audit(R::KIND, "apply", meta)).await?;
        }
        let seq = tx.commit().await?.unwrap_or_default();
        Ok(ApplyOutcome::Applied { seq })
    }

    async fn delete<R: DesiredRecord>(&self, meta: &ObjectMeta) -> Result<DeleteOutcome> {
        let mut tx = self.begin_write(&meta.namespace).await?;
        let stored = stored_generation::<R>(&mut tx, &meta.uid).await?;
        if let Some(stored_generation) = stored.filter(|&g| g > meta.generation) {
            return Ok(DeleteOutcome::Stale { stored_generation });
        }
        let removed = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE uid = $1 RETURNING namespace, name",
            R::TABLE
        )))
        .bind(meta.uid.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("delete a desired-state object"))?;
        record_tombstone(&mut tx, R::KIND, meta).await?;
        let Some(row) = removed else {
            tx.commit().await?;
            return Ok(DeleteOutcome::Absent);
        };
        let namespace: String = column(&row, R::TABLE, "namespace")?;
        let name: String = column(&row, R::TABLE, "name")?;
        tx.record(resource_change(R::KIND, &namespace, &name, &meta.uid));
        if self.audit.is_some() {
            tx.audit(resource_audit(R::KIND, "delete", meta)).await?;
        }
        let seq = tx.commit().await?.unwrap_or_default();
        Ok(DeleteOutcome::Deleted { seq })
    }

    async fn organization_by_name(&self, name: &str) -> Result<Option<OrganizationRecord>> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(ISSUER_NAMESPACE)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(query_error("find an organization by name"))?;
        if let Some(row) = row {
            let namespace: String = column(&row, "organizations", "namespace")?;
            return get_by_name(&mut conn, &namespace, name).await;
        }
        let holders = sqlx::query("SELECT COUNT(*) AS n FROM organizations WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(query_error("count the holders of an organization name"))?;
        if column::<i64>(&holders, "organizations", "n")? > 1 {
            tracing::warn!(
                organization = name,
                "organization name is used in several namespaces; serving neither"
            );
        }
        Ok(None)
    }

    async fn get<R: DesiredRecord>(&self, namespace: &str, name: &str) -> Result<Option<R>> {
        let mut conn = self.connection().await?;
        get_by_name(&mut conn, namespace, name).await
    }

    async fn get_by_uid<R: DesiredRecord>(&self, uid: &str) -> Result<Option<R>> {
        let mut conn = self.connection().await?;
        get_by_uid(&mut conn, uid).await
    }

    async fn list<R: DesiredRecord>(&self, namespace: &str) -> Result<Vec<R>> {
        let mut conn = self.connection().await?;
        list(&mut conn, namespace).await
    }

    async fn list_synced<R: DesiredRecord>(&self, namespace: &str) -> Result<Vec<R>> {
        let filter = format!("namespace = $1{} ORDER BY name", synced_rows::<R>());
        let rows = sqlx::query(AssertSqlSafe(select_sql::<R>(&filter)))
            .bind(namespace)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("list synced desired-state objects"))?;
        rows.iter().map(read_record).collect()
    }

    async fn list_uids<R: DesiredRecord>(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT uid FROM {} WHERE namespace = $1{} ORDER BY uid",
            R::TABLE,
            synced_rows::<R>()
        )))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list uids"))?;
        rows.iter().map(|row| column(row, R::TABLE, "uid")).collect()
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT namespace FROM organizations UNION SELECT namespace FROM roles \
             UNION SELECT namespace FROM role_assignments UNION SELECT namespace FROM identity_providers \
             UNION SELECT namespace FROM oauth_clients ORDER BY 1",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list namespaces"))?;
        rows.iter().map(|row| column(row, "desired state", "namespace")).collect()
    }

    async fn purge_tombstones(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM tombstones WHERE deleted_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await
            .map_err(query_error("purge tombstones"))?;
        Ok(done.rows_affected())
    }

    async fn set_oauth_client_secret_hash(
        &self,
        namespace: &str,
        name: &str,
        secret_hash: Option<&SecretString>,
    ) -> Result<bool> {
        let mut tx = self.begin_write(namespace).await?;
        let row = sqlx::query(
            "UPDATE oauth_clients SET secret_hash = $1, updated_ms = $2 WHERE namespace = $3 AND name = $4 \
             RETURNING uid",
        )
        .bind(secret_hash.map(|s| s.expose().to_owned()))
        .bind(now_ms())
        .bind(namespace)
        .bind(name)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("set a client secret hash"))?;
        let Some(row) = row else { return Ok(false) };
        let uid: String = column(&row, "oauth_clients", "uid")?;
        tx.record(resource_change(ResourceKind::OAuthClient, namespace, name, &uid));
        tx.commit().await?;
        Ok(true)
    }

    async fn set_scim_token_hash(
        &self,
        namespace: &str,
        identity_provider: &str,
        token_hash: Option<&str>,
    ) -> Result<bool> {
        super::scim::set_token_hash(self, namespace, identity_provider, token_hash).await
    }

    async fn put_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let mut tx = self.begin_write(&key.organization).await?;
        sqlx::query(
            "INSERT INTO signing_keys (organization, kid, algorithm, state, public_jwk, created_ms, activates_ms, \
             retires_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (organization, kid) DO UPDATE SET algorithm = excluded.algorithm, state = excluded.state, \
             public_jwk = excluded.public_jwk, created_ms = excluded.created_ms, \
             activates_ms = excluded.activates_ms, retires_ms = excluded.retires_ms, updated_ms = excluded.updated_ms",
        )
        .bind(key.organization.as_str())
        .bind(key.kid.as_str())
        .bind(key.algorithm.as_str())
        .bind(key.state.as_str())
        .bind(key.public_jwk.as_str())
        .bind(key.created_ms)
        .bind(key.activates_ms)
        .bind(key.retires_ms)
        .bind(now_ms())
        .execute(tx.conn())
        .await
        .map_err(query_error("write a signing key"))?;
        tx.record(Change::SigningKey { organization: key.organization.clone(), kid: key.kid.clone() });
        tx.commit().await?;
        Ok(())
    }

    async fn delete_signing_key(&self, organization: &str, kid: &str) -> Result<bool> {
        let mut tx = self.begin_write(organization).await?;
        let done = sqlx::query("DELETE FROM signing_keys WHERE organization = $1 AND kid = $2")
            .bind(organization)
            .bind(kid)
            .execute(tx.conn())
            .await
            .map_err(query_error("delete a signing key"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        tx.record(Change::SigningKey { organization: organization.to_owned(), kid: kid.to_owned() });
        tx.audit(AuditEntry::success("signingKey.delete", Target::new("signingKey", Some(kid), Some(kid))))
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_signing_keys(&self, organization: &str) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT organization, kid, algorithm, state, public_jwk, created_ms, activates_ms, retires_ms \
             FROM signing_keys WHERE organization = $1 ORDER BY created_ms, kid",
        )
        .bind(organization)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list signing keys"))?;
        rows.iter()
            .map(|row| {
                const T: &str = "signing_keys";
                Ok(SigningKeyRecord {
                    organization: column(row, T, "organization")?,
                    kid: column(row, T, "kid")?,
                    algorithm: column(row, T, "algorithm")?,
                    state: enum_column(row, T, "state", SigningKeyState::parse)?,
                    public_jwk: column(row, T, "public_jwk")?,
                    created_ms: column(row, T, "created_ms")?,
                    activates_ms: column(row, T, "activates_ms")?,
                    retires_ms: column(row, T, "retires_ms")?,
                })
            })
            .collect()
    }
}

// === Building blocks, shared with the follower (which reads inside one snapshot). ===

pub(in crate::store) async fn get_by_name<R: DesiredRecord>(
    conn: &mut sqlx::AnyConnection,
    namespace: &str,
    name: &str,
) -> Result<Option<R>> {
    let row = sqlx::query(AssertSqlSafe(select_sql::<R>("namespace = $1 AND name = $2")))
        .bind(namespace)
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(query_error("read a desired-state object"))?;
    row.as_ref().map(read_record).transpose()
}

pub(in crate::store) async fn get_by_uid<R: DesiredRecord>(
    conn: &mut sqlx::AnyConnection,
    uid: &str,
) -> Result<Option<R>> {
    let row = sqlx::query(AssertSqlSafe(select_sql::<R>("uid = $1")))
        .bind(uid)
        .fetch_optional(conn)
        .await
        .map_err(query_error("read a desired-state object"))?;
    row.as_ref().map(read_record).transpose()
}

pub(in crate::store) async fn list<R: DesiredRecord>(
    conn: &mut sqlx::AnyConnection,
    namespace: &str,
) -> Result<Vec<R>> {
    let rows = sqlx::query(AssertSqlSafe(select_sql::<R>("namespace = $1 ORDER BY name")))
        .bind(namespace)
        .fetch_all(conn)
        .await
        .map_err(query_error("list desired-state objects"))?;
    rows.iter().map(read_record).collect()
}

/// The organization of a namespace (there is at most one).
pub(in crate::store) async fn organization_of(
    conn: &mut sqlx::AnyConnection,
    namespace: &str,
) -> Result<Option<OrganizationRecord>> {
    Ok(list::<OrganizationRecord>(conn, namespace).await?.into_iter().next())
}

async fn stored_generation<R: DesiredRecord>(tx: &mut WriteTx<'_>, uid: &str) -> Result<Option<i64>> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT generation FROM {} WHERE uid = $1", R::TABLE)))
        .bind(uid)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a stored generation"))?;
    row.map(|row| column(&row, R::TABLE, "generation")).transpose()
}

async fn tombstone_generation(tx: &mut WriteTx<'_>, uid: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT generation FROM tombstones WHERE uid = $1")
        .bind(uid)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read a tombstone"))?;
    row.map(|row| column(&row, "tombstones", "generation")).transpose()
}

async fn record_tombstone(tx: &mut WriteTx<'_>, kind: ResourceKind, meta: &ObjectMeta) -> Result<()> {
    sqlx::query(
        "INSERT INTO tombstones (uid, kind, namespace, name, generation, deleted_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (uid) DO UPDATE SET generation = excluded.generation, deleted_ms = excluded.deleted_ms \
         WHERE tombstones.generation < excluded.generation",
    )
    .bind(meta.uid.as_str())
    .bind(kind.as_str())
    .bind(meta.namespace.as_str())
    .bind(meta.name.as_str())
    .bind(meta.generation)
    .bind(now_ms())
    .execute(tx.conn())
    .await
    .map_err(query_error("record a tombstone"))?;
    Ok(())
}

async fn refuse_second_organization(tx: &mut WriteTx<'_>, meta: &ObjectMeta) -> Result<()> {
    let row = sqlx::query("SELECT name FROM organizations WHERE namespace = $1 AND uid <> $2 AND name <> $3")
        .bind(meta.namespace.as_str())
        .bind(meta.uid.as_str())
        .bind(meta.name.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("read the namespace's organization"))?;
    match row {
        Some(row) => Err(StoreError::OrganizationConflict {
            namespace: meta.namespace.clone(),
            existing: column(&row, "organizations", "name")?,
            rejected: meta.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Tombstones the object of another uid holding this name: it was deleted and
/// this one created in its place.
async fn displace_same_name<R: DesiredRecord>(tx: &mut WriteTx<'_>, meta: &ObjectMeta) -> Result<()> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE namespace = $1 AND name = $2 AND uid <> $3 RETURNING uid, generation",
        R::TABLE
    )))
    .bind(meta.namespace.as_str())
    .bind(meta.name.as_str())
    .bind(meta.uid.as_str())
    .fetch_all(tx.conn())
    .await
    .map_err(query_error("replace a recreated object"))?;
    for row in rows {
        let old = ObjectMeta {
            uid: column(&row, R::TABLE, "uid")?,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            generation: column(&row, R::TABLE, "generation")?,
        };
        record_tombstone(tx, R::KIND, &old).await?;
        tx.record(resource_change(R::KIND, &old.namespace, &old.name, &old.uid));
    }
    Ok(())
}

// === The five kinds. ===

impl DesiredRecord for OrganizationRecord {
    const KIND: ResourceKind = ResourceKind::Organization;
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
    fn spec_json(&self) -> &str {
        &self.spec_json
    }
}

impl Columns for OrganizationRecord {
    const TABLE: &'static str = "organizations";
    const COLUMNS: &'static [&'static str] = &["display_name", "catalog", "workspaces"];
    fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.display_name.as_str())
            .bind(json_list(&self.catalog))
            .bind(json_list(&self.workspaces))
    }
    fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self> {
        let t = Self::TABLE;
        Ok(Self {
            meta,
            display_name: column(row, t, "display_name")?,
            catalog: json_list_column(row, t, "catalog")?,
            workspaces: json_list_column(row, t, "workspaces")?,
            spec_json,
        })
    }
}

impl DesiredRecord for RoleRecord {
    const KIND: ResourceKind = ResourceKind::Role;
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
    fn spec_json(&self) -> &str {
        &self.spec_json
    }
}

impl Columns for RoleRecord {
    const TABLE: &'static str = "roles";
    const OWNED: bool = true;
    const COLUMNS: &'static [&'static str] = &["scope", "permissions", "included_roles"];
    fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.scope.as_str())
            .bind(json_list(&self.permissions))
            .bind(json_list(&self.included_roles))
    }
    fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self> {
        let t = Self::TABLE;
        Ok(Self {
            meta,
            scope: enum_column(row, t, "scope", RoleScope::parse)?,
            permissions: json_list_column(row, t, "permissions")?,
            included_roles: json_list_column(row, t, "included_roles")?,
            spec_json,
        })
    }
}

pub(in crate::store) fn principal_kind_str(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "User",
        PrincipalKind::Group => "Group",
        PrincipalKind::Client => "Client",
    }
}

pub(in crate::store) fn parse_principal_kind(value: &str) -> Option<PrincipalKind> {
    match value {
        "User" => Some(PrincipalKind::User),
        "Group" => Some(PrincipalKind::Group),
        "Client" => Some(PrincipalKind::Client),
        _ => None,
    }
}

impl DesiredRecord for AssignmentRecord {
    const KIND: ResourceKind = ResourceKind::RoleAssignment;
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
    fn spec_json(&self) -> &str {
        &self.spec_json
    }
}

impl Columns for AssignmentRecord {
    const TABLE: &'static str = "role_assignments";
    const OWNED: bool = true;
    const COLUMNS: &'static [&'static str] =
        &["principal_kind", "principal_name", "role", "workspace", "expires_at_ms"];
    fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(principal_kind_str(self.principal_kind))
            .bind(self.principal_name.as_str())
            .bind(self.role.as_str())
            .bind(self.workspace.clone())
            .bind(self.expires_at_ms)
    }
    fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self> {
        let t = Self::TABLE;
        Ok(Self {
            meta,
            principal_kind: enum_column(row, t, "principal_kind", parse_principal_kind)?,
            principal_name: column(row, t, "principal_name")?,
            role: column(row, t, "role")?,
            workspace: column(row, t, "workspace")?,
            expires_at_ms: column(row, t, "expires_at_ms")?,
            spec_json,
        })
    }
}

impl DesiredRecord for IdentityProviderRecord {
    const KIND: ResourceKind = ResourceKind::IdentityProvider;
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
    fn spec_json(&self) -> &str {
        &self.spec_json
    }
}

impl Columns for IdentityProviderRecord {
    const TABLE: &'static str = "identity_providers";
    const COLUMNS: &'static [&'static str] = &["protocol", "stage", "email_domains", "scim_enabled"];
    fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.protocol.as_str())
            .bind(self.stage.as_str())
            .bind(json_list(&self.email_domains))
            .bind(self.scim_enabled)
    }
    fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self> {
        let t = Self::TABLE;
        Ok(Self {
            meta,
            protocol: column(row, t, "protocol")?,
            stage: column(row, t, "stage")?,
            email_domains: json_list_column(row, t, "email_domains")?,
            scim_enabled: bool_column(row, t, "scim_enabled")?,
            spec_json,
        })
    }
}

impl DesiredRecord for OAuthClientRecord {
    const KIND: ResourceKind = ResourceKind::OAuthClient;
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
    fn spec_json(&self) -> &str {
        &self.spec_json
    }
}

impl Columns for OAuthClientRecord {
    const TABLE: &'static str = "oauth_clients";
    const COLUMNS: &'static [&'static str] = &["client_type", "redirect_uris"];
    const EXTRA_READ: &'static [&'static str] = &["secret_hash"];
    fn bind_columns<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query.bind(self.client_type.as_str()).bind(json_list(&self.redirect_uris))
    }
    fn from_row(meta: ObjectMeta, spec_json: String, row: &AnyRow) -> Result<Self> {
        let t = Self::TABLE;
        Ok(Self {
            meta,
            client_type: column(row, t, "client_type")?,
            redirect_uris: json_list_column(row, t, "redirect_uris")?,
            spec_json,
            secret_hash: column::<Option<String>>(row, t, "secret_hash")?.map(SecretString::from),
        })
    }
}
