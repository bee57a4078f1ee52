//! What a review found, as plain data: the access each principal gains and
//! loses per scope with what causes it, the roles whose expansion changed and
//! whom they reach, and (with the store) the users reached through groups.
//! Every output format renders this; `--output json` is its serde form.

use jiff::Timestamp;
use serde::Serialize;

use crate::authz;

/// The whole review of two sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Review {
    /// What the base side is (a folder, or a folder at a revision).
    pub base: String,
    /// What the head side is.
    pub head: String,
    /// Whether groups were expanded into their members from a store.
    pub groups_expanded: bool,
    /// When the review was made: expiries are judged at this instant.
    pub at: Timestamp,
    /// Only organizations in which something changes, by namespace.
    pub organizations: Vec<OrganizationReview>,
}

/// One organization (namespace) in which access changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrganizationReview {
    pub namespace: String,
    /// The Organization's name (head side, else base side).
    pub organization: Option<String>,
    pub summary: Summary,
    /// Permissions added to or removed from the catalog, or marked differently.
    pub catalog: Vec<CatalogChange>,
    /// Roles whose expansion changed (added and deleted ones included).
    pub roles: Vec<RoleChange>,
    /// Every principal whose effective permissions change, users reached
    /// through groups included when groups are expanded.
    pub principals: Vec<PrincipalChange>,
    /// For each group, scope and kind of change: the users it reaches
    /// (only when groups are expanded).
    pub through_groups: Vec<GroupReach>,
    /// Groups that assignments name but the store does not have: nobody is
    /// reached through them yet.
    pub groups_not_in_store: Vec<String>,
}

/// Counts a reader looks at first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Principals that gain a permission or hold one longer.
    pub principals_gaining: usize,
    /// Principals that lose a permission or hold one for less long.
    pub principals_losing: usize,
    /// Principals that gain (or hold longer) a privileged permission.
    pub principals_gaining_privileged: usize,
    /// Principals that gain (or hold longer) a permission that requires approval.
    pub principals_gaining_approval_required: usize,
    /// Of the principals counted above, inactive users (they would hold it once reactivated).
    pub inactive_users: usize,
    pub roles_changed: usize,
    pub catalog_changes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PrincipalRef {
    pub kind: PrincipalKind,
    /// As written in the manifests (or the store), not the case-folded key.
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    User,
    Group,
    Client,
}

impl From<authz::PrincipalKind> for PrincipalKind {
    fn from(kind: authz::PrincipalKind) -> Self {
        match kind {
            authz::PrincipalKind::User => PrincipalKind::User,
            authz::PrincipalKind::Group => PrincipalKind::Group,
            authz::PrincipalKind::Client => PrincipalKind::Client,
        }
    }
}

/// The organization, or one workspace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum ScopeRef {
    Organization,
    Workspace(String),
}

impl From<&authz::Scope> for ScopeRef {
    fn from(scope: &authz::Scope) -> Self {
        match scope {
            authz::Scope::Organization => ScopeRef::Organization,
            authz::Scope::Workspace(name) => ScopeRef::Workspace(name.clone()),
        }
    }
}

/// One principal's changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrincipalChange {
    pub principal: PrincipalRef,
    /// A user the store says is inactive: it holds nothing now, and would
    /// hold what is shown once reactivated.
    pub inactive: bool,
    /// The organization first, then workspaces. In a workspace, only what is
    /// not already shown for the organization (an organization-wide grant
    /// applies in every workspace).
    pub scopes: Vec<ScopeChange>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScopeChange {
    pub scope: ScopeRef,
    /// Sorted by permission.
    pub permissions: Vec<PermissionChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Not held before, held after.
    Gained,
    /// Held before, not after.
    Lost,
    /// Held on both sides, until later after (or no longer ending).
    Extended,
    /// Held on both sides, until earlier after (or now ending).
    Shortened,
}

