//! The store: the only state Portcullis keeps. SQLite (embedded, one file in
//! WAL mode, or memory for tests) or PostgreSQL, chosen by URL, through
//! sqlx's `Any` driver so that every query is written once.
//!
//! ```text
//!  operator ──apply/delete (uid, generation)──► organizations, roles, role_assignments,
//!                                               identity_providers, oauth_clients,
//!                                               signing_keys, tombstones
//!  scim / token service ──► users ─┬─ user_emails, mfa_enrolments
//!                                  └─ memberships ── groups
//!        every committed change ──► change_log (read below the oldest running writer)
//!                                      │ PostgreSQL: NOTIFY at commit │ SQLite: in-process broadcast
//!                                      ▼
//!                             ChangeSubscription ──► follow::IndexFollower ──watch──► Arc<IndexSnapshot>
//! ```
//!
//! - [`records`]: the plain records (no Kubernetes types).
//! - [`desired`]: desired state, idempotent upserts keyed by uid and ordered by
//!   generation ([`DesiredStateStore`]).
//! - [`identity`]: users, second factors, groups, memberships ([`UserStore`],
//!   [`GroupStore`]).
//! - [`keys`]: signing keys with their sealed private half ([`SealedSigningKeyStore`]).
//! - [`changes`]: what changed, and who is told ([`ChangeFeed`]).
//! - [`federation`]: single sign-on state: pending upstream sign-ins, the
//!   SAML replay cache, linked upstream identities, JIT users and their
//!   provider groups, sign-in counts ([`FederationStore`]).
//! - [`follow`]: an access index that follows the store change by change.
//! - [`admin`]: what only the admin API writes: API-owned roles and
//!   assignments ([`AdminStore`]), a user's bulk resets.
//! - [`access_review`]: groups, members and inactive users, as `portcullis diff` reads them.
//! - [`throttle`]: the sign-in throttle's counters, shared by every
//!   token-service replica, checked and counted in one transaction ([`ThrottleStore`]).
//! - [`invitations`]: invitations by email, accepted once through a link
//!   whose token is kept hashed ([`InvitationStore`]).
//! - [`posture`]: the compliance posture's counts, aggregated by the
//!   database in one snapshot ([`PostureStore`]).
//! - [`regions`]: data residency: the default store and one per region ([`RegionalStores`]).
//! - [`audit`]: the audit trail, appended in the transaction of each write it
//!   records and sealed into one hash chain per organization ([`AuditStore`]).
//!
//! Migrations live in `migrations/sqlite` and `migrations/postgres` (same
//! tables) and run on [`Store::connect`].

pub mod access_requests;
pub mod access_review;
pub mod admin;
pub mod audit;
pub mod ceremonies;
pub mod changes;
mod checkpoint;
pub mod desired;
mod error;
pub mod federation;
pub mod follow;
pub mod grants;
pub mod identity;
pub mod invitations;
pub mod keys;
pub mod posture;
pub mod purge;
pub mod records;
pub mod regions;
pub mod scim;
pub mod scim_query;
pub mod sessions;
pub mod throttle;
pub mod webauthn;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, SqlSafeStr, Transaction};
use tokio::sync::{Mutex, MutexGuard, OnceCell, broadcast, watch};

pub use access_requests::{
    AccessRequest, AccessRequestFilter, AccessRequestStatus, AccessRequestStore, Approval, ApprovalOutcome,
    Decision as AccessDecision, NewAccessRequest,
};
pub use access_review::{AccessDirectory, AccessReviewStore, DirectoryGroup, DirectoryMember};
pub use admin::{AccessRevoked, AdminStore, ApiWrite, FactorsRemoved, Owner};
pub use audit::{AuditFilter, AuditHead, AuditStore, ChainCheck, MAX_AUDIT_PAGE, SealedAuditEvent};
pub use ceremonies::CeremonyStore;
pub use changes::{Change, ChangeEvent, ChangeFeed, ChangeNotice, ChangeSubscription};
pub use desired::{ApplyOutcome, DeleteOutcome, DesiredRecord, DesiredStateStore};
pub use error::StoreError;
pub use federation::{
    FederationStore, SamlAcceptance, SeenAssertion, SsoHealth, SsoOutcome, SsoOwner, SsoRequest,
    UpstreamSignIn,
};
pub use follow::{IndexFollower, IndexSnapshot};
pub use grants::{GrantStore, NewCode};
pub use identity::{GroupStore, UserStore};
pub use invitations::{
    Acceptance, Invitation, InvitationChange, InvitationFilter, InvitationStatus, InvitationStore,
    NewInvitation, Refusal,
};
pub use keys::{SealedSigningKey, SealedSigningKeyStore};
pub use posture::{PostureCounts, PostureQuery, PostureStore, ScimSyncCounts};
pub use purge::{PurgeStore, Purged};
pub use records::*;
pub use regions::{Location, RegionalStores, UnknownRegion};
pub use scim::{ScimStore, ScimSyncHealth};
pub use sessions::{SessionStore, SignInWrites};
pub use throttle::{ThrottleCounter, ThrottleScope, ThrottleStore};
pub use webauthn::WebAuthnCredentialStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

