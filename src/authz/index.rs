//! The access index of one organization: permission catalog, roles,
//! assignments, group memberships and user status, updated one change at a
//! time, and the evaluation of [`AccessIndex::check`] and
//! [`AccessIndex::effective_permissions`] over it.
//!
//! Role and catalog changes re-expand every role (roles are few); assignment,
//! membership and user changes touch only the entries of the principal
//! concerned, and a group's assignment those of its members too. Checks look
//! up the principal, walk its own assignments, then those it has through its
//! groups, for the requested scope, and test one bit per assignment in the
//! precomputed permissions of the assigned role.
//!
//! ```text
//!   users["ada"] ──► UserEntry { active, span }
//!                                          │
//!                                          ▼
//!   user arena: [.. | own, by scope | through groups, by scope | ..]
//!                                          ▲ copied in on add_member and on a
//!                                          │ group's assignment, out on
//!   groups[g] ──► GroupEntry { grants, members }   remove_member and deletes
//! ```
//!
//! Each check names a different user, so what it reads is rarely in the
//! cache and every pointer it follows is a wait for memory: a user's groups'
//! assignments are therefore copied into the user's own list (one run of
//! 16-byte entries, not one per group; see [`grant_lists`] for the arena that
//! keeps all users' lists on few pages), a user name short enough is kept in
//! the user map's slot itself (no pointer to follow to compare it), and a
//! decision is explained only when asked (a [`Grant`] reads the assignment's
//! id and names then, from compact side tables).
//! Names are hashed with foldhash (seeded per process), not SipHash.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use compact_str::CompactString;

use super::decision::{Decision, Denial, Grant};
use super::role_graph::{self, RoleDefinition, RoleExpansion};
pub(super) use grant_lists::GrantEntry;
use grant_lists::{DIRECT, Grants, UserGrantArena, UserSpan, applying_in};

mod grant_lists;
mod listing;

pub use listing::HeldPermission;

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
    /// The user's userName, the group's display name or the client's name.
    /// The index compares user and group names without regard to case
    /// ([`name_key`]), client names exactly.
    pub name: String,
}

/// The key of a userName or group display name: compared without regard to
/// case (RFC 7643 §4.1.1, §4.2: `caseExact: false`). The index applies it to
/// every name it is given, so no caller has to; the store keys its unique
/// names by it too.
pub fn name_key(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

impl Principal {
    /// This principal named as the index keys it, for callers that compare
    /// principals across indexes (an access review) rather than ask one.
    pub fn keyed(&self) -> Principal {
        Principal { kind: self.kind, name: principal_key(self).into_owned() }
    }
}

/// The name a principal is keyed by: [`name_key`] for users and groups,
/// exact for clients.
fn principal_key(principal: &Principal) -> Cow<'_, str> {
    match principal.kind {
        PrincipalKind::Client => Cow::Borrowed(&principal.name),
        PrincipalKind::User | PrincipalKind::Group => name_key(&principal.name),
    }
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
    /// Whether it is the grant of an approved access request: only such an
    /// assignment gives the organization's approval-required permissions
    /// ([`AccessIndex::set_approval_required`]); a standing one gives the
    /// rest of its role.
    pub approved_request: bool,
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
    /// Permissions only an approved access request gives, and their bits
    /// (one row, as wide as the role rows) to mask standing grants with.
    approval_required: BTreeSet<String>,
    approval_required_bits: Vec<u64>,

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
    /// The workspace of each scope id from 1 on.
    workspaces: Vec<Scope>,

    assignments: Slab<Assignment>,
    /// The id of the assignment in each slot, what a decision reports, apart
    /// from the bulky records so that reading it is cheap.
    assignment_ids: Vec<Box<str>>,
    /// The expiry of the assignment in each slot, read only for entries that
    /// say their assignment has one.
    assignment_expiries: Vec<Option<i64>>,
    assignment_slots: HashMap<String, AssignmentSlot>,

    /// Small slots (what a check needs and a pointer to the entries), so
    /// the table stays in the cache as much as it can; names of up to 24
    /// bytes are stored in the slot.
    users: HashMap<CompactString, UserEntry>,
    user_grants: UserGrantArena,
    /// The groups of each user in any, in the order it joined them.
    user_groups: HashMap<Box<str>, Vec<GroupId>>,
    groups: Slab<GroupEntry>,
    group_ids: HashMap<String, GroupId>,
    clients: HashMap<String, Grants>,
}

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

