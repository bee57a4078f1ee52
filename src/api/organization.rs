//! `Organization`: the tenant. One per namespace.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A tenant of Portcullis: who it is, what it may grant, and how its people sign in.
/// Exactly one Organization lives in a namespace, and every other Portcullis
/// resource in that namespace belongs to it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "Organization",
    doc = "A tenant of Portcullis: its workspaces, permission catalog and policies. One per namespace.",
    plural = "organizations",
    shortname = "org",
    category = "portcullis",
    namespaced,
    status = "OrganizationStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Provisioning","type":"string","jsonPath":".spec.provisioning.mode"}"#,
    printcolumn = r#"{"name":"Legal Hold","type":"boolean","jsonPath":".spec.legalHold"}"#,
    printcolumn = r#"{"name":"MFA %","type":"integer","jsonPath":".status.posture.mfaAdoptionPercent"}"#,
    printcolumn = r#"{"name":"Stale","type":"integer","jsonPath":".status.posture.staleAccounts"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","jsonPath":".status.issuer","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.permissions) || !has(self.approvalRequired) || self.approvalRequired.all(p, self.permissions.exists(d, d.name == p))",
        "message": "every permission in approvalRequired must be declared in permissions",
        "fieldPath": ".approvalRequired",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct OrganizationSpec {
    /// Human-readable name of the organization, shown on sign-in pages.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,

    /// Email domains owned by the organization (for example `acme.com`). Sign-in
    /// routes addresses in these domains to this organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(regex(pattern = EMAIL_DOMAIN_PATTERN)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub email_domains: Vec<String>,

    /// Workspaces: the segments inside the organization in which roles can be
    /// granted (for example one per brand or business unit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub workspaces: Vec<Workspace>,

    /// The permission catalog: every permission a Role of this organization may
    /// grant. Permissions outside the catalog grant nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub permissions: Vec<PermissionDefinition>,

    /// Permissions that are only granted through an approved access request,
    /// never directly by a standing assignment. Each must be in `permissions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(regex(pattern = PERMISSION_PATTERN), length(max = 128)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub approval_required: Vec<String>,

    /// Who approves access requests (`{issuer}/api/v1/access-requests`), and
    /// for how long they may grant. Without it, access requests are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_requests: Option<AccessRequestPolicy>,

    /// How people of this organization authenticate.
    #[serde(default)]
    pub authentication: AuthenticationPolicy,

    /// How unknown users come to exist.
    #[serde(default)]
    pub provisioning: ProvisioningPolicy,

    /// Lifetimes and signing of the tokens issued for this organization.
    #[serde(default)]
    pub tokens: TokenPolicy,

    /// Region whose store holds this organization's data (users, sessions,
    /// grants, keys, audit events, SCIM data), for example `eu` or `us-east`:
    /// one of the operator's regional stores (`--store eu=…`); absent, the
    /// default store. A region with no store is refused (`UnknownRegion`), and
    /// once data is stored a change is refused (`DataResidencyChangeRefused`):
    /// moving it is a migration (docs/data-residency.md). `standalone` keeps
    /// one SQLite file and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z0-9]+)*$"), length(max = 32))]
    pub data_residency: Option<String>,

    /// While true, the organization and its identity data cannot be deleted:
    /// deleting the Organization is held back until the hold is lifted, and
    /// no audit event is deleted for age (`audit.retention` is suspended).
    #[serde(default)]
    pub legal_hold: bool,

    /// Days without a sign-in after which an account is reported as stale.
    #[serde(default = "default_stale_account_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub stale_account_threshold_days: i32,

    /// How long the audit trail is kept.
    #[serde(default)]
    pub audit: AuditPolicy,

    /// Who administers the organization's roles and role assignments.
    #[serde(default)]
    pub administration: AdministrationPolicy,

    /// How the sign-in pages look for this organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Branding>,
}

/// Who approves access requests and for how long they may grant. A
/// requester never approves their own request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestPolicy {
    /// Who may approve or deny: holders of a role, or of a permission (in
    /// the organization, or in the workspace the request names).
    pub approvers: Approvers,
    /// Roles that need two distinct approvers instead of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub two_approvers_for: Vec<String>,
    /// The longest a request may ask for, as a Go duration (`8h`, `30m`).
    #[serde(default = "default_max_access_duration")]
    pub max_duration: GoDuration,
    /// Webhooks told of every request, approval, denial, revocation and
    /// expiry (Slack or Microsoft Teams incoming webhooks), signed with
    /// HMAC-SHA256: `X-Portcullis-Signature: sha256=<hex>` of the body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub notifications: Vec<AccessRequestWebhook>,
}

/// One outgoing webhook of access request notifications.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestWebhook {
    /// Where to POST: `https://`, or `http://` to a loopback address.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// The payload's shape: a Slack incoming-webhook message or a Microsoft
    /// Teams MessageCard.
    pub format: WebhookFormat,
    /// The HMAC-SHA256 key the body is signed with, from a Secret of the
    /// namespace (standalone: a Secret manifest of the folder).
    pub secret_ref: SecretKeyReference,
}

