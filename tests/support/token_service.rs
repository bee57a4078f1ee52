//! A running token service for tests over real HTTP: a store (SQLite in
//! memory or a database of the real PostgreSQL from `postgres.rs`) seeded
//! with two organizations, their roles, assignments, OAuth clients and a
//! user, a keys directory in a tempdir, and the router served on
//! 127.0.0.1:0. Stopped (gracefully) when dropped.
//!
//! Include it with `#[path = "support/token_service.rs"] mod token_support;`
//! (and `support/postgres.rs` for PostgreSQL).
//!
//! Seed (organization `acme`, namespace `acme`; `globex` is a second tenant
//! with a client of the same name and another secret):
//!
//! ```text
//!  catalog  iam.view, journeys.view, journeys.edit, journeys.publish   workspaces: eu, us
//!  roles    viewer (journeys.view), publisher (journeys.*), iam-viewer (iam.view)
//!  Client backend  ── publisher (organization), iam-viewer (organization)
//!  User   alice    ── viewer (organization), publisher (workspace eu)
//!  clients backend  Confidential, client_credentials,   audiences [https://api.acme.test, issuer]
//!          webapp   Confidential, authorization_code + refresh_token, requirePkce, https://app.acme.test/callback
//!          legacy   Confidential, authorization_code, requirePkce false, https://legacy.acme.test/cb
//!          spa      Public, authorization_code + refresh_token, http://127.0.0.1:8400/cb
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use portcullis::secret::SecretString;
use portcullis::store::*;
use portcullis::token::keys::{Algorithm, KeyMeta, SigningKey};
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::{LoginConfig, LoginState};
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

pub const ORG: &str = "acme";
pub const OTHER_ORG: &str = "globex";
pub const BACKEND_SECRET: &str = "backend-secret-0123456789abcdefghijklmnopqrstuv";
pub const OTHER_BACKEND_SECRET: &str = "globex-backend-secret-0123456789abcdefghijklmn";
pub const WEBAPP_SECRET: &str = "webapp-secret-0123456789abcdefghijklmnopqrstuvw";
pub const LEGACY_SECRET: &str = "legacy-secret-0123456789abcdefghijklmnopqrstuvw";
pub const WEBAPP_REDIRECT: &str = "https://app.acme.test/callback";
pub const LEGACY_REDIRECT: &str = "https://legacy.acme.test/cb";
pub const SPA_REDIRECT: &str = "http://127.0.0.1:8400/cb";
pub const API_AUDIENCE: &str = "https://api.acme.test";
/// The PKCE verifier of the webapp's sign-ins in the single sign-on tests.
pub const VERIFIER: &str = "a-pkce-verifier-of-the-application-0123456789abcdef";
pub const ALICE: &str = "alice";
pub const ALICE_EMAIL: &str = "alice@acme.test";
pub const ALICE_PASSWORD: &str = "correct horse battery staple";

