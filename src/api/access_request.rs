//! `AccessRequest`: a request for a role, for a while, filed with kubectl.
//! The operator files it in the store; Portcullis users approve it through
//! the admin API or the approval page; the status mirrors the store.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// Asks for a Role for a user, organization-wide or in one workspace, for a
/// bounded time. Approvers of the Organization's `spec.accessRequests`
/// policy decide through the admin API or the approval page (a kubectl user
/// is not a Portcullis identity, so approving is not a kubectl verb).
/// Deleting it withdraws a pending request and revokes an approved one.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "AccessRequest",
    doc = "A request for a Role for a user, for a bounded time, decided by the Organization's approvers.",
    plural = "accessrequests",
    shortname = "ar",
    category = "portcullis",
    namespaced,
    status = "AccessRequestStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Workspace","type":"string","jsonPath":".spec.workspace","priority":1}"#,
    // A string: kubectl shows a future `date` as `<invalid>` (it prints ages).
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self == oldSelf",
        "message": "an AccessRequest cannot be changed once filed: delete it and file another",
        "reason": "FieldValueForbidden"
    }
]))]
pub struct AccessRequestSpec {
    /// The Organization asked (the namespace's); when given it must be its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub organization: Option<String>,

    /// The userName of the user who would hold the role.
    #[schemars(length(min = 1, max = 256))]
    pub requester: String,

    /// Name of the Role asked for, in the same namespace.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub role: String,

    /// The workspace to hold it in; absent: the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = WORKSPACE_NAME_PATTERN), length(min = 1, max = 63))]
    pub workspace: Option<String>,

    /// How long the grant lasts once approved, as a Go duration (`2h`,
    /// `90m`); at most the Organization's `spec.accessRequests.maxDuration`.
    pub duration: GoDuration,

    /// Why: shown to the approvers and kept in the audit trail.
    #[schemars(length(min = 1, max = 2000))]
    pub justification: String,
}

/// Where a request stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessRequestPhase {
    /// Filed; waiting for approvers.
    Pending,
    /// Approved: the grant holds until `expiresAt`.
    Approved,
    Denied,
    /// The grant has ended.
    Expired,
    /// Withdrawn before a decision, or ended early.
    Revoked,
}

/// One approver's approval.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestApproval {
    /// The approver: a userName or an OAuth client's name.
    pub approver: String,
    /// When (RFC 3339).
    pub approved_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What the controller reports about an AccessRequest: the store's request,
/// mirrored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    /// Generation and conditions (`Filed`; `Ready` once filed).
    #[serde(flatten)]
    pub common: CommonStatus,

    /// Absent until the request is filed in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AccessRequestPhase>,

    /// The request's id in the admin API (`{issuer}/api/v1/access-requests/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// Approvals so far, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<AccessRequestApproval>,

    /// When the grant ends (RFC 3339), once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,

    /// Who decided last (approved, denied, revoked), and when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
}
