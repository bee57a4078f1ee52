//! The access index of one organization: permission catalog, roles,
//! assignments, group memberships and user status, updated one change at a
//! time, and the evaluation of [`AccessIndex::check`] and
//! [`AccessIndex::effective_permissions`] over it.
//!
//! Role and catalog changes re-expand every role (roles are few); assignment,
//! membership and user changes touch only the entries of the principal
//! concerned. Checks look up the principal, walk its own assignments and those
//! of its groups for the requested scope, and test one bit per assignment in
//! the precomputed permissions of the assigned role.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use super::decision::{Decision, Denial, Grant};
use super::role_graph::{self, RoleDefinition, RoleExpansion};

/// Kinds of principal an assignment can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// A person, by userName.
    User,
    /// A group of users, by display name; its members receive its assignments.
    Group,
    /// An OAuth client acting for itself, by name. Clients are in no group.
    Client,
}

/// Who receives a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user's userName, the group's display name or the client's name,
    /// compared exactly (normalising case is the caller's business).
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Self { kind: PrincipalKind::User, name: name.into() }
    }

    pub fn group(name: impl Into<String>) -> Self {
        Self { kind: PrincipalKind::Group, name: name.into() }
    }

    pub fn client(name: impl Into<String>) -> Self {
        Self { kind: PrincipalKind::Client, name: name.into() }
    }
}

/// Where an assignment applies, or where a permission is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Organization-wide. A grant here also applies in every workspace.
    Organization,
    /// One workspace, by name.
    Workspace(String),
}

/// A role given to a principal in a scope, possibly until a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Unique within the index (the resource's uid or `namespace/name`).
    pub id: String,
    pub principal: Principal,
    /// Name of the role; a role that does not exist (yet) grants nothing.
    pub role: String,
    pub scope: Scope,
    /// Unix seconds from which the assignment grants nothing.
    pub expires_at: Option<i64>,
}

/// The access index of one organization. See the [module docs](self).
///
/// Users the index has never been told about are treated as active: whether
/// a named principal exists yet is a provisioning question, answered before
/// anyone gets a token. Only an explicit [`apply_user`](Self::apply_user)
/// with `active: false` turns a user off.
#[derive(Debug, Default)]
pub struct AccessIndex {
    /// The catalog, in order: a permission's id is its position.
    catalog: BTreeSet<String>,
    permission_names: Vec<String>,
    permission_ids: HashMap<String, PermissionId>,

    roles: BTreeMap<String, RoleDefinition>,
    expansion: RoleExpansion,
    /// Every role name a role or an assignment has mentioned; never shrinks,
    /// so ids held by assignments stay valid.
    role_ids: HashMap<String, RoleId>,
    role_names: Vec<String>,
    /// One row of permission bits per role id.
    role_permissions: PermissionMatrix,

    /// Scope ids of the workspaces assignments have named; never shrinks.
    /// Id 0 is the organization.
    workspace_ids: HashMap<String, ScopeId>,

    assignments: Slab<Assignment>,
    assignment_slots: HashMap<String, AssignmentSlot>,

    users: HashMap<String, UserEntry>,
    groups: Slab<GroupEntry>,
    group_ids: HashMap<String, GroupId>,
    clients: HashMap<String, Grants>,
}

type PermissionId = usize;
type RoleId = usize;
type ScopeId = usize;
type GroupId = usize;
type AssignmentSlot = usize;

const ORGANIZATION: ScopeId = 0;
/// The `expires_at` of an entry whose assignment does not expire.
const NEVER: i64 = i64::MAX;

#[derive(Debug, Default)]
struct UserEntry {
    /// `None` until the user is applied: treated as active.
    active: Option<bool>,
    groups: Vec<GroupId>,
    grants: Grants,
}

impl UserEntry {
    fn is_unused(&self) -> bool {
        self.active.is_none() && self.groups.is_empty() && self.grants.is_empty()
    }
}

#[derive(Debug)]
struct GroupEntry {
    name: String,
    members: HashSet<String>,
    grants: Grants,
}

impl AccessIndex {
    pub fn new() -> Self {
        Self::default()
    }

