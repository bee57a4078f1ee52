//! `RequirePermission<P>`: an axum extractor that admits a request only if it
//! carries one of our access tokens whose principal holds permission `P` in
//! the organization scope, decided by the access core.
//!
//! ```text
//!  Authorization: Bearer <jwt> ──► jwt::verify against the issuer's own key set
//!      (alg allow-list ES256/EdDSA/RS256, kid only among our keys, typ at+jwt,
//!       iss = issuer, aud ∋ the API's audience, exp/iat)
//!   ──► jti not revoked (GrantStore::is_access_token_revoked)
//!   ──► principal: sub = client_id → Client, else the user (must be active)
//!   ──► AccessIndex::check(principal, P::NAME, organization, now)
//!   ──► handler gets the claims and the grant's explanation; else 401 / 403
//! ```
//!
//! The API's audience is the issuer identifier itself: a client that calls
//! Portcullis's own APIs lists the issuer URL among its `audiences`. After the
//! signature, the token's `jti` is looked up among revoked access tokens
//! (RFC 7009 revocation, a reused code): a revoked token is refused here as
//! introspection reports it inactive.

use std::future::Future;
use std::marker::PhantomData;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::error::OAuthError;
use super::state::{OrganizationView, TokenServiceState};
use super::verify::bearer_token;
use crate::authz::{Decision, Principal, Scope};
use crate::store::UserStore as _;
use crate::token::claims::AccessTokenClaims;
use crate::token::jwt::{self, TokenType, Validation};

/// A permission a route requires, named at the type level.
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

/// Where an extractor finds the organization's keys, issuer and access index.
pub trait PermissionAuthority: Send + Sync {
    /// Verifies `token` for the organization named `organization` and checks
    /// `permission` in the organization scope.
    fn authorize(
        &self,
        organization: &str,
        token: &str,
        permission: &'static str,
    ) -> impl Future<Output = Result<Authorized, OAuthError>> + Send;
}

/// What a permitted request learns about its caller.
#[derive(Clone, Debug)]
pub struct Authorized {
    pub organization: String,
    pub principal: Principal,
    pub claims: AccessTokenClaims,
    /// The access core's explanation of the grant (`allowed by assignment …`).
    pub reason: String,
}

/// Admits the request only if its bearer token's principal holds `P`.
pub struct RequirePermission<P: Permission> {
    pub authorized: Authorized,
    permission: PhantomData<P>,
}

impl<P: Permission> std::ops::Deref for RequirePermission<P> {
    type Target = Authorized;

    fn deref(&self) -> &Authorized {
        &self.authorized
    }
}

impl<S, P> FromRequestParts<S> for RequirePermission<P>
where
    S: PermissionAuthority,
    P: Permission,
{
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| OAuthError::internal("RequirePermission needs an {org} path parameter"))?;
        let organization = params
            .iter()
            .find(|(name, _)| *name == "org")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| OAuthError::internal("RequirePermission needs an {org} path parameter"))?;
        let token = bearer_token(&parts.headers)?;
        let authorized = state.authorize(&organization, token, P::NAME).await?;
        Ok(Self { authorized, permission: PhantomData })
    }
}

impl PermissionAuthority for TokenServiceState {
    async fn authorize(
        &self,
        organization: &str,
        token: &str,
        permission: &'static str,
    ) -> Result<Authorized, OAuthError> {
        let Authenticated { org, principal, claims } = self.authenticate(organization, token).await?;
        let now = self.now();
        let index = self.access_index(&org).await?;
        let decision = index.index.check(&principal, permission, &Scope::Organization, now.as_second());
        let reason = decision.to_string();
        match decision {
            Decision::Allowed(_) => {
                Ok(Authorized { organization: org.name.clone(), principal, claims, reason })
            }
            Decision::Denied(denial) => Err(OAuthError::InsufficientScope(
                format!("Permission {permission} is required ({}).", denial.code()).into(),
            )),
        }
    }
}

/// A verified access token of the organization and who it speaks for,
/// before any permission is checked.
pub struct Authenticated {
    pub org: std::sync::Arc<OrganizationView>,
    pub principal: Principal,
    pub claims: AccessTokenClaims,
}

impl TokenServiceState {
    /// Verifies `token` as one of the organization's access tokens (as
    /// [`RequirePermission`] does, without a permission): for routes open to
    /// every principal of the organization that decide on their own what it
    /// may do (an access request's requester).
    pub async fn authenticate(&self, organization: &str, token: &str) -> Result<Authenticated, OAuthError> {
        let org = self.require_organization(organization).await?;
        let keys = self.key_set(&org).await?;
        let issuer = self.issuer(&org.name);
        let now = self.now();
        let validation = Validation::new(TokenType::Access, &issuer, &issuer, now);
        let verified = jwt::verify::<AccessTokenClaims>(token, &keys, &validation)
            .map_err(|e| OAuthError::invalid_token(e.description()))?;
        let claims = verified.claims;
        if claims.org != org.name {
            return Err(OAuthError::invalid_token("The token was issued for another organization."));
        }
        if super::grants::is_access_token_revoked(self, &org.name, &claims.jti).await? {
            return Err(OAuthError::invalid_token("The token has been revoked."));
        }
        let principal = principal_of(self, &org, &claims)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("The token's user no longer exists."))?;
        Ok(Authenticated { org, principal, claims })
    }
}

/// Who a verified access token speaks for, as the access index knows it:
/// the client itself (`sub` = `client_id`), else the user by its name; `None`
/// when that user no longer exists.
pub async fn principal_of(
    state: &TokenServiceState,
    org: &OrganizationView,
    claims: &AccessTokenClaims,
) -> Result<Option<Principal>, OAuthError> {
    if claims.sub == claims.client_id {
        return Ok(Some(Principal::client(claims.client_id.clone())));
    }
    let user = state.store().get_user(&org.namespace, &claims.sub).await?;
    Ok(user.map(|user| Principal::user(user.user_name)))
}
