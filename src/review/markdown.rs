//! The review as a pull-request comment (GitHub-flavoured markdown): a
//! summary table per organization, then the privileged and
//! approval-required gains, then every change in a collapsed `<details>`.
//!
//! Names come from the pull request itself (and from the store), so every
//! one is written as a code span: a principal called `| **no changes** |`
//! or `@acme/security` must not be able to forge a line of the review or
//! notify anyone. The comment is kept under GitHub's
//! 65,536 characters by cutting the details, never the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::*;
use super::text::only_through_groups;
use super::words;

/// GitHub refuses longer comments.
const COMMENT_LIMIT: usize = 65_536;
/// Users named per group and change before "and N more".
const NAMES_SHOWN: usize = 50;
/// Principals named per row of the escalation table.
const PRINCIPALS_SHOWN: usize = 10;

pub fn render(review: &Review) -> String {
    let mut summary = String::new();
    let _ = writeln!(summary, "### Access review\n");
    let _ = writeln!(summary, "{} → {}\n", code(&review.base), code(&review.head));
    if !review.groups_expanded {
        let _ = writeln!(
            summary,
            "Groups are not expanded into their members (no `--store`): each group counts as one principal.\n"
        );
    }
    if review.organizations.is_empty() {
        let _ = writeln!(summary, "No access changes.");
        return summary;
    }
    let _ = writeln!(
        summary,
        "| Organization | Gain access | Privileged | Approval required | Lose access | Roles changed | Catalog changes |"
    );
    let _ = writeln!(summary, "|---|---:|---:|---:|---:|---:|---:|");
    for org in &review.organizations {
        let s = &org.summary;
        let name = org.organization.as_deref().unwrap_or(&org.namespace);
        let strong = |n: usize| if n > 0 { format!("**{n}**") } else { n.to_string() };
        let _ = writeln!(
            summary,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(name),
            s.principals_gaining,
            strong(s.principals_gaining_privileged),
            strong(s.principals_gaining_approval_required),
            s.principals_losing,
            s.roles_changed,
            s.catalog_changes
        );
    }
    escalations(&mut summary, review);

    let mut details = String::new();
    for org in &review.organizations {
        organization_details(&mut details, org);
    }
    let room = COMMENT_LIMIT.saturating_sub(summary.len() + 400);
    if details.len() > room {
        let cut = details[..room].rfind('\n').unwrap_or(0);
        details.truncate(cut);
        details.push_str(
            "\n\n*The details were cut to fit a comment; `portcullis diff --output json` lists every change.*\n\n</details>\n",
        );
    }
    summary + &details
}

/// One row per permission and scope that someone gains and that is
/// privileged or requires approval: who gains it.
fn escalations(out: &mut String, review: &Review) {
    type Row = (String, String, ScopeRef);
    let mut rows: BTreeMap<Row, (MarkedPermission, Vec<String>)> = BTreeMap::new();
    for org in &review.organizations {
        let org_name = org.organization.clone().unwrap_or_else(|| org.namespace.clone());
        for change in words::reading_order(&org.principals) {
            if change.principal.kind == PrincipalKind::User && only_through_groups(change) {
                continue; // counted with the group
            }
            for scope in &change.scopes {
                for p in scope.permissions.iter().filter(|p| p.change.widens()) {
                    if !(p.permission.privileged || p.permission.approval_required) {
                        continue;
                    }
                    let key = (org_name.clone(), p.permission.permission.clone(), scope.scope.clone());
                    let entry = rows.entry(key).or_insert_with(|| (p.permission.clone(), Vec::new()));
                    let mut who = words::principal(&change.principal, cell);
                    if change.inactive {
                        who.push_str(" (inactive)");
                    }
                    if let Some(users) =
                        reached_users(org, &change.principal, &scope.scope, &p.permission.permission)
                    {
                        who.push_str(&format!(" ({users})"));
                    }
                    entry.1.push(who);
                }
            }
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "\nNo privileged or approval-required permission is gained.\n");
        return;
    }
    let _ = writeln!(out, "\n**Privileged and approval-required permissions gained**\n");
    let _ = writeln!(out, "| Organization | Permission | Marks | Scope | Gained by |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for ((org, _, scope), (permission, who)) in rows {
        let mut gained_by: Vec<String> = who.iter().take(PRINCIPALS_SHOWN).cloned().collect();
        if who.len() > PRINCIPALS_SHOWN {
            gained_by.push(format!("and {} more", who.len() - PRINCIPALS_SHOWN));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&org),
            cell(&permission.permission),
            marks(&permission),
            words::scope(&scope, cell),
            gained_by.join(", ")
        );
    }
    let _ = writeln!(out);
}

