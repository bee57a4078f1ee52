//! What a service tells the guard: the issuer it trusts, its own audience,
//! and how it verifies (leeway, algorithms, JWKS refresh bounds, check mode).

use std::time::Duration;

use jsonwebtoken::Algorithm;

/// The guard's settings. [`GuardConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// The organization's issuer, `{base URL}/o/{organization}`, exactly as
    /// tokens carry it in `iss`.
    pub issuer: String,
    /// This service's identifier, which tokens for it carry in `aud` (one of
    /// the OAuthClient's `audiences`).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`. Default 30 s.
    pub leeway: Duration,
    /// Signature algorithms accepted. Default ES256, EdDSA and RS256 (what
    /// Portcullis signs with); `HS*` are refused whatever is listed here.
    pub algorithms: Vec<Algorithm>,
    /// The least time between two JWKS fetches caused by unknown `kid`s, so
    /// that tokens with made-up kids cannot make the service hammer the
    /// issuer. Default 30 s.
    pub min_jwks_refresh: Duration,
    /// How long a fetched JWKS is used before it is fetched again on the
    /// next request. Default 10 min.
    pub jwks_max_age: Duration,
    /// The path parameter that names the workspace. Default `workspace`.
    pub workspace_param: String,
    /// Check mode: ask the check API for every [`RequirePermission`](crate::RequirePermission)
    /// decision, with these client credentials.
    pub check_api: Option<CheckApiCredentials>,
    /// Timeout of each request to the issuer. Default 5 s.
    pub http_timeout: Duration,
    /// How many verified tokens are remembered (with their claims), so that
    /// a client's repeated requests with one token skip the signature check
    /// until it expires or its key leaves the issuer's JWKS. About 2 KiB
    /// each; 0 turns it off. Default 10,000.
    pub verified_tokens: usize,
}

/// A confidential OAuthClient of the organization, with `client_credentials`,
/// the issuer among its `audiences` and a role granting `iam.view`: the guard
/// takes tokens with it to call the check API.
#[derive(Clone)]
pub struct CheckApiCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for CheckApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckApiCredentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// A setting the guard cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the issuer must be an http(s) URL, got {0:?}")]
    Issuer(String),
    #[error("the audience must not be empty")]
    Audience,
    #[error("no asymmetric algorithm is allowed (HS* and none are never accepted)")]
    Algorithms,
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

impl GuardConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
            min_jwks_refresh: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            workspace_param: "workspace".into(),
            check_api: None,
            http_timeout: Duration::from_secs(5),
            verified_tokens: 10_000,
        }
    }

    /// Turns on check mode with these client credentials.
    pub fn with_check_api(mut self, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        self.check_api =
            Some(CheckApiCredentials { client_id: client_id.into(), client_secret: client_secret.into() });
        self
    }

    pub(crate) fn validated(mut self) -> Result<Self, ConfigError> {
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(ConfigError::Issuer(self.issuer));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::Audience);
        }
        // RFC 8725 §3.1: a fixed list of asymmetric algorithms, so a public
        // key can never be used as an HMAC secret.
        self.algorithms.retain(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        self.algorithms.dedup();
        if self.algorithms.is_empty() {
            return Err(ConfigError::Algorithms);
        }
        Ok(self)
    }
}
