//! Single sign-on through a SAML 2.0 IdP, over real HTTP: the token service
//! on 127.0.0.1 (`support/token_service.rs`), a browser played by reqwest
//! with a cookie jar, and a real IdP, crewjam/saml's `samlidp` built from
//! the Go module proxy (`support/saml_idp.rs`). Every attack is made from
//! the IdP's genuinely signed responses and posted to our real ACS.
//!
//! ```text
//!  /authorize ─► sign-in form ─ bob@acme.test ─► 303 IdP /sso?SAMLRequest&RelayState
//!  IdP login form ─► auto-submit form ─ POST /o/acme/sso/saml/corp/acs (SAMLResponse, RelayState)
//!  ACS verifies ─► 303 resume ─ this browser's pre-login cookie ─► JIT user, groups ─► 303 app?code
//!  /token ─► access token: roles from the IdentityProvider's groupMappings
//! ```

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/saml_idp.rs"]
mod saml_idp;
#[path = "support/token_service.rs"]
mod token_support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use browser_form::{Page, browser, open, submit};
use jiff::{SignedDuration, Timestamp};
use portcullis::store::{
    DesiredStateStore as _, FederationStore as _, IdentityProviderRecord, ObjectMeta, OrganizationRecord,
    UserStore as _,
};
use reqwest::StatusCode;
use saml_idp::{Posted, SamlIdp};
use token_support::*;

const BOB: &str = "bob@acme.test";
const MALLORY: &str = "mallory@acme.test";
const IDP: &str = "corp";

/// The system's time, shifted by what a test says (expiry without sleeping).
#[derive(Default)]
struct ShiftedClock(Mutex<SignedDuration>);

impl ShiftedClock {
    fn shift(&self, by: SignedDuration) {
        *self.0.lock().unwrap() = by;
    }
}

impl portcullis::token::service::Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp::now() + *self.0.lock().unwrap()
    }
}

struct Setup {
    service: TokenService,
    idp: SamlIdp,
    clock: Arc<ShiftedClock>,
}

/// The token service (JIT provisioning), the IdP with bob (Engineering)
/// and mallory (Admins), and the IdentityProvider `corp` for `acme.test`
/// (Optional; Engineering → viewer, Admins → iam-viewer) reading the IdP's
/// metadata from its URL, our metadata registered at the IdP.
async fn setup() -> Setup {
    let clock = Arc::new(ShiftedClock::default());
    let service = start_with_clock(sqlite_store().await, clock.clone()).await;
    let idp = SamlIdp::start().await;
    idp.add_user("bob", BOB, "Bob Builder", &["Engineering", "Everyone"]).await;
    idp.add_user("mallory", MALLORY, "Mallory", &["Admins"]).await;

    let mut org: OrganizationRecord =
        service.store.get(ORG, ORG).await.expect("read").expect("the organization");
    let mut spec: serde_json::Value = serde_json::from_str(&org.spec_json).expect("the organization's spec");
    spec["provisioning"] = serde_json::json!({ "mode": "jit" });
    org.spec_json = spec.to_string();
    org.meta.generation += 1;
    service.store.apply(&org).await.expect("apply the organization");

    apply_saml_provider(
        &service,
        serde_json::json!({ "metadataUrl": idp.entity_id(), "entityId": idp.entity_id() }),
        1,
    )
    .await;
    let ours =
        http_client().get(service.url(ORG, &format!("/sso/saml/{IDP}/metadata"))).send().await.unwrap();
    assert_eq!(ours.status(), StatusCode::OK);
    idp.register_service("portcullis", &ours.text().await.unwrap()).await;
    Setup { service, idp, clock }
}

