//! Single sign-on served by `portcullis standalone` from its manifests
//! folder, as a developer points it at a local identity provider: the real
//! binary on a copy of `examples/acme`, a real upstream OpenID provider
//! (oidc-provider on node) and a real SAML IdP (crewjam/saml's samlidp),
//! all on loopback. The providers are added to the folder while the server
//! runs, and a browser (reqwest with a cookie jar) signs in through each.
//!
//! ```text
//!  examples/acme ──copy──► folder ──watch──► portcullis standalone (SQLite)
//!   identity-provider.yaml: issuer → http://127.0.0.1:…  (oidc-provider)
//!   saml-idp.yaml (new):    metadataUrl → http://127.0.0.1:…/metadata (samlidp)
//!  browser: authorize → email → provider → callback / ACS → code → tokens
//! ```

#[path = "support/saml_idp.rs"]
mod saml_idp;
#[path = "support/standalone.rs"]
mod standalone;
#[path = "support/upstream_op.rs"]
mod upstream_op;

use std::time::Duration;

use reqwest::StatusCode;
use saml_idp::SamlIdp;
use standalone::browser_form::{Page, browser, open, submit};
use standalone::{DEADLINE, SPA_REDIRECT, Standalone, http, jwt_part};
use upstream_op::UpstreamOp;

/// `examples/acme`'s Okta client, and the placeholder secret its Secret holds.
const OKTA_CLIENT: &str = "0oa8portcullisacme";
const OKTA_SECRET: &str = "PLACEHOLDER-not-a-real-okta-client-secret";

/// Opens the public client's sign-in in `browser` and types `email` with no
/// password: the answer (a redirect to the provider routed for it, or a page).
async fn type_email(server: &Standalone, browser: &reqwest::Client, email: &str) -> Page {
    let form = open(browser, &server.authorize_url()).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    submit(browser, &server.base, &form, "/login", &[("username", email), ("password", "")], &[]).await
}

/// Types `email` until the server sends it to `provider` (the folder's edit
/// taken in): the redirect.
async fn routed_to(server: &Standalone, email: &str, provider: &str) -> (reqwest::Client, String) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let browser = browser();
        let page = type_email(server, &browser, email).await;
        if let Some(location) = page.location.as_deref().filter(|l| l.starts_with(provider)) {
            return (browser, location.to_owned());
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{email} is not sent to {provider}: {} {:?}\n{}",
            page.status,
            page.location,
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The application's code on the redirect that ends a sign-in, redeemed:
/// the roles of its access token, as `name@scope`.
async fn roles_after(server: &Standalone, landed: &Page) -> Vec<String> {
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
    let location = landed.location.as_deref().unwrap_or_default();
    assert!(location.starts_with(SPA_REDIRECT), "back to the application, not {location}");
    let tokens = server.redeem(&landed.query()["code"]).await;
    let id = jwt_part(tokens["id_token"].as_str().expect("an ID token"), 1);
    assert_eq!(id["amr"][0], "fed", "signed in through the provider: {id}");
    let access = jwt_part(tokens["access_token"].as_str().expect("an access token"), 1);
    access["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{}@{}", r["name"].as_str().unwrap_or_default(), r["scope"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_signs_in_through_a_local_oidc_provider_named_in_its_folder() {
    let server = Standalone::start_acme(|_, _| {}).await;
    let callback = format!("{}/sso/oidc/okta/callback", server.issuer());
    let op = UpstreamOp::start(
        serde_json::json!([{ "client_id": OKTA_CLIENT, "client_secret": OKTA_SECRET, "redirect_uris": [callback] }]),
        serde_json::json!({
            "bob": { "email": "bob@acme.com", "name": "Bob Builder", "groups": ["Acme Analysts EMEA"] },
        }),
    )
    .await;
    assert!(op.issuer.starts_with("http://127.0.0.1:"), "a loopback issuer: {}", op.issuer);

    // The developer's edit: Okta becomes the local provider, and signing in
    // creates users (the example provisions them by SCIM).
    server.edit_manifest("identity-provider.yaml", "https://acme.okta.com", &op.issuer);
    server.edit_manifest("organization.yaml", "mode: scim", "mode: jit");
    server.edit_manifest("identity-provider.yaml", "enabled: false", "enabled: true");

    let (browser, upstream) = routed_to(&server, "bob@acme.com", &op.issuer).await;
    let back = op.sign_in(&browser, &upstream, "bob").await;
    assert!(back.starts_with(&callback), "back to our callback, not {back}");
    let landed = open(&browser, &back).await;
    let roles = roles_after(&server, &landed).await;
    assert!(
        roles.iter().any(|r| r.starts_with("analyst-readonly@") && r.contains("emea-marketing")),
        "Acme Analysts EMEA → analyst-readonly in emea-marketing: {roles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_signs_in_through_a_local_saml_idp_added_to_its_folder() {
    let server = Standalone::start_acme(|_, _| {}).await;
    let idp = SamlIdp::start().await;
    idp.add_user("sam", "sam@acme.test", "Sam Saml", &["Acme Analysts US"]).await;
    server.edit_manifest("organization.yaml", "mode: scim", "mode: jit");
    let manifest = format!(
        "apiVersion: iam.portcullis.dev/v1alpha1
kind: IdentityProvider
metadata:
  name: corp
  namespace: acme
spec:
  type: SAML
  displayName: Corp SSO
  saml:
    metadataUrl: {metadata}
    entityId: {metadata}
    attributeMapping:
      email: urn:oid:0.9.2342.19200300.100.1.3
      name: urn:oid:2.5.4.3
      groups: urn:oid:1.3.6.1.4.1.5923.1.1.1.1
  emailDomains:
    - acme.test
  rollout:
    stage: Optional
  jit:
    enabled: true
  groupMappings:
    - group: Acme Analysts US
      role: analyst-readonly
      workspace: us-marketing
",
        metadata = idp.entity_id()
    );
    std::fs::write(server.manifests.join("saml-idp.yaml"), manifest).unwrap();

    // Our service provider's metadata, once the folder's new provider is
    // taken in, registered at the IdP as an administrator there would.
    let ours = format!("{}/sso/saml/corp/metadata", server.issuer());
    let until = tokio::time::Instant::now() + DEADLINE;
    let metadata = loop {
        let response = http().get(&ours).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break response.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < until, "no SP metadata at {ours}:\n{}", server.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    idp.register_service("portcullis", &metadata).await;

    let (browser, redirect) = routed_to(&server, "sam@acme.test", &idp.base).await;
    let posted = idp.sign_in(&browser, &redirect, "sam").await;
    assert_eq!(posted.action, format!("{}/sso/saml/corp/acs", server.issuer()));
    let mut fields = vec![("SAMLResponse", posted.saml_response.as_str())];
    if !posted.relay_state.is_empty() {
        fields.push(("RelayState", posted.relay_state.as_str()));
    }
    let acs = Page::read(browser.post(&posted.action).form(&fields).send().await.unwrap()).await;
    assert_eq!(acs.status, StatusCode::SEE_OTHER, "{}", acs.body);
    let landed = open(&browser, acs.location.as_deref().expect("a redirect to resume")).await;
    let roles = roles_after(&server, &landed).await;
    assert!(
        roles.iter().any(|r| r.starts_with("analyst-readonly@") && r.contains("us-marketing")),
        "Acme Analysts US → analyst-readonly in us-marketing: {roles:?}"
    );
}
