//! Claims of the tokens we issue: RFC 9068 access tokens with our
//! organization and role claims, and OpenID Connect ID tokens.
//!
//! Builders are pure: the caller passes `now`, the lifetime and an RNG (for
//! `jti`), and supplies roles and permissions already resolved by the access
//! core; nothing is computed from the store here.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::encoding::{b64url, sha256, sha512};
use super::keys::Algorithm;

/// Errors building claims: the caller passed something no token may carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    #[error("a token needs at least one audience")]
    NoAudience,

    #[error("token lifetime must be positive, got {0}")]
    NonPositiveLifetime(SignedDuration),

    #[error("token expiry is out of range")]
    OutOfRange,

    #[error("scope {0:?} is not a valid scope token (RFC 6749 section 3.3)")]
    InvalidScope(String),
}

/// `aud`: one or more audiences (RFC 7519 §4.1.3). Written as a string when
/// there is one, as an array otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audience(Vec<String>);

impl Audience {
    /// Audiences in order, duplicates removed; `None` when empty.
    pub fn new(audiences: impl IntoIterator<Item = String>) -> Option<Self> {
        let mut unique: Vec<String> = Vec::new();
        for audience in audiences {
            if !unique.contains(&audience) {
                unique.push(audience);
            }
        }
        (!unique.is_empty()).then_some(Self(unique))
    }

    pub fn single(audience: impl Into<String>) -> Self {
        Self(vec![audience.into()])
    }

    pub fn contains(&self, audience: &str) -> bool {
        self.0.iter().any(|a| a == audience)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let audiences = match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        Self::new(audiences).ok_or_else(|| serde::de::Error::custom("aud is empty"))
    }
}

/// Where a role was granted: the whole organization or one workspace.
/// Written as `"organization"` or as the workspace name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoleScope {
    Organization,
    Workspace(String),
}

const ORGANIZATION_SCOPE: &str = "organization";

impl Serialize for RoleScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Organization => serializer.serialize_str(ORGANIZATION_SCOPE),
            Self::Workspace(name) => serializer.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for RoleScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let scope = String::deserialize(deserializer)?;
        Ok(if scope == ORGANIZATION_SCOPE { Self::Organization } else { Self::Workspace(scope) })
    }
}

/// One entry of the `roles` claim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleClaim {
    pub name: String,
    pub scope: RoleScope,
}

/// An access token's payload (RFC 9068 §2.2) plus our claims.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated (RFC 9068 §2.2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 9068 §2.2.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The organization's name.
    pub org: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleClaim>,
    /// Effective permissions, when the client asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// With `permissions`: per workspace, what the principal holds there
    /// beyond `permissions` (its workspace-scoped grants); workspaces where it
    /// holds nothing more are left out, so a service reads its decision from
    /// the token alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_permissions: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the token endpoint knows when it issues an access token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessTokenGrant {
    pub issuer: String,
    /// The user, or for `client_credentials` the client itself (RFC 9068 §2.2).
    pub subject: String,
    pub audiences: Vec<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub organization: String,
    pub roles: Vec<RoleClaim>,
    pub permissions: Option<Vec<String>>,
    pub workspace_permissions: Option<BTreeMap<String, Vec<String>>>,
    pub groups: Option<Vec<String>>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub auth_time: Option<Timestamp>,
}

impl AccessTokenClaims {
    /// Claims for a token issued at `now`, valid for `lifetime`, with a fresh
    /// 128-bit `jti`.
    pub fn issue<R: CryptoRng + ?Sized>(
        grant: AccessTokenGrant,
        now: Timestamp,
        lifetime: SignedDuration,
        rng: &mut R,
    ) -> Result<Self, ClaimsError> {
        let (iat, exp) = validity(now, lifetime)?;
        let aud = Audience::new(grant.audiences).ok_or(ClaimsError::NoAudience)?;
        let scope = scope_claim(&grant.scopes)?;
        Ok(Self {
            iss: grant.issuer,
            sub: grant.subject,
            aud,
            exp,
            iat,
            jti: token_id(rng),
            client_id: grant.client_id,
            scope,
            auth_time: grant.auth_time.map(|t| t.as_second()),
            org: grant.organization,
            roles: grant.roles,
            permissions: grant.permissions,
            workspace_permissions: grant.workspace_permissions,
            groups: grant.groups,
            email: grant.email,
            name: grant.name,
        })
    }

    /// The scopes, split.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or_default().split(' ').filter(|s| !s.is_empty())
    }
}

/// An ID token's payload (OpenID Connect Core §2, §5.1 for the profile claims).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The IdentityProvider the user signed in through (single sign-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the token endpoint knows when it issues an ID token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdTokenGrant<'a> {
    pub issuer: String,
    pub subject: String,
    /// The sole audience, and `azp`.
    pub client_id: String,
    pub auth_time: Option<Timestamp>,
    /// From the authorization request, returned unchanged (Core §3.1.2.1).
    pub nonce: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    /// The access token issued alongside, bound through `at_hash`.
    pub access_token: Option<&'a str>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
}

