//! One test per access rule, each on a tenant built from a few `mk_*` calls.

use super::*;

const NOW: i64 = 1_700_000_000;

fn mk_index(catalog: &[&str]) -> AccessIndex {
    let mut index = AccessIndex::new();
    index.set_catalog(catalog.iter().map(|p| p.to_string()));
    index
}

fn mk_role(grants: &[&str], includes: &[&str]) -> RoleDefinition {
    RoleDefinition {
        grants: grants.iter().map(|s| s.to_string()).collect(),
        included_roles: includes.iter().map(|s| s.to_string()).collect(),
    }
}

fn mk_assignment(id: &str, principal: Principal, role: &str, scope: Scope) -> Assignment {
    Assignment {
        id: id.to_owned(),
        principal,
        role: role.to_owned(),
        scope,
        expires_at: None,
        approved_request: false,
    }
}

fn workspace(name: &str) -> Scope {
    Scope::Workspace(name.to_owned())
}

fn granted<'a>(decision: Decision<'a>) -> Grant<'a> {
    match decision {
        Decision::Allowed(grant) => grant,
        Decision::Denied(denial) => panic!("expected allowed, got denied: {denial}"),
    }
}

fn denial(decision: Decision<'_>) -> Denial<'_> {
    match decision {
        Decision::Denied(denial) => denial,
        Decision::Allowed(grant) => panic!("expected denied, got allowed by {grant}"),
    }
}

#[test]
fn direct_assignment_grants_the_role_and_names_the_assignment() {
    let mut index = mk_index(&["journeys.edit", "journeys.publish"]);
    index.apply_role("editor", mk_role(&["journeys.edit"], &[]));
    index.apply_assignment(mk_assignment("ra-1", Principal::user("ada"), "editor", Scope::Organization));

    let grant = granted(index.check(&Principal::user("ada"), "journeys.edit", &Scope::Organization, NOW));
    assert_eq!(
        (grant.assignment(), grant.role(), grant.group(), grant.scope(), grant.expires_at()),
        ("ra-1", "editor", None, &Scope::Organization, None)
    );
    let denied = index.check(&Principal::user("ada"), "journeys.publish", &Scope::Organization, NOW);
    assert_eq!(denial(denied), Denial::NoMatchingAssignment);
    assert_eq!(
        index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW),
        ["journeys.edit"]
    );
}

#[test]
fn group_assignment_reaches_members_and_names_the_group() {
    let mut index = mk_index(&["data.export"]);
    index.apply_role("analyst", mk_role(&["data.export"], &[]));
    index.apply_assignment(mk_assignment(
        "ra-eng",
        Principal::group("Engineering"),
        "analyst",
        workspace("w1"),
    ));
    index.set_group_members("Engineering", ["ada".to_owned(), "bob".to_owned()]);

    let grant = granted(index.check(&Principal::user("bob"), "data.export", &workspace("w1"), NOW));
    assert_eq!((grant.assignment(), grant.group()), ("ra-eng", Some("Engineering")));
    // The group itself, asked about directly, holds its own assignment.
    let grant = granted(index.check(&Principal::group("Engineering"), "data.export", &workspace("w1"), NOW));
    assert_eq!(grant.group(), None);
    let outsider = index.check(&Principal::user("eve"), "data.export", &workspace("w1"), NOW);
    assert_eq!(denial(outsider), Denial::NoMatchingAssignment);
}