    // === Catalog and roles: each change re-expands every role. ===

    /// Replaces the permission catalog. Wildcards match only what is in it.
    pub fn set_catalog(&mut self, permissions: impl IntoIterator<Item = String>) {
        let catalog: BTreeSet<String> = permissions.into_iter().collect();
        if catalog == self.catalog {
            return;
        }
        self.permission_names = catalog.iter().cloned().collect();
        self.permission_ids =
            self.permission_names.iter().cloned().enumerate().map(|(id, p)| (p, id)).collect();
        self.catalog = catalog;
        self.expand_roles();
    }

    pub fn apply_role(&mut self, name: &str, role: RoleDefinition) {
        if self.roles.get(name) == Some(&role) {
            return;
        }
        self.roles.insert(name.to_owned(), role);
        self.expand_roles();
    }

    pub fn delete_role(&mut self, name: &str) {
        if self.roles.remove(name).is_some() {
            self.expand_roles();
        }
    }

    /// Replaces every role, expanding once.
    pub fn reset_roles(&mut self, roles: impl IntoIterator<Item = (String, RoleDefinition)>) {
        self.roles = roles.into_iter().collect();
        self.expand_roles();
    }

    /// Inclusion cycles among the roles, each once as the path that closes it
    /// (`[a, b, a]`). Roles in a cycle still give what they reach.
    pub fn role_cycles(&self) -> &[Vec<String>] {
        &self.expansion.cycles
    }

    /// What each role gives, and what is wrong with the roles (cycles, missing
    /// included roles, grants that match nothing in the catalog).
    pub fn role_expansion(&self) -> &RoleExpansion {
        &self.expansion
    }

    fn expand_roles(&mut self) {
        self.expansion = role_graph::expand_roles(&self.catalog, &self.roles);
        for name in self.roles.keys() {
            intern(&mut self.role_ids, &mut self.role_names, name);
        }
        self.role_permissions = PermissionMatrix::new(self.role_names.len(), self.catalog.len());
        for (role, name) in self.role_names.iter().enumerate() {
            for permission in self.expansion.effective.get(name).into_iter().flatten() {
                if let Some(&permission) = self.permission_ids.get(permission) {
                    self.role_permissions.insert(role, permission);
                }
            }
        }
    }

    fn role_id(&mut self, name: &str) -> RoleId {
        let before = self.role_names.len();
        let role = intern(&mut self.role_ids, &mut self.role_names, name);
        if self.role_names.len() > before {
            // Not a defined role (those are interned when expanded): no permissions.
            self.role_permissions.push_empty_row();
        }
        role
    }

    fn scope_id(&mut self, scope: &Scope) -> ScopeId {
        match scope {
            Scope::Organization => ORGANIZATION,
            Scope::Workspace(name) => {
                let next = self.workspace_ids.len() + 1;
                *self.workspace_ids.entry(name.clone()).or_insert(next)
            }
        }
    }

    // === Assignments: O(assignments of the principal). ===

    /// Adds an assignment, or replaces the one with the same id.
    pub fn apply_assignment(&mut self, assignment: Assignment) {
        let current = self.assignment_slots.get(&assignment.id).and_then(|&slot| self.assignments.get(slot));
        if current == Some(&assignment) {
            return;
        }
        self.delete_assignment(&assignment.id);

        let role = self.role_id(&assignment.role);
        let scope = self.scope_id(&assignment.scope);
        let expires_at = assignment.expires_at.unwrap_or(NEVER);
        let id = assignment.id.clone();
        let principal = assignment.principal.clone();
        let slot = self.assignments.insert(assignment);
        self.assignment_slots.insert(id, slot);
        self.grants_mut(&principal).insert(GrantEntry { scope, role, assignment: slot, expires_at });
    }

