//! Role composition: expands each role's grants (permissions, wildcards and
//! included roles) into the catalog permissions it really gives.
//!
//! Shared by `validate`, the operator's status, and the access index, so the
//! three can never disagree on what a role grants.

use std::collections::{BTreeMap, BTreeSet};

/// A role as far as composition is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleDefinition {
    /// `domain.action`, `domain.*` or `*`.
    pub grants: Vec<String>,
    /// Names of roles whose permissions this role also gives.
    pub included_roles: Vec<String>,
}

/// The result of expanding every role of an organization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleExpansion {
    /// Catalog permissions each role gives, included roles expanded.
    /// Roles caught in a cycle give only what is reachable without looping.
    pub effective: BTreeMap<String, BTreeSet<String>>,
    /// Each inclusion cycle once, as the path of role names that closes it
    /// (`[a, b, a]`).
    pub cycles: Vec<Vec<String>>,
    /// `(role, included role)` pairs where the included role does not exist.
    pub missing_includes: Vec<(String, String)>,
    /// `(role, grant)` pairs where the grant matches no catalog permission.
    pub unmatched_grants: Vec<(String, String)>,
}

/// Whether one grant (`journeys.publish`, `journeys.*`, `*`) covers a permission.
pub fn grant_matches(grant: &str, permission: &str) -> bool {
    if grant == "*" {
        return true;
    }
    match grant.strip_suffix(".*") {
        Some(domain) => permission.strip_prefix(domain).is_some_and(|rest| rest.starts_with('.')),
        None => grant == permission,
    }
}

/// The catalog permissions a grant covers. Unknown names cover nothing.
pub fn expand_grant<'c>(grant: &str, catalog: &'c BTreeSet<String>) -> impl Iterator<Item = &'c String> {
    // The catalog is sorted, so a domain wildcard is one contiguous range.
    let start = match grant.strip_suffix('*') {
        Some(prefix) => prefix.to_owned(),
        None => grant.to_owned(),
    };
    let prefix = grant.trim_end_matches('*').to_owned();
    let grant = grant.to_owned();
    catalog
        .range(start..)
        .take_while(move |p| p.starts_with(&prefix))
        .filter(move |p| grant_matches(&grant, p))
}

/// Expands every role. Never loops: inclusion cycles are reported, and each
/// role's expansion visits every role at most once.
pub fn expand_roles(catalog: &BTreeSet<String>, roles: &BTreeMap<String, RoleDefinition>) -> RoleExpansion {
    let mut out = RoleExpansion::default();

    // Direct grants, and grants that match nothing.
    let direct: BTreeMap<&str, BTreeSet<String>> = roles
        .iter()
        .map(|(name, role)| {
            let mut permissions = BTreeSet::new();
            for grant in &role.grants {
                let mut matched = expand_grant(grant, catalog).peekable();
                if matched.peek().is_none() {
                    out.unmatched_grants.push((name.clone(), grant.clone()));
                }
                permissions.extend(matched.cloned());
            }
            (name.as_str(), permissions)
        })
        .collect();

    for (name, role) in roles {
        for included in &role.included_roles {
            if !roles.contains_key(included) {
                out.missing_includes.push((name.clone(), included.clone()));
            }
        }
    }

    out.cycles = find_cycles(roles);

    for name in roles.keys() {
        let mut seen = BTreeSet::from([name.as_str()]);
        let mut stack = vec![name.as_str()];
        let mut permissions = BTreeSet::new();
        while let Some(current) = stack.pop() {
            permissions.extend(direct[current].iter().cloned());
            for included in &roles[current].included_roles {
                if roles.contains_key(included) && seen.insert(included.as_str()) {
                    stack.push(included.as_str());
                }
            }
        }
        out.effective.insert(name.clone(), permissions);
    }
    out
}

/// How a role comes to give a permission: the chain of roles from the role
/// asked about to the one whose own grant covers the permission, and that grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolePath {
    /// Starts with the role asked about; ends with the role holding `grant`.
    pub roles: Vec<String>,
    /// The grant (`iam.manage`, `iam.*`, `*`) that covers the permission.
    pub grant: String,
}

