//! Two replicas of the token service on one PostgreSQL: two `portcullis
//! token-service` processes (the real binary, as a Deployment runs it) on one
//! database of the real server from `support/postgres.rs`, with no proxy in
//! front. Both have the same public base URL, key-encryption key and login
//! secret, as the operator's Deployment gives every pod; the test talks to
//! each one directly, as a load balancer would send requests to either.
//!
//! ```text
//!  test (browser, client) ──► replica A  127.0.0.1:a ──┐
//!                        └──► replica B  127.0.0.1:b ──┴──► PostgreSQL (one database)
//!  seed + key rotation (as the operator does) ─────────────────┘
//! ```
//!
//! What one replica learns the other must know: a refresh token's reuse, a
//! browser session, the sign-in throttle's counts, a signing-key rotation.
//! `PORTCULLIS_BIN` runs the same cases against another build of the binary
//! (to show a case failing on an older one).

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use browser_form::{Page, open, submit};
use jiff::{SignedDuration, Timestamp};
use portcullis::resources::signing_keys;
use portcullis::sealing::{KeyEncryptionKey, KeyRing};
use portcullis::store::Store;
use portcullis::token::keys::{Algorithm, RotationPolicy};
use portcullis::token::password::PasswordHasher;
use reqwest::StatusCode;
use token_support::{
    ALICE, ALICE_PASSWORD, BACKEND_SECRET, ORG, SPA_REDIRECT, eventually, http_client, seed,
};

/// How long anything awaited may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
const SPA: &str = "spa";
const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789abcdef";
/// The login secret every replica is given (CSRF and ticket keys).
const LOGIN_SECRET: &str = "replicas-share-this-login-secret-0123456789abcdef";

// === Two replicas. ===

/// One `portcullis token-service` process, killed when dropped.
struct Replica {
    base: String,
    _child: tokio::process::Child,
}

struct Replicas {
    a: Replica,
    b: Replica,
    store: Store,
    kek: KeyRing,
    /// The issuer both replicas serve: `{public base URL}/o/acme`.
    issuer: String,
    rotation: RotationPolicy,
}

/// A free port on loopback (the replica binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// A replica listening on `port`, or `None` when it stopped before binding
/// it (another process took the port after it was chosen).
async fn spawn_replica(database_url: &str, port: u16, public_base_url: &str, kek: &str) -> Option<Replica> {
    let binary =
        std::env::var("PORTCULLIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_portcullis").to_owned());
    let mut child = tokio::process::Command::new(binary)
        .arg("token-service")
        .args(["--database-url", database_url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-base-url", public_base_url])
        .env("PORTCULLIS_KEY_ENCRYPTION_KEY", kek)
        .env("PORTCULLIS_LOGIN_SECRET", LOGIN_SECRET)
        // webauthn-rs refuses an IP address as relying party (WebAuthn is then off): not news here.
        // The "listening" line says the port is ours.
        .env("RUST_LOG", "warn,webauthn_rs=off,portcullis::cli::token_service=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start portcullis token-service");
    let (listening, bound) = tokio::sync::oneshot::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut listening = Some(listening);
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[replica :{port}] {line}");
            if line.contains("token service listening") {
                listening.take().map(|sender| sender.send(()));
            }
        }
    });
    match tokio::time::timeout(DEADLINE, bound).await {
        Ok(Ok(())) => Some(Replica { base: format!("http://127.0.0.1:{port}"), _child: child }),
        Ok(Err(_)) => None,
        Err(_) => panic!("the replica on port {port} is not listening after {DEADLINE:?}"),
    }
}

/// Two replicas on `database_url` behind one public URL (as behind one
/// Service or Ingress), starting together as two pods do (both migrate an
/// empty database at once); on other ports if one was taken meanwhile.
async fn spawn_pair(database_url: &str, kek: &str) -> (Replica, Replica, String) {
    for _ in 0..5 {
        let (port_a, port_b) = (free_port(), free_port());
        let public_base_url = format!("http://127.0.0.1:{port_a}");
        let (a, b) = tokio::join!(
            spawn_replica(database_url, port_a, &public_base_url, kek),
            spawn_replica(database_url, port_b, &public_base_url, kek),
        );
        if let (Some(a), Some(b)) = (a, b) {
            return (a, b, public_base_url);
        }
    }
    panic!("no two free ports in five tries");
}