/// Applies the IdentityProvider `corp` with `saml` settings (plus the attribute mapping of samlidp's attributes).
async fn apply_saml_provider(service: &TokenService, mut saml: serde_json::Value, generation: i64) {
    saml["attributeMapping"] = serde_json::json!({
        "email": "urn:oid:0.9.2342.19200300.100.1.3",
        "name": "urn:oid:2.5.4.3",
        "groups": "urn:oid:1.3.6.1.4.1.5923.1.1.1.1",
    });
    let spec = serde_json::json!({
        "type": "SAML",
        "displayName": "Corp SSO",
        "saml": saml,
        "emailDomains": ["acme.test"],
        "rollout": { "stage": "Optional", "testUsers": [], "breakGlassUsers": [] },
        "jit": { "enabled": true, "syncOnSignIn": true },
        "groupMappings": [
            { "group": "Engineering", "role": "viewer" },
            { "group": "Admins", "role": "iam-viewer" },
        ],
    });
    let record = IdentityProviderRecord {
        meta: ObjectMeta::new(format!("{ORG}-idp-{IDP}"), ORG, IDP, generation),
        protocol: "saml".into(),
        stage: "Optional".into(),
        email_domains: vec!["acme.test".into()],
        scim_enabled: false,
        spec_json: spec.to_string(),
    };
    service.store.apply(&record).await.expect("apply the IdentityProvider");
}

fn authorize_url(service: &TokenService) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    format!(
        "{}?response_type=code&client_id=webapp&redirect_uri={}&scope=openid%20email&state=app-state&\
         nonce=app-nonce&code_challenge={challenge}&code_challenge_method=S256",
        service.url(ORG, "/authorize"),
        form_urlencoded::byte_serialize(WEBAPP_REDIRECT.as_bytes()).collect::<String>(),
    )
}

/// The application's sign-in in `browser`, `email` typed with no password:
/// our redirect to the IdP.
async fn to_idp(setup: &Setup, browser: &reqwest::Client, email: &str) -> String {
    let form = open(browser, &authorize_url(&setup.service)).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let page = submit(
        browser,
        &setup.service.base_url,
        &form,
        "/login",
        &[("username", email), ("password", "")],
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    page.location.clone().expect("a redirect to the IdP")
}

/// Our redirect to the IdP, then `user` signing in there: what the IdP posts back.
async fn through_idp(setup: &Setup, browser: &reqwest::Client, user: &str) -> Posted {
    let redirect = to_idp(setup, browser, &format!("{user}@acme.test")).await;
    let posted = setup.idp.sign_in(browser, &redirect, user).await;
    assert_eq!(posted.action, setup.service.url(ORG, &format!("/sso/saml/{IDP}/acs")));
    posted
}

/// Posts `posted` to our ACS from `browser` (as the IdP's page would).
async fn post_acs(setup: &Setup, browser: &reqwest::Client, posted: &Posted) -> Page {
    let mut fields = vec![("SAMLResponse", posted.saml_response.as_str())];
    if !posted.relay_state.is_empty() {
        fields.push(("RelayState", posted.relay_state.as_str()));
    }
    let url = setup.service.url(ORG, &format!("/sso/saml/{IDP}/acs"));
    Page::read(browser.post(url).form(&fields).send().await.expect("the ACS")).await
}

/// The ACS accepted: follow it back (resume) to the application's redirect.
async fn land(browser: &reqwest::Client, acs: &Page) -> Page {
    assert_eq!(acs.status, StatusCode::SEE_OTHER, "{}", acs.body);
    open(browser, acs.location.as_deref().expect("a redirect to resume")).await
}

/// Why the last sign-in through `corp` was refused, as counted for its status.
async fn last_refusal(setup: &Setup) -> Option<String> {
    let health = setup
        .service
        .store
        .sso_health(ORG, IDP, Timestamp::now().as_millisecond() + 3_600_000)
        .await
        .unwrap();
    health.last_error_reason
}

/// Refused, with `reason` counted, and a page saying so.
async fn assert_refused(setup: &Setup, page: &Page, reason: &str, what: &str) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{what}: {}", page.body);
    assert!(
        page.body.contains("could not be accepted") || page.body.contains("expired"),
        "{what}: {}",
        page.body
    );
    assert_eq!(last_refusal(setup).await.as_deref(), Some(reason), "{what}");
}

