//! Sign-in over real HTTP: the token service's router on 127.0.0.1:0, a
//! browser played by reqwest with a cookie jar and redirects off (so each
//! `Location` can be read; `support/browser_form.rs`), the store on SQLite in
//! memory or (where named) a real PostgreSQL server from `support/postgres.rs`.

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use browser_form::{Page, open};
use portcullis::audit::{ActorKind, AuditEvent, Outcome};
use portcullis::secret::SecretString;
use portcullis::store::{
    AssignmentRecord, AuditFilter, AuditStore as _, DesiredStateStore as _, Email, MfaFactor, NewUser,
    OAuthClientRecord, ObjectMeta, OrganizationRecord, PrincipalKind, RoleRecord, RoleScope, Store,
    UserSource, UserStore as _,
};
use portcullis::token::keys::{Algorithm, KeyMeta, SigningKey};
use portcullis::token::password::PasswordHasher;
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::{LoginConfig, LoginState};
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};
use portcullis::token::throttle::{ThrottlePolicy, ThrottleRule};
use portcullis::token::totp;
use reqwest::StatusCode;

const ORG: &str = "acme";
const CLIENT: &str = "spa";
const REDIRECT_URI: &str = "https://app.acme.test/callback";
const SIGNED_OUT_URI: &str = "https://app.acme.test/signed-out";
const PASSWORD: &str = "correct horse battery staple";
const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789abcdef";

// === The service under test. ===

struct Service {
    base: String,
    store: Store,
    state: TokenServiceState,
    alice: String,
    _dir: tempfile::TempDir,
}

struct Options {
    /// The Organization's `authentication.mfa`.
    mfa: serde_json::Value,
    throttle: ThrottlePolicy,
    /// `LoginConfig::trusted_proxies`.
    trusted_proxies: Vec<ipnet::IpNet>,
    postgres: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mfa: serde_json::json!({ "required": "Never" }),
            throttle: ThrottlePolicy::default(),
            trusted_proxies: Vec::new(),
            postgres: false,
        }
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
    let spec = serde_json::json!({ "displayName": "Acme", "authentication": { "mfa": options.mfa } });
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
        "displayName": "Acme <Portal>",
        "type": "Public",
        "grantTypes": ["authorization_code", "refresh_token"],
        "redirectUris": [REDIRECT_URI],
        "postLogoutRedirectUris": [SIGNED_OUT_URI],
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
    let alice = create_user(&store, "alice", "alice@acme.test").await;

    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let generated = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).unwrap();
    let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
    let key = SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).unwrap();
    write_key_dir(dir.path(), ORG, &[&key]).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let login = LoginState::new(LoginConfig {
        throttle: options.throttle,
        trusted_proxies: options.trusted_proxies,
        ..LoginConfig::default()
    });
    let state = TokenServiceState::new(TokenServiceConfig {
        store: store.clone(),
        public_base_url: base.clone(),
        keys: KeyDirectory::new(dir.path()).into(),
        login,
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Service { base, store, state, alice, _dir: dir }
}

async fn create_user(store: &Store, user_name: &str, email: &str) -> String {
    let hash = PasswordHasher::new(1).hash(PASSWORD).await.unwrap();
    let user = NewUser {
        emails: vec![Email::primary(email)],
        password_hash: Some(SecretString::new(hash)),
        ..NewUser::new(ORG, user_name, UserSource::Local)
    };
    store.create_user(&user).await.unwrap().id
}

fn new_browser() -> reqwest::Client {
    browser_form::browser()
}

fn challenge() -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, VERIFIER.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn authorize_url(service: &Service, extra: &[(&str, &str)]) -> String {
    authorize_url_at(&service.base, extra)
}

fn authorize_url_at(base: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge();
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT_URI),
        ("response_type", "code"),
        ("scope", "openid offline_access"),
        ("state", "st<&>"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    for (name, value) in extra {
        if value.is_empty() {
            params.remove(name);
        } else {
            params.insert(name, value);
        }
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{base}/o/{ORG}/authorize?{query}")
}

// === Reading pages like a browser would. ===

/// Posts the page's form with its hidden fields (minus `drop`) and `fields`.
async fn submit(
    browser: &reqwest::Client,
    service: &Service,
    form: &Page,
    fields: &[(&str, &str)],
    drop: &[&str],
) -> Page {
    browser_form::submit(browser, &service.base, form, "", fields, drop).await
}

async fn sign_in_form(browser: &reqwest::Client, service: &Service) -> Page {
    let form = open(browser, &authorize_url(service, &[])).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("Sign in to Acme"), "{}", form.body);
    form
}

async fn redeem(service: &Service, code: &str) -> (StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
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
    (response.status(), response.json().await.unwrap())
}

async fn refresh(service: &Service, refresh_token: &str) -> (StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/o/{ORG}/token", service.base))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", CLIENT)])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

