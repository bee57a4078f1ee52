//! How the index stores who holds which assignment: 16-byte entries, a
//! sorted list per group and per client, and every user's list in one shared
//! arena.
//!
//! A check reads one user's list, and each check names a different user: on a
//! large tenant what a check costs is mostly waiting for memory, and in a
//! virtual machine above all for address translation. Small entries and one
//! contiguous arena, rather than one heap allocation per user scattered
//! among the other records, keep the lists on few pages.

use super::{AssignmentSlot, GroupId, RoleId, ScopeId, compact_id};

/// The `group` of an entry that names its principal directly.
pub(super) const DIRECT: GroupId = GroupId::MAX;

/// The top bit of [`GrantEntry::assignment`]: the assignment has an expiry,
/// to be read from the index's side table.
const MAY_EXPIRE: u32 = 1 << 31;
/// The next bit: the assignment is the grant of an approved access request,
/// so it also gives the organization's approval-required permissions.
/// Slots stay below both.
const APPROVED_REQUEST: u32 = 1 << 30;
const FLAGS: u32 = MAY_EXPIRE | APPROVED_REQUEST;

/// One assignment as seen from a principal it reaches. The expiry is not
/// here (it would make the entry half as big again): an entry only says
/// whether there is one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::authz) struct GrantEntry {
    pub(super) scope: ScopeId,
    pub(super) role: RoleId,
    /// The assignment's slot, [`MAY_EXPIRE`] and [`APPROVED_REQUEST`].
    assignment: u32,
    /// The group that brings the assignment to a user, or [`DIRECT`].
    pub(super) group: GroupId,
}

impl GrantEntry {
    pub(super) fn new(
        scope: ScopeId,
        role: RoleId,
        slot: AssignmentSlot,
        expires: bool,
        approved_request: bool,
    ) -> GrantEntry {
        assert!(slot < APPROVED_REQUEST, "fewer than 2^30 assignments");
        let mut assignment = slot;
        if expires {
            assignment |= MAY_EXPIRE;
        }
        if approved_request {
            assignment |= APPROVED_REQUEST;
        }
        GrantEntry { scope, role, assignment, group: DIRECT }
    }

    pub(super) fn slot(&self) -> AssignmentSlot {
        self.assignment & !FLAGS
    }

    /// Whether the assignment is an approved access request's grant.
    pub(super) fn approved_request(&self) -> bool {
        self.assignment & APPROVED_REQUEST != 0
    }

    /// Whether the assignment has an expiry (past or not).
    pub(super) fn may_expire(&self) -> bool {
        self.assignment & MAY_EXPIRE != 0
    }

    /// What a member of `group` holds of the group's entry.
    pub(super) fn copy_through(&self, group: GroupId) -> GrantEntry {
        GrantEntry { group, ..*self }
    }
}

/// The organization-wide entries of a list sorted by scope, then those of
/// `scope` if it is a workspace. A principal has few entries: one pass that
/// stops past `scope` is cheaper than binary searches.
pub(super) fn applying_in(grants: &[GrantEntry], scope: ScopeId) -> impl Iterator<Item = &GrantEntry> {
    grants
        .iter()
        .take_while(move |g| g.scope <= scope)
        .filter(move |g| g.scope == super::ORGANIZATION || g.scope == scope)
}

/// A group's or a client's assignments, sorted by scope: the
/// organization-wide ones first, then each workspace's as a contiguous run.
#[derive(Debug, Default)]
pub(super) struct Grants(Vec<GrantEntry>);

impl Grants {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn as_slice(&self) -> &[GrantEntry] {
        &self.0
    }

    pub(super) fn insert(&mut self, entry: GrantEntry) {
        let at = self.0.partition_point(|g| g.scope <= entry.scope);
        self.0.insert(at, entry);
    }

    pub(super) fn remove(&mut self, slot: AssignmentSlot) {
        self.0.retain(|g| g.slot() != slot);
    }
}

/// Where a user's entries are in the [`UserGrantArena`]: its own assignments
/// sorted by scope, then its groups' sorted by scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct UserSpan {
    start: u32,
    len: u32,
    /// How many entries are the user's own (they come first).
    own_len: u32,
}

impl UserSpan {
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The room the span owns from `start`: a whole number of cache lines'
    /// worth of entries, so that most inserts need not move the list.
    fn capacity(&self) -> u32 {
        capacity_for(self.len)
    }
}

