//! WebAuthn over real HTTP: the token service on loopback (as
//! `http://localhost:PORT`: WebAuthn needs a domain, not an IP address, for
//! its relying party id), a browser played by reqwest with a cookie jar, and
//! a software authenticator of our own standing in for the security key
//! (P-256 keys from ring, "none" attestation, CBOR from ciborium). The store
//! is SQLite in memory or (where named) a real PostgreSQL from `support/postgres.rs`.
//!
//! ```text
//!  browser ── password ──► session ── /account: password again + CSRF ──► create() ─► credential stored
//!  browser ── password ──► WebAuthn step ── get() with one of the user's credentials ──► code (amr pwd hwk mfa)
//!  browser ── "sign in with a passkey" ── get() of a discoverable credential ──► code (amr hwk mfa)
//! ```

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use browser_form::{Page, open, unescape};
use portcullis::secret::SecretString;
use portcullis::store::{
    CeremonyStore as _, DesiredStateStore as _, Email, NewUser, OAuthClientRecord, ObjectMeta,
    OrganizationRecord, Store, UserSource, UserStore as _,
};
use portcullis::token::keys::{Algorithm, KeyMeta, SigningKey};
use portcullis::token::password::PasswordHasher;
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::{LoginConfig, LoginState};
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};
use portcullis::token::totp;
use reqwest::StatusCode;

const ORG: &str = "acme";
const CLIENT: &str = "spa";
const REDIRECT_URI: &str = "https://app.acme.test/callback";
const PASSWORD: &str = "correct horse battery staple";
const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789abcdef";

// === A software authenticator. ===

/// What a security key or a phone would do for `navigator.credentials`:
/// makes P-256 credentials (resident, so they also serve as passkeys), signs
/// assertions with user presence and verification, and counts signatures.
/// Cloning it clones its keys and counters, like copying a key's secrets.
#[derive(Clone, Default)]
struct SoftAuthenticator {
    credentials: Vec<SoftCredential>,
}

#[derive(Clone)]
struct SoftCredential {
    id: Vec<u8>,
    pkcs8: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    counter: u32,
}

/// Authenticator data flags (WebAuthn §6.1): user present, user verified, attested credential data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).expect("base64url")
}

fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR");
    out
}

impl SoftAuthenticator {
    /// `navigator.credentials.create` for `options` (webauthn-rs' CreationChallengeResponse), at `origin`.
    fn create(&mut self, options: &serde_json::Value, origin: &str) -> serde_json::Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().expect("rp.id").to_owned();
        let client_data = serde_json::json!({
            "type": "webauthn.create", "challenge": pk["challenge"], "origin": origin, "crossOrigin": false,
        })
        .to_string();
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref().to_vec();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng).unwrap();
        use ring::signature::KeyPair as _;
        let point = key.public_key().as_ref();
        let id: Vec<u8> = {
            use ring::rand::SecureRandom as _;
            let mut id = vec![0u8; 32];
            rng.fill(&mut id).unwrap();
            id
        };
        use ciborium::Value;
        // RFC 9053 §7.1.1: EC2 key, ES256, P-256, x, y.
        let cose_key = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer(2.into())),
            (Value::Integer(3.into()), Value::Integer((-7).into())),
            (Value::Integer((-1).into()), Value::Integer(1.into())),
            (Value::Integer((-2).into()), Value::Bytes(point[1..33].to_vec())),
            (Value::Integer((-3).into()), Value::Bytes(point[33..65].to_vec())),
        ]);
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(UP | UV | AT);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cbor(&cose_key));
        let attestation = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(Vec::new())),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]);
        self.credentials.push(SoftCredential {
            id: id.clone(),
            pkcs8,
            rp_id,
            user_handle: unb64(pk["user"]["id"].as_str().expect("user.id")),
            counter: 0,
        });
        serde_json::json!({
            "id": b64(&id), "rawId": b64(&id), "type": "public-key", "extensions": {},
            "response": {
                "attestationObject": b64(&cbor(&attestation)),
                "clientDataJSON": b64(client_data.as_bytes()),
            },
        })
    }

    /// `navigator.credentials.get`: signs with the first credential the
    /// options allow (any of the relying party's when they list none), or
    /// with `forced` whatever the options say.
    fn get(&mut self, options: &serde_json::Value, origin: &str, forced: Option<&[u8]>) -> serde_json::Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rpId"].as_str().expect("rpId");
        let allowed: Vec<Vec<u8>> = pk["allowCredentials"]
            .as_array()
            .map(|list| list.iter().map(|c| unb64(c["id"].as_str().unwrap())).collect())
            .unwrap_or_default();
        let credential = self
            .credentials
            .iter_mut()
            .find(|c| match forced {
                Some(id) => c.id == id,
                None => c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)),
            })
            .expect("the authenticator holds a credential for this request");
        credential.counter += 1;
        let client_data = serde_json::json!({
            "type": "webauthn.get", "challenge": pk["challenge"], "origin": origin, "crossOrigin": false,
        })
        .to_string();
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(UP | UV);
        auth_data.extend_from_slice(&credential.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha256(client_data.as_bytes()));
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &credential.pkcs8, &rng).unwrap();
        let signature = key.sign(&rng, &signed).unwrap();
        serde_json::json!({
            "id": b64(&credential.id), "rawId": b64(&credential.id), "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(client_data.as_bytes()),
                "signature": b64(signature.as_ref()),
                "userHandle": b64(&credential.user_handle),
            },
        })
    }

    fn only_credential_id(&self) -> Vec<u8> {
        assert_eq!(self.credentials.len(), 1);
        self.credentials[0].id.clone()
    }
}