/// "214 users, 3 inactive" reached through a group for one permission.
fn reached_users(
    org: &OrganizationReview,
    group: &PrincipalRef,
    scope: &ScopeRef,
    permission: &str,
) -> Option<String> {
    if group.kind != PrincipalKind::Group {
        return None;
    }
    let (mut users, mut inactive) = (0, 0);
    for reach in
        org.through_groups.iter().filter(|r| r.group == group.name && &r.scope == scope && r.change.widens())
    {
        for p in reach.permissions.iter().filter(|p| p.permission.permission == permission) {
            users += p.users;
            inactive += p.inactive_users;
        }
    }
    match (users, inactive) {
        (0, 0) if org.through_groups.is_empty() => None,
        (users, 0) => Some(format!("{users} user(s)")),
        (users, inactive) => Some(format!("{users} user(s), and {inactive} inactive")),
    }
}

fn organization_details(out: &mut String, org: &OrganizationReview) {
    let _ = writeln!(out, "<details>\n<summary>{}: every change</summary>\n", html(&org.namespace));
    for group in &org.groups_not_in_store {
        let _ =
            writeln!(out, "- group {} is not in the store: nobody is reached through it yet", code(group));
    }
    if !org.catalog.is_empty() {
        let _ = writeln!(out, "#### Catalog\n");
    }
    for change in &org.catalog {
        let weakens = matches!(
            change.change,
            CatalogChangeKind::NoLongerPrivileged | CatalogChangeKind::NoLongerRequiresApproval
        );
        let text = words::catalog_change(change.change);
        let text = if weakens { format!("**{text}**") } else { text.to_owned() };
        let _ = writeln!(out, "- {}: {text}", code(&change.permission));
    }
    if !org.catalog.is_empty() {
        let _ = writeln!(out);
    }
    if !org.roles.is_empty() {
        let _ = writeln!(out, "#### Roles whose expansion changed\n");
    }
    for role in &org.roles {
        let kind = match role.change {
            RoleChangeKind::Added => "added",
            RoleChangeKind::Deleted => "deleted",
            RoleChangeKind::Changed => "changed",
        };
        let at = match (&role.file, role.line) {
            (Some(file), Some(line)) => format!(" ({})", code(&format!("{file}:{line}"))),
            _ => String::new(),
        };
        let _ = writeln!(out, "- **{}** {kind}{at}", code(&role.role));
        let list = |permissions: &[MarkedPermission]| {
            permissions
                .iter()
                .map(|p| format!("{}{}", code(&p.permission), suffix(p)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !role.gained.is_empty() {
            let _ = writeln!(out, "  - gains {}", list(&role.gained));
        }
        if !role.lost.is_empty() {
            let _ = writeln!(out, "  - loses {}", list(&role.lost));
        }
        for wildcard in &role.wildcards_added {
            let _ = writeln!(
                out,
                "  - new wildcard {}: also covers permissions added to the catalog later",
                code(wildcard)
            );
        }
        if role.reaches.is_empty() {
            let _ = writeln!(out, "  - reaches no one");
        }
        for reach in &role.reaches {
            let via = if reach.role == role.role {
                String::new()
            } else {
                format!(" through role {}", code(&reach.role))
            };
            let members = reach.members.map_or_else(String::new, |m| {
                format!(" ({} member(s), {} inactive)", m.active + m.inactive, m.inactive)
            });
            let _ = writeln!(
                out,
                "  - reaches {}{members} in {}{via}: {}",
                words::principal(&reach.principal, code),
                words::scope(&reach.scope, code),
                words::source(&reach.source, code)
            );
        }
    }
    if !org.principals.is_empty() {
        let _ = writeln!(out, "\n#### Principals\n");
    }
    for change in words::reading_order(&org.principals) {
        if change.principal.kind == PrincipalKind::User && only_through_groups(change) {
            continue;
        }
        let inactive = if change.inactive {
            " (inactive: holds nothing now, would hold this once reactivated)"
        } else {
            ""
        };
        let _ = writeln!(out, "- **{}**{inactive}", words::principal(&change.principal, code));
        for scope in &change.scopes {
            let _ = writeln!(out, "  - in {}", words::scope(&scope.scope, code));
            for (permissions, causes) in words::by_cause(&scope.permissions) {
                let first = permissions[0];
                let verb = match first.change {
                    ChangeKind::Gained => "gains",
                    ChangeKind::Lost => "loses",
                    ChangeKind::Extended => "holds longer",
                    ChangeKind::Shortened => "holds for less long",
                };
                let holding = match first.change {
                    ChangeKind::Gained => {
                        first.expires_after.map(|at| format!(" (until {})", words::time(at)))
                    }
                    ChangeKind::Lost => None,
                    ChangeKind::Extended | ChangeKind::Shortened => {
                        Some(format!(" ({})", words::ends(first.expires_before, first.expires_after)))
                    }
                }
                .unwrap_or_default();
                let listed: Vec<String> = permissions
                    .iter()
                    .map(|p| format!("{}{}", code(&p.permission.permission), suffix(&p.permission)))
                    .collect();
                let causes: Vec<String> = causes.iter().map(|c| words::cause(c, code)).collect();
                let _ = writeln!(out, "    - {verb} {}{holding}: {}", listed.join(", "), causes.join("; "));
            }
        }
        if change.principal.kind == PrincipalKind::Group {
            for reach in org.through_groups.iter().filter(|r| r.group == change.principal.name) {
                reach_details(out, reach);
            }
        }
    }
    let _ = writeln!(out, "\n</details>\n");
}

fn reach_details(out: &mut String, reach: &GroupReach) {
    let verb = match reach.change {
        ChangeKind::Gained => "gain",
        ChangeKind::Lost => "lose",
        ChangeKind::Extended => "hold longer",
        ChangeKind::Shortened => "hold for less long",
    };
    let permissions: Vec<String> = reach
        .permissions
        .iter()
        .map(|p| format!("{}{}", code(&p.permission.permission), suffix(&p.permission)))
        .collect();
    let _ = writeln!(
        out,
        "  - through this group, {} user(s) {verb} in {}: {}",
        reach.users.len() + reach.inactive_users.len(),
        words::scope(&reach.scope, code),
        permissions.join(", ")
    );
    if !reach.users.is_empty() {
        let _ = writeln!(out, "    - users: {}", words::names(&reach.users, NAMES_SHOWN, code));
    }
    if !reach.inactive_users.is_empty() {
        let _ = writeln!(
            out,
            "    - inactive users (they hold nothing now): {}",
            words::names(&reach.inactive_users, NAMES_SHOWN, code)
        );
    }
}

fn marks(permission: &MarkedPermission) -> String {
    let mut marks = Vec::new();
    if permission.privileged {
        marks.push("**privileged**");
    }
    if permission.approval_required {
        // The services give it only through an approved access request.
        marks.push("**approval required**: withheld from standing grants");
    }
    marks.join(", ")
}

fn suffix(permission: &MarkedPermission) -> String {
    let marks = marks(permission);
    if marks.is_empty() { marks } else { format!(" ({marks})") }
}

/// Text from outside (names, files) as a code span, which markdown leaves
/// alone: no emphasis, no HTML, no links, no `@` mentions. The fence is one
/// backtick longer than any run inside; control characters become spaces.
pub fn code(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut longest = 0;
    let mut run = 0;
    for c in clean.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if clean.starts_with('`') || clean.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{clean}{pad}{fence}")
}

/// A code span in a table cell, where a pipe would end the cell even inside
/// it (GFM reads `\|` there as a pipe).
fn cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// For HTML (the `<summary>` line), where markdown is not read.
fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_forge_markdown() {
        assert_eq!(code("iam.manage"), "`iam.manage`");
        assert_eq!(code("@acme/admins <b>**x**</b>"), "`@acme/admins <b>**x**</b>`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`a``"), "``` `a`` ```");
        assert_eq!(code("line\nbreak"), "`line break`");
        assert_eq!(cell("a|b"), "`a\\|b`", "a pipe would split a table cell even in a code span");
    }
}
