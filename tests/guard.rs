//! `portcullis-guard` in a customer's axum service, against the real
//! `portcullis standalone` on a free port: tokens from its token endpoint
//! and sign-in, presented over real HTTP to a small journeys API that uses
//! the guard.
//!
//! ```text
//!  test ──token──► portcullis standalone (examples/acme + tests/fixtures/guard)
//!    │                 ▲ discovery, JWKS        ▲ POST /api/v1/check (check mode)
//!    └──Bearer──► journeys API (axum + Guard) ──┘
//! ```

#[path = "support/standalone.rs"]
mod standalone;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use base64::Engine as _;
use portcullis_guard::{Guard, GuardConfig, RequirePermission, VerifiedToken, permission};
use reqwest::StatusCode;
use serde_json::{Value, json};
use standalone::{DEADLINE, Standalone, http, jwt_part};

const JOURNEYS_API: &str = "https://api.acme.com/journeys";
const ORDERS: &str = "orders-service";
const CHECKER: &str = "journeys-guard";

permission!(JourneysPublish = "journeys.publish");
permission!(IamManageRoles = "iam.manage-roles");

// === The customer's service. ===

async fn publish(
    allowed: RequirePermission<JourneysPublish>,
    Path((workspace, journey)): Path<(String, String)>,
) -> axum::Json<Value> {
    axum::Json(json!({ "published": journey, "workspace": workspace, "by": allowed.claims.sub }))
}

async fn add_member(_allowed: RequirePermission<IamManageRoles>) -> &'static str {
    "added"
}

async fn me(VerifiedToken(claims): VerifiedToken) -> String {
    claims.sub
}