    pub fn delete_assignment(&mut self, id: &str) {
        let Some(slot) = self.assignment_slots.remove(id) else { return };
        let Some(assignment) = self.assignments.remove(slot) else { return };
        let name = assignment.principal.name.as_str();
        match assignment.principal.kind {
            PrincipalKind::User => {
                if let Some(user) = self.users.get_mut(name) {
                    user.grants.remove(slot);
                    self.release_user_if_unused(name);
                }
            }
            PrincipalKind::Group => {
                if let Some(&group) = self.group_ids.get(name) {
                    if let Some(entry) = self.groups.get_mut(group) {
                        entry.grants.remove(slot);
                    }
                    self.release_group_if_unused(group);
                }
            }
            PrincipalKind::Client => {
                if let Some(grants) = self.clients.get_mut(name) {
                    grants.remove(slot);
                    if grants.is_empty() {
                        self.clients.remove(name);
                    }
                }
            }
        }
    }

    /// Replaces every assignment.
    pub fn reset_assignments(&mut self, assignments: impl IntoIterator<Item = Assignment>) {
        let stale: Vec<String> = self.assignment_slots.keys().cloned().collect();
        for id in stale {
            self.delete_assignment(&id);
        }
        for assignment in assignments {
            self.apply_assignment(assignment);
        }
    }

    fn grants_mut(&mut self, principal: &Principal) -> &mut Grants {
        let name = principal.name.as_str();
        match principal.kind {
            PrincipalKind::User => &mut self.users.entry(name.to_owned()).or_default().grants,
            PrincipalKind::Group => {
                let group = self.group_id(name);
                &mut self.groups.get_mut(group).expect("group_id returns a live group").grants
            }
            PrincipalKind::Client => self.clients.entry(name.to_owned()).or_default(),
        }
    }

    // === Users and groups: O(1) and O(members changed). ===

    /// Sets a user's status. An inactive user gets nothing, even through groups.
    pub fn apply_user(&mut self, user_name: &str, active: bool) {
        self.users.entry(user_name.to_owned()).or_default().active = Some(active);
    }

    /// Forgets a user's status and takes it out of every group. Assignments
    /// naming it are kept, as for any principal that does not exist yet.
    pub fn delete_user(&mut self, user_name: &str) {
        let Some(user) = self.users.get_mut(user_name) else { return };
        user.active = None;
        for group in std::mem::take(&mut user.groups) {
            if let Some(entry) = self.groups.get_mut(group) {
                entry.members.remove(user_name);
            }
            self.release_group_if_unused(group);
        }
        self.release_user_if_unused(user_name);
    }

    /// Replaces a group's members (userNames).
    pub fn set_group_members(&mut self, group_name: &str, members: impl IntoIterator<Item = String>) {
        let wanted: HashSet<String> = members.into_iter().collect();
        let group = self.group_id(group_name);
        let Some(entry) = self.groups.get_mut(group) else { return };
        let current = std::mem::take(&mut entry.members);
        for user in current.difference(&wanted) {
            self.unlink_member(group, user);
        }
        for user in wanted.difference(&current) {
            self.users.entry(user.clone()).or_default().groups.push(group);
        }
        if let Some(entry) = self.groups.get_mut(group) {
            entry.members = wanted;
        }
        self.release_group_if_unused(group);
    }

    pub fn add_member(&mut self, group_name: &str, user_name: &str) {
        let group = self.group_id(group_name);
        let Some(entry) = self.groups.get_mut(group) else { return };
        if entry.members.insert(user_name.to_owned()) {
            self.users.entry(user_name.to_owned()).or_default().groups.push(group);
        }
    }

    pub fn remove_member(&mut self, group_name: &str, user_name: &str) {
        let Some(&group) = self.group_ids.get(group_name) else { return };
        if self.groups.get_mut(group).is_some_and(|entry| entry.members.remove(user_name)) {
            self.unlink_member(group, user_name);
        }
        self.release_group_if_unused(group);
    }

    /// Empties a group. Assignments naming it are kept, as for any principal
    /// that does not exist yet.
    pub fn delete_group(&mut self, group_name: &str) {
        if self.group_ids.contains_key(group_name) {
            self.set_group_members(group_name, []);
        }
    }

    fn unlink_member(&mut self, group: GroupId, user_name: &str) {
        if let Some(user) = self.users.get_mut(user_name) {
            user.groups.retain(|&g| g != group);
            self.release_user_if_unused(user_name);
        }
    }