impl IdTokenClaims {
    /// Claims for an ID token signed with `algorithm` (which decides `at_hash`).
    pub fn issue(
        grant: IdTokenGrant<'_>,
        algorithm: Algorithm,
        now: Timestamp,
        lifetime: SignedDuration,
    ) -> Result<Self, ClaimsError> {
        let (iat, exp) = validity(now, lifetime)?;
        if grant.client_id.is_empty() {
            return Err(ClaimsError::NoAudience);
        }
        let (amr, idp) = split_provider(grant.amr);
        Ok(Self {
            iss: grant.issuer,
            sub: grant.subject,
            aud: Audience::single(grant.client_id.clone()),
            exp,
            iat,
            auth_time: grant.auth_time.map(|t| t.as_second()),
            nonce: grant.nonce,
            acr: grant.acr,
            amr: (!amr.is_empty()).then_some(amr),
            idp,
            azp: Some(grant.client_id),
            at_hash: grant.access_token.map(|token| at_hash(token, algorithm)),
            email: grant.email,
            email_verified: grant.email_verified,
            name: grant.name,
        })
    }
}

/// The prefix of the method reference that names the IdentityProvider of a
/// single sign-on. It travels with the methods (session, code, refresh
/// family) and becomes the `idp` claim; it never shows in `amr`.
pub const PROVIDER_AMR_PREFIX: &str = "idp:";