/// The application's code from the page the resume answered with.
fn code_of(landed: &Page) -> String {
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
    assert!(
        landed.location.as_deref().unwrap_or_default().starts_with(WEBAPP_REDIRECT),
        "{:?}",
        landed.location
    );
    landed.query().get("code").cloned().expect("a code for the application")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_user_signs_in_through_the_idp_and_gets_the_roles_of_its_groups() {
    let setup = setup().await;
    let browser = browser();
    let redirect = to_idp(&setup, &browser, BOB).await;
    let request = query_value(&redirect, "SAMLRequest");
    let request = inflate(&request);
    assert!(request.contains("AssertionConsumerServiceURL=\""), "{request}");
    let posted = setup.idp.sign_in(&browser, &redirect, "bob").await;
    let landed = land(&browser, &post_acs(&setup, &browser, &posted).await).await;
    let code = code_of(&landed);
    assert_eq!(landed.query().get("state").map(String::as_str), Some("app-state"));

    let bob = setup.service.store.find_user_by_name(ORG, BOB).await.unwrap().expect("bob was created (JIT)");
    assert_eq!(bob.display_name.as_deref(), Some("Bob Builder"));
    setup.service.index_caught_up(ORG, std::time::Duration::from_secs(10)).await;
    let tokens = redeem(&setup.service, &code).await;
    assert_eq!(role_names(tokens["access_token"].as_str().unwrap()), ["viewer"], "Engineering → viewer");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["idp"], IDP, "{id}");
    assert_eq!(id["amr"][0], "fed", "{id}");

    // Our metadata is a stable document naming the ACS.
    let url = setup.service.url(ORG, &format!("/sso/saml/{IDP}/metadata"));
    let first = http_client().get(&url).send().await.unwrap().text().await.unwrap();
    let second = http_client().get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(first, second);
    assert!(first.contains(&format!("entityID=\"{url}\"")), "{first}");
    assert!(first.contains(&setup.service.url(ORG, &format!("/sso/saml/{IDP}/acs"))), "{first}");
}

fn query_value(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .expect(name)
}

fn inflate(encoded: &str) -> String {
    use std::io::Read as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let mut text = String::new();
    flate2::read::DeflateDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    text
}

/// The pieces of a genuine response from samlidp: it signs the Response
/// and, inside it, the Assertion.
struct Pieces {
    /// From the start of the document to the end of the Response's start tag.
    open: String,
    issuer: String,
    response_signature: String,
    status: String,
    assertion: String,
    close: String,
}

fn element(xml: &str, local: &str, from: usize) -> (usize, usize) {
    let start = regex::Regex::new(&format!(r"<(\w+:)?{local}[\s>]")).unwrap();
    let found = start.find_at(xml, from).unwrap_or_else(|| panic!("<{local}> in {xml}"));
    let end = regex::Regex::new(&format!(r"</(\w+:)?{local}>")).unwrap();
    let closing = end.find_at(xml, found.start()).unwrap_or_else(|| panic!("</{local}> in {xml}"));
    (found.start(), closing.end())
}

fn pieces(xml: &str) -> Pieces {
    let open_end = regex::Regex::new(r"<(\w+:)?Response[^>]*>").unwrap().find(xml).expect("a Response").end();
    let (issuer_start, issuer_end) = element(xml, "Issuer", open_end);
    let (signature_start, signature_end) = element(xml, "Signature", issuer_end);
    let (status_start, status_end) = element(xml, "Status", signature_end);
    let (assertion_start, assertion_end) = element(xml, "Assertion", status_end);
    assert_eq!(xml[open_end..issuer_start].trim(), "");
    Pieces {
        open: xml[..open_end].to_owned(),
        issuer: xml[issuer_start..issuer_end].to_owned(),
        response_signature: xml[signature_start..signature_end].to_owned(),
        status: xml[status_start..status_end].to_owned(),
        assertion: xml[assertion_start..assertion_end].to_owned(),
        close: xml[assertion_end..].to_owned(),
    }
}

impl Pieces {
    /// The assertion's own signature, and the assertion without it.
    fn assertion_signature(&self) -> (String, String) {
        let (start, end) = element(&self.assertion, "Signature", 0);
        let signature = self.assertion[start..end].to_owned();
        let bare = format!("{}{}", &self.assertion[..start], &self.assertion[end..]);
        (signature, bare)
    }

