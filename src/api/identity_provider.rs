//! `IdentityProvider`: an upstream SSO (OIDC or SAML 2.0) and its rollout.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// An upstream single sign-on provider (OIDC or SAML 2.0): the email domains
/// routed to it, its rollout stage, just-in-time provisioning, SCIM, and how its
/// groups map onto roles.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "IdentityProvider",
    doc = "An upstream SSO provider (OIDC or SAML 2.0), its rollout, provisioning and group mappings.",
    plural = "identityproviders",
    shortname = "idp",
    category = "portcullis",
    namespaced,
    status = "IdentityProviderStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".spec.rollout.stage"}"#,
    printcolumn = r#"{"name":"Upstream-Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"UpstreamHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Advance","type":"string","jsonPath":".status.conditions[?(@.type==\"ReadyToAdvance\")].reason"}"#,
    printcolumn = r#"{"name":"Sign-ins","type":"integer","jsonPath":".status.rollout.signIns24h","priority":1}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.rollout.failures24h","priority":1}"#,
    printcolumn = r#"{"name":"SCIM","type":"boolean","jsonPath":".spec.scim.enabled"}"#,
    printcolumn = r#"{"name":"Domains","type":"string","jsonPath":".spec.emailDomains","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'OIDC' ? (has(self.oidc) && !has(self.saml)) : true",
        "message": "type OIDC requires the oidc block and forbids the saml block",
        "fieldPath": ".oidc",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "self.type == 'SAML' ? (has(self.saml) && !has(self.oidc)) : true",
        "message": "type SAML requires the saml block and forbids the oidc block",
        "fieldPath": ".saml",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct IdentityProviderSpec {
    /// Protocol spoken with the upstream: `OIDC` or `SAML`.
    #[serde(rename = "type")]
    pub protocol: IdentityProviderType,

    /// Name shown on the sign-in page ("Sign in with ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// OpenID Connect settings; required when type is `OIDC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSettings>,

    /// SAML 2.0 settings; required when type is `SAML`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlSettings>,

    /// PEM certificates of a private CA that the upstream's TLS certificates
    /// chain to, trusted besides the system's roots when calling it
    /// (discovery, key set, token endpoint, SAML metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleReference>,

    /// Email domains whose users are routed to this provider at sign-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(regex(pattern = EMAIL_DOMAIN_PATTERN), length(max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub email_domains: Vec<String>,

    /// Staged rollout of this provider to the organization's users.
    #[serde(default)]
    pub rollout: Rollout,

    /// Just-in-time provisioning of users at their first sign-in through this
    /// provider (only when the organization's provisioning mode is `jit`).
    #[serde(default)]
    pub jit: JitSettings,

    /// SCIM 2.0 provisioning from this provider.
    #[serde(default)]
    pub scim: ScimSettings,

    /// Groups of this provider (by display name) that grant roles to their members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub group_mappings: Vec<GroupMapping>,
}

/// `https://…`, or `http://` to a loopback host (and the same check is made
/// again on every URL the upstream hands out).
pub const UPSTREAM_URL_PATTERN: &str =
    r"^(https://[^\s#]+|http://(localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]{1,5})?(/[^\s#]*)?)$";

/// Where a CA bundle (PEM) is kept: a key of a Secret or of a ConfigMap in
/// the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleReference {
    /// `Secret` or `ConfigMap`.
    #[serde(default)]
    pub kind: CaBundleKind,
    /// Name of the object, in the same namespace.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the PEM certificates.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

/// Kind of object holding a CA bundle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CaBundleKind {
    #[default]
    Secret,
    ConfigMap,
}

/// Upstream protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IdentityProviderType {
    /// OpenID Connect 1.0.
    #[serde(rename = "OIDC")]
    Oidc,
    /// SAML 2.0 Web Browser SSO.
    #[serde(rename = "SAML")]
    Saml,
}

/// OpenID Connect upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "'openid' in self.scopes",
        "message": "scopes must include openid",
        "fieldPath": ".scopes",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct OidcSettings {
    /// Issuer URL; its `/.well-known/openid-configuration` must be reachable.
    /// `https://`, or `http://` on a loopback address (`127.0.0.1`, `[::1]`,
    /// `localhost`) for a developer's local IdP.
    #[schemars(regex(pattern = UPSTREAM_URL_PATTERN), length(max = 2048))]
    pub issuer: String,

    /// Client ID registered at the upstream for Portcullis.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,

    /// The client secret registered at the upstream, from a Secret.
    pub client_secret_ref: SecretKeyReference,

    /// Scopes requested from the upstream.
    #[serde(default = "default_oidc_scopes")]
    #[schemars(length(min = 1, max = 20), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub scopes: Vec<String>,

    /// Which upstream claims fill the user's attributes.
    #[serde(default)]
    pub claim_mapping: ClaimMapping,
}

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// Upstream OIDC claim names for user attributes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// Claim holding the userName.
    #[serde(default = "default_email_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub user_name: String,
    /// Claim holding the email address.
    #[serde(default = "default_email_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub email: String,
    /// Claim holding the display name.
    #[serde(default = "default_name_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Claim holding the list of group display names.
    #[serde(default = "default_groups_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user_name: default_email_claim(),
            email: default_email_claim(),
            name: default_name_claim(),
            groups: default_groups_claim(),
        }
    }
}

fn default_email_claim() -> String {
    "email".to_owned()
}
fn default_name_claim() -> String {
    "name".to_owned()
}
fn default_groups_claim() -> String {
    "groups".to_owned()
}