/// The payload's shape.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WebhookFormat {
    Slack,
    Teams,
}

/// Holders of `role`, or of `permission`: exactly one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.role) != has(self.permission)",
        "message": "name exactly one of role and permission",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct Approvers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = PERMISSION_PATTERN), length(max = 128))]
    pub permission: Option<String>,
}

fn default_max_access_duration() -> GoDuration {
    GoDuration::new("8h")
}

/// The organization's look on its sign-in, invitation and admin pages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    /// The logo above each page, an `https://` URL the browser loads
    /// (shown at most 3rem high). The pages' Content-Security-Policy allows
    /// images from its origin only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r#"^https://[^\s"'<>\\]+$"#), length(max = 2048))]
    pub logo_url: Option<String>,
    /// The colour of buttons, links and focus rings, as `#rrggbb`. Button
    /// text is black or white, whichever reads better on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^#[0-9a-fA-F]{6}$"))]
    pub accent_color: Option<String>,
}

/// Where the organization's roles and role assignments are kept.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdministrationPolicy {
    /// `GitOps` (the default): Roles and RoleAssignments are manifests in
    /// Git, and the admin API refuses to change them (409, naming the
    /// manifest to edit), since the next sync would undo the change. `API`:
    /// the admin API also creates, changes and deletes them; what it writes
    /// is kept beside the manifests and never removed by a sync.
    #[serde(default)]
    pub role_source: RoleSource,
}

/// Who owns roles and role assignments.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RoleSource {
    /// Manifests in Git, synced by Argo CD or `kubectl apply`.
    #[default]
    GitOps,
    /// The admin API (manifests still apply beside what it writes).
    #[serde(rename = "API")]
    Api,
}

/// The audit trail's retention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPolicy {
    /// How long audit events are kept (a duration such as `8760h`). Older
    /// events are deleted, oldest first, by the store's housekeeping; the
    /// chain still verifies from the first event kept. `legalHold: true`
    /// suspends every deletion.
    #[serde(default = "default_audit_retention")]
    pub retention: GoDuration,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self { retention: default_audit_retention() }
    }
}

fn default_audit_retention() -> GoDuration {
    GoDuration::new("8760h")
}

fn default_stale_account_days() -> i32 {
    90
}

/// A segment of the organization in which roles can be granted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.name != 'organization'",
        "message": "organization is reserved: token claims use it for organization-wide grants",
        "fieldPath": ".name",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct Workspace {
    /// Name used by RoleAssignments and group mappings (a DNS label).
    #[schemars(regex(pattern = WORKSPACE_NAME_PATTERN), length(min = 1, max = 63))]
    pub name: String,

    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
}

/// One entry of the permission catalog.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionDefinition {
    /// The permission, as `domain.action` (for example `journeys.publish`).
    #[schemars(regex(pattern = PERMISSION_PATTERN), length(min = 3, max = 128))]
    pub name: String,

    /// What holding this permission allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub description: Option<String>,

    /// Marks a sensitive permission: roles granting it are privileged, which
    /// matters for the `PrivilegedRoles` MFA policy and for escalation warnings.
    #[serde(default)]
    pub privileged: bool,
}

/// How people of the organization authenticate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationPolicy {
    /// Email and password sign-in.
    #[serde(default)]
    pub password: PasswordPolicy,

    /// When a second factor is required, and which factors are accepted.
    #[serde(default)]
    pub mfa: MfaPolicy,

    /// Passwordless sign-in with passkeys (discoverable WebAuthn credentials).
    #[serde(default)]
    pub passkeys: PasskeyPolicy,
}

/// Email and password sign-in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicy {
    /// Whether local passwords may be used at all. Users of an Enforced SSO
    /// identity provider never use one, except break-glass accounts.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Shortest password accepted when one is set.
    #[serde(default = "default_min_password_length")]
    #[schemars(range(min = 8, max = 128))]
    pub min_length: i32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { enabled: true, min_length: default_min_password_length() }
    }
}

fn default_min_password_length() -> i32 {
    12
}

/// Second-factor requirements.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.required == 'Never' || size(self.methods) > 0",
        "message": "at least one MFA method is needed when MFA can be required",
        "fieldPath": ".methods",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "self.required != 'Never' || self.upstreamMfa == 'Accept'",
        "message": "upstreamMfa RequireLocal asks for a local second factor, which required: Never never does",
        "fieldPath": ".upstreamMfa",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct MfaPolicy {
    /// Who must present a second factor: `Always` (everyone), `PrivilegedRoles`
    /// (users holding a role that grants a privileged permission), or `Never`.
    #[serde(default)]
    pub required: MfaRequirement,

    /// Accepted second factors. WebAuthn is preferred; TOTP is the fallback.
    #[serde(default = "default_mfa_methods")]
    #[schemars(length(max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub methods: Vec<MfaMethod>,

    /// After a single sign-on through an IdentityProvider: `Accept` counts
    /// the upstream's own MFA (its `amr` holds `mfa`, or the SAML
    /// authentication context is multi-factor) as the second factor;
    /// `RequireLocal` asks for one of `methods` here as well, whatever the
    /// upstream did.
    #[serde(default)]
    pub upstream_mfa: UpstreamMfa,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            required: MfaRequirement::default(),
            methods: default_mfa_methods(),
            upstream_mfa: UpstreamMfa::default(),
        }
    }
}