/// The methods without the provider marker, and the provider it names.
pub fn split_provider(amr: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut provider = None;
    let methods = amr
        .into_iter()
        .filter(|method| match method.strip_prefix(PROVIDER_AMR_PREFIX) {
            Some(name) => {
                provider = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    (methods, provider)
}

/// OpenID Connect Core §3.1.3.6: base64url of the left half of the hash of
/// the access token, with the hash of the ID token's `alg` (SHA-256 for ES256
/// and RS256; SHA-512 for EdDSA with Ed25519, per the OpenID Connect Token
/// Hash Algorithms guide).
pub fn at_hash(access_token: &str, algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::ES256 | Algorithm::RS256 => b64url(&sha256(access_token.as_bytes())[..16]),
        Algorithm::EdDSA => b64url(&sha512(access_token.as_bytes())[..32]),
    }
}

/// A fresh token identifier: 128 random bits, base64url.
pub fn token_id<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    b64url(&bytes)
}

/// `iat` and `exp` as NumericDate (RFC 7519 §2).
fn validity(now: Timestamp, lifetime: SignedDuration) -> Result<(i64, i64), ClaimsError> {
    if lifetime <= SignedDuration::ZERO {
        return Err(ClaimsError::NonPositiveLifetime(lifetime));
    }
    let exp = now.checked_add(lifetime).map_err(|_| ClaimsError::OutOfRange)?;
    Ok((now.as_second(), exp.as_second()))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, joined by
/// spaces; duplicates dropped.
fn scope_claim(scopes: &[String]) -> Result<Option<String>, ClaimsError> {
    let mut unique: Vec<&str> = Vec::new();
    for scope in scopes {
        let valid = !scope.is_empty()
            && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(ClaimsError::InvalidScope(scope.clone()));
        }
        if !unique.contains(&scope.as_str()) {
            unique.push(scope);
        }
    }
    Ok((!unique.is_empty()).then(|| unique.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn grant() -> AccessTokenGrant {
        AccessTokenGrant {
            issuer: "https://id.example.com/acme".into(),
            subject: "user-1".into(),
            audiences: vec!["https://api.example.com".into()],
            client_id: "journeys-web".into(),
            scopes: vec!["openid".into(), "journeys".into()],
            organization: "acme".into(),
            roles: vec![
                RoleClaim { name: "admin".into(), scope: RoleScope::Organization },
                RoleClaim { name: "editor".into(), scope: RoleScope::Workspace("emea".into()) },
            ],
            ..AccessTokenGrant::default()
        }
    }

    #[test]
    fn access_token_claims_have_the_rfc_9068_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let claims =
            AccessTokenClaims::issue(grant(), now(), SignedDuration::from_mins(15), &mut rng).unwrap();
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["iss"], "https://id.example.com/acme");
        assert_eq!(json["aud"], "https://api.example.com", "a single audience is a string");
        assert_eq!(json["iat"], now().as_second());
        assert_eq!(json["exp"], now().as_second() + 15 * 60);
        assert_eq!(json["client_id"], "journeys-web");
        assert_eq!(json["scope"], "openid journeys");
        assert_eq!(json["org"], "acme");
        assert_eq!(
            json["roles"],
            serde_json::json!([
                {"name": "admin", "scope": "organization"},
                {"name": "editor", "scope": "emea"},
            ])
        );
        assert_eq!(json["jti"].as_str().unwrap().len(), 22);
        for absent in ["permissions", "workspace_permissions", "groups", "email", "name", "auth_time"] {
            assert!(json.get(absent).is_none(), "{absent} should be omitted");
        }
        let back: AccessTokenClaims = serde_json::from_value(json).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn each_access_token_gets_its_own_jti() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let a = AccessTokenClaims::issue(grant(), now(), SignedDuration::from_mins(5), &mut rng).unwrap();
        let b = AccessTokenClaims::issue(grant(), now(), SignedDuration::from_mins(5), &mut rng).unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn several_audiences_are_an_array_and_duplicates_are_dropped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut g = grant();
        g.audiences = vec!["a".into(), "b".into(), "a".into()];
        let claims = AccessTokenClaims::issue(g, now(), SignedDuration::from_mins(5), &mut rng).unwrap();
        assert_eq!(serde_json::to_value(&claims.aud).unwrap(), serde_json::json!(["a", "b"]));
    }

    #[test]
    fn access_tokens_without_audience_or_with_bad_lifetime_or_scope_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut g = grant();
        g.audiences.clear();
        assert_eq!(
            AccessTokenClaims::issue(g, now(), SignedDuration::from_mins(5), &mut rng),
            Err(ClaimsError::NoAudience)
        );
        assert_eq!(
            AccessTokenClaims::issue(grant(), now(), SignedDuration::ZERO, &mut rng),
            Err(ClaimsError::NonPositiveLifetime(SignedDuration::ZERO))
        );
        let mut g = grant();
        g.scopes = vec!["read write".into()];
        assert_eq!(
            AccessTokenClaims::issue(g, now(), SignedDuration::from_mins(5), &mut rng),
            Err(ClaimsError::InvalidScope("read write".into()))
        );
        assert_eq!(
            AccessTokenClaims::issue(grant(), Timestamp::MAX, SignedDuration::from_mins(5), &mut rng),
            Err(ClaimsError::OutOfRange)
        );
    }

    #[test]
    fn audience_accepts_a_string_or_an_array_but_not_an_empty_one() {
        let one: Audience = serde_json::from_str(r#""x""#).unwrap();
        let many: Audience = serde_json::from_str(r#"["x","y"]"#).unwrap();
        assert!(one.contains("x") && many.contains("y") && !many.contains("z"));
        assert!(serde_json::from_str::<Audience>("[]").is_err());
        assert!(serde_json::from_str::<Audience>("5").is_err());
    }

    #[test]
    fn id_token_claims_follow_openid_connect_core() {
        let grant = IdTokenGrant {
            issuer: "https://id.example.com/acme".into(),
            subject: "user-1".into(),
            client_id: "journeys-web".into(),
            auth_time: Some(now() - SignedDuration::from_mins(3)),
            nonce: Some("n-0S6_WzA2Mj".into()),
            amr: vec!["pwd".into(), "hwk".into()],
            access_token: Some("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            ..IdTokenGrant::default()
        };
        let claims =
            IdTokenClaims::issue(grant, Algorithm::RS256, now(), SignedDuration::from_mins(10)).unwrap();
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], "journeys-web");
        assert_eq!(json["azp"], "journeys-web");
        assert_eq!(json["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(json["auth_time"], now().as_second() - 180);
        assert_eq!(json["amr"], serde_json::json!(["pwd", "hwk"]));
        assert_eq!(json["exp"], now().as_second() + 600);
        // OpenID Connect Core Appendix A.4 (RS256).
        assert_eq!(json["at_hash"], "77QmUPtjPfzWtF2AnpK9RQ");
        assert!(json.get("acr").is_none());
    }

    #[test]
    fn at_hash_uses_the_hash_of_the_signing_algorithm() {
        // Known answers published with the `oidc-token-hash` package.
        let token = "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL-ar_qw5jl3lthwpMjm283aVMQXDmoqqqydDSqJfbhptzw8rUVwkuQbolw";
        assert_eq!(at_hash(token, Algorithm::RS256), "x7vk7f6BvQj0jQHYFIk4ag");
        assert_eq!(at_hash(token, Algorithm::ES256), "x7vk7f6BvQj0jQHYFIk4ag");
        assert_eq!(at_hash(token, Algorithm::EdDSA), "EGEAhGYyfuwDaVTifvrWSoD5MSy_5hZPy6I7Vm-7pTQ");
    }

    #[test]
    fn role_scope_round_trips_through_its_string_form() {
        for scope in [RoleScope::Organization, RoleScope::Workspace("emea".into())] {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(serde_json::from_str::<RoleScope>(&json).unwrap(), scope);
        }
    }
}