/// The journeys API with `guard`, served on 127.0.0.1:0; its base URL.
async fn serve(guard: Guard) -> String {
    let app = Router::new()
        .route("/workspaces/{workspace}/journeys/{journey}/publish", post(publish))
        .route("/workspaces/{workspace}/members", post(add_member))
        .route("/me", get(me))
        .with_state(guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// What a caller of the service sees: status, `WWW-Authenticate`, body.
struct Answer {
    status: StatusCode,
    challenge: String,
    body: Value,
}

async fn call(base: &str, method: reqwest::Method, path: &str, token: &str) -> Answer {
    let response = http().request(method, format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, challenge, body }
}

async fn publish_in(base: &str, workspace: &str, token: &str) -> Answer {
    call(base, reqwest::Method::POST, &format!("/workspaces/{workspace}/journeys/j-42/publish"), token).await
}

fn assert_invalid_token(answer: &Answer, description: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(answer.challenge.starts_with("Bearer error=\"invalid_token\""), "{}", answer.challenge);
    assert_eq!(answer.body["error"], "invalid_token");
    let said = answer.body["error_description"].as_str().unwrap();
    assert!(said.contains(description), "{said:?} should say {description:?}");
}

fn assert_forbidden(answer: &Answer, permission: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(answer.challenge.starts_with("Bearer error=\"insufficient_scope\""), "{}", answer.challenge);
    assert_eq!(answer.body["error"], "insufficient_scope");
    assert!(answer.body["error_description"].as_str().unwrap().contains(permission));
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its header replaced by `header` and its signature kept.
fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(3, '.');
    let (_, payload, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    format!("{}.{payload}.{signature}", b64(header.to_string().as_bytes()))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(standalone::repo().join("tests/fixtures/guard").join(name)).unwrap()
}

// === The scenarios. ===

#[tokio::test]
async fn the_guard_admits_what_the_token_service_grants_and_refuses_the_rest() {
    let server = Standalone::start_acme(|folder, issuer| {
        std::fs::write(folder.join("orders-service.yaml"), fixture("orders-service.yaml")).unwrap();
        let checker = fixture("journeys-guard.yaml").replace("ISSUER", issuer);
        std::fs::write(folder.join("journeys-guard.yaml"), checker).unwrap();
    })
    .await;
    let guard = Guard::new(GuardConfig::new(server.issuer(), JOURNEYS_API)).unwrap();
    let api = serve(guard.clone()).await;
    let orders_secret = server.client_secret(ORDERS).await;
    let token = server.token_where(ORDERS, |c| c["workspace_permissions"].is_object()).await;
    assert_eq!(
        jwt_part(&token, 1)["workspace_permissions"]["emea-marketing"]
            .as_array()
            .map(|p| p.contains(&json!("journeys.publish"))),
        Some(true)
    );

    // Allowed: journeys.publish in the workspace the client is architect of.
    let allowed = publish_in(&api, "emea-marketing", &token).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert_eq!(allowed.body["by"], ORDERS);
    assert_eq!(guard.jwks_fetches(), 1);

    // Denied: another workspace, and a permission it holds nowhere.
    assert_forbidden(&publish_in(&api, "us-marketing", &token).await, "journeys.publish");
    let members = call(&api, reqwest::Method::POST, "/workspaces/emea-marketing/members", &token).await;
    assert_forbidden(&members, "iam.manage-roles");

    // No token at all: a bare challenge (RFC 6750 §3.1).
    let bare =
        http().post(format!("{api}/workspaces/emea-marketing/journeys/j-42/publish")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");

    // Wrong audience: ci-deployer's tokens are for the data API.
    let ci_secret = server.client_secret("ci-deployer").await;
    let (_, body) = server.client_credentials("ci-deployer", &ci_secret).await;
    let data_token = body["access_token"].as_str().unwrap();
    assert_invalid_token(&publish_in(&api, "emea-marketing", data_token).await, "not meant for this service");

    // Forged: a payload granting more under the real signature.
    let mut claims = jwt_part(&token, 1);
    claims["permissions"] = json!(["iam.manage-roles"]);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(claims.to_string().as_bytes());
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    assert_invalid_token(
        &call(&api, reqwest::Method::POST, "/workspaces/emea-marketing/members", &forged).await,
        "signature does not verify",
    );

    // alg none, and HS256 keyed with the public JWK (algorithm confusion).
    let header = jwt_part(&token, 0);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "at+jwt", "kid": kid }).to_string().as_bytes()),
        token.split('.').nth(1).unwrap()
    );
    assert_invalid_token(&publish_in(&api, "emea-marketing", &none).await, "algorithm");
    let jwks: Value =
        http().get(format!("{}/jwks", server.issuer())).send().await.unwrap().json().await.unwrap();
    let public_jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap().to_string();
    let signing_input = format!(
        "{}.{}",
        b64(json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid }).to_string().as_bytes()),
        token.split('.').nth(1).unwrap()
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_jwk.as_bytes()),
        signing_input.as_bytes(),
    );
    let confused = format!("{signing_input}.{}", b64(mac.as_ref()));
    assert_invalid_token(&publish_in(&api, "emea-marketing", &confused).await, "algorithm");

    // An ID token is not an access token, even for a service that names the
    // client as its audience (typ, RFC 9068 §4).
    let signed_in = server.sign_in_administrator().await;
    let id_token = signed_in["id_token"].as_str().expect("an ID token");
    let confused_api = serve(Guard::new(GuardConfig::new(server.issuer(), standalone::SPA)).unwrap()).await;
    assert_invalid_token(
        &call(&confused_api, reqwest::Method::GET, "/me", id_token).await,
        "typ is not at+jwt",
    );
    let admin_access = signed_in["access_token"].as_str().unwrap();
    assert_eq!(
        publish_in(&api, "us-marketing", admin_access).await.status,
        StatusCode::OK,
        "the administrator's access token is admitted"
    );

    // A flood of tokens naming made-up keys makes at most one JWKS fetch.
    let fetches = guard.jwks_fetches();
    for i in 0..40 {
        let made_up =
            with_header(&token, &json!({ "alg": "ES256", "typ": "at+jwt", "kid": format!("made-up-{i}") }));
        assert_invalid_token(&publish_in(&api, "emea-marketing", &made_up).await, "kid");
    }
    assert!(
        guard.jwks_fetches() <= fetches + 1,
        "{} fetches for 40 unknown kids",
        guard.jwks_fetches() - fetches
    );

    // Revoked: check mode refuses at once what plain verification still admits.
    let checked = serve(
        Guard::new(
            GuardConfig::new(server.issuer(), JOURNEYS_API)
                .with_check_api(CHECKER, server.client_secret(CHECKER).await),
        )
        .unwrap(),
    )
    .await;
    // The checker's role assignment may land a sync after its client.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let answer = publish_in(&checked, "emea-marketing", &token).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "check mode never admitted: {} {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_forbidden(&publish_in(&checked, "us-marketing", &token).await, "journeys.publish");
    server.revoke(ORDERS, &orders_secret, &token).await;
    assert_eq!(
        publish_in(&api, "emea-marketing", &token).await.status,
        StatusCode::OK,
        "plain verification cannot see a revocation"
    );
    assert_invalid_token(&publish_in(&checked, "emea-marketing", &token).await, "revoked");
}

