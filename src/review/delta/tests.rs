//! The delta on small tenants written as YAML, one rule per test.

use std::path::Path;

use super::*;
use crate::manifests::{self, ManifestSet};
use crate::review::tenant::tenants_of;
use crate::store::{DirectoryGroup, DirectoryMember};

const NOW: i64 = 1_900_000_000;

const ORGANIZATION: &str = "
apiVersion: iam.portcullis.dev/v1alpha1
kind: Organization
metadata: {name: globex, namespace: globex}
spec:
  displayName: Globex
  workspaces: [{name: emea}, {name: us}]
  permissions:
    - {name: data.view}
    - {name: data.export}
    - {name: consent.export}
    - {name: iam.view}
    - {name: iam.manage, privileged: true}
  approvalRequired: [consent.export]
";

fn role(name: &str, scope: &str, permissions: &str, includes: &str) -> String {
    format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {{name: {name}, namespace: globex}}\n\
         spec:\n  scope: {scope}\n  permissions: [{permissions}]\n  includedRoles: [{includes}]\n"
    )
}

fn assignment(
    name: &str,
    kind: &str,
    principal: &str,
    role: &str,
    workspace: Option<&str>,
    expires: Option<&str>,
) -> String {
    let scope = match workspace {
        Some(w) => format!("  scope: Workspace\n  workspace: {w}\n"),
        None => "  scope: Organization\n".to_owned(),
    };
    let expires = expires.map(|e| format!("  expiresAt: \"{e}\"\n")).unwrap_or_default();
    format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {{name: {name}, namespace: globex}}\n\
         spec:\n  principal: {{kind: {kind}, name: \"{principal}\"}}\n  role: {role}\n{scope}{expires}"
    )
}

fn idp(mappings: &[(&str, &str, Option<&str>)]) -> String {
    let mut text = String::from(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: IdentityProvider\nmetadata: {name: sso, namespace: globex}\n\
         spec:\n  type: OIDC\n  oidc:\n    issuer: https://login.globex.example\n    clientId: p\n\
         \x20   clientSecretRef: {name: s, key: k}\n  groupMappings:\n",
    );
    for (group, role, workspace) in mappings {
        text.push_str(&format!("    - group: {group}\n      role: {role}\n"));
        if let Some(w) = workspace {
            text.push_str(&format!("      workspace: {w}\n"));
        }
    }
    text
}

fn side(documents: &[String]) -> BTreeMap<String, TenantAccess> {
    let mut set = ManifestSet::default();
    let text = std::iter::once(ORGANIZATION.to_owned())
        .chain(documents.iter().cloned())
        .collect::<Vec<_>>()
        .join("---\n");
    manifests::read_str(Path::new("t.yaml"), &text, &mut set);
    assert_eq!(set.problems, [], "the test's YAML reads");
    tenants_of(&set)
}

fn review(before: &[String], after: &[String]) -> OrganizationReview {
    let mut reviews = review_tenants(&side(before), &side(after), None, NOW);
    assert_eq!(reviews.len(), 1, "one organization changes: {reviews:#?}");
    reviews.remove(0)
}

/// `(principal, scope, permission, change)` of every change, in order.
fn changes(review: &OrganizationReview) -> Vec<(String, ScopeRef, String, ChangeKind)> {
    review
        .principals
        .iter()
        .flat_map(|p| {
            p.scopes.iter().flat_map(move |s| {
                s.permissions.iter().map(move |c| {
                    (p.principal.name.clone(), s.scope.clone(), c.permission.permission.clone(), c.change)
                })
            })
        })
        .collect()
}

fn ws(name: &str) -> ScopeRef {
    ScopeRef::Workspace(name.to_owned())
}

fn base_roles() -> Vec<String> {
    vec![
        role("viewer", "Workspace", "data.view", ""),
        role("auditor", "Organization", "iam.view", ""),
        role("admin", "Organization", "\"iam.*\"", ""),
    ]
}

#[test]
fn a_role_that_includes_an_admin_role_gives_its_holders_iam_manage_marked_privileged() {
    let mut before = base_roles();
    before.push(assignment("dan", "User", "Dan@Globex", "auditor", None, None));
    let mut after = before.clone();
    after[1] = role("auditor", "Organization", "iam.view", "admin");

    let review = review(&before, &after);
    assert_eq!(
        changes(&review),
        [("Dan@Globex".into(), ScopeRef::Organization, "iam.manage".into(), ChangeKind::Gained)]
    );
    let change = &review.principals[0].scopes[0].permissions[0];
    assert!(change.permission.privileged && !change.permission.approval_required);
    let cause = &change.causes[0];
    assert_eq!(
        (cause.role.as_str(), cause.through_roles.as_slice(), cause.grant.as_str()),
        ("auditor", &["admin".to_owned()][..], "iam.*")
    );
    assert!(matches!(&cause.source, GrantSource::RoleAssignment { name, line: 1.., .. } if name == "dan"));

    assert_eq!(review.roles.len(), 1);
    let role = &review.roles[0];
    assert_eq!((role.role.as_str(), role.change), ("auditor", RoleChangeKind::Changed));
    assert_eq!(role.gained.iter().map(|p| p.permission.as_str()).collect::<Vec<_>>(), ["iam.manage"]);
    assert_eq!(role.reaches.len(), 1);
    assert_eq!(role.reaches[0].principal.name, "Dan@Globex", "names as written, not case-folded");
    assert_eq!(review.summary.principals_gaining_privileged, 1);
}

#[test]
fn a_new_group_mapping_is_a_grant_to_the_group_from_the_identity_provider() {
    let before = [base_roles(), vec![idp(&[("Support", "viewer", Some("emea"))])]].concat();
    let after =
        [base_roles(), vec![idp(&[("Support", "viewer", Some("emea")), ("Finance", "auditor", None)])]]
            .concat();
    let review = review(&before, &after);
    assert_eq!(
        changes(&review),
        [("Finance".into(), ScopeRef::Organization, "iam.view".into(), ChangeKind::Gained)]
    );
    let cause = &review.principals[0].scopes[0].permissions[0].causes[0];
    assert!(
        matches!(&cause.source, GrantSource::GroupMapping { identity_provider, position: 1, group, .. } if identity_provider == "sso" && group == "Finance"),
        "{cause:?}"
    );
    assert_eq!(review.principals[0].principal.kind, PrincipalKind::Group);
}

#[test]
fn an_assignment_moved_to_the_organization_shows_once_at_the_organization() {
    let before =
        [base_roles(), vec![assignment("eve", "User", "eve", "auditor", Some("emea"), None)]].concat();
    let after = [base_roles(), vec![assignment("eve", "User", "eve", "auditor", None, None)]].concat();
    let review = review(&before, &after);
    // Held in emea on both sides: nothing there; in the organization (and so
    // every other workspace) it is new.
    assert_eq!(
        changes(&review),
        [("eve".into(), ScopeRef::Organization, "iam.view".into(), ChangeKind::Gained)]
    );
    let moved_back = self::review(&after, &before);
    assert_eq!(
        changes(&moved_back),
        [("eve".into(), ScopeRef::Organization, "iam.view".into(), ChangeKind::Lost)]
    );
}

#[test]
fn removing_an_expiry_extends_the_hold_and_reviving_an_expired_one_is_a_gain() {
    let future = assignment("carol", "User", "carol", "viewer", Some("us"), Some("2099-01-01T00:00:00Z"));
    let past = assignment("carol", "User", "carol", "viewer", Some("us"), Some("2001-01-01T00:00:00Z"));
    let forever = assignment("carol", "User", "carol", "viewer", Some("us"), None);

    let review =
        review(&[base_roles(), vec![future]].concat(), &[base_roles(), vec![forever.clone()]].concat());
    assert_eq!(changes(&review), [("carol".into(), ws("us"), "data.view".into(), ChangeKind::Extended)]);
    let change = &review.principals[0].scopes[0].permissions[0];
    assert_eq!(change.expires_before, Some("2099-01-01T00:00:00Z".parse().unwrap()));
    assert_eq!(change.expires_after, None);
    assert_eq!(review.summary.principals_gaining, 1);

    let revived = self::review(&[base_roles(), vec![past]].concat(), &[base_roles(), vec![forever]].concat());
    assert_eq!(changes(&revived), [("carol".into(), ws("us"), "data.view".into(), ChangeKind::Gained)]);
}

#[test]
fn a_deleted_role_loses_its_holders_what_it_gave_and_says_whom_it_reached() {
    let before = [base_roles(), vec![assignment("dan", "User", "dan", "auditor", None, None)]].concat();
    let after = vec![base_roles()[0].clone(), base_roles()[2].clone()];
    let review = review(&before, &after);
    assert_eq!(
        changes(&review),
        [("dan".into(), ScopeRef::Organization, "iam.view".into(), ChangeKind::Lost)]
    );
    let change = &review.principals[0].scopes[0].permissions[0];
    assert_eq!(change.causes[0].role, "auditor", "a loss is explained by the base side");
    let role = &review.roles[0];
    assert_eq!((role.role.as_str(), role.change), ("auditor", RoleChangeKind::Deleted));
    assert_eq!(role.reaches.iter().map(|r| r.principal.name.as_str()).collect::<Vec<_>>(), ["dan"]);
    assert_eq!(review.summary.principals_losing, 1);
}

#[test]
fn an_approval_required_permission_is_marked() {
    let before = [base_roles(), vec![assignment("x", "Client", "ci", "viewer", Some("us"), None)]].concat();
    let mut after = before.clone();
    after[0] = role("viewer", "Workspace", "data.view, consent.export", "");
    let review = review(&before, &after);
    let change = &review.principals[0].scopes[0].permissions[0];
    assert_eq!(change.permission.permission, "consent.export");
    assert!(change.permission.approval_required && !change.permission.privileged);
    assert_eq!(review.principals[0].principal.kind, PrincipalKind::Client);
    assert_eq!(review.summary.principals_gaining_approval_required, 1);
}

#[test]
fn with_the_store_members_of_a_group_gain_through_it_and_inactive_ones_are_apart() {
    let before = base_roles();
    let after = [base_roles(), vec![assignment("it", "Group", "Acme IT", "admin", None, None)]].concat();
    let directory = AccessDirectory {
        groups: vec![DirectoryGroup {
            display_name: "acme it".into(),
            members: vec![
                DirectoryMember { user_name: "Ann".into(), active: true },
                DirectoryMember { user_name: "bo".into(), active: false },
                DirectoryMember { user_name: "cy".into(), active: true },
            ],
        }],
        inactive_users: vec!["bo".into()],
    };
    let directories = BTreeMap::from([("globex".to_owned(), directory)]);
    let (mut b, mut a) = (side(&before), side(&after));
    for tenant in b.values_mut().chain(a.values_mut()) {
        tenant.expand_groups(&directories["globex"]);
    }
    let review = review_tenants(&b, &a, Some(&directories), NOW).remove(0);
    let principals: Vec<(&str, bool)> =
        review.principals.iter().map(|p| (p.principal.name.as_str(), p.inactive)).collect();
    assert_eq!(principals, [("Ann", false), ("bo", true), ("cy", false), ("Acme IT", false)]);
    let reach = &review.through_groups[0];
    assert_eq!((reach.group.as_str(), reach.change), ("Acme IT", ChangeKind::Gained));
    assert_eq!(
        (reach.users.as_slice(), reach.inactive_users.as_slice()),
        (&["Ann".to_owned(), "cy".to_owned()][..], &["bo".to_owned()][..])
    );
    assert_eq!(
        (
            reach.permissions[0].permission.permission.as_str(),
            reach.permissions[0].users,
            reach.permissions[0].inactive_users
        ),
        ("iam.manage", 2, 1)
    );
    assert_eq!(review.summary.inactive_users, 1);
    assert!(review.groups_not_in_store.is_empty());
}

#[test]
fn nothing_changes_when_only_a_comment_or_an_assignment_name_does() {
    let before = [base_roles(), vec![assignment("a", "User", "ann", "viewer", Some("us"), None)]].concat();
    let after =
        [base_roles(), vec![assignment("renamed", "User", "ann", "viewer", Some("us"), None)]].concat();
    assert!(review_tenants(&side(&before), &side(&after), None, NOW).is_empty());
}

#[test]
fn compare_orders_ends_with_no_end_last() {
    let held = |p: &'static str, until| HeldPermission { permission: p, until };
    let before = [held("a", Some(10)), held("b", None), held("c", Some(10)), held("d", Some(5))];
    let after = [held("a", None), held("b", Some(10)), held("c", Some(10)), held("e", None)];
    let kinds: Vec<(&str, ChangeKind)> =
        compare(&before, &after).iter().map(|d| (d.permission, d.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("a", ChangeKind::Extended),
            ("b", ChangeKind::Shortened),
            ("d", ChangeKind::Lost),
            ("e", ChangeKind::Gained)
        ]
    );
}

#[test]
fn unmarking_a_privileged_permission_is_a_catalog_change_that_fails_the_privileged_policy() {
    let unmarked = ORGANIZATION
        .replace("{name: iam.manage, privileged: true}", "{name: iam.manage}")
        .replace("approvalRequired: [consent.export]", "approvalRequired: []");
    let with_catalog = |organization: &str| {
        let mut set = ManifestSet::default();
        let text = [organization.to_owned(), base_roles().join("---\n")].join("---\n");
        manifests::read_str(Path::new("t.yaml"), &text, &mut set);
        tenants_of(&set)
    };
    let reviews = review_tenants(&with_catalog(ORGANIZATION), &with_catalog(&unmarked), None, NOW);
    let catalog: Vec<(&str, CatalogChangeKind)> =
        reviews[0].catalog.iter().map(|c| (c.permission.as_str(), c.change)).collect();
    assert_eq!(
        catalog,
        [
            ("consent.export", CatalogChangeKind::NoLongerRequiresApproval),
            ("iam.manage", CatalogChangeKind::NoLongerPrivileged)
        ]
    );
    assert!(reviews[0].principals.is_empty() && reviews[0].roles.is_empty(), "nobody's permissions change");
    let review = Review {
        base: "b".into(),
        head: "h".into(),
        groups_expanded: false,
        at: Timestamp::UNIX_EPOCH,
        organizations: reviews,
    };
    use crate::review::policy::{FailOn, failures};
    assert_eq!(
        failures(&review, FailOn::Privileged),
        ["globex: permission iam.manage is no longer marked privileged"]
    );
    assert_eq!(
        failures(&review, FailOn::Approval),
        ["globex: permission consent.export no longer requires approval"]
    );
    let marked_back = review_tenants(&with_catalog(&unmarked), &with_catalog(ORGANIZATION), None, NOW);
    let back = Review { organizations: marked_back, ..review };
    assert!(
        failures(&back, FailOn::Privileged).is_empty(),
        "marking it privileged again strengthens the guard"
    );
    assert_eq!(failures(&back, FailOn::Any).len(), 2);
}