impl Backend {
    /// `sqlite:…` (`sqlite://path?mode=rwc`, `sqlite::memory:`) or
    /// `postgres://…` / `postgresql://…`.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(StoreError::UnsupportedUrl { scheme: scheme.to_owned() }),
        }
    }
}

/// Handle to the store; cheap to clone, shared by every part of a process.
/// A handle may carry who is acting ([`Store::with_audit`]): the audit
/// events its writes append name them.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    audit: Option<Arc<crate::audit::AuditContext>>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// Kept for the PostgreSQL listener's own connection. Never printed.
    url: String,
    /// Where subscribers receive change events: fed after commit on SQLite,
    /// by the LISTEN task on PostgreSQL.
    events: broadcast::Sender<ChangeEvent>,
    /// SQLite has one writer at a time anyway; taking turns in-process avoids
    /// busy errors and publishes events in commit order.
    write_turn: Mutex<()>,
    listener: OnceCell<()>,
    /// Dropped with the store: stops the listener task.
    shutdown: watch::Sender<()>,
    /// Where refresh-token rotations are committed (in groups, on SQLite).
    rotations: grants::RotationWriter,
    /// Links appended audit events into their organization's chain.
    audit_sealer: audit::Sealer,
}

/// A [`Store`] that does not keep it alive (for tasks the store itself owns).
#[derive(Clone)]
pub(in crate::store) struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    pub(in crate::store) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner, audit: None })
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.inner.backend).finish_non_exhaustive()
    }
}

/// How many change events a slow subscriber may fall behind before it is told
/// it missed some (and catches up from the change log).
const EVENT_BUFFER: usize = 1024;

