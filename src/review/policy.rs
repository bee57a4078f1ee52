//! `--fail-on`: when a review should fail a CI job, so that a change that
//! widens sensitive access needs a second review. Only widening counts
//! (gained, or held longer); losing access never fails a review.

use super::model::{CatalogChangeKind, MarkedPermission, OrganizationReview, Review};

/// What makes a review fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// A principal gains a privileged permission (catalog `privileged`, or
    /// `iam.`), or a role's expansion gains one, or a role's grants gain `*`
    /// or `iam.*`, or a permission stops being marked privileged.
    Privileged,
    /// A principal or a role gains a permission the organization lists in
    /// `approvalRequired`, or a permission stops requiring approval.
    Approval,
    /// Any change of access at all.
    Any,
}

/// Why the review fails under `fail_on`: one line per organization and
/// reason, empty when it passes.
pub fn failures(review: &Review, fail_on: FailOn) -> Vec<String> {
    review.organizations.iter().flat_map(|org| failures_in(org, fail_on)).collect()
}

fn failures_in(org: &OrganizationReview, fail_on: FailOn) -> Vec<String> {
    let namespace = &org.namespace;
    let matches = |p: &MarkedPermission| match fail_on {
        FailOn::Privileged => p.privileged,
        FailOn::Approval => p.approval_required,
        FailOn::Any => true,
    };
    let mut out = Vec::new();
    let principals = org
        .principals
        .iter()
        .filter(|c| {
            c.scopes
                .iter()
                .flat_map(|s| &s.permissions)
                .any(|p| fail_on == FailOn::Any || (p.change.widens() && matches(&p.permission)))
        })
        .count();
    if principals > 0 {
        out.push(format!("{namespace}: {principals} principal(s) {}", what(fail_on)));
    }
    for change in &org.catalog {
        let weakens = match fail_on {
            FailOn::Any => true,
            FailOn::Privileged => change.change == CatalogChangeKind::NoLongerPrivileged,
            FailOn::Approval => change.change == CatalogChangeKind::NoLongerRequiresApproval,
        };
        if weakens {
            out.push(format!(
                "{namespace}: permission {} {}",
                change.permission,
                catalog_what(change.change)
            ));
        }
    }
    for role in &org.roles {
        let broad_wildcard = role.wildcards_added.iter().any(|w| w == "*" || w == "iam.*");
        let fails = match fail_on {
            FailOn::Any => true,
            FailOn::Privileged => broad_wildcard || role.gained.iter().any(matches),
            FailOn::Approval => role.gained.iter().any(matches),
        };
        if fails {
            out.push(format!("{namespace}: role {} {}", role.role, role_what(fail_on)));
        }
    }
    out
}

fn what(fail_on: FailOn) -> &'static str {
    match fail_on {
        FailOn::Privileged => "gain privileged access",
        FailOn::Approval => "gain permissions that require approval",
        FailOn::Any => "change access",
    }
}

fn role_what(fail_on: FailOn) -> &'static str {
    match fail_on {
        FailOn::Privileged => "now gives privileged permissions",
        FailOn::Approval => "now gives permissions that require approval",
        FailOn::Any => "changed what it gives",
    }
}

fn catalog_what(change: CatalogChangeKind) -> &'static str {
    match change {
        CatalogChangeKind::Added => "was added to the catalog",
        CatalogChangeKind::Removed => "was removed from the catalog",
        CatalogChangeKind::NowPrivileged => "is now privileged",
        CatalogChangeKind::NoLongerPrivileged => "is no longer marked privileged",
        CatalogChangeKind::NowRequiresApproval => "now requires approval",
        CatalogChangeKind::NoLongerRequiresApproval => "no longer requires approval",
    }
}
