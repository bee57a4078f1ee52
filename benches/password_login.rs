//! Password sign-in throughput with the OWASP argon2id parameters (m = 19 MiB,
//! t = 2, p = 1): the token service's router on 127.0.0.1:0, and in the same
//! process `CONCURRENCY` simulated browsers that each load the sign-in form
//! (GET authorize: pre-login cookie and CSRF token) and post the password,
//! until `LOGINS` sign-ins have ended in a redirect with a code.
//!
//! ```text
//!  cargo bench -p portcullis-benches --bench password_login   full run: 400 sign-ins, 8 browsers, prints logins/s, p50, p99
//!  cargo test -p portcullis-benches                           (no --bench) 4 sign-ins, 2 browsers: it still works
//! ```
//!
//! Each sign-in costs one argon2id hash, a session row and an authorization
//! code; hashes run at most one per core (`LoginConfig::max_concurrent_hashes`).
//! Before the sign-ins, the same number of bare argon2id verifications through
//! the same bounded hasher give the floor the sign-in path is compared with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis::secret::SecretString;
use portcullis::store::{
    DesiredStateStore as _, NewUser, OAuthClientRecord, ObjectMeta, OrganizationRecord, Store, UserSource,
    UserStore as _,
};
use portcullis::token::keys::{Algorithm, KeyMeta, SigningKey};
use portcullis::token::password::PasswordHasher;
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::{LoginConfig, LoginState};
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

const ORG: &str = "acme";
const CLIENT: &str = "spa";
const REDIRECT_URI: &str = "https://app.acme.test/callback";
const PASSWORD: &str = "correct horse battery staple";

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (logins, concurrency) = if full { (400, 8) } else { (4, 2) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let (base, _dir) = start().await;
        // The floor under a sign-in: argon2id alone, through the same bounded hasher.
        let hasher = PasswordHasher::new(LoginConfig::default().max_concurrent_hashes);
        let hash = hasher.hash(PASSWORD).await.expect("hash");
        let started = Instant::now();
        // As many callers as browsers, so the hasher's queue bound is not what is measured.
        let hashes: Vec<_> = (0..concurrency)
            .map(|_| {
                let (hasher, hash) = (hasher.clone(), hash.clone());
                tokio::spawn(async move {
                    for _ in 0..logins / concurrency {
                        assert!(hasher.verify(PASSWORD, &hash).await.expect("verify"));
                    }
                })
            })
            .collect();
        for hash in hashes {
            hash.await.expect("a hash task");
        }
        let hashes_per_second = logins as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let remaining = Arc::new(AtomicUsize::new(logins));
        let workers: Vec<_> =
            (0..concurrency).map(|_| tokio::spawn(browser(base.clone(), remaining.clone()))).collect();
        let mut latencies = Vec::with_capacity(logins);
        for worker in workers {
            latencies.extend(worker.await.expect("a browser task"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let percentile =
            |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
        println!(
            "password_login: {} sign-ins, {concurrency} browsers, {:.1} logins/s, p50 {:.1} ms, p99 {:.1} ms \
             (argon2id alone: {hashes_per_second:.1} hashes/s)",
            latencies.len(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(0.50).as_secs_f64() * 1000.0,
            percentile(0.99).as_secs_f64() * 1000.0,
        );
        assert_eq!(latencies.len(), logins, "every sign-in ended in a redirect with a code");
    });
}

/// One browser: form, then password, until the shared count runs out.
/// Returns the latency of each complete sign-in (form + post).
async fn browser(base: String, remaining: Arc<AtomicUsize>) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let challenge = {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, b"bench-verifier-0123456789-0123456789-abcdef");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    };
    let authorize = format!(
        "{base}/o/{ORG}/authorize?client_id={CLIENT}&redirect_uri={}&response_type=code&scope=openid\
         &state=s&code_challenge={challenge}&code_challenge_method=S256&prompt=login",
        form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>()
    );
    let hidden =
        regex::Regex::new(r#"<input type="hidden" name="([^"]*)" value="([^"]*)">"#).expect("a regex");
    let mut latencies = Vec::new();
    while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
        let started = Instant::now();
        let form =
            client.get(&authorize).send().await.expect("GET authorize").text().await.expect("the form");
        let mut fields: Vec<(String, String)> = hidden
            .captures_iter(&form)
            .map(|c| (c[1].to_owned(), c[2].replace("&amp;", "&").replace("&quot;", "\"")))
            .collect();
        fields.push(("username".into(), "alice".into()));
        fields.push(("password".into(), PASSWORD.into()));
        let response =
            client.post(format!("{base}/o/{ORG}/login")).form(&fields).send().await.expect("POST login");
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(
            response.status() == 303 && location.contains("code="),
            "sign-in failed: {} {location}",
            response.status()
        );
        latencies.push(started.elapsed());
    }
    latencies
}

/// A store with one organization, one public client and one user; the router
/// served on loopback. Returns the base URL and the directory holding the keys.
async fn start() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.expect("a SQLite store");
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org", ORG, ORG, 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: serde_json::json!({ "displayName": "Acme", "authentication": { "mfa": { "required": "Never" } } })
                .to_string(),
        })
        .await
        .expect("seed the organization");
    let client = serde_json::json!({
        "type": "Public",
        "grantTypes": ["authorization_code"],
        "redirectUris": [REDIRECT_URI],
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
        .expect("seed the client");
    let hash = PasswordHasher::new(1).hash(PASSWORD).await.expect("hash the password");
    let user = NewUser {
        password_hash: Some(SecretString::new(hash)),
        ..NewUser::new(ORG, "alice", UserSource::Local)
    };
    store.create_user(&user).await.expect("create the user");

    let now = jiff::Timestamp::now();
    let generated = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).expect("a key");
    let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
    let key = SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).expect("the key");
    write_key_dir(&dir.path().join("keys"), ORG, &[&key]).expect("the keys directory");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("the bound address"));
    let state = TokenServiceState::new(TokenServiceConfig {
        store,
        public_base_url: base.clone(),
        keys: KeyDirectory::new(dir.path().join("keys")).into(),
        login: LoginState::new(LoginConfig::default()),
        clock: Arc::new(SystemClock),
    })
    .await
    .expect("the token service state");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, dir)
}
