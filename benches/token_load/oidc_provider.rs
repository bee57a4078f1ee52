//! The `oidc-provider` npm package as a child process
//! (`node benches/oidc-provider/server.mjs <port> <refresh tokens>`), its
//! dependencies installed with `npm ci` first when `node_modules` is missing.
//! The process is killed when the handle is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The client `server.mjs` registers.
pub const CLIENT_ID: &str = "bench";
pub const CLIENT_SECRET: &str = "bench-client-secret-0123456789abcdef";
/// The resource (audience) its access tokens are for; its scope is `api`.
pub const RESOURCE: &str = "https://api.bench.example";

const NPM_CI_DEADLINE: Duration = Duration::from_secs(180);
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct OidcProvider {
    child: Child,
    pub addr: SocketAddr,
    /// One seeded refresh token per requested worker.
    pub refresh_tokens: Vec<String>,
    pub version: String,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

impl OidcProvider {
    /// Installs (if needed) and starts the server with `refresh_tokens`
    /// seeded refresh tokens. The error says what is missing (node, npm, the
    /// registry) so the bench can report it and go on with our side.
    pub async fn start(refresh_tokens: usize) -> Result<OidcProvider, String> {
        let dir = dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            eprintln!("oidc-provider: node_modules missing, running `npm ci` in {}", dir.display());
            let install = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(NPM_CI_DEADLINE, install)
                .await
                .map_err(|_| {
                    format!("`npm ci` did not finish within {NPM_CI_DEADLINE:?} (registry unreachable?)")
                })?
                .map_err(|e| format!("cannot run npm: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "`npm ci` failed (is the npm registry reachable?): {}",
                    String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
                ));
            }
        }
        let version = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|package| package["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());

        // The issuer URL is fixed before listening, so pick the port here.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(port.to_string())
            .arg(refresh_tokens.to_string())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run node: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seeded = Vec::with_capacity(refresh_tokens);
        let ready = async {
            while let Some(line) = lines.next_line().await.map_err(|e| format!("node output: {e}"))? {
                if let Some(token) = line.strip_prefix("refresh ") {
                    seeded.push(token.to_owned());
                } else if let Some(url) = line.strip_prefix("ready http://") {
                    return url.parse::<SocketAddr>().map_err(|e| format!("ready line {line:?}: {e}"));
                }
            }
            Err("node exited before it was ready".to_owned())
        };
        let addr = tokio::time::timeout(START_DEADLINE, ready)
            .await
            .map_err(|_| format!("oidc-provider not ready within {START_DEADLINE:?}"))??;
        Ok(OidcProvider { child, addr, refresh_tokens: seeded, version })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
