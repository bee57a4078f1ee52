//! The sign-in pages in a real browser: headless Chromium (Debian's package)
//! driven over CDP by `support/chromium.rs`, against the token service on
//! loopback, and (single sign-on) a real upstream OpenID provider.

#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/token_service.rs"]
mod token_support;
#[path = "support/upstream_op.rs"]
mod upstream_op;

use base64::Engine as _;
use chromium::{AuthenticatorKind, Chromium, DEFAULT_DEADLINE};
use token_support::*;

const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789abcdef";

fn challenge() -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn query(url: &str) -> std::collections::BTreeMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_sign_in_typed_into_chromium_ends_in_tokens_for_the_application() {
    let service = start(sqlite_store().await).await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    tab.catch_navigations_to(WEBAPP_REDIRECT).await;

    let authorize = format!(
        "{}?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&state=s-123&\
         code_challenge={}&code_challenge_method=S256",
        service.url(ORG, "/authorize"),
        form_urlencoded::byte_serialize(WEBAPP_REDIRECT.as_bytes()).collect::<String>(),
        challenge()
    );
    tab.goto(&authorize).await;
    tab.fill("#username", ALICE).await;
    tab.fill("#password", ALICE_PASSWORD).await;
    tab.click("button[type=submit]").await;

    let landed = tab.wait_for_caught(DEFAULT_DEADLINE).await;
    let params = query(&landed);
    assert_eq!(params.get("state").map(String::as_str), Some("s-123"), "{landed}");
    assert_eq!(params.get("iss"), Some(&service.issuer(ORG)), "{landed}");
    let code = params.get("code").expect("a code in the redirect");

    let tokens: serde_json::Value = http_client()
        .post(service.url(ORG, "/token"))
        .basic_auth("webapp", Some(WEBAPP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEBAPP_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_virtual_authenticator_answers_webauthn_calls_of_a_page() {
    let service = start(sqlite_store().await).await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    // WebAuthn needs a secure context and a domain for its RP ID: `localhost`.
    let page = service.issuer(ORG).replace("127.0.0.1", "localhost") + "/.well-known/openid-configuration";
    tab.goto(&page).await;
    let authenticator = tab.add_virtual_authenticator(AuthenticatorKind::default()).await;
    assert!(tab.authenticator_credentials(&authenticator).await.is_empty());

    let created: String = tab
        .eval(
            "navigator.credentials.create({ publicKey: {
                rp: { name: 'Acme', id: 'localhost' },
                user: { id: new Uint8Array(16), name: 'alice', displayName: 'Alice' },
                challenge: new Uint8Array(32),
                pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
                authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
            } }).then(c => c.type)",
        )
        .await;
    assert_eq!(created, "public-key");
    let held = tab.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "the authenticator keeps the passkey it made");
    assert!(held[0].is_resident_credential);
}

/// Single sign-on in a real browser: the email-first sign-in page sends a
/// routed email to the upstream OpenID provider (panva's oidc-provider, see
/// `support/upstream_op.rs`), whose own login and consent pages Chromium
/// fills in, and the browser comes back through our callback to the
/// application with a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_email_signs_in_through_the_upstream_provider_in_chromium() {
    use portcullis::store::{DesiredStateStore as _, IdentityProviderRecord, ObjectMeta, OrganizationRecord};

    let service = start(sqlite_store().await).await;
    let callback = format!("{}/sso/oidc/okta/callback", service.issuer(ORG));
    let op = upstream_op::UpstreamOp::start(
        serde_json::json!([{ "client_id": "portcullis", "client_secret": "upstream-secret-0123456789abcdef",
                             "redirect_uris": [callback] }]),
        serde_json::json!({ "bob": { "email": "bob@acme.test", "name": "Bob", "groups": ["Engineering"] } }),
    )
    .await;
    let mut org: OrganizationRecord =
        service.store.get(ORG, ORG).await.expect("read").expect("the organization");
    let mut spec: serde_json::Value = serde_json::from_str(&org.spec_json).expect("spec");
    spec["provisioning"] = serde_json::json!({ "mode": "jit" });
    org.spec_json = spec.to_string();
    org.meta.generation += 1;
    service.store.apply(&org).await.expect("apply the organization");
    let spec = serde_json::json!({
        "type": "OIDC", "displayName": "Okta",
        "oidc": { "issuer": op.issuer, "clientId": "portcullis",
                  "clientSecretRef": { "name": "okta-client", "key": "clientSecret" } },
        "emailDomains": ["acme.test"], "rollout": { "stage": "Optional" },
        "jit": { "enabled": true }, "groupMappings": [{ "group": "Engineering", "role": "viewer" }],
    });
    let record = IdentityProviderRecord {
        meta: ObjectMeta::new(format!("{ORG}-idp-okta"), ORG, "okta", 1),
        protocol: "oidc".into(),
        stage: "Optional".into(),
        email_domains: vec!["acme.test".into()],
        scim_enabled: false,
        spec_json: spec.to_string(),
    };
    service.store.apply(&record).await.expect("apply the IdentityProvider");
    service.state.upstreams().set_secrets(std::sync::Arc::new(
        portcullis::federation::upstreams::SecretsInMemory::new(std::collections::BTreeMap::from([(
            (ORG.to_owned(), "okta-client".to_owned(), "clientSecret".to_owned()),
            "upstream-secret-0123456789abcdef".to_owned(),
        )])),
    ));

    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    tab.catch_navigations_to(WEBAPP_REDIRECT).await;
    let authorize = format!(
        "{}?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&state=s-sso&\
         code_challenge={}&code_challenge_method=S256",
        service.url(ORG, "/authorize"),
        form_urlencoded::byte_serialize(WEBAPP_REDIRECT.as_bytes()).collect::<String>(),
        challenge()
    );
    tab.goto(&authorize).await;
    tab.wait_for_text("leave the password empty", DEFAULT_DEADLINE).await;
    tab.fill("#username", "bob@acme.test").await;
    tab.click("button[type=submit]").await;

    // The upstream's own pages.
    tab.wait_for_url("the upstream provider", DEFAULT_DEADLINE, |url| url.starts_with(&op.issuer)).await;
    tab.fill("input[name=login]", "bob").await;
    tab.fill("input[name=password]", "any password").await;
    tab.click("button[type=submit]").await;
    tab.wait_for_selector("input[name=prompt][value=consent]", DEFAULT_DEADLINE).await;
    tab.click("button[type=submit]").await;

    let landed = tab.wait_for_caught(DEFAULT_DEADLINE).await;
    let params = query(&landed);
    assert_eq!(params.get("state").map(String::as_str), Some("s-sso"), "{landed}");
    assert!(params.contains_key("code"), "{landed}");
}

