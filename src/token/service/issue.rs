//! Building and signing the tokens of a grant: RFC 9068 access tokens with the
//! organization's roles (and permissions when asked for), computed by the
//! access core from the followed index, and OpenID Connect ID tokens.
//!
//! Permissions are included when the request's scope has `permissions`, or
//! the client's `tokenClaims` lists `permissions`; they are the effective
//! permissions in the organization scope (what holds everywhere), with
//! `workspace_permissions` for what workspace-scoped grants add in each
//! workspace. Roles are always included, with the scope each was granted in.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::error::OAuthError;
use super::state::{ClientView, OrganizationView, TokenServiceState};
use crate::api::TokenClaim;
use crate::authz::{Principal, Scope};
use crate::store::{IndexSnapshot, User};
use crate::token::claims::{
    AccessTokenClaims, AccessTokenGrant, IdTokenClaims, IdTokenGrant, RoleClaim, RoleScope, token_id,
};
use crate::token::jwt::{self, TokenType};
use crate::token::keys::KeySet;

/// The scope that asks for the `permissions` claim.
pub const PERMISSIONS_SCOPE: &str = "permissions";

/// Scopes a user-facing grant may ask for.
pub const USER_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", PERMISSIONS_SCOPE];

/// Scopes `client_credentials` may ask for.
pub const CLIENT_SCOPES: &[&str] = &[PERMISSIONS_SCOPE];

/// An access token ready to send.
#[derive(Debug)]
pub struct SignedAccessToken {
    pub token: String,
    pub claims: AccessTokenClaims,
    pub expires_in: i64,
}

/// Splits and checks a `scope` parameter (RFC 6749 §3.3) against `allowed`.
pub fn parse_scope(scope: Option<&str>, allowed: &[&str]) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in scope.unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&token) {
            return Err(OAuthError::InvalidScope(
                format!("Scope {:?} is not supported.", token.chars().take(64).collect::<String>()).into(),
            ));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    Ok(scopes)
}

/// What the tokens of a grant say about its user: the subject, the name the
/// access index knows the user by, and the claims a client may ask for.
/// Built from a [`User`] at sign-in, and straight from the refresh-token
/// lookup on refresh (no user read of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUser {
    pub id: String,
    pub user_name: String,
    /// The primary address, or the first.
    pub email: Option<String>,
    /// The display name, or the given and family names.
    pub name: Option<String>,
}

impl From<&User> for TokenUser {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.clone(),
            user_name: user.user_name.clone(),
            email: primary_email(user),
            name: display_name(user),
        }
    }
}

/// Who a token is for, as the access index knows it.
pub enum Subject<'a> {
    User(&'a TokenUser),
    Client,
}

/// Issues and signs an access token for `subject` via `client`.
#[allow(clippy::too_many_arguments)]
pub async fn access_token(
    state: &TokenServiceState,
    org: &OrganizationView,
    keys: &KeySet,
    client: &ClientView,
    subject: Subject<'_>,
    scopes: &[String],
    auth_time: Option<Timestamp>,
    jti: Option<String>,
) -> Result<SignedAccessToken, OAuthError> {
    let now = state.now();
    let index = state.access_index(org).await?;
    let (principal, sub) = match &subject {
        Subject::User(user) => (Principal::user(user.user_name.clone()), user.id.clone()),
        Subject::Client => (Principal::client(client.client_id.clone()), client.client_id.clone()),
    };
    let wants_permissions =
        scopes.iter().any(|s| s == PERMISSIONS_SCOPE) || client.wants_claim(TokenClaim::Permissions);
    let user = match subject {
        Subject::User(user) => Some(user),
        Subject::Client => None,
    };
    let roles = roles(&index, &principal, now);
    let (permissions, workspace_permissions) = if wants_permissions {
        let everywhere = permissions(&index, &principal, &Scope::Organization, now);
        let per_workspace = workspace_permissions(&index, &principal, &roles, &everywhere, now);
        (Some(everywhere), Some(per_workspace).filter(|w| !w.is_empty()))
    } else {
        (None, None)
    };
    let grant = AccessTokenGrant {
        issuer: state.issuer(&org.name),
        subject: sub,
        audiences: client.audiences.clone(),
        client_id: client.client_id.clone(),
        scopes: scopes.to_vec(),
        organization: org.name.clone(),
        roles,
        permissions,
        workspace_permissions,
        groups: None,
        email: user.filter(|_| client.wants_claim(TokenClaim::Email)).and_then(|u| u.email.clone()),
        name: user.filter(|_| client.wants_claim(TokenClaim::Profile)).and_then(|u| u.name.clone()),
        auth_time,
    };
    drop(index);
    let mut claims = AccessTokenClaims::issue(grant, now, org.access_token_lifetime, &mut rand::rng())
        .map_err(OAuthError::server)?;
    if let Some(jti) = jti {
        claims.jti = jti;
    }
    let token = jwt::sign_with_active(keys, TokenType::Access, &claims).map_err(OAuthError::server)?;
    Ok(SignedAccessToken { token, expires_in: org.access_token_lifetime.as_secs(), claims })
}