#[tokio::test]
async fn the_guard_refuses_expired_tokens_and_follows_a_key_rotation() {
    let server = Standalone::start_acme(|folder, _| {
        std::fs::write(folder.join("orders-service.yaml"), fixture("orders-service.yaml")).unwrap();
        standalone::edit_file(
            &folder.join("organization.yaml"),
            "accessTokenLifetime: 15m",
            "accessTokenLifetime: 3s",
        );
    })
    .await;
    let mut config = GuardConfig::new(server.issuer(), JOURNEYS_API);
    config.leeway = Duration::ZERO;
    config.min_jwks_refresh = Duration::from_millis(500);
    let guard = Guard::new(config).unwrap();
    let api = serve(guard.clone()).await;

    // Expired: admitted while it lives, refused from its exp on.
    let token = server.token_where(ORDERS, |c| c["workspace_permissions"].is_object()).await;
    let exp = jwt_part(&token, 1)["exp"].as_i64().unwrap();
    assert_eq!(call(&api, reqwest::Method::GET, "/me", &token).await.status, StatusCode::OK);
    let until = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let answer = call(&api, reqwest::Method::GET, "/me", &token).await;
        if answer.status != StatusCode::OK {
            break answer;
        }
        assert!(tokio::time::Instant::now() < until, "an expired token is still admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(jiff::Timestamp::now().as_second() >= exp, "refused only once expired");
    assert_invalid_token(&refused, "expired");

    // Rotation (docs/key-rotation.md: shorten the period): tokens signed by a
    // key the guard has never seen verify without restarting the service.
    let old_kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_owned();
    let fetches = guard.jwks_fetches();
    server.edit_manifest(
        "organization.yaml",
        "period: 720h\n      overlap: 24h",
        "period: 8s\n      overlap: 4s",
    );
    let rotated = server.token_where(ORDERS, |_| true);
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut rotated = rotated.await;
    while jwt_part(&rotated, 0)["kid"] == old_kid.as_str() {
        assert!(tokio::time::Instant::now() < until, "no token signed by a new key");
        tokio::time::sleep(Duration::from_millis(200)).await;
        rotated = server.token_where(ORDERS, |_| true).await;
    }
    let answer = publish_in(&api, "emea-marketing", &rotated).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(guard.jwks_fetches() > fetches, "the new key was fetched");
}

/// A token the guard has verified, and so remembers, is refused once its
/// key has left the issuer's JWKS (a key withdrawn before its tokens
/// expire): the memory of verified tokens never outlives the key that
/// verified them. The issuer here is the token service's router in process,
/// its keys in a directory as the operator mounts them from a Secret, so
/// that the test can withdraw one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_is_refused_once_its_key_leaves_the_jwks() {
    use portcullis::store::{DesiredStateStore as _, ObjectMeta, OrganizationRecord, Store};
    use portcullis::token::claims::{AccessTokenClaims, AccessTokenGrant};
    use portcullis::token::jwt::{self, TokenType};
    use portcullis::token::keys::{Algorithm, KeyMeta, KeySet, SigningKey};
    use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
    use portcullis::token::service::login::{LoginConfig, LoginState};
    use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-acme", "acme", "acme", 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: json!({ "displayName": "Acme" }).to_string(),
        })
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let new_key = || {
        let generated = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).unwrap();
        let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
        SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).unwrap()
    };
    let (withdrawn, successor) = (new_key(), new_key());
    write_key_dir(&keys_dir, "acme", &[&withdrawn]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/o/acme");
    let state = TokenServiceState::new(TokenServiceConfig {
        store,
        public_base_url: base,
        keys: KeyDirectory::new(&keys_dir).into(),
        login: LoginState::new(LoginConfig::default()),
        clock: std::sync::Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sign = |key: &SigningKey| {
        let grant = AccessTokenGrant {
            issuer: issuer.clone(),
            subject: "user-1".into(),
            audiences: vec![JOURNEYS_API.into()],
            client_id: "journey-studio-web".into(),
            organization: "acme".into(),
            ..AccessTokenGrant::default()
        };
        let claims =
            AccessTokenClaims::issue(grant, now, jiff::SignedDuration::from_hours(1), &mut rand::rng())
                .unwrap();
        let keys =
            KeySet::new(vec![SigningKey::from_pkcs8_der(key.meta().clone(), key.pkcs8_der()).unwrap()])
                .unwrap();
        jwt::sign_with_active(&keys, TokenType::Access, &claims).unwrap()
    };
    let (token, successors_token) = (sign(&withdrawn), sign(&successor));

    let mut config = GuardConfig::new(&issuer, JOURNEYS_API);
    config.jwks_max_age = Duration::from_millis(300);
    config.min_jwks_refresh = Duration::from_millis(100);
    let guard = Guard::new(config).unwrap();
    let api = serve(guard.clone()).await;
    assert_eq!(call(&api, reqwest::Method::GET, "/me", &token).await.status, StatusCode::OK);
    assert_eq!(call(&api, reqwest::Method::GET, "/me", &token).await.status, StatusCode::OK, "remembered");

    write_key_dir(&keys_dir, "acme", &[&successor]).unwrap();
    let until = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let answer = call(&api, reqwest::Method::GET, "/me", &token).await;
        if answer.status != StatusCode::OK {
            break answer;
        }
        assert!(tokio::time::Instant::now() < until, "a token of a withdrawn key is still admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_invalid_token(&refused, "key");
    let answer = call(&api, reqwest::Method::GET, "/me", &successors_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}
