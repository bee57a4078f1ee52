//! The guard a service keeps in its router state, and the axum extractors
//! that use it: [`VerifiedToken`] for any valid access token, and
//! [`RequirePermission`] for one whose principal holds a permission in the
//! workspace the path names.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::check_api::CheckApi;
use crate::claims::AccessClaims;
use crate::config::{ConfigError, GuardConfig};
use crate::error::GuardError;
use crate::jwks::JwksCache;
use crate::verify::Verifier;

/// Verifies tokens for one issuer and audience. Cheap to clone; share one
/// per service (its JWKS cache is inside).
#[derive(Clone)]
pub struct Guard(Arc<Inner>);

struct Inner {
    verifier: Verifier,
    check_api: Option<CheckApi>,
    workspace_param: String,
}

impl Guard {
    pub fn new(config: GuardConfig) -> Result<Self, ConfigError> {
        let config = config.validated()?;
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::Http)?;
        let jwks = JwksCache::new(
            http.clone(),
            config.issuer.clone(),
            config.algorithms.clone(),
            config.min_jwks_refresh,
            config.jwks_max_age,
        );
        let check_api = config.check_api.clone().map(|c| CheckApi::new(http, &config.issuer, c));
        Ok(Self(Arc::new(Inner {
            verifier: Verifier::new(&config, jwks),
            check_api,
            workspace_param: config.workspace_param,
        })))
    }

    /// Verifies `token` locally (signature, `typ`, `iss`, `aud`, `exp`).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, GuardError> {
        self.0.verifier.verify(token).await
    }

    /// Verifies `token` and decides whether it may use `permission` in
    /// `workspace` (`None`: the organization as a whole): from its claims, or
    /// in check mode from the check API.
    pub async fn authorize(
        &self,
        token: &str,
        permission: &str,
        workspace: Option<&str>,
    ) -> Result<AccessClaims, GuardError> {
        let claims = self.verify(token).await?;
        if let Some(check_api) = &self.0.check_api {
            let discovery = self.0.verifier.jwks.discovery().await?;
            check_api.decide(discovery, token, permission, workspace).await?;
            return Ok(claims);
        }
        if claims.holds(permission, workspace) {
            return Ok(claims);
        }
        let description = if claims.has_permissions_claim() {
            format!("Permission {permission} is required.")
        } else {
            format!(
                "Permission {permission} is required, and the token carries no permissions: \
                 ask for scope permissions or list permissions in the client's tokenClaims."
            )
        };
        Err(GuardError::InsufficientPermission { permission: permission.to_owned(), description })
    }

    /// How many times the issuer's JWKS has been fetched (for metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.0.verifier.jwks.fetches()
    }
}

/// The claims of a valid access token for this service. In check mode too,
/// this is local verification only: use [`RequirePermission`] for decisions
/// that must see revocation.
#[derive(Clone, Debug)]
pub struct VerifiedToken(pub AccessClaims);

impl<S> FromRequestParts<S> for VerifiedToken
where
    Guard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = GuardError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let guard = Guard::from_ref(state);
        let token = bearer_token(parts)?;
        Ok(Self(guard.verify(token).await?))
    }
}

/// A permission a route requires, named at the type level; declare one with
/// [`permission!`](crate::permission).
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

/// Declares a [`Permission`]: `permission!(pub JourneysPublish = "journeys.publish");`
#[macro_export]
macro_rules! permission {
    ($vis:vis $name:ident = $permission:literal) => {
        $vis struct $name;
        impl $crate::Permission for $name {
            const NAME: &'static str = $permission;
        }
    };
}

/// Admits the request only if its bearer token's principal holds `P` in the
/// workspace of the path parameter (`{workspace}` unless configured
/// otherwise), or in the whole organization on a route without one.
pub struct RequirePermission<P: Permission> {
    pub claims: AccessClaims,
    /// The workspace the decision was made for.
    pub workspace: Option<String>,
    permission: PhantomData<P>,
}

impl<S, P> FromRequestParts<S> for RequirePermission<P>
where
    Guard: FromRef<S>,
    S: Send + Sync,
    P: Permission,
{
    type Rejection = GuardError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let guard = Guard::from_ref(state);
        let workspace = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params
                .iter()
                .find(|(name, _)| *name == guard.0.workspace_param)
                .map(|(_, value)| value.to_owned()),
            Err(_) => None,
        };
        let token = bearer_token(parts)?;
        let claims = guard.authorize(token, P::NAME, workspace.as_deref()).await?;
        Ok(Self { claims, workspace, permission: PhantomData })
    }
}

/// The bearer token of a request (RFC 6750 §2.1).
fn bearer_token(parts: &Parts) -> Result<&str, GuardError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else { return Err(GuardError::MissingToken) };
    let value = value.to_str().map_err(|_| GuardError::invalid("The Authorization header is malformed."))?;
    let (scheme, token) = value.split_once(' ').ok_or(GuardError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GuardError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() { Err(GuardError::MissingToken) } else { Ok(token) }
}