fn assert_code_redirect(service: &Service, result: &Page) -> String {
    assert_eq!(result.status, StatusCode::SEE_OTHER, "{}", result.body);
    let location = result.location.as_deref().unwrap();
    assert!(location.starts_with(&format!("{REDIRECT_URI}?")), "{location}");
    let query = result.query();
    assert_eq!(query.get("state").map(String::as_str), Some("st<&>"), "state comes back unchanged");
    assert_eq!(query.get("iss"), Some(&format!("{}/o/{ORG}", service.base)), "RFC 9207 iss");
    query.get("code").expect("a code").clone()
}

// === The cases. ===

#[tokio::test]
async fn a_code_flow_through_the_sign_in_form_ends_in_tokens() {
    code_flow(start(Options::default()).await).await;
}

#[tokio::test]
async fn a_code_flow_through_the_sign_in_form_ends_in_tokens_on_postgresql() {
    code_flow(start(Options { postgres: true, ..Options::default() }).await).await;
}

async fn code_flow(service: Service) {
    let alice = new_browser();
    let form = sign_in_form(&alice, &service).await;
    assert!(form.body.contains("Acme &lt;Portal&gt;"), "client name shown, escaped");
    assert!(
        form.set_cookies.iter().any(|c| c.starts_with("portcullis_login=") && c.contains("HttpOnly")),
        "{:?}",
        form.set_cookies
    );
    // Sign in with the email address, as people do.
    let result =
        submit(&alice, &service, &form, &[("username", "Alice@Acme.test"), ("password", PASSWORD)], &[])
            .await;
    let code = assert_code_redirect(&service, &result);
    let session_cookie =
        result.set_cookies.iter().find(|c| c.starts_with("portcullis_session=")).expect("a session");
    for attribute in ["HttpOnly", "SameSite=Lax", &format!("Path=/o/{ORG}")] {
        assert!(session_cookie.contains(attribute), "{session_cookie} lacks {attribute}");
    }
    assert!(!session_cookie.contains("Secure"), "http on loopback: no Secure, or the browser would drop it");

    let (status, tokens) = redeem(&service, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["access_token"].is_string() && tokens["id_token"].is_string(), "{tokens}");
    let user = service.store.get_user(ORG, &service.alice).await.unwrap().unwrap();
    assert!(user.last_login_ms.is_some(), "the sign-in is recorded");

    // The session skips the form; prompt=login does not.
    let again = open(&alice, &authorize_url(&service, &[])).await;
    let second = assert_code_redirect(&service, &again);
    assert_ne!(second, code);
    let forced = open(&alice, &authorize_url(&service, &[("prompt", "login")])).await;
    assert_eq!(forced.status, StatusCode::OK);
    assert!(forced.body.contains("Sign in to Acme"));
    // Another browser has no session.
    let none = open(&new_browser(), &authorize_url(&service, &[("prompt", "none")])).await;
    assert_eq!(none.query().get("error").map(String::as_str), Some("login_required"));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_the_form_again_and_no_code() {
    let service = start(Options::default()).await;
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    for (user, password) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let result =
            submit(&browser, &service, &form, &[("username", user), ("password", password)], &[]).await;
        assert_eq!(result.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(result.location.is_none());
        assert!(result.body.contains("Wrong user name or password."), "{}", result.body);
        assert!(!result.set_cookies.iter().any(|c| c.starts_with("portcullis_session=")));
    }
    // Both failures are in the audit trail, with who tried and from where.
    let events = sign_in_events(&service, "signIn.password").await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (unknown, alice) = (&events[0], &events[1]);
    assert_eq!((unknown.actor.kind, unknown.actor.name.as_deref()), (ActorKind::Anonymous, Some("nobody")));
    assert_eq!(alice.actor.subject.as_deref(), Some(service.alice.as_str()));
    for event in &events {
        assert_eq!(event.outcome, Outcome::Failure);
        assert_eq!(event.reason.as_deref(), Some("WrongCredentials"));
        assert_eq!(event.source.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.source.user_agent.as_deref(), Some(browser_form::BROWSER_USER_AGENT));
    }
}

/// The organization's audit events of `action`, newest first.
async fn sign_in_events(service: &Service, action: &str) -> Vec<AuditEvent> {
    service.store.seal_audit(ORG).await.unwrap();
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    let events = service.store.list_audit(ORG, &filter, None, 100).await.unwrap();
    events.into_iter().map(|sealed| sealed.event).collect()
}

#[tokio::test]
async fn an_inactive_user_is_refused_even_with_the_right_password() {
    let service = start(Options::default()).await;
    service.store.set_user_active(ORG, &service.alice, false).await.unwrap();
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let result =
        submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_eq!(result.status, StatusCode::FORBIDDEN);
    assert!(result.body.contains("This account is disabled."));
    assert!(result.location.is_none());
    let events = sign_in_events(&service, "signIn.password").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].outcome, events[0].reason.as_deref()), (Outcome::Failure, Some("AccountDisabled")));
}

