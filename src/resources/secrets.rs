//! The generated secrets each kind asks for, named the same way by the
//! operator (owned Kubernetes Secrets) and standalone mode (files in the data
//! directory).
//!
//! ```text
//!   IdentityProvider (scim.enabled) ──► {idp}-scim-token        key `token`
//!   OAuthClient (Confidential, no clientSecretRef) ──► {client}-client-secret  key `client-secret`
//! ```

use crate::api::{ClientType, OAuthClient};

/// Component label of the SCIM token Secret.
pub const SCIM_TOKEN_COMPONENT: &str = "scim-token";
/// Key of the bearer token in its Secret.
pub const SCIM_TOKEN_KEY: &str = "token";

/// Component label of a generated client-secret Secret.
pub const CLIENT_SECRET_COMPONENT: &str = "client-secret";
/// Key of a generated client secret in its Secret (also `clientSecretRef`'s default key).
pub const CLIENT_SECRET_KEY: &str = "client-secret";

/// Name of the Secret with an IdentityProvider's SCIM bearer token.
pub fn scim_token_secret_name(idp: &str) -> String {
    format!("{idp}-scim-token")
}

/// Name of the Secret the operator generates a client secret into.
pub fn generated_secret_name(client: &str) -> String {
    format!("{client}-client-secret")
}

/// Which Secret holds the client's secret, and whether the operator makes it.
pub fn secret_plan(client: &OAuthClient, name: &str) -> Option<(String, String, bool)> {
    match (&client.spec.client_type, &client.spec.client_secret_ref) {
        (ClientType::Public, _) => None,
        (ClientType::Confidential, Some(reference)) => {
            Some((reference.name.clone(), reference.key.clone(), false))
        }
        (ClientType::Confidential, None) => {
            Some((generated_secret_name(name), CLIENT_SECRET_KEY.to_owned(), true))
        }
    }
}
