//! `portcullis standalone` as a user runs it: the real binary on a copy of
//! `examples/acme`, over real HTTP on loopback, its output read as printed.
//!
//! One scenario, in the order a user meets it: start, take a
//! client-credentials token, edit a RoleAssignment and see the next token
//! carry it, break a file and see the error while tokens keep coming, sign
//! in as the bootstrap administrator, restart, and refresh with the earlier
//! refresh token. `measure_start_to_first_token_and_memory` (ignored) gives
//! the figures in BENCHMARKS.md.

#[path = "support/browser_form.rs"]
mod browser_form;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis::api::{Organization, Role};
use portcullis::manifests::{self, Resource};
use portcullis::token::totp;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

const CLIENT: &str = "ci-deployer";
const SPA: &str = "journey-studio-web";
const SPA_REDIRECT: &str = "http://localhost:3000/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123456789";

/// Generous for a loaded CI machine; the live edit has its own, the 1 s.
const DEADLINE: Duration = Duration::from_secs(60);

// === The process and what it prints. ===

/// Lines a stream printed so far, and a counter that moves with each.
struct Lines {
    lines: Mutex<Vec<String>>,
    count: watch::Sender<usize>,
}

impl Lines {
    fn follow(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, echo: &'static str) -> Arc<Lines> {
        let lines = Arc::new(Lines { lines: Mutex::new(Vec::new()), count: watch::Sender::new(0) });
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{echo}] {line}");
                let count = {
                    let mut all = sink.lines.lock().unwrap();
                    all.push(line);
                    all.len()
                };
                sink.count.send_replace(count);
            }
        });
        lines
    }

    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line (from `from` on) matching `wanted`, awaited until `deadline`.
    async fn wait_for(&self, from: usize, deadline: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let mut changes = self.count.subscribe();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(line) = self.all().into_iter().skip(from).find(|l| wanted(l)) {
                return line;
            }
            if tokio::time::timeout_at(until, changes.changed()).await.is_err() {
                panic!("no such line after {deadline:?}; printed so far:\n{}", self.all().join("\n"));
            }
        }
    }

    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
}

struct Server {
    child: Child,
    base: String,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Server {
    async fn start(manifests: &Path, data: &Path, listen: &str) -> Server {
        Server::start_with(manifests, data, listen, &[]).await
    }

    /// Starts the binary with more flags, under the usual umask (022), as a
    /// user's shell would.
    async fn start_with(manifests: &Path, data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = standalone_command(manifests, data, listen, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start portcullis standalone");
        let stdout = Lines::follow(child.stdout.take().unwrap(), "stdout");
        let stderr = Lines::follow(child.stderr.take().unwrap(), "stderr");
        let serving =
            stdout.wait_for(0, DEADLINE, |l| l.starts_with("Portcullis standalone: serving ")).await;
        let base = serving.rsplit(' ').next().unwrap().to_owned();
        Server { child, base, stdout, stderr }
    }

    fn issuer(&self) -> String {
        format!("{}/o/acme", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, as Kubernetes or Ctrl-C would stop it; awaits the exit.
    async fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("exits after SIGTERM").unwrap()
    }
}

/// `portcullis standalone` with these flags, run under umask 022.
fn standalone_command(manifests: &Path, data: &Path, listen: &str, extra: &[&str]) -> Command {
    // PORTCULLIS_BIN measures another build (the release binary) with this harness.
    let binary =
        std::env::var("PORTCULLIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_portcullis").to_owned());
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022 && exec \"$@\"", "sh"])
        .arg(binary)
        .arg("standalone")
        .arg("--manifests")
        .arg(manifests)
        .arg("--data")
        .arg(data)
        .args(["--listen", listen])
        .args(extra)
        .env("RUST_LOG", "info");
    command
}

// === What a client does. ===

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn client_secret(data: &Path) -> String {
    let path = data.join("secrets/acme/ci-deployer-client-secret/client-secret");
    std::fs::read_to_string(path).expect("the generated client secret").trim().to_owned()
}

