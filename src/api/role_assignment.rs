//! `RoleAssignment`: principal + role + scope.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// Grants a Role to a principal (a user, a group, or an OAuthClient) in the
/// organization or in one workspace, optionally until a point in time. A
/// principal that does not exist yet is kept and takes effect when it appears.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "RoleAssignment",
    doc = "Grants a Role to a user, group or OAuthClient, organization-wide or in one workspace.",
    plural = "roleassignments",
    shortname = "ra",
    category = "portcullis",
    namespaced,
    status = "RoleAssignmentStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Principal","type":"string","jsonPath":".spec.principal.name"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.principal.kind"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Workspace","type":"string","jsonPath":".spec.workspace"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expiresAt","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.scope == 'Workspace' ? has(self.workspace) : !has(self.workspace)",
        "message": "scope Workspace requires workspace; scope Organization must not name one",
        "fieldPath": ".workspace",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct RoleAssignmentSpec {
    /// Who receives the role.
    pub principal: Principal,

    /// Name of the Role granted, in the same namespace.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub role: String,

    /// `Organization`: the grant applies organization-wide (and so in every
    /// workspace). `Workspace`: it applies in `workspace` only.
    #[serde(default)]
    pub scope: AssignmentScope,

    /// The workspace the grant applies in; required when scope is `Workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = WORKSPACE_NAME_PATTERN), length(min = 1, max = 63))]
    pub workspace: Option<String>,

    /// When the grant stops giving anything (RFC 3339). Expired assignments
    /// remain visible but grant nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires_at: Option<jiff::Timestamp>,

    /// Why this access exists (ticket, approval), kept for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub reason: Option<String>,
}

/// Who receives a role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `User` (named by userName, usually the email address), `Group` (named
    /// by display name), or `Client` (named by OAuthClient name).
    pub kind: PrincipalKind,

    /// The user's userName, the group's display name, or the OAuthClient's name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
}

/// Kinds of principal.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum PrincipalKind {
    /// A person, by userName.
    User,
    /// A group of users, by display name; its members receive the role.
    Group,
    /// An OAuthClient acting for itself (client_credentials).
    Client,
}

/// Where an assignment applies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AssignmentScope {
    /// Organization-wide.
    #[default]
    Organization,
    /// One workspace.
    Workspace,
}

/// What the controller reports about a RoleAssignment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The identifier of the principal once it exists (`PrincipalPending` until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_principal: Option<String>,
}