#[tokio::test]
async fn guessing_is_throttled_and_then_even_the_right_password_is_refused() {
    let rule = |free| ThrottleRule {
        free_failures: free,
        base_lockout: Duration::from_secs(600),
        max_lockout: Duration::from_secs(3600),
        forget_after: Duration::from_secs(3600),
    };
    let throttle =
        ThrottlePolicy { per_account: rule(3), per_source: rule(100), ..ThrottlePolicy::default() };
    let service = start(Options { throttle, ..Options::default() }).await;
    let attacker = new_browser();
    let form = sign_in_form(&attacker, &service).await;
    for n in 0..4 {
        let guess = format!("guess {n}");
        let result =
            submit(&attacker, &service, &form, &[("username", "alice"), ("password", &guess)], &[]).await;
        assert_eq!(result.status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    // Locked: the right password does not get through, from any browser.
    let owner = new_browser();
    let form = sign_in_form(&owner, &service).await;
    let result = submit(&owner, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_eq!(result.status, StatusCode::TOO_MANY_REQUESTS, "{}", result.body);
    assert!(result.body.contains("Too many failed sign-in attempts"), "{}", result.body);
    let retry_after: u64 = result.retry_after.expect("Retry-After").parse().unwrap();
    assert!((590..=600).contains(&retry_after), "{retry_after}");
    assert!(result.location.is_none());
}

fn throttle_rule(free_failures: u32) -> ThrottleRule {
    ThrottleRule {
        free_failures,
        base_lockout: Duration::from_secs(600),
        max_lockout: Duration::from_secs(3600),
        forget_after: Duration::from_secs(3600),
    }
}

/// Security review, finding 1: the throttle was checked before the password
/// was hashed and the failure counted after, so guesses sent together all
/// queued in the hasher past the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_guesses_sent_at_once_are_throttled_like_a_hundred_in_a_row() {
    a_hundred_guesses_at_once(false).await;
}

/// The same on PostgreSQL, where the counters' rows are locked by concurrent
/// transactions rather than taken in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_guesses_sent_at_once_are_throttled_like_a_hundred_in_a_row_on_postgresql() {
    a_hundred_guesses_at_once(true).await;
}

async fn a_hundred_guesses_at_once(postgres: bool) {
    let throttle = ThrottlePolicy {
        per_account: throttle_rule(3),
        per_source: throttle_rule(1000),
        ..ThrottlePolicy::default()
    };
    let service = start(Options { throttle, postgres, ..Options::default() }).await;
    let attacker = new_browser();
    let form = sign_in_form(&attacker, &service).await;
    let guesses = (0..100).map(|n| {
        let (attacker, service, form) = (&attacker, &service, &form);
        async move {
            let guess = format!("guess {n}");
            submit(attacker, service, form, &[("username", "alice"), ("password", &guess)], &[]).await.status
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked, 4, "3 free failures and the one that starts the lockout: {statuses:?}");
    assert_eq!(throttled, 96, "{statuses:?}");
}

/// Security review, finding 3: a password over the hashing limit was refused
/// at once for an existing account and hashed for an unknown one, which told
/// the accounts apart by time. Now neither is hashed: both answer well under
/// the time one hash takes.
#[tokio::test]
async fn an_over_long_password_takes_no_hash_for_a_known_account_or_an_unknown_one() {
    let throttle = ThrottlePolicy {
        per_account: throttle_rule(1000),
        per_source: throttle_rule(1000),
        ..ThrottlePolicy::default()
    };
    let service = start(Options { throttle, ..Options::default() }).await;
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    // Over the hasher's 1,024 bytes, under the form's 2,048 per parameter.
    let long = "x".repeat(2000);
    let median_time = |user: &'static str, password: String| {
        let (browser, service, form) = (&browser, &service, &form);
        async move {
            let mut times = Vec::new();
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let page =
                    submit(browser, service, form, &[("username", user), ("password", &password)], &[]).await;
                times.push(started.elapsed());
                assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{user}: {}", page.body);
            }
            times.sort();
            times[2]
        }
    };
    let one_hash = median_time("nobody", "a wrong password".to_owned()).await;
    let known = median_time("alice", long.clone()).await;
    let unknown = median_time("nobody", long).await;
    assert!(
        known < one_hash / 2 && unknown < one_hash / 2,
        "over-long: known {known:?}, unknown {unknown:?}; a hashed wrong password: {one_hash:?}"
    );
}

/// Security review, finding 2: the MFA policy was applied at the password
/// step only, so a user signed in with a password alone who later became
/// privileged kept refreshing, and kept reusing the session, for tokens that
/// carried the new role.
#[tokio::test]
async fn a_password_only_sign_in_is_not_honoured_once_its_user_becomes_privileged() {
    let service =
        start(Options { mfa: serde_json::json!({ "required": "PrivilegedRoles" }), ..Options::default() })
            .await;
    let spec = serde_json::json!({
        "displayName": "Acme",
        "authentication": { "mfa": { "required": "PrivilegedRoles" } },
        "permissions": [{ "name": "iam.manage", "privileged": true }],
    });
    let store = &service.store;
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org", ORG, ORG, 2),
            display_name: "Acme".into(),
            catalog: vec!["iam.manage".into()],
            workspaces: Vec::new(),
            spec_json: spec.to_string(),
        })
        .await
        .unwrap();
    store
        .apply(&RoleRecord {
            meta: ObjectMeta::new("uid-role-admin", ORG, "iam-admin", 1),
            scope: RoleScope::Organization,
            spec_json: serde_json::json!({ "permissions": ["iam.manage"] }).to_string(),
            permissions: vec!["iam.manage".into()],
            included_roles: Vec::new(),
        })
        .await
        .unwrap();

    // Not privileged: the password alone signs in, and the family refreshes.
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let result =
        submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    let (status, tokens) = redeem(&service, &assert_code_redirect(&service, &result)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["id_token"].as_str().map(amr_of), Some(vec!["pwd".to_owned()]));
    let (status, refreshed) = refresh(&service, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let mut refresh_token = refreshed["refresh_token"].as_str().unwrap().to_owned();

    // alice becomes an IAM administrator.
    store
        .apply(&AssignmentRecord {
            meta: ObjectMeta::new("uid-ra-alice", ORG, "alice-iam-admin", 1),
            principal_kind: PrincipalKind::User,
            principal_name: "alice".into(),
            role: "iam-admin".into(),
            workspace: None,
            expires_at_ms: None,
            spec_json: serde_json::json!({ "principal": "alice", "role": "iam-admin" }).to_string(),
        })
        .await
        .unwrap();

    // The family ends (awaited: the index follows the store change by change).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, body) = refresh(&service, &refresh_token).await;
        if status != StatusCode::OK {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "a password-only family still refreshes after 10 s");
        refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
        tokio::task::yield_now().await;
    };
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    assert!(refused["error_description"].as_str().unwrap().contains("second factor"), "{refused}");
    // The browser's session gives no code without the second factor either.
    let again = open(&browser, &authorize_url(&service, &[])).await;
    assert_eq!(again.status, StatusCode::OK, "the sign-in form, not a code: {:?}", again.location);
    assert!(again.body.contains("Sign in to Acme"), "{}", again.body);
    let silent = open(&browser, &authorize_url(&service, &[("prompt", "none")])).await;
    assert_eq!(silent.query().get("error").map(String::as_str), Some("login_required"));
}

