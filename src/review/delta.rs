//! The delta between two sides: for every principal either index knows, the
//! permissions it holds per scope on each side (asked of the access core),
//! compared; each difference explained by the assignments that cause it;
//! and the roles whose expansion changed, with whom they reach.
//!
//! Scopes: the organization, then each workspace in which the principal has
//! an assignment on either side (elsewhere only organization-wide grants
//! apply, so a workspace would repeat the organization). A workspace lists
//! only what the organization's line does not already say.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;

use super::model::*;
use super::tenant::{PermissionMarks, TenantAccess};
use crate::authz::role_graph::RolePath;
use crate::authz::{HeldPermission, Principal, PrincipalKind as Kind, Scope};
use crate::store::AccessDirectory;

/// Reviews every namespace either side has. `directories` holds the store's
/// groups per namespace when groups are to be expanded (the sides must
/// already have them, see [`TenantAccess::expand_groups`]).
pub fn review_tenants(
    base: &BTreeMap<String, TenantAccess>,
    head: &BTreeMap<String, TenantAccess>,
    directories: Option<&BTreeMap<String, AccessDirectory>>,
    now: i64,
) -> Vec<OrganizationReview> {
    let namespaces: BTreeSet<&String> = base.keys().chain(head.keys()).collect();
    let mut reviews = Vec::new();
    for namespace in namespaces {
        let empty = TenantAccess::empty(namespace);
        let before = base.get(namespace).unwrap_or(&empty);
        let after = head.get(namespace).unwrap_or(&empty);
        let directory = directories.map(|d| d.get(namespace.as_str()).cloned().unwrap_or_default());
        let review = TenantReview::new(before, after, directory.as_ref(), now).review();
        if !review.roles.is_empty() || !review.principals.is_empty() || !review.catalog.is_empty() {
            reviews.push(review);
        }
    }
    reviews
}

struct TenantReview<'a> {
    before: Explainer<'a>,
    after: Explainer<'a>,
    /// Keys of inactive users, when groups are expanded.
    inactive: HashSet<String>,
    directory: Option<&'a AccessDirectory>,
    now: i64,
}

impl<'a> TenantReview<'a> {
    fn new(
        before: &'a TenantAccess,
        after: &'a TenantAccess,
        directory: Option<&'a AccessDirectory>,
        now: i64,
    ) -> Self {
        let inactive = directory
            .into_iter()
            .flat_map(|d| &d.inactive_users)
            .map(|name| Principal::user(name).keyed().name)
            .collect();
        Self { before: Explainer::new(before), after: Explainer::new(after), inactive, directory, now }
    }

    fn review(mut self) -> OrganizationReview {
        let (b, a) = (self.before.side, self.after.side);
        let roles = self.role_changes();
        let catalog = catalog_changes(b, a);
        let mut principals: Vec<Principal> = b.index.principals();
        principals.extend(a.index.principals());
        principals.sort();
        principals.dedup();
        let mut changes: Vec<PrincipalChange> =
            principals.iter().filter_map(|p| self.principal_change(p)).collect();
        changes.sort_by(|x, y| x.principal.cmp(&y.principal));
        let through_groups = match self.directory {
            Some(_) => group_reaches(&changes),
            None => Vec::new(),
        };
        let groups_not_in_store = self.groups_not_in_store();
        OrganizationReview {
            namespace: a.namespace.clone(),
            organization: a.organization.clone().or_else(|| b.organization.clone()),
            summary: summarize(&changes, roles.len(), catalog.len()),
            catalog,
            roles,
            principals: changes,
            through_groups,
            groups_not_in_store,
        }
    }

    fn display(&self, principal: &Principal) -> PrincipalRef {
        let name = self
            .after
            .side
            .names
            .get(principal)
            .or_else(|| self.before.side.names.get(principal))
            .cloned()
            .unwrap_or_else(|| principal.name.clone());
        PrincipalRef { kind: principal.kind.into(), name }
    }