type PermissionId = usize;
// Ids held in grant entries are u32, so that a user's entries take fewer
// cache lines; no index holds four billion of anything.
type RoleId = u32;
type ScopeId = u32;
type GroupId = u32;
type AssignmentSlot = u32;

const ORGANIZATION: ScopeId = 0;

#[derive(Debug, Default)]
struct UserEntry {
    /// `None` until the user is applied: treated as active.
    active: Option<bool>,
    /// Where its entries are in [`AccessIndex::user_grants`]: assignments
    /// naming the user, then those of every group it is in, each with its group.
    grants: UserSpan,
}

#[derive(Debug)]
struct GroupEntry {
    /// Its key ([`name_key`]).
    name: String,
    /// As first named, for explanations.
    display_name: String,
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

    /// Replaces the permissions only an approved access request gives
    /// (`Organization.spec.approvalRequired`): a standing assignment of a
    /// role that bundles one gives the role's other permissions, not it.
    pub fn set_approval_required(&mut self, permissions: impl IntoIterator<Item = String>) {
        let permissions: BTreeSet<String> = permissions.into_iter().collect();
        if permissions != self.approval_required {
            self.approval_required = permissions;
            self.mask_approval_required();
        }
    }

    /// The approval-required permissions, sorted.
    pub fn approval_required(&self) -> &BTreeSet<String> {
        &self.approval_required
    }

