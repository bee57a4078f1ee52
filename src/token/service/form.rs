//! `OAuthForm`: an `application/x-www-form-urlencoded` body (RFC 6749 §3.2)
//! whose rejections are OAuth errors, not axum's plain text.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::OAuthError;

pub struct OAuthForm<T>(pub T);

impl<S, T> FromRequest<S> for OAuthForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            // RFC 6749 §3.2: parameters are sent once, form-encoded.
            Err(rejection) => Err(OAuthError::invalid_request(format!(
                "The request body is not a valid form: {}",
                rejection.body_text().chars().take(200).collect::<String>()
            ))),
        }
    }
}
