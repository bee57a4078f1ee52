//! Data residency in the operator: which store a namespace's objects are
//! reconciled into, and the Organization's `DataResidency` condition.
//!
//! ```text
//!  namespace ─► stores holding its Organization row (where its data is)
//!     none ─► spec.dataResidency ─► that region's store    (unknown region: nothing written)
//!             no Organization at all (regions configured) ─► the store holding what a
//!             deleted one left, else nothing written until it comes
//!     one  ─► that store, whatever the spec now says       (a different region: change refused)
//!     more ─► none (a move left half done: nothing written until one copy is gone)
//! ```
//!
//! The Organization's row in a store is the record of its home: the operator
//! writes an organization's rows only where its row is, so a restarted
//! operator finds the same home and refuses the same change.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::conditions::{DATA_RESIDENCY, Desired};
use super::reconcile::Context;
use super::{Error, Result};
use crate::store::{Location, Store};

/// Where this pass writes the namespace's objects.
pub struct Placement {
    /// `None`: nowhere (the condition says why).
    pub store: Option<Store>,
    /// The Organization's `DataResidency` condition.
    pub condition: Desired,
}

/// What a pass knows of its namespace's residency.
#[derive(Clone, Debug)]
pub struct PassResidency {
    /// The Organization's `DataResidency` condition.
    pub condition: Desired,
    /// Whether the pass's store is the namespace's home (or its region's);
    /// `false`: nothing may be written.
    pub has_store: bool,
}

/// The page that explains moving an organization between regions.
const MIGRATION_DOC: &str = "docs/data-residency.md";

fn describe(location: &Location) -> String {
    match location {
        None => "the default store".to_owned(),
        Some(region) => format!("region {region}"),
    }
}

/// The home store of each namespace whose Organization is stored, so that a
/// pass does not ask every store again. Only the operator writes or deletes
/// Organization rows (and a move between regions is made with it stopped):
/// a home changes only when [`Homes::forget`] is called as a row is deleted.
#[derive(Default)]
pub struct Homes(Mutex<HashMap<String, Location>>);

impl Homes {
    fn get(&self, namespace: &str) -> Option<Location> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(namespace).cloned()
    }

    fn remember(&self, namespace: &str, home: Location) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(namespace.to_owned(), home);
    }

    /// The Organization of `namespace` was removed from its store.
    pub fn forget(&self, namespace: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(namespace);
    }
}

/// Places the objects of `namespace`: see the [module](self) rules.
pub async fn place(ctx: &Context, namespace: &str) -> Result<Placement> {
    let organization = ctx.tenants.view(namespace, &ctx.stores).await.organization.clone();
    let has_organization = organization.is_some();
    let wanted: Location = organization.and_then(|org| org.spec.data_residency.clone());
    if wanted.is_none() && !ctx.regions.has_regions() {
        // One store, and no region asked for: nothing to look up.
        return Ok(decide(ctx, &wanted, &[None]));
    }
    if let Some(home) = ctx.homes.get(namespace) {
        return Ok(decide(ctx, &wanted, &[home]));
    }
    let homes = ctx.regions.homes_of_namespace(namespace).await.map_err(|source| Error::StoreRead {
        what: "the stores holding the organization",
        namespace: namespace.to_owned(),
        source: Box::new(source),
    })?;
    if let [home] = homes.as_slice() {
        ctx.homes.remember(namespace, home.clone());
    }
    if homes.is_empty() && !has_organization {
        // No Organization, here or stored: what a deleted one left is
        // removed from where it is; nothing new is written before the
        // Organization says its region (its arrival triggers the namespace).
        let leftovers =
            ctx.regions.leftovers_of_namespace(namespace).await.map_err(|source| Error::StoreRead {
                what: "the stores holding the namespace's objects",
                namespace: namespace.to_owned(),
                source: Box::new(source),
            })?;
        if leftovers.is_empty() {
            return Ok(Placement {
                store: None,
                condition: Desired::new(
                    DATA_RESIDENCY,
                    false,
                    "NoOrganization",
                    "the namespace has no Organization to say which region's store holds its objects",
                ),
            });
        }
        return Ok(decide(ctx, &wanted, &leftovers));
    }
    Ok(decide(ctx, &wanted, &homes))
}

fn decide(ctx: &Context, wanted: &Location, homes: &[Location]) -> Placement {
    let in_place = |location: &Location| {
        Desired::new(DATA_RESIDENCY, true, "Stored", format!("stored in {}", describe(location)))
    };
    match homes {
        [] => match ctx.regions.for_region(wanted.as_deref()) {
            Ok(store) => Placement { store: Some(store.clone()), condition: in_place(wanted) },
            Err(unknown) => Placement {
                store: None,
                condition: Desired::new(
                    DATA_RESIDENCY,
                    false,
                    "UnknownRegion",
                    format!(
                        "{unknown}; nothing was stored. Configure the region's store (--store-file {}=…) or fix dataResidency",
                        unknown.region
                    ),
                ),
            },
        },
        [home] => {
            let store = ctx.regions.at(home).ok().cloned();
            let condition = if home == wanted {
                in_place(home)
            } else if store.is_none() {
                Desired::new(
                    DATA_RESIDENCY,
                    false,
                    "UnknownRegion",
                    format!(
                        "the organization's data is in {}, which is no longer configured",
                        describe(home)
                    ),
                )
            } else {
                Desired::new(
                    DATA_RESIDENCY,
                    false,
                    "DataResidencyChangeRefused",
                    format!(
                        "dataResidency asks for {} but the organization's data is in {}, where it is still \
                         served: moving data between regions is a migration, not a field edit; see {MIGRATION_DOC}",
                        describe(wanted),
                        describe(home)
                    ),
                )
            };
            Placement { store, condition }
        }
        several => Placement {
            store: None,
            condition: Desired::new(
                DATA_RESIDENCY,
                false,
                "PresentInSeveralRegions",
                format!(
                    "the organization is in the stores of {}; nothing is written until only one holds it (see {MIGRATION_DOC})",
                    several.iter().map(describe).collect::<Vec<_>>().join(" and ")
                ),
            ),
        },
    }
}

/// A copy of `shared` writing to the home store of `namespace` (the default
/// store when it has none): for work outside a reconcile, such as releasing
/// the rows of a deleted object.
pub async fn home_context(shared: &Context, namespace: &str) -> Result<Context> {
    let placement = place(shared, namespace).await?;
    Ok(Context { store: placement.store.unwrap_or_else(|| shared.store.clone()), ..shared.clone() })
}
