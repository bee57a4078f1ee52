//! Phrases the text and markdown reports share. Each takes the escaping of
//! its format for what the manifests or the store wrote (names, files).

use jiff::Timestamp;

use super::model::{
    Cause, ChangeKind, GrantSource, PermissionChange, PrincipalChange, PrincipalKind, PrincipalRef, ScopeRef,
};

pub fn scope(scope: &ScopeRef, escape: impl Fn(&str) -> String) -> String {
    match scope {
        ScopeRef::Organization => "the organization".to_owned(),
        ScopeRef::Workspace(name) => format!("workspace {}", escape(name)),
    }
}

pub fn principal(principal: &PrincipalRef, escape: impl Fn(&str) -> String) -> String {
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::Group => "group",
        PrincipalKind::Client => "client",
    };
    format!("{kind} {}", escape(&principal.name))
}

/// `RoleAssignment name (file:line)` or `IdentityProvider okta groupMappings[0] (file:line)`.
pub fn source(source: &GrantSource, escape: impl Fn(&str) -> String) -> String {
    match source {
        GrantSource::RoleAssignment { name, file, line } => {
            format!("RoleAssignment {} ({})", escape(name), escape(&format!("{file}:{line}")))
        }
        GrantSource::GroupMapping { identity_provider, position, file, line, .. } => format!(
            "IdentityProvider {} groupMappings[{position}] ({})",
            escape(identity_provider),
            escape(&format!("{file}:{line}"))
        ),
    }
}

/// `role analyst-readonly > org-admin (iam.*)[ through group G][ in workspace w][ until T], <source>`.
pub fn cause(cause: &Cause, escape: impl Fn(&str) -> String + Copy) -> String {
    let mut text = format!("role {}", escape(&cause.role));
    for role in &cause.through_roles {
        text.push_str(&format!(" > {}", escape(role)));
    }
    text.push_str(&format!(" ({})", escape(&cause.grant)));
    if let Some(group) = &cause.group {
        text.push_str(&format!(" through group {}", escape(group)));
    }
    if let ScopeRef::Workspace(_) = cause.scope {
        text.push_str(&format!(" in {}", scope(&cause.scope, escape)));
    }
    if let Some(at) = cause.expires_at {
        text.push_str(&format!(" until {}", time(at)));
    }
    text.push_str(&format!(", {}", source(&cause.source, escape)));
    text
}

/// What changed about the hold's end, for an extension or a shortening.
pub fn holding(kind: ChangeKind, before: Option<Timestamp>, after: Option<Timestamp>) -> String {
    match kind {
        ChangeKind::Gained => after.map(|at| format!("until {}", time(at))).unwrap_or_default(),
        ChangeKind::Lost => String::new(),
        ChangeKind::Extended => format!("held longer: {}", ends(before, after)),
        ChangeKind::Shortened => format!("held for less long: {}", ends(before, after)),
    }
}

/// `until T1 -> no end`: the end of a hold before and after.
pub fn ends(before: Option<Timestamp>, after: Option<Timestamp>) -> String {
    let end =
        |at: Option<Timestamp>| at.map_or_else(|| "no end".to_owned(), |at| format!("until {}", time(at)));
    format!("{} -> {}", end(before), end(after))
}

pub fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Up to `limit` names, then how many more.
pub fn names(names: &[String], limit: usize, escape: impl Fn(&str) -> String) -> String {
    let shown: Vec<String> = names.iter().take(limit).map(|n| escape(n)).collect();
    let mut text = shown.join(", ");
    if names.len() > limit {
        text.push_str(&format!(" and {} more (--output json lists all)", names.len() - limit));
    }
    text
}

/// The changes of one scope, in buckets that share their kind, their end and
/// all their causes (the permissions one wildcard brings), in order of first
/// appearance: each bucket's causes are written once.
pub fn by_cause(changes: &[PermissionChange]) -> Vec<(Vec<&PermissionChange>, &[Cause])> {
    let mut buckets: Vec<(Vec<&PermissionChange>, &[Cause])> = Vec::new();
    for change in changes {
        let same = |first: &PermissionChange| {
            first.change == change.change
                && first.expires_before == change.expires_before
                && first.expires_after == change.expires_after
                && first.causes == change.causes
        };
        match buckets.iter_mut().find(|(members, _)| same(members[0])) {
            Some((members, _)) => members.push(change),
            None => buckets.push((vec![change], &change.causes)),
        }
    }
    buckets
}

/// Principals in the order a reader wants them: groups first (they explain
/// their members), then clients, then users; by name within each.
pub fn reading_order(changes: &[PrincipalChange]) -> Vec<&PrincipalChange> {
    let rank = |kind: PrincipalKind| match kind {
        PrincipalKind::Group => 0,
        PrincipalKind::Client => 1,
        PrincipalKind::User => 2,
    };
    let mut ordered: Vec<&PrincipalChange> = changes.iter().collect();
    ordered.sort_by(|a, b| {
        (rank(a.principal.kind), &a.principal.name).cmp(&(rank(b.principal.kind), &b.principal.name))
    });
    ordered
}

/// What a catalog change is, in words.
pub fn catalog_change(change: super::model::CatalogChangeKind) -> &'static str {
    use super::model::CatalogChangeKind as K;
    match change {
        K::Added => "added to the catalog",
        K::Removed => "removed from the catalog",
        K::NowPrivileged => "now marked privileged",
        K::NoLongerPrivileged => "no longer marked privileged",
        K::NowRequiresApproval => "now requires approval",
        K::NoLongerRequiresApproval => "no longer requires approval",
    }
}
