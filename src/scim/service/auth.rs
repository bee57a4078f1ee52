//! Who is calling: the bearer token of an IdentityProvider of the
//! organization named in the path, with SCIM enabled (RFC 7644 §2). Runs as
//! an extractor before any body extractor, so nothing is read or parsed for
//! a caller that is not authorized.
//!
//! ```text
//!  /o/{organization}/… ──► Organization by name ──► namespace
//!  Authorization: Bearer t ──► sha256:<hex>(t) ──► scim_tokens of THAT namespace (constant time)
//!                                               └─► IdentityProvider, scim_enabled
//!  (one query: `ScimStore::scim_token_owner`)
//!  spec.provisioning.mode ──► ScimWriter only when `scim`
//! ```
//!
//! Unknown organization, missing or wrong token, another organization's
//! token, SCIM disabled: all the same 401, so a token cannot probe which
//! organizations exist.

use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::{PasswordPolicy, ProvisioningMode};
use crate::audit::{Actor, AuditContext, Source};
use crate::secret::SecretHash;
use crate::store::{ScimStore, Store};

use super::ScimState;
use super::error::{AnsweredError, ScimError};

/// An authorized SCIM client.
#[derive(Clone, Debug)]
pub struct ScimCaller {
    /// The Organization's name, as in the path.
    pub organization: String,
    /// Its namespace: the store's key for its users and groups.
    pub namespace: String,
    pub identity_provider: String,
    pub provisioning: ProvisioningMode,
    /// The Organization's password sign-in policy: what a pushed `password` becomes.
    pub password_policy: PasswordPolicy,
    /// The store, recording this IdentityProvider (and the request's
    /// address) as who acts in the audit events of its writes.
    pub store: Store,
}

/// A caller allowed to write: the organization's provisioning mode is `scim`.
#[derive(Clone, Debug)]
pub struct ScimWriter(pub ScimCaller);

/// Where the extractor leaves the caller for [`record_sync_health`].
#[derive(Clone, Default)]
struct CallerSlot(Arc<Mutex<Option<(String, String)>>>);

impl FromRequestParts<ScimState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::NoEndpoint(parts.uri.path().to_owned()))?;
        let organization = params
            .iter()
            .find(|(name, _)| *name == "organization")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| ScimError::NoEndpoint(parts.uri.path().to_owned()))?;
        let token = bearer_token(parts).ok_or(ScimError::Unauthorized)?;
        let owner = state
            .store
            .scim_token_owner(&organization, &SecretHash::of(token).to_string())
            .await?
            .ok_or(ScimError::Unauthorized)?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>()
            && let Ok(mut slot) = slot.0.lock()
        {
            *slot = Some((owner.namespace.clone(), owner.identity_provider.clone()));
        }
        let audit =
            AuditContext::new(Actor::identity_provider(&owner.identity_provider), Source::of_request(parts));
        let spec: serde_json::Value = serde_json::from_str(&owner.organization_spec_json).unwrap_or_default();
        Ok(ScimCaller {
            organization,
            namespace: owner.namespace,
            identity_provider: owner.identity_provider,
            provisioning: provisioning_mode(&spec),
            password_policy: password_policy(&spec),
            store: state.store.with_audit(audit),
        })
    }
}

impl FromRequestParts<ScimState> for ScimWriter {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let caller = ScimCaller::from_request_parts(parts, state).await?;
        match caller.provisioning {
            ProvisioningMode::Scim => Ok(ScimWriter(caller)),
            mode => {
                let mode = match mode {
                    ProvisioningMode::Jit => "jit",
                    _ => "disabled",
                };
                Err(ScimError::Forbidden(format!(
                    "organization {} has spec.provisioning.mode `{mode}`: SCIM may read but not write. \
                     Set it to `scim` to make this identity provider the authority for users and groups",
                    caller.organization
                )))
            }
        }
    }
}

/// `Authorization: Bearer <token>` (scheme in any case, RFC 6750 §2.1).
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The mode of the Organization's `spec.provisioning` (the CRD default, `disabled`, if unset).
fn provisioning_mode(spec: &serde_json::Value) -> ProvisioningMode {
    spec.get("provisioning")
        .and_then(|provisioning| provisioning.get("mode").cloned())
        .and_then(|mode| serde_json::from_value(mode).ok())
        .unwrap_or_default()
}

/// The Organization's `spec.authentication.password` (the CRD defaults, password
/// sign-in enabled, if unset).
fn password_policy(spec: &serde_json::Value) -> PasswordPolicy {
    spec.get("authentication")
        .and_then(|authentication| authentication.get("password").cloned())
        .and_then(|policy| serde_json::from_value(policy).ok())
        .unwrap_or_default()
}

/// Middleware: after an authorized request, counts it (and the error it was
/// answered with) in the metrics and, batched, in the IdentityProvider's
/// sync health.
pub(super) async fn record_sync_health(
    State(state): State<ScimState>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let caller = slot.0.lock().ok().and_then(|mut caller| caller.take());
    if let Some((namespace, identity_provider)) = caller {
        let error = response.extensions().get::<AnsweredError>().map(|answered| answered.0.as_str());
        state.metrics.observe(&namespace, &identity_provider, response.status().as_u16());
        state.sync_health.count(&state.store, namespace, identity_provider, error, crate::store::now_ms());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the caller reads: a stored spec, or nothing when it is not JSON.
    fn spec(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_default()
    }

    #[test]
    fn provisioning_mode_defaults_to_disabled() {
        assert_eq!(provisioning_mode(&spec("{}")), ProvisioningMode::Disabled);
        assert_eq!(provisioning_mode(&spec(r#"{"provisioning":{"mode":"scim"}}"#)), ProvisioningMode::Scim);
        assert_eq!(provisioning_mode(&spec(r#"{"provisioning":{"mode":"jit"}}"#)), ProvisioningMode::Jit);
        assert_eq!(provisioning_mode(&spec("not json")), ProvisioningMode::Disabled);
    }

    #[test]
    fn password_policy_defaults_to_enabled() {
        assert!(password_policy(&spec("{}")).enabled);
        let off = password_policy(&spec(r#"{"authentication":{"password":{"enabled":false}}}"#));
        assert!(!off.enabled);
        let longer = password_policy(&spec(r#"{"authentication":{"password":{"minLength":20}}}"#));
        assert_eq!((longer.enabled, longer.min_length), (true, 20));
    }
}
