//! A sign-in attempt under the throttle ([`crate::token::throttle`], its
//! counters in the store, shared by every replica): the one
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
//!
//! Each outcome is also an audit event (`signIn.password`, `signIn.totp`,
//! `signIn.securityKey`, `signIn.passkey`, `account.reauthenticate`): who
//! (the user, or what was typed for an unknown account), from which
//! address and user agent, and why it failed. Throttled tries are not recorded (nothing
//! was checked, and the throttle bounds how many events a guesser makes).

use std::time::Duration;

use axum::http::StatusCode;
use jiff::Timestamp;

use super::SourceAddress;
use super::error::LoginError;
use super::step::Step;
use super::throttle::Throttle;
use crate::audit::{Actor, ActorKind, AuditContext, AuditEntry, Source, Target};
use crate::store::AuditStore as _;
use crate::token::password::{MAX_PASSWORD_BYTES, PasswordError};
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::token::throttle::{AccountKey, SourceKey, ThrottleVerdict};

/// One try at a secret, by an account from a source, that the throttle allowed.
pub(super) struct Attempt<'a> {
    state: &'a TokenServiceState,
    account: AccountKey,
    source: SourceKey,
    /// What the audit events of this attempt say.
    audit: AttemptAudit,
}

/// The audit trail's view of an attempt: which check, by whom, from where.
struct AttemptAudit {
    action: &'static str,
    /// Why a wrong secret failed, in the trail's words.
    wrong: &'static str,
    context: AuditContext,
    target: Target,
}

impl AttemptAudit {
    fn of(account: &AccountKey, source: Source, step: &Step<'_>) -> Self {
        let (action, wrong) = match step {
            Step::Password { .. } => ("signIn.password", "WrongCredentials"),
            Step::Totp { .. } => ("signIn.totp", "WrongCode"),
            Step::SecondFactor { .. } => ("signIn.securityKey", "AssertionRefused"),
            Step::Passkey { .. } => ("signIn.passkey", "AssertionRefused"),
            Step::Account { .. } => ("account.reauthenticate", "WrongPassword"),
        };
        let typed = match step {
            Step::Password { typed, .. } => Some(*typed),
            _ => None,
        };
        let (actor, target) = match account.account.strip_prefix("unknown:") {
            // Nobody: what was typed, for the trail to show what was tried.
            Some(_) => (Actor::anonymous(typed), Target::new("user", None, typed)),
            None => {
                let actor = Actor {
                    kind: ActorKind::User,
                    subject: Some(account.account.clone()),
                    name: typed.map(str::to_owned),
                    ..Actor::default()
                };
                (actor, Target::new("user", Some(&account.account), typed))
            }
        };
        Self { action, wrong, context: AuditContext::new(actor, source), target }
    }
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
        let audit_source = source.audit_source();
        let source = SourceKey::from(source.ip);
        match Throttle::of(state).begin_attempt(&account, source, now).await? {
            ThrottleVerdict::Allowed => {
                let audit = AttemptAudit::of(&account, audit_source, step);
                Ok(Attempt { state, account, source, audit })
            }
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
    /// stands, against the account and the source; it is audited.
    pub async fn failed(&self) -> Result<(), OAuthError> {
        self.record(AuditEntry::failure(self.audit.action, self.audit.target.clone(), self.audit.wrong)).await
    }

    /// The secret was right but the account may not sign in (`reason`):
    /// audited; the throttle's count stands.
    pub async fn refused(&self, reason: &str) -> Result<(), OAuthError> {
        self.record(AuditEntry::failure(self.audit.action, self.audit.target.clone(), reason)).await
    }

    /// The secret was right: the account's failures are cleared (the source's are not),
    /// and the success is audited.
    pub async fn succeeded(&self) -> Result<(), OAuthError> {
        Throttle::of(self.state).record_success(&self.account, self.source).await?;
        self.record(AuditEntry::success(self.audit.action, self.audit.target.clone())).await
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), OAuthError> {
        let store = self.state.store().with_audit(self.audit.context.clone());
        store.append_audit(&self.account.organization, entry).await?;
        Ok(())
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
                Throttle::of(self.state).refund(&self.account, self.source).await?;
                let message = "We are busy. Please try again in a moment.";
                let page = step.page_again(state, StatusCode::SERVICE_UNAVAILABLE, message).await?;
                Err(page.retry_after(Duration::from_secs(1)).into())
            }
            Err(error) => Err(OAuthError::server_because("password check", error).into()),
        }
    }
}