impl ChangeKind {
    /// Whether this gives more access than before.
    pub fn widens(self) -> bool {
        matches!(self, ChangeKind::Gained | ChangeKind::Extended)
    }
}

/// A permission, and how the organization's catalog marks it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MarkedPermission {
    pub permission: String,
    /// Marked `privileged` in the catalog, or an `iam.` permission.
    pub privileged: bool,
    /// Listed in the organization's `approvalRequired`.
    pub approval_required: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PermissionChange {
    #[serde(flatten)]
    pub permission: MarkedPermission,
    pub change: ChangeKind,
    /// When the base side's hold ends (`null`: never, or not held).
    pub expires_before: Option<Timestamp>,
    /// When the head side's hold ends (`null`: never, or not held).
    pub expires_after: Option<Timestamp>,
    /// The assignments that give it: on the head side for a gain or an
    /// extension, on the base side for a loss or a shortening.
    pub causes: Vec<Cause>,
}

/// One assignment (or group mapping) giving a permission, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// The role assigned.
    pub role: String,
    /// The roles it includes down to the one whose grant covers the
    /// permission (empty when the assigned role's own grant does).
    pub through_roles: Vec<String>,
    /// The grant that covers the permission (`iam.manage`, `iam.*`, `*`).
    pub grant: String,
    /// The group whose membership brings it, when it is not the principal's own.
    pub group: Option<String>,
    /// Where the assignment applies.
    pub scope: ScopeRef,
    pub expires_at: Option<Timestamp>,
    pub source: GrantSource,
}

/// Where an assignment is declared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind")]
pub enum GrantSource {
    RoleAssignment {
        name: String,
        file: String,
        line: usize,
    },
    /// `groupMappings[position]` of an IdentityProvider (0-based).
    GroupMapping {
        identity_provider: String,
        position: usize,
        group: String,
        file: String,
        line: usize,
    },
}

/// A change to the organization's permission catalog. Marking a permission
/// no longer privileged (or no longer requiring approval) changes no one's
/// permissions, but weakens what guards them (MFA for privileged roles,
/// escalation warnings, approvals).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CatalogChange {
    pub permission: String,
    pub change: CatalogChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogChangeKind {
    Added,
    Removed,
    NowPrivileged,
    NoLongerPrivileged,
    NowRequiresApproval,
    NoLongerRequiresApproval,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleChangeKind {
    Added,
    Deleted,
    Changed,
}

/// A role whose expansion (the catalog permissions it gives) changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoleChange {
    pub role: String,
    pub change: RoleChangeKind,
    /// Where it is declared (head side, else base side).
    pub file: Option<String>,
    pub line: Option<usize>,
    pub gained: Vec<MarkedPermission>,
    pub lost: Vec<MarkedPermission>,
    /// Wildcards (`*`, `iam.*`, `journeys.*`) its own grants name now and did
    /// not before: they also cover permissions added to the catalog later.
    pub wildcards_added: Vec<String>,
    /// The assignments whose role is this one or includes it: on the head
    /// side, or the base side for a deleted role.
    pub reaches: Vec<Reach>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reach {
    pub principal: PrincipalRef,
    pub scope: ScopeRef,
    /// The role assigned (this one, or one including it).
    pub role: String,
    pub source: GrantSource,
    /// For a group, when groups are expanded: its members.
    pub members: Option<MemberCount>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberCount {
    pub active: usize,
    pub inactive: usize,
}

/// The users a group brings one kind of change to, in one scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReach {
    pub group: String,
    pub scope: ScopeRef,
    pub change: ChangeKind,
    /// Each permission with how many users it reaches through the group.
    pub permissions: Vec<ReachedPermission>,
    /// Active users reached, sorted.
    pub users: Vec<String>,
    /// Inactive users reached, sorted: shown apart.
    pub inactive_users: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReachedPermission {
    #[serde(flatten)]
    pub permission: MarkedPermission,
    pub users: usize,
    pub inactive_users: usize,
}