/// SAML 2.0 upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.metadataUrl) != has(self.metadata)",
        "message": "give exactly one of metadataUrl and metadata",
        "fieldPath": ".metadataUrl",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct SamlSettings {
    /// URL of the IdP's SAML metadata document, fetched and watched for
    /// certificate changes. `https://`, or `http://` on a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UPSTREAM_URL_PATTERN), length(max = 2048))]
    pub metadata_url: Option<String>,

    /// The IdP's SAML metadata XML, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub metadata: Option<String>,

    /// Entity ID of the IdP (the metadata's `entityID`).
    #[schemars(length(min = 1, max = 1024))]
    pub entity_id: String,

    /// Which SAML attributes fill the user's attributes.
    #[serde(default)]
    pub attribute_mapping: SamlAttributeMapping,
}

/// SAML attribute names for user attributes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SamlAttributeMapping {
    /// Attribute holding the email address (also the userName).
    #[serde(default = "default_saml_email")]
    #[schemars(length(min = 1, max = 256))]
    pub email: String,
    /// Attribute holding the display name.
    #[serde(default = "default_saml_name")]
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Attribute holding group display names.
    #[serde(default = "default_saml_groups")]
    #[schemars(length(min = 1, max = 256))]
    pub groups: String,
}

impl Default for SamlAttributeMapping {
    fn default() -> Self {
        Self { email: default_saml_email(), name: default_saml_name(), groups: default_saml_groups() }
    }
}

fn default_saml_email() -> String {
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress".to_owned()
}
fn default_saml_name() -> String {
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name".to_owned()
}
fn default_saml_groups() -> String {
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups".to_owned()
}

/// Staged rollout of an identity provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.stage != 'Testing' || (has(self.testUsers) && size(self.testUsers) > 0)",
        "message": "stage Testing needs at least one entry in testUsers",
        "fieldPath": ".testUsers",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "self.stage != 'Enforced' || (has(self.breakGlassUsers) && size(self.breakGlassUsers) > 0)",
        "message": "stage Enforced needs at least one break-glass user who can still sign in with a password if the provider fails",
        "fieldPath": ".breakGlassUsers",
        "reason": "FieldValueRequired"
    }
]))]
pub struct Rollout {
    /// `Disabled`: not offered. `Testing`: offered to `testUsers` only.
    /// `Optional`: offered to everyone in the routed domains, passwords still
    /// work. `Enforced`: the only way in for routed users, except break-glass users.
    #[serde(default)]
    pub stage: RolloutStage,

    /// Users (by userName) who see the provider while it is in `Testing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 3, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub test_users: Vec<String>,

    /// Users (by userName) who keep password sign-in when the provider is
    /// `Enforced`, so an upstream outage never locks the organization out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 3, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub break_glass_users: Vec<String>,
}

/// Rollout stages, in order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutStage {
    /// Not offered.
    #[default]
    Disabled,
    /// Offered to test users only.
    Testing,
    /// Offered to everyone in the routed domains.
    Optional,
    /// Required for everyone in the routed domains except break-glass users.
    Enforced,
}

impl RolloutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStage::Disabled => "Disabled",
            RolloutStage::Testing => "Testing",
            RolloutStage::Optional => "Optional",
            RolloutStage::Enforced => "Enforced",
        }
    }
}

/// Just-in-time provisioning.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JitSettings {
    /// Create unknown users at their first sign-in through this provider.
    #[serde(default)]
    pub enabled: bool,

    /// Refresh name, email and group memberships from the upstream at each sign-in.
    #[serde(default)]
    pub sync_on_sign_in: bool,
}

/// SCIM provisioning from this provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimSettings {
    /// Serve a SCIM 2.0 endpoint for this provider, with its own bearer token.
    #[serde(default)]
    pub enabled: bool,
}

/// Members of an upstream group receive a role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMapping {
    /// The group's display name at the provider.
    #[schemars(length(min = 1, max = 256))]
    pub group: String,

    /// Role granted to the group's members.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub role: String,

    /// Workspace the role is granted in; absent means organization-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = WORKSPACE_NAME_PATTERN), length(min = 1, max = 63))]
    pub workspace: Option<String>,
}

/// What the controller reports about an IdentityProvider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// Base URL of this provider's SCIM 2.0 endpoint, when SCIM is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_endpoint: Option<String>,

    /// Name of the Secret holding the SCIM bearer token, when SCIM is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_token_secret_name: Option<String>,

    /// How this provider's SCIM client is doing, once it has sent a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_sync: Option<ScimSyncStatus>,

    /// The rollout as the operator sees it: the stage in force and since
    /// when, recent sign-ins, and what it last found upstream (with the
    /// conditions `UpstreamHealthy` and `ReadyToAdvance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// The rollout of an identity provider, as observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The stage in force.
    pub stage: RolloutStage,
    /// Since when (RFC 3339): when the operator first saw this stage.
    pub since: String,
    /// Sign-ins through this provider in the last 24 hours, failed or not.
    #[serde(rename = "signIns24h")]
    pub sign_ins_24h: u64,
    /// Of those, the failures.
    #[serde(rename = "failures24h")]
    pub failures_24h: u64,
    /// When a sign-in last succeeded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// The last sign-in error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// When the SAML IdP's earliest-expiring signing certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
}

/// SCIM sync health, as the SCIM service recorded it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimSyncStatus {
    /// When the last SCIM request arrived (RFC 3339).
    pub last_request_time: String,
    /// The last error answered to this provider, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that error was answered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// SCIM requests received.
    pub requests: u64,
    /// Of those, how many were answered with an error.
    pub errors: u64,
    /// Users this provider created that still exist.
    pub users_provisioned: u64,
    /// Groups this provider created that still exist.
    pub groups_provisioned: u64,
}
