//! The index against a deliberately naive reference: random tenants are built
//! by random sequences of updates, mirrored into plain maps, and every answer
//! of the index is compared with one computed straight from the rules
//! (recursion with a visited set, no precomputation, no incremental state).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::*;

const PERMISSIONS: &[&str] = &["a.x", "a.y", "a.x.y", "ab.x", "b.x", "b.y", "c.z"];
/// Wildcards, a bare domain and permissions outside any catalog.
const OTHER_GRANTS: &[&str] = &["a.*", "ab.*", "b.*", "c.*", "*", "a", "d.x", "b.x.*"];
/// `r5` is never defined: assignments and inclusions may name a missing role.
const ROLES: &[&str] = &["r0", "r1", "r2", "r3", "r4", "r5"];
const DEFINED_ROLES: &[&str] = &["r0", "r1", "r2", "r3", "r4"];
/// Shared by every kind, so a user, a group and a client can have one name.
const NAMES: &[&str] = &["p0", "p1", "p2"];
const WORKSPACES: &[&str] = &["w0", "w1", "w2"];
const KINDS: [PrincipalKind; 3] = [PrincipalKind::User, PrincipalKind::Group, PrincipalKind::Client];
const HORIZON: i64 = 20;
const ASSIGNMENT_IDS: u8 = 12;

/// The tenant as plain facts, updated by the same operations as the index.
#[derive(Debug, Default)]
struct Tenant {
    catalog: BTreeSet<String>,
    approval_required: BTreeSet<String>,
    roles: BTreeMap<String, RoleDefinition>,
    assignments: BTreeMap<String, Assignment>,
    users: BTreeMap<String, bool>,
    members: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug)]
enum Update {
    SetCatalog(Vec<String>),
    SetApprovalRequired(Vec<String>),
    ApplyRole(String, RoleDefinition),
    DeleteRole(String),
    ResetRoles(Vec<(String, RoleDefinition)>),
    ApplyAssignment(Assignment),
    DeleteAssignment(String),
    ResetAssignments(Vec<Assignment>),
    ApplyUser(String, bool),
    DeleteUser(String),
    SetGroupMembers(String, Vec<String>),
    AddMember(String, String),
    RemoveMember(String, String),
    DeleteGroup(String),
}

impl Update {
    fn apply_to_index(self, index: &mut AccessIndex) {
        match self {
            Update::SetCatalog(permissions) => index.set_catalog(permissions),
            Update::SetApprovalRequired(permissions) => index.set_approval_required(permissions),
            Update::ApplyRole(name, role) => index.apply_role(&name, role),
            Update::DeleteRole(name) => index.delete_role(&name),
            Update::ResetRoles(roles) => index.reset_roles(roles),
            Update::ApplyAssignment(assignment) => index.apply_assignment(assignment),
            Update::DeleteAssignment(id) => index.delete_assignment(&id),
            Update::ResetAssignments(assignments) => index.reset_assignments(assignments),
            Update::ApplyUser(name, active) => index.apply_user(&name, active),
            Update::DeleteUser(name) => index.delete_user(&name),
            Update::SetGroupMembers(group, members) => index.set_group_members(&group, members),
            Update::AddMember(group, user) => index.add_member(&group, &user),
            Update::RemoveMember(group, user) => index.remove_member(&group, &user),
            Update::DeleteGroup(group) => index.delete_group(&group),
        }
    }

    fn apply_to_tenant(self, tenant: &mut Tenant) {
        match self {
            Update::SetCatalog(permissions) => tenant.catalog = permissions.into_iter().collect(),
            Update::SetApprovalRequired(permissions) => {
                tenant.approval_required = permissions.into_iter().collect()
            }
            Update::ApplyRole(name, role) => {
                tenant.roles.insert(name, role);
            }
            Update::DeleteRole(name) => {
                tenant.roles.remove(&name);
            }
            Update::ResetRoles(roles) => tenant.roles = roles.into_iter().collect(),
            Update::ApplyAssignment(assignment) => {
                tenant.assignments.insert(assignment.id.clone(), assignment);
            }
            Update::DeleteAssignment(id) => {
                tenant.assignments.remove(&id);
            }
            Update::ResetAssignments(assignments) => {
                tenant.assignments = assignments.into_iter().map(|a| (a.id.clone(), a)).collect();
            }
            Update::ApplyUser(name, active) => {
                tenant.users.insert(name, active);
            }
            Update::DeleteUser(name) => {
                tenant.users.remove(&name);
                for members in tenant.members.values_mut() {
                    members.remove(&name);
                }
            }
            Update::SetGroupMembers(group, members) => {
                tenant.members.insert(group, members.into_iter().collect());
            }
            Update::AddMember(group, user) => {
                tenant.members.entry(group).or_default().insert(user);
            }
            Update::RemoveMember(group, user) => {
                tenant.members.entry(group).or_default().remove(&user);
            }
            Update::DeleteGroup(group) => {
                tenant.members.remove(&group);
            }
        }
    }
}

