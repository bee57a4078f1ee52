//! Where a browser is in a sign-in (or at the account page), so that every
//! refusal of a step shows that step's own page again, with a status and
//! what was wrong: the wrong password, the throttle, a busy hasher.
//!
//! ```text
//!  Password      the sign-in form, the typed user name kept
//!  Totp          the TOTP form (same ticket)
//!  SecondFactor  a new WebAuthn ceremony over the user's credentials (+ the TOTP form beside it)
//!  Passkey       a new discoverable WebAuthn ceremony
//!  Account       the account page
//! ```

use axum::http::StatusCode;

use super::account::{SignedIn, account_page};
use super::credentials::StoredCredential;
use super::csrf::MfaTicket;
use super::error::LoginError;
use super::extract::SignInPost;
use super::flow::show_sign_in;
use super::pages::Page;
use super::sign_in::show_totp;
use super::webauthn::{SecondFactorStep, show_passkey, show_second_factor};
use crate::token::service::state::TokenServiceState;

pub(super) enum Step<'a> {
    /// The password form; `typed`: the user name to show again.
    Password {
        post: &'a SignInPost,
        typed: &'a str,
    },
    Totp {
        post: &'a SignInPost,
        ticket: &'a MfaTicket,
    },
    SecondFactor {
        step: &'a SecondFactorStep<'a>,
        credentials: &'a [StoredCredential],
    },
    Passkey {
        post: &'a SignInPost,
    },
    Account {
        account: &'a SignedIn,
    },
}

impl Step<'_> {
    /// The step's page again, saying `message`.
    pub async fn page_again(
        &self,
        state: &TokenServiceState,
        status: StatusCode,
        message: &str,
    ) -> Result<Page, LoginError> {
        let message = Some(message);
        match self {
            Step::Password { post, typed } => {
                Ok(show_sign_in(state, &post.org, &post.request, &post.browser, status, message, typed))
            }
            Step::Totp { post, ticket } => Ok(show_totp(state, post, ticket, status, message)),
            Step::SecondFactor { step, credentials } => {
                show_second_factor(state, step, credentials, status, message).await
            }
            Step::Passkey { post } => show_passkey(state, post, status, message).await,
            Step::Account { account } => account_page(state, account, status, message).await,
        }
    }

    /// Refused: the step's page again, saying why (or the fault met rendering it).
    pub async fn refused(&self, state: &TokenServiceState, status: StatusCode, message: &str) -> LoginError {
        match self.page_again(state, status, message).await {
            Ok(page) => page.into(),
            Err(error) => error,
        }
    }
}