    /// An unsigned assertion naming mallory (with her Admins group), under another ID.
    fn evil_assertion(&self) -> String {
        let (_, bare) = self.assertion_signature();
        let id = regex::Regex::new(r#"ID="[^"]*""#).unwrap();
        id.replace(&bare, r#"ID="_evil""#).replace(BOB, MALLORY).replace("Engineering", "Admins")
    }

    /// The Response's start tag under another ID.
    fn evil_open(&self) -> String {
        regex::Regex::new(r#" ID="[^"]*""#)
            .unwrap()
            .replace(&self.open, r#" ID="_evil_response""#)
            .into_owned()
    }

    fn whole(&self) -> String {
        format!(
            "{}{}{}{}{}{}",
            self.open, self.issuer, self.response_signature, self.status, self.assertion, self.close
        )
    }

    /// The Response without its own signature (the assertion stays signed).
    fn without_response_signature(&self, assertions: &str) -> String {
        format!("{}{}{}{}{}", self.open, self.issuer, self.status, assertions, self.close)
    }
}

/// The XML signature wrapping families (Somorovsky et al., "On Breaking
/// SAML", 2012), each made from a genuine response: the signatures still
/// verify over the original, and an evil assertion (mallory, Admins) sits
/// where a careless service provider would read it.
fn wrapped(p: &Pieces) -> Vec<(&'static str, String)> {
    let evil = p.evil_assertion();
    let (signature, bare) = p.assertion_signature();
    let original = p.whole();
    let original_body =
        original.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>").unwrap_or(&original);
    let signature_with = |inside: &str| {
        let cut = signature.rfind("</").unwrap();
        format!("{}{inside}{}", &signature[..cut], &signature[cut..])
    };
    let response_signature_with = |inside: &str| {
        let cut = p.response_signature.rfind("</").unwrap();
        format!("{}{inside}{}", &p.response_signature[..cut], &p.response_signature[cut..])
    };
    let evil_holding = |inside: &str| {
        // The evil assertion with `inside` put just before its Subject.
        let at = regex::Regex::new(r"<(\w+:)?Subject[\s>]").unwrap().find(&evil).unwrap().start();
        format!("{}{inside}{}", &evil[..at], &evil[at..])
    };
    vec![
        // XSW1: an evil Response; the original one moved into its (copied) signature.
        ("XSW1", format!("{}{}{}{}{}{}", p.evil_open(), p.issuer, response_signature_with(original_body), p.status, evil, p.close)),
        // XSW2: the same, the original Response a sibling before the signature.
        ("XSW2", format!("{}{}{}{}{}{}{}", p.evil_open(), p.issuer, original_body, p.response_signature, p.status, evil, p.close)),
        // XSW3: the evil assertion before the signed one.
        ("XSW3", p.without_response_signature(&format!("{evil}{}", p.assertion))),
        // XSW4: the evil assertion wrapping the signed one.
        ("XSW4", p.without_response_signature(&evil_holding(&p.assertion))),
        // XSW5: the evil assertion carries the signature; the signed content appended after it.
        ("XSW5", p.without_response_signature(&format!("{}{bare}", evil_holding(&signature)))),
        // XSW6: the evil assertion carries the signature, the signed content inside it.
        ("XSW6", p.without_response_signature(&evil_holding(&signature_with(&bare)))),
        // XSW7: the signed assertion hidden in Extensions, the evil one after.
        (
            "XSW7",
            p.without_response_signature(&format!(
                "<samlp:Extensions xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">{}</samlp:Extensions>{evil}",
                p.assertion
            )),
        ),
        // XSW8: the evil assertion carries the signature, the signed content in an Object of it.
        (
            "XSW8",
            p.without_response_signature(&evil_holding(&signature_with(&format!(
                "<ds:Object xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{bare}</ds:Object>"
            )))),
        ),
    ]
}

/// Each attack is posted with this browser's genuine RelayState, to the real
/// ACS: each is refused with its own reason, nobody becomes mallory, and the
/// genuine response is still accepted afterwards (a refusal spends nothing);
/// posted again, it is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_rearranged_responses_are_refused_at_the_acs() {
    let setup = setup().await;
    let browser = browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    let xml = posted.xml();
    let p = pieces(&xml);

    // XXE / entity expansion: refused before any parser sees it.
    let doctype = xml.replacen(
        "<samlp:Response",
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><samlp:Response",
        1,
    );
    assert_ne!(doctype, xml, "the root is samlp:Response");
    let page = post_acs(&setup, &browser, &posted.with_xml(&doctype)).await;
    assert_refused(&setup, &page, "XmlDeclarationRefused", "DOCTYPE").await;

    // No signature at all (both removed): refused.
    let (_, bare) = p.assertion_signature();
    let unsigned = p.without_response_signature(&bare);
    let page = post_acs(&setup, &browser, &posted.with_xml(&unsigned)).await;
    assert_refused(&setup, &page, "Unsigned", "unsigned").await;

    // A signed response whose content was changed afterwards: refused.
    let altered = p.without_response_signature(&p.assertion.replace(BOB, MALLORY));
    let page = post_acs(&setup, &browser, &posted.with_xml(&altered)).await;
    assert_refused(&setup, &page, "SignatureInvalid", "altered").await;

    for (family, attack) in wrapped(&p) {
        let page = post_acs(&setup, &browser, &posted.with_xml(&attack)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{family}: {}", page.body);
        let reason = last_refusal(&setup).await;
        assert!(
            matches!(reason.as_deref(), Some("SignatureWrapping" | "SignatureInvalid")),
            "{family}: refused for {reason:?}"
        );
        eprintln!("{family}: refused ({reason:?})");
    }

    // The response for another of this browser's sign-ins (InResponseTo).
    let other = through_idp(&setup, &browser, "bob").await;
    let swapped = Posted { relay_state: posted.relay_state.clone(), ..other.clone() };
    let page = post_acs(&setup, &browser, &swapped).await;
    assert_refused(&setup, &page, "InResponseToMismatch", "another request's response").await;

    // Two signed assertions (this one and the other sign-in's) in one
    // response: samael keeps no document of two signed roots (refused as
    // SignatureInvalid); were it to, our count of signed assertions would.
    let second = pieces(&other.xml()).assertion;
    let two = p.without_response_signature(&format!("{}{second}", p.assertion));
    let page = post_acs(&setup, &browser, &posted.with_xml(&two)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "two assertions: {}", page.body);
    let reason = last_refusal(&setup).await;
    assert!(
        matches!(reason.as_deref(), Some("AssertionCount" | "SignatureInvalid")),
        "two assertions: {reason:?}"
    );

    // The Destination changed (the assertion stays signed).
    let elsewhere = p.without_response_signature(&p.assertion).replacen(
        &format!("Destination=\"{}\"", posted.action),
        "Destination=\"https://evil.example/acs\"",
        1,
    );
    let page = post_acs(&setup, &browser, &posted.with_xml(&elsewhere)).await;
    assert_refused(&setup, &page, "DestinationMismatch", "Destination").await;

    // Unsolicited (IdP-initiated): no RelayState of ours.
    let unsolicited = Posted { relay_state: String::new(), ..posted.clone() };
    let page = post_acs(&setup, &browser, &unsolicited).await;
    assert_refused(&setup, &page, "Unsolicited", "unsolicited").await;

    assert!(
        setup.service.store.find_user_by_name(ORG, MALLORY).await.unwrap().is_none(),
        "nobody became mallory"
    );

    // The genuine response, after all that: accepted.
    let acs = post_acs(&setup, &browser, &posted).await;
    assert_eq!(acs.status, StatusCode::SEE_OTHER, "{}", acs.body);
    // The same assertion again, before the browser came back: a replay.
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "AssertionReplayed", "replay").await;
    code_of(&land(&browser, &acs).await);
}

/// NotOnOrAfter and NotBefore, with a minute's leeway, by our clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_outside_their_validity_are_refused() {
    let setup = setup().await;
    let browser = browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    setup.clock.shift(SignedDuration::from_mins(5));
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "Expired", "five minutes later").await;
    setup.clock.shift(SignedDuration::from_mins(-5));
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "NotYetValid", "five minutes earlier").await;
    setup.clock.shift(SignedDuration::from_secs(50));
    code_of(&land(&browser, &post_acs(&setup, &browser, &posted).await).await);
}