/// A fresh `jti`, for a caller that must record it before signing.
pub fn new_jti() -> String {
    token_id(&mut rand::rng())
}

/// When an access token issued now stops verifying anywhere (its lifetime,
/// the verifiers' leeway and a second of rounding), for a caller that records
/// it before signing.
pub fn access_expiry(state: &TokenServiceState, org: &OrganizationView) -> Timestamp {
    let now = state.now();
    let until = org.access_token_lifetime + jwt::DEFAULT_LEEWAY + SignedDuration::from_secs(1);
    now.checked_add(until).unwrap_or(now)
}

/// What an ID token says about the sign-in.
pub struct IdTokenInput<'a> {
    pub user: &'a TokenUser,
    pub scopes: &'a [String],
    pub nonce: Option<String>,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub access_token: &'a str,
}

/// OpenID Connect Core §2 / §3.1.3.6: an ID token bound to the access token
/// issued with it by `at_hash`, for `client`.
pub fn id_token(
    state: &TokenServiceState,
    org: &OrganizationView,
    keys: &KeySet,
    client: &ClientView,
    input: IdTokenInput<'_>,
) -> Result<String, OAuthError> {
    let key = keys.signing_key().ok_or_else(|| OAuthError::internal("no active signing key"))?;
    let has = |scope: &str| input.scopes.iter().any(|s| s == scope);
    let email = has("email").then(|| input.user.email.clone()).flatten();
    let grant = IdTokenGrant {
        issuer: state.issuer(&org.name),
        subject: input.user.id.clone(),
        client_id: client.client_id.clone(),
        auth_time: Some(input.auth_time),
        nonce: input.nonce,
        acr: None,
        amr: input.amr,
        access_token: Some(input.access_token),
        email_verified: email.as_ref().map(|_| false),
        email,
        name: has("profile").then(|| input.user.name.clone()).flatten(),
    };
    let lifetime = org.access_token_lifetime.max(SignedDuration::from_mins(5));
    let claims =
        IdTokenClaims::issue(grant, key.algorithm(), state.now(), lifetime).map_err(OAuthError::server)?;
    jwt::sign(key, TokenType::Id, &claims).map_err(OAuthError::server)
}

fn roles(index: &IndexSnapshot, principal: &Principal, now: Timestamp) -> Vec<RoleClaim> {
    let mut roles: Vec<RoleClaim> = Vec::new();
    for grant in index.index.assigned_roles(principal, now.as_second()) {
        let claim = RoleClaim {
            name: grant.role().to_owned(),
            scope: match grant.scope() {
                Scope::Organization => RoleScope::Organization,
                Scope::Workspace(name) => RoleScope::Workspace(name.clone()),
            },
        };
        if !roles.contains(&claim) {
            roles.push(claim);
        }
    }
    roles
}

fn permissions(index: &IndexSnapshot, principal: &Principal, scope: &Scope, now: Timestamp) -> Vec<String> {
    index
        .index
        .effective_permissions(principal, scope, now.as_second())
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// For each workspace the principal has a role in, the permissions it holds
/// there beyond `everywhere` (the organization scope's).
fn workspace_permissions(
    index: &IndexSnapshot,
    principal: &Principal,
    roles: &[RoleClaim],
    everywhere: &[String],
    now: Timestamp,
) -> BTreeMap<String, Vec<String>> {
    let mut per_workspace = BTreeMap::new();
    for role in roles {
        let RoleScope::Workspace(workspace) = &role.scope else { continue };
        if per_workspace.contains_key(workspace) {
            continue;
        }
        let scope = Scope::Workspace(workspace.clone());
        let more: Vec<String> = permissions(index, principal, &scope, now)
            .into_iter()
            .filter(|p| !everywhere.contains(p))
            .collect();
        if !more.is_empty() {
            per_workspace.insert(workspace.clone(), more);
        }
    }
    per_workspace
}

pub fn primary_email(user: &User) -> Option<String> {
    user.emails.iter().find(|e| e.primary).or(user.emails.first()).map(|e| e.value.clone())
}

pub fn display_name(user: &User) -> Option<String> {
    name_of(user.display_name.as_deref(), user.given_name.as_deref(), user.family_name.as_deref())
}

/// The display name, or else the given and family names, as far as known.
pub fn name_of(display: Option<&str>, given: Option<&str>, family: Option<&str>) -> Option<String> {
    display.map(str::to_owned).or_else(|| match (given, family) {
        (Some(given), Some(family)) => Some(format!("{given} {family}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    })
}
