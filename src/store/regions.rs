//! Data residency: the default store and one store per named region.
//!
//! ```text
//!  Organization.spec.dataResidency ─► region ─► RegionalStores::for_region ─► Store (eu, us, …)
//!                          (absent)  ─► the default store
//!  /o/{org}/… ─► RegionalStores::locate_organization ─► the one store whose organizations hold it
//! ```
//!
//! An organization's rows (users, sessions, grants, keys, audit events, SCIM
//! data) are written only to the store of its region, so the row of the
//! organization in a store is also the record of where its data lives: a
//! restarted operator finds it there again ([`RegionalStores::homes_of_namespace`]).

use std::collections::BTreeMap;

use super::error::query_error;
use super::{Result, Store, StoreError};

/// A region the stores do not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("data residency {region:?} names no configured store (configured regions: {configured})")]
pub struct UnknownRegion {
    pub region: String,
    /// The configured regions, comma-separated, or `none`.
    pub configured: String,
}

/// Where one organization's data is: the default store, or a region.
pub type Location = Option<String>;

/// The default store and the regional ones; cheap to clone.
#[derive(Clone, Debug)]
pub struct RegionalStores {
    default: Store,
    regions: BTreeMap<String, Store>,
}

impl RegionalStores {
    /// Only the default store (standalone, or no region configured).
    pub fn single(default: Store) -> Self {
        RegionalStores { default, regions: BTreeMap::new() }
    }

    pub fn new(default: Store, regions: BTreeMap<String, Store>) -> Self {
        RegionalStores { default, regions }
    }

    /// Connects to the default store and to each region's, migrating each.
    pub async fn connect(default_url: &str, regions: &BTreeMap<String, String>) -> Result<Self> {
        let default = Store::connect(default_url).await?;
        let mut stores = BTreeMap::new();
        for (region, url) in regions {
            let store = Store::connect(url)
                .await
                .map_err(|source| StoreError::Region { region: region.clone(), source: Box::new(source) })?;
            stores.insert(region.clone(), store);
        }
        Ok(RegionalStores { default, regions: stores })
    }

    pub fn default_store(&self) -> &Store {
        &self.default
    }

    /// Whether any region besides the default store is configured.
    pub fn has_regions(&self) -> bool {
        !self.regions.is_empty()
    }

    /// The configured regions, in name order.
    pub fn region_names(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    /// Every store with its location: the default first, then the regions by name.
    pub fn all(&self) -> impl Iterator<Item = (Location, &Store)> {
        std::iter::once((None, &self.default))
            .chain(self.regions.iter().map(|(region, store)| (Some(region.clone()), store)))
    }

    /// The store at `location` (`None`: the default store).
    pub fn at(&self, location: &Location) -> Result<&Store, UnknownRegion> {
        self.for_region(location.as_deref())
    }

    /// The store of an organization whose `dataResidency` is `region`.
    pub fn for_region(&self, region: Option<&str>) -> Result<&Store, UnknownRegion> {
        let Some(region) = region else { return Ok(&self.default) };
        self.regions.get(region).ok_or_else(|| UnknownRegion {
            region: region.to_owned(),
            configured: if self.regions.is_empty() {
                "none".to_owned()
            } else {
                self.region_names().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// The stores holding the Organization of `namespace`: where its data
    /// is. More than one only if a move between regions was left half done.
    pub async fn homes_of_namespace(&self, namespace: &str) -> Result<Vec<Location>> {
        self.stores_answering(namespace, "SELECT 1 AS found FROM organizations WHERE namespace = $1").await
    }

    /// The stores holding objects of `namespace` but no Organization: what a
    /// deleted Organization left while its Roles, assignments, identity
    /// providers or clients are being deleted.
    pub async fn leftovers_of_namespace(&self, namespace: &str) -> Result<Vec<Location>> {
        let query = "SELECT 1 AS found FROM roles WHERE namespace = $1 \
                     UNION ALL SELECT 1 FROM role_assignments WHERE namespace = $1 \
                     UNION ALL SELECT 1 FROM identity_providers WHERE namespace = $1 \
                     UNION ALL SELECT 1 FROM oauth_clients WHERE namespace = $1 LIMIT 1";
        self.stores_answering(namespace, query).await
    }

    async fn stores_answering(&self, namespace: &str, query: &'static str) -> Result<Vec<Location>> {
        let mut found = Vec::new();
        for (location, store) in self.all() {
            let mut conn = store.connection().await?;
            let row = sqlx::query(query)
                .bind(namespace)
                .fetch_optional(&mut *conn)
                .await
                .map_err(query_error("find the stores holding a namespace"))?;
            if row.is_some() {
                found.push(location);
            }
        }
        Ok(found)
    }

    /// Every organization name (issuer path) each store serves, with its store; a name two
    /// namespaces of one store claim is served by none (as `organization_by_name`).
    pub async fn organization_locations(&self) -> Result<Vec<(String, Location)>> {
        let mut found = Vec::new();
        for (location, store) in self.all() {
            let mut conn = store.connection().await?;
            let rows = sqlx::query("SELECT name FROM organizations GROUP BY name HAVING COUNT(*) = 1")
                .fetch_all(&mut *conn)
                .await
                .map_err(query_error("list the organizations of a store"))?;
            for row in rows {
                found.push((super::column(&row, "organizations", "name")?, location.clone()));
            }
        }
        Ok(found)
    }

    /// Closes every store's connections.
    pub async fn close(&self) {
        for (_, store) in self.all() {
            store.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_region_names_the_configured_ones() {
        let default = Store::connect("sqlite::memory:").await.unwrap();
        let eu = Store::connect("sqlite::memory:").await.unwrap();
        let us = Store::connect("sqlite::memory:").await.unwrap();
        let stores =
            RegionalStores::new(default, BTreeMap::from([("eu".to_owned(), eu), ("us".to_owned(), us)]));
        assert!(stores.for_region(None).is_ok());
        assert!(stores.for_region(Some("eu")).is_ok());
        let unknown = stores.for_region(Some("apac")).unwrap_err();
        assert_eq!(unknown.configured, "eu, us");
        assert!(unknown.to_string().contains("\"apac\""), "{unknown}");
        let single = RegionalStores::single(Store::connect("sqlite::memory:").await.unwrap());
        assert_eq!(single.for_region(Some("eu")).unwrap_err().configured, "none");
    }
}
