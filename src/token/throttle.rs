//! Throttling of password guessing, per account and per source address.
//!
//! ```text
//!   failures:  1 … free_failures        free_failures+1   +2    +3  …
//!   lockout:   none                     base              2·base 4·base … ≤ max_lockout
//! ```
//!
//! Each failed sign-in counts against the account tried and against the
//! source address (IPv6 by /64, so rotating addresses inside one network does
//! not help). Past a number of free failures, each further failure locks the
//! key for an exponentially growing time; while either key is locked, sign-in
//! is refused without checking the password, so the right password does not
//! get through either. A success clears the account (not the source: one
//! valid account must not buy unlimited guesses at others).
//!
//! Pure: time is passed in. Memory is bounded: each table keeps at most
//! `max_entries`; idle entries are forgotten, and when a table is full the
//! oldest go first.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// How quickly guessing is slowed down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Failures allowed before any lockout.
    pub free_failures: u32,
    /// Lockout after the first failure past the free ones; doubles with each further one.
    pub base_lockout: Duration,
    pub max_lockout: Duration,
    /// An entry without a failure for this long (and not locked) is forgotten.
    pub forget_after: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub per_account: ThrottleRule,
    /// More lenient: many people may share one address (NAT, proxies).
    pub per_source: ThrottleRule,
    /// Passkey sign-ins started without an account (each stores a ceremony):
    /// every start counts, so that one source cannot fill the store.
    pub ceremonies_per_source: ThrottleRule,
    /// Bound of each table.
    pub max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_account: ThrottleRule {
                free_failures: 5,
                base_lockout: Duration::from_secs(30),
                max_lockout: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60 * 60),
            },
            per_source: ThrottleRule {
                free_failures: 50,
                base_lockout: Duration::from_secs(30),
                max_lockout: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60 * 60),
            },
            ceremonies_per_source: ThrottleRule {
                free_failures: 100,
                base_lockout: Duration::from_secs(30),
                max_lockout: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60),
            },
            max_entries: 100_000,
        }
    }
}

/// Whether a sign-in may be attempted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleVerdict {
    Allowed,
    Throttled { retry_after: Duration },
}

/// What the throttle is keyed on for an account: the organization and the
/// account (the user id when it exists, else what was typed, lower-cased).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey {
    pub organization: String,
    pub account: String,
}

/// A source address, with IPv6 reduced to its /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => SourceKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    SourceKey(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