/// A key the metadata does not name is refused; so is a certificate past
/// its NotAfter; a new certificate published in the metadata (a rollover)
/// is accepted once the metadata is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_unexpired_certificates_of_the_metadata_verify() {
    let setup = setup().await;
    // Our metadata cache is filled by a first sign-in.
    let browser = browser();
    code_of(
        &land(&browser, &post_acs(&setup, &browser, &through_idp(&setup, &browser, "bob").await).await).await,
    );

    setup.idp.new_signing_key(false, "8760h").await;
    setup.clock.shift(SignedDuration::from_secs(2));
    let browser = browser_form::browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "SignatureInvalid", "a key not in the metadata").await;

    setup.idp.new_signing_key(true, "-1h").await;
    setup.clock.shift(SignedDuration::from_secs(4));
    let browser = browser_form::browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "CertificateExpired", "an expired certificate").await;

    setup.idp.new_signing_key(true, "8760h").await;
    setup.clock.shift(SignedDuration::from_secs(6));
    let browser = browser_form::browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    code_of(&land(&browser, &post_acs(&setup, &browser, &posted).await).await);
}

/// The assertion's Issuer must be the IdP the IdentityProvider names: here
/// its metadata (inline, the same certificate) names another entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_from_another_issuer_is_refused() {
    let setup = setup().await;
    let other = "https://other-idp.example/saml";
    let metadata = setup
        .idp
        .metadata()
        .await
        .replace(&format!("entityID=\"{}\"", setup.idp.entity_id()), &format!("entityID=\"{other}\""));
    apply_saml_provider(&setup.service, serde_json::json!({ "metadata": metadata, "entityId": other }), 2)
        .await;
    let browser = browser();
    let posted = through_idp(&setup, &browser, "bob").await;
    let page = post_acs(&setup, &browser, &posted).await;
    assert_refused(&setup, &page, "IssuerMismatch", "another issuer").await;
}