/// The sign-in page at a phone's width: the default look first, then the
/// organization's `spec.branding` (accent colour on the button, with white
/// text, and its logo named by the organization), every field labelled,
/// focus going from the user name to the password to the button, nothing
/// wider than the screen, and the logo's origin the only image source the
/// page's CSP allows. The screenshot is kept as a test artefact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_wears_the_organizations_branding_and_reads_on_a_phone() {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    use portcullis::store::{DesiredStateStore as _, OrganizationRecord};

    let service = start(sqlite_store().await).await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    tab.page()
        .execute(SetDeviceMetricsOverrideParams::new(390, 844, 3.0, true))
        .await
        .expect("a phone-sized viewport");
    let authorize = format!(
        "{}?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&state=s&\
         code_challenge={}&code_challenge_method=S256",
        service.url(ORG, "/authorize"),
        form_urlencoded::byte_serialize(WEBAPP_REDIRECT.as_bytes()).collect::<String>(),
        challenge()
    );
    let button_colour = "getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor";
    tab.goto(&authorize).await;
    tab.wait_for_selector("#username", DEFAULT_DEADLINE).await;
    assert_eq!(tab.eval::<String>(button_colour).await, "rgb(43, 89, 195)", "the default accent");
    assert!(!tab.eval::<bool>("!!document.querySelector('img.logo')").await, "no logo by default");

    let mut org: OrganizationRecord = service.store.get(ORG, ORG).await.expect("read").expect("acme");
    let mut spec: serde_json::Value = serde_json::from_str(&org.spec_json).expect("spec");
    spec["branding"] =
        serde_json::json!({ "accentColor": "#0B5394", "logoUrl": "https://cdn.acme.example/logo.svg" });
    org.spec_json = spec.to_string();
    org.meta.generation += 1;
    service.store.apply(&org).await.expect("apply the branding");
    let started = std::time::Instant::now();
    loop {
        tab.goto(&authorize).await;
        tab.wait_for_selector("#username", DEFAULT_DEADLINE).await;
        if tab.eval::<String>(button_colour).await == "rgb(11, 83, 148)" {
            break;
        }
        assert!(started.elapsed() < DEFAULT_DEADLINE, "the branding never showed");
    }
    let text_colour = "getComputedStyle(document.querySelector('button[type=submit]')).color";
    assert_eq!(tab.eval::<String>(text_colour).await, "rgb(255, 255, 255)", "white reads on a dark accent");
    let logo: (String, String) =
        tab.eval("[document.querySelector('img.logo').src, document.querySelector('img.logo').alt]").await;
    assert_eq!(logo.0, "https://cdn.acme.example/logo.svg");
    let heading: String = tab.eval("document.querySelector('h1').textContent").await;
    assert!(
        !logo.1.is_empty() && heading.contains(&logo.1),
        "the logo is named by the organization: {logo:?}"
    );

    let labelled =
        "[...document.querySelectorAll('input:not([type=hidden])')].every(i => i.labels.length > 0)";
    assert!(tab.eval::<bool>(labelled).await, "every field has its label");
    assert!(
        tab.eval::<bool>("document.documentElement.scrollWidth <= window.innerWidth").await,
        "nothing is wider than the phone"
    );
    // Focus order is document order (no positive tabindex anywhere): user
    // name, password, then the button.
    let order: Vec<String> = tab
        .eval(
            "[...document.querySelectorAll('a[href],button,input:not([type=hidden]),[tabindex]')]\
             .filter(e => e.tabIndex >= 0).map(e => e.id || e.type)",
        )
        .await;
    assert_eq!(order[..3], ["username", "password", "submit"], "{order:?}");
    assert!(
        tab.eval::<bool>("![...document.querySelectorAll('[tabindex]')].some(e => e.tabIndex > 0)").await
    );

    let csp =
        http_client().get(&authorize).send().await.expect("the page").headers()["content-security-policy"]
            .to_str()
            .expect("ASCII")
            .to_owned();
    assert!(csp.ends_with("; img-src https://cdn.acme.example"), "{csp}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sign-in-phone-branded.png");
    tab.save_screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    println!("screenshot: {}", shot.display());
    browser.close().await;
}
