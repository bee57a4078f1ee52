//! `OAuthClient`: an application that asks for tokens.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// An application that obtains tokens from the organization's OpenID provider.
/// Its `client_id` is the resource's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iam.portcullis.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    doc = "An application that obtains tokens from the organization's OpenID provider.",
    plural = "oauthclients",
    shortname = "oc",
    category = "portcullis",
    namespaced,
    status = "OAuthClientStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Grants","type":"string","jsonPath":".spec.grantTypes"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type != 'Public' || !has(self.clientSecretRef)",
        "message": "a Public client has no secret: remove clientSecretRef or make the client Confidential",
        "fieldPath": ".clientSecretRef",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.type != 'Public' || self.requirePkce",
        "message": "a Public client must use PKCE (RFC 9700 section 2.1.1): requirePkce cannot be false",
        "fieldPath": ".requirePkce",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.type != 'Public' || !('client_credentials' in self.grantTypes)",
        "message": "client_credentials needs a Confidential client: a Public client cannot keep a secret",
        "fieldPath": ".grantTypes",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!('authorization_code' in self.grantTypes) || (has(self.redirectUris) && size(self.redirectUris) > 0)",
        "message": "authorization_code needs at least one redirect URI",
        "fieldPath": ".redirectUris",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "!('refresh_token' in self.grantTypes) || 'authorization_code' in self.grantTypes",
        "message": "refresh_token is only issued with authorization_code (client_credentials gets no refresh token, RFC 6749 section 4.4.3)",
        "fieldPath": ".grantTypes",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct OAuthClientSpec {
    /// Name shown on consent and sign-in pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// `Confidential`: a server-side application that keeps a secret.
    /// `Public`: a browser or native application; no secret, PKCE required.
    #[serde(rename = "type")]
    pub client_type: ClientType,

    /// OAuth 2 grants this client may use. There is no implicit and no
    /// password grant (RFC 9700 section 2.1.2 and 2.4).
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub grant_types: Vec<GrantType>,

    /// Redirect URIs, compared exactly (RFC 9700 section 4.1.3): `https`, `http`
    /// on a loopback host only, or a private-use scheme such as
    /// `com.example.app:/callback` for native apps (RFC 8252 section 7.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub redirect_uris: Vec<RedirectUri>,

    /// Where the client may send users after sign-out, compared exactly;
    /// the same rules as `redirectUris` (no fragment; `https`, `http` on a
    /// loopback host, or a private-use scheme).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub post_logout_redirect_uris: Vec<RedirectUri>,

    /// Require PKCE with S256 on the authorization code grant. Always true for
    /// Public clients; recommended for every client.
    #[serde(default = "default_true")]
    pub require_pkce: bool,

    /// Audiences (`aud`) this client may request tokens for: the resource
    /// servers that will accept them. Defaults to the client itself when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 512)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub audiences: Vec<String>,

    /// Which claims its access tokens carry beyond the RFC 9068 ones: `roles`
    /// (name and scope of each granted role), `permissions` (the effective
    /// permissions, computed by the access core), `groups`, `email`, `profile`.
    #[serde(default = "default_token_claims")]
    #[schemars(length(max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub token_claims: Vec<TokenClaim>,

    /// The client secret, from a Secret you manage. When absent on a
    /// Confidential client, the operator generates one into a Secret named in
    /// the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyReference>,
}

/// A redirect URI (after sign-in or sign-out), compared exactly when a
/// client presents it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.matches('^(https://[^#\\\\s/]+(/[^#\\\\s]*)?|http://(localhost|127[.]0[.]0[.]1|\\\\[::1\\\\])(:[0-9]+)?(/[^#\\\\s]*)?|[a-z][a-z0-9+-]*([.][a-z0-9+-]+)+:/[^#\\\\s]*)$')",
    "message": "a redirect URI must be absolute, without a fragment, and use https, http on localhost, or a private-use scheme like com.example.app:/callback",
    "reason": "FieldValueInvalid"
}]))]
pub struct RedirectUri(#[schemars(length(min = 1, max = 1024))] pub String);

fn default_true() -> bool {
    true
}

fn default_token_claims() -> Vec<TokenClaim> {
    vec![TokenClaim::Roles]
}

/// OAuth 2 client types (RFC 6749 section 2.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClientType {
    /// Can keep a secret.
    Confidential,
    /// Cannot keep a secret.
    Public,
}

/// Grants a client may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// Authorization code with PKCE (RFC 6749 section 4.1, RFC 7636).
    AuthorizationCode,
    /// Refresh token with rotation (RFC 6749 section 6).
    RefreshToken,
    /// Client credentials, for a client acting for itself (RFC 6749 section 4.4).
    ClientCredentials,
}

/// Optional claims in access tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenClaim {
    /// Granted roles with their scope.
    Roles,
    /// Effective permissions.
    Permissions,
    /// Group display names.
    Groups,
    /// Email address and whether it is verified.
    Email,
    /// Name claims.
    Profile,
}

/// What the controller reports about an OAuthClient.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// Name of the Secret holding the client secret (generated or referenced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}