/// The IdP asked (by a rewritten AuthnRequest with this browser's request
/// ID) for another service provider, or for another ACS of ours: the
/// genuinely signed assertion names another Audience, or Recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_for_another_audience_or_recipient_are_refused() {
    let setup = setup().await;
    let ours =
        http_client().get(setup.service.url(ORG, &format!("/sso/saml/{IDP}/metadata"))).send().await.unwrap();
    let ours = ours.text().await.unwrap();
    let our_entity = setup.service.url(ORG, &format!("/sso/saml/{IDP}/metadata"));
    let acs = setup.service.url(ORG, &format!("/sso/saml/{IDP}/acs"));
    let other_entity = "https://other-sp.example/metadata";
    setup.idp.register_service("other", &ours.replace(&our_entity, other_entity)).await;
    let evil_acs = "https://evil.example/acs";
    let two_acs = ours.replacen(&acs, evil_acs, 1);
    let two_acs = two_acs.replacen("isDefault=\"true\"", "", 1);
    // Both of our ACS URLs registered: the genuine one, and an evil one at index 1.
    let acs_element =
        regex::Regex::new(r"<(\w+:)?AssertionConsumerService[^>]*(/>|></(\w+:)?AssertionConsumerService>)")
            .unwrap();
    let genuine = acs_element.find(&ours).expect("an ACS element").as_str().to_owned();
    let evil = acs_element.find(&two_acs).unwrap().as_str().replace("index=\"0\"", "index=\"1\"");
    setup.idp.register_service("portcullis", &ours.replacen(&genuine, &format!("{genuine}{evil}"), 1)).await;

    for (what, from, to, reason) in [
        ("another audience", our_entity.clone(), other_entity.to_owned(), "AudienceMismatch"),
        ("another recipient", acs.clone(), evil_acs.to_owned(), "RecipientMismatch"),
    ] {
        let browser = browser();
        let redirect = to_idp(&setup, &browser, BOB).await;
        let request = inflate(&query_value(&redirect, "SAMLRequest")).replacen(&from, &to, 1);
        let rewritten = format!(
            "{}?{}",
            redirect.split_once('?').unwrap().0,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("SAMLRequest", &deflate(&request))
                .append_pair("RelayState", &query_value(&redirect, "RelayState"))
                .finish()
        );
        let posted = setup.idp.sign_in(&browser, &rewritten, "bob").await;
        // Posted to our ACS, with the Destination made ours (the assertion stays signed).
        let p = pieces(&posted.xml());
        let xml = p
            .without_response_signature(&p.assertion)
            .replace(&format!("Destination=\"{evil_acs}\""), &format!("Destination=\"{acs}\""));
        let page = post_acs(&setup, &browser, &posted.with_xml(&xml)).await;
        assert_refused(&setup, &page, reason, what).await;
    }
}