/// The `amr` claim of an ID token (its payload read without verification:
/// the other tests check signatures).
fn amr_of(id_token: &str) -> Vec<String> {
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    serde_json::from_value(claims["amr"].clone()).unwrap()
}

/// A browser whose requests arrive through a proxy that says it forwards `client`.
fn browser_forwarded_for(client: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", client.parse().unwrap());
    browser_form::browser_builder().default_headers(headers).build().unwrap()
}

/// Security review, finding 4: behind a reverse proxy every sign-in has the
/// proxy's address, so failures with random user names from one client
/// locked every user out. With the proxy trusted, the source is the client
/// it forwarded; and an untrusted peer cannot pick its source by header.
#[tokio::test]
async fn behind_a_trusted_proxy_one_guessing_client_does_not_lock_out_the_others() {
    let throttle = ThrottlePolicy {
        per_account: throttle_rule(1000),
        per_source: throttle_rule(3),
        ..ThrottlePolicy::default()
    };
    let guess_until_throttled = |service: &Service, forwarded_for: &dyn Fn(usize) -> String| {
        let base = service.base.clone();
        let forwarded: Vec<String> = (0..6).map(forwarded_for).collect();
        async move {
            let mut statuses = Vec::new();
            for (n, client) in forwarded.iter().enumerate() {
                let attacker = browser_forwarded_for(client);
                let form = open(&attacker, &authorize_url_at(&base, &[])).await;
                let user = format!("someone-{n}");
                let page = browser_form::submit(
                    &attacker,
                    &base,
                    &form,
                    "",
                    &[("username", &user), ("password", "guess")],
                    &[],
                )
                .await;
                statuses.push(page.status);
            }
            statuses
        }
    };
    let proxied = start(Options {
        throttle: throttle.clone(),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..Options::default()
    })
    .await;
    let statuses = guess_until_throttled(&proxied, &|_| "203.0.113.7".to_owned()).await;
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "the guessing client is throttled: {statuses:?}"
    );
    let owner = browser_forwarded_for("198.51.100.9");
    let form = open(&owner, &authorize_url(&proxied, &[])).await;
    let result = submit(&owner, &proxied, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_code_redirect(&proxied, &result);

    // Not a trusted proxy: the header is the client's own claim, and ignored.
    let direct = start(Options { throttle, ..Options::default() }).await;
    let statuses = guess_until_throttled(&direct, &|n| format!("192.0.2.{n}")).await;
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "a new header per guess buys nothing: {statuses:?}"
    );
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused() {
    let service = start(Options::default()).await;
    let victim = new_browser();
    let form = sign_in_form(&victim, &service).await;
    let credentials = [("username", "alice"), ("password", PASSWORD)];
    let missing = submit(&victim, &service, &form, &credentials, &["csrf"]).await;
    let wrong =
        submit(&victim, &service, &form, &[("csrf", "AAAA"), credentials[0], credentials[1]], &["csrf"])
            .await;
    // A token taken from another browser's page does not match this browser's cookie.
    let other = new_browser();
    let other_form = sign_in_form(&other, &service).await;
    let (_, other_fields) = other_form.form("");
    let other_token = other_fields.iter().find(|(n, _)| n == "csrf").unwrap().1.clone();
    let foreign = submit(
        &victim,
        &service,
        &form,
        &[("csrf", &other_token), credentials[0], credentials[1]],
        &["csrf"],
    )
    .await;
    // And a forged post from a browser that never saw the form.
    let forged = submit(&new_browser(), &service, &form, &credentials, &[]).await;
    for (what, result) in
        [("missing", missing), ("wrong", wrong), ("foreign", foreign), ("no cookie", forged)]
    {
        assert_eq!(result.status, StatusCode::FORBIDDEN, "{what}");
        assert!(result.location.is_none(), "{what}");
        assert!(result.body.contains("expired or was not sent from this site"), "{what}");
    }
    // The form itself still works.
    let result = submit(&victim, &service, &form, &credentials, &[]).await;
    assert_code_redirect(&service, &result);
}

