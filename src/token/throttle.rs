//! Throttling of password guessing, per account and per source address: the
//! rules, pure. The counters live in the store ([`crate::store::throttle`]),
//! so that every replica of the token service counts against the same ones.
//!
//! ```text
//!   failures:  1 … free_failures        free_failures+1   +2    +3  …
//!   lockout:   none                     base              2·base 4·base … ≤ max_lockout
//! ```
//!
//! Each failed sign-in counts against the account tried and against the
//! source address in that organization (IPv6 by /64, so rotating addresses
//! inside one network does not help; behind trusted reverse proxies, the
//! client they forwarded). Guessing at one organization does not slow the
//! users of another, and a source waits at most a minute by default.
//! Past a number of free failures, each further failure locks the
//! key for an exponentially growing time; while either key is locked, sign-in
//! is refused without checking the password, so the right password does not
//! get through either. A success clears the account (not the source: one
//! valid account must not buy unlimited guesses at others).
//!
//! An attempt is counted when it begins, before any secret is checked, and
//! in the same store transaction as the check (finding 1 of the security
//! review: counting after the hash let a hundred parallel guesses through).
//! Time is passed in; a counter idle for `forget_after` (and not locked)
//! starts again from nothing, and the store may then delete it.

use std::fmt;
use std::net::IpAddr;
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
    /// A counter without a failure for this long (and not locked) is forgotten.
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
            // A source slows down rather than locks out: many people may
            // share one address, and a long lockout of it is theirs too.
            per_source: ThrottleRule {
                free_failures: 50,
                base_lockout: Duration::from_secs(5),
                max_lockout: Duration::from_secs(60),
                forget_after: Duration::from_secs(60 * 60),
            },
            ceremonies_per_source: ThrottleRule {
                free_failures: 100,
                base_lockout: Duration::from_secs(30),
                max_lockout: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60),
            },
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

/// The address as the store keys it (an IPv6 network by its first address).
impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One counter's state: failures (or starts) counted, and when the last was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    pub last_failure: Timestamp,
}

impl ThrottleRule {
    /// How long `counter` is still locked at `now`, if at all.
    pub fn locked_for(&self, counter: &Counter, now: Timestamp) -> Option<Duration> {
        let lockout = self.lockout(counter.failures)?;
        let until = counter.last_failure.checked_add(lockout).ok()?;
        let left = now.duration_until(until);
        left.is_positive().then(|| left.unsigned_abs())
    }

    /// `counter` with one more failure at `now` (a forgotten one starts again).
    pub fn counted(&self, counter: Counter, now: Timestamp) -> Counter {
        let failures = if self.is_forgotten(&counter, now) { 0 } else { counter.failures };
        Counter { failures: failures.saturating_add(1), last_failure: now }
    }

    /// When `counter` stops mattering: idle for `forget_after` and no longer
    /// locked. The store may delete it then.
    pub fn forgotten_at(&self, counter: &Counter) -> Timestamp {
        let idle = counter.last_failure.checked_add(self.forget_after).unwrap_or(Timestamp::MAX);
        let unlocked = self
            .lockout(counter.failures)
            .and_then(|lockout| counter.last_failure.checked_add(lockout).ok())
            .unwrap_or(counter.last_failure);
        idle.max(unlocked)
    }

    fn is_forgotten(&self, counter: &Counter, now: Timestamp) -> bool {
        now >= self.forgotten_at(counter)
    }

    fn lockout(&self, failures: u32) -> Option<Duration> {
        let past_free = failures.checked_sub(self.free_failures).filter(|n| *n > 0)?;
        let doublings = (past_free - 1).min(30);
        Some(self.base_lockout.saturating_mul(1 << doublings).min(self.max_lockout))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn rule() -> ThrottleRule {
        ThrottleRule {
            free_failures: 3,
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn failures(rule: &ThrottleRule, times: &[i64]) -> Counter {
        let start = Counter { failures: 0, last_failure: at(times[0]) };
        times.iter().fold(start, |counter, t| rule.counted(counter, at(*t)))
    }

    #[test]
    fn free_failures_then_an_exponentially_growing_lockout() {
        let rule = rule();
        assert_eq!(rule.locked_for(&failures(&rule, &[0, 0, 0]), at(0)), None, "3 free failures");
        let fourth = failures(&rule, &[0, 0, 0, 0]);
        assert_eq!(rule.locked_for(&fourth, at(1)), Some(Duration::from_secs(9)));
        assert_eq!(rule.locked_for(&fourth, at(10)), None, "lockout over");
        let fifth = rule.counted(fourth, at(10));
        assert_eq!(rule.locked_for(&fifth, at(10)), Some(Duration::from_secs(20)));
        let many = (0..10).fold(fifth, |c, _| rule.counted(c, at(30)));
        assert_eq!(rule.locked_for(&many, at(30)), Some(Duration::from_secs(60)), "capped at max_lockout");
    }

    #[test]
    fn old_failures_are_forgotten_but_not_while_locked() {
        let rule = ThrottleRule { max_lockout: Duration::from_secs(6000), ..rule() };
        let three = failures(&rule, &[0, 0, 0]);
        assert_eq!(rule.forgotten_at(&three), at(600));
        assert_eq!(rule.counted(three, at(700)).failures, 1, "idle past forget_after: starts again");
        let locked = (0..10).fold(three, |c, _| rule.counted(c, at(0)));
        assert_eq!(rule.forgotten_at(&locked), at(5120), "forgotten only once the lockout is over");
        assert_eq!(rule.counted(locked, at(700)).failures, 14);
    }

    #[test]
    fn ipv6_addresses_of_one_network_share_a_budget() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::from(a), SourceKey::from(b));
        assert_ne!(SourceKey::from(a), SourceKey::from(c));
        assert_eq!(SourceKey::from(a).to_string(), "2001:db8:1:2::");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(SourceKey::from(mapped), SourceKey::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    }
}
