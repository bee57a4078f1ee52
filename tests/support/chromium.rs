//! Headless Chromium for browser tests: Debian's `chromium` (installed by
//! `.ci/run`) driven over the Chrome DevTools Protocol with `chromiumoxide`.
//!
//! ```text
//!  Chromium::launch() ── chromium --headless=new --remote-debugging-port=0 --user-data-dir=<temp>
//!        │ new_tab()
//!        ▼
//!      Tab ── goto / fill / click / submit_form ── wait_for_url / wait_for_selector (deadline)
//!          ── text / html / url / screenshot
//!          ── catch_navigations_to(prefix): requests to an app that does not exist
//!             (a client's redirect_uri) are answered here and their URL recorded
//!          ── add_virtual_authenticator(): WebAuthn through Chromium's own authenticator
//! ```
//!
//! Include it with `#[path = "support/chromium.rs"] mod chromium;`. Every
//! wait has a deadline and polls the page; nothing sleeps for a fixed time.
//! The browser process is killed when [`Chromium`] is dropped (also when a
//! test panics), and its profile directory removed.
//!
//! `PORTCULLIS_CHROMIUM` names the browser binary when it is not
//! `/usr/bin/chromium`. Set `PORTCULLIS_SCREENSHOTS=<dir>` to keep a PNG of
//! the page whenever a wait fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::web_authn::{
    self, AddVirtualAuthenticatorParams, AuthenticatorId, AuthenticatorProtocol, AuthenticatorTransport,
    Ctap2Version, GetCredentialsParams, VirtualAuthenticatorOptions,
};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt as _;

/// How long a wait lasts unless a test says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium with a throwaway profile; killed when dropped.
pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The child is spawned with kill_on_drop; stopping the event loop
        // lets the browser value drop without waiting on a dead socket.
        self.handler.abort();
    }
}

/// The browser binary: `PORTCULLIS_CHROMIUM`, else Debian's.
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

impl Chromium {
    /// Starts Chromium headless (`--headless=new`) on a free DevTools port,
    /// with a fresh profile. Panics with what is missing when it cannot.
    pub async fn launch() -> Chromium {
        let binary = chromium_binary();
        assert!(
            binary.exists(),
            "{} not found: install Debian's chromium (`apt-get install chromium`, as .ci/run does) \
             or set PORTCULLIS_CHROMIUM",
            binary.display()
        );
        let profile = tempfile::Builder::new().prefix("portcullis-chromium-").tempdir().expect("profile dir");
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&binary)
            .new_headless_mode()
            .user_data_dir(profile.path())
            .port(0)
            .window_size(1280, 900)
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(30))
            // Loopback test servers speak plain HTTP: never upgrade them.
            .disable_https_first()
            .args(["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--password-store=basic"]);
        // The sandbox needs user namespaces, which root in a container lacks.
        if is_root() {
            builder = builder.no_sandbox();
        }
        let config = builder.build().expect("chromium configuration");
        let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
        let handler = tokio::spawn(async move {
            // Errors here are about single CDP messages; the loop goes on
            // until the connection closes.
            while handler.next().await.is_some() {}
        });
        Chromium { browser, handler, _profile: profile }
    }

    /// A new tab on `about:blank`.
    pub async fn new_tab(&self) -> Tab {
        let page = self.browser.new_page("about:blank").await.expect("open a tab");
        Tab { page, caught: Arc::new(Mutex::new(Vec::new())), catching: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Closes the browser and waits for the process to end.
    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
    }
}

fn is_root() -> bool {
    // SAFETY-free check: the effective uid from /proc (no libc call).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().nth(1) == Some("0")))
        })
        .unwrap_or(false)
}

/// One tab of the browser.
pub struct Tab {
    page: Page,
    /// URLs of requests answered by [`Tab::catch_navigations_to`], in order.
    caught: Arc<Mutex<Vec<String>>>,
    /// Prefixes being caught.
    catching: Arc<Mutex<Vec<String>>>,
}

/// A WebAuthn authenticator living in the browser (CDP `WebAuthn` domain).
#[derive(Clone, Debug)]
pub struct VirtualAuthenticator {
    pub id: AuthenticatorId,
}

/// What kind of virtual authenticator to add.
#[derive(Clone, Copy, Debug)]
pub struct AuthenticatorKind {
    /// Keeps discoverable credentials (passkeys).
    pub resident_keys: bool,
    /// Performs user verification (a PIN or biometric), and reports it done.
    pub user_verification: bool,
    /// `internal` (platform, like Touch ID) or `usb` (a security key).
    pub platform: bool,
}

