//! Pieces shared by several kinds: status, conditions, references, patterns.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Permission names are `domain.action`; roles may also use `domain.*` or `*`.
pub const PERMISSION_PATTERN: &str = r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$";
/// A permission, or a wildcard over one domain (`journeys.*`) or over all (`*`).
pub const PERMISSION_GRANT_PATTERN: &str = r"^(\*|[a-z][a-z0-9-]*\.(\*|[a-z][a-z0-9-]*))$";
/// A Kubernetes object name (RFC 1123 subdomain, as used for Roles and OAuthClients).
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// A workspace name (RFC 1123 label).
pub const WORKSPACE_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// An email domain such as `acme.com`.
pub const EMAIL_DOMAIN_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$";
/// A Go-style duration as Kubernetes writes them (`15m`, `720h`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// What every Portcullis status carries, so `kubectl wait --for=condition=Ready`
/// and Argo CD health checks work the same on every kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` this status describes. When it lags behind the
    /// object's generation, the controller has not yet acted on the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state in the standard Kubernetes condition shape: `Ready` plus
    /// kind-specific conditions, each with a machine-readable reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the same namespace as the referring resource.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,

    /// Key within the Secret's `data` holding the value.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "client-secret".to_owned()
}
