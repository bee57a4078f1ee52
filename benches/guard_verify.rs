//! `portcullis-guard`'s per-request verification with a warm JWKS cache: the
//! token service's router on 127.0.0.1:0 serves discovery and the JWKS, an
//! access token is signed with the organization's key as the service signs
//! them, and each `Guard::authorize` (header, key lookup, signature, claims,
//! permission) is timed on its own: at first sight (every call checks the
//! signature) and on repeat (the guard remembers tokens that verified, the
//! default). Once per signing algorithm an organization can choose
//! (`spec.tokens.signingAlgorithm`): ES256 (the default) and RS256, whose
//! verification is several times cheaper than its signing and than ES256's.
//!
//! ```text
//!  cargo bench -p portcullis-benches --bench guard_verify   20,000 verifications: p50, p90, p99, p99.9, max
//!  cargo test -p portcullis-benches                         (no --bench) 200: it still works
//! ```
//!
//! Target (BENCHMARKS.md): p99 ≤ 50 µs per request.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use portcullis::store::{DesiredStateStore as _, ObjectMeta, OrganizationRecord, Store};
use portcullis::token::claims::{AccessTokenClaims, AccessTokenGrant};
use portcullis::token::jwt::{self, TokenType};
use portcullis::token::keys::{Algorithm, KeyMeta, KeySet, SigningKey};
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::{LoginConfig, LoginState};
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};
use portcullis_guard::{Guard, GuardConfig};

const ORG: &str = "acme";
const AUDIENCE: &str = "https://api.acme.test/journeys";
const PERMISSION: &str = "journeys.publish";

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let verifications = if full { 20_000 } else { 200 };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        for algorithm in [Algorithm::ES256, Algorithm::RS256] {
            measure(algorithm, verifications, full).await;
        }
    });
}

async fn measure(algorithm: Algorithm, verifications: usize, full: bool) {
    let (issuer, token, _dir) = start(algorithm).await;
    // First sight: every call checks the signature (the memory of
    // verified tokens off). Repeat: a client's next requests with the
    // token it already presented (the default).
    let default = GuardConfig::new(&issuer, AUDIENCE).verified_tokens;
    for (name, remembered) in [("first sight", 0), ("repeat", default)] {
        let mut config = GuardConfig::new(&issuer, AUDIENCE);
        config.verified_tokens = remembered;
        let guard = Guard::new(config).expect("a guard");
        guard.authorize(&token, PERMISSION, Some("emea")).await.expect("the token verifies");
        let mut nanos = Vec::with_capacity(verifications);
        for _ in 0..verifications {
            let token = black_box(token.as_str());
            let started = Instant::now();
            let claims = guard.authorize(token, PERMISSION, Some("emea")).await;
            let elapsed = started.elapsed();
            assert!(black_box(claims).is_ok());
            nanos.push(elapsed.as_nanos() as u64);
        }
        assert_eq!(guard.jwks_fetches(), 1, "a warm cache fetches nothing more");
        nanos.sort_unstable();
        let at = |q: f64| nanos[((nanos.len() as f64 * q) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
        if !full {
            println!("smoke run: these figures say nothing; use `cargo bench`");
        }
        println!(
            "guard verification ({}, warm JWKS, {name}), {verifications} calls: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            algorithm.as_str(),
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            at(1.0)
        );
    }
}

/// Serves an organization's discovery and JWKS, and signs an access token
/// with its key as the token service does.
async fn start(algorithm: Algorithm) -> (String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::connect("sqlite::memory:").await.expect("a SQLite store");
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org", ORG, ORG, 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: serde_json::json!({ "displayName": "Acme" }).to_string(),
        })
        .await
        .expect("seed the organization");
    let now = Timestamp::now();
    let generated = SigningKey::generate(algorithm, now, &mut rand::rng()).expect("a key");
    let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
    let key = SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).expect("the key");
    write_key_dir(&dir.path().join("keys"), ORG, &[&key]).expect("the keys directory");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("the bound address"));
    let issuer = format!("{base}/o/{ORG}");
    let state = TokenServiceState::new(TokenServiceConfig {
        store,
        public_base_url: base,
        keys: KeyDirectory::new(dir.path().join("keys")).into(),
        login: LoginState::new(LoginConfig::default()),
        clock: Arc::new(SystemClock),
    })
    .await
    .expect("the token service state");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let grant = AccessTokenGrant {
        issuer: issuer.clone(),
        subject: "user-1".into(),
        audiences: vec![AUDIENCE.into()],
        client_id: "journey-studio-web".into(),
        organization: ORG.into(),
        permissions: Some(vec!["journeys.view".into()]),
        workspace_permissions: Some([("emea".to_owned(), vec![PERMISSION.to_owned()])].into()),
        ..AccessTokenGrant::default()
    };
    let claims = AccessTokenClaims::issue(grant, now, SignedDuration::from_hours(1), &mut rand::rng())
        .expect("claims");
    let keys = KeySet::new(vec![key]).expect("a key set");
    let token = jwt::sign_with_active(&keys, TokenType::Access, &claims).expect("a signed token");
    (issuer, token, dir)
}