/// The shortest chain of inclusions by which `role` gives `permission`, the
/// first found in declaration order when several are as short. `None` when
/// the role does not give it (or the permission is not in the catalog), so
/// it always agrees with [`expand_roles`].
pub fn role_path(
    catalog: &BTreeSet<String>,
    roles: &BTreeMap<String, RoleDefinition>,
    role: &str,
    permission: &str,
) -> Option<RolePath> {
    if !catalog.contains(permission) || !roles.contains_key(role) {
        return None;
    }
    // Breadth first, remembering how each role was reached.
    let mut reached_from: BTreeMap<&str, Option<&str>> = BTreeMap::from([(role, None)]);
    let mut queue = std::collections::VecDeque::from([role]);
    while let Some(current) = queue.pop_front() {
        let definition = &roles[current];
        if let Some(grant) = definition.grants.iter().find(|grant| grant_matches(grant, permission)) {
            let mut path = vec![current.to_owned()];
            let mut at = current;
            while let Some(Some(previous)) = reached_from.get(at) {
                path.push((*previous).to_owned());
                at = previous;
            }
            path.reverse();
            return Some(RolePath { roles: path, grant: grant.clone() });
        }
        for included in &definition.included_roles {
            if roles.contains_key(included) && !reached_from.contains_key(included.as_str()) {
                reached_from.insert(included, Some(current));
                queue.push_back(included);
            }
        }
    }
    None
}

/// `role` and every role that includes it, directly or through others: the
/// roles whose expansion changes when `role`'s does. Sorted.
pub fn roles_including(roles: &BTreeMap<String, RoleDefinition>, role: &str) -> BTreeSet<String> {
    let mut included_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, definition) in roles {
        for included in &definition.included_roles {
            included_by.entry(included.as_str()).or_default().push(name.as_str());
        }
    }
    let mut found = BTreeSet::from([role.to_owned()]);
    let mut stack = vec![role];
    while let Some(current) = stack.pop() {
        for &including in included_by.get(current).into_iter().flatten() {
            if found.insert(including.to_owned()) {
                stack.push(including);
            }
        }
    }
    found
}

