//! Data residency at the services' edge: each request for `/o/{org}/…` is
//! served by the service built on the store that holds `{org}`, so that a
//! request never touches another region's store.
//!
//! ```text
//!  /o/acme/token ──► OrganizationDirectory ("acme" ─► eu) ──► router on the eu store
//!  /o/initech/…  ──►                 (not in any store) ──► router on the default store (its 404)
//!  /healthz, …   ──────────────────────────────────────────► router on the default store
//! ```
//!
//! The directory is filled from the stores' `organizations` tables: loaded
//! on a miss (at most once per [`RELOAD_AT_MOST_EVERY`], so a flood of
//! unknown names costs the stores nothing more) and at least every
//! [`RELOAD_AFTER`], so that an organization moved between regions is found
//! where it now is.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Mutex, RwLock};
use tower::ServiceExt as _;

use crate::store::{Location, RegionalStores};

/// A miss reloads the directory no more often than this.
pub const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// A directory older than this is reloaded before it answers.
pub const RELOAD_AFTER: Duration = Duration::from_secs(60);

/// Where an organization name is served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    In(Location),
    /// Found in several stores (a move between regions left half done):
    /// served from none rather than from a guess.
    Several,
}

/// Organization name → the store that holds it.
pub struct OrganizationDirectory {
    stores: RegionalStores,
    cache: RwLock<Directory>,
    reload: Mutex<()>,
}

#[derive(Default)]
struct Directory {
    placements: HashMap<String, Placement>,
    loaded_at: Option<Instant>,
}

impl Directory {
    fn loaded_within(&self, age: Duration) -> bool {
        self.loaded_at.is_some_and(|at| at.elapsed() < age)
    }
}

impl OrganizationDirectory {
    pub fn new(stores: RegionalStores) -> Self {
        OrganizationDirectory { stores, cache: RwLock::default(), reload: Mutex::new(()) }
    }

    /// Where `organization` is, or `None` when no store holds it.
    pub async fn locate(&self, organization: &str) -> Option<Placement> {
        {
            let cache = self.cache.read().await;
            // A split organization is looked up again: the move may be finished.
            if cache.loaded_within(RELOAD_AFTER)
                && let Some(placement @ Placement::In(_)) = cache.placements.get(organization)
            {
                return Some(placement.clone());
            }
        }
        // One reload at a time; who waited for it reads its result.
        let _turn = self.reload.lock().await;
        let stale = {
            let cache = self.cache.read().await;
            if cache.loaded_within(RELOAD_AT_MOST_EVERY) {
                return cache.placements.get(organization).cloned();
            }
            !cache.loaded_within(RELOAD_AFTER)
        };
        match self.stores.organization_locations().await {
            Ok(found) => {
                let mut placements: HashMap<String, Placement> = HashMap::new();
                for (name, location) in found {
                    placements
                        .entry(name)
                        .and_modify(|placement| *placement = Placement::Several)
                        .or_insert(Placement::In(location));
                }
                let mut cache = self.cache.write().await;
                *cache = Directory { placements, loaded_at: Some(Instant::now()) };
                cache.placements.get(organization).cloned()
            }
            Err(error) => {
                tracing::warn!(
                    error = %crate::error_chain::error_chain(&error),
                    stale,
                    "could not reload the organization directory; answering from the last one"
                );
                self.cache.read().await.placements.get(organization).cloned()
            }
        }
    }
}

/// The organization a path is for: `{org}` of `/o/{org}/…`.
fn organization_of(path: &str) -> Option<&str> {
    path.strip_prefix("/o/")?.split('/').next().filter(|name| !name.is_empty())
}

/// One router in front of the same service built once per store: requests
/// for an organization go to its store's, everything else to the default
/// store's (which answers an unknown organization in its own format).
pub fn route_by_organization(
    directory: Arc<OrganizationDirectory>,
    mut services: BTreeMap<Location, Router>,
) -> Router {
    let Some(default) = services.remove(&None) else {
        return Router::new();
    };
    if services.is_empty() {
        return default;
    }
    let services = Arc::new(services);
    Router::new().fallback(move |request: Request| {
        let (directory, default, services) = (directory.clone(), default.clone(), services.clone());
        async move {
            let placement = match organization_of(request.uri().path()) {
                Some(organization) => directory.locate(organization).await,
                None => None,
            };
            let service = match placement {
                Some(Placement::In(Some(region))) => services.get(&Some(region)).cloned().unwrap_or(default),
                Some(Placement::In(None)) | None => default,
                Some(Placement::Several) => return split_organization(),
            };
            match service.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
}

/// An organization found in two regions' stores is served by neither: which
/// copy is current is for the person moving it to say (by deleting the other).
fn split_organization() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "60")],
        "this organization is present in the stores of several regions (a move between regions is under way); \
         it is served again once only one holds it\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_organization_is_the_first_segment_after_o() {
        assert_eq!(organization_of("/o/acme/token"), Some("acme"));
        assert_eq!(organization_of("/o/acme"), Some("acme"));
        assert_eq!(organization_of("/o//token"), None);
        assert_eq!(organization_of("/healthz"), None);
    }
}
