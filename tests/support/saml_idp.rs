//! A real SAML 2.0 identity provider for the single sign-on tests:
//! crewjam/saml's `samlidp` (with the small main of `e2e/tools/saml-idp`),
//! built once from the Go module proxy by `e2e/build-saml-idp.sh` into
//! `~/.cache/portcullis`, run on a loopback port it binds itself. Killed
//! when dropped.
//!
//! ```text
//!  SamlIdp::start() ── saml-idp -listen 127.0.0.1:0 ── "listening http://127.0.0.1:port"
//!  register_service(our metadata), add_user(name, email, groups)      samlidp's HTTP API
//!  sign_in(browser, our redirect, user) ── its login form ── its auto-submit form ─► Posted
//! ```
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "correct horse battery staple";

/// The running IdP.
pub struct SamlIdp {
    /// Its base URL; `{base}/metadata` is its metadata and its entity ID.
    pub base: String,
    child: Child,
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// What the IdP's page posts to the service provider (HTTP-POST binding).
#[derive(Clone, Debug)]
pub struct Posted {
    pub action: String,
    pub saml_response: String,
    pub relay_state: String,
}

impl Posted {
    /// The response's XML, decoded.
    pub fn xml(&self) -> String {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.saml_response).expect("base64");
        String::from_utf8(bytes).expect("UTF-8")
    }

    /// The same post carrying `xml` as its response.
    pub fn with_xml(&self, xml: &str) -> Posted {
        use base64::Engine as _;
        Posted { saml_response: base64::engine::general_purpose::STANDARD.encode(xml), ..self.clone() }
    }
}

/// The IdP binary (built once, cached).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_SAML_IDP_BIN") {
        return PathBuf::from(path);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/build-saml-idp.sh");
    let output = std::process::Command::new("bash").arg(&script).output().expect("run build-saml-idp.sh");
    assert!(output.status.success(), "build-saml-idp.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the binary on the last line").trim())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

impl SamlIdp {
    pub async fn start() -> SamlIdp {
        let mut child = Command::new(binary())
            .args(["-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SAML IdP");
        let stdout = child.stdout.take().expect("the IdP's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the IdP's output") {
                if let Some(base) = line.strip_prefix("listening ") {
                    return base.trim().to_owned();
                }
            }
            panic!("the SAML IdP exited before listening");
        })
        .await
        .expect("the SAML IdP listens within 30s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        SamlIdp { base, child }
    }

    pub fn entity_id(&self) -> String {
        format!("{}/metadata", self.base)
    }

    pub async fn metadata(&self) -> String {
        let response = http().get(self.entity_id()).send().await.expect("the IdP's metadata");
        assert!(response.status().is_success());
        response.text().await.expect("metadata text")
    }

    /// Registers a service provider by its metadata (samlidp's `PUT /services/{id}`).
    pub async fn register_service(&self, id: &str, metadata: &str) {
        let response = http()
            .put(format!("{}/services/{id}", self.base))
            .body(metadata.to_owned())
            .send()
            .await
            .expect("register a service provider");
        assert!(response.status().is_success(), "registering {id}: {}", response.status());
    }

    /// Adds a user (`PUT /users/{name}`) with the test password.
    pub async fn add_user(&self, name: &str, email: &str, display_name: &str, groups: &[&str]) {
        let response = http()
            .put(format!("{}/users/{name}", self.base))
            .json(&serde_json::json!({
                "name": name, "password": PASSWORD, "email": email,
                "common_name": display_name, "groups": groups,
            }))
            .send()
            .await
            .expect("add a user");
        assert!(response.status().is_success(), "adding {name}: {}", response.status());
    }

    /// The IdP signs with a new key from now on: published in its metadata
    /// or not, its certificate valid for `valid_for` (Go duration, may be negative).
    pub async fn new_signing_key(&self, publish: bool, valid_for: &str) {
        let response = http()
            .post(format!("{}/test/signing-key?publish={publish}&validFor={valid_for}", self.base))
            .send()
            .await
            .expect("change the signing key");
        assert!(response.status().is_success(), "new signing key: {}", response.status());
    }

    /// Signs `user` in at the IdP in `browser`, from the URL our service
    /// redirected to, through its login form. Returns what its auto-submit
    /// page would post to our ACS.
    pub async fn sign_in(&self, browser: &reqwest::Client, redirect: &str, user: &str) -> Posted {
        assert!(redirect.starts_with(&self.base), "sent to the IdP, not {redirect}");
        let page = browser.get(redirect).send().await.expect("the IdP's SSO endpoint");
        assert!(page.status().is_success(), "the IdP answered {}", page.status());
        let body = page.text().await.expect("the login page");
        if body.contains("SAMLResponse") {
            // Signed in there already: the IdP answers at once.
            return posted(&body);
        }
        let (action, mut fields) = form(&body);
        fields.retain(|(name, _)| name != "user" && name != "password");
        fields.push(("user".into(), user.into()));
        fields.push(("password".into(), PASSWORD.into()));
        let action = if action.starts_with('/') { format!("{}{action}", self.base) } else { action };
        let answer = browser.post(&action).form(&fields).send().await.expect("the IdP's login");
        assert!(answer.status().is_success(), "the IdP's login answered {}", answer.status());
        posted(&answer.text().await.expect("the auto-submit page"))
    }
}

/// What the IdP's auto-submit page posts.
fn posted(body: &str) -> Posted {
    let (action, fields) = form(body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    Posted { action, saml_response: field("SAMLResponse"), relay_state: field("RelayState") }
}

/// The action and named inputs of the first form of an HTML page.
fn form(body: &str) -> (String, Vec<(String, String)>) {
    let form = regex::Regex::new(r#"(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>"#).unwrap();
    let input = regex::Regex::new(r#"<input[^>]*name="([^"]*)"[^>]*value="([^"]*)""#).unwrap();
    let found = form.captures(body).unwrap_or_else(|| panic!("a form in {body}"));
    let decode = |s: &str| html_escape::decode_html_entities(s).into_owned();
    let fields = input.captures_iter(&found[2]).map(|c| (decode(&c[1]), decode(&c[2]))).collect();
    (decode(&found[1]), fields)
}