fn capacity_for(len: u32) -> u32 {
    len.next_multiple_of(4)
}

/// Every user's entries in one vector, each user's in a span of its own.
/// A list that outgrows its room moves to the end, leaving a hole; when holes
/// make up a quarter of the vector, [`compact`](Self::compact) closes them,
/// which costs at most four times the moves that made them.
#[derive(Debug, Default)]
pub(super) struct UserGrantArena {
    entries: Vec<GrantEntry>,
    /// Entries in no span's room.
    unused: usize,
}

impl UserGrantArena {
    /// The user's own entries and its groups' entries.
    pub(super) fn own_then_through_groups(&self, span: &UserSpan) -> [&[GrantEntry]; 2] {
        let start = span.start as usize;
        let all = self.entries.get(start..start + span.len as usize).unwrap_or_default();
        let (own, through_groups) = all.split_at(span.own_len as usize);
        [own, through_groups]
    }

    pub(super) fn insert(&mut self, span: &mut UserSpan, entry: GrantEntry) {
        if span.len == span.capacity() {
            self.grow(span);
        }
        let start = span.start as usize;
        let len = span.len as usize;
        let key = |e: &GrantEntry| (e.group != DIRECT, e.scope);
        let at = self.entries[start..start + len].partition_point(|e| key(e) <= key(&entry));
        self.entries[start + len] = entry;
        self.entries[start + at..=start + len].rotate_right(1);
        span.len += 1;
        span.own_len += u32::from(entry.group == DIRECT);
    }

    /// Gives the span room for one more entry, in place if it ends the vector.
    fn grow(&mut self, span: &mut UserSpan) {
        let (start, len) = (span.start as usize, span.len as usize);
        let new_capacity = capacity_for(span.len + 1) as usize;
        if span.len > 0 && start + len == self.entries.len() {
            self.entries.resize(start + new_capacity, GrantEntry::default());
            return;
        }
        let new_start = self.entries.len();
        self.entries.extend_from_within(start..start + len);
        self.entries.resize(new_start + new_capacity, GrantEntry::default());
        self.unused += len;
        span.start = compact_id(new_start);
    }

    pub(super) fn retain(&mut self, span: &mut UserSpan, keep: impl Fn(&GrantEntry) -> bool) {
        let start = span.start as usize;
        let list = &mut self.entries[start..start + span.len as usize];
        let mut kept = 0;
        for at in 0..list.len() {
            if keep(&list[at]) {
                list[kept] = list[at];
                kept += 1;
            }
        }
        let old_capacity = span.capacity();
        span.len = compact_id(kept);
        span.own_len = compact_id(list[..kept].iter().take_while(|e| e.group == DIRECT).count());
        self.unused += (old_capacity - span.capacity()) as usize;
    }

    /// Gives up the room of a user the index forgets.
    pub(super) fn release(&mut self, span: &mut UserSpan) {
        self.unused += span.capacity() as usize;
        *span = UserSpan::default();
    }

    /// Whether holes make up over a quarter of the vector (and are worth a
    /// copy of it: the tests' tiny tenants compact too).
    pub(super) fn is_sparse(&self) -> bool {
        const MIN_HOLES: usize = if cfg!(test) { 4 } else { 1024 };
        self.unused > MIN_HOLES && self.unused * 4 > self.entries.len()
    }

    /// Moves every span next to the previous one; `spans` must be all of them.
    pub(super) fn compact<'a>(&mut self, spans: impl Iterator<Item = &'a mut UserSpan>) {
        let mut entries = Vec::with_capacity(self.entries.len() - self.unused);
        for span in spans {
            let start = span.start as usize;
            let new_start = entries.len();
            entries.extend_from_slice(&self.entries[start..start + span.len as usize]);
            entries.resize(new_start + span.capacity() as usize, GrantEntry::default());
            span.start = compact_id(new_start);
        }
        self.entries = entries;
        self.unused = 0;
    }

    /// Entries owned by spans (room included) plus holes: the vector's length
    /// when `spans` are all of them. For tests.
    #[cfg(test)]
    pub(super) fn accounts_for<'a>(&self, spans: impl Iterator<Item = &'a UserSpan>) -> bool {
        let owned: usize = spans.map(|span| span.capacity() as usize).sum();
        owned + self.unused == self.entries.len()
    }
}
