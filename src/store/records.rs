//! Plain records the store reads and writes. No Kubernetes types: the
//! operator (or standalone mode) projects its resources onto these.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::authz::PrincipalKind;
use crate::secret::SecretString;

/// Identity and version of the Kubernetes object a desired-state record comes
/// from. The organization of a record is its namespace (one Organization per
/// namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectMeta {
    /// `metadata.uid`: the key. Never reused, so a recreated object is a new row.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `metadata.generation`: a write carrying a lower one than stored is stale.
    pub generation: i64,
}

impl ObjectMeta {
    pub fn new(
        uid: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
        generation: i64,
    ) -> Self {
        Self { uid: uid.into(), namespace: namespace.into(), name: name.into(), generation }
    }
}

/// The kinds of desired-state object the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceKind {
    Organization,
    Role,
    RoleAssignment,
    IdentityProvider,
    OAuthClient,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Organization => "Organization",
            ResourceKind::Role => "Role",
            ResourceKind::RoleAssignment => "RoleAssignment",
            ResourceKind::IdentityProvider => "IdentityProvider",
            ResourceKind::OAuthClient => "OAuthClient",
        }
    }

    /// The noun of this kind's audit actions (`role.apply`, `oauthClient.delete`).
    pub fn audit_noun(self) -> &'static str {
        match self {
            ResourceKind::Organization => "organization",
            ResourceKind::Role => "role",
            ResourceKind::RoleAssignment => "roleAssignment",
            ResourceKind::IdentityProvider => "identityProvider",
            ResourceKind::OAuthClient => "oauthClient",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tenant: its permission catalog and workspaces; the rest stays in `spec_json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationRecord {
    pub meta: ObjectMeta,
    pub display_name: String,
    /// Every permission a role of this organization may grant.
    pub catalog: Vec<String>,
    /// Names of the workspaces assignments may target.
    pub workspaces: Vec<String>,
    /// The whole spec as JSON. Two writes of one generation are the same write
    /// when their `spec_json` is equal.
    pub spec_json: String,
}

/// Where a role can be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleScope {
    Organization,
    Workspace,
}

impl RoleScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleScope::Organization => "Organization",
            RoleScope::Workspace => "Workspace",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Organization" => Some(RoleScope::Organization),
            "Workspace" => Some(RoleScope::Workspace),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    pub meta: ObjectMeta,
    pub scope: RoleScope,
    /// `domain.action`, `domain.*` or `*`.
    pub permissions: Vec<String>,
    pub included_roles: Vec<String>,
    pub spec_json: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub meta: ObjectMeta,
    pub principal_kind: PrincipalKind,
    /// userName (or email), group display name, or OAuthClient name.
    pub principal_name: String,
    pub role: String,
    /// `None`: organization-wide.
    pub workspace: Option<String>,
    /// Unix milliseconds from which the assignment grants nothing.
    pub expires_at_ms: Option<i64>,
    pub spec_json: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityProviderRecord {
    pub meta: ObjectMeta,
    /// `oidc` or `saml`.
    pub protocol: String,
    /// Rollout stage (`Disabled`, `Testing`, `Optional`, `Enforced`).
    pub stage: String,
    /// Email domains routed to this provider at sign-in.
    pub email_domains: Vec<String>,
    pub scim_enabled: bool,
    pub spec_json: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClientRecord {
    pub meta: ObjectMeta,
    /// `confidential` or `public`.
    pub client_type: String,
    pub redirect_uris: Vec<String>,
    pub spec_json: String,
    /// Hash of the current client secret. Read-only here: the operator sets it
    /// with `set_oauth_client_secret_hash` when it generates a secret, and a
    /// spec write never touches it.
    pub secret_hash: Option<SecretString>,
}

/// Lifecycle of a signing key: published before it signs, then signing, then
/// published only to verify tokens it already signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningKeyState {
    Next,
    Active,
    Retiring,
}

impl SigningKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyState::Next => "next",
            SigningKeyState::Active => "active",
            SigningKeyState::Retiring => "retiring",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "next" => Some(SigningKeyState::Next),
            "active" => Some(SigningKeyState::Active),
            "retiring" => Some(SigningKeyState::Retiring),
            _ => None,
        }
    }
}

/// Public metadata of a signing key. The private key lives in a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub organization: String,
    pub kid: String,
    /// JOSE algorithm (`ES256`, `RS256`, `EdDSA`).
    pub algorithm: String,
    pub state: SigningKeyState,
    /// The public JWK as JSON, as published in the JWKS.
    pub public_jwk: String,
    pub created_ms: i64,
    pub activates_ms: Option<i64>,
    pub retires_ms: Option<i64>,
}

// === Identities ===

/// How a user came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserSource {
    /// Created by an administrator or sign-up, signs in with a local password.
    Local,
    /// Provisioned by an identity provider over SCIM.
    Scim,
    /// Created at first SSO sign-in (just in time).
    Jit,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Local => "local",
            UserSource::Scim => "scim",
            UserSource::Jit => "jit",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "local" => Some(UserSource::Local),
            "scim" => Some(UserSource::Scim),
            "jit" => Some(UserSource::Jit),
            _ => None,
        }
    }
}

/// One address of a user (SCIM `emails`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    pub value: String,
    /// `work`, `home`, …
    pub kind: Option<String>,
    pub primary: bool,
}

impl Email {
    pub fn primary(value: impl Into<String>) -> Self {
        Self { value: value.into(), kind: Some("work".to_owned()), primary: true }
    }
}

/// A person of an organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub organization: String,
    /// Unique in the organization, compared without regard to case.
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub emails: Vec<Email>,
    pub active: bool,
    pub source: UserSource,
    /// argon2id PHC string; `None` for users who never sign in with a password.
    pub password_hash: Option<SecretString>,
    pub last_login_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Increases with every change: the SCIM ETag.
    pub version: i64,
}

/// What a new user is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub organization: String,
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub emails: Vec<Email>,
    pub active: bool,
    pub source: UserSource,
    pub password_hash: Option<SecretString>,
}

impl NewUser {
    /// An active user with just a name; fill in the rest with struct update syntax.
    pub fn new(organization: impl Into<String>, user_name: impl Into<String>, source: UserSource) -> Self {
        Self {
            organization: organization.into(),
            user_name: user_name.into(),
            display_name: None,
            given_name: None,
            family_name: None,
            external_id: None,
            emails: Vec::new(),
            active: true,
            source,
            password_hash: None,
        }
    }
}

/// The attributes a SCIM `PUT` (or a `PATCH`, read-modify-write) replaces.
/// Source, password and login time have their own operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserUpdate {
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub emails: Vec<Email>,
    pub active: bool,
}

impl From<&User> for UserUpdate {
    fn from(user: &User) -> Self {
        Self {
            user_name: user.user_name.clone(),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            external_id: user.external_id.clone(),
            emails: user.emails.clone(),
            active: user.active,
        }
    }
}

/// A second factor: only what verifying it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MfaFactor {
    /// A WebAuthn credential: its id and COSE public key (base64url), and the
    /// signature counter last seen (clone detection).
    WebAuthn { credential_id: String, public_key: String, sign_count: i64 },
    /// A TOTP secret, sealed (encrypted) by the caller with a key kept outside
    /// the store.
    Totp { sealed_secret: SecretString },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaEnrolment {
    pub id: String,
    pub user_id: String,
    pub label: Option<String>,
    pub factor: MfaFactor,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// Who manages a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupSource {
    /// Managed in Portcullis (admin API).
    Internal,
    /// Pushed by an identity provider (SCIM or sign-in claims).
    Idp,
}

impl GroupSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupSource::Internal => "internal",
            GroupSource::Idp => "idp",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "internal" => Some(GroupSource::Internal),
            "idp" => Some(GroupSource::Idp),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub organization: String,
    /// Unique in the organization, compared without regard to case.
    pub display_name: String,
    pub source: GroupSource,
    pub external_id: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGroup {
    pub organization: String,
    pub display_name: String,
    pub source: GroupSource,
    pub external_id: Option<String>,
}

/// The key names are unique under: the access index's
/// [`crate::authz::name_key`], so the store and the index agree on who is who.
pub fn name_key(name: &str) -> String {
    crate::authz::name_key(name).into_owned()
}
