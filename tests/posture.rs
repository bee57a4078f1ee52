//! The compliance posture as an administrator meets it: the real
//! `portcullis standalone` binary over real HTTP on loopback, a tenant whose
//! people the test makes through the admin API (and whose second factors
//! and old sign-ins it writes into the same store), then the numbers read
//! back from `GET {issuer}/api/v1/posture` (checked against the OpenAPI
//! document), the Prometheus gauges, and the page `{issuer}/admin/posture`
//! in headless Chromium, with a screenshot kept as a test artefact.
//!
//! The tenant, and what each person counts for:
//!
//! ```text
//!  ada   admin (privileged, direct)      no second factor   signs in now
//!  bob   viewer                          TOTP               last sign-in 60 days ago: stale, holding a grant
//!  carol viewer                          —                  deactivated: inactive, holding a grant
//!  dan   admin through group `editors`   security key       —
//!  erin  nothing                         —                  last sign-in 100 days ago: stale
//!  standing privileged grants: ada-admin, editors-admin, ops-admin (no expiry); contractor-lead expires
//! ```

#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/openapi.rs"]
mod openapi;
#[path = "support/standalone.rs"]
mod standalone;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use standalone::{Standalone, free_port};

use portcullis::secret::SecretString;
use portcullis::store::{MfaFactor, Store, UserStore as _};