// === The reference evaluator: the rules, read literally. ===

fn naive_grant_matches(grant: &str, permission: &str) -> bool {
    match grant.strip_suffix('*') {
        Some("") => true,
        Some(domain_and_dot) if domain_and_dot.ends_with('.') => permission.starts_with(domain_and_dot),
        _ => grant == permission,
    }
}

fn naive_role_gives(tenant: &Tenant, role: &str, permission: &str, visited: &mut BTreeSet<String>) -> bool {
    if !visited.insert(role.to_owned()) {
        return false;
    }
    let Some(definition) = tenant.roles.get(role) else { return false };
    let own = tenant.catalog.contains(permission)
        && definition.grants.iter().any(|grant| naive_grant_matches(grant, permission));
    own || definition
        .included_roles
        .iter()
        .any(|included| naive_role_gives(tenant, included, permission, visited))
}

/// Whether the assignment's role reaches the permission, approval or not.
fn naive_role_reaches(tenant: &Tenant, assignment: &Assignment, permission: &str) -> bool {
    naive_role_gives(tenant, &assignment.role, permission, &mut BTreeSet::new())
}

/// An approval-required permission comes only from an approved request's grant.
fn naive_withheld(tenant: &Tenant, assignment: &Assignment, permission: &str) -> bool {
    !assignment.approved_request && tenant.approval_required.contains(permission)
}

fn naive_assignment_gives(tenant: &Tenant, assignment: &Assignment, permission: &str) -> bool {
    naive_role_reaches(tenant, assignment, permission) && !naive_withheld(tenant, assignment, permission)
}

fn naive_applies_in(assignment: &Assignment, scope: &Scope) -> bool {
    assignment.scope == Scope::Organization || &assignment.scope == scope
}

fn naive_in_force(assignment: &Assignment, now: i64) -> bool {
    assignment.expires_at.is_none_or(|at| now < at)
}

fn naive_is_inactive(tenant: &Tenant, principal: &Principal) -> bool {
    principal.kind == PrincipalKind::User && tenant.users.get(&principal.name) == Some(&false)
}

/// The group an assignment reaches `principal` through: `Some(None)` if it
/// names the principal, `Some(Some(group))` through a group, `None` if neither.
fn naive_reaches<'t>(
    tenant: &'t Tenant,
    assignment: &'t Assignment,
    principal: &Principal,
) -> Option<Option<&'t str>> {
    if &assignment.principal == principal {
        return Some(None);
    }
    let group = &assignment.principal.name;
    let member = principal.kind == PrincipalKind::User
        && assignment.principal.kind == PrincipalKind::Group
        && tenant.members.get(group).is_some_and(|members| members.contains(&principal.name));
    member.then_some(Some(group.as_str()))
}

/// The assignments that would give `permission` to `principal` in `scope`,
/// ignoring expiry.
fn naive_candidates<'t>(
    tenant: &'t Tenant,
    principal: &Principal,
    permission: &str,
    scope: &Scope,
) -> Vec<&'t Assignment> {
    tenant
        .assignments
        .values()
        .filter(|a| naive_reaches(tenant, a, principal).is_some())
        .filter(|a| naive_applies_in(a, scope))
        .filter(|a| naive_assignment_gives(tenant, a, permission))
        .collect()
}

/// The standing assignments in force whose role would give the
/// approval-required `permission` were it not withheld.
fn naive_withheld_in_force<'t>(
    tenant: &'t Tenant,
    principal: &Principal,
    permission: &str,
    scope: &Scope,
    now: i64,
) -> Vec<&'t Assignment> {
    tenant
        .assignments
        .values()
        .filter(|a| naive_reaches(tenant, a, principal).is_some())
        .filter(|a| naive_applies_in(a, scope) && naive_in_force(a, now))
        .filter(|a| tenant.catalog.contains(permission) && naive_role_reaches(tenant, a, permission))
        .filter(|a| naive_withheld(tenant, a, permission))
        .collect()
}

