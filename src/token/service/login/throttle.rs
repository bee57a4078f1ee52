//! The sign-in throttle ([`crate::token::throttle`]'s rules) over its
//! counters in the store ([`crate::store::throttle`]), shared by every
//! replica: an account guessed at through two replicas is locked after the
//! same number of failures as through one.
//!
//! ```text
//!  begin_attempt   account + source counters: checked and counted in one transaction
//!  begin_ceremony  the source's passkey-ceremony starts: checked and counted in one transaction
//!  refund          both taken back (nothing was checked: the hasher was busy)
//!  record_success  the account cleared, the source's count taken back
//! ```

use jiff::Timestamp;

use crate::store::{Store, ThrottleCounter, ThrottleScope, ThrottleStore as _};
use crate::token::service::error::OAuthError;
use crate::token::service::state::TokenServiceState;
use crate::token::throttle::{AccountKey, SourceKey, ThrottlePolicy, ThrottleVerdict};

/// The throttle as one request sees it: the store and the policy.
pub(super) struct Throttle<'a> {
    store: &'a Store,
    policy: &'a ThrottlePolicy,
}

impl<'a> Throttle<'a> {
    pub fn of(state: &'a TokenServiceState) -> Self {
        Self { store: state.store(), policy: state.login().throttle() }
    }

    /// Call before checking a secret: the verdict, and when allowed the
    /// attempt counted as a failure at once, in one store transaction.
    /// Concurrent attempts, at any replica, thus each see the ones begun
    /// before them. A right secret takes its count back with
    /// [`record_success`](Self::record_success); an attempt that checked
    /// nothing, with [`refund`](Self::refund).
    pub async fn begin_attempt(
        &self,
        account: &AccountKey,
        source: SourceKey,
        now: Timestamp,
    ) -> Result<ThrottleVerdict, OAuthError> {
        let counters = [self.account(account), self.source(&account.organization, source)];
        Ok(self.store.begin_counted(&counters, now).await?)
    }

    /// Call before storing a ceremony for someone not yet known (a passkey
    /// sign-in's start): the verdict, and when allowed the start counted
    /// against the source. Starts are not failures, but each writes a row;
    /// past the rule's free ones within its window the source waits.
    pub async fn begin_ceremony(
        &self,
        organization: &str,
        source: SourceKey,
        now: Timestamp,
    ) -> Result<ThrottleVerdict, OAuthError> {
        let counter = ThrottleCounter {
            scope: ThrottleScope::CeremonyStarts,
            organization,
            subject: source.to_string(),
            rule: &self.policy.ceremonies_per_source,
        };
        Ok(self.store.begin_counted(&[counter], now).await?)
    }

    /// Takes back an attempt [`begin_attempt`](Self::begin_attempt) counted
    /// that checked no secret (the server was too busy to hash).
    pub async fn refund(&self, account: &AccountKey, source: SourceKey) -> Result<(), OAuthError> {
        let counters = [self.account(account), self.source(&account.organization, source)];
        Ok(self.store.take_back(&counters).await?)
    }

    /// A successful sign-in clears the account's failures and takes back the
    /// one [`begin_attempt`](Self::begin_attempt) counted against the source
    /// (the source's earlier failures stay: one valid account must not buy
    /// guesses at others).
    pub async fn record_success(&self, account: &AccountKey, source: SourceKey) -> Result<(), OAuthError> {
        let source = self.source(&account.organization, source);
        Ok(self.store.clear_and_take_back(&self.account(account), &[source]).await?)
    }

    fn account<'k>(&'k self, account: &'k AccountKey) -> ThrottleCounter<'k> {
        ThrottleCounter {
            scope: ThrottleScope::Account,
            organization: &account.organization,
            subject: account.account.clone(),
            rule: &self.policy.per_account,
        }
    }

    fn source<'k>(&'k self, organization: &'k str, source: SourceKey) -> ThrottleCounter<'k> {
        ThrottleCounter {
            scope: ThrottleScope::Source,
            organization,
            subject: source.to_string(),
            rule: &self.policy.per_source,
        }
    }
}
