//! Why a sign-in or account request did not go on, and how each reason is
//! answered: the one error type of the login handlers, rendering itself.
//!
//! ```text
//!  Refused(page)      the user's mistake or the policy: the page again saying why, with its status
//!  ToClient(location) RFC 6749 §4.1.2.1: the client's verified redirect URI, with `error`
//!  Server(OAuthError) ours: the source chain logged once, a generic page (500)
//!  Path, Body         axum could not read the request: its own answer
//! ```

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::response::{IntoResponse, Response};

use super::flow::see_other;
use super::pages::Page;
use crate::error_chain::ErrorChain;
use crate::store::StoreError;
use crate::token::service::error::OAuthError;

#[derive(Debug, thiserror::Error)]
pub(super) enum LoginError {
    /// Shown to the user: a form again with what was wrong, or a notice.
    #[error("refused with a page ({})", .0.status())]
    Refused(Page),

    /// Sent back to the client (RFC 6749 §4.1.2.1): a 303 to `location`.
    #[error("sent back to the client")]
    ToClient { location: String },

    /// A fault of ours.
    #[error("sign-in failed on our side")]
    Server(#[source] OAuthError),

    #[error(transparent)]
    Path(#[from] PathRejection),

    #[error(transparent)]
    Body(#[from] BytesRejection),
}

impl From<Page> for LoginError {
    fn from(page: Page) -> Self {
        LoginError::Refused(page)
    }
}

impl From<OAuthError> for LoginError {
    fn from(error: OAuthError) -> Self {
        LoginError::Server(error)
    }
}

impl From<StoreError> for LoginError {
    fn from(error: StoreError) -> Self {
        LoginError::Server(error.into())
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match self {
            LoginError::Refused(page) => page.into_response(),
            LoginError::ToClient { location } => see_other(&location, &[]),
            LoginError::Server(_) => {
                tracing::error!(error = %ErrorChain(&self), "sign-in failed on our side");
                Page::server_error().into_response()
            }
            LoginError::Path(rejection) => rejection.into_response(),
            LoginError::Body(rejection) => rejection.into_response(),
        }
    }
}