#[tokio::test]
async fn redirect_uri_near_misses_and_unknown_clients_show_an_error_and_never_redirect() {
    let service = start(Options::default()).await;
    let browser = new_browser();
    for uri in [
        "https://app.acme.test/callback/",
        "https://APP.acme.test/callback",
        "https://app.acme.test/callback?x=1",
        "http://app.acme.test/callback",
        "https://app.acme.test/callbackx",
        "https://app.acme.test/Callback",
        "https://app.acme.test.evil.com/callback",
        "",
    ] {
        let result = open(&browser, &authorize_url(&service, &[("redirect_uri", uri)])).await;
        assert_eq!(result.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(result.location.is_none(), "{uri}: never redirect to an unregistered URI");
    }
    let unknown = open(&browser, &authorize_url(&service, &[("client_id", "evil")])).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.location.is_none());

    // With a trusted redirect URI, other mistakes go back to the client (RFC 6749 §4.1.2.1).
    for (extra, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", ""), ("code_challenge_method", "")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "openid admin")], "invalid_scope"),
    ] {
        let result = open(&browser, &authorize_url(&service, &extra)).await;
        assert_eq!(result.status, StatusCode::SEE_OTHER, "{extra:?}");
        assert!(result.location.as_deref().unwrap().starts_with(REDIRECT_URI));
        assert_eq!(result.query().get("error").map(String::as_str), Some(error), "{extra:?}");
        assert_eq!(result.query().get("state").map(String::as_str), Some("st<&>"));
    }
}