#[test]
fn direct_and_group_assignments_are_united() {
    let mut index = mk_index(&["a.read", "a.write", "b.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_role("writer", mk_role(&["a.write"], &[]));
    index.apply_assignment(mk_assignment("direct", Principal::user("ada"), "reader", Scope::Organization));
    index.apply_assignment(mk_assignment("via-ops", Principal::group("ops"), "writer", Scope::Organization));
    index.add_member("ops", "ada");

    let held = index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW);
    assert_eq!(held, ["a.read", "a.write"]);
}

#[test]
fn organization_grant_applies_in_every_workspace() {
    let mut index = mk_index(&["journeys.view"]);
    index.apply_role("viewer", mk_role(&["journeys.view"], &[]));
    index.apply_assignment(mk_assignment("org", Principal::user("ada"), "viewer", Scope::Organization));
    index.apply_assignment(mk_assignment("other", Principal::user("bob"), "viewer", workspace("w1")));

    for scope in [Scope::Organization, workspace("w1"), workspace("never-named")] {
        let grant = granted(index.check(&Principal::user("ada"), "journeys.view", &scope, NOW));
        assert_eq!(grant.scope(), &Scope::Organization, "in {scope}");
    }
}

#[test]
fn workspace_grant_applies_in_that_workspace_only() {
    let mut index = mk_index(&["journeys.publish"]);
    index.apply_role("publisher", mk_role(&["journeys.publish"], &[]));
    index.apply_assignment(mk_assignment("w1", Principal::user("ada"), "publisher", workspace("w1")));

    let grant = granted(index.check(&Principal::user("ada"), "journeys.publish", &workspace("w1"), NOW));
    assert_eq!(grant.scope(), &workspace("w1"));
    for scope in [Scope::Organization, workspace("w2")] {
        let denied = index.check(&Principal::user("ada"), "journeys.publish", &scope, NOW);
        assert_eq!(denial(denied), Denial::NoMatchingAssignment, "in {scope}");
    }
}

#[test]
fn included_roles_are_expanded() {
    let mut index = mk_index(&["a.one", "b.two", "c.three"]);
    index.apply_role("admin", mk_role(&["a.one"], &["editor"]));
    index.apply_role("editor", mk_role(&["b.two"], &["viewer"]));
    index.apply_role("viewer", mk_role(&["c.three"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "admin", Scope::Organization));

    let grant = granted(index.check(&Principal::user("ada"), "c.three", &Scope::Organization, NOW));
    assert_eq!(grant.role(), "admin", "the assigned role is reported, not the included one");
    let held = index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW);
    assert_eq!(held, ["a.one", "b.two", "c.three"]);

    // Changing an included role changes what the including role gives.
    index.apply_role("viewer", mk_role(&[], &[]));
    let denied = index.check(&Principal::user("ada"), "c.three", &Scope::Organization, NOW);
    assert_eq!(denial(denied), Denial::NoMatchingAssignment);
}

#[test]
fn wildcards_match_only_catalog_permissions() {
    let mut index = mk_index(&["journeys.edit", "journeysx.view"]);
    index.apply_role("journeys", mk_role(&["journeys.*"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "journeys", Scope::Organization));
    let ada = Principal::user("ada");

    assert!(index.check(&ada, "journeys.edit", &Scope::Organization, NOW).is_allowed());
    let other_domain = index.check(&ada, "journeysx.view", &Scope::Organization, NOW);
    assert_eq!(denial(other_domain), Denial::NoMatchingAssignment);
    // A wildcard is a grant, never a permission one can ask for.
    let asked_wildcard = index.check(&ada, "journeys.*", &Scope::Organization, NOW);
    assert_eq!(denial(asked_wildcard), Denial::UnknownPermission);
    let not_in_catalog = index.check(&ada, "journeys.publish", &Scope::Organization, NOW);
    assert_eq!(denial(not_in_catalog), Denial::UnknownPermission);

    // The wildcard covers a permission as soon as the catalog declares it.
    index.set_catalog(["journeys.edit", "journeys.publish", "journeysx.view"].map(String::from));
    assert!(index.check(&ada, "journeys.publish", &Scope::Organization, NOW).is_allowed());
}

#[test]
fn unknown_permission_grants_nothing() {
    let mut index = mk_index(&["billing.view"]);
    index.apply_role("owner", mk_role(&["*", "billing.refund"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "owner", Scope::Organization));

    let denied = index.check(&Principal::user("ada"), "billing.refund", &Scope::Organization, NOW);
    assert_eq!(denial(denied), Denial::UnknownPermission);
    assert_eq!(
        index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW),
        ["billing.view"]
    );
    assert_eq!(index.role_expansion().unmatched_grants, [("owner".to_owned(), "billing.refund".to_owned())]);
}

#[test]
fn inactive_user_gets_nothing_even_through_groups() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("direct", Principal::user("ada"), "reader", Scope::Organization));
    index.apply_assignment(mk_assignment("group", Principal::group("all"), "reader", Scope::Organization));
    index.add_member("all", "ada");
    index.add_member("all", "bob");
    index.apply_user("ada", false);
    index.apply_user("bob", false);

    for user in ["ada", "bob"] {
        let user = Principal::user(user);
        assert_eq!(denial(index.check(&user, "a.read", &Scope::Organization, NOW)), Denial::InactiveUser);
        assert!(index.effective_permissions(&user, &workspace("w1"), NOW).is_empty());
    }
    // The inactive check comes first, even for permissions nobody could have.
    let unknown = index.check(&Principal::user("ada"), "no.such", &Scope::Organization, NOW);
    assert_eq!(denial(unknown), Denial::InactiveUser);

    index.apply_user("bob", true);
    assert!(index.check(&Principal::user("bob"), "a.read", &Scope::Organization, NOW).is_allowed());
}