async fn client_credentials(server: &Server, secret: &str) -> (StatusCode, serde_json::Value) {
    let response = http()
        .post(format!("{}/token", server.issuer()))
        .basic_auth(CLIENT, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// The payload of a JWT, unverified (the server's own tests verify signatures).
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

fn role_names(claims: &serde_json::Value) -> Vec<String> {
    claims["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

/// What the access core makes of a role in the manifests folder: its catalog
/// permissions, included roles expanded.
fn expected_permissions(folder: &Path, role: &str) -> Vec<String> {
    let set = manifests::read_dir(folder).unwrap();
    let org: &Organization = set
        .manifests
        .iter()
        .find_map(|m| match &m.resource {
            Resource::Organization(o) => Some(o),
            _ => None,
        })
        .unwrap();
    let roles: Vec<&Role> = set
        .manifests
        .iter()
        .filter_map(|m| match &m.resource {
            Resource::Role(r) => Some(r),
            _ => None,
        })
        .collect();
    let expansion = portcullis::validation::expand(org, &roles);
    expansion.effective[role].iter().cloned().collect()
}

fn sorted_strings(value: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> =
        value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

// === Signing in through the pages, like a browser. ===

fn authorize_url(server: &Server) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", SPA)
        .append_pair("redirect_uri", SPA_REDIRECT)
        .append_pair("scope", "openid offline_access")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!("{}/authorize?{query}", server.issuer())
}

async fn submit(
    browser: &reqwest::Client,
    server: &Server,
    body: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    // The first form (a page may hold others, such as the passkey form).
    let (action, mut values) = browser_form::form_in(body, "");
    values.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    browser.post(format!("{}{action}", server.base)).form(&values).send().await.unwrap()
}

/// The `code` of a redirect to the SPA.
fn code_of(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(SPA_REDIRECT), "{location}");
    let query = location.split_once('?').unwrap().1;
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    params["code"].clone()
}

async fn redeem(server: &Server, code: &str) -> serde_json::Value {
    let response = http()
        .post(format!("{}/token", server.issuer()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", SPA_REDIRECT),
            ("client_id", SPA),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn refresh(server: &Server, refresh_token: &str) -> (StatusCode, serde_json::Value) {
    let response = http()
        .post(format!("{}/token", server.issuer()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// RFC 4648 base32 without padding, as `otpauth://` URIs carry secrets.
fn base32_decode(text: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            other => panic!("not base32: {}", other as char),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// The value printed after `label` on a line of the start-up banner.
fn printed(server: &Server, label: &str) -> String {
    let line =
        server.stdout.all().into_iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| {
            panic!("no {label} line in:\n{}", server.stdout.all().join("\n"));
        });
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn acme() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/acme")
}

// === The scenario. ===

#[tokio::test]
async fn standalone_serves_acme_follows_edits_and_keeps_state_across_restarts() {
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path().join("manifests");
    let data = temp.path().join("data");
    copy_folder(&acme(), &folder);

    let server = Server::start(&folder, &data, "127.0.0.1:0").await;
    let secret = client_secret(&data);
    assert!(
        server.stdout.all().iter().any(|l| l.contains(&secret)),
        "a new client secret is shown on the run that made it"
    );

    // The probes the operator's Deployments ask for, outside any authentication.
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let answer = http().get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        assert_eq!(answer.text().await.unwrap(), body, "{path}");
    }

    // A client-credentials token for the CI client, as the access core sees it.
    let (status, body) = client_credentials(&server, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = claims(body["access_token"].as_str().unwrap());
    assert_eq!(token["iss"], server.issuer());
    assert_eq!(token["client_id"], CLIENT);
    assert_eq!(token["org"], "acme");
    assert_eq!(token["roles"], serde_json::json!([{"name": "integrations", "scope": "organization"}]));
    assert_eq!(sorted_strings(&token["permissions"]), expected_permissions(&folder, "integrations"));

    // A wrong secret is refused in OAuth 2's own format.
    let (status, body) = client_credentials(&server, "not-the-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    // Edit a RoleAssignment: a token asked for within 1 s carries the change.
    let assignments = folder.join("role-assignments.yaml");
    let text = std::fs::read_to_string(&assignments).unwrap();
    let edited = text.replace("  role: integrations\n", "  role: compliance-officer\n");
    assert_ne!(edited, text);
    let edited_at = Instant::now();
    std::fs::write(&assignments, &edited).unwrap();
    let mut seen = None;
    while edited_at.elapsed() < Duration::from_secs(1) {
        let (status, body) = client_credentials(&server, &secret).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = claims(body["access_token"].as_str().unwrap());
        if role_names(&token) == ["compliance-officer"] {
            seen = Some((edited_at.elapsed(), token));
            break;
        }
    }
    let (latency, token) = seen.expect("a token carrying the edited assignment within 1 s of the edit");
    eprintln!("edit to token: {latency:?}");
    assert_eq!(sorted_strings(&token["permissions"]), expected_permissions(&folder, "compliance-officer"));

    // Break a file: the error is reported as file:line, and tokens keep coming
    // from the last valid state.
    let roles = folder.join("roles.yaml");
    let good_roles = std::fs::read_to_string(&roles).unwrap();
    let from = server.stderr.len();
    std::fs::write(&roles, good_roles.replacen("  scope: Workspace\n", "  scope: Galaxy\n", 1)).unwrap();
    let error = server
        .stderr
        .wait_for(from, DEADLINE, |l| l.contains("roles.yaml:") && l.contains(": error: "))
        .await;
    let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
    assert_eq!(
        good_roles.lines().nth(line - 1),
        Some("  scope: Workspace"),
        "the reported line is the broken one: {error}"
    );
    server.stderr.wait_for(from, DEADLINE, |l| l.contains("the last valid state keeps being served")).await;
    let (status, body) = client_credentials(&server, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(role_names(&claims(body["access_token"].as_str().unwrap())), ["compliance-officer"]);
    std::fs::write(&roles, &good_roles).unwrap();

    // The bootstrap administrator signs in (password, then TOTP) through the
    // public client's code flow, and gets a refresh token.
    let admin = printed(&server, "administrator");
    assert_eq!(admin, "alice.martin@acme.com");
    let password = printed(&server, "password:");
    let totp_uri = printed(&server, "totp:");
    let totp_secret = base32_decode(totp_uri.split("secret=").nth(1).unwrap().split('&').next().unwrap());
    let browser = browser_form::browser();
    let sign_in = browser.get(authorize_url(&server)).send().await.unwrap();
    assert_eq!(sign_in.status(), StatusCode::OK);
    let page = sign_in.text().await.unwrap();
    let second = submit(&browser, &server, &page, &[("username", &admin), ("password", &password)]).await;
    let status = second.status();
    let page = second.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "a privileged role asks for the second factor: {page}");
    let code = totp::code_at(&totp_secret, jiff::Timestamp::now());
    let redirect = submit(&browser, &server, &page, &[("code", &code)]).await;
    let tokens = redeem(&server, &code_of(&redirect)).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();
    let jwks_before: serde_json::Value =
        http().get(format!("{}/jwks", server.issuer())).send().await.unwrap().json().await.unwrap();

    // Restart on the same address: same keys, users, sessions and refresh tokens.
    let port = server.port();
    let status = server.stop().await;
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
    let server = Server::start(&folder, &data, &format!("127.0.0.1:{port}")).await;
    assert!(
        !server.stdout.all().iter().any(|l| l.contains(&secret) || l.contains(&password)),
        "secrets are shown only on the run that made them"
    );
    let jwks_after: serde_json::Value =
        http().get(format!("{}/jwks", server.issuer())).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks_after, jwks_before, "the same signing keys");
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "the earlier refresh token still works: {body}");
    assert_ne!(body["refresh_token"], refresh_token.as_str(), "and rotates");
    let again = browser.get(authorize_url(&server)).send().await.unwrap();
    code_of(&again);
    let (status, body) = client_credentials(&server, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(role_names(&claims(body["access_token"].as_str().unwrap())), ["compliance-officer"]);
    assert!(server.stop().await.success());
}

/// Finding 10 of issue 13: with a data directory made beforehand (0755),
/// the store was created 0644, readable by every user of the machine. Now a
/// directory open to others is refused with what to do, and the store's
/// files are owner-only, also when a later start finds them loosened.
#[tokio::test]
async fn the_data_directory_and_the_store_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path().join("manifests");
    copy_folder(&acme(), &folder);
    let data = temp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o755);

    let refused = tokio::time::timeout(
        DEADLINE,
        standalone_command(&folder, &data, "127.0.0.1:0", &[]).kill_on_drop(true).output(),
    )
    .await
    .expect("a refused start exits")
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a data directory open to others is refused: {stderr}");
    assert!(
        stderr.contains("open to other users (mode 0755)")
            && stderr.contains(&format!("chmod 700 {}", data.display())),
        "the error says why and what to do: {stderr}"
    );
    assert!(!data.join("portcullis.db").exists(), "nothing is written into it");

    set_mode(&data, 0o700);
    let server = Server::start(&folder, &data, "127.0.0.1:0").await;
    let database = data.join("portcullis.db");
    for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file} is owner-only");
    }
    assert!(server.stop().await.success());

    set_mode(&database, 0o644);
    let server = Server::start(&folder, &data, "127.0.0.1:0").await;
    assert_eq!(mode(&database), 0o600, "a loosened store is made owner-only again at open");
    server.stderr.wait_for(0, DEADLINE, |l| l.contains("made it owner-only")).await;
    assert!(server.stop().await.success());
}

/// Finding 7 of issue 13 (slowloris): a client that trickles its headers, or
/// announces a body and never sends it, held its connection for as long as
/// it liked. Now the first is cut off after the header read timeout, the
/// second answered 408 after the request timeout, and other clients are
/// served meanwhile.
#[tokio::test]
async fn slow_clients_are_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
    /// Room for a loaded machine on top of the configured time.
    const SLACK: Duration = Duration::from_secs(4);
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path().join("manifests");
    copy_folder(&acme(), &folder);
    let server = Server::start_with(
        &folder,
        &temp.path().join("data"),
        "127.0.0.1:0",
        &["--header-read-timeout", "1s", "--request-timeout", "2s"],
    )
    .await;
    let address = format!("127.0.0.1:{}", server.port());

    // Headers sent a line at a time, never ending: read until the server
    // closes the connection (or answers), or give up.
    let trickle = {
        let address = address.clone();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let started = Instant::now();
            stream
                .write_all(b"GET /o/acme/.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            let mut buffer = [0u8; 256];
            while started.elapsed() < HEADER_TIMEOUT + SLACK + SLACK {
                if stream.write_all(b"X-Still-Typing: 1\r\n").await.is_err() {
                    return Some(started.elapsed());
                }
                // The pace of the attack: a header line every 200 ms.
                match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
                    Err(_) => continue,
                    Ok(_) => return Some(started.elapsed()),
                }
            }
            None
        })
    };
    // A form body announced as 1,000 bytes, of which 10 arrive.
    let half_body = {
        let address = address.clone();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let started = Instant::now();
            stream
                .write_all(
                    b"POST /o/acme/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type",
                )
                .await
                .unwrap();
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(REQUEST_TIMEOUT + SLACK + SLACK, stream.read_to_end(&mut answer)).await;
            read.ok().map(|_| (started.elapsed(), String::from_utf8_lossy(&answer).into_owned()))
        })
    };

    // Both are holding their connections; everyone else is still served.
    let secret = client_secret(&temp.path().join("data"));
    let (status, body) = client_credentials(&server, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let cut_after = trickle.await.unwrap().expect("the server closes a connection whose headers never end");
    assert!(cut_after < HEADER_TIMEOUT + SLACK, "closed after {cut_after:?}");
    let (answered_after, answer) =
        half_body.await.unwrap().expect("the server ends a request whose body never comes");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answered_after >= REQUEST_TIMEOUT && answered_after < REQUEST_TIMEOUT + SLACK,
        "answered after {answered_after:?}"
    );
    let (status, _) = client_credentials(&server, &secret).await;
    assert_eq!(status, StatusCode::OK);
    assert!(server.stop().await.success());
}

