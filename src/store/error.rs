//! The store's one error type. Each variant says which operation failed and on
//! what, so a caller can log it as is or turn it into its protocol's error.

use super::Backend;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL (expected `sqlite:…` or `postgres://…`): {scheme:?}")]
    UnsupportedUrl {
        /// Only the part before `:`, so a password in the URL is never echoed.
        scheme: String,
    },

    #[error("the store of region {region:?}")]
    Region {
        region: String,
        #[source]
        source: Box<StoreError>,
    },

    #[error("could not connect to the {backend} store")]
    Connect {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },

    #[error("could not migrate the {backend} store")]
    Migrate {
        backend: Backend,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("the {backend} store has no Portcullis schema (was it ever started by Portcullis?)")]
    NoSchema {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "the {backend} store's schema is older than this version of Portcullis (migrations {missing:?} not applied); \
         it is left as it is: run a matching version, or let the services migrate it first"
    )]
    SchemaBehind { backend: Backend, missing: Vec<i64> },

    #[error("store query failed: {operation}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// A uniqueness rule was broken: the caller asked for something taken.
    #[error("{what} {value:?} already exists in organization {organization}")]
    AlreadyExists { organization: String, what: &'static str, value: String },

    #[error("{what} {id} does not exist in organization {organization}")]
    NotFound { organization: String, what: &'static str, id: String },

    /// An update named the version it read (an `If-Match` ETag) and the row has
    /// moved on since.
    #[error("{what} {id} was changed concurrently: expected version {expected}, found {found}")]
    VersionMismatch { what: &'static str, id: String, expected: i64, found: i64 },

    /// A namespace holds one Organization; a second one with another name is refused.
    #[error("namespace {namespace} already has Organization {existing}; {rejected} was not stored")]
    OrganizationConflict { namespace: String, existing: String, rejected: String },

    #[error("{table}.{column} holds a value the store cannot read")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The task that commits refresh-token rotations in groups is gone
    /// (the store is shutting down).
    #[error("the refresh-token writer has stopped")]
    WriterStopped,

    /// A group commit (several requests' writes in one transaction) failed;
    /// each request of the group gets this.
    #[error("a group commit failed")]
    GroupCommit {
        #[source]
        source: std::sync::Arc<StoreError>,
    },

    #[error("change notifications stopped")]
    Listen {
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Whether this is a conflict the caller caused (taken name, stale
    /// version), as opposed to the store failing.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::AlreadyExists { .. }
                | StoreError::VersionMismatch { .. }
                | StoreError::OrganizationConflict { .. }
        )
    }
}

/// Wraps a sqlx error with the operation that failed.
pub(in crate::store) fn query_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

/// Whether a sqlx error is a unique-constraint violation (on either backend).
pub(in crate::store) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}