#[test]
fn expired_assignment_gives_nothing() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    let temporary = |id: &str, until| Assignment {
        expires_at: Some(until),
        ..mk_assignment(id, Principal::user("ada"), "reader", Scope::Organization)
    };
    index.apply_assignment(temporary("older", NOW - 100));
    index.apply_assignment(temporary("newer", NOW));
    let ada = Principal::user("ada");

    // Still in force one second before `expires_at`.
    assert_eq!(granted(index.check(&ada, "a.read", &Scope::Organization, NOW - 1)).assignment(), "newer");
    match denial(index.check(&ada, "a.read", &Scope::Organization, NOW)) {
        Denial::OnlyExpiredAssignments(last) => {
            assert_eq!((last.assignment(), last.expires_at()), ("newer", Some(NOW)))
        }
        other => panic!("expected only expired assignments, got {other}"),
    }
    assert!(index.effective_permissions(&ada, &Scope::Organization, NOW).is_empty());

    // A permanent grant next to the expired ones is what answers.
    index.apply_assignment(mk_assignment("permanent", ada.clone(), "reader", Scope::Organization));
    assert_eq!(granted(index.check(&ada, "a.read", &Scope::Organization, NOW)).assignment(), "permanent");
}

#[test]
fn role_cycle_is_reported_and_its_roles_still_grant() {
    let mut index = mk_index(&["a.one", "b.two"]);
    index.apply_role("x", mk_role(&["a.one"], &["y"]));
    index.apply_role("y", mk_role(&["b.two"], &["x"]));
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "x", Scope::Organization));

    assert_eq!(index.role_cycles(), [vec!["x".to_owned(), "y".to_owned(), "x".to_owned()]]);
    let held = index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW);
    assert_eq!(held, ["a.one", "b.two"]);

    index.apply_role("y", mk_role(&["b.two"], &[]));
    assert!(index.role_cycles().is_empty());
}

#[test]
fn unknown_user_with_direct_assignment_is_treated_as_active() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::user("new-hire"), "reader", Scope::Organization));

    assert!(index.check(&Principal::user("new-hire"), "a.read", &Scope::Organization, NOW).is_allowed());
    index.apply_user("new-hire", false);
    assert!(!index.check(&Principal::user("new-hire"), "a.read", &Scope::Organization, NOW).is_allowed());
    // Forgetting the user makes it unknown again, not inactive forever.
    index.delete_user("new-hire");
    assert!(index.check(&Principal::user("new-hire"), "a.read", &Scope::Organization, NOW).is_allowed());
}

#[test]
fn clients_get_their_assignments_but_no_groups() {
    let mut index = mk_index(&["a.read", "a.write"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_role("writer", mk_role(&["a.write"], &[]));
    index.apply_assignment(mk_assignment("ci", Principal::client("deployer"), "reader", Scope::Organization));
    index.apply_assignment(mk_assignment("group", Principal::group("ops"), "writer", Scope::Organization));
    // A user with the client's name is a different principal.
    index.add_member("ops", "deployer");

    let client = Principal::client("deployer");
    assert_eq!(index.effective_permissions(&client, &Scope::Organization, NOW), ["a.read"]);
    let user = Principal::user("deployer");
    assert_eq!(index.effective_permissions(&user, &Scope::Organization, NOW), ["a.write"]);
}

#[test]
fn deleting_or_moving_an_assignment_revokes_it() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "reader", Scope::Organization));
    index.apply_assignment(mk_assignment("ra", Principal::user("bob"), "reader", Scope::Organization));

    let ada = index.check(&Principal::user("ada"), "a.read", &Scope::Organization, NOW);
    assert_eq!(denial(ada), Denial::NoMatchingAssignment);
    assert!(index.check(&Principal::user("bob"), "a.read", &Scope::Organization, NOW).is_allowed());

    index.delete_assignment("ra");
    let bob = index.check(&Principal::user("bob"), "a.read", &Scope::Organization, NOW);
    assert_eq!(denial(bob), Denial::NoMatchingAssignment);
}