    fn group_id(&mut self, name: &str) -> GroupId {
        if let Some(&group) = self.group_ids.get(name) {
            return group;
        }
        let group = self.groups.insert(GroupEntry {
            name: name.to_owned(),
            members: HashSet::new(),
            grants: Grants::default(),
        });
        self.group_ids.insert(name.to_owned(), group);
        group
    }

    fn release_group_if_unused(&mut self, group: GroupId) {
        let Some(entry) = self.groups.get(group) else { return };
        if entry.members.is_empty() && entry.grants.is_empty() {
            self.group_ids.remove(&entry.name);
            self.groups.remove(group);
        }
    }

    fn release_user_if_unused(&mut self, user_name: &str) {
        if self.users.get(user_name).is_some_and(UserEntry::is_unused) {
            self.users.remove(user_name);
        }
    }

    // === Evaluation. ===

    /// Whether `principal` may use `permission` in `scope` at `now` (unix
    /// seconds), and why. Checked in order: an inactive user is denied, then a
    /// permission outside the catalog, then the principal's assignments and
    /// (for a user) its groups' are searched, direct ones first.
    pub fn check(&self, principal: &Principal, permission: &str, scope: &Scope, now: i64) -> Decision<'_> {
        let Some(sources) = self.grant_sources(principal) else {
            return Decision::Denied(Denial::InactiveUser);
        };
        let Some(&permission) = self.permission_ids.get(permission) else {
            return Decision::Denied(Denial::UnknownPermission);
        };
        let scope = self.lookup_scope(scope);

        let mut last_expired: Option<(&GrantEntry, Option<GroupId>)> = None;
        for (grants, group) in sources {
            for entry in grants.applying_in(scope) {
                if !self.role_permissions.contains(entry.role, permission) {
                    continue;
                }
                if entry.in_force(now) {
                    // A missing slot would be a broken invariant: fail closed.
                    if let Some(grant) = self.explain(entry, group) {
                        return Decision::Allowed(grant);
                    }
                } else if last_expired.is_none_or(|(last, _)| last.expires_at < entry.expires_at) {
                    last_expired = Some((entry, group));
                }
            }
        }
        match last_expired.and_then(|(entry, group)| self.explain(entry, group)) {
            Some(grant) => Decision::Denied(Denial::OnlyExpiredAssignments(grant)),
            None => Decision::Denied(Denial::NoMatchingAssignment),
        }
    }

    /// The catalog permissions `principal` holds in `scope` at `now` (unix
    /// seconds), sorted. Empty for an inactive user.
    pub fn effective_permissions(&self, principal: &Principal, scope: &Scope, now: i64) -> Vec<&str> {
        let Some(sources) = self.grant_sources(principal) else { return Vec::new() };
        let scope = self.lookup_scope(scope);
        let mut held = vec![0u64; self.role_permissions.words_per_row];
        for (grants, _) in sources {
            for entry in grants.applying_in(scope).filter(|entry| entry.in_force(now)) {
                for (held, bits) in held.iter_mut().zip(self.role_permissions.row(entry.role)) {
                    *held |= bits;
                }
            }
        }
        iter_bits(&held).filter_map(|id| self.permission_names.get(id).map(String::as_str)).collect()
    }

    /// The assignment lists that apply to `principal`, with the group each
    /// came through; `None` if the principal is an inactive user.
    fn grant_sources(
        &self,
        principal: &Principal,
    ) -> Option<impl Iterator<Item = (&Grants, Option<GroupId>)> + '_> {
        let name = principal.name.as_str();
        let (direct, groups): (Option<&Grants>, &[GroupId]) = match principal.kind {
            PrincipalKind::User => match self.users.get(name) {
                Some(UserEntry { active: Some(false), .. }) => return None,
                Some(user) => (Some(&user.grants), &user.groups),
                None => (None, &[]),
            },
            PrincipalKind::Group => {
                (self.group_ids.get(name).and_then(|&g| self.groups.get(g)).map(|g| &g.grants), &[])
            }
            PrincipalKind::Client => (self.clients.get(name), &[]),
        };
        let through_groups = groups
            .iter()
            .filter_map(|&group| self.groups.get(group).map(|entry| (&entry.grants, Some(group))));
        Some(direct.map(|grants| (grants, None)).into_iter().chain(through_groups))
    }

    /// A workspace no assignment names has no grants of its own, so it is
    /// answered like the organization: only organization-wide grants apply.
    fn lookup_scope(&self, scope: &Scope) -> ScopeId {
        match scope {
            Scope::Organization => ORGANIZATION,
            Scope::Workspace(name) => self.workspace_ids.get(name).copied().unwrap_or(ORGANIZATION),
        }
    }

    fn explain(&self, entry: &GrantEntry, group: Option<GroupId>) -> Option<Grant<'_>> {
        let assignment = self.assignments.get(entry.assignment)?;
        let group = match group {
            Some(group) => Some(self.groups.get(group)?.name.as_str()),
            None => None,
        };
        Some(Grant {
            assignment: &assignment.id,
            role: &assignment.role,
            group,
            scope: &assignment.scope,
            expires_at: assignment.expires_at,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Organization => f.write_str("the organization"),
            Scope::Workspace(name) => write!(f, "workspace {name}"),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.name)
    }
}

