//! What an upstream says about the person who signed in there, once its
//! answer has been verified, in the same shape for OIDC and SAML.

use serde::{Deserialize, Serialize};

/// A verified upstream sign-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    /// The upstream's stable id of the person (`sub`, or the SAML NameID).
    pub subject: String,
    /// The userName to look up or create, from the mapped claim.
    pub user_name: Option<String>,
    /// The email address, when the upstream vouches for it.
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Group display names; `None` when the upstream sent no groups claim
    /// (then memberships are left as they are, never emptied).
    pub groups: Option<Vec<String>>,
    /// How the person authenticated at the upstream (RFC 8176 values when
    /// it says so: `pwd`, `mfa`, `otp`, `hwk`…).
    pub upstream_amr: Vec<String>,
}

impl UpstreamIdentity {
    /// Whether the upstream reports a multi-factor authentication.
    pub fn upstream_mfa(&self) -> bool {
        self.upstream_amr.iter().any(|m| m == "mfa")
    }

    /// The name to sign the person in under: the mapped userName, else the email.
    pub fn login_name(&self) -> Option<&str> {
        self.user_name.as_deref().or(self.email.as_deref()).filter(|n| !n.trim().is_empty())
    }
}

/// Reads a claim or attribute value as a list of strings: an array of
/// strings, or one string (some IdPs send a single group as a string).
pub fn string_list(value: &serde_json::Value) -> Option<Vec<String>> {
    match value {
        serde_json::Value::String(one) => Some(vec![one.clone()]),
        serde_json::Value::Array(items) => {
            Some(items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect())
        }
        _ => None,
    }
}
