//! The compliance posture of an organization, as `Organization.status.posture`
//! and the admin API's `GET {issuer}/api/v1/posture` report it. Computed from
//! the store (see `crate::posture`); only the shape lives here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who is protected, who is forgotten, who holds more than they should, and
/// what expires soon. Counts are of users unless named otherwise; "grants"
/// are unexpired role assignments, to the user or to a group it belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationPosture {
    /// When this posture was computed (RFC 3339).
    pub computed_at: String,
    /// Users of the organization, active or not.
    pub users: u64,
    /// Of those, the active ones: the ones the percentages below count.
    pub active_users: u64,
    /// Percent of active users with a second factor, rounded down. Absent
    /// while there is no active user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_adoption_percent: Option<u32>,
    /// Second factors of active users, by method and among privileged users.
    pub mfa: MfaPosture,
    /// `spec.staleAccountThresholdDays` the stale counts used.
    pub stale_account_threshold_days: i32,
    /// Active users with no sign-in for the threshold (never signed in: counted from creation).
    pub stale_accounts: u64,
    /// Of those, the ones still holding grants.
    pub stale_accounts_with_grants: u64,
    /// Deactivated users still named by grants (they get nothing, but the grants remain).
    pub inactive_users_with_grants: u64,
    /// Role assignments of a privileged role without an expiry.
    pub standing_privileged_grants: u64,
    /// Access requests waiting for a decision (approval or denial).
    pub pending_access_requests: u64,
    /// SCIM sync health per IdentityProvider that has sent SCIM requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scim_sync: Vec<ScimSyncPosture>,
    /// Signing key changes to come, soonest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<KeyRotationPosture>,
    /// IdentityProvider certificates and when they expire, soonest first
    /// (from the rollout checks of the operator; only in the Organization's status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_expiries: Vec<CertificateExpiry>,
}

/// Second factors of active users.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaPosture {
    /// Active users with at least one second factor.
    pub enrolled: u64,
    /// Active users with an authenticator app (TOTP).
    pub totp: u64,
    /// Active users with a security key (WebAuthn as a second factor).
    pub security_key: u64,
    /// Active users with a passkey.
    pub passkey: u64,
    /// Active users holding a permission the catalog marks privileged.
    pub privileged_users: u64,
    /// Of those, the ones with a second factor.
    pub privileged_enrolled: u64,
    /// Percent of privileged users with a second factor, rounded down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged_adoption_percent: Option<u32>,
}

/// SCIM sync health of one IdentityProvider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimSyncPosture {
    pub identity_provider: String,
    /// When its last SCIM request arrived (RFC 3339).
    pub last_request_time: String,
    /// When it was last answered with an error (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    pub requests: u64,
    pub errors: u64,
    /// Its last request was not answered with an error.
    pub healthy: bool,
}

/// A signing key change to come.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationPosture {
    pub kid: String,
    /// `activates` (starts signing), `retires` (leaves the key set) or
    /// `rotation due` (the active key reaches `tokens.keyRotation.period`).
    pub event: String,
    /// RFC 3339.
    pub at: String,
}

/// When an IdentityProvider's certificate expires.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateExpiry {
    pub identity_provider: String,
    /// RFC 3339.
    pub not_after: String,
}