    fn principal_change(&mut self, principal: &Principal) -> Option<PrincipalChange> {
        let (b, a, now) = (self.before.side, self.after.side, self.now);
        let mut workspaces: BTreeSet<&Scope> = b.index.workspaces_of(principal).into_iter().collect();
        workspaces.extend(a.index.workspaces_of(principal));

        let organization = compare(
            &b.index.held_permissions(principal, &Scope::Organization, now),
            &a.index.held_permissions(principal, &Scope::Organization, now),
        );
        let shown: HashSet<(&str, ChangeKind)> =
            organization.iter().map(|c| (c.permission, c.kind)).collect();
        let mut scopes = Vec::new();
        let mut per_scope = vec![(Scope::Organization, organization.clone())];
        for workspace in workspaces {
            let changes: Vec<Difference<'_>> = compare(
                &b.index.held_permissions(principal, workspace, now),
                &a.index.held_permissions(principal, workspace, now),
            )
            .into_iter()
            .filter(|c| !shown.contains(&(c.permission, c.kind)))
            .collect();
            per_scope.push((workspace.clone(), changes));
        }
        for (scope, differences) in per_scope {
            if differences.is_empty() {
                continue;
            }
            let permissions =
                differences.iter().map(|d| self.permission_change(principal, &scope, d)).collect();
            scopes.push(ScopeChange { scope: ScopeRef::from(&scope), permissions });
        }
        if scopes.is_empty() {
            return None;
        }
        let inactive = principal.kind == Kind::User && self.inactive.contains(&principal.name);
        Some(PrincipalChange { principal: self.display(principal), inactive, scopes })
    }

    fn permission_change(
        &mut self,
        principal: &Principal,
        scope: &Scope,
        difference: &Difference<'_>,
    ) -> PermissionChange {
        let now = self.now;
        let explainer = if difference.kind.widens() { &mut self.after } else { &mut self.before };
        let marks = explainer.side.marks(difference.permission);
        let causes = explainer.causes(principal, difference.permission, scope, now);
        PermissionChange {
            permission: marked(difference.permission, marks),
            change: difference.kind,
            expires_before: difference.before.flatten().map(timestamp),
            expires_after: difference.after.flatten().map(timestamp),
            causes,
        }
    }

    fn role_changes(&self) -> Vec<RoleChange> {
        let (b, a) = (self.before.side, self.after.side);
        let names: BTreeSet<&String> = b.index.roles().keys().chain(a.index.roles().keys()).collect();
        let mut changes = Vec::new();
        for name in names {
            let before =
                b.index.roles().contains_key(name).then(|| &b.index.role_expansion().effective[name]);
            let after = a.index.roles().contains_key(name).then(|| &a.index.role_expansion().effective[name]);
            let grants = |side: &TenantAccess| -> BTreeSet<String> {
                side.index.roles().get(name).map(|r| r.grants.iter().cloned().collect()).unwrap_or_default()
            };
            let before_grants = grants(b);
            let wildcards_added: Vec<String> =
                grants(a).into_iter().filter(|g| g.ends_with('*') && !before_grants.contains(g)).collect();
            if before == after && wildcards_added.is_empty() {
                continue;
            }
            let empty = BTreeSet::new();
            let (kind, reached_on) = match (before, after) {
                (None, _) => (RoleChangeKind::Added, a),
                (_, None) => (RoleChangeKind::Deleted, b),
                _ => (RoleChangeKind::Changed, a),
            };
            let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
            let location = a.role_locations.get(name).or_else(|| b.role_locations.get(name));
            changes.push(RoleChange {
                role: name.clone(),
                change: kind,
                file: location.map(|l| l.file.clone()),
                line: location.map(|l| l.line),
                gained: after.difference(before).map(|p| marked(p, a.marks(p))).collect(),
                lost: before.difference(after).map(|p| marked(p, b.marks(p))).collect(),
                wildcards_added,
                reaches: self.reaches(reached_on, name),
            });
        }
        changes
    }

    /// The assignments of `side` whose role is `role` or includes it.
    fn reaches(&self, side: &TenantAccess, role: &str) -> Vec<Reach> {
        let including: HashSet<String> = side.index.roles_including(role).into_iter().collect();
        let mut reaches: Vec<Reach> = side
            .index
            .assignments()
            .filter(|a| including.contains(&a.role))
            .filter_map(|a| {
                let members = match (self.directory, a.principal.kind) {
                    (Some(_), Kind::Group) => {
                        let members = side.index.members_of(&a.principal.name);
                        let inactive = members.iter().filter(|m| self.inactive.contains(**m)).count();
                        Some(MemberCount { active: members.len() - inactive, inactive })
                    }
                    _ => None,
                };
                Some(Reach {
                    principal: self.display(&a.principal),
                    scope: ScopeRef::from(&a.scope),
                    role: a.role.clone(),
                    source: side.sources.get(&a.id)?.clone(),
                    members,
                })
            })
            .collect();
        reaches.sort_by(|x, y| (&x.principal, &x.scope, &x.role).cmp(&(&y.principal, &y.scope, &y.role)));
        reaches
    }

    fn groups_not_in_store(&self) -> Vec<String> {
        let Some(directory) = self.directory else { return Vec::new() };
        let known: HashSet<String> =
            directory.groups.iter().map(|g| Principal::group(&g.display_name).keyed().name).collect();
        let mut named = self.before.side.named_groups();
        named.extend(self.after.side.named_groups());
        named
            .into_iter()
            .filter(|group| !known.contains(group))
            .map(|group| self.display(&Principal::group(group)).name)
            .collect()
    }
}