/// Whether an upstream's MFA stands for ours.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpstreamMfa {
    /// The upstream's MFA counts.
    #[default]
    Accept,
    /// A local second factor is asked for after every single sign-on that needs one.
    RequireLocal,
}

fn default_mfa_methods() -> Vec<MfaMethod> {
    vec![MfaMethod::WebAuthn, MfaMethod::Totp]
}

/// Who must present a second factor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MfaRequirement {
    /// Every user, on every sign-in.
    Always,
    /// Users holding at least one privileged permission.
    #[default]
    PrivilegedRoles,
    /// Nobody (not recommended).
    Never,
}

/// A second factor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MfaMethod {
    /// Security keys and platform authenticators (WebAuthn).
    WebAuthn,
    /// Time-based one-time passwords (RFC 6238).
    #[serde(rename = "TOTP")]
    Totp,
}

/// Passkey sign-in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyPolicy {
    /// Whether users may enrol passkeys and sign in with them without a password.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PasskeyPolicy {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// How unknown users come to exist.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningPolicy {
    /// `disabled`: users exist only when invited or created by an admin.
    /// `jit`: an unknown user signing in through an IdentityProvider with JIT
    /// enabled is created. `scim`: SCIM is the authoritative path and sign-in
    /// never creates users.
    #[serde(default)]
    pub mode: ProvisioningMode,
}

/// Provisioning mode of an organization.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProvisioningMode {
    /// No automatic provisioning of unknown users.
    #[default]
    Disabled,
    /// Just-in-time creation at sign-in.
    Jit,
    /// SCIM is authoritative.
    Scim,
}

/// Token lifetimes and signing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "duration(self.refreshTokenLifetime) > duration(self.accessTokenLifetime)",
        "message": "refreshTokenLifetime must be longer than accessTokenLifetime",
        "fieldPath": ".refreshTokenLifetime",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "duration(self.keyRotation.overlap) >= duration(self.accessTokenLifetime)",
        "message": "keyRotation.overlap must be at least accessTokenLifetime, or tokens signed by a retired key would stop verifying before they expire",
        "fieldPath": ".keyRotation.overlap",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct TokenPolicy {
    /// Lifetime of access tokens (a duration such as `15m`). Keep it short:
    /// access tokens are not looked up when used.
    #[serde(default = "default_access_token_lifetime")]
    pub access_token_lifetime: GoDuration,

    /// Lifetime of a refresh token family from the original sign-in (for
    /// example `720h`). Rotation never extends it.
    #[serde(default = "default_refresh_token_lifetime")]
    pub refresh_token_lifetime: GoDuration,

    /// Algorithm used to sign access and ID tokens.
    #[serde(default)]
    pub signing_algorithm: SigningAlgorithm,

    /// When signing keys are replaced.
    #[serde(default)]
    pub key_rotation: KeyRotation,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            access_token_lifetime: default_access_token_lifetime(),
            refresh_token_lifetime: default_refresh_token_lifetime(),
            signing_algorithm: SigningAlgorithm::default(),
            key_rotation: KeyRotation::default(),
        }
    }
}

fn default_access_token_lifetime() -> GoDuration {
    GoDuration::new("15m")
}

fn default_refresh_token_lifetime() -> GoDuration {
    GoDuration::new("720h")
}

/// Token signing algorithm (RFC 7518 / RFC 8037 names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SigningAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for relying parties that know nothing else.
    RS256,
}

/// Signing key rotation schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "duration(self.overlap) < duration(self.period)",
        "message": "overlap must be shorter than the rotation period",
        "fieldPath": ".overlap",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct KeyRotation {
    /// How long a key signs new tokens before the next one takes over (for
    /// example `720h`).
    #[serde(default = "default_rotation_period")]
    pub period: GoDuration,

    /// How long a key is published before it signs (state `next`) and after it
    /// stops signing (state `retiring`), so that no valid token stops verifying.
    /// Must be at least the access token lifetime.
    #[serde(default = "default_rotation_overlap")]
    pub overlap: GoDuration,
}

impl Default for KeyRotation {
    fn default() -> Self {
        Self { period: default_rotation_period(), overlap: default_rotation_overlap() }
    }
}

fn default_rotation_period() -> GoDuration {
    GoDuration::new("720h")
}

fn default_rotation_overlap() -> GoDuration {
    GoDuration::new("24h")
}

fn default_true() -> bool {
    true
}

/// What the controller reports about an Organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The OpenID issuer URL of this organization's token service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// The compliance posture, recomputed every few minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<super::OrganizationPosture>,
}
