//! The OpenID Connect relying party for upstream providers, on the
//! `openidconnect` crate: discovery (cached, refreshed), the authorization
//! code flow with PKCE (S256), the RFC 9207 `iss` check, and the ID token
//! checks of OIDC Core §3.1.3.7 (signature by the upstream's JWKS with
//! `kid` rotation, `iss`, `aud`, `azp`, `exp`/`iat` with leeway, `nonce`).
//!
//! ```text
//!  authorization_url ── discovery(issuer) ─► {authorization_endpoint}?…&state&nonce&code_challenge
//!  finish(code, iss) ── iss == discovered issuer (RFC 9207 §2.4)
//!                    ── POST token_endpoint (code + code_verifier, client_secret_basic)   [upstream time]
//!                    ── ID token: alg allow-list, JWKS key by kid (unknown kid: JWKS fetched again once),
//!                       iss, aud (only us, or azp = us), exp/iat ± leeway, nonce
//!                    ── claims mapped by claimMapping ─► UpstreamIdentity
//! ```
//!
//! What the flow binds (state, nonce, PKCE verifier) is chosen by the caller
//! and handed in; this module keeps no per-sign-in state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use super::http::{HttpError, UpstreamHttp, check_upstream_url};
use super::identity::{UpstreamIdentity, string_list};
use crate::api::ClaimMapping;
use crate::secret::SecretString;

/// Clock difference tolerated on `exp` and `iat`.
pub const LEEWAY: SignedDuration = SignedDuration::from_secs(60);
/// An ID token issued longer ago than this is refused (its nonce is long spent).
const MAX_ID_TOKEN_AGE: SignedDuration = SignedDuration::from_mins(10);
/// Discovery is fetched again after this long.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(60 * 60);
/// A key set is fetched again for an unknown `kid` at most this often.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(1);

/// Signature algorithms accepted on upstream ID tokens: asymmetric only
/// (no `none`, no HMAC with the client secret).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The discovery fields the core metadata type lacks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207 §3: the provider puts `iss` in its authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("issuer {issuer:?} is not usable")]
    Issuer { issuer: String, source: HttpError },
    #[error("discovery of {issuer} failed: {message}")]
    Discovery { issuer: String, message: String },
    #[error("fetching the key set of {issuer} failed: {message}")]
    Jwks { issuer: String, message: String },
    #[error("the redirect URI {0:?} is not a URL")]
    RedirectUri(String),
    #[error("the authorization response names issuer {got:?}, not {expected:?} (mix-up defence, RFC 9207)")]
    IssuerMismatch { expected: String, got: String },
    #[error("the authorization response has no iss parameter, which {issuer} promises (RFC 9207)")]
    IssuerMissing { issuer: String },
    #[error("the upstream refused the code: {0}")]
    CodeExchange(String),
    #[error("the upstream's token response has no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(#[source] ClaimsVerificationError),
    #[error("the ID token's authorized party is {got:?}, not our client")]
    AuthorizedParty { got: Option<String> },
    #[error("the ID token's payload is unreadable")]
    Payload,
    #[error("the upstream said no one's name: claim {claim:?} is missing")]
    NoUserName { claim: String },
}

impl OidcError {
    /// A short reason for counters, audit lines and status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Issuer { .. } | OidcError::Discovery { .. } => "DiscoveryFailed",
            OidcError::Jwks { .. } => "KeySetUnavailable",
            OidcError::RedirectUri(_) => "Misconfigured",
            OidcError::IssuerMismatch { .. } | OidcError::IssuerMissing { .. } => "IssuerMismatch",
            OidcError::CodeExchange(_) | OidcError::NoIdToken => "CodeExchangeFailed",
            OidcError::IdToken(_) | OidcError::AuthorizedParty { .. } | OidcError::Payload => {
                "IdTokenInvalid"
            }
            OidcError::NoUserName { .. } => "ClaimMissing",
        }
    }
}

/// One upstream as a sign-in needs it.
#[derive(Clone, Copy, Debug)]
pub struct OidcUpstream<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a SecretString>,
    pub scopes: &'a [String],
    pub claims: &'a ClaimMapping,
    /// Our callback for this provider.
    pub redirect_uri: &'a str,
}

/// What one sign-in is bound to; made by the caller, never reused.
#[derive(Clone, Debug)]
pub struct FlowValues {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A verified upstream sign-in, and how long the upstream's token endpoint took.
#[derive(Debug)]
pub struct Finished {
    pub identity: UpstreamIdentity,
    pub upstream_time: Duration,
}

/// What a health check found.
#[derive(Clone, Debug)]
pub struct OidcHealth {
    pub keys: usize,
}

struct Discovered {
    metadata: Metadata,
    fetched_at: Instant,
    jwks_fetched_at: Instant,
}

/// The relying party for every upstream of a process; discovery documents
/// and key sets are cached per issuer.
pub struct OidcRelyingParty {
    http: UpstreamHttp,
    cache: Mutex<HashMap<String, Arc<Discovered>>>,
}

impl std::fmt::Debug for OidcRelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcRelyingParty").finish_non_exhaustive()
    }
}