/// One assignment as seen from its principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GrantEntry {
    scope: ScopeId,
    role: RoleId,
    assignment: AssignmentSlot,
    /// [`NEVER`] for an assignment without expiry.
    expires_at: i64,
}

impl GrantEntry {
    fn in_force(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// A principal's assignments, sorted by scope: the organization-wide ones
/// first, then each workspace's as a contiguous run.
#[derive(Debug, Default)]
struct Grants(Vec<GrantEntry>);

impl Grants {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn insert(&mut self, entry: GrantEntry) {
        let at = self.0.partition_point(|g| g.scope <= entry.scope);
        self.0.insert(at, entry);
    }

    fn remove(&mut self, slot: AssignmentSlot) {
        self.0.retain(|g| g.assignment != slot);
    }

    /// The organization-wide entries, then those of `scope` if it is a
    /// workspace. A principal has few entries: one pass that stops past
    /// `scope` is cheaper than binary searches.
    fn applying_in(&self, scope: ScopeId) -> impl Iterator<Item = &GrantEntry> {
        self.0
            .iter()
            .take_while(move |g| g.scope <= scope)
            .filter(move |g| g.scope == ORGANIZATION || g.scope == scope)
    }
}

/// One fixed-width row of bits per role, in one allocation.
#[derive(Debug, Default)]
struct PermissionMatrix {
    words_per_row: usize,
    bits: Vec<u64>,
}

impl PermissionMatrix {
    fn new(rows: usize, permissions: usize) -> Self {
        let words_per_row = permissions.div_ceil(64);
        Self { words_per_row, bits: vec![0; rows * words_per_row] }
    }

    fn push_empty_row(&mut self) {
        self.bits.resize(self.bits.len() + self.words_per_row, 0);
    }

    fn insert(&mut self, row: RoleId, permission: PermissionId) {
        if let Some(word) = self.bits.get_mut(row * self.words_per_row + permission / 64) {
            *word |= 1 << (permission % 64);
        }
    }

    fn contains(&self, row: RoleId, permission: PermissionId) -> bool {
        self.bits
            .get(row * self.words_per_row + permission / 64)
            .is_some_and(|word| word & (1 << (permission % 64)) != 0)
    }

    fn row(&self, row: RoleId) -> &[u64] {
        let start = row * self.words_per_row;
        self.bits.get(start..start + self.words_per_row).unwrap_or_default()
    }
}

fn iter_bits(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(i, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(i * 64 + bit)
        })
    })
}

fn intern(ids: &mut HashMap<String, usize>, names: &mut Vec<String>, name: &str) -> usize {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    names.push(name.to_owned());
    ids.insert(name.to_owned(), names.len() - 1);
    names.len() - 1
}

/// A vector whose keys stay valid until removed; freed keys are reused.
#[derive(Debug)]
struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take()?;
        self.free.push(key);
        Some(value)
    }

    fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reference;