impl Store {
    /// Connects to the store at `url` and brings its schema up to date.
    ///
    /// A SQLite file is switched to WAL mode (readers never wait for the
    /// writer); `sqlite::memory:` keeps one connection, since each connection
    /// would otherwise see its own empty database.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(url, Schema::Migrate).await
    }

    /// Connects to a store whose schema is already this version's, changing
    /// nothing (no migration, no journal switch): for tools that only read,
    /// such as `portcullis diff`, which must never alter a live store. Fails
    /// if the store lacks a migration this version has.
    pub async fn connect_existing(url: &str) -> Result<Self> {
        Self::open(url, Schema::RequireCurrent).await
    }

    async fn open(url: &str, schema: Schema) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let connect_error = |source| StoreError::Connect { backend, source };

        let memory = backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let options = match (backend, memory) {
            // Memory has no connection to lose either: no ping before each use.
            (Backend::Sqlite, true) => AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None),
            // WAL with synchronous=NORMAL: a commit is durable against a crash
            // of the process, and only the last commits can be lost to a power
            // cut (never corruption), for one fsync per checkpoint instead of
            // one per commit. Everything here is re-derivable: desired state
            // from the cluster, identities from the next SCIM push, grants by
            // signing in again. Checkpoints are a task's, not the commits'
            // (`checkpoint`).
            // A local file has no connection to lose: no ping before each use.
            (Backend::Sqlite, false) => AnyPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        sqlx::query(checkpoint::NO_AUTOMATIC_CHECKPOINT).execute(conn).await?;
                        Ok(())
                    })
                }),
            // sqlx already tests each connection as it goes back to the pool;
            // a second test as it comes out would put one more round trip on
            // every request's path (two per SCIM write). What that leaves is a
            // connection dropped while idle: it fails the one query that meets
            // it, and is closed on release. Idle connections are closed after a
            // minute, before most firewalls and proxies drop them silently.
            (Backend::Postgres, _) => AnyPoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .idle_timeout(Duration::from_secs(60)),
        }
        .acquire_timeout(Duration::from_secs(30));

        if backend == Backend::Sqlite && !memory && schema == Schema::Migrate {
            // WAL is a property of the file: set it once, on one connection,
            // before the pool opens several (the switch needs an exclusive lock).
            let mut conn = AnyConnection::connect(url).await.map_err(connect_error)?;
            sqlx::query("PRAGMA journal_mode = WAL").execute(&mut conn).await.map_err(connect_error)?;
            conn.close().await.map_err(connect_error)?;
        }

        let pool = options.connect(url).await.map_err(connect_error)?;
        match schema {
            Schema::Migrate => {
                let mut migrator =
                    migrator(backend).await.map_err(|source| StoreError::Migrate { backend, source })?;
                // A store that a newer version has migrated is still served:
                // migrations only add (docs/upgrading.md), so a rollback, or an
                // old replica restarting during a rolling upgrade, keeps working.
                migrator.set_ignore_missing(true);
                migrator.run(&pool).await.map_err(|source| StoreError::Migrate { backend, source })?;
                let newer = newer_migrations(&pool, backend).await?;
                if !newer.is_empty() {
                    tracing::warn!(
                        ?newer,
                        "the store's schema is newer than this binary (a newer version migrated it): \
                         running on it; upgrade this process"
                    );
                }
            }
            Schema::RequireCurrent => require_current_schema(&pool, backend).await?,
        }

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (shutdown, _) = watch::channel(());
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                url: url.to_owned(),
                events,
                write_turn: Mutex::new(()),
                listener: OnceCell::new(),
                shutdown,
                rotations: grants::RotationWriter::default(),
                audit_sealer: audit::Sealer::default(),
            }),
            audit: None,
        };
        // A tool that only reads (`Schema::RequireCurrent`) leaves the file as it is.
        if backend == Backend::Sqlite && !memory && schema == Schema::Migrate {
            checkpoint::start(&store);
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub(in crate::store) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Whether the store answers a trivial query now: what a readiness
    /// probe asks.
    pub async fn check_reachable(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(error::query_error("answer a readiness probe"))?;
        Ok(())
    }

    pub(in crate::store) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(in crate::store) async fn connection(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        self.inner.pool.acquire().await.map_err(error::query_error("acquire a connection"))
    }

    /// The writers' turn: on SQLite one write transaction at a time, queued
    /// here rather than in SQLite's busy handler (which sleeps). Held across
    /// `BEGIN IMMEDIATE … COMMIT` by both kinds of write transaction;
    /// `None` on PostgreSQL.
    async fn write_turn(&self) -> Option<MutexGuard<'_, ()>> {
        match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_turn.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Starts a write transaction for one organization. Changes recorded on it
    /// are logged and announced when it commits, and forgotten if it is
    /// dropped (rolled back).
    pub(in crate::store) async fn begin_write(&self, organization: &str) -> Result<changes::WriteTx<'_>> {
        let UnloggedWriteTx { tx, turn, .. } = self.begin_unlogged_write().await?;
        Ok(changes::WriteTx::new(self, tx, turn, organization))
    }

    /// Starts a write transaction whose rows are not resources anyone
    /// follows (the token service's codes, refresh-token families, revoked
    /// access tokens): nothing is logged or announced. Takes the writers'
    /// turn like [`Store::begin_write`] and holds it until commit or drop.
    pub(in crate::store) async fn begin_unlogged_write(&self) -> Result<UnloggedWriteTx<'_>> {
        let turn = self.write_turn().await;
        let tx = match self.inner.backend {
            // IMMEDIATE takes the write lock up front: no deadlock upgrading a read.
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.inner.pool.begin().await,
        }
        .map_err(error::query_error("begin a write transaction"))?;
        Ok(UnloggedWriteTx { tx, turn, store: self, audited: false })
    }

    /// Starts a read-only transaction that sees one consistent snapshot of
    /// the store (REPEATABLE READ on PostgreSQL; a read transaction in WAL
    /// mode on SQLite).
    pub(in crate::store) async fn begin_read(&self) -> Result<Transaction<'static, Any>> {
        match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin().await,
            Backend::Postgres => {
                self.inner.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
            }
        }
        .map_err(error::query_error("begin a read transaction"))
    }
}

