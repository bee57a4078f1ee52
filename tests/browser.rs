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