    fn mask_approval_required(&mut self) {
        let mut bits = vec![0u64; self.role_permissions.words_per_row];
        for permission in &self.approval_required {
            if let Some(&id) = self.permission_ids.get(permission) {
                bits[id / 64] |= 1 << (id % 64);
            }
        }
        self.approval_required_bits = bits;
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
        // Permission ids and the row width follow the catalog.
        self.mask_approval_required();
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
                if let Some(&scope) = self.workspace_ids.get(name) {
                    return scope;
                }
                self.workspaces.push(scope.clone());
                let scope = compact_id(self.workspaces.len());
                self.workspace_ids.insert(name.clone(), scope);
                scope
            }
        }
    }

    // === Assignments: O(assignments of the principal), and of each member
    // for a group's. ===

    /// Adds an assignment, or replaces the one with the same id.
    pub fn apply_assignment(&mut self, mut assignment: Assignment) {
        let display_name = match principal_key(&assignment.principal) {
            Cow::Borrowed(_) => None,
            Cow::Owned(key) => Some(std::mem::replace(&mut assignment.principal.name, key)),
        };
        let current = self.assignment_slots.get(&assignment.id).and_then(|&slot| self.assignments.get(slot));
        if current == Some(&assignment) {
            return;
        }
        self.delete_assignment(&assignment.id);

        let role = self.role_id(&assignment.role);
        let scope = self.scope_id(&assignment.scope);
        let id_in_decisions = Box::from(assignment.id.as_str());
        let expires_at = assignment.expires_at;
        let approved_request = assignment.approved_request;
        let id = assignment.id.clone();
        let principal = assignment.principal.clone();
        let slot = self.assignments.insert(assignment);
        self.assignment_slots.insert(id, slot);
        let at = slot as usize;
        if self.assignment_ids.len() <= at {
            self.assignment_ids.resize_with(at + 1, Default::default);
            self.assignment_expiries.resize(at + 1, None);
        }
        self.assignment_ids[at] = id_in_decisions;
        self.assignment_expiries[at] = expires_at;
        let entry = GrantEntry::new(scope, role, slot, expires_at.is_some(), approved_request);
        let name = principal.name;
        match principal.kind {
            PrincipalKind::User => {
                let user = self.users.entry(name.into()).or_default();
                self.user_grants.insert(&mut user.grants, entry);
            }
            PrincipalKind::Client => self.clients.entry(name).or_default().insert(entry),
            PrincipalKind::Group => {
                let group = self.group_id(&name, display_name.as_deref().unwrap_or(&name));
                let Some(group_entry) = self.groups.get_mut(group) else { return };
                for member in &group_entry.members {
                    if let Some(user) = self.users.get_mut(member.as_str()) {
                        self.user_grants.insert(&mut user.grants, entry.copy_through(group));
                    }
                }
                group_entry.grants.insert(entry);
            }
        }
        self.compact_user_grants_if_sparse();
    }

    pub fn delete_assignment(&mut self, id: &str) {
        let Some(slot) = self.assignment_slots.remove(id) else { return };
        let Some(assignment) = self.assignments.remove(slot) else { return };
        if let Some(id) = self.assignment_ids.get_mut(slot as usize) {
            *id = Box::default();
        }
        if let Some(expires_at) = self.assignment_expiries.get_mut(slot as usize) {
            *expires_at = None;
        }
        let name = assignment.principal.name.as_str();
        match assignment.principal.kind {
            PrincipalKind::User => {
                if let Some(user) = self.users.get_mut(name) {
                    self.user_grants.retain(&mut user.grants, |entry| entry.slot() != slot);
                    self.release_user_if_unused(name);
                }
            }
            PrincipalKind::Group => {
                if let Some(&group) = self.group_ids.get(name) {
                    if let Some(entry) = self.groups.get_mut(group) {
                        entry.grants.remove(slot);
                        for member in &entry.members {
                            if let Some(user) = self.users.get_mut(member.as_str()) {
                                self.user_grants.retain(&mut user.grants, |entry| entry.slot() != slot);
                            }
                        }
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
        self.compact_user_grants_if_sparse();
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

    // === Users and groups: O(1) and O(members changed × the group's assignments). ===

    /// Sets a user's status. An inactive user gets nothing, even through groups.
    pub fn apply_user(&mut self, user_name: &str, active: bool) {
        let user_name = name_key(user_name);
        let user_name = user_name.as_ref();
        match self.users.get_mut(user_name) {
            Some(user) => user.active = Some(active),
            None => {
                self.users.insert(user_name.into(), UserEntry { active: Some(active), ..Default::default() });
            }
        }
    }

    /// Forgets a user's status and takes it out of every group. Assignments
    /// naming it are kept, as for any principal that does not exist yet.
    pub fn delete_user(&mut self, user_name: &str) {
        let user_name = name_key(user_name);
        let user_name = user_name.as_ref();
        let Some(user) = self.users.get_mut(user_name) else { return };
        user.active = None;
        self.user_grants.retain(&mut user.grants, |entry| entry.group == DIRECT);
        for group in self.user_groups.remove(user_name).unwrap_or_default() {
            if let Some(entry) = self.groups.get_mut(group) {
                entry.members.remove(user_name);
            }
            self.release_group_if_unused(group);
        }
        self.release_user_if_unused(user_name);
        self.compact_user_grants_if_sparse();
    }

    /// Replaces a group's members (userNames).
    pub fn set_group_members(&mut self, group_name: &str, members: impl IntoIterator<Item = String>) {
        let display_name = group_name;
        let group_name = name_key(group_name);
        let group_name = group_name.as_ref();
        let wanted: HashSet<String> = members
            .into_iter()
            .map(|member| match name_key(&member) {
                Cow::Borrowed(_) => member,
                Cow::Owned(key) => key,
            })
            .collect();
        let group = self.group_id(group_name, display_name);
        let Some(entry) = self.groups.get_mut(group) else { return };
        let current = std::mem::take(&mut entry.members);
        for user in current.difference(&wanted) {
            self.unlink_member(group, user);
        }
        for user in wanted.difference(&current) {
            self.link_member(group, user);
        }
        if let Some(entry) = self.groups.get_mut(group) {
            entry.members = wanted;
        }
        self.release_group_if_unused(group);
        self.compact_user_grants_if_sparse();
    }

    pub fn add_member(&mut self, group_name: &str, user_name: &str) {
        let display_name = group_name;
        let (group_name, user_name) = (name_key(group_name), name_key(user_name));
        let (group_name, user_name) = (group_name.as_ref(), user_name.as_ref());
        let group = self.group_id(group_name, display_name);
        let Some(entry) = self.groups.get_mut(group) else { return };
        if entry.members.insert(user_name.to_owned()) {
            self.link_member(group, user_name);
        }
        self.compact_user_grants_if_sparse();
    }

    pub fn remove_member(&mut self, group_name: &str, user_name: &str) {
        let (group_name, user_name) = (name_key(group_name), name_key(user_name));
        let (group_name, user_name) = (group_name.as_ref(), user_name.as_ref());
        let Some(&group) = self.group_ids.get(group_name) else { return };
        if self.groups.get_mut(group).is_some_and(|entry| entry.members.remove(user_name)) {
            self.unlink_member(group, user_name);
        }
        self.release_group_if_unused(group);
        self.compact_user_grants_if_sparse();
    }

    /// Empties a group. Assignments naming it are kept, as for any principal
    /// that does not exist yet.
    pub fn delete_group(&mut self, group_name: &str) {
        let group_name = name_key(group_name);
        let group_name = group_name.as_ref();
        if self.group_ids.contains_key(group_name) {
            self.set_group_members(group_name, []);
        }
    }

    /// Gives a new member the group's assignments (the caller records the membership).
    fn link_member(&mut self, group: GroupId, user_name: &str) {
        let groups = match self.user_groups.get_mut(user_name) {
            Some(groups) => groups,
            None => self.user_groups.entry(user_name.into()).or_default(),
        };
        groups.push(group);
        let user = match self.users.get_mut(user_name) {
            Some(user) => user,
            None => self.users.entry(user_name.into()).or_default(),
        };
        if let Some(entry) = self.groups.get(group) {
            for grant in entry.grants.as_slice() {
                self.user_grants.insert(&mut user.grants, grant.copy_through(group));
            }
        }
    }

    fn unlink_member(&mut self, group: GroupId, user_name: &str) {
        if let Some(groups) = self.user_groups.get_mut(user_name) {
            groups.retain(|&g| g != group);
            if groups.is_empty() {
                self.user_groups.remove(user_name);
            }
        }
        if let Some(user) = self.users.get_mut(user_name) {
            self.user_grants.retain(&mut user.grants, |entry| entry.group != group);
            self.release_user_if_unused(user_name);
        }
    }

    /// The group keyed `name`, made if new; `display_name` is how it was named.
    fn group_id(&mut self, name: &str, display_name: &str) -> GroupId {
        if let Some(&group) = self.group_ids.get(name) {
            return group;
        }
        let group = self.groups.insert(GroupEntry {
            name: name.to_owned(),
            display_name: display_name.to_owned(),
            members: HashSet::default(),
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
        let in_use = |user: &UserEntry| user.active.is_some() || !user.grants.is_empty();
        if self.users.get(user_name).is_none_or(in_use) || self.user_groups.contains_key(user_name) {
            return;
        }
        if let Some(mut user) = self.users.remove(user_name) {
            self.user_grants.release(&mut user.grants);
        }
    }

    /// Closes the holes that moved and shrunk user lists left in the arena,
    /// once they are many. Called at the end of every change to a user list.
    fn compact_user_grants_if_sparse(&mut self) {
        if self.user_grants.is_sparse() {
            self.user_grants.compact(self.users.values_mut().map(|user| &mut user.grants));
        }
    }

    // === Evaluation. ===

    /// Whether `principal` may use `permission` in `scope` at `now` (unix
    /// seconds), and why. Checked in order: an inactive user is denied, then a
    /// permission outside the catalog, then the principal's assignments and
    /// (for a user) its groups' are searched, direct ones first. An
    /// approval-required permission is given only by an approved access
    /// request's assignment; a standing one that would give it is reported
    /// when nothing else explains the denial.
    pub fn check(&self, principal: &Principal, permission: &str, scope: &Scope, now: i64) -> Decision<'_> {
        let Some(sources) = self.grant_sources(principal) else {
            return Decision::Denied(Denial::InactiveUser);
        };
        let Some(&permission) = self.permission_ids.get(permission) else {
            return Decision::Denied(Denial::UnknownPermission);
        };
        let scope = self.lookup_scope(scope);
        let needs_approval = bit_is_set(&self.approval_required_bits, permission);

        let mut last_expired: Option<(&GrantEntry, i64)> = None;
        let mut withheld: Option<&GrantEntry> = None;
        for grants in sources {
            for entry in applying_in(grants, scope) {
                if !self.role_permissions.contains(entry.role, permission) {
                    continue;
                }
                let expiry = self.expiry(entry);
                if needs_approval && !entry.approved_request() {
                    if withheld.is_none() && expiry.is_none_or(|at| now < at) {
                        withheld = Some(entry);
                    }
                    continue;
                }
                match expiry {
                    Some(at) if now >= at => {
                        if last_expired.is_none_or(|(_, last)| last < at) {
                            last_expired = Some((entry, at));
                        }
                    }
                    _ => return Decision::Allowed(Grant { index: self, entry: *entry }),
                }
            }
        }
        match (last_expired, withheld) {
            (Some((entry, _)), _) => {
                Decision::Denied(Denial::OnlyExpiredAssignments(Grant { index: self, entry: *entry }))
            }
            (None, Some(entry)) => {
                Decision::Denied(Denial::ApprovalRequired(Grant { index: self, entry: *entry }))
            }
            (None, None) => Decision::Denied(Denial::NoMatchingAssignment),
        }
    }

    /// The catalog permissions `principal` holds in `scope` at `now` (unix
    /// seconds), sorted. Empty for an inactive user.
    pub fn effective_permissions(&self, principal: &Principal, scope: &Scope, now: i64) -> Vec<&str> {
        let Some(sources) = self.grant_sources(principal) else { return Vec::new() };
        let scope = self.lookup_scope(scope);
        let mut held = vec![0u64; self.role_permissions.words_per_row];
        for grants in sources {
            for entry in applying_in(grants, scope).filter(|entry| self.in_force(entry, now)) {
                for (held, bits) in held.iter_mut().zip(self.given_bits(entry)) {
                    *held |= bits;
                }
            }
        }
        iter_bits(&held).filter_map(|id| self.permission_names.get(id).map(String::as_str)).collect()
    }

    /// The assignments in force at `now` (unix seconds) that give `principal`
    /// a role, in every scope, its groups' included: what a token's `roles`
    /// claim lists. Empty for an inactive user. Its own first, then each
    /// group's in the order the user joined them. A standing assignment of a
    /// role whose permissions are all approval-required gives nothing, so it
    /// is left out; one of a role that gives more is listed (its
    /// approval-required permissions are still withheld).
    pub fn assigned_roles(&self, principal: &Principal, now: i64) -> Vec<Grant<'_>> {
        let Some([own, _]) = self.grant_sources(principal) else { return Vec::new() };
        let groups = match principal.kind {
            PrincipalKind::User => {
                self.user_groups.get(principal_key(principal).as_ref()).map_or(&[][..], Vec::as_slice)
            }
            PrincipalKind::Group | PrincipalKind::Client => &[],
        };
        let through_groups = groups.iter().filter_map(|&group| {
            let entries = self.groups.get(group)?.grants.as_slice();
            Some(entries.iter().map(move |entry| (entry, group)))
        });
        let entries = own.iter().map(|entry| (entry, entry.group)).chain(through_groups.flatten());
        entries
            .filter(|(entry, _)| self.in_force(entry, now) && !self.withholds_all(entry))
            .map(|(entry, group)| Grant { index: self, entry: entry.copy_through(group) })
            .collect()
    }

    /// The assignment lists that apply to `principal`, its own first; `None`
    /// if the principal is an inactive user.
    fn grant_sources(&self, principal: &Principal) -> Option<[&[GrantEntry]; 2]> {
        let name = principal_key(principal);
        let name = name.as_ref();
        let own = match principal.kind {
            PrincipalKind::User => match self.users.get(name) {
                Some(UserEntry { active: Some(false), .. }) => return None,
                Some(user) => return Some(self.user_grants.own_then_through_groups(&user.grants)),
                None => None,
            },
            PrincipalKind::Group => {
                self.group_ids.get(name).and_then(|&g| self.groups.get(g)).map(|g| &g.grants)
            }
            PrincipalKind::Client => self.clients.get(name),
        };
        Some([own.map_or(&[][..], Grants::as_slice), &[]])
    }

    /// A workspace no assignment names has no grants of its own, so it is
    /// answered like the organization: only organization-wide grants apply.
    fn lookup_scope(&self, scope: &Scope) -> ScopeId {
        match scope {
            Scope::Organization => ORGANIZATION,
            Scope::Workspace(name) => self.workspace_ids.get(name).copied().unwrap_or(ORGANIZATION),
        }
    }

    /// When the entry's assignment stops granting, if ever. Only an entry
    /// that has an expiry reads it from the side table.
    pub(super) fn expiry(&self, entry: &GrantEntry) -> Option<i64> {
        if !entry.may_expire() {
            return None;
        }
        self.assignment_expiries.get(entry.slot() as usize).copied().flatten()
    }

    fn in_force(&self, entry: &GrantEntry, now: i64) -> bool {
        self.expiry(entry).is_none_or(|at| now < at)
    }

    /// The permission bits the entry gives: its role's, less the
    /// approval-required ones unless it is an approved request's grant.
    fn given_bits(&self, entry: &GrantEntry) -> impl Iterator<Item = u64> + '_ {
        let row = self.role_permissions.row(entry.role);
        let withheld: &[u64] = if entry.approved_request() { &[] } else { &self.approval_required_bits };
        row.iter().enumerate().map(move |(i, bits)| bits & !withheld.get(i).copied().unwrap_or(0))
    }

    /// Whether the entry's role gives something and all of it is withheld.
    fn withholds_all(&self, entry: &GrantEntry) -> bool {
        let row = self.role_permissions.row(entry.role);
        !entry.approved_request()
            && row.iter().any(|&bits| bits != 0)
            && self.given_bits(entry).all(|b| b == 0)
    }

    /// Whether the entry gives `permission`, its role giving it: always,
    /// unless the permission is approval-required and the entry standing.
    pub(super) fn may_give(&self, entry: &GrantEntry, permission: PermissionId) -> bool {
        entry.approved_request() || !bit_is_set(&self.approval_required_bits, permission)
    }

    // What a [`Grant`] reports, read when asked. An entry's slot, role,
    // group and scope are those of an assignment the index holds (entries
    // leave with their assignment), so the fallbacks are never taken.

    pub(super) fn assignment_id(&self, entry: &GrantEntry) -> &str {
        self.assignment_ids.get(entry.slot() as usize).map_or("", |id| id)
    }

    pub(super) fn role_name(&self, entry: &GrantEntry) -> &str {
        self.role_names.get(entry.role as usize).map_or("", String::as_str)
    }

    pub(super) fn group_name(&self, entry: &GrantEntry) -> Option<&str> {
        match entry.group {
            DIRECT => None,
            group => self.groups.get(group).map(|g| g.display_name.as_str()),
        }
    }

    pub(super) fn scope_of(&self, entry: &GrantEntry) -> &Scope {
        match entry.scope {
            ORGANIZATION => &Scope::Organization,
            workspace => self.workspaces.get(workspace as usize - 1).unwrap_or(&Scope::Organization),
        }
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

    fn insert(&mut self, row: usize, permission: PermissionId) {
        if let Some(word) = self.bits.get_mut(row * self.words_per_row + permission / 64) {
            *word |= 1 << (permission % 64);
        }
    }

    fn contains(&self, row: RoleId, permission: PermissionId) -> bool {
        self.bits
            .get(row as usize * self.words_per_row + permission / 64)
            .is_some_and(|word| word & (1 << (permission % 64)) != 0)
    }

    fn row(&self, row: RoleId) -> &[u64] {
        let start = row as usize * self.words_per_row;
        self.bits.get(start..start + self.words_per_row).unwrap_or_default()
    }
}

fn bit_is_set(words: &[u64], bit: usize) -> bool {
    words.get(bit / 64).is_some_and(|word| word & (1 << (bit % 64)) != 0)
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

fn intern(ids: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    let id = compact_id(names.len());
    names.push(name.to_owned());
    ids.insert(name.to_owned(), id);
    id
}

/// An id as held in grant entries. Reaching 2^32 roles, workspaces, groups or
/// live assignments would take far more memory than an index is given.
fn compact_id(id: usize) -> u32 {
    u32::try_from(id).expect("fewer than 2^32 ids")
}

/// A vector whose keys stay valid until removed; freed keys are reused.
#[derive(Debug)]
struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(key) => {
                self.entries[key as usize] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                compact_id(self.entries.len() - 1)
            }
        }
    }

    fn remove(&mut self, key: u32) -> Option<T> {
        let value = self.entries.get_mut(key as usize)?.take()?;
        self.free.push(key);
        Some(value)
    }

    fn get(&self, key: u32) -> Option<&T> {
        self.entries.get(key as usize)?.as_ref()
    }

    fn get_mut(&mut self, key: u32) -> Option<&mut T> {
        self.entries.get_mut(key as usize)?.as_mut()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reference;
