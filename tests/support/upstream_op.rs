//! A real upstream OpenID provider for the single sign-on tests: panva's
//! `oidc-provider` from npm (OpenID Certified), installed once by
//! `e2e/build-oidc-provider.sh` into `~/.cache/portcullis` and run with
//! node on 127.0.0.1 (`e2e/tools/oidc-provider/op.mjs`). Killed when dropped.
//!
//! ```text
//!  UpstreamOp::start(clients, accounts) ── node op.mjs (OP_CONFIG) ── "listening http://127.0.0.1:port"
//!  sign_in_upstream(browser, authorization URL, login) ── the OP's own login and consent forms
//!        ── returns the URL the OP sends the browser back to (our callback, with code, state, iss)
//! ```
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The running provider.
pub struct UpstreamOp {
    pub issuer: String,
    /// Where the tests' browser reaches it: the issuer, or for an HTTPS
    /// provider its plain-HTTP entry (the tests' HTTP client has no TLS).
    browser_entry: String,
    child: Child,
}

impl Drop for UpstreamOp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// How the provider is scheduled.
enum Priority {
    Normal,
    /// `SCHED_IDLE`.
    Lowest,
}

/// The directory with op.mjs and its node_modules (built once, cached).
fn installed() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_OIDC_PROVIDER_DIR") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/build-oidc-provider.sh");
    let output =
        std::process::Command::new("bash").arg(&script).output().expect("run build-oidc-provider.sh");
    assert!(
        output.status.success(),
        "build-oidc-provider.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the directory on the last line").trim())
}

impl UpstreamOp {
    /// Starts the provider with `clients` (`client_id`, `client_secret`,
    /// `redirect_uris`) and `accounts` (login → claims).
    pub async fn start(clients: serde_json::Value, accounts: serde_json::Value) -> UpstreamOp {
        Self::start_hostile(clients, accounts, None).await
    }

    /// The same provider, made hostile by `tamper` (a name from op.mjs's
    /// `tamperings`, or `discovery-issuer`): its ID tokens rewritten, or
    /// its discovery document naming another issuer.
    pub async fn start_hostile(
        clients: serde_json::Value,
        accounts: serde_json::Value,
        tamper: Option<&str>,
    ) -> UpstreamOp {
        Self::start_with(clients, accounts, serde_json::json!({ "tamper": tamper }), Priority::Normal).await
    }

    /// The provider under the idle scheduling policy (`chrt --idle 0`: it
    /// runs only on a core nothing else wants, and gives it up as soon as
    /// anything else wakes): for a benchmark of our side, so that on a
    /// machine shared with the provider its work after answering (which a
    /// remote provider does on its own machine) does not hold a core our
    /// service is waiting for.
    pub async fn start_in_background(clients: serde_json::Value, accounts: serde_json::Value) -> UpstreamOp {
        Self::start_with(clients, accounts, serde_json::json!({}), Priority::Lowest).await
    }

    /// The provider serving HTTPS with `cert_pem` (and its `key_pem`).
    pub async fn start_tls(
        clients: serde_json::Value,
        accounts: serde_json::Value,
        cert_pem: &str,
        key_pem: &str,
    ) -> UpstreamOp {
        let tls = serde_json::json!({ "tls": { "cert": cert_pem, "key": key_pem } });
        Self::start_with(clients, accounts, tls, Priority::Normal).await
    }

    /// The provider with op.mjs's `options` (`tamper`, `tls`) besides the
    /// clients and accounts, run at `priority`.
    async fn start_with(
        clients: serde_json::Value,
        accounts: serde_json::Value,
        options: serde_json::Value,
        priority: Priority,
    ) -> UpstreamOp {
        let dir = installed();
        let mut config = serde_json::json!({ "clients": clients, "accounts": accounts });
        if let (Some(config), Some(options)) = (config.as_object_mut(), options.as_object()) {
            config.extend(options.clone());
        }
        let mut command = match priority {
            Priority::Normal => Command::new("node"),
            Priority::Lowest => {
                let mut idle = Command::new("chrt");
                idle.args(["--idle", "0", "node"]);
                idle
            }
        };
        let mut child = command
            .arg(dir.join("op.mjs"))
            .current_dir(&dir)
            .env("OP_CONFIG", config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node op.mjs");
        let stdout = child.stdout.take().expect("the provider's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (issuer, browser_entry) = tokio::time::timeout(Duration::from_secs(30), async {
            let mut browser_entry = None;
            while let Some(line) = lines.next_line().await.expect("read the provider's output") {
                if let Some(entry) = line.strip_prefix("browser-entry ") {
                    browser_entry = Some(entry.trim().to_owned());
                }
                if let Some(issuer) = line.strip_prefix("listening ") {
                    let issuer = issuer.trim().to_owned();
                    return (issuer.clone(), browser_entry.unwrap_or(issuer));
                }
            }
            panic!("the upstream provider exited before listening");
        })
        .await
        .expect("the upstream provider listens within 30s");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        UpstreamOp { issuer, browser_entry, child }
    }

    /// Signs `login` in at the provider in `browser`, starting from the
    /// authorization URL our service redirected to, through the provider's
    /// login and consent forms. Returns the URL it sends the browser back to.
    pub async fn sign_in(&self, browser: &reqwest::Client, authorization_url: &str, login: &str) -> String {
        let authorization_url = match authorization_url.strip_prefix(&self.issuer) {
            Some(rest) => format!("{}{rest}", self.browser_entry),
            None => authorization_url.to_owned(),
        };
        let mut next = Request::Get(authorization_url);
        for _ in 0..12 {
            let response = match &next {
                Request::Get(url) => browser.get(url).send().await,
                Request::Post(url, form) => browser.post(url).form(form).send().await,
            }
            .expect("a request to the upstream provider");
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.absolute(l));
            if let Some(location) = location {
                if !location.starts_with(&self.browser_entry) {
                    return location;
                }
                next = Request::Get(location);
                continue;
            }
            let body = response.text().await.expect("a page");
            assert!(status.is_success(), "the upstream provider answered {status}: {body}");
            let (action, mut fields) = first_form(&body);
            if fields.iter().any(|(name, value)| name == "prompt" && value == "login") {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), "any password".into()));
            }
            next = Request::Post(self.absolute(&action), fields);
        }
        panic!("the upstream provider did not send the browser back");
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            return format!("{}{location}", self.browser_entry);
        }
        match location.strip_prefix(&self.issuer) {
            Some(rest) => format!("{}{rest}", self.browser_entry),
            None => location.to_owned(),
        }
    }
}

enum Request {
    Get(String),
    Post(String, Vec<(String, String)>),
}

/// The action and hidden fields of the first form of an oidc-provider page.
fn first_form(body: &str) -> (String, Vec<(String, String)>) {
    let form = regex::Regex::new(r#"(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>"#).unwrap();
    let hidden = regex::Regex::new(r#"<input type="hidden" name="([^"]*)" value="([^"]*)"\s*/?>"#).unwrap();
    let found = form.captures(body).unwrap_or_else(|| panic!("a form in {body}"));
    let fields = hidden.captures_iter(&found[2]).map(|c| (c[1].to_owned(), c[2].to_owned())).collect();
    (found[1].replace("&amp;", "&"), fields)
}