const ADMIN: &str = "ada@acme.test";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn write_tenant(dir: &Path, port: u16) {
    let issuer = format!("http://localhost:{port}/o/acme");
    let in_a_year = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    let manifests = "apiVersion: iam.portcullis.dev/v1alpha1
kind: Organization
metadata: { name: acme, namespace: acme }
spec:
  displayName: Acme Test
  emailDomains: [acme.test]
  staleAccountThresholdDays: 30
  permissions:
    - { name: iam.view }
    - { name: iam.manage, privileged: true }
    - { name: journeys.view }
  authentication:
    password: { enabled: true, minLength: 12 }
    mfa: { required: Never, methods: [WebAuthn] }
  provisioning: { mode: disabled }
---
apiVersion: iam.portcullis.dev/v1alpha1
kind: Role
metadata: { name: admin, namespace: acme }
spec: { scope: Organization, permissions: [\"iam.*\", journeys.view] }
---
apiVersion: iam.portcullis.dev/v1alpha1
kind: Role
metadata: { name: viewer, namespace: acme }
spec: { scope: Organization, permissions: [journeys.view] }
---
apiVersion: iam.portcullis.dev/v1alpha1
kind: Role
metadata: { name: lead, namespace: acme }
spec: { scope: Organization, permissions: [journeys.view], includedRoles: [admin] }
"
    .to_owned();
    let mut docs = vec![manifests];
    for (name, kind, principal, role, expiry) in [
        ("ada-admin", "User", ADMIN, "admin", None),
        ("bob-viewer", "User", "bob", "viewer", None),
        ("carol-viewer", "User", "carol", "viewer", None),
        ("editors-admin", "Group", "Editors", "admin", None),
        ("ops-admin", "Client", "ops", "admin", None),
        ("reader-viewer", "Client", "reader", "viewer", None),
        ("contractor-lead", "Client", "contractor", "lead", Some(in_a_year.to_string())),
    ] {
        let expiry = expiry.map(|at| format!(", expiresAt: \"{at}\"")).unwrap_or_default();
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {{ name: {name}, namespace: acme }}\n\
             spec: {{ principal: {{ kind: {kind}, name: \"{principal}\" }}, role: {role}, scope: Organization{expiry} }}\n"
        ));
    }
    for client in ["ops", "reader", "contractor"] {
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {client}, namespace: acme }}\n\
             spec: {{ type: Confidential, grantTypes: [client_credentials], audiences: [\"{issuer}\"] }}\n"
        ));
    }
    std::fs::write(dir.join("acme.yaml"), docs.join("---\n")).unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

struct Tenant {
    server: Standalone,
    metrics_port: u16,
    _manifests: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Tenant {
    /// The tenant served by standalone, its people made as the table above says.
    async fn start() -> Tenant {
        let manifests = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let metrics_port = std::cell::Cell::new(0);
        let server = Standalone::start(manifests.path(), &data.path().join("data"), |port| {
            write_tenant(manifests.path(), port);
            metrics_port.set(free_port());
            // Every request sees the store as it is now, so the test needs no waiting.
            let metrics = format!("127.0.0.1:{}", metrics_port.get());
            vec!["--metrics-listen".into(), metrics, "--posture-max-age".into(), "0".into()]
        })
        .await;
        let metrics_port = metrics_port.get();
        let secret = data.path().join("data/secrets/acme/ops-client-secret/client-secret");
        assert!(secret.exists(), "the tenant is not served:\n{}", server.output());
        let tenant = Tenant { server, metrics_port, _manifests: manifests, _data: data };
        tenant.make_people().await;
        tenant
    }

    fn issuer(&self) -> String {
        self.server.issuer()
    }

    async fn token(&self, client: &str) -> String {
        let secret = self.server.client_secret(client).await;
        let response = http()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "a token for {client}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `method {issuer}/api/v1{path}` with `token` (none if empty), the
    /// answer checked against the OpenAPI document.
    async fn api(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.issuer());
        let mut request = http().request(method.parse().unwrap(), url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let answer = openapi::Answer::described(&self.issuer(), method, response).await;
        (answer.status, serde_json::from_str(&answer.text).unwrap_or(Value::Null))
    }

    async fn make_people(&self) {
        let ops = self.token("ops").await;
        let mut ids = std::collections::BTreeMap::new();
        for name in ["bob", "carol", "dan", "erin"] {
            let (status, user) = self.api(&ops, "POST", "/users", Some(json!({ "userName": name }))).await;
            assert_eq!(status, StatusCode::CREATED, "{user}");
            ids.insert(name, user["id"].as_str().unwrap().to_owned());
        }
        let (status, group) =
            self.api(&ops, "POST", "/groups", Some(json!({ "displayName": "Editors" }))).await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        let group = group["id"].as_str().unwrap().to_owned();
        let (status, body) =
            self.api(&ops, "PUT", &format!("/groups/{group}/members/{}", ids["dan"]), None).await;
        assert!(status.is_success(), "{status} {body}");
        let (status, body) =
            self.api(&ops, "POST", &format!("/users/{}/deactivate", ids["carol"]), None).await;
        assert!(status.is_success(), "{status} {body}");

        // Second factors and old sign-ins, written into the standalone's own store.
        let url = format!("sqlite://{}?mode=rwc", self.server.data.join("portcullis.db").display());
        let store = Store::connect(&url).await.expect("the standalone's store");
        let now = jiff::Timestamp::now().as_millisecond();
        let totp = MfaFactor::Totp { sealed_secret: SecretString::new("sealed-by-the-test") };
        store.add_mfa_enrolment("acme", &ids["bob"], Some("phone"), &totp, now).await.unwrap();
        let key = MfaFactor::WebAuthn {
            credential_id: "a-credential".into(),
            public_key: "a-public-key".into(),
            sign_count: 0,
        };
        store.add_mfa_enrolment("acme", &ids["dan"], Some("key"), &key, now).await.unwrap();
        store.record_login("acme", &ids["bob"], now - 60 * DAY_MS).await.unwrap();
        store.record_login("acme", &ids["erin"], now - 100 * DAY_MS).await.unwrap();
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posture_counts_the_tenants_people_and_needs_iam_view() {
    let tenant = Tenant::start().await;
    let ops = tenant.token("ops").await;

    let response =
        http().get(format!("{}/api/v1/posture", tenant.issuer())).bearer_auth(&ops).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    openapi::OpenApi::of(&tenant.issuer()).await.assert_describes(
        "GET",
        "/o/acme/api/v1/posture",
        200,
        content_type.as_deref(),
        &text,
    );
    let posture: Value = serde_json::from_str(&text).unwrap();
    let figures = |pointer: &str| posture.pointer(pointer).cloned().unwrap_or(Value::Null);
    assert_eq!(figures("/users"), json!(5), "{posture:#}");
    assert_eq!(figures("/activeUsers"), json!(4), "carol is deactivated: {posture:#}");
    assert_eq!(figures("/mfaAdoptionPercent"), json!(50), "bob and dan of four: {posture:#}");
    assert_eq!(
        figures("/mfa"),
        json!({
            "enrolled": 2, "totp": 1, "securityKey": 1, "passkey": 0,
            "privilegedUsers": 2, "privilegedEnrolled": 1, "privilegedAdoptionPercent": 50
        }),
        "ada (direct) and dan (through Editors) are privileged; dan has a key"
    );
    assert_eq!(figures("/staleAccountThresholdDays"), json!(30));
    assert_eq!(figures("/staleAccounts"), json!(2), "bob and erin: {posture:#}");
    assert_eq!(figures("/staleAccountsWithGrants"), json!(1), "bob: {posture:#}");
    assert_eq!(figures("/inactiveUsersWithGrants"), json!(1), "carol: {posture:#}");
    assert_eq!(figures("/standingPrivilegedGrants"), json!(3), "contractor-lead expires: {posture:#}");
    assert_eq!(figures("/pendingAccessRequests"), json!(0));
    let rotations = figures("/keyRotations");
    assert!(
        rotations.as_array().is_some_and(|r| r.iter().any(|k| k["event"] == "rotation due")),
        "the active key's rotation is announced: {posture:#}"
    );

    // The same figures as gauges on the metrics port.
    let metrics = http()
        .get(format!("http://127.0.0.1:{}/metrics", tenant.metrics_port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "portcullis_posture_mfa_users{organization=\"acme\",method=\"any\"} 2",
        "portcullis_posture_privileged_users{organization=\"acme\",mfa=\"not_enrolled\"} 1",
        "portcullis_posture_stale_accounts{organization=\"acme\",grants=\"held\"} 1",
        "portcullis_posture_inactive_users_with_grants{organization=\"acme\"} 1",
        "portcullis_posture_standing_privileged_grants{organization=\"acme\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} is not among the metrics:\n{metrics}");
    }

    // A caller without iam.view gets a problem document, and no figure.
    let reader = tenant.token("reader").await;
    let (status, problem) = tenant.api(&reader, "GET", "/posture", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem.to_string().contains("iam.view"), "{problem}");
    assert!(problem.get("activeUsers").is_none());
    let (status, _) = tenant.api("", "GET", "/posture", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Nobody signed in: the page sends the browser to sign in first.
    let response = http().get(format!("{}/admin/posture", tenant.issuer())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&format!("{}/authorize?", tenant.issuer())), "{location}");
    assert!(!response.text().await.unwrap().contains("Stale"), "no figure before signing in");

    // Signed in, but without iam.view: the page refuses, and shows no figure.
    let password = "fay's long enough password";
    let (status, fay) =
        tenant.api(&ops, "POST", "/users", Some(json!({ "userName": "fay", "password": password }))).await;
    assert_eq!(status, StatusCode::CREATED, "{fay}");
    let browser = standalone::browser_form::browser();
    let page_url = format!("{}/admin/posture", tenant.issuer());
    let to_sign_in = standalone::browser_form::open(&browser, &page_url).await;
    let form = standalone::browser_form::open(&browser, to_sign_in.location.as_deref().unwrap()).await;
    let base = tenant.issuer().replace("/o/acme", "");
    let mut landed = standalone::browser_form::submit(
        &browser,
        &base,
        &form,
        "",
        &[("username", "fay"), ("password", password)],
        &[],
    )
    .await;
    while landed.status == StatusCode::SEE_OTHER {
        let next = landed.location.clone().unwrap();
        let next = if next.starts_with('/') { format!("{base}{next}") } else { next };
        landed = standalone::browser_form::open(&browser, &next).await;
    }
    assert_eq!(landed.status, StatusCode::FORBIDDEN, "{}", landed.body);
    assert!(landed.body.contains("does not hold the permission iam.view"), "{}", landed.body);
    assert!(!landed.body.contains("MFA adoption"), "{}", landed.body);
    tenant.server.stop().await;
}

/// The issue's scenario: the administrator signs in through the real pages
/// in Chromium, opens the dashboard, and reads the tenant's real numbers,
/// also at a phone's width; the screenshot is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_reads_the_posture_in_chromium() {
    use chromium::{Chromium, DEFAULT_DEADLINE};
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;

    let tenant = Tenant::start().await;
    let password = tenant.server.printed("password:").await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    // A phone: 390 CSS pixels wide.
    tab.page()
        .execute(SetDeviceMetricsOverrideParams::new(390, 844, 3.0, true))
        .await
        .expect("a phone-sized viewport");

    let page = format!("{}/admin/posture", tenant.issuer());
    tab.goto(&page).await;
    tab.wait_for_selector("#username", DEFAULT_DEADLINE).await;
    tab.fill("#username", ADMIN).await;
    tab.fill("#password", &password).await;
    tab.click("button[type=submit]").await;
    tab.wait_for_url("the posture page again", DEFAULT_DEADLINE, |url| url == page).await;
    tab.wait_for_text("Compliance posture", DEFAULT_DEADLINE).await;

    let figure = |id: &str| format!("document.querySelector('[data-figure=\"{id}\"]').textContent");
    let adoption: String = tab.eval(&figure("mfa-adoption")).await;
    assert_eq!(adoption, "2 of 4 active users (50%)");
    let privileged: String = tab.eval(&figure("privileged-mfa")).await;
    assert_eq!(privileged, "1 of 2 privileged users (50%)");
    for (id, value) in [
        ("totp", "1"),
        ("security-key", "1"),
        ("passkey", "0"),
        ("stale", "2"),
        ("stale-with-grants", "1"),
        ("inactive-with-grants", "1"),
        ("standing-privileged", "3"),
        ("pending-requests", "0"),
    ] {
        let shown: String = tab.eval(&figure(id)).await;
        assert_eq!(shown, value, "the figure {id}");
    }
    // The charts are inline SVG, labelled for screen readers.
    let label: String = tab.eval("document.querySelector('svg[role=img]').getAttribute('aria-label')").await;
    assert_eq!(label, "MFA adoption: 2 of 4 active users (50%)");
    let charts: u32 = tab.eval("document.querySelectorAll('svg[role=img]').length").await;
    assert_eq!(charts, 4);
    // Readable on the phone: nothing wider than the screen.
    let overflow: bool = tab.eval("document.documentElement.scrollWidth > window.innerWidth").await;
    assert!(!overflow, "the page scrolls sideways at a phone's width");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("posture");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("admin-posture-phone.png");
    tab.save_screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    println!("screenshot: {}", shot.display());
    browser.close().await;
    tenant.server.stop().await;
}