/// The (assignment, role, scope) a token's `roles` claim lists: every
/// assignment in force reaching the principal, but a standing one whose
/// role's catalog permissions are all approval-required (and not none).
fn naive_assigned_roles<'t>(tenant: &'t Tenant, principal: &Principal, now: i64) -> Vec<&'t Assignment> {
    if naive_is_inactive(tenant, principal) {
        return Vec::new();
    }
    tenant
        .assignments
        .values()
        .filter(|a| naive_reaches(tenant, a, principal).is_some() && naive_in_force(a, now))
        .filter(|a| {
            let reached: Vec<&String> =
                tenant.catalog.iter().filter(|p| naive_role_reaches(tenant, a, p)).collect();
            reached.is_empty() || reached.iter().any(|p| !naive_withheld(tenant, a, p))
        })
        .collect()
}

fn naive_effective_permissions(
    tenant: &Tenant,
    principal: &Principal,
    scope: &Scope,
    now: i64,
) -> Vec<String> {
    if naive_is_inactive(tenant, principal) {
        return Vec::new();
    }
    tenant
        .catalog
        .iter()
        .filter(|permission| {
            naive_candidates(tenant, principal, permission, scope).iter().any(|a| naive_in_force(a, now))
        })
        .cloned()
        .collect()
}

/// Asserts that `grant` is what `assignment` gives `principal`.
fn assert_grant_describes(
    tenant: &Tenant,
    grant: &Grant<'_>,
    principal: &Principal,
) -> Result<(), TestCaseError> {
    let assignment = tenant.assignments.get(grant.assignment());
    let assignment =
        assignment.ok_or_else(|| TestCaseError::fail(format!("no assignment {}", grant.assignment())))?;
    prop_assert_eq!(grant.role(), assignment.role.as_str());
    prop_assert_eq!(grant.scope(), &assignment.scope);
    prop_assert_eq!(grant.expires_at(), assignment.expires_at);
    prop_assert_eq!(naive_reaches(tenant, assignment, principal), Some(grant.group()));
    Ok(())
}

fn assert_check_agrees(
    tenant: &Tenant,
    index: &AccessIndex,
    principal: &Principal,
    permission: &str,
    scope: &Scope,
    now: i64,
) -> Result<(), TestCaseError> {
    let decision = index.check(principal, permission, scope, now);
    let context = format!("check({principal}, {permission}, {scope}, now={now}) = {decision:?}");
    if naive_is_inactive(tenant, principal) {
        prop_assert_eq!(decision, Decision::Denied(Denial::InactiveUser), "{}", context);
        return Ok(());
    }
    if !tenant.catalog.contains(permission) {
        prop_assert_eq!(decision, Decision::Denied(Denial::UnknownPermission), "{}", context);
        return Ok(());
    }
    let candidates = naive_candidates(tenant, principal, permission, scope);
    let (in_force, expired): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|a| naive_in_force(a, now));
    match decision {
        Decision::Allowed(grant) => {
            prop_assert!(in_force.iter().any(|a| a.id == grant.assignment()), "{}", context);
            assert_grant_describes(tenant, &grant, principal)?;
        }
        Decision::Denied(Denial::OnlyExpiredAssignments(grant)) => {
            prop_assert!(in_force.is_empty(), "{}", context);
            prop_assert!(expired.iter().any(|a| a.id == grant.assignment()), "{}", context);
            let last = expired.iter().filter_map(|a| a.expires_at).max();
            prop_assert_eq!(grant.expires_at(), last, "{}", context);
            assert_grant_describes(tenant, &grant, principal)?;
        }
        Decision::Denied(Denial::ApprovalRequired(grant)) => {
            prop_assert!(in_force.is_empty() && expired.is_empty(), "{}", context);
            let withheld = naive_withheld_in_force(tenant, principal, permission, scope, now);
            prop_assert!(withheld.iter().any(|a| a.id == grant.assignment()), "{}", context);
            assert_grant_describes(tenant, &grant, principal)?;
        }
        Decision::Denied(Denial::NoMatchingAssignment) => {
            prop_assert!(in_force.is_empty() && expired.is_empty(), "{}", context);
            let withheld = naive_withheld_in_force(tenant, principal, permission, scope, now);
            prop_assert!(withheld.is_empty(), "{}", context);
        }
        Decision::Denied(_) => prop_assert!(false, "{}", context),
    }
    Ok(())
}