/// Time from starting the process to the first client-credentials token,
/// and resident memory with `examples/acme` loaded; medians of five starts
/// (the first on an empty data directory). For the release binary:
/// `cargo build --release && PORTCULLIS_BIN=target/release/portcullis cargo test --test standalone -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement for BENCHMARKS.md"]
async fn measure_start_to_first_token_and_memory() {
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path().join("manifests");
    let data = temp.path().join("data");
    copy_folder(&acme(), &folder);
    let (mut starts, mut memory) = (Vec::new(), Vec::new());
    for run in 0..5 {
        let started = Instant::now();
        let server = Server::start(&folder, &data, "127.0.0.1:0").await;
        let secret = client_secret(&data);
        let (status, body) = client_credentials(&server, &secret).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let first_token = started.elapsed();
        for _ in 0..200 {
            assert_eq!(client_credentials(&server, &secret).await.0, StatusCode::OK);
        }
        let pid = server.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        println!(
            "run {run}: start to first token {first_token:?}, RSS after 201 tokens {:.1} MiB",
            rss_kib as f64 / 1024.0
        );
        starts.push(first_token);
        memory.push(rss_kib);
        assert!(server.stop().await.success());
    }
    starts.sort();
    memory.sort();
    println!("median of 5: start to first token {:?}, RSS {:.1} MiB", starts[2], memory[2] as f64 / 1024.0);
}