// === The service under test. ===

struct Service {
    /// `http://localhost:PORT`: the origin the authenticator reports.
    base: String,
    address: SocketAddr,
    alice: String,
    _store: Store,
    _state: TokenServiceState,
    _dir: tempfile::TempDir,
}

struct Options {
    /// The Organization's `authentication`.
    authentication: serde_json::Value,
    postgres: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { authentication: serde_json::json!({}), postgres: false }
    }
}

async fn start(options: Options) -> Service {
    let store = if options.postgres {
        let url =
            tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
        Store::connect(&url).await.expect("connect to the test PostgreSQL")
    } else {
        Store::connect("sqlite::memory:").await.expect("open an in-memory store")
    };
    let spec = serde_json::json!({ "displayName": "Acme", "authentication": options.authentication });
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org", ORG, ORG, 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: spec.to_string(),
        })
        .await
        .unwrap();
    let client = serde_json::json!({
        "type": "Public", "grantTypes": ["authorization_code"], "redirectUris": [REDIRECT_URI],
    });
    store
        .apply(&OAuthClientRecord {
            meta: ObjectMeta::new("uid-spa", ORG, CLIENT, 1),
            client_type: "public".into(),
            redirect_uris: vec![REDIRECT_URI.into()],
            spec_json: client.to_string(),
            secret_hash: None,
        })
        .await
        .unwrap();
    let hash = PasswordHasher::new(1).hash(PASSWORD).await.unwrap();
    let alice = NewUser {
        emails: vec![Email::primary("alice@acme.test")],
        password_hash: Some(SecretString::new(hash)),
        ..NewUser::new(ORG, "alice", UserSource::Local)
    };
    let alice = store.create_user(&alice).await.unwrap().id;

    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let generated = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).unwrap();
    let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
    let key = SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).unwrap();
    write_key_dir(dir.path(), ORG, &[&key]).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let base = format!("http://localhost:{}", address.port());
    let state = TokenServiceState::new(TokenServiceConfig {
        store: store.clone(),
        public_base_url: base.clone(),
        keys: KeyDirectory::new(dir.path()).into(),
        login: LoginState::new(LoginConfig::default()),
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Service { base, address, alice, _store: store, _state: state, _dir: dir }
}

impl Service {
    fn browser(&self) -> reqwest::Client {
        browser_form::browser_builder().resolve("localhost", self.address).build().unwrap()
    }

    fn authorize_url(&self, extra: &[(&str, &str)]) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
        let challenge = b64(digest.as_ref());
        let mut params: BTreeMap<&str, &str> = BTreeMap::from([
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "st-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        params.extend(extra.iter().copied());
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{}/o/{ORG}/authorize?{query}", self.base)
    }

    fn account_url(&self) -> String {
        format!("{}/o/{ORG}/account", self.base)
    }
}

// === Reading pages like a browser would. ===

impl Page {
    /// The authorization code of a redirect back to the client.
    fn code(&self) -> String {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        let location = self.location.as_deref().unwrap();
        assert!(location.starts_with(&format!("{REDIRECT_URI}?")), "{location}");
        self.query().get("code").expect("a code").clone()
    }
}

/// Posts the form ending in `action_suffix` with its hidden fields (minus `drop`) and `fields`.
async fn submit(
    browser: &reqwest::Client,
    service: &Service,
    form: &Page,
    action_suffix: &str,
    fields: &[(&str, &str)],
    drop: &[&str],
) -> Page {
    browser_form::submit(browser, &service.base, form, action_suffix, fields, drop).await
}

/// The sign-in form, then the password: the page that follows.
async fn password(browser: &reqwest::Client, service: &Service) -> Page {
    let form = open(browser, &service.authorize_url(&[("prompt", "login")])).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    submit(browser, service, &form, "/login", &[("username", "alice"), ("password", PASSWORD)], &[]).await
}

/// The `amr` claim of the ID token the code redeems for.
async fn amr_of(service: &Service, code: &str) -> Vec<String> {
    let response = service
        .browser()
        .post(format!("{}/o/{ORG}/token", service.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: serde_json::Value = response.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    let payload: serde_json::Value =
        serde_json::from_slice(&unb64(id_token.split('.').nth(1).unwrap())).unwrap();
    serde_json::from_value(payload["amr"].clone()).unwrap()
}

/// A browser signed in with the password alone (no factor enrolled yet) and
/// at its account page.
async fn signed_in_at_account(service: &Service) -> (reqwest::Client, Page) {
    let browser = service.browser();
    password(&browser, service).await.code();
    let account = open(&browser, &service.account_url()).await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    (browser, account)
}

/// Enrols a credential of `authenticator` at the account page.
async fn enrol(
    service: &Service,
    browser: &reqwest::Client,
    authenticator: &mut SoftAuthenticator,
    kind: &str,
    name: &str,
) -> Page {
    let account = open(browser, &service.account_url()).await;
    let fields = [("name", name), ("kind", kind), ("password", PASSWORD)];
    let ceremony = submit(browser, service, &account, "/account/webauthn", &fields, &["kind"]).await;
    assert_eq!(ceremony.status, StatusCode::OK, "{}", ceremony.body);
    let credential = authenticator.create(&ceremony.ceremony_options(), &service.base).to_string();
    submit(browser, service, &ceremony, "/account/webauthn/finish", &[("credential", &credential)], &[]).await
}

// === The cases. ===

#[tokio::test]
async fn a_security_key_is_enrolled_and_then_asked_for_after_the_password() {
    security_key_flow(start(Options::default()).await).await;
}

#[tokio::test]
async fn a_security_key_is_enrolled_and_then_asked_for_after_the_password_on_postgresql() {
    security_key_flow(start(Options { postgres: true, ..Options::default() }).await).await;
}

async fn security_key_flow(service: Service) {
    // The account page needs a session.
    let stranger = open(&service.browser(), &service.account_url()).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);

    let (browser, account) = signed_in_at_account(&service).await;
    assert!(account.body.contains("No second factor is enrolled yet"), "{}", account.body);

    // Enrolment needs the CSRF token and the password again.
    let fields = [("name", "YubiKey"), ("kind", "security-key"), ("password", PASSWORD)];
    let no_csrf = submit(&browser, &service, &account, "/account/webauthn", &fields, &["csrf"]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.body);
    assert!(!no_csrf.body.contains("webauthn-options"), "no ceremony without CSRF");
    let wrong = [("name", "YubiKey"), ("kind", "security-key"), ("password", "not it")];
    let wrong = submit(&browser, &service, &account, "/account/webauthn", &wrong, &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(!wrong.body.contains("webauthn-options"), "no ceremony without the password");

    let mut key = SoftAuthenticator::default();
    let added = enrol(&service, &browser, &mut key, "security-key", "YubiKey <5>").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Security key: <strong>YubiKey &lt;5&gt;</strong>"), "{}", added.body);
    assert!(added.body.contains("never used"), "{}", added.body);

    // Now the password alone is not enough: the key is asked for.
    let alice = service.browser();
    let step = password(&alice, &service).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.body);
    assert!(step.location.is_none(), "no code before the second factor");
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let options = step.ceremony_options();
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1, "the user's one credential is offered: {options}");

    // Without the CSRF token: refused.
    let answer = key.clone().get(&options, &service.base, None).to_string();
    let no_csrf =
        submit(&alice, &service, &step, "/login/webauthn", &[("credential", &answer)], &["csrf"]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("expired or was not sent from this site"), "{}", no_csrf.body);
    assert!(no_csrf.location.is_none());

    // Another authenticator's credential (never enrolled): refused.
    // (made for this relying party, but enrolled nowhere)
    let mut other = SoftAuthenticator::default();
    let stranger_options = serde_json::json!({ "publicKey": {
        "rp": { "id": "localhost", "name": "x" }, "user": { "id": b64(b"someone") },
        "challenge": b64(b"c"), "pubKeyCredParams": [] } });
    other.create(&stranger_options, &service.base);
    let step = password(&alice, &service).await;
    let options = step.ceremony_options();
    let foreign_id = other.only_credential_id();
    let foreign = other.get(&options, &service.base, Some(&foreign_id)).to_string();
    let refused = submit(&alice, &service, &step, "/login/webauthn", &[("credential", &foreign)], &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.body.contains("is not one enrolled for your account"), "{}", refused.body);
    assert!(refused.location.is_none());

    // The enrolled key, on the page shown again: signed in, with the key in amr.
    let options = refused.ceremony_options();
    let answer = key.get(&options, &service.base, None).to_string();
    let accepted =
        submit(&alice, &service, &refused, "/login/webauthn", &[("credential", &answer)], &[]).await;
    let code = accepted.code();
    let amr = amr_of(&service, &code).await;
    assert_eq!(amr, ["pwd", "hwk", "mfa"]);

    // The same answer again (a replay) finds no ceremony.
    let replayed =
        submit(&alice, &service, &refused, "/login/webauthn", &[("credential", &answer)], &[]).await;
    assert_ne!(replayed.status, StatusCode::SEE_OTHER, "{}", replayed.body);

    // The account page shows the key as used.
    let account = open(&browser, &service.account_url()).await;
    assert!(account.body.contains("last used"), "{}", account.body);
}

#[tokio::test]
async fn a_cloned_authenticator_is_refused_by_its_signature_counter() {
    let service = start(Options::default()).await;
    let (browser, _) = signed_in_at_account(&service).await;
    let mut key = SoftAuthenticator::default();
    let added = enrol(&service, &browser, &mut key, "security-key", "YubiKey").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let mut clone = key.clone();

    let alice = service.browser();
    let step = password(&alice, &service).await;
    let answer = key.get(&step.ceremony_options(), &service.base, None).to_string();
    submit(&alice, &service, &step, "/login/webauthn", &[("credential", &answer)], &[]).await.code();

    // The copy signs with the counter value the original used already.
    let step = password(&alice, &service).await;
    let answer = clone.get(&step.ceremony_options(), &service.base, None).to_string();
    let refused = submit(&alice, &service, &step, "/login/webauthn", &[("credential", &answer)], &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.body.contains("may have been copied"), "{}", refused.body);
    assert!(refused.location.is_none());

    // The original, counting on, still works.
    let answer = key.get(&refused.ceremony_options(), &service.base, None).to_string();
    submit(&alice, &service, &refused, "/login/webauthn", &[("credential", &answer)], &[]).await.code();
}

/// Security review, finding 6: anyone could start a passkey sign-in, and
/// each start wrote a ceremony to the store (2,000 rows in half a second).
/// Now a browser holds one ceremony however often it starts, and one source
/// address gets a bounded number of starts before it must wait.
#[tokio::test]
async fn passkey_sign_in_starts_cannot_fill_the_store() {
    let service = start(Options::default()).await;
    let live = || async {
        service._store.live_ceremonies(ORG, jiff::Timestamp::now().as_millisecond()).await.unwrap()
    };
    let browser = service.browser();
    let form = open(&browser, &service.authorize_url(&[])).await;
    for _ in 0..20 {
        let started = submit(&browser, &service, &form, "/login/passkey/start", &[], &[]).await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    }
    assert_eq!(live().await, 1, "one browser, one ceremony");

    // New browsers, one address: the default allows 100 starts (these 20
    // included) and the one that begins the wait; then 429 with Retry-After.
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..100 {
        let stranger = service.browser();
        let form = open(&stranger, &service.authorize_url(&[])).await;
        let started = submit(&stranger, &service, &form, "/login/passkey/start", &[], &[]).await;
        statuses.push(started.status);
        if started.status == StatusCode::TOO_MANY_REQUESTS {
            refused.get_or_insert(started);
        }
    }
    let allowed = statuses.iter().take_while(|s| **s == StatusCode::OK).count();
    assert_eq!(allowed, 81, "{statuses:?}");
    assert!(statuses[allowed..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let refused = refused.expect("a refusal");
    assert!(refused.body.contains("Too many passkey sign-ins"), "{}", refused.body);
    assert!(refused.retry_after.is_some());
    assert_eq!(live().await, 82);
}

#[tokio::test]
async fn a_passkey_signs_in_without_a_password() {
    passkey_flow(start(Options::default()).await).await;
}

#[tokio::test]
async fn a_passkey_signs_in_without_a_password_on_postgresql() {
    passkey_flow(start(Options { postgres: true, ..Options::default() }).await).await;
}

async fn passkey_flow(service: Service) {
    let (browser, _) = signed_in_at_account(&service).await;
    let mut phone = SoftAuthenticator::default();
    let added = enrol(&service, &browser, &mut phone, "passkey", "Phone").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Passkey: <strong>Phone</strong>"), "{}", added.body);

    let alice = service.browser();
    let form = open(&alice, &service.authorize_url(&[])).await;
    assert!(form.body.contains("Sign in with a passkey"), "{}", form.body);
    let ceremony = submit(&alice, &service, &form, "/login/passkey/start", &[], &[]).await;
    assert_eq!(ceremony.status, StatusCode::OK, "{}", ceremony.body);
    let options = ceremony.ceremony_options();
    assert_eq!(options["publicKey"]["userVerification"], "required", "{options}");
    assert!(
        options["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty),
        "discoverable: no user is named before the passkey answers: {options}"
    );

    // An authenticator whose credential is enrolled nowhere: refused.
    let mut stranger = SoftAuthenticator::default();
    let creation = serde_json::json!({ "publicKey": {
        "rp": { "id": "localhost", "name": "x" }, "user": { "id": b64(uuid_bytes(&service.alice).as_slice()) },
        "challenge": b64(b"c"), "pubKeyCredParams": [] } });
    stranger.create(&creation, &service.base);
    let answer = stranger.get(&options, &service.base, None).to_string();
    let refused =
        submit(&alice, &service, &ceremony, "/login/passkey", &[("credential", &answer)], &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.location.is_none());

    let answer = phone.get(&refused.ceremony_options(), &service.base, None).to_string();
    let accepted =
        submit(&alice, &service, &refused, "/login/passkey", &[("credential", &answer)], &[]).await;
    let code = accepted.code();
    assert_eq!(amr_of(&service, &code).await, ["hwk", "mfa"], "a passkey is both factors, no password");

    // A passkey also serves as the second factor after a password.
    let step = password(&alice, &service).await;
    let answer = phone.get(&step.ceremony_options(), &service.base, None).to_string();
    submit(&alice, &service, &step, "/login/webauthn", &[("credential", &answer)], &[]).await.code();
}

fn uuid_bytes(id: &str) -> Vec<u8> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn with_passkeys_off_the_sign_in_form_offers_none_and_refuses_a_passkey_post() {
    let authentication = serde_json::json!({ "passkeys": { "enabled": false } });
    let service = start(Options { authentication, ..Options::default() }).await;
    let browser = service.browser();
    let form = open(&browser, &service.authorize_url(&[])).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(!form.body.contains("Sign in with a passkey"), "{}", form.body);
    // Posting the passkey start anyway (with this browser's CSRF token) is refused.
    let (_, hidden) = form.form("/login");
    let refused = Page::read(
        browser
            .post(format!("{}/o/{ORG}/login/passkey/start", service.base))
            .form(&hidden)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("Passkey sign-in is turned off"), "{}", refused.body);
}

#[tokio::test]
async fn a_policy_without_webauthn_asks_for_totp_enrolled_at_the_page_and_refuses_a_security_key() {
    let authentication = serde_json::json!({ "mfa": { "required": "PrivilegedRoles", "methods": ["TOTP"] } });
    let service = start(Options { authentication, ..Options::default() }).await;
    let (browser, account) = signed_in_at_account(&service).await;
    assert!(account.has_form("/account/totp"), "{}", account.body);

    // TOTP enrolment through the page: password again, then the first code.
    let fields = [("name", "Phone app"), ("password", PASSWORD)];
    let no_csrf = submit(&browser, &service, &account, "/account/totp", &fields, &["csrf"]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let started = submit(&browser, &service, &account, "/account/totp", &fields, &[]).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let uri = regex::Regex::new(r#"id="totp-uri" href="([^"]*)""#).unwrap();
    let uri = unescape(&uri.captures(&started.body).expect("an otpauth URI")[1]);
    assert!(uri.starts_with("otpauth://totp/Acme:alice?"), "{uri}");
    let secret_text =
        regex::Regex::new(r#"secret=([A-Z2-7]+)"#).unwrap().captures(&uri).unwrap()[1].to_owned();
    let secret = base32_decode(&secret_text);
    let now = jiff::Timestamp::now();
    let wrong = format!("{:06}", totp::code_at_step(&secret, totp::step_at(now) + 5));
    let refused =
        submit(&browser, &service, &started, "/account/totp/finish", &[("code", &wrong)], &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let code = totp::code_at(&secret, now);
    let added = submit(&browser, &service, &refused, "/account/totp/finish", &[("code", &code)], &[]).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Authenticator app: <strong>Phone app</strong>"), "{}", added.body);

    // A passkey is enrolled too (passkeys are on), but the MFA policy does not list WebAuthn.
    let mut key = SoftAuthenticator::default();
    let enrolled = enrol(&service, &browser, &mut key, "passkey", "Key").await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.body);

    let alice = service.browser();
    let step = password(&alice, &service).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.body);
    assert!(step.body.contains("6-digit code"), "{}", step.body);
    assert!(!step.body.contains("webauthn-options"), "no WebAuthn step offered: {}", step.body);

    // An assertion posted to the WebAuthn step anyway, with this sign-in's ticket, is refused.
    let (_, hidden) = step.form("/login/totp");
    let mut body = hidden.clone();
    let fake = serde_json::json!({ "publicKey": { "rpId": "localhost", "challenge": b64(b"c") } });
    body.push(("credential".into(), key.get(&fake, &service.base, None).to_string()));
    let refused = Page::read(
        alice.post(format!("{}/o/{ORG}/login/webauthn", service.base)).form(&body).send().await.unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.location.is_none());

    // The TOTP code of the next step (the enrolment spent this one) signs in.
    let next = format!("{:06}", totp::code_at_step(&secret, totp::step_at(jiff::Timestamp::now()) + 1));
    let step = password(&alice, &service).await;
    let signed_in = submit(&alice, &service, &step, "/login/totp", &[("code", &next)], &[]).await;
    assert_eq!(amr_of(&service, &signed_in.code()).await, ["pwd", "otp", "mfa"]);
}

/// RFC 4648 §6 base32, no padding: the key as an authenticator app reads it.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base32") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}
