//! The Portcullis API: the custom resources platform teams write as YAML.
//!
//! Types only (serde + schemars + CEL rules); no I/O lives here.
//!
//! ```text
//!   Organization (one per namespace: the tenant)
//!     ├── workspaces, permission catalog, policies
//!     │
//!   Role ──includedRoles──► Role            permissions ⊆ catalog (wildcards allowed)
//!     ▲
//!   RoleAssignment ── principal: User | Group | Client ──► OAuthClient (Client)
//!                  ── scope: Organization | Workspace ──► Organization.workspaces
//!   IdentityProvider ── groupMappings ──► Role
//!   AccessRequest ── requester (User) + role + workspace, for a duration ──► a time-bound grant once approved
//! ```
//!
//! Static invariants are CEL `x-kubernetes-validations` in the generated schema,
//! enforced by the API server; cross-resource facts are checked by
//! [`crate::validation`] and reported as status conditions or `validate` output.

mod access_request;
mod common;
mod identity_provider;
mod oauth_client;
mod organization;
mod posture;
mod role;
mod role_assignment;

pub use access_request::*;
pub use common::*;
pub use identity_provider::*;
pub use oauth_client::*;
pub use organization::*;
pub use posture::*;
pub use role::*;
pub use role_assignment::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Portcullis resource.
pub const GROUP: &str = "iam.portcullis.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "iam.portcullis.dev/v1alpha1";

/// On an Organization: a signing-key rotation asked for at this RFC 3339
/// time (`kubectl portcullis rotate-keys`); see [`crate::token::keys::RotationPolicy::requested_at`].
pub const ROTATE_KEYS_ANNOTATION: &str = "iam.portcullis.dev/rotate-keys-requested-at";

/// On an IdentityProvider: when its SCIM token Secret was last deleted to
/// rotate it (`kubectl portcullis scim-token`); the change makes the operator
/// look at once, and it generates a new token.
pub const SCIM_TOKEN_ROTATED_ANNOTATION: &str = "iam.portcullis.dev/scim-token-rotated-at";

/// Every CRD Portcullis defines, with the file name it is committed under in `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("organization.yaml", Organization::crd()),
        ("role.yaml", Role::crd()),
        ("roleassignment.yaml", RoleAssignment::crd()),
        ("identityprovider.yaml", IdentityProvider::crd()),
        ("oauthclient.yaml", OAuthClient::crd()),
        ("accessrequest.yaml", AccessRequest::crd()),
    ]
}