/// What opening a store does to its schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    /// Brings it up to this version.
    Migrate,
    /// Leaves it alone, and refuses it unless every migration of this version was applied.
    RequireCurrent,
}

/// Fails unless the store has every migration this version embeds.
async fn require_current_schema(pool: &AnyPool, backend: Backend) -> Result<()> {
    let applied = applied_migrations(pool, backend).await?;
    let missing: Vec<i64> = embedded_versions(backend).filter(|v| !applied.contains(v)).collect();
    if missing.is_empty() { Ok(()) } else { Err(StoreError::SchemaBehind { backend, missing }) }
}

/// Migrations the store has that this binary does not know (a newer
/// version applied them).
async fn newer_migrations(pool: &AnyPool, backend: Backend) -> Result<Vec<i64>> {
    let known: Vec<i64> = embedded_versions(backend).collect();
    Ok(applied_migrations(pool, backend).await?.into_iter().filter(|v| !known.contains(v)).collect())
}

async fn applied_migrations(pool: &AnyPool, backend: Backend) -> Result<Vec<i64>> {
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .map_err(|source| StoreError::NoSchema { backend, source })?;
    rows.iter().map(|row| column(row, "_sqlx_migrations", "version")).collect()
}

fn embedded_versions(backend: Backend) -> impl Iterator<Item = i64> {
    let embedded = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.0,
        Backend::Postgres => POSTGRES_MIGRATIONS.0,
    };
    embedded.iter().map(|&(version, ..)| version)
}

/// A write transaction from [`Store::begin_unlogged_write`]; rolled back if
/// dropped uncommitted. The turn is released after the transaction ends
/// (fields drop in order).
pub(in crate::store) struct UnloggedWriteTx<'s> {
    tx: Transaction<'static, Any>,
    turn: Option<MutexGuard<'s, ()>>,
    store: &'s Store,
    /// Whether an audit event was appended (the sealer is woken at commit).
    audited: bool,
}

impl UnloggedWriteTx<'_> {
    pub(in crate::store) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends the audit event of `entry` to this transaction, as the
    /// store handle's actor did it in `organization`.
    pub(in crate::store) async fn audit(
        &mut self,
        organization: &str,
        entry: crate::audit::AuditEntry,
    ) -> Result<()> {
        let context = self.store.audit_context();
        audit::append_in(&mut self.tx, &context, organization, entry).await?;
        self.audited = true;
        Ok(())
    }

    pub(in crate::store) async fn commit(self) -> Result<()> {
        let Self { tx, turn, store, audited } = self;
        let committed = tx.commit().await.map_err(error::query_error("commit"));
        drop(turn);
        if committed.is_ok() && audited {
            store.wake_sealer();
        }
        committed
    }
}

/// Wall-clock time in unix milliseconds, for bookkeeping columns
/// (`created_ms`, `updated_ms`); times that mean something are passed in.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

// === Migrations, embedded in the binary. ===

