//! One side of a review as the access core sees it: per namespace, an
//! [`AccessIndex`] fed from the manifests by the same projections the
//! services use (the operator's records, then the store follower's
//! record-to-index functions), and where each assignment is declared.
//!
//! ```text
//!  ManifestSet ─► resources::records (ToRecord) ─► store::follow::{role_definition, assignment} ─► AccessIndex
//!      └─ IdentityProvider groupMappings ─► one Group assignment each (same projection)
//!  AccessDirectory (store, optional) ─► members of the groups the side names
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::ResourceExt;

use super::model::GrantSource;
use crate::authz::{AccessIndex, Assignment, Principal, PrincipalKind};
use crate::manifests::{ManifestSet, Resource, Source};
use crate::resources::records::ToRecord as _;
use crate::store::follow;
use crate::store::{AccessDirectory, ObjectMeta};
use crate::validation::namespace_of;

/// How an organization's catalog marks a permission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PermissionMarks {
    pub privileged: bool,
    pub approval_required: bool,
}

/// Where a Role is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

/// One namespace of one side.
#[derive(Debug, Default)]
pub struct TenantAccess {
    pub namespace: String,
    /// The Organization's name, if the namespace has one.
    pub organization: Option<String>,
    /// The catalog, with its marks.
    pub catalog: BTreeMap<String, PermissionMarks>,
    pub index: AccessIndex,
    /// Where each assignment of the index is declared, by assignment id.
    pub sources: HashMap<String, GrantSource>,
    pub role_locations: BTreeMap<String, Location>,
    /// Principals as the index keys them → as written.
    pub names: HashMap<Principal, String>,
}

impl TenantAccess {
    pub fn empty(namespace: &str) -> Self {
        Self { namespace: namespace.to_owned(), ..Self::default() }
    }

    /// How the catalog marks `permission`; an `iam.` permission is privileged
    /// whatever the catalog says (as `validate`'s escalation warnings hold).
    pub fn marks(&self, permission: &str) -> PermissionMarks {
        let mut marks = self.catalog.get(permission).copied().unwrap_or_default();
        marks.privileged |= permission.starts_with("iam.");
        marks
    }

    /// The groups this side's assignments name (as the index keys them).
    pub fn named_groups(&self) -> BTreeSet<String> {
        self.index
            .assignments()
            .filter(|a| a.principal.kind == PrincipalKind::Group)
            .map(|a| a.principal.name.clone())
            .collect()
    }

    /// Gives the groups this side names their members from the store.
    /// Inactive users are deliberately left active in the index: the review
    /// shows what they would hold, marked, instead of nothing.
    pub fn expand_groups(&mut self, directory: &AccessDirectory) {
        let named = self.named_groups();
        for group in &directory.groups {
            let key = Principal::group(&group.display_name).keyed();
            if !named.contains(&key.name) {
                continue;
            }
            let mut members = Vec::with_capacity(group.members.len());
            for member in &group.members {
                let user = Principal::user(&member.user_name).keyed();
                members.push(user.name.clone());
                self.names.entry(user).or_insert_with(|| member.user_name.clone());
            }
            self.index.set_group_members(&key.name, members);
            self.names.entry(key).or_insert_with(|| group.display_name.clone());
        }
    }
}

/// Every namespace of a validated folder, as the access core sees it.
pub fn tenants_of(set: &ManifestSet) -> BTreeMap<String, TenantAccess> {
    let mut tenants: BTreeMap<String, TenantAccess> = BTreeMap::new();
    let mut roles: BTreeMap<String, Vec<(String, crate::authz::role_graph::RoleDefinition)>> =
        BTreeMap::new();
    let mut assignments: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
    for manifest in &set.manifests {
        let file = manifest.source.file.display().to_string();
        let namespace = match &manifest.resource {
            Resource::Organization(o) => namespace_of(o),
            Resource::Role(o) => namespace_of(o),
            Resource::RoleAssignment(o) => namespace_of(o),
            Resource::IdentityProvider(o) => namespace_of(o),
            Resource::OAuthClient(o) => namespace_of(o),
        };
        let tenant = tenants.entry(namespace.clone()).or_insert_with(|| TenantAccess::empty(&namespace));
        let meta = |kind: &str, name: &str| ObjectMeta::new(format!("{kind}/{name}"), &namespace, name, 1);
        match &manifest.resource {
            Resource::Organization(o) => {
                let record = o.to_record(meta("Organization", &o.name_any()));
                tenant.index.set_catalog(record.catalog);
                tenant.catalog = o
                    .spec
                    .permissions
                    .iter()
                    .map(|p| {
                        let approval_required = o.spec.approval_required.contains(&p.name);
                        (p.name.clone(), PermissionMarks { privileged: p.privileged, approval_required })
                    })
                    .collect();
                tenant.organization = Some(o.name_any());
            }
            Resource::Role(r) => {
                let name = r.name_any();
                let record = r.to_record(meta("Role", &name));
                roles
                    .entry(namespace.clone())
                    .or_default()
                    .push((name.clone(), follow::role_definition(&record)));
                tenant.role_locations.insert(name, Location { file, line: manifest.source.line });
            }
            Resource::RoleAssignment(ra) => {
                let name = ra.name_any();
                let record = ra.to_record(meta("RoleAssignment", &name));
                tenant.sources.insert(
                    record.meta.uid.clone(),
                    GrantSource::RoleAssignment { name, file, line: manifest.source.line },
                );
                assignments.entry(namespace.clone()).or_default().push(follow::assignment(&record));
            }
            Resource::IdentityProvider(idp) => {
                let name = idp.name_any();
                let mapped = follow::group_mapping_assignments(&name, &idp.spec);
                for ((position, mapping), assignment) in
                    idp.spec.group_mappings.iter().enumerate().zip(mapped)
                {
                    let line = mapping_line(&manifest.source, position);
                    tenant.sources.insert(
                        assignment.id.clone(),
                        GrantSource::GroupMapping {
                            identity_provider: name.clone(),
                            position,
                            group: mapping.group.clone(),
                            file: file.clone(),
                            line,
                        },
                    );
                    assignments.entry(namespace.clone()).or_default().push(assignment);
                }
            }
            Resource::OAuthClient(_) => {}
        }
    }
    for (namespace, tenant) in &mut tenants {
        tenant.index.reset_roles(roles.remove(namespace).unwrap_or_default());
        for assignment in assignments.remove(namespace).unwrap_or_default() {
            tenant
                .names
                .entry(assignment.principal.keyed())
                .or_insert_with(|| assignment.principal.name.clone());
            tenant.index.apply_assignment(assignment);
        }
    }
    tenants
}

/// The line of the `position`-th `group:` under `spec.groupMappings` (block
/// style, as the examples write them), else the line of `groupMappings`.
fn mapping_line(source: &Source, position: usize) -> usize {
    let start = source.line_of(&["spec", "groupMappings"], None);
    let group_keys = source
        .text
        .lines()
        .enumerate()
        .skip(start.saturating_sub(source.line) + 1)
        .take_while(|(_, line)| line.starts_with([' ', '-', '#']) || line.trim().is_empty())
        .filter(|(_, line)| line.trim_start().trim_start_matches("- ").trim_start().starts_with("group:"));
    group_keys.map(|(at, _)| source.line + at).nth(position).unwrap_or(start)
}
