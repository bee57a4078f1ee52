//! Check mode: each decision asked of the organization's check API
//! (`POST {issuer}/api/v1/check` with the presented token), so a revoked
//! token or a removed role is refused at once instead of when the token
//! expires. The guard calls it with an access token of its own, taken with
//! `client_credentials` and reused until shortly before it expires.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::config::CheckApiCredentials;
use crate::error::GuardError;
use crate::jwks::Discovery;

/// The guard's own token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

pub(crate) struct CheckApi {
    http: reqwest::Client,
    url: String,
    credentials: CheckApiCredentials,
    own_token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct CheckResponse {
    allowed: bool,
    reason: String,
    #[serde(default)]
    explanation: String,
}

impl CheckApi {
    pub fn new(http: reqwest::Client, issuer: &str, credentials: CheckApiCredentials) -> Self {
        Self {
            http,
            url: format!("{issuer}/api/v1/check"),
            credentials,
            own_token: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the check API allows `token` the `permission` in `workspace`.
    pub async fn decide(
        &self,
        discovery: &Discovery,
        token: &str,
        permission: &str,
        workspace: Option<&str>,
    ) -> Result<(), GuardError> {
        let body = json!({ "token": token, "permission": permission, "workspace": workspace });
        let mut response = self.post(discovery, &body, false).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            // Our own token was refused (a rotation, a restart): take another once.
            response = self.post(discovery, &body, true).await?;
        }
        if !response.status().is_success() {
            return Err(unavailable(format!("the check API answered {}", response.status())));
        }
        let answer: CheckResponse = response.json().await.map_err(|e| unavailable(e.to_string()))?;
        match (answer.allowed, answer.reason.as_str()) {
            (true, _) => Ok(()),
            (false, "InvalidToken" | "RevokedToken") => Err(GuardError::invalid(answer.explanation)),
            (false, reason) => Err(GuardError::InsufficientPermission {
                permission: permission.to_owned(),
                description: format!("Permission {permission} is required ({reason})."),
            }),
        }
    }

    async fn post(
        &self,
        discovery: &Discovery,
        body: &serde_json::Value,
        renew: bool,
    ) -> Result<reqwest::Response, GuardError> {
        let own = self.own_token(discovery, renew).await?;
        self.http
            .post(&self.url)
            .bearer_auth(own)
            .json(body)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))
    }

    async fn own_token(&self, discovery: &Discovery, renew: bool) -> Result<String, GuardError> {
        let mut cached = self.own_token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && !renew
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .basic_auth(&self.credentials.client_id, Some(&self.credentials.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "the token endpoint refused the guard's client {:?} ({})",
                self.credentials.client_id,
                response.status()
            )));
        }
        let issued: TokenResponse = response.json().await.map_err(|e| unavailable(e.to_string()))?;
        let lifetime = Duration::from_secs(issued.expires_in.unwrap_or(60));
        let until = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 2));
        *cached = Some((issued.access_token.clone(), until));
        Ok(issued.access_token)
    }
}

fn unavailable(what: String) -> GuardError {
    GuardError::IssuerUnavailable(format!("check API: {what}"))
}