/// Every elementary cycle reachable by depth-first search, each reported once
/// (rotated to start at its smallest name, so the output is deterministic).
fn find_cycles(roles: &BTreeMap<String, RoleDefinition>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = roles.keys().map(|k| (k.as_str(), Mark::Unvisited)).collect();
    let mut found = BTreeSet::new();

    for root in roles.keys() {
        if marks[root.as_str()] != Mark::Unvisited {
            continue;
        }
        // Iterative DFS: (role, index of the next included role to visit).
        let mut path: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        marks.insert(root.as_str(), Mark::OnPath);
        while let Some((current, next)) = path.last_mut() {
            let includes = &roles[*current].included_roles;
            if *next >= includes.len() {
                marks.insert(current, Mark::Done);
                path.pop();
                continue;
            }
            let child = includes[*next].as_str();
            *next += 1;
            match marks.get(child) {
                None | Some(Mark::Done) => {}
                Some(Mark::Unvisited) => {
                    marks.insert(child, Mark::OnPath);
                    path.push((child, 0));
                }
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|(r, _)| *r == child).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..].iter().map(|(r, _)| (*r).to_owned()).collect();
                    let smallest = cycle.iter().enumerate().min_by_key(|(_, r)| *r).map_or(0, |(i, _)| i);
                    cycle.rotate_left(smallest);
                    cycle.push(cycle[0].clone());
                    found.insert(cycle);
                }
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn mk_role(grants: &[&str], includes: &[&str]) -> RoleDefinition {
        RoleDefinition {
            grants: grants.iter().map(|s| s.to_string()).collect(),
            included_roles: includes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn wildcards_match_only_catalog_permissions_of_their_domain() {
        let catalog = catalog(&["journeys.edit", "journeys.publish", "journeysx.view", "data.export"]);
        let got: Vec<_> = expand_grant("journeys.*", &catalog).cloned().collect();
        assert_eq!(got, ["journeys.edit", "journeys.publish"]);
        assert_eq!(expand_grant("*", &catalog).count(), 4);
        assert_eq!(expand_grant("journeys.delete", &catalog).count(), 0);
        assert!(!grant_matches("journeys.*", "journeysx.view"));
    }

    #[test]
    fn included_roles_are_expanded_transitively() {
        let catalog = catalog(&["a.one", "b.two", "c.three"]);
        let roles = BTreeMap::from([
            ("top".to_owned(), mk_role(&["a.one"], &["mid"])),
            ("mid".to_owned(), mk_role(&["b.*"], &["low"])),
            ("low".to_owned(), mk_role(&["c.three", "c.unknown"], &[])),
        ]);
        let expansion = expand_roles(&catalog, &roles);
        assert_eq!(expansion.effective["top"], catalog);
        assert_eq!(expansion.unmatched_grants, [("low".to_owned(), "c.unknown".to_owned())]);
        assert!(expansion.cycles.is_empty());
    }

    #[test]
    fn cycles_are_reported_once_and_expansion_terminates() {
        let catalog = catalog(&["a.one", "b.two"]);
        let roles = BTreeMap::from([
            ("x".to_owned(), mk_role(&["a.one"], &["y"])),
            ("y".to_owned(), mk_role(&["b.two"], &["x", "gone"])),
            ("self".to_owned(), mk_role(&[], &["self"])),
        ]);
        let expansion = expand_roles(&catalog, &roles);
        assert_eq!(expansion.cycles, [vec!["self", "self"], vec!["x", "y", "x"]]);
        assert_eq!(expansion.effective["x"], catalog);
        assert_eq!(expansion.missing_includes, [("y".to_owned(), "gone".to_owned())]);
    }

    #[test]
    fn role_path_names_the_shortest_chain_and_the_grant_that_covers_the_permission() {
        let catalog = catalog(&["data.view", "iam.manage", "journeys.view"]);
        let roles = BTreeMap::from([
            ("analyst".to_owned(), mk_role(&["data.view"], &["viewer", "admin"])),
            ("viewer".to_owned(), mk_role(&["journeys.view"], &["admin"])),
            ("admin".to_owned(), mk_role(&["iam.*"], &["analyst"])),
        ]);
        let path = role_path(&catalog, &roles, "analyst", "iam.manage").expect("analyst gives iam.manage");
        assert_eq!(path.roles, ["analyst", "admin"]);
        assert_eq!(path.grant, "iam.*");
        let own = role_path(&catalog, &roles, "viewer", "journeys.view").expect("its own grant");
        assert_eq!((own.roles.as_slice(), own.grant.as_str()), (&["viewer".to_owned()][..], "journeys.view"));
        // Through the cycle admin -> analyst, and never for what it does not give.
        assert_eq!(
            role_path(&catalog, &roles, "admin", "data.view").map(|p| p.roles),
            Some(vec!["admin".to_owned(), "analyst".to_owned()])
        );
        assert_eq!(role_path(&catalog, &roles, "viewer", "iam.delete"), None, "not in the catalog");
        assert_eq!(role_path(&catalog, &roles, "missing", "data.view"), None);
    }

    #[test]
    fn role_path_agrees_with_the_expansion() {
        let catalog = catalog(&["a.one", "a.two", "b.two", "c.three"]);
        let roles = BTreeMap::from([
            ("top".to_owned(), mk_role(&["a.one"], &["mid", "gone"])),
            ("mid".to_owned(), mk_role(&["b.*", "x.y"], &["low", "top"])),
            ("low".to_owned(), mk_role(&["*"], &[])),
            ("alone".to_owned(), mk_role(&["a.*"], &[])),
        ]);
        let expansion = expand_roles(&catalog, &roles);
        for role in roles.keys() {
            for permission in catalog.iter().map(String::as_str).chain(["x.y", "d.four"]) {
                let gives = expansion.effective[role].contains(permission);
                let path = role_path(&catalog, &roles, role, permission);
                assert_eq!(path.is_some(), gives, "{role} gives {permission}: {gives}, path {path:?}");
                if let Some(path) = path {
                    let last = &roles[path.roles.last().unwrap()];
                    assert!(last.grants.contains(&path.grant) && grant_matches(&path.grant, permission));
                    for pair in path.roles.windows(2) {
                        assert!(roles[&pair[0]].included_roles.contains(&pair[1]), "{path:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn roles_including_follows_inclusions_backwards() {
        let roles = BTreeMap::from([
            ("a".to_owned(), mk_role(&[], &["b"])),
            ("b".to_owned(), mk_role(&[], &["c"])),
            ("c".to_owned(), mk_role(&["x.y"], &[])),
            ("d".to_owned(), mk_role(&[], &["c", "d"])),
            ("e".to_owned(), mk_role(&["x.y"], &[])),
        ]);
        let names = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
        assert_eq!(names(roles_including(&roles, "c")), ["a", "b", "c", "d"]);
        assert_eq!(names(roles_including(&roles, "e")), ["e"]);
        assert_eq!(names(roles_including(&roles, "gone")), ["gone"]);
    }
}
