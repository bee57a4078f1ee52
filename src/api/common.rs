//! Pieces shared by several kinds: status, conditions, references, patterns.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// A Go-style duration as Kubernetes writes them (`15m`, `720h`, `1h30m`,
/// `1.5h`). Kept as written, so the object reads back byte for byte (what
/// Argo CD compares); read once, here. A text the schema's pattern admits
/// but no [`Duration`] can hold (an overflow) reads as `None`: callers fall
/// back or report it, and one such object never stops a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Option<Duration>,
}

impl GoDuration {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let value = parse_go_duration(&text);
        Self { text, value }
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The duration, if the text is one.
    pub fn get(&self) -> Option<Duration> {
        self.value
    }

    /// The duration, if the text is one that a [`SignedDuration`] holds.
    pub fn signed(&self) -> Option<SignedDuration> {
        self.value.and_then(|d| SignedDuration::try_from(d).ok())
    }

    /// The duration if it is one and longer than zero.
    pub fn positive(&self) -> Option<SignedDuration> {
        self.signed().filter(|d| d.is_positive())
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for GoDuration {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "maxLength": 32, "pattern": DURATION_PATTERN })
    }
}

/// Sums `<number><unit>` parts, as Go's `time.ParseDuration` does (no sign).
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubernetes_writes_them_and_round_trip() {
        let get = |text: &str| GoDuration::new(text).get();
        assert_eq!(get("15m"), Some(Duration::from_secs(900)));
        assert_eq!(get("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(get("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(get("720h"), Some(Duration::from_secs(720 * 3600)));
        assert_eq!(get("10x"), None);
        assert_eq!(get(""), None);
        assert_eq!(GoDuration::new("0s").positive(), None);
        let json = serde_json::to_string(&GoDuration::new("1h30m")).unwrap();
        assert_eq!(json, "\"1h30m\"");
        let back: GoDuration = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), "1h30m");
    }
}