async fn await_ready(replica: &Replica) {
    let client = http_client();
    let url = format!("{}/readyz", replica.base);
    eventually(&format!("{url} answers 200"), DEADLINE, || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// Two replicas on a fresh database, then the store seeded as the operator
/// would: the organizations, alice, and the organization's first signing key.
async fn start() -> Replicas {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    let kek_text = KeyEncryptionKey::generate_text().expect("a key-encryption key");
    let kek = KeyRing::new(KeyEncryptionKey::from_text(&kek_text).unwrap(), Vec::new());
    let (a, b, public_base_url) = spawn_pair(&url, &kek_text).await;
    await_ready(&a).await;
    await_ready(&b).await;

    let store = Store::connect(&url).await.expect("connect to the test PostgreSQL");
    let password_hash = PasswordHasher::new(1).hash(ALICE_PASSWORD).await.expect("hash a password");
    seed(&store, &public_base_url, password_hash).await;
    let rotation =
        RotationPolicy::new(Algorithm::ES256, SignedDuration::from_hours(2), SignedDuration::from_hours(1))
            .unwrap();
    // The first key, active since three hours ago (so that the next passes rotate).
    let first = Timestamp::now() - SignedDuration::from_hours(3);
    signing_keys::rotate(&store, &kek, ORG, &Default::default(), &rotation, first)
        .await
        .expect("the organization's first signing key");
    let issuer = format!("{public_base_url}/o/{ORG}");
    Replicas { a, b, store, kek, issuer, rotation }
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}/o/{ORG}{path}", self.base)
    }

    fn authorize_url(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(digest.as_ref());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", SPA)
            .append_pair("redirect_uri", SPA_REDIRECT)
            .append_pair("scope", "openid offline_access")
            .append_pair("state", "s-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        self.url(&format!("/authorize?{query}"))
    }

    /// The sign-in form of an authorization request at this replica.
    async fn sign_in_form(&self, browser: &reqwest::Client) -> Page {
        let form = open(browser, &self.authorize_url()).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(form.body.contains("Sign in"), "{}", form.body);
        form
    }

    /// Posts `form` (from either replica) here with alice's name and `password`.
    async fn sign_in(&self, browser: &reqwest::Client, form: &Page, password: &str) -> Page {
        submit(browser, &self.base, form, "", &[("username", ALICE), ("password", password)], &[]).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        let response = http_client().post(self.url("/token")).form(form).send().await.expect("POST /token");
        (response.status(), response.json().await.expect("a JSON answer"))
    }

    async fn redeem(&self, code: &str) -> serde_json::Value {
        let (status, tokens) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", SPA_REDIRECT),
                ("client_id", SPA),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, serde_json::Value) {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", SPA)])
            .await
    }

    /// An access token for the `backend` client (client_credentials).
    async fn client_token(&self) -> String {
        let response = http_client()
            .post(self.url("/token"))
            .basic_auth("backend", Some(BACKEND_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("POST /token");
        assert_eq!(response.status(), StatusCode::OK);
        let tokens: serde_json::Value = response.json().await.unwrap();
        tokens["access_token"].as_str().expect("an access token").to_owned()
    }

    async fn jwks(&self) -> serde_json::Value {
        let response = http_client().get(self.url("/jwks")).send().await.expect("GET jwks");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

/// The code of a redirect back to the client.
fn code_of(page: &Page) -> String {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location.as_deref().expect("a redirect");
    assert!(location.starts_with(SPA_REDIRECT), "{location}");
    page.query().get("code").expect("a code").clone()
}

/// The JWS header of a compact JWT.
fn header(jwt: &str) -> serde_json::Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// Whether `jwt` (ES256) verifies against a key of `jwks` with its `kid`.
fn verifies_against(jwt: &str, jwks: &serde_json::Value) -> bool {
    let kid = header(jwt)["kid"].as_str().expect("a kid").to_owned();
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) else {
        return false;
    };
    assert_eq!(jwk["kty"], "EC", "{jwk}");
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let mut point = vec![0x04];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &signature)
        .is_ok()
}

// === The cases. ===

/// A refresh token rotated at A and the old one replayed at B: B sees the
/// rotation, calls it reuse and ends the family, which neither replica then
/// refreshes (RFC 9700 §4.14.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_replayed_at_the_other_replica_ends_the_family_at_both() {
    let replicas = start().await;
    let (a, b) = (&replicas.a, &replicas.b);
    let browser = browser_form::browser();
    let form = a.sign_in_form(&browser).await;
    let tokens = a.redeem(&code_of(&a.sign_in(&browser, &form, ALICE_PASSWORD).await)).await;
    let first = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();

    let (status, rotated) = a.refresh(&first).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["refresh_token"].as_str().expect("the successor").to_owned();

    let (status, replay) = b.refresh(&first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{replay}");
    assert_eq!(replay["error"], "invalid_grant", "{replay}");
    for (name, replica) in [("A", a), ("B", b)] {
        let (status, answer) = replica.refresh(&second).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "the successor at {name}: {answer}");
        assert_eq!(answer["error"], "invalid_grant", "{answer}");
    }
}

/// Signed in at A, the browser's session cookie is honoured at B: B's
/// `/authorize` redirects with a code, no form, and the code redeems at B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_replica_skips_the_form_at_the_other() {
    let replicas = start().await;
    let (a, b) = (&replicas.a, &replicas.b);
    let browser = browser_form::browser();
    let form = a.sign_in_form(&browser).await;
    let signed_in = a.sign_in(&browser, &form, ALICE_PASSWORD).await;
    code_of(&signed_in);
    assert!(
        signed_in.set_cookies.iter().any(|c| c.starts_with("portcullis_session=")),
        "{:?}",
        signed_in.set_cookies
    );

    let at_b = open(&browser, &b.authorize_url()).await;
    let code = code_of(&at_b);
    let tokens = b.redeem(&code).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
    // A browser without the cookie gets the form at B.
    b.sign_in_form(&browser_form::browser()).await;
}

/// Wrong passwords for one account, alternated between A and B: throttled
/// after the same number as at one replica (5 free failures and the one that
/// starts the lockout), then even the right password is refused at either.
/// With a throttle per process each replica allowed its own six.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_alternated_between_replicas_are_throttled_as_at_one() {
    let replicas = start().await;
    let (a, b) = (&replicas.a, &replicas.b);
    let attacker = browser_form::browser();
    let form = a.sign_in_form(&attacker).await;
    let mut statuses = Vec::new();
    for n in 0..12 {
        let replica = if n % 2 == 0 { a } else { b };
        let guess = format!("guess {n}");
        statuses.push(replica.sign_in(&attacker, &form, &guess).await.status);
    }
    let mut expected = vec![StatusCode::UNAUTHORIZED; 6];
    expected.extend([StatusCode::TOO_MANY_REQUESTS; 6]);
    assert_eq!(statuses, expected, "one count for the account across both replicas");
    for replica in [a, b] {
        let owner = browser_form::browser();
        let form = replica.sign_in_form(&owner).await;
        let result = replica.sign_in(&owner, &form, ALICE_PASSWORD).await;
        assert_eq!(result.status, StatusCode::TOO_MANY_REQUESTS, "{}", result.body);
        assert!(result.retry_after.is_some());
    }
}