/// A token service on loopback and what it was seeded with.
pub struct TokenService {
    pub base_url: String,
    pub store: Store,
    pub state: TokenServiceState,
    pub keys_dir: tempfile::TempDir,
    /// The active key of each organization at start.
    pub acme_key: SigningKey,
    pub globex_key: SigningKey,
    pub alice_id: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TokenService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TokenService {
    pub fn issuer(&self, organization: &str) -> String {
        format!("{}/o/{organization}", self.base_url)
    }

    pub fn url(&self, organization: &str, path: &str) -> String {
        format!("{}/o/{organization}{path}", self.base_url)
    }

    pub fn keys_path(&self) -> &Path {
        self.keys_dir.path()
    }

    /// Stops accepting connections and waits for requests in flight.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// An in-memory SQLite store.
pub async fn sqlite_store() -> Store {
    Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store")
}

/// A key of `algorithm` in state active (activated at `at`).
pub fn active_key(algorithm: Algorithm, at: Timestamp) -> SigningKey {
    let key = SigningKey::generate(algorithm, at, &mut rand::rng()).expect("generate a key");
    with_meta(&key, KeyMeta { activated_at: Some(at), ..key.meta().clone() })
}

/// The same key with other metadata (to move it through its states).
pub fn with_meta(key: &SigningKey, meta: KeyMeta) -> SigningKey {
    SigningKey::from_pkcs8_pem(meta, &key.to_pkcs8_pem()).expect("reload a key")
}

/// The key, retired at `at`.
pub fn retired(key: &SigningKey, at: Timestamp) -> SigningKey {
    with_meta(key, KeyMeta { retired_at: Some(at), ..key.meta().clone() })
}

/// Seeds `store` and serves the token service on 127.0.0.1:0.
pub async fn start(store: Store) -> TokenService {
    start_with_clock(store, Arc::new(SystemClock)).await
}

/// `start`, with the service reading the time from `clock`.
pub async fn start_with_clock(
    store: Store,
    clock: Arc<dyn portcullis::token::service::Clock>,
) -> TokenService {
    let now = Timestamp::now();
    let keys_dir = tempfile::tempdir().expect("keys dir");
    let acme_key = active_key(Algorithm::ES256, now - SignedDuration::from_hours(1));
    let globex_key = active_key(Algorithm::ES256, now - SignedDuration::from_hours(1));
    write_key_dir(keys_dir.path(), ORG, &[&acme_key]).expect("write acme keys");
    write_key_dir(keys_dir.path(), OTHER_ORG, &[&globex_key]).expect("write globex keys");

    let login = LoginState::new(LoginConfig::default());
    let password_hash = login.hasher().hash(ALICE_PASSWORD).await.expect("hash a password");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let base_url = format!("http://{}", listener.local_addr().expect("local address"));
    let alice_id = seed(&store, &base_url, password_hash).await;

    let state = TokenServiceState::new(TokenServiceConfig {
        store: store.clone(),
        public_base_url: base_url.clone(),
        keys: KeyDirectory::new(keys_dir.path()).into(),
        login,
        clock,
    })
    .await
    .expect("token service state");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("serve the token service");
    });
    TokenService {
        base_url,
        store,
        state,
        keys_dir,
        acme_key,
        globex_key,
        alice_id,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Seeds `store` with both organizations (issuers under `base_url`) and
/// alice, whose password has `password_hash`; returns alice's user id.
pub async fn seed(store: &Store, base_url: &str, password_hash: String) -> String {
    seed_organization(store, ORG, base_url, BACKEND_SECRET).await;
    seed_organization(store, OTHER_ORG, base_url, OTHER_BACKEND_SECRET).await;
    let alice = store
        .create_user(&NewUser {
            emails: vec![Email::primary(ALICE_EMAIL)],
            display_name: Some("Alice Liddell".into()),
            password_hash: Some(SecretString::new(password_hash)),
            ..NewUser::new(ORG, ALICE, UserSource::Local)
        })
        .await
        .expect("create alice");
    alice.id
}

fn meta(namespace: &str, kind: &str, name: &str) -> ObjectMeta {
    ObjectMeta::new(format!("{namespace}-{kind}-{name}"), namespace, name, 1)
}

async fn seed_organization(store: &Store, org: &str, base_url: &str, backend_secret: &str) {
    let catalog = ["iam.view", "journeys.view", "journeys.edit", "journeys.publish"];
    let spec = serde_json::json!({
        "displayName": org,
        "workspaces": [{ "name": "eu" }, { "name": "us" }],
        "permissions": catalog.iter().map(|p| serde_json::json!({ "name": p })).collect::<Vec<_>>(),
        "tokens": { "accessTokenLifetime": "15m", "refreshTokenLifetime": "720h", "signingAlgorithm": "ES256" },
    });
    store
        .apply(&OrganizationRecord {
            meta: meta(org, "org", org),
            display_name: org.into(),
            catalog: catalog.iter().map(|p| p.to_string()).collect(),
            workspaces: vec!["eu".into(), "us".into()],
            spec_json: spec.to_string(),
        })
        .await
        .expect("apply the organization");
    for (name, permissions) in [
        ("viewer", vec!["journeys.view"]),
        ("publisher", vec!["journeys.*"]),
        ("iam-viewer", vec!["iam.view"]),
    ] {
        let permissions: Vec<String> = permissions.into_iter().map(String::from).collect();
        store
            .apply(&RoleRecord {
                meta: meta(org, "role", name),
                scope: RoleScope::Organization,
                spec_json: serde_json::json!({ "permissions": permissions }).to_string(),
                permissions,
                included_roles: Vec::new(),
            })
            .await
            .expect("apply a role");
    }
    for (name, kind, principal, role, workspace) in [
        ("backend-publisher", PrincipalKind::Client, "backend", "publisher", None),
        ("backend-iam", PrincipalKind::Client, "backend", "iam-viewer", None),
        ("alice-viewer", PrincipalKind::User, ALICE, "viewer", None),
        ("alice-eu-publisher", PrincipalKind::User, ALICE, "publisher", Some("eu")),
    ] {
        store
            .apply(&assignment(org, name, kind, principal, role, workspace))
            .await
            .expect("apply an assignment");
    }
    let issuer = format!("{base_url}/o/{org}");
    let clients = [
        (
            "backend",
            serde_json::json!({
                "type": "Confidential", "grantTypes": ["client_credentials"],
                "audiences": [API_AUDIENCE, issuer],
            }),
            Some(backend_secret),
        ),
        (
            "webapp",
            serde_json::json!({
                "type": "Confidential", "grantTypes": ["authorization_code", "refresh_token"],
                "redirectUris": [WEBAPP_REDIRECT], "audiences": [API_AUDIENCE, issuer],
            }),
            Some(WEBAPP_SECRET),
        ),
        (
            "legacy",
            serde_json::json!({
                "type": "Confidential", "grantTypes": ["authorization_code"], "requirePkce": false,
                "redirectUris": [LEGACY_REDIRECT],
            }),
            Some(LEGACY_SECRET),
        ),
        (
            "spa",
            serde_json::json!({
                "type": "Public", "grantTypes": ["authorization_code", "refresh_token"],
                "redirectUris": [SPA_REDIRECT],
            }),
            None,
        ),
    ];
    for (name, spec, secret) in clients {
        apply_client(store, org, name, spec).await;
        if let Some(secret) = secret {
            let hash = SecretString::new(portcullis::secret::SecretHash::of(secret).to_string());
            assert!(
                store.set_oauth_client_secret_hash(org, name, Some(&hash)).await.expect("set a secret hash")
            );
        }
    }
}

/// Applies (or updates, with a higher generation) an OAuthClient.
pub async fn apply_client(store: &Store, org: &str, name: &str, spec: serde_json::Value) {
    let mut record = OAuthClientRecord {
        meta: meta(org, "client", name),
        client_type: spec["type"].as_str().unwrap_or("Confidential").to_lowercase(),
        redirect_uris: spec["redirectUris"]
            .as_array()
            .map(|uris| uris.iter().filter_map(|u| u.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        spec_json: spec.to_string(),
        secret_hash: None,
    };
    if let Some(stored) = store.get::<OAuthClientRecord>(org, name).await.expect("read a client") {
        record.meta.generation = stored.meta.generation + 1;
    }
    store.apply(&record).await.expect("apply a client");
}

pub fn assignment(
    org: &str,
    name: &str,
    kind: PrincipalKind,
    principal: &str,
    role: &str,
    workspace: Option<&str>,
) -> AssignmentRecord {
    AssignmentRecord {
        meta: meta(org, "ra", name),
        principal_kind: kind,
        principal_name: principal.into(),
        role: role.into(),
        workspace: workspace.map(String::from),
        expires_at_ms: None,
        // The CRD's own shape, as a synced manifest stores it.
        spec_json: match workspace {
            Some(workspace) => serde_json::json!({
                "principal": { "kind": format!("{kind:?}"), "name": principal },
                "role": role,
                "scope": "Workspace",
                "workspace": workspace,
            }),
            None => serde_json::json!({
                "principal": { "kind": format!("{kind:?}"), "name": principal },
                "role": role,
                "scope": "Organization",
            }),
        }
        .to_string(),
    }
}

impl TokenService {
    /// Awaits the service's access index of `organization` reflecting every
    /// change committed so far: the index follows the store a moment behind
    /// (its change feed), while a request reads the user's row directly.
    pub async fn index_caught_up(&self, organization: &str, deadline: std::time::Duration) {
        let committed = self.store.current_seq().await.expect("the change sequence number");
        let org = self.state.require_organization(organization).await.expect("the organization");
        eventually("the access index reflects the last commit", deadline, || async {
            let snapshot = self.state.access_index(&org).await.expect("the access index");
            (snapshot.seq >= committed).then_some(())
        })
        .await;
    }
}

/// A client with plain HTTP only, no redirects followed.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

/// Awaits `probe` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    let mut interval = std::time::Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "{what}: still not true after {deadline:?}");
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(std::time::Duration::from_millis(250));
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The claims of a JWT, unverified (the tests that need them verified say so).
pub fn claims_of(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"),
    )
    .expect("JSON claims")
}

/// The names in an access token's `roles` claim, sorted, once each.
pub fn role_names(access_token: &str) -> Vec<String> {
    let mut names: Vec<String> = claims_of(access_token)["roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// Redeems a webapp code of a sign-in made with [`VERIFIER`]: the token response.
pub async fn redeem(service: &TokenService, code: &str) -> serde_json::Value {
    let response = http_client()
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
        .expect("the token request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.expect("token JSON")
}