/// One side, with the role paths it has already worked out (many users share
/// the same role and permission).
struct Explainer<'a> {
    side: &'a TenantAccess,
    paths: HashMap<(String, String), Option<RolePath>>,
}

impl<'a> Explainer<'a> {
    fn new(side: &'a TenantAccess) -> Self {
        Self { side, paths: HashMap::new() }
    }

    fn causes(&mut self, principal: &Principal, permission: &str, scope: &Scope, now: i64) -> Vec<Cause> {
        let side = self.side;
        let mut causes = Vec::new();
        for grant in side.index.grants_for(principal, permission, scope, now) {
            let key = (grant.role().to_owned(), permission.to_owned());
            let path = self
                .paths
                .entry(key)
                .or_insert_with(|| side.index.role_path(grant.role(), permission))
                .clone();
            let (through_roles, grant_name) = match path {
                Some(RolePath { roles, grant }) => (roles.into_iter().skip(1).collect(), grant),
                None => (Vec::new(), String::new()),
            };
            let Some(source) = side.sources.get(grant.assignment()) else { continue };
            let group = grant
                .group()
                .map(|key| side.names.get(&Principal::group(key)).cloned().unwrap_or_else(|| key.to_owned()));
            causes.push(Cause {
                role: grant.role().to_owned(),
                through_roles,
                grant: grant_name,
                group,
                scope: ScopeRef::from(grant.scope()),
                expires_at: grant.expires_at().map(timestamp),
                source: source.clone(),
            });
        }
        causes
    }
}

/// A permission held differently on the two sides.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Difference<'a> {
    permission: &'a str,
    kind: ChangeKind,
    /// `None`: not held; `Some(None)`: held with no end.
    before: Option<Option<i64>>,
    after: Option<Option<i64>>,
}