/// The migrations of one backend, compiled in.
#[derive(Debug)]
struct EmbeddedMigrations(&'static [(i64, &'static str, &'static str)]);

const SQLITE_MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (1, "initial", include_str!("../../migrations/sqlite/0001_initial.sql")),
    (2, "scim", include_str!("../../migrations/sqlite/0002_scim.sql")),
    (3, "tokens", include_str!("../../migrations/sqlite/0003_tokens.sql")),
    (4, "login", include_str!("../../migrations/sqlite/0004_login.sql")),
    (5, "scim speed", include_str!("../../migrations/sqlite/0005_scim_speed.sql")),
    (6, "webauthn", include_str!("../../migrations/sqlite/0006_webauthn.sql")),
    (7, "sealed signing keys", include_str!("../../migrations/sqlite/0007_sealed_signing_keys.sql")),
    (13, "hardening", include_str!("../../migrations/sqlite/0013_hardening.sql")),
    (15, "federation", include_str!("../../migrations/sqlite/0015_federation.sql")),
    (16, "audit", include_str!("../../migrations/sqlite/0016_audit.sql")),
    (17, "membership display", include_str!("../../migrations/sqlite/0017_membership_display.sql")),
    (18, "login throttle", include_str!("../../migrations/sqlite/0018_login_throttle.sql")),
    (19, "admin owner", include_str!("../../migrations/sqlite/0019_admin_owner.sql")),
    (20, "invitations", include_str!("../../migrations/sqlite/0020_invitations.sql")),
    (22, "change feed", include_str!("../../migrations/sqlite/0022_change_feed.sql")),
    (23, "sso invitations", include_str!("../../migrations/sqlite/0023_sso_invitations.sql")),
    (24, "access requests", include_str!("../../migrations/sqlite/0024_access_requests.sql")),
]);
const POSTGRES_MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "scim", include_str!("../../migrations/postgres/0002_scim.sql")),
    (3, "tokens", include_str!("../../migrations/postgres/0003_tokens.sql")),
    (4, "login", include_str!("../../migrations/postgres/0004_login.sql")),
    (5, "scim speed", include_str!("../../migrations/postgres/0005_scim_speed.sql")),
    (6, "webauthn", include_str!("../../migrations/postgres/0006_webauthn.sql")),
    (7, "sealed signing keys", include_str!("../../migrations/postgres/0007_sealed_signing_keys.sql")),
    (13, "hardening", include_str!("../../migrations/postgres/0013_hardening.sql")),
    (15, "federation", include_str!("../../migrations/postgres/0015_federation.sql")),
    (16, "audit", include_str!("../../migrations/postgres/0016_audit.sql")),
    (17, "membership display", include_str!("../../migrations/postgres/0017_membership_display.sql")),
    (18, "login throttle", include_str!("../../migrations/postgres/0018_login_throttle.sql")),
    (19, "admin owner", include_str!("../../migrations/postgres/0019_admin_owner.sql")),
    (20, "invitations", include_str!("../../migrations/postgres/0020_invitations.sql")),
    (22, "change feed", include_str!("../../migrations/postgres/0022_change_feed.sql")),
    (23, "sso invitations", include_str!("../../migrations/postgres/0023_sso_invitations.sql")),
    (24, "access requests", include_str!("../../migrations/postgres/0024_access_requests.sql")),
]);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = std::result::Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>>
                + Send,
        >,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

async fn migrator(backend: Backend) -> std::result::Result<Migrator, sqlx::migrate::MigrateError> {
    match backend {
        Backend::Sqlite => Migrator::new(SQLITE_MIGRATIONS).await,
        Backend::Postgres => Migrator::new(POSTGRES_MIGRATIONS).await,
    }
}

// === Reading columns the same way on both backends. ===

pub(in crate::store) fn column<T>(row: &AnyRow, table: &'static str, column: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(|e| StoreError::Corrupt { table, column, source: Box::new(e) })
}

/// Booleans are `BOOLEAN` on PostgreSQL and `INTEGER` 0/1 on SQLite.
pub(in crate::store) fn bool_column(row: &AnyRow, table: &'static str, name: &'static str) -> Result<bool> {
    match row.try_get::<bool, _>(name) {
        Ok(value) => Ok(value),
        Err(_) => column::<i64>(row, table, name).map(|v| v != 0),
    }
}

/// A nullable boolean (a LEFT JOIN's column), on both backends.
pub(in crate::store) fn bool_column_opt(
    row: &AnyRow,
    table: &'static str,
    name: &'static str,
) -> Result<Option<bool>> {
    match row.try_get::<Option<bool>, _>(name) {
        Ok(value) => Ok(value),
        Err(_) => column::<Option<i64>>(row, table, name).map(|v| v.map(|v| v != 0)),
    }
}

/// A JSON list of strings stored as text.
pub(in crate::store) fn json_list_column(
    row: &AnyRow,
    table: &'static str,
    name: &'static str,
) -> Result<Vec<String>> {
    let text: String = column(row, table, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { table, column: name, source: Box::new(e) })
}

/// A text column holding one of an enum's names.
pub(in crate::store) fn enum_column<T>(
    row: &AnyRow,
    table: &'static str,
    name: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    let text: String = column(row, table, name)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt {
        table,
        column: name,
        source: format!("unknown value {text:?}").into(),
    })
}

pub(in crate::store) fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}