/// What an access review reads: every grant in force, and until when each
/// permission is held.
fn assert_listing_agrees(
    tenant: &Tenant,
    index: &AccessIndex,
    principal: &Principal,
    scope: &Scope,
    now: i64,
) -> Result<(), TestCaseError> {
    let context = format!("listing of {principal} in {scope} at {now}");
    let mut expected_held = Vec::new();
    for permission in &tenant.catalog {
        let in_force: Vec<&Assignment> = if naive_is_inactive(tenant, principal) {
            Vec::new()
        } else {
            naive_candidates(tenant, principal, permission, scope)
                .into_iter()
                .filter(|a| naive_in_force(a, now))
                .collect()
        };
        let grants = index.grants_for(principal, permission, scope, now);
        let mut got_ids: Vec<&str> = grants.iter().map(|g| g.assignment()).collect();
        let mut expected_ids: Vec<&str> = in_force.iter().map(|a| a.id.as_str()).collect();
        got_ids.sort_unstable();
        expected_ids.sort_unstable();
        prop_assert_eq!(got_ids, expected_ids, "grants_for {}: {}", permission, context);
        for grant in &grants {
            assert_grant_describes(tenant, grant, principal)?;
        }
        if !in_force.is_empty() {
            let until = if in_force.iter().any(|a| a.expires_at.is_none()) {
                None
            } else {
                in_force.iter().filter_map(|a| a.expires_at).max()
            };
            expected_held.push((permission.as_str(), until));
        }
    }
    let held: Vec<(&str, Option<i64>)> =
        index.held_permissions(principal, scope, now).iter().map(|h| (h.permission, h.until)).collect();
    prop_assert_eq!(held, expected_held, "{}", context);
    Ok(())
}

/// What a token's `roles` claim is built from.
fn assert_assigned_roles_agree(
    tenant: &Tenant,
    index: &AccessIndex,
    principal: &Principal,
    now: i64,
) -> Result<(), TestCaseError> {
    let grants = index.assigned_roles(principal, now);
    let mut got: Vec<&str> = grants.iter().map(|g| g.assignment()).collect();
    let mut expected: Vec<&str> =
        naive_assigned_roles(tenant, principal, now).iter().map(|a| a.id.as_str()).collect();
    got.sort_unstable();
    expected.sort_unstable();
    prop_assert_eq!(got, expected, "assigned_roles({}, now={})", principal, now);
    for grant in &grants {
        assert_grant_describes(tenant, grant, principal)?;
    }
    Ok(())
}

/// Whether some role reaches itself through inclusions.
fn naive_has_cycle(tenant: &Tenant) -> bool {
    fn reaches(tenant: &Tenant, from: &str, target: &str, visited: &mut BTreeSet<String>) -> bool {
        let Some(role) = tenant.roles.get(from) else { return false };
        role.included_roles.iter().any(|next| {
            next == target || (visited.insert(next.clone()) && reaches(tenant, next, target, visited))
        })
    }
    tenant.roles.keys().any(|role| reaches(tenant, role, role, &mut BTreeSet::new()))
}

// === Random tenants. ===

fn name() -> impl Strategy<Value = String> {
    select(NAMES).prop_map(str::to_owned)
}

fn principal() -> impl Strategy<Value = Principal> {
    (select(&KINDS[..]), name()).prop_map(|(kind, name)| Principal { kind, name })
}

fn scope() -> impl Strategy<Value = Scope> {
    let workspace = select(WORKSPACES).prop_map(|w| Scope::Workspace(w.to_owned()));
    prop_oneof![Just(Scope::Organization), workspace]
}

fn role_definition() -> impl Strategy<Value = RoleDefinition> {
    let grant = prop_oneof![select(PERMISSIONS), select(OTHER_GRANTS)].prop_map(str::to_owned);
    let included = select(ROLES).prop_map(str::to_owned);
    (prop::collection::vec(grant, 1..4), prop::collection::vec(included, 0..3))
        .prop_map(|(grants, included_roles)| RoleDefinition { grants, included_roles })
}

fn assignment() -> impl Strategy<Value = Assignment> {
    (0..ASSIGNMENT_IDS, principal(), select(ROLES), scope(), prop::option::of(0..HORIZON), any::<bool>())
        .prop_map(|(id, principal, role, scope, expires_at, approved_request)| Assignment {
            id: format!("ra{id}"),
            principal,
            role: role.to_owned(),
            scope,
            expires_at,
            approved_request,
        })
}

