//! `Role`: a named bundle of permissions.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A named bundle of permissions (`journeys.publish`, or `journeys.*` for every
/// `journeys` permission in the catalog), optionally including other roles.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "Role",
    doc = "A named bundle of permissions, optionally including other roles.",
    plural = "roles",
    shortname = "iamrole",
    category = "portcullis",
    namespaced,
    status = "RoleStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Permissions","type":"string","jsonPath":".spec.permissions"}"#,
    printcolumn = r#"{"name":"Includes","type":"string","jsonPath":".spec.includedRoles","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.permissions) && size(self.permissions) > 0) || (has(self.includedRoles) && size(self.includedRoles) > 0)",
        "message": "a role must grant at least one permission or include at least one role",
        "fieldPath": ".permissions",
        "reason": "FieldValueRequired"
    }
]))]
pub struct RoleSpec {
    /// Human-readable name, shown in admin tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// What this role is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,

    /// Where the role can be granted: `Organization` roles are for tenant-wide
    /// administration and apply in every workspace; `Workspace` roles are
    /// granted in one workspace at a time.
    #[serde(default)]
    pub scope: RoleScope,

    /// Permissions granted, as `domain.action`, `domain.*` (every permission of
    /// that domain in the catalog) or `*` (the whole catalog). Names outside the
    /// organization's catalog grant nothing.
    #[serde(default)]
    #[schemars(length(max = 500), inner(regex(pattern = PERMISSION_GRANT_PATTERN), length(max = 128)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub permissions: Vec<String>,

    /// Other roles of the same organization whose permissions this role also
    /// grants. Inclusion must not form a cycle.
    #[serde(default)]
    #[schemars(length(max = 50), inner(regex(pattern = OBJECT_NAME_PATTERN), length(max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub included_roles: Vec<String>,
}

/// Where a role can be granted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RoleScope {
    /// Granted organization-wide; applies in every workspace.
    #[default]
    Organization,
    /// Granted in one workspace.
    Workspace,
}

/// What the controller reports about a Role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// Every catalog permission this role grants, after expanding wildcards and
    /// included roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_permissions: Vec<String>,
}
