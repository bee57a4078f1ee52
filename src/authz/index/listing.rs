//! What the index holds, listed, and every reason for an answer rather than
//! the first: the questions an access review asks (`portcullis diff`), which
//! compares two indexes principal by principal. Checks never use these;
//! they may allocate.

use std::collections::BTreeMap;

use super::grant_lists::applying_in;
use super::{AccessIndex, Assignment, ORGANIZATION, Principal, PrincipalKind, Scope, iter_bits};
use crate::authz::decision::Grant;
use crate::authz::role_graph::{self, RoleDefinition, RolePath};

/// A permission a principal holds in a scope, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldPermission<'a> {
    pub permission: &'a str,
    /// Unix seconds at which the last assignment giving it ends; `None` when
    /// one of them never does.
    pub until: Option<i64>,
}

impl AccessIndex {
    /// Every principal the index knows, sorted: users named by an assignment,
    /// given a status or in a group; groups with assignments or members;
    /// clients with assignments.
    pub fn principals(&self) -> Vec<Principal> {
        let users = self.users.keys().map(|name| Principal::user(name.as_str()));
        let groups = self.group_ids.keys().map(Principal::group);
        let clients = self.clients.keys().map(Principal::client);
        let mut principals: Vec<Principal> = users.chain(groups).chain(clients).collect();
        principals.sort();
        principals
    }

    /// The workspaces in which an assignment of `principal` (its groups'
    /// included) applies, in force or not, sorted. Elsewhere only its
    /// organization-wide assignments apply. Empty for an inactive user.
    pub fn workspaces_of(&self, principal: &Principal) -> Vec<&Scope> {
        let Some(sources) = self.grant_sources(principal) else { return Vec::new() };
        let mut scopes: Vec<&Scope> = sources
            .iter()
            .flat_map(|grants| grants.iter())
            .filter(|entry| entry.scope != ORGANIZATION)
            .map(|entry| self.scope_of(entry))
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The catalog permissions `principal` holds in `scope` at `now` (unix
    /// seconds), sorted, each with when its last assignment ends: the same
    /// permissions as [`effective_permissions`](Self::effective_permissions).
    pub fn held_permissions(
        &self,
        principal: &Principal,
        scope: &Scope,
        now: i64,
    ) -> Vec<HeldPermission<'_>> {
        let Some(sources) = self.grant_sources(principal) else { return Vec::new() };
        let scope = self.lookup_scope(scope);
        let mut forever = vec![0u64; self.role_permissions.words_per_row];
        let mut ends: BTreeMap<usize, i64> = BTreeMap::new();
        for grants in sources {
            for entry in applying_in(grants, scope).filter(|entry| self.in_force(entry, now)) {
                let given: Vec<u64> = self.given_bits(entry).collect();
                match self.expiry(entry) {
                    None => forever.iter_mut().zip(&given).for_each(|(held, bits)| *held |= bits),
                    Some(at) => {
                        for permission in iter_bits(&given) {
                            ends.entry(permission).and_modify(|end| *end = (*end).max(at)).or_insert(at);
                        }
                    }
                }
            }
        }
        let mut held: BTreeMap<usize, Option<i64>> = ends.into_iter().map(|(p, at)| (p, Some(at))).collect();
        held.extend(iter_bits(&forever).map(|p| (p, None)));
        held.into_iter()
            .filter_map(|(p, until)| {
                let permission = self.permission_names.get(p)?;
                Some(HeldPermission { permission, until })
            })
            .collect()
    }

    /// Every assignment in force at `now` that gives `principal` `permission`
    /// in `scope`: its own first, then those through its groups. Where
    /// [`check`](Self::check) names one, this names them all. Empty for an
    /// inactive user or a permission outside the catalog; for an
    /// approval-required permission, only approved requests' grants.
    pub fn grants_for(
        &self,
        principal: &Principal,
        permission: &str,
        scope: &Scope,
        now: i64,
    ) -> Vec<Grant<'_>> {
        let Some(sources) = self.grant_sources(principal) else { return Vec::new() };
        let Some(&permission) = self.permission_ids.get(permission) else { return Vec::new() };
        let scope = self.lookup_scope(scope);
        sources
            .iter()
            .flat_map(|grants| applying_in(grants, scope))
            .filter(|entry| {
                self.role_permissions.contains(entry.role, permission)
                    && self.may_give(entry, permission)
                    && self.in_force(entry, now)
            })
            .map(|entry| Grant { index: self, entry: *entry })
            .collect()
    }

    /// How `role` gives `permission`: the chain of included roles down to
    /// the grant that covers it. `None` if it does not give it.
    pub fn role_path(&self, role: &str, permission: &str) -> Option<RolePath> {
        role_graph::role_path(&self.catalog, &self.roles, role, permission)
    }

    /// `role` and every role including it, directly or not, sorted: the roles
    /// whose expansion follows `role`'s.
    pub fn roles_including(&self, role: &str) -> Vec<String> {
        role_graph::roles_including(&self.roles, role).into_iter().collect()
    }

    /// The roles defined, by name.
    pub fn roles(&self) -> &BTreeMap<String, RoleDefinition> {
        &self.roles
    }