/// The throttle of one process. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    tables: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    accounts: HashMap<AccountKey, Entry>,
    sources: HashMap<SourceKey, Entry>,
    ceremony_starts: HashMap<SourceKey, Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Timestamp,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, tables: Mutex::new(Tables::default()) }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Whether an attempt would be allowed now; the longer of the two lockouts wins.
    pub fn check(&self, account: &AccountKey, source: SourceKey, now: Timestamp) -> ThrottleVerdict {
        self.verdict(&self.lock(), account, source, now)
    }

    /// Call before checking a secret: the verdict, and when allowed the
    /// attempt counted as a failure at once, in one step. Concurrent attempts
    /// thus each see the ones begun before them, so a burst sent before any
    /// password has been hashed is throttled as a sequence would be (counting
    /// after the hash let a hundred parallel guesses through). A right secret
    /// takes its count back with [`record_success`](Self::record_success); an
    /// attempt that checked nothing, with [`refund`](Self::refund).
    pub fn begin_attempt(&self, account: &AccountKey, source: SourceKey, now: Timestamp) -> ThrottleVerdict {
        let mut tables = self.lock();
        let verdict = self.verdict(&tables, account, source, now);
        if verdict == ThrottleVerdict::Allowed {
            let max = self.policy.max_entries;
            bump(&mut tables.accounts, account.clone(), &self.policy.per_account, max, now);
            bump(&mut tables.sources, source, &self.policy.per_source, max, now);
        }
        verdict
    }

    /// Call before storing a ceremony for someone not yet known (a passkey
    /// sign-in's start): the verdict, and when allowed the start counted
    /// against the source. Starts are not failures, but each writes a row;
    /// past the rule's free ones within its window the source waits.
    pub fn begin_ceremony(&self, source: SourceKey, now: Timestamp) -> ThrottleVerdict {
        let mut tables = self.lock();
        let rule = &self.policy.ceremonies_per_source;
        if let Some(retry_after) = tables.ceremony_starts.get(&source).and_then(|e| locked_for(e, rule, now))
        {
            return ThrottleVerdict::Throttled { retry_after };
        }
        bump(&mut tables.ceremony_starts, source, rule, self.policy.max_entries, now);
        ThrottleVerdict::Allowed
    }

    /// Takes back an attempt [`begin_attempt`](Self::begin_attempt) counted
    /// that checked no secret (the server was too busy to hash).
    pub fn refund(&self, account: &AccountKey, source: SourceKey) {
        let mut tables = self.lock();
        if let Some(entry) = tables.accounts.get_mut(account) {
            entry.failures = entry.failures.saturating_sub(1);
        }
        if let Some(entry) = tables.sources.get_mut(&source) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    fn verdict(
        &self,
        tables: &Tables,
        account: &AccountKey,
        source: SourceKey,
        now: Timestamp,
    ) -> ThrottleVerdict {
        let by_account =
            tables.accounts.get(account).and_then(|e| locked_for(e, &self.policy.per_account, now));
        let by_source = tables.sources.get(&source).and_then(|e| locked_for(e, &self.policy.per_source, now));
        match by_account.max(by_source) {
            Some(retry_after) => ThrottleVerdict::Throttled { retry_after },
            None => ThrottleVerdict::Allowed,
        }
    }

    /// Counts a failed password (or second factor) against both keys.
    pub fn record_failure(&self, account: &AccountKey, source: SourceKey, now: Timestamp) {
        let mut tables = self.lock();
        let max = self.policy.max_entries;
        bump(&mut tables.accounts, account.clone(), &self.policy.per_account, max, now);
        bump(&mut tables.sources, source, &self.policy.per_source, max, now);
    }

    /// A successful sign-in clears the account's failures and takes back the
    /// one [`begin_attempt`](Self::begin_attempt) counted against the source
    /// (the source's earlier failures stay: one valid account must not buy
    /// guesses at others).
    pub fn record_success(&self, account: &AccountKey, source: SourceKey) {
        let mut tables = self.lock();
        tables.accounts.remove(account);
        if let Some(entry) = tables.sources.get_mut(&source) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    /// Entries held (accounts, sources): for tests and metrics.
    pub fn entry_counts(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.accounts.len(), tables.sources.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a table half-updated in
        // a way that matters: keep going with what is there.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long the entry is still locked, if at all.
fn locked_for(entry: &Entry, rule: &ThrottleRule, now: Timestamp) -> Option<Duration> {
    let lockout = lockout(entry.failures, rule)?;
    let until = entry.last_failure.checked_add(lockout).ok()?;
    let left = now.duration_until(until);
    left.is_positive().then(|| left.unsigned_abs())
}

fn lockout(failures: u32, rule: &ThrottleRule) -> Option<Duration> {
    let past_free = failures.checked_sub(rule.free_failures).filter(|n| *n > 0)?;
    let doublings = (past_free - 1).min(30);
    Some(rule.base_lockout.saturating_mul(1 << doublings).min(rule.max_lockout))
}

fn is_forgotten(entry: &Entry, rule: &ThrottleRule, now: Timestamp) -> bool {
    let idle = entry.last_failure.duration_until(now);
    idle.is_positive() && idle.unsigned_abs() >= rule.forget_after && locked_for(entry, rule, now).is_none()
}

fn bump<K: Eq + Hash>(
    table: &mut HashMap<K, Entry>,
    key: K,
    rule: &ThrottleRule,
    max_entries: usize,
    now: Timestamp,
) {
    if let Some(entry) = table.get_mut(&key) {
        if is_forgotten(entry, rule, now) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        return;
    }
    if table.len() >= max_entries.max(1) {
        evict(table, rule, max_entries.max(1), now);
    }
    table.insert(key, Entry { failures: 1, last_failure: now });
}

/// Drops forgotten entries; if the table is still full, the tenth with the
/// oldest failures (amortises the scan over many inserts).
fn evict<K: Eq + Hash>(
    table: &mut HashMap<K, Entry>,
    rule: &ThrottleRule,
    max_entries: usize,
    now: Timestamp,
) {
    table.retain(|_, entry| !is_forgotten(entry, rule, now));
    if table.len() < max_entries {
        return;
    }
    let mut ages: Vec<Timestamp> = table.values().map(|e| e.last_failure).collect();
    let drop_count = (max_entries / 10).max(1).min(ages.len());
    let (_, cutoff, _) = ages.select_nth_unstable(drop_count - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    table.retain(|_, entry| {
        if dropped < drop_count && entry.last_failure <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn policy() -> ThrottlePolicy {
        let rule = |free| ThrottleRule {
            free_failures: free,
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        };
        ThrottlePolicy {
            per_account: rule(3),
            per_source: rule(10),
            ceremonies_per_source: rule(2),
            max_entries: 100,
        }
    }

    fn account(name: &str) -> AccountKey {
        AccountKey { organization: "acme".into(), account: name.into() }
    }

    fn ip(last: u8) -> SourceKey {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)).into()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn free_failures_then_an_exponentially_growing_lockout() {
        let throttle = LoginThrottle::new(policy());
        let alice = account("alice");
        for _ in 0..3 {
            assert_eq!(throttle.check(&alice, ip(1), at(0)), ThrottleVerdict::Allowed);
            throttle.record_failure(&alice, ip(1), at(0));
        }
        assert_eq!(throttle.check(&alice, ip(1), at(0)), ThrottleVerdict::Allowed, "3 free failures");
        throttle.record_failure(&alice, ip(1), at(0));
        assert_eq!(
            throttle.check(&alice, ip(2), at(1)),
            ThrottleVerdict::Throttled { retry_after: Duration::from_secs(9) },
            "the account is locked from any address"
        );
        assert_eq!(throttle.check(&alice, ip(1), at(10)), ThrottleVerdict::Allowed, "lockout over");
        throttle.record_failure(&alice, ip(1), at(10));
        assert_eq!(
            throttle.check(&alice, ip(1), at(10)),
            ThrottleVerdict::Throttled { retry_after: Duration::from_secs(20) }
        );
        for _ in 0..10 {
            throttle.record_failure(&alice, ip(1), at(30));
        }
        assert_eq!(
            throttle.check(&alice, ip(1), at(30)),
            ThrottleVerdict::Throttled { retry_after: Duration::from_secs(60) },
            "capped at max_lockout"
        );
    }

    #[test]
    fn other_accounts_are_not_affected_but_a_guessing_source_is_slowed_everywhere() {
        let throttle = LoginThrottle::new(policy());
        for n in 0..4 {
            throttle.record_failure(&account("alice"), ip(1), at(n));
        }
        assert_eq!(throttle.check(&account("bob"), ip(2), at(5)), ThrottleVerdict::Allowed);
        // Spraying one guess at many accounts from one address trips the source rule.
        for n in 0..7 {
            throttle.record_failure(&account(&format!("user{n}")), ip(1), at(5));
        }
        assert!(matches!(throttle.check(&account("bob"), ip(1), at(5)), ThrottleVerdict::Throttled { .. }));
        assert_eq!(throttle.check(&account("bob"), ip(2), at(5)), ThrottleVerdict::Allowed);
    }

    #[test]
    fn attempts_begun_together_are_throttled_as_a_sequence() {
        let throttle = LoginThrottle::new(policy());
        let alice = account("alice");
        // Nothing is recorded between the beginnings, as when every request
        // waits for the hasher: the fifth on is refused all the same.
        let verdicts: Vec<_> = (0..20).map(|_| throttle.begin_attempt(&alice, ip(1), at(0))).collect();
        let allowed = verdicts.iter().filter(|v| **v == ThrottleVerdict::Allowed).count();
        assert_eq!(allowed, 4, "3 free failures and the one that starts the lockout: {verdicts:?}");
    }

    #[test]
    fn ceremony_starts_past_the_free_ones_wait_per_source() {
        let throttle = LoginThrottle::new(policy());
        let allowed =
            (0..10).filter(|_| throttle.begin_ceremony(ip(1), at(0)) == ThrottleVerdict::Allowed).count();
        assert_eq!(allowed, 3, "2 free and the one that starts the wait");
        assert_eq!(throttle.begin_ceremony(ip(2), at(0)), ThrottleVerdict::Allowed, "another source");
    }

    #[test]
    fn a_success_clears_the_account() {
        let throttle = LoginThrottle::new(policy());
        for _ in 0..3 {
            throttle.record_failure(&account("alice"), ip(1), at(0));
        }
        throttle.record_success(&account("alice"), ip(1));
        throttle.record_failure(&account("alice"), ip(1), at(1));
        assert_eq!(throttle.check(&account("alice"), ip(1), at(1)), ThrottleVerdict::Allowed);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = LoginThrottle::new(policy());
        for _ in 0..3 {
            throttle.record_failure(&account("alice"), ip(1), at(0));
        }
        throttle.record_failure(&account("alice"), ip(1), at(700));
        assert_eq!(throttle.check(&account("alice"), ip(1), at(700)), ThrottleVerdict::Allowed);
    }

    #[test]
    fn ipv6_addresses_of_one_network_share_a_budget() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::from(a), SourceKey::from(b));
        assert_ne!(SourceKey::from(a), SourceKey::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(SourceKey::from(mapped), ip(1));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_accounts_and_sources() {
        let throttle = LoginThrottle::new(policy());
        for n in 0..10_000u32 {
            let source: SourceKey = IpAddr::V4(Ipv4Addr::from(n)).into();
            throttle.record_failure(&account(&format!("user{n}")), source, at(i64::from(n)));
        }
        let (accounts, sources) = throttle.entry_counts();
        assert!(accounts <= 100 && sources <= 100, "{accounts} accounts, {sources} sources");
        // The newest entries are the ones kept.
        let newest = account("user9999");
        for _ in 0..3 {
            throttle.record_failure(&newest, ip(7), at(10_000));
        }
        assert!(matches!(throttle.check(&newest, ip(7), at(10_000)), ThrottleVerdict::Throttled { .. }));
    }
}
