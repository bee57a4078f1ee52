//! A sign-in attempt under the throttle ([`crate::token::throttle`]): the one
//! place the login handlers check it, answer 429, and count failures. Every
//! step that checks a secret (password, TOTP code, WebAuthn assertion, the
//! password again at the account page) goes through [`Attempt`].
//!
//! ```text
//!  Attempt::begin(account, source, step) ─ throttled? ─► the step's page again: 429, "try again in N seconds", Retry-After
//!        │ allowed, and counted as a failure already (nothing checked before this)
//!        ▼
//!  check the secret (argon2id: Attempt::password_matches; busy ─► refunded, the page again: 503, Retry-After: 1)
//!        ├─ wrong ─► attempt.failed()     the count stands, against the account and the source
//!        └─ right ─► attempt.succeeded()  clears the account, takes the source's count back
//! ```

use std::time::Duration;

use axum::http::StatusCode;
use jiff::Timestamp;

use super::SourceAddress;
use super::error::LoginError;
use super::step::Step;
use crate::token::password::{MAX_PASSWORD_BYTES, PasswordError};
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{AccountKey, LoginThrottle, SourceKey, ThrottleVerdict};

/// One try at a secret, by an account from a source, that the throttle allowed.
pub(super) struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    account: AccountKey,
    source: SourceKey,
}

impl<'a> Attempt<'a> {
    /// The throttle's key of `account` (a user id, or what was typed for an unknown one) in `org`.
    pub fn key(org: &OrganizationView, account: String) -> AccountKey {
        AccountKey { organization: org.namespace.clone(), account }
    }

    /// The attempt, if neither the account nor the source is locked out at
    /// `now`; else the step's page again (429, how long to wait, Retry-After).
    /// While throttled nothing is checked, so the right secret is refused too.
    pub async fn begin(
        state: &'a TokenServiceState,
        account: AccountKey,
        source: SourceAddress,
        now: Timestamp,
        step: &Step<'_>,
    ) -> Result<Self, LoginError> {
        let throttle = &state.login().throttle;
        let source = SourceKey::from(source.0);
        match throttle.begin_attempt(&account, source, now) {
            ThrottleVerdict::Allowed => Ok(Attempt { throttle, account, source }),
            ThrottleVerdict::Throttled { retry_after } => {
                let message = format!(
                    "Too many failed sign-in attempts. Try again in {} seconds.",
                    retry_after.as_secs().max(1)
                );
                let page = step.page_again(state, StatusCode::TOO_MANY_REQUESTS, &message).await?;
                Err(page.retry_after(retry_after).into())
            }
        }
    }

    /// The secret was wrong: the failure counted when the attempt began
    /// stands, against the account and the source.
    pub fn failed(&self) {}

    /// The secret was right: the account's failures are cleared (the source's are not).
    pub fn succeeded(&self) {
        self.throttle.record_success(&self.account, self.source);
    }

    /// argon2id: whether `password` matches `hash`. `None` (an unknown
    /// account) costs the same work and never matches; a password too long
    /// to hash does not match. While every hashing slot is taken, the step's
    /// page again (503, Retry-After: 1).
    pub async fn password_matches(
        &self,
        state: &TokenServiceState,
        password: &str,
        hash: Option<&str>,
        step: &Step<'_>,
    ) -> Result<bool, LoginError> {
        // Over-long input is refused before any hashing, for a known account
        // and an unknown one alike: answering one at once and hashing for the
        // other told which accounts exist.
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let hasher = &state.login().hasher;
        let outcome = match hash {
            Some(hash) => hasher.verify(password, hash).await,
            None => {
                hasher.verify_unknown_account(password).await;
                Ok(false)
            }
        };
        match outcome {
            Ok(matches) => Ok(matches),
            Err(PasswordError::TooLong) => Ok(false),
            Err(PasswordError::Busy) => {
                self.throttle.refund(&self.account, self.source);
                let message = "We are busy. Please try again in a moment.";
                let page = step.page_again(state, StatusCode::SERVICE_UNAVAILABLE, message).await?;
                Err(page.retry_after(Duration::from_secs(1)).into())
            }
            Err(error) => Err(OAuthError::server_because("password check", error).into()),
        }
    }
}