/// A populated tenant, then random changes to it.
fn tenant() -> impl Strategy<Value = Vec<Update>> {
    use prop::collection::vec;
    let catalog =
        (subsequence(PERMISSIONS, 3..=PERMISSIONS.len()), approval_required()).prop_map(|(p, a)| {
            vec![
                Update::SetCatalog(p.into_iter().map(str::to_owned).collect()),
                Update::SetApprovalRequired(a),
            ]
        });
    let roles = vec((defined_role(), role_definition()), 2..6)
        .prop_map(|roles| roles.into_iter().map(|(name, role)| Update::ApplyRole(name, role)).collect());
    let assignments =
        vec(assignment(), 2..12).prop_map(|a| a.into_iter().map(Update::ApplyAssignment).collect());
    let members = vec((name(), name()), 0..6)
        .prop_map(|m| m.into_iter().map(|(group, user)| Update::AddMember(group, user)).collect());
    let changes = vec(update(), 0..30);
    (catalog, roles, assignments, members, changes).prop_map(|(a, b, c, d, e)| [a, b, c, d, e].concat())
}

/// Some permissions of any catalog (possibly outside the current one).
fn approval_required() -> impl Strategy<Value = Vec<String>> {
    subsequence(PERMISSIONS, 0..=3).prop_map(|p| p.into_iter().map(str::to_owned).collect())
}

fn defined_role() -> impl Strategy<Value = String> {
    select(DEFINED_ROLES).prop_map(str::to_owned)
}

fn update() -> impl Strategy<Value = Update> {
    let role = defined_role;
    let members =
        || subsequence(NAMES, 0..=NAMES.len()).prop_map(|m| m.into_iter().map(str::to_owned).collect());
    prop_oneof![
        1 => subsequence(PERMISSIONS, 0..=PERMISSIONS.len())
            .prop_map(|p| Update::SetCatalog(p.into_iter().map(str::to_owned).collect())),
        1 => approval_required().prop_map(Update::SetApprovalRequired),
        5 => (role(), role_definition()).prop_map(|(name, role)| Update::ApplyRole(name, role)),
        1 => role().prop_map(Update::DeleteRole),
        1 => prop::collection::vec((role(), role_definition()), 0..5).prop_map(Update::ResetRoles),
        8 => assignment().prop_map(Update::ApplyAssignment),
        2 => (0..ASSIGNMENT_IDS).prop_map(|id| Update::DeleteAssignment(format!("ra{id}"))),
        1 => prop::collection::vec(assignment(), 0..6).prop_map(Update::ResetAssignments),
        3 => (name(), prop::bool::weighted(0.7)).prop_map(|(name, active)| Update::ApplyUser(name, active)),
        1 => name().prop_map(Update::DeleteUser),
        2 => (name(), members()).prop_map(|(group, members)| Update::SetGroupMembers(group, members)),
        3 => (name(), name()).prop_map(|(group, user)| Update::AddMember(group, user)),
        1 => (name(), name()).prop_map(|(group, user)| Update::RemoveMember(group, user)),
        1 => name().prop_map(Update::DeleteGroup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn index_agrees_with_the_naive_reference(updates in tenant(), now in 0..HORIZON) {
        let mut index = AccessIndex::new();
        let mut tenant = Tenant::default();
        for update in updates {
            update.clone().apply_to_index(&mut index);
            update.apply_to_tenant(&mut tenant);
        }

        prop_assert!(index.user_grants.accounts_for(index.users.values().map(|user| &user.grants)));
        prop_assert_eq!(!index.role_cycles().is_empty(), naive_has_cycle(&tenant));
        let scopes = [Scope::Organization, Scope::Workspace("w0".into()), Scope::Workspace("w1".into()),
            Scope::Workspace("w2".into()), Scope::Workspace("never-named".into())];
        let permissions = PERMISSIONS.iter().chain(["a.*", "d.x", "*"].iter());
        for kind in KINDS {
            for name in NAMES {
                let principal = Principal { kind, name: (*name).to_owned() };
                assert_assigned_roles_agree(&tenant, &index, &principal, now)?;
                for scope in &scopes {
                    let expected = naive_effective_permissions(&tenant, &principal, scope, now);
                    let got = index.effective_permissions(&principal, scope, now);
                    prop_assert_eq!(got, expected, "effective_permissions({}, {}, now={})", principal, scope, now);
                    assert_listing_agrees(&tenant, &index, &principal, scope, now)?;
                    for permission in permissions.clone() {
                        assert_check_agrees(&tenant, &index, &principal, permission, scope, now)?;
                    }
                }
            }
        }
    }
}