impl Default for AuthenticatorKind {
    fn default() -> Self {
        Self { resident_keys: true, user_verification: true, platform: false }
    }
}

impl Tab {
    pub fn page(&self) -> &Page {
        &self.page
    }

    /// Opens `url` and waits for the navigation to end.
    pub async fn goto(&self, url: &str) {
        self.page.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address in the tab now.
    pub async fn url(&self) -> String {
        self.page.url().await.ok().flatten().unwrap_or_default()
    }

    /// The page's visible text; empty while the tab is between two
    /// documents (a form post navigating away has no context to read).
    pub async fn text(&self) -> String {
        let result = self.page.evaluate("document.body ? document.body.innerText : ''").await;
        result.ok().and_then(|value| value.into_value::<String>().ok()).unwrap_or_default()
    }

    /// The page's HTML.
    pub async fn html(&self) -> String {
        self.page.content().await.unwrap_or_default()
    }

    /// Evaluates a JavaScript expression and returns its (JSON) value.
    pub async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> T {
        let result =
            self.page.evaluate(expression).await.unwrap_or_else(|e| panic!("evaluate {expression}: {e}"));
        result.into_value().unwrap_or_else(|e| panic!("value of {expression}: {e}"))
    }

    /// Types `value` into the field matching `selector`, as a person would
    /// (focus, clear, key presses).
    pub async fn fill(&self, selector: &str, value: &str) {
        let element = self.wait_for_selector(selector, DEFAULT_DEADLINE).await;
        element
            .call_js_fn("function() { this.value = ''; }", false)
            .await
            .unwrap_or_else(|e| panic!("clear {selector}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("focus {selector}: {e}"));
        element.type_str(value).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    /// Clicks the element matching `selector` (scrolled into view, at its centre).
    pub async fn click(&self, selector: &str) {
        let element = self.wait_for_selector(selector, DEFAULT_DEADLINE).await;
        element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// Presses a key (`Enter`, `Tab`, …) in the element matching `selector`.
    pub async fn press(&self, selector: &str, key: &str) {
        let element = self.wait_for_selector(selector, DEFAULT_DEADLINE).await;
        element.press_key(key).await.unwrap_or_else(|e| panic!("press {key} in {selector}: {e}"));
    }

    /// Submits the form matching `selector` as its submit button would
    /// (`requestSubmit`, so validation and submit handlers run): for pages
    /// that post themselves onwards (a SAML HTTP-POST form) when scripts are off.
    pub async fn submit_form(&self, selector: &str) {
        let element = self.wait_for_selector(selector, DEFAULT_DEADLINE).await;
        element
            .call_js_fn("function() { this.requestSubmit ? this.requestSubmit() : this.submit(); }", false)
            .await
            .unwrap_or_else(|e| panic!("submit {selector}: {e}"));
    }

    /// The element matching `selector`, once there is one.
    pub async fn wait_for_selector(&self, selector: &str, deadline: Duration) -> chromiumoxide::Element {
        let start = Instant::now();
        loop {
            if let Ok(element) = self.page.find_element(selector).await {
                return element;
            }
            if start.elapsed() >= deadline {
                self.fail(&format!("no element matches {selector:?} after {deadline:?}")).await;
            }
            tokio::time::sleep(poll_interval(start)).await;
        }
    }

    /// Waits until the tab's address satisfies `wanted`; returns it.
    pub async fn wait_for_url(
        &self,
        what: &str,
        deadline: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let url = self.url().await;
            if wanted(&url) {
                return url;
            }
            if start.elapsed() >= deadline {
                self.fail(&format!("address never became {what} within {deadline:?}; last {url}")).await;
            }
            tokio::time::sleep(poll_interval(start)).await;
        }
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            if start.elapsed() >= deadline {
                self.fail(&format!("text {needle:?} never appeared within {deadline:?}; page says:\n{text}"))
                    .await;
            }
            tokio::time::sleep(poll_interval(start)).await;
        }
    }

    /// A PNG of the visible page.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.page
            .screenshot(ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build())
            .await
            .expect("screenshot")
    }

    /// Saves a PNG of the visible page to `path`.
    pub async fn save_screenshot(&self, path: &Path) {
        std::fs::write(path, self.screenshot().await)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Answers every request whose URL starts with `prefix` in this tab with a
    /// small page of our own, and records its URL: how a test stands in for
    /// an application at its redirect URI (`https://app.example.test/cb`),
    /// which no server serves. Read them with [`Tab::wait_for_caught`].
    pub async fn catch_navigations_to(&self, prefix: &str) {
        let first = {
            let mut catching = self.catching.lock().unwrap_or_else(|e| e.into_inner());
            catching.push(prefix.to_owned());
            catching.len() == 1
        };
        let patterns: Vec<RequestPattern> = self
            .catching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| RequestPattern {
                url_pattern: Some(format!("{p}*")),
                resource_type: None,
                request_stage: Some(RequestStage::Request),
            })
            .collect();
        if first {
            let mut events =
                self.page.event_listener::<EventRequestPaused>().await.expect("listen for paused requests");
            let page = self.page.clone();
            let caught = self.caught.clone();
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    caught.lock().unwrap_or_else(|e| e.into_inner()).push(event.request.url.clone());
                    let body = base64::engine::general_purpose::STANDARD
                        .encode("<!doctype html><title>caught</title><p>caught by the test</p>");
                    let fulfil = FulfillRequestParams::builder()
                        .request_id(event.request_id.clone())
                        .response_code(200)
                        .response_headers(vec![HeaderEntry {
                            name: "Content-Type".into(),
                            value: "text/html; charset=utf-8".into(),
                        }])
                        .body(body)
                        .build()
                        .expect("fulfil request params");
                    let _ = page.execute(fulfil).await;
                }
            });
        }
        self.page
            .execute(fetch::EnableParams { patterns: Some(patterns), handle_auth_requests: None })
            .await
            .expect("enable request interception");
    }

    /// The first caught URL (see [`Tab::catch_navigations_to`]) once there is one.
    pub async fn wait_for_caught(&self, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(url) = self.caught.lock().unwrap_or_else(|e| e.into_inner()).first().cloned() {
                return url;
            }
            if start.elapsed() >= deadline {
                let url = self.url().await;
                self.fail(&format!(
                    "no request reached the caught prefixes within {deadline:?}; tab at {url}"
                ))
                .await;
            }
            tokio::time::sleep(poll_interval(start)).await;
        }
    }

    /// Every caught URL so far, and forgets them.
    pub fn take_caught(&self) -> Vec<String> {
        std::mem::take(&mut *self.caught.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds a CTAP2 virtual authenticator to this tab (WebAuthn domain), which
    /// answers `navigator.credentials` calls by itself (presence simulated).
    pub async fn add_virtual_authenticator(&self, kind: AuthenticatorKind) -> VirtualAuthenticator {
        self.page
            .execute(web_authn::EnableParams { enable_ui: Some(false) })
            .await
            .expect("enable the WebAuthn domain");
        let options = VirtualAuthenticatorOptions::builder()
            .protocol(AuthenticatorProtocol::Ctap2)
            .ctap2_version(Ctap2Version::Ctap21)
            .transport(if kind.platform {
                AuthenticatorTransport::Internal
            } else {
                AuthenticatorTransport::Usb
            })
            .has_resident_key(kind.resident_keys)
            .has_user_verification(kind.user_verification)
            .is_user_verified(kind.user_verification)
            .automatic_presence_simulation(true)
            .build()
            .expect("authenticator options");
        let added = self
            .page
            .execute(AddVirtualAuthenticatorParams::new(options))
            .await
            .expect("add a virtual authenticator");
        VirtualAuthenticator { id: added.result.authenticator_id.clone() }
    }

    /// The credentials the virtual authenticator holds.
    pub async fn authenticator_credentials(
        &self,
        authenticator: &VirtualAuthenticator,
    ) -> Vec<web_authn::Credential> {
        self.page
            .execute(GetCredentialsParams::new(authenticator.id.clone()))
            .await
            .expect("read the authenticator's credentials")
            .result
            .credentials
            .clone()
    }

    /// Panics with `message`, the address and the text of the page, after
    /// saving a screenshot when `PORTCULLIS_SCREENSHOTS` names a directory.
    pub async fn fail(&self, message: &str) -> ! {
        let url = self.url().await;
        let text = self.text().await;
        if let Some(dir) = std::env::var_os("PORTCULLIS_SCREENSHOTS") {
            let path = PathBuf::from(dir).join(format!(
                "failure-{}.png",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default()
            ));
            let _ = std::fs::write(&path, self.screenshot().await);
            eprintln!("screenshot: {}", path.display());
        }
        panic!("{message}\n  at {url}\n  page text:\n{text}");
    }
}

/// Short at first, then 250 ms: quick when the page is quick, light when not.
fn poll_interval(start: Instant) -> Duration {
    if start.elapsed() < Duration::from_secs(1) {
        Duration::from_millis(25)
    } else {
        Duration::from_millis(250)
    }
}
