//! The token service's check and admin APIs, called as an OAuthClient with a
//! client-credentials token: how `kubectl portcullis` answers `check`, `why`,
//! `users` and `audit export`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cluster::Cluster;
use crate::federation::http::UpstreamHttp;

/// An audit export may be large; anything else the APIs answer is small.
const MAX_ANSWER: usize = 1 << 30;
/// Users asked for per page.
const USERS_PAGE: u32 = 200;

/// The organization's APIs, with a token to call them.
pub struct AdminApi {
    http: UpstreamHttp,
    issuer: String,
    token: String,
}

/// What the check API decided.
#[derive(Debug, Deserialize)]
pub struct Decision {
    allowed: bool,
    reason: String,
    pub explanation: String,
    #[serde(default)]
    grant: Option<Grant>,
}

#[derive(Debug, Deserialize)]
struct Grant {
    /// The RoleAssignment's uid.
    assignment: String,
    role: String,
    group: Option<String>,
    workspace: Option<String>,
}

impl Decision {
    pub fn exit_code(&self) -> ExitCode {
        if self.allowed { ExitCode::SUCCESS } else { ExitCode::from(1) }
    }

    /// The decision and, when allowed, the grant that decides it, with the
    /// assignment named as in Kubernetes where it lives there.
    pub async fn trail(&self, cluster: &Cluster) -> String {
        let mut out = String::new();
        let verdict = if self.allowed { "allowed" } else { "denied" };
        let _ = writeln!(out, "{verdict} ({}): {}", self.reason, self.explanation);
        if let Some(grant) = &self.grant {
            let assignment = match cluster.assignment_name(&grant.assignment).await {
                Some(name) => format!("RoleAssignment {}/{name}", cluster.namespace),
                None => format!("role assignment {} (kept through the admin API)", grant.assignment),
            };
            let _ = writeln!(out, "  assignment  {assignment}");
            let _ = writeln!(out, "  role        {}", grant.role);
            if let Some(group) = &grant.group {
                let _ = writeln!(out, "  through     group {group}");
            }
            let scope = grant
                .workspace
                .as_deref()
                .map_or("the organization".to_owned(), |w| format!("workspace {w}"));
            let _ = writeln!(out, "  in          {scope}");
        }
        out
    }
}

impl AdminApi {
    /// A client-credentials token for OAuthClient `client` at the
    /// organization's issuer, or at `token_service` (a base URL) instead.
    pub async fn connect(
        cluster: &Cluster,
        client: Option<&str>,
        token_service: Option<&str>,
    ) -> anyhow::Result<Self> {
        let client = client.ok_or_else(|| {
            anyhow!(
                "name the OAuthClient to act as with --client NAME (or PORTCULLIS_CLIENT): one with a client \
                 secret whose role assignments grant iam.view (and iam.export-audit for the audit trail)"
            )
        })?;
        let org = cluster.organization().await?;
        let issuer = match token_service {
            Some(base) => format!("{}/o/{}", base.trim_end_matches('/'), kube::ResourceExt::name_any(&org)),
            None => org.status.and_then(|s| s.issuer).ok_or_else(|| {
                anyhow!("the Organization has no issuer in its status yet (is the operator running with --issuer-base-url?)")
            })?,
        };
        let secret = cluster.client_secret(client).await?;
        let http = UpstreamHttp::new(None).context("making the HTTP client")?.with_max_body(MAX_ANSWER);

        // RFC 6749 §2.3.1: both halves form-encoded before Basic.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!("{}:{}", encode(client), encode(secret.expose())));
        let request = http::Request::post(format!("{issuer}/token"))
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(b"grant_type=client_credentials".to_vec())?;
        let answer = call(&http, request).await?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("the token endpoint answered without an access_token"))?
            .to_owned();
        Ok(Self { http, issuer, token })
    }

    fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.issuer))
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    /// `POST {issuer}/api/v1/check`; `principal` is a userName, `group/NAME` or `client/NAME`.
    pub async fn check(
        &self,
        principal: &str,
        permission: &str,
        workspace: Option<&str>,
    ) -> anyhow::Result<Decision> {
        let (kind, name) = match principal.split_once('/') {
            Some(("group", name)) => ("Group", name),
            Some(("client", name)) => ("Client", name),
            Some(("user", name)) => ("User", name),
            _ => ("User", principal),
        };
        let body = json!({ "principal": { "kind": kind, "name": name }, "permission": permission, "workspace": workspace });
        let request = self
            .request(http::Method::POST, "/api/v1/check")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body)?)?;
        serde_json::from_value(call(&self.http, request).await?).context("reading the check API's answer")
    }

    /// Every user, a line each, page after page.
    pub async fn print_users(&self) -> anyhow::Result<()> {
        println!("{:<40} {:<7} {:<8} {:<25} ID", "USERNAME", "ACTIVE", "SOURCE", "LAST SIGN-IN");
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/users?limit={USERS_PAGE}");
            if let Some(cursor) = &cursor {
                path.push_str("&cursor=");
                path.push_str(cursor);
            }
            let page = call(&self.http, self.request(http::Method::GET, &path).body(Vec::new())?).await?;
            for user in page["users"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<7} {:<8} {:<25} {}",
                    user["userName"].as_str().unwrap_or_default(),
                    user["active"].as_bool().unwrap_or_default(),
                    user["source"].as_str().unwrap_or_default(),
                    user["lastLoginAt"].as_str().unwrap_or("never"),
                    user["id"].as_str().unwrap_or_default(),
                );
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(()),
            }
        }
    }

    /// `GET {issuer}/api/v1/audit/export` into `output` (or standard output).
    pub async fn export_audit(&self, output: Option<&Path>) -> anyhow::Result<()> {
        let request = self.request(http::Method::GET, "/api/v1/audit/export").body(Vec::new())?;
        let response = self.http.execute(request).await?;
        if !response.status().is_success() {
            bail!("{}", refusal(response.status(), response.body()));
        }
        match output {
            Some(path) => std::fs::write(path, response.body())
                .with_context(|| format!("writing {}", path.display()))?,
            None => {
                use std::io::Write as _;
                std::io::stdout().write_all(response.body())?;
            }
        }
        Ok(())
    }
}

/// Sends `request`; the JSON answer, or the refusal as an error.
async fn call(http: &UpstreamHttp, request: http::Request<Vec<u8>>) -> anyhow::Result<Value> {
    let url = request.uri().to_string();
    let response = http.execute(request).await?;
    if !response.status().is_success() {
        bail!("{url}: {}", refusal(response.status(), response.body()));
    }
    serde_json::from_slice(response.body()).with_context(|| format!("{url} did not answer JSON"))
}

/// What the service said when it refused: a problem document's detail, an
/// OAuth error's description, or the status.
fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    let said: Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = ["detail", "error_description", "title", "error"].iter().find_map(|key| said[key].as_str());
    match detail {
        Some(detail) => format!("{status}: {detail}"),
        None => status.to_string(),
    }
}