#[tokio::test]
async fn totp_wrong_code_refused_right_code_accepted_replay_refused() {
    totp_flow(start(Options::default()).await).await;
}

#[tokio::test]
async fn totp_wrong_code_refused_right_code_accepted_replay_refused_on_postgresql() {
    totp_flow(start(Options { postgres: true, ..Options::default() }).await).await;
}

async fn totp_flow(service: Service) {
    let secret = totp::generate_secret().unwrap();
    let sealed = service.state.login().totp_sealer().seal(ORG, &service.alice, &secret).unwrap();
    let factor = MfaFactor::Totp { sealed_secret: SecretString::new(sealed) };
    service.store.add_mfa_enrolment(ORG, &service.alice, Some("phone"), &factor, 0).await.unwrap();

    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let step = submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.body);
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    assert!(step.location.is_none(), "no code before the second factor");

    let now = jiff::Timestamp::now();
    let wrong = format!("{:06}", totp::code_at_step(&secret, totp::step_at(now) + 5));
    let refused = submit(&browser, &service, &step, &[("code", &wrong)], &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("That code is not right"));
    assert!(refused.location.is_none());

    // The ticket cannot be replayed without the password from another browser.
    let stolen =
        submit(&new_browser(), &service, &step, &[("code", &totp::code_at(&secret, now))], &[]).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);

    let code = totp::code_at(&secret, jiff::Timestamp::now());
    let accepted = submit(&browser, &service, &step, &[("code", &code)], &[]).await;
    let authorization_code = assert_code_redirect(&service, &accepted);
    let (status, tokens) = redeem(&service, &authorization_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let outcomes: Vec<(Outcome, Option<String>)> =
        sign_in_events(&service, "signIn.totp").await.into_iter().map(|e| (e.outcome, e.reason)).collect();
    assert_eq!(outcomes, [(Outcome::Success, None), (Outcome::Failure, Some("WrongCode".to_owned()))]);

    // The same code again, in a new sign-in, is refused: once only.
    let again = open(&browser, &authorize_url(&service, &[("prompt", "login")])).await;
    assert_eq!(again.status, StatusCode::OK);
    let step =
        submit(&browser, &service, &again, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let replayed = submit(&browser, &service, &step, &[("code", &code)], &[]).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED, "a replayed code");
    assert!(replayed.location.is_none());
}