#[test]
fn assignment_of_a_missing_role_takes_effect_when_the_role_appears() {
    let mut index = mk_index(&["a.read"]);
    index.apply_assignment(mk_assignment("ra", Principal::user("ada"), "reader", Scope::Organization));
    let ada = Principal::user("ada");
    assert_eq!(denial(index.check(&ada, "a.read", &Scope::Organization, NOW)), Denial::NoMatchingAssignment);

    index.apply_role("reader", mk_role(&["a.read"], &[]));
    assert!(index.check(&ada, "a.read", &Scope::Organization, NOW).is_allowed());

    index.delete_role("reader");
    assert_eq!(denial(index.check(&ada, "a.read", &Scope::Organization, NOW)), Denial::NoMatchingAssignment);
}

#[test]
fn leaving_a_group_revokes_its_grants() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("ra", Principal::group("ops"), "reader", Scope::Organization));
    index.set_group_members("ops", ["ada", "bob", "cy"].map(String::from));
    let holds = |index: &AccessIndex, user: &str| {
        index.check(&Principal::user(user), "a.read", &Scope::Organization, NOW).is_allowed()
    };

    index.remove_member("ops", "ada");
    index.delete_user("bob");
    index.set_group_members("ops", ["cy", "dee"].map(String::from));
    assert_eq!(["ada", "bob", "cy", "dee"].map(|u| holds(&index, u)), [false, false, true, true]);

    index.delete_group("ops");
    assert!(!holds(&index, "cy"));
    // The assignment outlives the group's members, as for any principal not there yet.
    index.add_member("ops", "ada");
    assert!(holds(&index, "ada"));
}

#[test]
fn reset_replaces_every_role_or_assignment() {
    let mut index = mk_index(&["a.read", "a.write"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("old", Principal::user("ada"), "reader", Scope::Organization));

    index.reset_roles([("writer".to_owned(), mk_role(&["a.write"], &[]))]);
    index.reset_assignments([mk_assignment("new", Principal::user("bob"), "writer", Scope::Organization)]);

    assert!(index.effective_permissions(&Principal::user("ada"), &Scope::Organization, NOW).is_empty());
    assert_eq!(index.effective_permissions(&Principal::user("bob"), &Scope::Organization, NOW), ["a.write"]);
}

#[test]
fn decision_explains_itself() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_assignment(mk_assignment("ra-ops", Principal::group("ops"), "reader", workspace("w1")));
    index.add_member("ops", "ada");
    let ada = Principal::user("ada");

    let allowed = index.check(&ada, "a.read", &workspace("w1"), NOW);
    assert_eq!(
        allowed.to_string(),
        "allowed by assignment ra-ops of role reader in workspace w1 through group ops"
    );
    let Decision::Denied(denied) = index.check(&ada, "a.read", &Scope::Organization, NOW) else {
        panic!("organization scope must not see a workspace grant");
    };
    assert_eq!(denied.code(), "NoMatchingAssignment");
    assert_eq!(denied.to_string(), "no assignment grants it in this scope");
}