fn deflate(text: &str) -> String {
    use std::io::Write as _;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
}

/// The whole chain in headless Chromium: our email-first sign-in page, the
/// IdP's login form, its auto-submitting POST form to our ACS (its script
/// posts it), our resume, and the application's redirect with a code whose
/// tokens carry the role of bob's group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_email_signs_in_through_the_saml_idp_in_chromium() {
    use chromium::{Chromium, DEFAULT_DEADLINE};

    let setup = setup().await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;
    tab.catch_navigations_to(WEBAPP_REDIRECT).await;
    tab.goto(&authorize_url(&setup.service)).await;
    tab.wait_for_text("leave the password empty", DEFAULT_DEADLINE).await;
    tab.fill("#username", BOB).await;
    tab.click("button[type=submit]").await;

    // The IdP's own login form.
    tab.wait_for_url("the IdP", DEFAULT_DEADLINE, |url| url.starts_with(&setup.idp.base)).await;
    tab.wait_for_selector("input[name=user]", DEFAULT_DEADLINE).await;
    tab.fill("input[name=user]", "bob").await;
    tab.fill("input[name=password]", saml_idp::PASSWORD).await;
    tab.click("input[type=submit]").await;

    let landed = tab.wait_for_caught(DEFAULT_DEADLINE).await;
    let query = landed.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("app-state"), "{landed}");
    let code = params.get("code").unwrap_or_else(|| panic!("a code in {landed}"));
    setup.service.index_caught_up(ORG, std::time::Duration::from_secs(10)).await;
    let tokens = redeem(&setup.service, code).await;
    assert_eq!(role_names(tokens["access_token"].as_str().unwrap()), ["viewer"]);
    browser.close().await;
}

/// Issue 15's target for the ACS: at least 500 signed responses verified
/// and answered per second on the 2-core machine. Genuine responses of the
/// real IdP are gathered first (one per pending sign-in; the IdP's session
/// spares its login after the first), then posted to our ACS by 8
/// connections at once; each must be accepted (303 to resume).
///
/// cargo test --release --workspace --test saml acs_benchmark -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release, see BENCHMARKS.md"]
async fn acs_benchmark() {
    const RESPONSES: usize = 1000;
    const CONNECTIONS: usize = 8;
    let setup = Arc::new(setup().await);
    let browser = browser();
    let mut posts = Vec::with_capacity(RESPONSES);
    let gathering = std::time::Instant::now();
    for _ in 0..RESPONSES {
        posts.push(through_idp(&setup, &browser, "bob").await);
    }
    println!("gathered {RESPONSES} signed responses in {:.1} s", gathering.elapsed().as_secs_f64());
    let chunks: Vec<Vec<Posted>> =
        posts.chunks(RESPONSES.div_ceil(CONNECTIONS)).map(<[Posted]>::to_vec).collect();
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for chunk in chunks {
        let setup = setup.clone();
        workers.push(tokio::spawn(async move {
            let client = browser_form::browser();
            for posted in &chunk {
                let page = post_acs(&setup, &client, posted).await;
                assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker");
    }
    let rate = RESPONSES as f64 / started.elapsed().as_secs_f64();
    println!(
        "ACS: {RESPONSES} signed responses verified and answered, {CONNECTIONS} connections: {rate:.0}/s"
    );
    assert!(rate >= 500.0, "{rate:.0} responses/s");
}