/// The operator rotates the signing key in the store (next key published,
/// then promoted); A signs with the new key, and the token verifies against
/// B's JWKS; B signs with it too. Nothing is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_seen_by_both_replicas() {
    let replicas = start().await;
    let (a, b) = (&replicas.a, &replicas.b);
    let before = a.client_token().await;
    let old_kid = header(&before)["kid"].as_str().unwrap().to_owned();
    assert!(verifies_against(&before, &b.jwks().await), "a token of A verifies at B before the rotation");
    assert_eq!(header(&b.client_token().await)["kid"], old_kid.as_str());

    // As the operator's passes do: the next key is published an overlap
    // before it signs, then promoted and the old one retired.
    let now = Timestamp::now();
    let (store, kek, policy) = (&replicas.store, &replicas.kek, &replicas.rotation);
    let published = signing_keys::rotate(
        store,
        kek,
        ORG,
        &Default::default(),
        policy,
        now - SignedDuration::from_mins(90),
    )
    .await
    .unwrap();
    let new_kid = published.created.expect("the next key");
    let promoted = signing_keys::rotate(store, kek, ORG, &Default::default(), policy, now).await.unwrap();
    assert_eq!(promoted.keys.signing_key().map(|k| k.kid().to_owned()), Some(new_kid.clone()));

    let after = eventually("A signs with the new key", DEADLINE, || async {
        let token = a.client_token().await;
        (header(&token)["kid"] == new_kid.as_str()).then_some(token)
    })
    .await;
    let jwks = b.jwks().await;
    assert!(
        verifies_against(&after, &jwks),
        "A's token after the rotation verifies against B's JWKS: {jwks}"
    );
    assert!(verifies_against(&before, &jwks), "and the one from before still does (the old key is retiring)");
    eventually("B signs with the new key", DEADLINE, || async {
        (header(&b.client_token().await)["kid"] == new_kid.as_str()).then_some(())
    })
    .await;
    assert_eq!(header(&after)["alg"], "ES256");
    let claims: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(after.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["iss"], replicas.issuer.as_str());
}
