//! Access review: what a change to the manifests does to who may do what
//! (`portcullis diff BASE HEAD`). Each side is a folder or a folder at a git
//! revision; both are validated as `portcullis validate` does, turned into the
//! access core's index per organization, and compared principal by principal.
//!
//! ```text
//!  source (folder | git revision) ─► parse_cache (files alike read once) ─► ManifestSet ─► validate_set (errors stop here)
//!                                        │
//!                                        ▼
//!            tenant: AccessIndex per namespace (+ group members from the store)
//!                                        │ base, head
//!                                        ▼
//!            delta: per principal and scope, permissions gained / lost / held longer,
//!                   each with the assignments causing it; roles whose expansion changed
//!                                        │
//!                                        ▼  model::Review
//!                 text (terminal) │ markdown (pull-request comment) │ json (bots) │ policy (--fail-on)
//! ```
//!
//! The expansion, the scopes and the expiries are the access index's
//! ([`crate::authz`]); nothing here decides what a role or an assignment gives.

mod delta;
mod git;
pub mod markdown;
pub mod model;
mod parse_cache;
pub mod policy;
mod source;
mod tenant;
pub mod text;
mod words;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

pub use model::Review;
pub use parse_cache::ParseCache;
pub use policy::FailOn;
pub use source::{Side, SideSpec, read_side, sides_from_args};

use crate::manifests::Resource;
use crate::store::{AccessDirectory, AccessReviewStore, StoreError};
use crate::validation::report::{Report, validate_set};
use crate::validation::{Severity, namespace_of};

/// Why a review could not be made. Invalid manifests carry their reports.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{argument}: give two sides (BASE HEAD) or one range (BASE...HEAD or BASE..HEAD)")]
    OneSide { argument: String },
    #[error("--path applies to sides given as revisions, and both sides are folders")]
    PathWithoutRevision,
    #[error("{path} leads out of the repository")]
    OutsideRepository { path: String },
    #[error(
        "{argument}: no such folder, and the current directory is not in a git repository to read it as a revision from"
    )]
    NotARepository { argument: String },
    #[error("{revision}: no such folder, and no such revision in this repository")]
    RevisionNotFound { revision: String },
    #[error("{path:?} does not exist at revision {revision}")]
    PathNotFound { revision: String, path: String },
    #[error("{left} and {right} have no common ancestor")]
    NoMergeBase { left: String, right: String },
    #[error("cannot run git")]
    GitUnavailable {
        #[source]
        source: std::io::Error,
    },
    #[error("git {command} failed: {message}")]
    Git { command: String, message: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {which} side ({description}) has {errors} error(s); nothing was compared")]
    Invalid { which: &'static str, description: String, errors: usize, reports: Vec<Report> },
    #[error("cannot write the review")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the runtime to read the store")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a folder without portcullis.db: not a standalone data directory")]
    NotADataDirectory { path: String },
    #[error("the store could not be read, so groups cannot be expanded")]
    Store {
        #[source]
        source: StoreError,
    },
}

/// Checks a side as `portcullis validate` would: any error stops the review,
/// carrying every report (warnings too) of that side.
pub fn validate_side(which: &'static str, side: &Side) -> Result<(), ReviewError> {
    let reports = validate_set(&side.set);
    let errors = reports.iter().filter(|r| r.severity == Severity::Error).count();
    if errors == 0 {
        return Ok(());
    }
    Err(ReviewError::Invalid { which, description: side.description.clone(), errors, reports })
}

/// The namespaces either side declares anything in.
pub fn namespaces(base: &Side, head: &Side) -> BTreeSet<String> {
    base.set
        .manifests
        .iter()
        .chain(&head.set.manifests)
        .map(|m| match &m.resource {
            Resource::Organization(o) => namespace_of(o),
            Resource::Role(o) => namespace_of(o),
            Resource::RoleAssignment(o) => namespace_of(o),
            Resource::IdentityProvider(o) => namespace_of(o),
            Resource::OAuthClient(o) => namespace_of(o),
        })
        .collect()
}

/// The store's groups, members and inactive users of each namespace.
pub async fn load_directories(
    store: &impl AccessReviewStore,
    namespaces: &BTreeSet<String>,
) -> Result<BTreeMap<String, AccessDirectory>, ReviewError> {
    let mut directories = BTreeMap::new();
    for namespace in namespaces {
        let directory =
            store.access_directory(namespace).await.map_err(|source| ReviewError::Store { source })?;
        directories.insert(namespace.clone(), directory);
    }
    Ok(directories)
}

/// Compares two validated sides at instant `at`. With `directories`, groups
/// are expanded into their members.
pub fn review(
    base: &Side,
    head: &Side,
    directories: Option<&BTreeMap<String, AccessDirectory>>,
    at: Timestamp,
) -> Review {
    // The two sides are independent: build them on two threads.
    let (mut before, mut after) = std::thread::scope(|scope| {
        let before = scope.spawn(|| tenant::tenants_of(&base.set));
        let after = tenant::tenants_of(&head.set);
        (before.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), after)
    });
    if let Some(directories) = directories {
        for tenant in before.values_mut().chain(after.values_mut()) {
            if let Some(directory) = directories.get(&tenant.namespace) {
                tenant.expand_groups(directory);
            }
        }
    }
    let organizations = delta::review_tenants(&before, &after, directories, at.as_second());
    Review {
        base: base.description.clone(),
        head: head.description.clone(),
        groups_expanded: directories.is_some(),
        at,
        organizations,
    }
}