impl OidcRelyingParty {
    pub fn new(http: UpstreamHttp) -> Self {
        Self { http, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, issuer: &str) -> Option<Arc<Discovered>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(issuer).cloned()
    }

    fn remember(&self, issuer: &str, discovered: Arc<Discovered>) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(issuer.to_owned(), discovered);
    }

    /// The issuer's discovery document and keys, from the cache while fresh.
    async fn discovered(&self, issuer: &str) -> Result<Arc<Discovered>, OidcError> {
        if let Some(found) = self.cached(issuer).filter(|d| d.fetched_at.elapsed() < DISCOVERY_REFRESH) {
            return Ok(found);
        }
        let fresh = Arc::new(self.discover(issuer).await?);
        self.remember(issuer, fresh.clone());
        Ok(fresh)
    }

    /// Fetches the discovery document (its `issuer` must be the one asked
    /// for, OIDC Discovery §4.3) and the key set it names.
    async fn discover(&self, issuer: &str) -> Result<Discovered, OidcError> {
        check_upstream_url(issuer)
            .map_err(|source| OidcError::Issuer { issuer: issuer.to_owned(), source })?;
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| OidcError::Discovery { issuer: issuer.to_owned(), message: e.to_string() })?;
        let metadata = Metadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| OidcError::Discovery { issuer: issuer.to_owned(), message: error_text(&e) })?;
        let now = Instant::now();
        Ok(Discovered { metadata, fetched_at: now, jwks_fetched_at: now })
    }

    /// The discovery document again with a fresh key set (an ID token named
    /// a `kid` we do not know: the upstream rotated its keys).
    async fn refetch_keys(&self, issuer: &str, old: &Discovered) -> Result<Arc<Discovered>, OidcError> {
        let jwks = CoreJsonWebKeySet::fetch_async(old.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Jwks { issuer: issuer.to_owned(), message: error_text(&e) })?;
        let mut metadata = old.metadata.clone();
        metadata = metadata.set_jwks(jwks);
        let fresh =
            Arc::new(Discovered { metadata, fetched_at: old.fetched_at, jwks_fetched_at: Instant::now() });
        self.remember(issuer, fresh.clone());
        Ok(fresh)
    }

    /// Where to send the browser: the upstream's authorization endpoint with
    /// our client, scopes, `state`, `nonce` and the PKCE challenge.
    pub async fn authorization_url(
        &self,
        upstream: &OidcUpstream<'_>,
        flow: &FlowValues,
    ) -> Result<String, OidcError> {
        let discovered = self.discovered(upstream.issuer).await?;
        let client = client(&discovered.metadata, upstream)?;
        let state = flow.state.clone();
        let nonce = flow.nonce.clone();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for scope in upstream.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let verifier = PkceCodeVerifier::new(flow.pkce_verifier.clone());
        request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        let (url, _, _) = request.url();
        check_upstream_url(url.as_str())
            .map_err(|source| OidcError::Issuer { issuer: upstream.issuer.to_owned(), source })?;
        Ok(url.to_string())
    }

    /// The callback: checks `iss` (RFC 9207), redeems the code with the PKCE
    /// verifier, and verifies the ID token against `flow`'s nonce at `now`.
    pub async fn finish(
        &self,
        upstream: &OidcUpstream<'_>,
        code: &str,
        iss: Option<&str>,
        flow: &FlowValues,
        now: Timestamp,
    ) -> Result<Finished, OidcError> {
        let mut discovered = self.discovered(upstream.issuer).await?;
        let expected_issuer = discovered.metadata.issuer().as_str().to_owned();
        match iss {
            Some(got) if got != expected_issuer => {
                return Err(OidcError::IssuerMismatch { expected: expected_issuer, got: got.to_owned() });
            }
            None if discovered
                .metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(OidcError::IssuerMissing { issuer: expected_issuer });
            }
            _ => {}
        }

        let client = client(&discovered.metadata, upstream)?;
        let started = Instant::now();
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::CodeExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::CodeExchange(error_text(&e)))?;
        let upstream_time = started.elapsed();
        let _ = response.access_token();
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;

        let nonce = Nonce::new(flow.nonce.clone());
        let claims = loop {
            let client = self::client(&discovered.metadata, upstream)?;
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(ALLOWED_ALGS)
                .set_time_fn(move || chrono_time(now - LEEWAY))
                .set_issue_time_verifier_fn(move |iat| {
                    let iat = Timestamp::from_second(iat.timestamp()).map_err(|e| e.to_string())?;
                    if iat > now + LEEWAY {
                        Err(format!("issued in the future ({iat})"))
                    } else if iat < now - MAX_ID_TOKEN_AGE {
                        Err(format!("issued too long ago ({iat})"))
                    } else {
                        Ok(())
                    }
                });
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => break claims.clone(),
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if discovered.jwks_fetched_at.elapsed() >= JWKS_REFETCH_MIN => {
                    discovered = self.refetch_keys(upstream.issuer, &discovered).await?;
                }
                Err(error) => return Err(OidcError::IdToken(error)),
            }
        };
        // OIDC Core §3.1.3.7 steps 4-5: with other audiences, or an azp, the
        // token must have been issued to us.
        let azp = claims.authorized_party().map(|azp| azp.as_str().to_owned());
        if (claims.audiences().len() > 1 || azp.is_some()) && azp.as_deref() != Some(upstream.client_id) {
            return Err(OidcError::AuthorizedParty { got: azp });
        }

        let payload = verified_payload(&id_token.to_string()).ok_or(OidcError::Payload)?;
        let identity = map_claims(claims.subject().as_str(), &payload, upstream.claims)?;
        Ok(Finished { identity, upstream_time })
    }

    /// What the operator checks: discovery answers with the right issuer, and
    /// the key set it names answers with at least one key. Never cached.
    pub async fn check_health(&self, issuer: &str) -> Result<OidcHealth, OidcError> {
        let discovered = self.discover(issuer).await?;
        let keys = discovered.metadata.jwks().keys().len();
        if keys == 0 {
            return Err(OidcError::Jwks {
                issuer: issuer.to_owned(),
                message: "the key set is empty".into(),
            });
        }
        self.remember(issuer, Arc::new(discovered));
        Ok(OidcHealth { keys })
    }
}

type UpstreamClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn client(metadata: &Metadata, upstream: &OidcUpstream<'_>) -> Result<UpstreamClient, OidcError> {
    let redirect = RedirectUrl::new(upstream.redirect_uri.to_owned())
        .map_err(|_| OidcError::RedirectUri(upstream.redirect_uri.to_owned()))?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(upstream.client_id.to_owned()),
        upstream.client_secret.map(|s| ClientSecret::new(s.expose().to_owned())),
    )
    .set_redirect_uri(redirect))
}

fn chrono_time(at: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

/// The claims of a compact JWS whose signature has been verified.
fn verified_payload(compact: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = compact.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Applies `claimMapping` to verified claims.
///
/// - An email the upstream marks unverified (`email_verified: false`) is not used.
/// - Microsoft Entra ID leaves `groups` out when a user has too many
///   (`_claim_names.groups` points at Graph instead): the groups are then
///   unknown (`None`), and memberships stay as they are. Google never sends
///   groups in ID tokens: the same.
pub fn map_claims(
    subject: &str,
    claims: &serde_json::Map<String, serde_json::Value>,
    mapping: &ClaimMapping,
) -> Result<UpstreamIdentity, OidcError> {
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let email_verified = claims.get("email_verified").and_then(|v| v.as_bool()) != Some(false);
    let email = text(&mapping.email).filter(|_| email_verified);
    let user_name = if mapping.user_name == mapping.email { email.clone() } else { text(&mapping.user_name) };
    if user_name.is_none() && email.is_none() {
        return Err(OidcError::NoUserName { claim: mapping.user_name.clone() });
    }
    let overage = claims
        .get("_claim_names")
        .and_then(|names| names.as_object())
        .is_some_and(|names| names.contains_key(&mapping.groups));
    let groups = if overage { None } else { claims.get(&mapping.groups).and_then(string_list) };
    if overage {
        tracing::warn!(
            subject,
            "the upstream left the groups claim out (group overage): memberships are not changed"
        );
    }
    let upstream_amr = claims.get("amr").and_then(string_list).unwrap_or_default();
    Ok(UpstreamIdentity {
        subject: subject.to_owned(),
        user_name,
        email,
        display_name: text(&mapping.name),
        groups,
        upstream_amr,
    })
}

fn error_text(error: &dyn std::error::Error) -> String {
    crate::error_chain::error_chain(error)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn claims_are_mapped_by_the_mapping() {
        let mapping = ClaimMapping {
            user_name: "preferred_username".into(),
            groups: "roles".into(),
            ..ClaimMapping::default()
        };
        let identity = map_claims(
            "sub-1",
            &claims(json!({
                "preferred_username": "jdoe", "email": "j@acme.com", "name": "J Doe",
                "roles": ["A", "B"], "amr": ["pwd", "mfa"]
            })),
            &mapping,
        )
        .unwrap();
        assert_eq!(identity.user_name.as_deref(), Some("jdoe"));
        assert_eq!(identity.email.as_deref(), Some("j@acme.com"));
        assert_eq!(identity.groups, Some(vec!["A".to_owned(), "B".to_owned()]));
        assert!(identity.upstream_mfa());
    }

    #[test]
    fn an_unverified_email_is_not_used_and_overage_leaves_groups_unknown() {
        let identity = map_claims(
            "sub-2",
            &claims(json!({
                "email": "x@acme.com", "email_verified": false, "preferred_username": "x",
                "_claim_names": { "groups": "src1" }, "groups": ["ignored"]
            })),
            &ClaimMapping { user_name: "preferred_username".into(), ..ClaimMapping::default() },
        )
        .unwrap();
        assert_eq!(identity.email, None);
        assert_eq!(identity.groups, None);
        assert!(map_claims("s", &claims(json!({ "name": "n" })), &ClaimMapping::default()).is_err());
    }
}