/// Merges two sorted lists of held permissions into their differences.
fn compare<'a>(before: &[HeldPermission<'a>], after: &[HeldPermission<'a>]) -> Vec<Difference<'a>> {
    let before: BTreeMap<&str, Option<i64>> = before.iter().map(|h| (h.permission, h.until)).collect();
    let after: BTreeMap<&str, Option<i64>> = after.iter().map(|h| (h.permission, h.until)).collect();
    let permissions: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let mut differences = Vec::new();
    for permission in permissions {
        let (b, a) = (before.get(permission).copied(), after.get(permission).copied());
        let kind = match (b, a) {
            (None, Some(_)) => ChangeKind::Gained,
            (Some(_), None) => ChangeKind::Lost,
            (Some(b), Some(a)) if b == a => continue,
            // `None` (no end) is later than any end.
            (Some(b), Some(a)) => match (b, a) {
                (_, None) => ChangeKind::Extended,
                (None, _) => ChangeKind::Shortened,
                (Some(b), Some(a)) if a > b => ChangeKind::Extended,
                _ => ChangeKind::Shortened,
            },
            (None, None) => continue,
        };
        differences.push(Difference { permission, kind, before: b, after: a });
    }
    differences
}

/// The catalog's permissions and marks, before and after (as declared: the
/// `iam.` rule is not a mark that can change).
fn catalog_changes(before: &TenantAccess, after: &TenantAccess) -> Vec<CatalogChange> {
    let permissions: BTreeSet<&String> = before.catalog.keys().chain(after.catalog.keys()).collect();
    let mut changes = Vec::new();
    for permission in permissions {
        let mut push = |change| changes.push(CatalogChange { permission: permission.clone(), change });
        match (before.catalog.get(permission), after.catalog.get(permission)) {
            (None, Some(_)) => push(CatalogChangeKind::Added),
            (Some(_), None) => push(CatalogChangeKind::Removed),
            (Some(b), Some(a)) => {
                match (b.privileged, a.privileged) {
                    (false, true) => push(CatalogChangeKind::NowPrivileged),
                    (true, false) => push(CatalogChangeKind::NoLongerPrivileged),
                    _ => {}
                }
                match (b.approval_required, a.approval_required) {
                    (false, true) => push(CatalogChangeKind::NowRequiresApproval),
                    (true, false) => push(CatalogChangeKind::NoLongerRequiresApproval),
                    _ => {}
                }
            }
            (None, None) => {}
        }
    }
    changes
}

fn marked(permission: &str, marks: PermissionMarks) -> MarkedPermission {
    MarkedPermission {
        permission: permission.to_owned(),
        privileged: marks.privileged,
        approval_required: marks.approval_required,
    }
}

fn timestamp(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::MAX)
}

fn summarize(changes: &[PrincipalChange], roles_changed: usize, catalog_changes: usize) -> Summary {
    let mut summary = Summary { roles_changed, catalog_changes, ..Summary::default() };
    for change in changes {
        let all = || change.scopes.iter().flat_map(|s| &s.permissions);
        let widening = || all().filter(|p| p.change.widens());
        let gains = widening().next().is_some();
        let losses = all().any(|p| !p.change.widens());
        summary.principals_gaining += usize::from(gains);
        summary.principals_losing += usize::from(losses);
        summary.principals_gaining_privileged += usize::from(widening().any(|p| p.permission.privileged));
        summary.principals_gaining_approval_required +=
            usize::from(widening().any(|p| p.permission.approval_required));
        summary.inactive_users += usize::from(change.inactive);
    }
    summary
}

/// For each group, scope and kind of change, the users that change reaches
/// through the group.
fn group_reaches(changes: &[PrincipalChange]) -> Vec<GroupReach> {
    type Key = (String, ScopeRef, ChangeKind);
    #[derive(Default)]
    struct Reached {
        permissions: BTreeMap<MarkedPermission, (usize, usize)>,
        users: BTreeSet<String>,
        inactive_users: BTreeSet<String>,
    }
    let mut reached: BTreeMap<Key, Reached> = BTreeMap::new();
    for change in changes.iter().filter(|c| c.principal.kind == PrincipalKind::User) {
        for scope in &change.scopes {
            for permission in &scope.permissions {
                let groups: BTreeSet<&String> =
                    permission.causes.iter().filter_map(|c| c.group.as_ref()).collect();
                for group in groups {
                    let entry =
                        reached.entry((group.clone(), scope.scope.clone(), permission.change)).or_default();
                    let counts = entry.permissions.entry(permission.permission.clone()).or_default();
                    if change.inactive {
                        counts.1 += 1;
                        entry.inactive_users.insert(change.principal.name.clone());
                    } else {
                        counts.0 += 1;
                        entry.users.insert(change.principal.name.clone());
                    }
                }
            }
        }
    }
    reached
        .into_iter()
        .map(|((group, scope, change), r)| GroupReach {
            group,
            scope,
            change,
            permissions: r
                .permissions
                .into_iter()
                .map(|(permission, (users, inactive_users))| ReachedPermission {
                    permission,
                    users,
                    inactive_users,
                })
                .collect(),
            users: r.users.into_iter().collect(),
            inactive_users: r.inactive_users.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
