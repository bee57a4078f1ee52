//! The review for a terminal: one block per organization, roles first, then
//! principals; gains in green, losses in red, privileged and
//! approval-required marks in bold. Styles are ANSI codes, which the caller
//! writes through `anstream` so they are dropped when stdout is not a
//! terminal (or `NO_COLOR` is set).
//!
//! With groups expanded, a user whose every change comes through groups is
//! shown under those groups (counted, names listed up to a limit) rather
//! than on its own; `--output json` lists every user.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::model::*;
use super::words;

const GAIN: Style = AnsiColor::Green.on_default();
const LOSS: Style = AnsiColor::Red.on_default();
const MARK: Style = AnsiColor::Yellow.on_default().bold();
const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
/// Users named per group and change before "and N more".
const NAMES_SHOWN: usize = 10;

pub fn render(review: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{HEADING}Access review{HEADING:#}: {} -> {}", review.base, review.head);
    if !review.groups_expanded {
        let _ = writeln!(
            out,
            "{DIM}Groups are not expanded into their members (no --store): each group counts as one principal.{DIM:#}"
        );
    }
    if review.organizations.is_empty() {
        let _ = writeln!(out, "\nNo access changes.");
    }
    for org in &review.organizations {
        render_organization(&mut out, org);
    }
    out
}

fn plain(text: &str) -> String {
    // Names come from manifests and the store: keep control characters
    // (escape sequences included) out of the terminal.
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn render_organization(out: &mut String, org: &OrganizationReview) {
    let name =
        org.organization.as_deref().map_or_else(String::new, |o| format!("Organization {} ", plain(o)));
    let s = &org.summary;
    let _ = writeln!(out, "\n{HEADING}{name}(namespace {}){HEADING:#}", plain(&org.namespace));
    let _ = writeln!(
        out,
        "  {} principal(s) gain access ({} privileged, {} requiring approval), {} lose access; {} role(s) changed{}{}",
        s.principals_gaining,
        s.principals_gaining_privileged,
        s.principals_gaining_approval_required,
        s.principals_losing,
        s.roles_changed,
        if s.catalog_changes > 0 {
            format!("; {} catalog change(s)", s.catalog_changes)
        } else {
            String::new()
        },
        if s.inactive_users > 0 {
            format!("; {} inactive user(s) among them", s.inactive_users)
        } else {
            String::new()
        }
    );
    for group in &org.groups_not_in_store {
        let _ = writeln!(
            out,
            "  {DIM}group {} is not in the store: nobody is reached through it yet{DIM:#}",
            plain(group)
        );
    }
    if !org.catalog.is_empty() {
        let _ = writeln!(out, "\n  {HEADING}catalog{HEADING:#}");
    }
    for change in &org.catalog {
        let weakens = matches!(
            change.change,
            CatalogChangeKind::NoLongerPrivileged | CatalogChangeKind::NoLongerRequiresApproval
        );
        let style = if weakens { MARK } else { Style::new() };
        let _ = writeln!(
            out,
            "    {}: {style}{}{style:#}",
            plain(&change.permission),
            words::catalog_change(change.change)
        );
    }
    for role in &org.roles {
        render_role(out, role);
    }
    for change in words::reading_order(&org.principals) {
        // Shown, counted, under the groups its changes come through.
        if change.principal.kind == PrincipalKind::User && only_through_groups(change) {
            continue;
        }
        render_principal(out, change);
        if change.principal.kind == PrincipalKind::Group {
            for reach in org.through_groups.iter().filter(|r| r.group == change.principal.name) {
                render_reach(out, reach);
            }
        }
    }
    // Groups that reach users without a change of their own (should not happen).
    for reach in &org.through_groups {
        let listed = org
            .principals
            .iter()
            .any(|c| c.principal.kind == PrincipalKind::Group && c.principal.name == reach.group);
        if !listed {
            let _ = writeln!(out, "\n  {HEADING}group {}{HEADING:#}", plain(&reach.group));
            render_reach(out, reach);
        }
    }
}

/// Whether every change of a user is caused through a group only.
pub(crate) fn only_through_groups(change: &PrincipalChange) -> bool {
    change
        .scopes
        .iter()
        .flat_map(|s| &s.permissions)
        .all(|p| !p.causes.is_empty() && p.causes.iter().all(|c| c.group.is_some()))
}

fn render_role(out: &mut String, role: &RoleChange) {
    let kind = match role.change {
        RoleChangeKind::Added => "added",
        RoleChangeKind::Deleted => "deleted",
        RoleChangeKind::Changed => "changed",
    };
    let at = match (&role.file, role.line) {
        (Some(file), Some(line)) => format!(" ({}:{line})", plain(file)),
        _ => String::new(),
    };
    let _ = writeln!(out, "\n  {HEADING}role {}{HEADING:#} {kind}{at}", plain(&role.role));
    for permission in &role.gained {
        let _ = writeln!(out, "    {GAIN}+ {}{GAIN:#}{}", permission.permission, marks(permission));
    }
    for permission in &role.lost {
        let _ = writeln!(out, "    {LOSS}- {}{LOSS:#}{}", permission.permission, marks(permission));
    }
    for wildcard in &role.wildcards_added {
        let _ = writeln!(
            out,
            "    {MARK}new wildcard {}{MARK:#}: also covers permissions added to the catalog later",
            plain(wildcard)
        );
    }
    if role.reaches.is_empty() {
        let _ = writeln!(out, "    reaches no one");
    } else {
        let _ = writeln!(out, "    reaches:");
    }
    for reach in &role.reaches {
        let via = if reach.role == role.role {
            String::new()
        } else {
            format!(" through role {}", plain(&reach.role))
        };
        let members = reach.members.map_or_else(String::new, |m| {
            let inactive = if m.inactive > 0 { format!(", {} inactive", m.inactive) } else { String::new() };
            format!(" ({} member(s){inactive})", m.active + m.inactive)
        });
        let _ = writeln!(
            out,
            "      {}{members} in {}{via}, {}",
            words::principal(&reach.principal, plain),
            words::scope(&reach.scope, plain),
            words::source(&reach.source, plain)
        );
    }
}

fn render_principal(out: &mut String, change: &PrincipalChange) {
    let inactive = if change.inactive {
        format!(" {MARK}inactive{MARK:#} (holds nothing now; would hold this once reactivated)")
    } else {
        String::new()
    };
    let _ = writeln!(out, "\n  {HEADING}{}{HEADING:#}{inactive}", words::principal(&change.principal, plain));
    for scope in &change.scopes {
        let _ = writeln!(out, "    in {}", words::scope(&scope.scope, plain));
        for (permissions, causes) in words::by_cause(&scope.permissions) {
            for permission in permissions {
                let (sign, style) = if permission.change.widens() { ('+', GAIN) } else { ('-', LOSS) };
                let holding =
                    words::holding(permission.change, permission.expires_before, permission.expires_after);
                let holding = if holding.is_empty() { holding } else { format!("  {holding}") };
                let _ = writeln!(
                    out,
                    "      {style}{sign} {}{style:#}{}{holding}",
                    permission.permission.permission,
                    marks(&permission.permission)
                );
            }
            for cause in causes {
                let _ = writeln!(out, "          {DIM}{}{DIM:#}", words::cause(cause, plain));
            }
        }
    }
}

fn render_reach(out: &mut String, reach: &GroupReach) {
    let verb = match reach.change {
        ChangeKind::Gained => "gain",
        ChangeKind::Lost => "lose",
        ChangeKind::Extended => "hold longer",
        ChangeKind::Shortened => "hold for less long",
    };
    let total = reach.users.len() + reach.inactive_users.len();
    let permissions: Vec<String> = reach
        .permissions
        .iter()
        .map(|p| {
            let counts = if p.users + p.inactive_users == total {
                String::new()
            } else {
                format!(" ({} user(s))", p.users + p.inactive_users)
            };
            format!("{}{}{counts}", p.permission.permission, marks(&p.permission))
        })
        .collect();
    let _ = writeln!(
        out,
        "    through this group, {} user(s) {verb} in {}: {}",
        total,
        words::scope(&reach.scope, plain),
        permissions.join(", ")
    );
    if !reach.users.is_empty() {
        let _ = writeln!(out, "      users: {}", words::names(&reach.users, NAMES_SHOWN, plain));
    }
    if !reach.inactive_users.is_empty() {
        let _ = writeln!(
            out,
            "      {MARK}inactive users{MARK:#} (shown apart: they hold nothing now): {}",
            words::names(&reach.inactive_users, NAMES_SHOWN, plain)
        );
    }
}

fn marks(permission: &MarkedPermission) -> String {
    let mut text = String::new();
    if permission.privileged {
        let _ = write!(text, "  {MARK}[privileged]{MARK:#}");
    }
    if permission.approval_required {
        // The services give it only through an approved access request.
        let _ = write!(text, "  {MARK}[approval required: withheld from standing grants]{MARK:#}");
    }
    text
}