#[tokio::test]
async fn mfa_required_without_an_enrolled_factor_shows_the_enrolment_page() {
    let service =
        start(Options { mfa: serde_json::json!({ "required": "Always" }), ..Options::default() }).await;
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let result =
        submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_eq!(result.status, StatusCode::FORBIDDEN);
    assert!(result.body.contains("Two-step verification required"), "{}", result.body);
    assert!(result.location.is_none());
}

#[tokio::test]
async fn end_session_ends_the_session_and_revokes_its_refresh_tokens() {
    let service = start(Options::default()).await;
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let result =
        submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    let code = assert_code_redirect(&service, &result);
    let (status, tokens) = redeem(&service, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let refresh_token =
        tokens["refresh_token"].as_str().expect("offline_access gives a refresh token").to_owned();

    // An unregistered post-logout URI: an error page, no redirect, session kept.
    let end = format!("{}/o/{ORG}/end_session", service.base);
    let bad = Page::read(
        browser
            .get(&end)
            .query(&[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", "https://evil.test/"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.location.is_none());
    assert_eq!(
        open(&browser, &authorize_url(&service, &[])).await.status,
        StatusCode::SEE_OTHER,
        "still signed in"
    );

    let ended = Page::read(
        browser
            .get(&end)
            .query(&[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", SIGNED_OUT_URI),
                ("state", "bye"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER, "{}", ended.body);
    assert_eq!(ended.location.as_deref(), Some(format!("{SIGNED_OUT_URI}?state=bye").as_str()));

    let (status, error) = refresh(&service, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"], "invalid_grant");
    let after = open(&browser, &authorize_url(&service, &[])).await;
    assert_eq!(after.status, StatusCode::OK, "signed out: the form again");
}

#[tokio::test]
async fn end_session_without_a_hint_asks_before_signing_out() {
    let service = start(Options::default()).await;
    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let result =
        submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert_code_redirect(&service, &result);

    // A link on another site cannot sign the user out on its own.
    let end = format!("{}/o/{ORG}/end_session", service.base);
    let confirm = open(&browser, &end).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Sign out of Acme?"));
    assert_eq!(
        open(&browser, &authorize_url(&service, &[])).await.status,
        StatusCode::SEE_OTHER,
        "still signed in"
    );
    let forged = submit(&browser, &service, &confirm, &[], &["logout_token"]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let done = submit(&browser, &service, &confirm, &[], &[]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("You are signed out"));
    assert_eq!(open(&browser, &authorize_url(&service, &[])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_posts_of_one_totp_code_sign_in_once_on_postgresql() {
    let service = start(Options { postgres: true, ..Options::default() }).await;
    let secret = totp::generate_secret().unwrap();
    let sealed = service.state.login().totp_sealer().seal(ORG, &service.alice, &secret).unwrap();
    let factor = MfaFactor::Totp { sealed_secret: SecretString::new(sealed) };
    service.store.add_mfa_enrolment(ORG, &service.alice, None, &factor, 0).await.unwrap();

    let browser = new_browser();
    let form = sign_in_form(&browser, &service).await;
    let step = submit(&browser, &service, &form, &[("username", "alice"), ("password", PASSWORD)], &[]).await;
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let code = totp::code_at(&secret, jiff::Timestamp::now());
    let fields = [("code", code.as_str())];
    let posts = (0..4).map(|_| submit(&browser, &service, &step, &fields, &[]));
    let results = futures::future::join_all(posts).await;
    let signed_in = results.iter().filter(|r| r.status == StatusCode::SEE_OTHER).count();
    assert_eq!(signed_in, 1, "{:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
}
