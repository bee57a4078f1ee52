//! The claims of a Portcullis access token (RFC 9068 §2.2 plus the
//! organization, roles and permissions), and the permission decision read
//! from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// A verified access token's payload.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user's id, or for `client_credentials` the client's id.
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes (RFC 9068 §2.2.3).
    #[serde(default)]
    pub scope: Option<String>,
    /// The organization's name.
    pub org: String,
    #[serde(default)]
    pub roles: Vec<RoleClaim>,
    /// Permissions held in every workspace; `None` when the client did not
    /// ask for them (scope `permissions`, or `tokenClaims: [permissions]`).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Per workspace, the permissions held there beyond `permissions`.
    #[serde(default)]
    pub workspace_permissions: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// One entry of `roles`: a role name and where it was granted
/// (`"organization"` or a workspace name).
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RoleClaim {
    pub name: String,
    pub scope: String,
}

impl AccessClaims {
    /// Whether the token says its principal holds `permission` in `workspace`
    /// (`None`: the organization as a whole). Names are exact: the token
    /// service has already expanded wildcards and included roles.
    pub fn holds(&self, permission: &str, workspace: Option<&str>) -> bool {
        let everywhere = self.permissions.iter().flatten().any(|p| p == permission);
        everywhere
            || workspace
                .and_then(|w| self.workspace_permissions.as_ref()?.get(w))
                .is_some_and(|held| held.iter().any(|p| p == permission))
    }

    /// Whether the token carries permissions at all.
    pub fn has_permissions_claim(&self) -> bool {
        self.permissions.is_some()
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(extra: serde_json::Value) -> AccessClaims {
        let mut base = serde_json::json!({
            "iss": "https://id.example.com/o/acme", "sub": "u1", "aud": "https://api.example.com",
            "exp": 2, "iat": 1, "jti": "j", "client_id": "web", "org": "acme",
        });
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn organization_permissions_hold_in_every_workspace() {
        let c = claims(serde_json::json!({ "permissions": ["journeys.view"] }));
        assert!(c.holds("journeys.view", None));
        assert!(c.holds("journeys.view", Some("emea")));
        assert!(!c.holds("journeys.publish", Some("emea")));
    }

    #[test]
    fn workspace_permissions_hold_only_in_their_workspace() {
        let c = claims(serde_json::json!({
            "permissions": [], "workspace_permissions": { "emea": ["journeys.publish"] },
        }));
        assert!(c.holds("journeys.publish", Some("emea")));
        assert!(!c.holds("journeys.publish", Some("us")));
        assert!(!c.holds("journeys.publish", None));
    }

    #[test]
    fn a_token_without_permissions_holds_nothing() {
        let c = claims(serde_json::json!({ "aud": ["a", "b"] }));
        assert_eq!(c.aud, ["a", "b"]);
        assert!(!c.has_permissions_claim());
        assert!(!c.holds("journeys.view", None));
    }
}