#[test]
fn group_assignment_changed_after_members_joined_reaches_them() {
    let mut index = mk_index(&["a.read"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.set_group_members("ops", ["ada", "bob"].map(String::from));
    let granted_by = |index: &AccessIndex, user: &str, scope: &Scope| match index.check(
        &Principal::user(user),
        "a.read",
        scope,
        NOW,
    ) {
        Decision::Allowed(grant) => Some((grant.assignment().to_owned(), grant.group().map(str::to_owned))),
        Decision::Denied(_) => None,
    };

    index.apply_assignment(mk_assignment("ra", Principal::group("ops"), "reader", workspace("w1")));
    assert_eq!(granted_by(&index, "bob", &workspace("w1")), Some(("ra".into(), Some("ops".into()))));
    // Moved to another workspace: every member follows.
    index.apply_assignment(mk_assignment("ra", Principal::group("ops"), "reader", workspace("w2")));
    assert_eq!(granted_by(&index, "bob", &workspace("w1")), None);
    assert_eq!(granted_by(&index, "ada", &workspace("w2")), Some(("ra".into(), Some("ops".into()))));
    // The user's own assignment is reported before its group's.
    index.apply_assignment(mk_assignment("own", Principal::user("ada"), "reader", Scope::Organization));
    assert_eq!(granted_by(&index, "ada", &workspace("w2")), Some(("own".into(), None)));
    index.delete_assignment("ra");
    assert_eq!(granted_by(&index, "bob", &workspace("w2")), None);
}

#[test]
fn long_lists_survive_growth_moves_and_compaction() {
    // Many users whose lists grow past several rooms, move and shrink, so
    // that the shared arena relocates and compacts them more than once.
    let mut index = mk_index(&["a.read", "a.write"]);
    index.apply_role("reader", mk_role(&["a.read"], &[]));
    index.apply_role("writer", mk_role(&["a.write"], &[]));
    let users: Vec<String> = (0..300).map(|u| format!("user-{u}")).collect();
    for (u, user) in users.iter().enumerate() {
        for w in 0..(u % 23) {
            let id = format!("ra-{u}-{w}");
            index.apply_assignment(mk_assignment(
                &id,
                Principal::user(user),
                "reader",
                workspace(&format!("w{w}")),
            ));
        }
        if u % 3 == 0 {
            index.add_member("writers", user);
        }
    }
    index.apply_assignment(mk_assignment(
        "ra-writers",
        Principal::group("writers"),
        "writer",
        Scope::Organization,
    ));
    // Shrink every other user's list to its first assignment.
    for (u, user) in users.iter().enumerate().filter(|(u, _)| u % 2 == 0) {
        for w in 1..(u % 23) {
            index.delete_assignment(&format!("ra-{u}-{w}"));
        }
        index.remove_member("writers", user);
    }
    assert!(index.user_grants.accounts_for(index.users.values().map(|user| &user.grants)));

    for (u, user) in users.iter().enumerate() {
        let ada = Principal::user(user);
        let kept = if u % 2 == 0 { (u % 23).min(1) } else { u % 23 };
        for w in 0..23 {
            let decision = index.check(&ada, "a.read", &workspace(&format!("w{w}")), NOW);
            if w < kept {
                assert_eq!(granted(decision).assignment(), format!("ra-{u}-{w}"), "{user} in w{w}");
            } else {
                assert_eq!(denial(decision), Denial::NoMatchingAssignment, "{user} in w{w}");
            }
        }
        let writes = index.check(&ada, "a.write", &Scope::Organization, NOW);
        if u % 3 == 0 && u % 2 == 1 {
            assert_eq!(granted(writes).group(), Some("writers"), "{user}");
        } else {
            assert!(!writes.is_allowed(), "{user}");
        }
    }
}

#[test]
fn user_and_group_names_match_without_regard_to_case_and_client_names_exactly() {
    let mut index = mk_index(&["data.export"]);
    index.apply_role("analyst", mk_role(&["data.export"], &[]));
    index.apply_assignment(mk_assignment(
        "ra-ada",
        Principal::user("Ada@Acme.com"),
        "analyst",
        Scope::Organization,
    ));
    index.apply_assignment(mk_assignment("ra-it", Principal::group("Acme IT"), "analyst", workspace("w1")));
    index.apply_assignment(mk_assignment("ra-ci", Principal::client("CI"), "analyst", Scope::Organization));
    index.add_member("ACME it", "BOB");

    let export = |index: &AccessIndex, who: Principal, scope: &Scope| {
        index.check(&who, "data.export", scope, NOW).is_allowed()
    };
    assert!(export(&index, Principal::user("ada@acme.com"), &Scope::Organization));
    assert!(export(&index, Principal::user("ADA@ACME.COM"), &Scope::Organization));
    assert!(export(&index, Principal::user("bob"), &workspace("w1")), "a member named in another case");
    let grant = granted(index.check(&Principal::user("Bob"), "data.export", &workspace("w1"), NOW));
    assert_eq!(grant.group(), Some("Acme IT"), "explained as the group was first named");
    assert!(export(&index, Principal::client("CI"), &Scope::Organization));
    assert!(!export(&index, Principal::client("ci"), &Scope::Organization), "client names are exact");

    index.apply_user("ADA@acme.com", false);
    assert!(
        !export(&index, Principal::user("ada@acme.com"), &Scope::Organization),
        "deactivated by any case"
    );
    index.remove_member("acme IT", "bob");
    assert!(!export(&index, Principal::user("bob"), &workspace("w1")));
}

#[test]
fn approval_required_permission_comes_only_from_an_approved_request() {
    let mut index = mk_index(&["compliance.view", "compliance.export-consent"]);
    index.set_approval_required(["compliance.export-consent".to_owned()]);
    index.apply_role("officer", mk_role(&["compliance.*"], &[]));
    index.apply_role("exporter", mk_role(&["compliance.export-consent"], &[]));
    let ada = Principal::user("ada");
    index.apply_assignment(mk_assignment(
        "standing",
        Principal::group("compliance"),
        "officer",
        Scope::Organization,
    ));
    index.apply_assignment(mk_assignment("exporter", ada.clone(), "exporter", Scope::Organization));
    index.add_member("compliance", "ada");

    // The role's other permission still comes with the standing assignment.
    assert_eq!(
        granted(index.check(&ada, "compliance.view", &Scope::Organization, NOW)).assignment(),
        "standing"
    );
    assert_eq!(index.effective_permissions(&ada, &Scope::Organization, NOW), ["compliance.view"]);
    match denial(index.check(&ada, "compliance.export-consent", &workspace("w1"), NOW)) {
        Denial::ApprovalRequired(grant) => {
            assert_eq!((grant.assignment(), grant.role()), ("exporter", "exporter"))
        }
        other => panic!("expected approval required, got {other}"),
    }
    assert!(index.grants_for(&ada, "compliance.export-consent", &Scope::Organization, NOW).is_empty());
    // `exporter` gives nothing but what is withheld: not a role the user holds.
    let roles: Vec<&str> = index.assigned_roles(&ada, NOW).iter().map(|g| g.role()).collect();
    assert_eq!(roles, ["officer"]);

    let request = Assignment {
        expires_at: Some(NOW + 60),
        approved_request: true,
        ..mk_assignment("access-request-1", ada.clone(), "officer", workspace("w1"))
    };
    index.apply_assignment(request);
    let grant = granted(index.check(&ada, "compliance.export-consent", &workspace("w1"), NOW));
    assert_eq!(grant.assignment(), "access-request-1");
    assert_eq!(
        index.effective_permissions(&ada, &workspace("w1"), NOW),
        ["compliance.export-consent", "compliance.view"]
    );
    let held = index.held_permissions(&ada, &workspace("w1"), NOW);
    assert_eq!(held[0].until, Some(NOW + 60), "held until the request's grant ends");
    // Not in the organization, which the request did not name.
    assert!(!index.check(&ada, "compliance.export-consent", &Scope::Organization, NOW).is_allowed());

    // Once it ends, the standing grants do not take over.
    match denial(index.check(&ada, "compliance.export-consent", &workspace("w1"), NOW + 60)) {
        Denial::OnlyExpiredAssignments(last) => assert_eq!(last.assignment(), "access-request-1"),
        other => panic!("expected only expired assignments, got {other}"),
    }

    // Lifting the requirement gives it back to the standing grants.
    index.set_approval_required([]);
    assert!(index.check(&ada, "compliance.export-consent", &Scope::Organization, NOW).is_allowed());
    index.set_approval_required(["compliance.export-consent".to_owned()]);
    assert!(!index.check(&ada, "compliance.export-consent", &Scope::Organization, NOW).is_allowed());
    // A catalog change renumbers permissions; the requirement follows the name.
    index.set_catalog(["a.first", "compliance.view", "compliance.export-consent"].map(String::from));
    assert!(!index.check(&ada, "compliance.export-consent", &Scope::Organization, NOW).is_allowed());
    assert!(index.check(&ada, "compliance.view", &Scope::Organization, NOW).is_allowed());
}
