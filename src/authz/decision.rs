//! What [`AccessIndex::check`](super::AccessIndex::check) answers: allowed or
//! denied, and why. Borrowed from the index, so answering allocates nothing.

use std::fmt;

use super::index::{AccessIndex, GrantEntry, Scope};

/// The answer to "may this principal use this permission here, now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision<'a> {
    /// An assignment in force grants the permission; this is one of them
    /// (a direct one before one through a group).
    Allowed(Grant<'a>),
    /// Nothing grants it.
    Denied(Denial<'a>),
}

impl Decision<'_> {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// One assignment's part in a decision: which role, where, and through which
/// group. Read from the index when asked, not when the decision is made: a
/// caller that only wants allowed-or-denied (most do) never pays for the
/// reads of cold memory an explanation takes.
#[derive(Clone, Copy)]
pub struct Grant<'a> {
    pub(super) index: &'a AccessIndex,
    /// The entry that granted, with the group that brought it to the user.
    pub(super) entry: GrantEntry,
}

impl<'a> Grant<'a> {
    /// The assignment's id.
    pub fn assignment(&self) -> &'a str {
        self.index.assignment_id(&self.entry)
    }

    /// The role it assigns (the permission may come from a role that one includes).
    pub fn role(&self) -> &'a str {
        self.index.role_name(&self.entry)
    }

    /// The group whose membership brought the assignment to the user; `None`
    /// when it names the principal itself.
    pub fn group(&self) -> Option<&'a str> {
        self.index.group_name(&self.entry)
    }

    /// Where the assignment applies. An organization-wide one also answers
    /// for every workspace.
    pub fn scope(&self) -> &'a Scope {
        self.index.scope_of(&self.entry)
    }

    /// Unix seconds from which the assignment grants nothing, if ever.
    pub fn expires_at(&self) -> Option<i64> {
        self.index.expiry(&self.entry)
    }

    fn explained(&self) -> (&'a str, &'a str, Option<&'a str>, &'a Scope, Option<i64>) {
        (self.assignment(), self.role(), self.group(), self.scope(), self.expires_at())
    }
}

impl PartialEq for Grant<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.explained() == other.explained()
    }
}

impl Eq for Grant<'_> {}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("assignment", &self.assignment())
            .field("role", &self.role())
            .field("group", &self.group())
            .field("scope", self.scope())
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// Why nothing granted the permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial<'a> {
    /// The user is inactive: it gets nothing, whatever is assigned to it or its groups.
    InactiveUser,
    /// The permission is not in the organization's catalog, so no role gives it.
    UnknownPermission,
    /// Only assignments that have expired would grant it; this one expired last.
    OnlyExpiredAssignments(Grant<'a>),
    /// The permission is approval-required and only standing assignments
    /// would give it (this one first): it comes only from an approved access
    /// request.
    ApprovalRequired(Grant<'a>),
    /// No assignment of the principal or its groups grants it in this scope.
    NoMatchingAssignment,
}

impl Denial<'_> {
    /// A stable machine-readable reason, for API responses and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::InactiveUser => "InactiveUser",
            Denial::UnknownPermission => "UnknownPermission",
            Denial::OnlyExpiredAssignments(_) => "OnlyExpiredAssignments",
            Denial::ApprovalRequired(_) => "ApprovalRequired",
            Denial::NoMatchingAssignment => "NoMatchingAssignment",
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed(grant) => write!(f, "allowed by {grant}"),
            Decision::Denied(denial) => write!(f, "denied: {denial}"),
        }
    }
}

impl fmt::Display for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "assignment {} of role {} in {}", self.assignment(), self.role(), self.scope())?;
        if let Some(group) = self.group() {
            write!(f, " through group {group}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::InactiveUser => f.write_str("the user is inactive"),
            Denial::UnknownPermission => f.write_str("the permission is not in the catalog"),
            Denial::OnlyExpiredAssignments(grant) => {
                write!(f, "only expired assignments grant it, last {grant}")?;
                if let Some(at) = grant.expires_at() {
                    write!(f, " (expired at {at})")?;
                }
                Ok(())
            }
            Denial::ApprovalRequired(grant) => write!(
                f,
                "it is granted only through an approved access request; standing {grant} does not give it"
            ),
            Denial::NoMatchingAssignment => f.write_str("no assignment grants it in this scope"),
        }
    }
}