    /// Every assignment the index holds, in no particular order.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.entries.iter().flatten()
    }

    /// The userNames of a group's members, sorted.
    pub fn members_of(&self, group: &str) -> Vec<&str> {
        let entry = self.group_ids.get(group).and_then(|&id| self.groups.get(id));
        let mut members: Vec<&str> =
            entry.into_iter().flat_map(|g| g.members.iter()).map(String::as_str).collect();
        members.sort_unstable();
        members
    }

    /// Whether the index was told the user is inactive.
    pub fn is_inactive(&self, principal: &Principal) -> bool {
        principal.kind == PrincipalKind::User
            && self.users.get(principal.name.as_str()).is_some_and(|user| user.active == Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn mk_index() -> AccessIndex {
        let mut index = AccessIndex::new();
        index.set_catalog(["data.view", "iam.manage", "journeys.edit"].map(String::from));
        index.apply_role(
            "admin",
            RoleDefinition { grants: vec!["iam.*".into()], included_roles: vec!["viewer".into()] },
        );
        index.apply_role(
            "viewer",
            RoleDefinition { grants: vec!["data.view".into()], included_roles: vec![] },
        );
        index
    }

    fn mk_assignment(
        id: &str,
        principal: Principal,
        role: &str,
        scope: Scope,
        expires_at: Option<i64>,
    ) -> Assignment {
        Assignment { id: id.into(), principal, role: role.into(), scope, expires_at, approved_request: false }
    }

    fn workspace(name: &str) -> Scope {
        Scope::Workspace(name.into())
    }

    #[test]
    fn held_permissions_keep_the_latest_end_and_never_beats_any_end() {
        let mut index = mk_index();
        let ada = Principal::user("ada");
        index.apply_assignment(mk_assignment("a1", ada.clone(), "viewer", Scope::Organization, Some(2_000)));
        index.apply_assignment(mk_assignment(
            "a2",
            Principal::group("ops"),
            "viewer",
            workspace("eu"),
            Some(3_000),
        ));
        index.apply_assignment(mk_assignment("a3", ada.clone(), "admin", workspace("eu"), Some(1_500)));
        index.apply_assignment(mk_assignment("a4", Principal::group("ops"), "admin", workspace("us"), None));
        index.apply_assignment(mk_assignment("a5", ada.clone(), "viewer", workspace("us"), Some(900)));
        index.add_member("ops", "ada");

        fn held<'a>(index: &'a AccessIndex, scope: &Scope, now: i64) -> Vec<(&'a str, Option<i64>)> {
            let ada = Principal::user("ada");
            index.held_permissions(&ada, scope, now).iter().map(|h| (h.permission, h.until)).collect()
        }
        assert_eq!(held(&index, &Scope::Organization, NOW), [("data.view", Some(2_000))]);
        assert_eq!(
            held(&index, &workspace("eu"), NOW),
            [("data.view", Some(3_000)), ("iam.manage", Some(1_500))]
        );
        assert_eq!(held(&index, &workspace("us"), NOW), [("data.view", None), ("iam.manage", None)]);
        assert_eq!(held(&index, &workspace("eu"), 1_600), [("data.view", Some(3_000))], "a3 has ended");
        for scope in [Scope::Organization, workspace("eu"), workspace("us"), workspace("none")] {
            let names: Vec<&str> =
                index.held_permissions(&ada, &scope, NOW).iter().map(|h| h.permission).collect();
            assert_eq!(names, index.effective_permissions(&ada, &scope, NOW), "{scope}");
        }
        assert_eq!(index.workspaces_of(&ada), [&workspace("eu"), &workspace("us")]);
        assert_eq!(index.workspaces_of(&Principal::group("ops")), [&workspace("eu"), &workspace("us")]);

        index.apply_user("ada", false);
        assert!(index.is_inactive(&ada));
        assert_eq!(held(&index, &Scope::Organization, NOW), []);
        assert!(index.workspaces_of(&ada).is_empty());
    }

    #[test]
    fn grants_for_names_every_assignment_in_force_own_first() {
        let mut index = mk_index();
        let ada = Principal::user("ada");
        index.apply_assignment(mk_assignment(
            "g",
            Principal::group("ops"),
            "admin",
            Scope::Organization,
            None,
        ));
        index.apply_assignment(mk_assignment("own", ada.clone(), "viewer", workspace("eu"), None));
        index.apply_assignment(mk_assignment("old", ada.clone(), "viewer", Scope::Organization, Some(NOW)));
        index.add_member("ops", "ada");

        let grants = index.grants_for(&ada, "data.view", &workspace("eu"), NOW);
        let described: Vec<_> = grants.iter().map(|g| (g.assignment(), g.role(), g.group())).collect();
        assert_eq!(described, [("own", "viewer", None), ("g", "admin", Some("ops"))]);
        assert_eq!(
            index.grants_for(&ada, "data.view", &Scope::Organization, NOW).len(),
            1,
            "own is in eu only"
        );
        assert!(index.grants_for(&ada, "data.export", &Scope::Organization, NOW).is_empty());
        assert_eq!(
            index.role_path("admin", "data.view").map(|p| p.roles),
            Some(vec!["admin".into(), "viewer".into()])
        );
        assert_eq!(index.roles_including("viewer"), ["admin", "viewer"]);
    }

    #[test]
    fn principals_and_members_list_what_the_index_knows() {
        let mut index = mk_index();
        index.apply_assignment(mk_assignment(
            "c",
            Principal::client("ci"),
            "viewer",
            Scope::Organization,
            None,
        ));
        index.apply_assignment(mk_assignment(
            "u",
            Principal::user("bob"),
            "viewer",
            Scope::Organization,
            None,
        ));
        index.set_group_members("ops", ["eve".to_owned(), "ada".to_owned()]);
        assert_eq!(
            index.principals(),
            [
                Principal::user("ada"),
                Principal::user("bob"),
                Principal::user("eve"),
                Principal::group("ops"),
                Principal::client("ci")
            ]
        );
        assert_eq!(index.members_of("ops"), ["ada", "eve"]);
        assert_eq!(index.assignments().count(), 2);
        index.delete_assignment("c");
        assert!(!index.principals().contains(&Principal::client("ci")));
    }
}
