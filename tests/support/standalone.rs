//! `portcullis standalone` for tests: the real binary on a folder of
//! manifests, on a free loopback port, its output followed line by line,
//! killed when dropped; and what a client does with it (client credentials,
//! the bootstrap administrator's sign-in through the code flow).
//!
//! Include it with `#[path = "support/standalone.rs"] mod standalone;`.
#![allow(dead_code)]

#[path = "browser_form.rs"]
pub mod browser_form;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Generous for a loaded CI machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const SPA: &str = "journey-studio-web";
pub const SPA_REDIRECT: &str = "http://localhost:3000/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123456789";

/// Lines a stream printed so far, and a counter that moves with each.
pub struct Lines {
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

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line matching `wanted`, awaited until `deadline`.
    pub async fn wait_for(&self, deadline: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let mut changes = self.count.subscribe();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(line) = self.all().into_iter().find(|l| wanted(l)) {
                return line;
            }
            if tokio::time::timeout_at(until, changes.changed()).await.is_err() {
                panic!("no such line after {deadline:?}; printed so far:\n{}", self.all().join("\n"));
            }
        }
    }
}

/// A running `portcullis standalone`; the process is killed when dropped.
pub struct Standalone {
    child: Child,
    pub port: u16,
    pub base: String,
    pub manifests: PathBuf,
    pub data: PathBuf,
    pub stdout: Arc<Lines>,
    pub stderr: Arc<Lines>,
    _dir: Option<tempfile::TempDir>,
}

/// How many ports a start tries: a port chosen free can be taken by another
/// test before the server binds it.
const PORT_TRIES: usize = 5;

impl Standalone {
    /// Copies `examples/acme` into a temporary folder, lets `edit` change it
    /// (given the issuer it will be served as), and serves it on a free
    /// loopback port. The folder is complete before the start: an edit made
    /// just after could land before the watcher is in place.
    pub async fn start_acme(edit: impl Fn(&Path, &str)) -> Standalone {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let manifests = dir.path().join("manifests");
        let data = dir.path().join("data");
        let mut server = Standalone::start(&manifests, &data, |port| {
            let _ = std::fs::remove_dir_all(&manifests);
            copy_folder(&repo().join("examples/acme"), &manifests);
            edit(&manifests, &format!("http://localhost:{port}/o/acme"));
            Vec::new()
        })
        .await;
        server._dir = Some(dir);
        server
    }

