//! The token service over real HTTP (reqwest → axum on 127.0.0.1:0), on SQLite
//! and on a real PostgreSQL server: discovery, JWKS, each grant, userinfo,
//! introspection, revocation, the check API behind RequirePermission, key
//! rotation, and the security properties of DESIGN.md, one test each.

#[path = "support/openapi.rs"]
mod openapi;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use portcullis::store::*;
use portcullis::token::claims::{AccessTokenClaims, IdTokenClaims, RoleClaim, RoleScope};
use portcullis::token::jwt::{self, TokenType, Validation};
use portcullis::token::keys::{Algorithm, KeySet, SigningKey};
use portcullis::token::pkce::CodeChallenge;
use portcullis::token::service::grants::{CodeGrant, issue_authorization_code};
use portcullis::token::service::keys::write_key_dir;
use reqwest::StatusCode;
use serde_json::{Value, json};
use token_support::*;

const DEADLINE: Duration = Duration::from_secs(15);

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::sqlite_store().await).await;
                }
            )*
        }
        mod postgresql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::postgres_store().await.0).await;
                }
            )*
        }
    };
}

on_both_backends!(
    discovery_and_jwks_describe_each_organization,
    an_unknown_organization_is_not_found,
    client_credentials_carry_the_clients_roles_and_asked_permissions,
    an_assignment_change_reaches_the_next_token,
    client_authentication_accepts_basic_and_post_and_refuses_the_rest,
    organizations_are_isolated,
    authorization_code_with_pkce_issues_access_id_and_refresh_tokens,
    redirect_uri_near_misses_are_refused,
    a_reused_code_fails_and_revokes_what_it_issued,
    pkce_downgrades_are_refused,
    refresh_rotates_and_reuse_revokes_the_family,
    concurrent_refreshes_yield_exactly_one_successor,
    a_race_on_one_family_leaves_concurrent_refreshes_of_others_alone,
    a_disabled_or_deleted_user_cannot_refresh,
    introspection_and_revocation,
    the_check_api_answers_with_the_access_cores_decision,
    the_check_api_refuses_a_revoked_access_token,
    the_check_api_decides_for_a_presented_token,
    expired_codes_families_and_revoked_tokens_are_purged,
    require_permission_refuses_alg_none,
    require_permission_refuses_hs256_signed_with_the_public_key,
    require_permission_refuses_an_unknown_kid,
    require_permission_refuses_a_wrong_audience,
    require_permission_refuses_an_id_token,
    key_rotation_without_downtime,
);

async fn postgres_store() -> (Store, String) {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    (Store::connect(&url).await.expect("connect to the test PostgreSQL"), url)
}

// === Helpers. ===

async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = http_client().post(url).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("send a form");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read the body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("a JSON body") };
    (status, headers, body)
}

async fn token(
    svc: &TokenService,
    org: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let (status, _, body) = post_form(&svc.url(org, "/token"), form, basic).await;
    (status, body)
}

