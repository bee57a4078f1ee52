//! The organization's MFA policy, asked of a sign-in each time it is used:
//! at the password step, and again when a browser's session is reused at
//! `/authorize` and when a refresh token is redeemed. Roles change after
//! sign-in; a user signed in with a password alone who has since become
//! privileged must not keep getting tokens that say so.
//!
//! ```text
//!  required: Always ─────────────────────────► a second factor is asked for
//!            PrivilegedRoles + holds a catalog permission marked privileged (any scope, now)
//!            Never ──────────────────────────► not asked for
//!  a sign-in satisfies the policy: its amr has "mfa", or the policy does not ask now
//! ```

use std::collections::BTreeSet;

use crate::api::MfaRequirement;
use crate::authz::Principal;
use crate::token::service::error::OAuthError;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// Whether the policy asks `user_name` for a second factor now.
pub async fn second_factor_required(
    state: &TokenServiceState,
    org: &OrganizationView,
    user_name: &str,
) -> Result<bool, OAuthError> {
    match org.spec.authentication.mfa.required {
        MfaRequirement::Always => Ok(true),
        MfaRequirement::Never => Ok(false),
        MfaRequirement::PrivilegedRoles => holds_privileged_permission(state, org, user_name).await,
    }
}

/// Whether a sign-in whose methods were `amr` (RFC 8176) may still be used
/// for `user_name`: it had a second factor, or the policy asks for none now.
pub async fn sign_in_satisfies(
    state: &TokenServiceState,
    org: &OrganizationView,
    user_name: &str,
    amr: &[String],
) -> Result<bool, OAuthError> {
    if amr.iter().any(|method| method == "mfa") {
        return Ok(true);
    }
    Ok(!second_factor_required(state, org, user_name).await?)
}

/// Whether any role the user holds, in any scope, grants a permission the
/// catalog marks privileged. Answered by the access core.
async fn holds_privileged_permission(
    state: &TokenServiceState,
    org: &OrganizationView,
    user_name: &str,
) -> Result<bool, OAuthError> {
    let privileged: BTreeSet<&str> =
        org.spec.permissions.iter().filter(|p| p.privileged).map(|p| p.name.as_str()).collect();
    if privileged.is_empty() {
        return Ok(false);
    }
    let snapshot = state.access_index(org).await?;
    let principal = Principal::user(user_name);
    let now = state.now().as_second();
    let scopes: BTreeSet<_> =
        snapshot.index.assigned_roles(&principal, now).iter().map(|grant| grant.scope().clone()).collect();
    Ok(scopes.iter().any(|scope| {
        snapshot
            .index
            .effective_permissions(&principal, scope, now)
            .iter()
            .any(|permission| privileged.contains(permission))
    }))
}