    /// Serves `manifests` on a free loopback port (as `http://localhost:{port}`)
    /// and awaits its "serving" line. `prepare(port)` writes whatever must
    /// name the port before the start and returns extra flags; it runs again
    /// with another port when the chosen one was taken in the meantime.
    pub async fn start(manifests: &Path, data: &Path, prepare: impl Fn(u16) -> Vec<String>) -> Standalone {
        for _ in 0..PORT_TRIES {
            let port = free_port();
            let extra = prepare(port);
            let binary = std::env::var("PORTCULLIS_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_portcullis").to_owned());
            let mut child = Command::new(binary)
                .arg("standalone")
                .arg("--manifests")
                .arg(manifests)
                .arg("--data")
                .arg(data)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(&extra)
                // Everything the service logs, so that tests can look for secrets in it.
                .env("RUST_LOG", "debug")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start portcullis standalone");
            let stdout = Lines::follow(child.stdout.take().unwrap(), "stdout");
            let stderr = Lines::follow(child.stderr.take().unwrap(), "stderr");
            let serving = stdout.wait_for(DEADLINE, |l| l.starts_with("Portcullis standalone: serving "));
            tokio::select! {
                line = serving => {
                    let base = line.rsplit(' ').next().unwrap().to_owned();
                    let (manifests, data) = (manifests.to_owned(), data.to_owned());
                    return Standalone { child, port, base, manifests, data, stdout, stderr, _dir: None };
                }
                status = child.wait() => {
                    // The exit can be seen before its last lines are read.
                    let taken = stderr.wait_for(DEADLINE, |l| l.contains("Address already in use"));
                    if tokio::time::timeout(Duration::from_secs(5), taken).await.is_err() {
                        panic!("standalone stopped ({status:?}) before serving:\n{}", stderr.all().join("\n"));
                    }
                }
            }
        }
        panic!("no free port taken in {PORT_TRIES} tries");
    }

    /// The issuer of organization `acme`, the one every test here serves.
    pub fn issuer(&self) -> String {
        format!("{}/o/acme", self.base)
    }

    /// Replaces `from` by `to` in a manifest file, which must contain it.
    pub fn edit_manifest(&self, name: &str, from: &str, to: &str) {
        edit_file(&self.manifests.join(name), from, to);
    }

    /// The secret standalone generated for a confidential client, awaited
    /// (a client added to the folder gets one on the next sync).
    pub async fn client_secret(&self, client: &str) -> String {
        let path = self.data.join(format!("secrets/acme/{client}-client-secret/client-secret"));
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(secret) = std::fs::read_to_string(&path) {
                return secret.trim().to_owned();
            }
            assert!(tokio::time::Instant::now() < until, "no secret for {client} at {}", path.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A `client_credentials` token response.
    pub async fn client_credentials(&self, client: &str, secret: &str) -> (StatusCode, serde_json::Value) {
        let response = http()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// An access token for `client`, awaited until the token endpoint grants
    /// one that satisfies `wanted` (a client or role just added to the folder
    /// takes effect on the next sync).
    pub async fn token_where(&self, client: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> String {
        let secret = self.client_secret(client).await;
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.client_credentials(client, &secret).await;
            if status == StatusCode::OK {
                let token = body["access_token"].as_str().unwrap().to_owned();
                if wanted(&jwt_part(&token, 1)) {
                    return token;
                }
            }
            assert!(tokio::time::Instant::now() < until, "no wanted token for {client}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// RFC 7009 revocation of `token` by the client it was issued to.
    pub async fn revoke(&self, client: &str, secret: &str, token: &str) {
        let response = http()
            .post(format!("{}/revoke", self.issuer()))
            .basic_auth(client, Some(secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "revocation is accepted");
    }

    /// The bootstrap administrator signs in (password, then TOTP) through the
    /// public client's code flow with scope `openid`; the token response.
    pub async fn sign_in_administrator(&self) -> serde_json::Value {
        let admin = self.printed("administrator").await;
        let password = self.printed("password:").await;
        let totp_uri = self.printed("totp:").await;
        let secret = base32_decode(totp_uri.split("secret=").nth(1).unwrap().split('&').next().unwrap());
        let browser = browser_form::browser();
        let page = browser.get(self.authorize_url()).send().await.unwrap().text().await.unwrap();
        let second = self.submit(&browser, &page, &[("username", &admin), ("password", &password)]).await;
        let page = second.text().await.unwrap();
        let code = portcullis::token::totp::code_at(&secret, jiff::Timestamp::now());
        let redirect = self.submit(&browser, &page, &[("code", &code)]).await;
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER, "signed in");
        let location = redirect.headers()["location"].to_str().unwrap();
        let query = location.split_once('?').unwrap().1;
        let params: BTreeMap<String, String> =
            form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        self.redeem(&params["code"]).await
    }

    /// Redeems a code of the public client's sign-in started at
    /// [`Standalone::authorize_url`]: the token response.
    pub async fn redeem(&self, code: &str) -> serde_json::Value {
        let response = http()
            .post(format!("{}/token", self.issuer()))
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

    /// The public client's sign-in (code + PKCE, scope `openid`).
    pub fn authorize_url(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", SPA)
            .append_pair("redirect_uri", SPA_REDIRECT)
            .append_pair("scope", "openid")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}/authorize?{query}", self.issuer())
    }

    async fn submit(
        &self,
        browser: &reqwest::Client,
        body: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (action, mut values) = browser_form::form_in(body, "");
        values.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        browser.post(format!("{}{action}", self.base)).form(&values).send().await.unwrap()
    }

    /// The first word after `label` on a line of the start-up banner
    /// (`password:`), awaited: the banner follows the "serving" line.
    pub async fn printed(&self, label: &str) -> String {
        let line = self.stdout.wait_for(DEADLINE, |l| l.trim_start().starts_with(label)).await;
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
    }

    /// Everything printed so far, both streams.
    pub fn output(&self) -> String {
        let mut all = self.stdout.all();
        all.extend(self.stderr.all());
        all.join("\n")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A free loopback port, for a listener the test names before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Part `index` of a JWT (0 header, 1 payload) as JSON, unverified.
pub fn jwt_part(jwt: &str, index: usize) -> serde_json::Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
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