async fn backend_token(svc: &TokenService, scope: Option<&str>) -> Value {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let (status, body) = token(svc, ORG, &form, Some(("backend", BACKEND_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn copy(key: &SigningKey) -> SigningKey {
    with_meta(key, key.meta().clone())
}

fn verify_access(svc: &TokenService, token: &str, audience: &str) -> AccessTokenClaims {
    let keys = KeySet::new(vec![copy(&svc.acme_key)]).unwrap();
    let issuer = svc.issuer(ORG);
    jwt::verify::<AccessTokenClaims>(
        token,
        &keys,
        &Validation::new(TokenType::Access, &issuer, audience, Timestamp::now()),
    )
    .expect("a valid access token")
    .claims
}

fn verifier() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn challenge(verifier: &str) -> String {
    CodeChallenge::from_verifier(verifier).unwrap().as_str().to_owned()
}

async fn code_for(
    svc: &TokenService,
    client_id: &str,
    redirect_uri: &str,
    code_challenge: Option<String>,
) -> String {
    issue_authorization_code(
        &svc.state,
        CodeGrant {
            organization: ORG.into(),
            client_id: client_id.into(),
            user_id: svc.alice_id.clone(),
            redirect_uri: redirect_uri.into(),
            scope: "openid profile email".into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            code_challenge,
            auth_time_ms: Timestamp::now().as_millisecond(),
            amr: vec!["pwd".into()],
            session_id: Some("session-1".into()),
        },
    )
    .await
    .expect("issue a code")
}

/// Signs in `webapp` with code + PKCE and returns the token response.
async fn webapp_sign_in(svc: &TokenService) -> Value {
    let verifier = verifier();
    let code = code_for(svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier))).await;
    let (status, body) = redeem(svc, &code, WEBAPP_REDIRECT, Some(&verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn redeem(
    svc: &TokenService,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    token(svc, ORG, &form, Some(("webapp", WEBAPP_SECRET))).await
}

async fn refresh(svc: &TokenService, refresh_token: &str) -> (StatusCode, Value) {
    token(
        svc,
        ORG,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
        Some(("webapp", WEBAPP_SECRET)),
    )
    .await
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field].as_str().unwrap_or_else(|| panic!("{field} in {body}"))
}

async fn check_api(
    svc: &TokenService,
    org: &str,
    bearer: &str,
    request: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = http_client()
        .post(svc.url(org, "/api/v1/check"))
        .bearer_auth(bearer)
        .json(&request)
        .send()
        .await
        .expect("call the check API");
    // Every answer is one the OpenAPI document describes.
    let answer = openapi::Answer::described(&svc.issuer(org), "POST", response).await;
    (answer.status, answer.headers, serde_json::from_str(&answer.text).expect("a JSON body"))
}

fn alice_may_publish_in_eu() -> Value {
    json!({ "principal": { "kind": "User", "name": "Alice" }, "permission": "journeys.publish", "workspace": "eu" })
}

/// The check API refuses `bearer` with 401 `invalid_token` and `description`.
async fn refused(svc: &TokenService, bearer: &str, description: &str) {
    let (status, headers, body) = check_api(svc, ORG, bearer, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["error_description"], description);
    assert!(
        headers[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Access-token claims that would pass for the check API but for what a test changes.
fn forged_claims(svc: &TokenService) -> Value {
    let now = Timestamp::now().as_second();
    json!({
        "iss": svc.issuer(ORG), "sub": "backend", "aud": svc.issuer(ORG), "exp": now + 600, "iat": now,
        "jti": "forged", "client_id": "backend", "org": ORG,
    })
}

// === Cases. ===

async fn discovery_and_jwks_describe_each_organization(store: Store) {
    let svc = start(store).await;
    let issuer = svc.issuer(ORG);
    let discovery: Value = http_client()
        .get(svc.url(ORG, "/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(discovery["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(discovery["response_types_supported"], json!(["code"]));
    assert!(!discovery["grant_types_supported"].as_array().unwrap().contains(&json!("password")));

    // Every published key: next, active and retiring.
    let now = Timestamp::now();
    let next = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).unwrap();
    let retiring = retired(&active_key(Algorithm::ES256, now - SignedDuration::from_hours(48)), now);
    write_key_dir(svc.keys_path(), ORG, &[&svc.acme_key, &next, &retiring]).unwrap();
    let kids = eventually("the JWKS lists next, active and retiring keys", DEADLINE, || async {
        let jwks: Value = http_client().get(svc.url(ORG, "/jwks")).send().await.ok()?.json().await.ok()?;
        let kids: Vec<String> =
            jwks["keys"].as_array()?.iter().filter_map(|k| k["kid"].as_str().map(String::from)).collect();
        (kids.len() == 3).then_some(kids)
    })
    .await;
    assert_eq!(kids[0], svc.acme_key.kid(), "the active key comes first");
    assert!(kids.contains(&next.kid().to_owned()) && kids.contains(&retiring.kid().to_owned()));
    // The other organization publishes only its own.
    let other: Value =
        http_client().get(svc.url(OTHER_ORG, "/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(other["keys"].as_array().unwrap().len(), 1);
    assert_eq!(other["keys"][0]["kid"], svc.globex_key.kid());
}

async fn an_unknown_organization_is_not_found(store: Store) {
    let svc = start(store).await;
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let response = http_client().get(svc.url("initech", path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (status, body) =
        token(&svc, "initech", &[("grant_type", "client_credentials")], Some(("backend", BACKEND_SECRET)))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

async fn client_credentials_carry_the_clients_roles_and_asked_permissions(store: Store) {
    let svc = start(store).await;
    let body = backend_token(&svc, None).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "the organization's 15m lifetime");
    assert!(body.get("refresh_token").is_none(), "client_credentials gets no refresh token");
    let claims = verify_access(&svc, text(&body, "access_token"), API_AUDIENCE);
    assert_eq!(claims.sub, "backend");
    assert_eq!(claims.client_id, "backend");
    assert_eq!(claims.org, ORG);
    assert_eq!(claims.exp - claims.iat, 900);
    let mut roles = claims.roles.clone();
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        roles,
        vec![
            RoleClaim { name: "iam-viewer".into(), scope: RoleScope::Organization },
            RoleClaim { name: "publisher".into(), scope: RoleScope::Organization },
        ]
    );
    assert_eq!(claims.permissions, None, "permissions only when asked for");

    let body = backend_token(&svc, Some("permissions")).await;
    let claims = verify_access(&svc, text(&body, "access_token"), API_AUDIENCE);
    assert_eq!(
        claims.permissions,
        Some(vec![
            "iam.view".into(),
            "journeys.edit".into(),
            "journeys.publish".into(),
            "journeys.view".into()
        ])
    );
    assert_eq!(body["scope"], "permissions");

    let (status, body) = token(
        &svc,
        ORG,
        &[("grant_type", "client_credentials"), ("scope", "openid")],
        Some(("backend", BACKEND_SECRET)),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
    let (status, body) =
        token(&svc, ORG, &[("grant_type", "password")], Some(("backend", BACKEND_SECRET))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));
    let (status, body) = token(
        &svc,
        ORG,
        &[("grant_type", "authorization_code"), ("code", "x")],
        Some(("backend", BACKEND_SECRET)),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
}

async fn an_assignment_change_reaches_the_next_token(store: Store) {
    let svc = start(store).await;
    let before = verify_access(&svc, text(&backend_token(&svc, None).await, "access_token"), API_AUDIENCE);
    assert!(!before.roles.iter().any(|r| r.name == "viewer"));
    svc.store
        .apply(&assignment(ORG, "backend-viewer-eu", PrincipalKind::Client, "backend", "viewer", Some("eu")))
        .await
        .unwrap();
    eventually("the new role reaches the next token", DEADLINE, || async {
        let body = backend_token(&svc, None).await;
        let claims = verify_access(&svc, text(&body, "access_token"), API_AUDIENCE);
        claims
            .roles
            .contains(&RoleClaim { name: "viewer".into(), scope: RoleScope::Workspace("eu".into()) })
            .then_some(())
    })
    .await;
}

async fn client_authentication_accepts_basic_and_post_and_refuses_the_rest(store: Store) {
    let svc = start(store).await;
    let (status, _) = token(
        &svc,
        ORG,
        &[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", BACKEND_SECRET)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "client_secret_post");

    let (status, headers, body) = post_form(
        &svc.url(ORG, "/token"),
        &[("grant_type", "client_credentials")],
        Some(("backend", "wrong-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(headers[reqwest::header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
    assert_eq!(headers[reqwest::header::CACHE_CONTROL], "no-store");

    let (status, body) =
        token(&svc, ORG, &[("grant_type", "client_credentials")], Some(("nobody", BACKEND_SECRET))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // A public client has no secret and cannot use client_credentials.
    let (status, body) =
        token(&svc, ORG, &[("grant_type", "client_credentials"), ("client_id", "spa")], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    // Two methods at once.
    let (status, body) = token(
        &svc,
        ORG,
        &[("grant_type", "client_credentials"), ("client_secret", BACKEND_SECRET)],
        Some(("backend", BACKEND_SECRET)),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}

async fn organizations_are_isolated(store: Store) {
    let svc = start(store).await;
    // globex has a client named backend too, with its own secret.
    let (status, _) =
        token(&svc, OTHER_ORG, &[("grant_type", "client_credentials")], Some(("backend", BACKEND_SECRET)))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "acme's secret is not globex's");
    let (status, body) = token(
        &svc,
        OTHER_ORG,
        &[("grant_type", "client_credentials")],
        Some(("backend", OTHER_BACKEND_SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let globex_token = text(&body, "access_token").to_owned();
    // Neither acme's check API nor its issuer accepts globex's token.
    let (status, _, body) = check_api(&svc, ORG, &globex_token, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // An acme code is not redeemable through globex.
    let verifier = verifier();
    let code = code_for(&svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier))).await;
    // globex has a webapp client with the same secret: the code is still not its.
    let (status, body) = token(
        &svc,
        OTHER_ORG,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEBAPP_REDIRECT),
            ("code_verifier", &verifier),
        ],
        Some(("webapp", WEBAPP_SECRET)),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // And the code still works at acme: the foreign attempt did not burn it.
    let (status, body) = redeem(&svc, &code, WEBAPP_REDIRECT, Some(&verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn authorization_code_with_pkce_issues_access_id_and_refresh_tokens(store: Store) {
    let svc = start(store).await;
    let body = webapp_sign_in(&svc).await;
    let access = text(&body, "access_token");
    let claims = verify_access(&svc, access, API_AUDIENCE);
    assert_eq!(claims.sub, svc.alice_id);
    assert_eq!(claims.client_id, "webapp");
    assert!(claims.auth_time.is_some());
    assert!(
        claims
            .roles
            .contains(&RoleClaim { name: "publisher".into(), scope: RoleScope::Workspace("eu".into()) })
    );
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 43));

    let keys = KeySet::new(vec![copy(&svc.acme_key)]).unwrap();
    let issuer = svc.issuer(ORG);
    let id = jwt::verify::<IdTokenClaims>(
        text(&body, "id_token"),
        &keys,
        &Validation::new(TokenType::Id, &issuer, "webapp", Timestamp::now()),
    )
    .expect("a valid ID token")
    .claims;
    assert_eq!(id.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert_eq!(id.amr, Some(vec!["pwd".to_owned()]));
    assert_eq!(
        id.at_hash.as_deref(),
        Some(portcullis::token::claims::at_hash(access, Algorithm::ES256).as_str())
    );
    assert_eq!(id.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(id.name.as_deref(), Some("Alice Liddell"));

    // userinfo with the access token.
    let info: Value = http_client()
        .get(svc.url(ORG, "/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], svc.alice_id.as_str());
    assert_eq!(info["email"], ALICE_EMAIL);
    assert_eq!(info["preferred_username"], ALICE);
    let response = http_client().get(svc.url(ORG, "/userinfo")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A public client: PKCE, no secret.
    let verifier = verifier();
    let code = code_for(&svc, "spa", SPA_REDIRECT, Some(challenge(&verifier))).await;
    let (status, body) = token(
        &svc,
        ORG,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn redirect_uri_near_misses_are_refused(store: Store) {
    let svc = start(store).await;
    let verifier = verifier();
    let code = code_for(&svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier))).await;
    for near_miss in [
        "https://app.acme.test/callback/",
        "https://app.acme.test/Callback",
        "https://APP.acme.test/callback",
        "https://app.acme.test/callback?x=1",
        "https://app.acme.test:443/callback",
        "http://app.acme.test/callback",
        "https://app.acme.test.evil.test/callback",
        "https://app.acme.test/callback#",
    ] {
        let (status, body) = redeem(&svc, &code, near_miss, Some(&verifier)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{near_miss}"
        );
    }
    let (status, body) = redeem(&svc, &code, WEBAPP_REDIRECT, Some(&verifier)).await;
    assert_eq!(status, StatusCode::OK, "the exact URI still works: {body}");
}

async fn a_reused_code_fails_and_revokes_what_it_issued(store: Store) {
    let svc = start(store).await;
    let verifier = verifier();
    let code = code_for(&svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier))).await;
    let (status, first) = redeem(&svc, &code, WEBAPP_REDIRECT, Some(&verifier)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = redeem(&svc, &code, WEBAPP_REDIRECT, Some(&verifier)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let reuses = audit_events(&svc, "authorizationCode.reuseDetected").await;
    assert_eq!(reuses.len(), 1, "the reuse is audited: {reuses:?}");
    assert_eq!(reuses[0].event.target.id.as_deref(), Some(svc.alice_id.as_str()));
    // The refresh token and the access token of the first redemption are dead.
    let (status, body) = refresh(&svc, text(&first, "refresh_token")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (_, _, introspection) = post_form(
        &svc.url(ORG, "/introspect"),
        &[("token", text(&first, "access_token"))],
        Some(("webapp", WEBAPP_SECRET)),
    )
    .await;
    assert_eq!(introspection["active"], false);
    let response = http_client()
        .get(svc.url(ORG, "/userinfo"))
        .bearer_auth(text(&first, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The organization's sealed audit events of `action`, newest first.
async fn audit_events(svc: &TokenService, action: &str) -> Vec<SealedAuditEvent> {
    svc.store.seal_audit(ORG).await.unwrap();
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    svc.store.list_audit(ORG, &filter, None, 100).await.unwrap()
}

async fn pkce_downgrades_are_refused(store: Store) {
    let svc = start(store).await;
    let verifier = verifier();
    // A code issued with a challenge needs the verifier …
    let code = code_for(&svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier))).await;
    let (status, body) = redeem(&svc, &code, WEBAPP_REDIRECT, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // … the right one.
    let (status, _) = redeem(&svc, &code, WEBAPP_REDIRECT, Some(&self::verifier())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A verifier for a code issued without a challenge is refused.
    let code = code_for(&svc, "legacy", LEGACY_REDIRECT, None).await;
    let (status, body) = token(
        &svc,
        ORG,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", LEGACY_REDIRECT),
            ("code_verifier", &verifier),
        ],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    // A client that must use PKCE cannot redeem a code issued without it.
    let code = code_for(&svc, "webapp", WEBAPP_REDIRECT, None).await;
    let (status, body) = redeem(&svc, &code, WEBAPP_REDIRECT, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The legacy client without PKCE still works (confidential, requirePkce false).
    let code = code_for(&svc, "legacy", LEGACY_REDIRECT, None).await;
    let (status, body) = token(
        &svc,
        ORG,
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", LEGACY_REDIRECT)],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn refresh_rotates_and_reuse_revokes_the_family(store: Store) {
    let svc = start(store).await;
    let first = webapp_sign_in(&svc).await;
    let token0 = text(&first, "refresh_token").to_owned();
    let (status, second) = refresh(&svc, &token0).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let token1 = text(&second, "refresh_token").to_owned();
    assert_ne!(token0, token1, "rotated");
    verify_access(&svc, text(&second, "access_token"), API_AUDIENCE);
    let (status, third) = refresh(&svc, &token1).await;
    assert_eq!(status, StatusCode::OK);
    let token2 = text(&third, "refresh_token").to_owned();

    // token1 comes back: reuse. The family dies, token2 with it.
    let (status, body) = refresh(&svc, &token1).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (status, body) = refresh(&svc, &token2).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The reuse is in the audit trail, as a failure of the webapp client for alice.
    let reuses = audit_events(&svc, "refreshToken.reuseDetected").await;
    assert_eq!(reuses.len(), 1, "{reuses:?}");
    let reuse = &reuses[0].event;
    assert_eq!(reuse.outcome, portcullis::audit::Outcome::Failure);
    assert_eq!(reuse.actor.client.as_deref(), Some("webapp"));
    assert_eq!(reuse.actor.subject.as_deref(), Some(svc.alice_id.as_str()));
    assert_eq!(reuse.target.kind, "refreshTokenFamily");
    // Another client cannot use a webapp refresh token either.
    let fresh = webapp_sign_in(&svc).await;
    let (status, _) = token(
        &svc,
        ORG,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", text(&fresh, "refresh_token")),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn concurrent_refreshes_yield_exactly_one_successor(store: Store) {
    let svc = start(store).await;
    let first = webapp_sign_in(&svc).await;
    let presented = text(&first, "refresh_token").to_owned();
    let attempts = (0..8).map(|_| refresh(&svc, &presented));
    let results = futures::future::join_all(attempts).await;
    let successes = results.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    assert_eq!(successes, 1, "{results:?}");
    for (status, body) in &results {
        if *status != StatusCode::OK {
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    // The losers cannot be told from a thief racing the client: fail closed,
    // the family (the one successor included) is revoked.
    let (_, winner) = results.iter().find(|(status, _)| *status == StatusCode::OK).expect("one success");
    let (status, body) = refresh(&svc, text(winner, "refresh_token")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

async fn a_race_on_one_family_leaves_concurrent_refreshes_of_others_alone(store: Store) {
    let svc = start(store).await;
    let mut tokens = Vec::new();
    for _ in 0..12 {
        tokens.push(text(&webapp_sign_in(&svc).await, "refresh_token").to_owned());
    }
    // Every family once, the first one three times more, all at once.
    let raced = tokens[0].clone();
    let presented: Vec<&str> = tokens.iter().map(String::as_str).chain([raced.as_str(); 3]).collect();
    let results = futures::future::join_all(presented.iter().map(|t| refresh(&svc, t))).await;
    let raced_successes =
        presented.iter().zip(&results).filter(|(t, (status, _))| **t == raced && *status == StatusCode::OK);
    assert_eq!(raced_successes.count(), 1, "{results:?}");
    for (status, body) in &results[1..tokens.len()] {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    // The others' successors are each their family's current token; the
    // raced family is revoked.
    let successors: Vec<String> =
        results[1..tokens.len()].iter().map(|(_, body)| text(body, "refresh_token").to_owned()).collect();
    let again = futures::future::join_all(successors.iter().map(|t| refresh(&svc, t))).await;
    for (status, body) in &again {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let (_, raced_winner) = presented
        .iter()
        .zip(&results)
        .find(|(t, (status, _))| **t == raced && *status == StatusCode::OK)
        .map(|(_, result)| result.clone())
        .expect("one success");
    let (status, body) = refresh(&svc, text(&raced_winner, "refresh_token")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

async fn a_disabled_or_deleted_user_cannot_refresh(store: Store) {
    let svc = start(store).await;
    let signed_in = webapp_sign_in(&svc).await;
    let token0 = text(&signed_in, "refresh_token").to_owned();

    svc.store.set_user_active(ORG, &svc.alice_id, false).await.expect("disable alice");
    let (status, body) = refresh(&svc, &token0).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(body["error_description"], "The user is no longer active.");

    // Enabled again, the same token still works: the refusal rotated nothing.
    // (Her roles come from the access index, which follows the store a
    // moment behind: asked before it has caught up, it would still see her
    // inactive and the token would carry no roles.)
    svc.store.set_user_active(ORG, &svc.alice_id, true).await.expect("enable alice");
    svc.index_caught_up(ORG, DEADLINE).await;
    let (status, body) = refresh(&svc, &token0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // What the refreshed tokens say about her comes with the refresh token.
    let keys = KeySet::new(vec![copy(&svc.acme_key)]).unwrap();
    let id = jwt::verify::<IdTokenClaims>(
        text(&body, "id_token"),
        &keys,
        &Validation::new(TokenType::Id, &svc.issuer(ORG), "webapp", Timestamp::now()),
    )
    .expect("a valid ID token")
    .claims;
    assert_eq!(id.sub, svc.alice_id);
    assert_eq!(id.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(id.name.as_deref(), Some("Alice Liddell"));
    let claims = verify_access(&svc, text(&body, "access_token"), API_AUDIENCE);
    assert!(
        claims
            .roles
            .contains(&RoleClaim { name: "publisher".into(), scope: RoleScope::Workspace("eu".into()) })
    );

    assert!(svc.store.delete_user(ORG, &svc.alice_id).await.expect("delete alice"));
    let (status, body) = refresh(&svc, text(&body, "refresh_token")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(body["error_description"], "The user is no longer active.");
}

async fn introspection_and_revocation(store: Store) {
    let svc = start(store).await;
    let signed_in = webapp_sign_in(&svc).await;
    let access = text(&signed_in, "access_token");
    let refresh_token = text(&signed_in, "refresh_token");
    let introspect = |token: String, client: (&'static str, &'static str)| {
        let url = svc.url(ORG, "/introspect");
        async move { post_form(&url, &[("token", &token)], Some(client)).await }
    };
    let (status, _, body) = introspect(access.into(), ("webapp", WEBAPP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], svc.alice_id.as_str());
    assert_eq!(body["client_id"], "webapp");
    let (_, _, body) = introspect(refresh_token.into(), ("webapp", WEBAPP_SECRET)).await;
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("refresh_token")));
    // Another client does not learn about webapp's refresh token.
    let (_, _, body) = introspect(refresh_token.into(), ("backend", BACKEND_SECRET)).await;
    assert_eq!(body["active"], false);
    let (_, _, body) = introspect("not-a-token".into(), ("webapp", WEBAPP_SECRET)).await;
    assert_eq!(body, json!({ "active": false }));
    let (status, _, body) = introspect(access.into(), ("webapp", "wrong")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    // RFC 7009: revoking the refresh token ends the family; the access token too.
    let revoke = |token: String| {
        let url = svc.url(ORG, "/revoke");
        async move { post_form(&url, &[("token", &token)], Some(("webapp", WEBAPP_SECRET))).await.0 }
    };
    assert_eq!(revoke(refresh_token.into()).await, StatusCode::OK);
    let (status, _) = refresh(&svc, refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(revoke(access.into()).await, StatusCode::OK);
    let (_, _, body) = introspect(access.into(), ("webapp", WEBAPP_SECRET)).await;
    assert_eq!(body["active"], false);
    assert_eq!(revoke("unknown".into()).await, StatusCode::OK, "unknown tokens are not an error");
}

async fn the_check_api_answers_with_the_access_cores_decision(store: Store) {
    let svc = start(store).await;
    let bearer = text(&backend_token(&svc, None).await, "access_token").to_owned();
    let (status, _, body) = check_api(&svc, ORG, &bearer, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allowed"], true);
    assert_eq!(body["grant"]["role"], "publisher");
    assert_eq!(body["grant"]["workspace"], "eu");
    let (_, _, body) = check_api(
        &svc,
        ORG,
        &bearer,
        json!({ "principal": { "kind": "User", "name": "alice" }, "permission": "journeys.publish", "workspace": "us" }),
    )
    .await;
    assert_eq!(
        (body["allowed"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("NoMatchingAssignment"))
    );
    let (_, _, body) = check_api(
        &svc,
        ORG,
        &bearer,
        json!({ "principal": { "kind": "Client", "name": "backend" }, "permission": "billing.pay" }),
    )
    .await;
    assert_eq!(body["reason"], "UnknownPermission");
    let (status, _, body) = check_api(&svc, ORG, &bearer, json!({ "permission": "x" })).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));

    // A caller without iam.view: 403 insufficient_scope.
    svc.store
        .delete::<AssignmentRecord>(&ObjectMeta::new(format!("{ORG}-ra-backend-iam"), ORG, "backend-iam", 1))
        .await
        .unwrap();
    eventually("the caller loses iam.view", DEADLINE, || async {
        let bearer = text(&backend_token(&svc, None).await, "access_token").to_owned();
        let (status, _, body) = check_api(&svc, ORG, &bearer, alice_may_publish_in_eu()).await;
        (status == StatusCode::FORBIDDEN).then(|| assert_eq!(body["error"], "insufficient_scope"))
    })
    .await;
    let response = http_client()
        .post(svc.url(ORG, "/api/v1/check"))
        .json(&alice_may_publish_in_eu())
        .send()
        .await
        .unwrap();
    let answer = openapi::Answer::described(&svc.issuer(ORG), "POST", response).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "no token: {}", answer.text);
}

/// Finding 5 of issue 13: introspection said inactive, but `RequirePermission`
/// (and so the check API) still admitted a token revoked through RFC 7009.
async fn the_check_api_refuses_a_revoked_access_token(store: Store) {
    let svc = start(store).await;
    let bearer = text(&backend_token(&svc, None).await, "access_token").to_owned();
    let (status, _, body) = check_api(&svc, ORG, &bearer, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, _) =
        post_form(&svc.url(ORG, "/revoke"), &[("token", &bearer)], Some(("backend", BACKEND_SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    refused(&svc, &bearer, "The token has been revoked.").await;

    // A token issued after the revocation is still admitted.
    let fresh = text(&backend_token(&svc, None).await, "access_token").to_owned();
    let (status, _, body) = check_api(&svc, ORG, &fresh, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A resource server sends the token it was presented instead of a
/// principal (portcullis-guard's check mode): decided for the token's
/// principal, and `RevokedToken` / `InvalidToken` once it speaks for no one.
async fn the_check_api_decides_for_a_presented_token(store: Store) {
    let svc = start(store).await;
    let caller = text(&backend_token(&svc, None).await, "access_token").to_owned();
    let presented = text(&backend_token(&svc, None).await, "access_token").to_owned();
    let ask = |permission: &str, token: &str| json!({ "token": token, "permission": permission, "workspace": "eu" });

    let (status, _, body) = check_api(&svc, ORG, &caller, ask("journeys.publish", &presented)).await;
    assert_eq!((status, &body["allowed"]), (StatusCode::OK, &json!(true)), "{body}");
    let (_, _, body) = check_api(&svc, ORG, &caller, ask("iam.manage", &presented)).await;
    assert_eq!((&body["allowed"], &body["reason"]), (&json!(false), &json!("UnknownPermission")), "{body}");

    let (status, _, _) =
        post_form(&svc.url(ORG, "/revoke"), &[("token", &presented)], Some(("backend", BACKEND_SECRET)))
            .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = check_api(&svc, ORG, &caller, ask("journeys.publish", &presented)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&body["allowed"], &body["reason"]), (&json!(false), &json!("RevokedToken")), "{body}");
    let (_, _, body) = check_api(&svc, ORG, &caller, ask("journeys.publish", "not.a.token")).await;
    assert_eq!((&body["allowed"], &body["reason"]), (&json!(false), &json!("InvalidToken")), "{body}");

    let both = json!({ "token": caller, "principal": { "kind": "Client", "name": "backend" }, "permission": "journeys.view" });
    let (status, _, body) = check_api(&svc, ORG, &caller, both).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")), "{body}");
}

/// Finding 11 of issue 13: authorization codes, refresh-token families and
/// revoked `jti`s were never removed. The housekeeping's purge takes what
/// expired (in batches, here of one row), and leaves what is still live.
async fn expired_codes_families_and_revoked_tokens_are_purged(store: Store) {
    let svc = start(store).await;
    let signed_in = webapp_sign_in(&svc).await;
    let (status, _, _) = post_form(
        &svc.url(ORG, "/revoke"),
        &[("token", text(&signed_in, "access_token"))],
        Some(("webapp", WEBAPP_SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Nothing has expired yet: nothing goes, and the refresh token still works.
    let now = Timestamp::now();
    let purged = svc.store.purge_expired(now.as_millisecond(), 1).await.unwrap();
    assert_eq!(purged, Purged::default());
    let (status, body) = refresh(&svc, text(&signed_in, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh_token = text(&body, "refresh_token").to_owned();

    // Past the refresh-token lifetime (720h) everything of this sign-in has
    // expired: the code, the family with both its tokens, the revoked jti.
    let later = now + SignedDuration::from_hours(721);
    let purged = svc.store.purge_expired(later.as_millisecond(), 1).await.unwrap();
    assert_eq!(
        purged,
        Purged { authorization_codes: 1, refresh_families: 1, revoked_access_tokens: 1, ..Purged::default() }
    );
    assert_eq!(svc.store.purge_expired(later.as_millisecond(), 1).await.unwrap(), Purged::default());
    let (status, body) = refresh(&svc, &refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

async fn require_permission_refuses_alg_none(store: Store) {
    let svc = start(store).await;
    let header = json!({ "alg": "none", "typ": "at+jwt", "kid": svc.acme_key.kid() });
    let forged = format!("{}.{}.", b64(&header), b64(&forged_claims(&svc)));
    refused(&svc, &forged, "The token algorithm is not accepted.").await;
}

async fn require_permission_refuses_hs256_signed_with_the_public_key(store: Store) {
    let svc = start(store).await;
    let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": svc.acme_key.kid() });
    let input = format!("{}.{}", b64(&header), b64(&forged_claims(&svc)));
    // The key an attacker has: the public key, as raw bytes and as its JWK.
    let jwk = serde_json::to_vec(svc.acme_key.verifying_key().jwk()).unwrap();
    for secret in [svc.acme_key.verifying_key().public_key(), jwk.as_slice()] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        refused(&svc, &forged, "The token algorithm is not accepted.").await;
    }
}

async fn require_permission_refuses_an_unknown_kid(store: Store) {
    let svc = start(store).await;
    let stranger = active_key(Algorithm::ES256, Timestamp::now());
    let forged = jwt::sign(&stranger, TokenType::Access, &forged_claims(&svc)).unwrap();
    refused(&svc, &forged, "The token was not signed by a key of this issuer.").await;
    // The same claims signed by our key pass: only the key was wrong.
    let genuine = jwt::sign(&svc.acme_key, TokenType::Access, &forged_claims(&svc)).unwrap();
    let (status, _, _) = check_api(&svc, ORG, &genuine, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::OK);
}

async fn require_permission_refuses_a_wrong_audience(store: Store) {
    let svc = start(store).await;
    let mut claims = forged_claims(&svc);
    claims["aud"] = json!(API_AUDIENCE);
    let token = jwt::sign(&svc.acme_key, TokenType::Access, &claims).unwrap();
    refused(&svc, &token, "The token is not intended for this audience.").await;
}

async fn require_permission_refuses_an_id_token(store: Store) {
    let svc = start(store).await;
    // A real ID token of a sign-in …
    let signed_in = webapp_sign_in(&svc).await;
    refused(&svc, text(&signed_in, "id_token"), "The token is not of the expected type.").await;
    // … and one with every access-token claim right but its typ.
    let token = jwt::sign(&svc.acme_key, TokenType::Id, &forged_claims(&svc)).unwrap();
    refused(&svc, &token, "The token is not of the expected type.").await;
}

async fn key_rotation_without_downtime(store: Store) {
    let svc = start(store).await;
    let old_token = text(&backend_token(&svc, None).await, "access_token").to_owned();
    // The operator publishes a next key, then promotes it and retires the old one.
    let now = Timestamp::now();
    let next = SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).unwrap();
    write_key_dir(svc.keys_path(), ORG, &[&svc.acme_key, &next]).unwrap();
    let promoted =
        with_meta(&next, portcullis::token::keys::KeyMeta { activated_at: Some(now), ..next.meta().clone() });
    let retiring = retired(&svc.acme_key, now);
    write_key_dir(svc.keys_path(), ORG, &[&retiring, &promoted]).unwrap();
    let new_token = eventually("new tokens are signed by the promoted key", DEADLINE, || async {
        let token = text(&backend_token(&svc, None).await, "access_token").to_owned();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?).ok()?;
        (header["kid"] == promoted.kid()).then_some(token)
    })
    .await;
    // Both verify at the check API: the old one by the retiring key.
    for bearer in [&old_token, &new_token] {
        let (status, _, body) = check_api(&svc, ORG, bearer, alice_may_publish_in_eu()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // A broken keys.json keeps the last good set.
    std::fs::write(svc.keys_path().join(ORG).join("keys.json"), b"not json").unwrap();
    let (status, _, _) = check_api(&svc, ORG, &new_token, alice_may_publish_in_eu()).await;
    assert_eq!(status, StatusCode::OK);
    backend_token(&svc, None).await;
}

// === Not per backend: the database dump needs its own connection. ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_holds_no_client_secret_and_no_refresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.unwrap();
    database_holds_no_client_secret_and_no_refresh_token(store, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_database_holds_no_client_secret_and_no_refresh_token() {
    let (store, url) = postgres_store().await;
    database_holds_no_client_secret_and_no_refresh_token(store, &url).await;
}

async fn database_holds_no_client_secret_and_no_refresh_token(store: Store, url: &str) {
    let svc = start(store).await;
    let signed_in = webapp_sign_in(&svc).await;
    let (_, rotated) = refresh(&svc, text(&signed_in, "refresh_token")).await;
    let unused_code = code_for(&svc, "webapp", WEBAPP_REDIRECT, Some(challenge(&verifier()))).await;
    let secrets = [
        BACKEND_SECRET,
        OTHER_BACKEND_SECRET,
        WEBAPP_SECRET,
        LEGACY_SECRET,
        ALICE_PASSWORD,
        text(&signed_in, "refresh_token"),
        text(&rotated, "refresh_token"),
        &unused_code,
    ];
    let dump = dump_database(url).await;
    assert!(dump.len() > 1000, "the dump holds the seeded rows");
    assert!(dump.contains("sha256:"), "hashes are there");
    for secret in secrets {
        assert!(!dump.contains(secret), "the database holds a secret in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_the_rotation_counter() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.unwrap();
    the_rotation_counter_is_stored(store, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stores_the_rotation_counter() {
    let (store, url) = postgres_store().await;
    the_rotation_counter_is_stored(store, &url).await;
}

async fn the_rotation_counter_is_stored(store: Store, url: &str) {
    use sqlx::{Connection as _, Row as _};
    let svc = start(store).await;
    let mut current = text(&webapp_sign_in(&svc).await, "refresh_token").to_owned();
    for _ in 0..3 {
        let (status, body) = refresh(&svc, &current).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        current = text(&body, "refresh_token").to_owned();
    }
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let family: i64 = sqlx::query("SELECT counter FROM refresh_token_families")
        .fetch_one(&mut conn)
        .await
        .expect("one family")
        .get("counter");
    assert_eq!(family, 3, "three rotations");
    let tokens: Vec<i64> = sqlx::query("SELECT counter FROM refresh_tokens ORDER BY counter")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("counter"))
        .collect();
    assert_eq!(tokens, [0, 1, 2, 3], "every token of the family, each with its counter");
}

/// Every text value of every table, as one string.
async fn dump_database(url: &str) -> String {
    use sqlx::{AssertSqlSafe, Connection as _, Row as _};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let tables_query = if url.starts_with("sqlite") {
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    } else {
        "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables WHERE table_schema = 'public'"
    };
    let tables: Vec<String> = sqlx::query(tables_query)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("name"))
        .collect();
    assert!(tables.iter().any(|t| t == "refresh_tokens"), "{tables:?}");
    let mut dump = String::new();
    for table in tables {
        let columns_query = if url.starts_with("sqlite") {
            // Binary columns (the migrations' checksums) hold no text.
            format!("SELECT name FROM pragma_table_info('{table}') WHERE type <> 'BLOB'")
        } else {
            format!(
                "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = '{table}'"
            )
        };
        let columns: Vec<String> = sqlx::query(AssertSqlSafe(columns_query))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("name"))
            .collect();
        for column in columns {
            let select = format!("SELECT CAST({column} AS TEXT) AS value FROM {table}");
            for row in sqlx::query(AssertSqlSafe(select)).fetch_all(&mut conn).await.unwrap() {
                if let Ok(Some(value)) = row.try_get::<Option<String>, _>("value") {
                    dump.push_str(&value);
                    dump.push('\n');
                }
            }
        }
    }
    dump
}
