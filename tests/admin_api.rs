//! The admin API over real HTTP (the token service on loopback, reqwest), on
//! SQLite and on a real PostgreSQL server: the audit trail is read, paged,
//! filtered, verified and exported with `iam.export-audit`, and refused with
//! an RFC 9457 problem document without it; the export verifies with the
//! real `portcullis audit verify` against the head the API reported.
//!
//! Every answer these tests receive from `/api/v1/…` is checked against the
//! OpenAPI document the service serves (`support/openapi.rs`): an answer the
//! document does not describe fails the test.

#[path = "support/openapi.rs"]
mod openapi;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::time::Duration;

use openapi::Answer;
use portcullis::audit::{Actor, AuditContext, Source};
use portcullis::secret::{SecretHash, SecretString};
use portcullis::store::*;
use portcullis::token::pkce::CodeChallenge;
use portcullis::token::service::grants::{CodeGrant, issue_authorization_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use token_support::*;

const AUDITOR_SECRET: &str = "auditor-secret-0123456789abcdefghijklmnopqrstu";
const MANAGER_SECRET: &str = "manager-secret-0123456789abcdefghijklmnopqrstu";

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = portcullis::store::Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store");
                    super::$case(super::start_with_auditor(store).await).await;
                }
            )*
        }
        mod postgresql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let url = tokio::task::spawn_blocking(|| super::postgres::Postgres::shared().create_database())
                        .await
                        .expect("create a database");
                    let store = portcullis::store::Store::connect(&url).await.expect("connect to the test PostgreSQL");
                    super::$case(super::start_with_auditor(store).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    the_audit_trail_needs_the_export_audit_permission,
    the_audit_trail_pages_filters_and_verifies,
    bad_query_parameters_are_named_in_a_problem,
    the_export_verifies_against_the_reported_head,
    users_are_read_with_iam_view_and_deactivated_with_iam_manage,
    users_are_created_updated_and_deleted_with_iam_manage,
    concurrent_updates_of_one_version_let_exactly_one_win,
    a_user_shows_its_effective_permissions_and_their_trail,
    second_factors_and_sessions_are_revoked,
    under_gitops_role_writes_answer_409_with_the_manifest,
    under_api_role_writes_are_stored_kept_from_syncs_and_honoured,
    internal_groups_are_managed_and_idp_groups_are_read_only,
    another_tenant_reaches_nothing_of_acme,
);

/// The seeded token service, plus `iam.export-audit`, `iam.manage`,
/// `iam.manage-roles` and `iam.invite-users` in acme's catalog, a role
/// `auditor` (iam.export-audit) and a role `iam-manager` (iam.view,
/// iam.manage, iam.manage-roles, iam.invite-users), and
/// clients `auditor` and `manager` assigned them.
async fn start_with_auditor(store: Store) -> TokenService {
    let svc = start(store).await;
    let catalog = [
        "iam.view",
        "iam.export-audit",
        "iam.manage",
        "iam.manage-roles",
        "iam.invite-users",
        "journeys.view",
        "journeys.edit",
        "journeys.publish",
    ];
    let organization = svc.store.get::<OrganizationRecord>(ORG, ORG).await.unwrap().expect("acme");
    let mut spec: Value = serde_json::from_str(&organization.spec_json).unwrap();
    spec["permissions"] = json!(catalog.iter().map(|p| json!({ "name": p })).collect::<Vec<_>>());
    let mut meta = organization.meta.clone();
    meta.generation += 1;
    svc.store
        .apply(&OrganizationRecord {
            meta,
            catalog: catalog.iter().map(|p| p.to_string()).collect(),
            spec_json: spec.to_string(),
            ..organization
        })
        .await
        .expect("add iam.export-audit to the catalog");
    for (role, permissions, client, secret) in [
        ("auditor", vec!["iam.export-audit"], "auditor", AUDITOR_SECRET),
        (
            "iam-manager",
            vec!["iam.view", "iam.manage", "iam.manage-roles", "iam.invite-users"],
            "manager",
            MANAGER_SECRET,
        ),
    ] {
        let permissions: Vec<String> = permissions.into_iter().map(String::from).collect();
        svc.store
            .apply(&RoleRecord {
                meta: ObjectMeta::new(format!("acme-role-{role}"), ORG, role, 1),
                scope: RoleScope::Organization,
                spec_json: json!({ "permissions": permissions }).to_string(),
                permissions,
                included_roles: Vec::new(),
            })
            .await
            .expect("apply a role");
        svc.store
            .apply(&assignment(ORG, &format!("{client}-client"), PrincipalKind::Client, client, role, None))
            .await
            .expect("assign the role");
        let spec = json!({ "type": "Confidential", "grantTypes": ["client_credentials"], "audiences": [svc.issuer(ORG)] });
        apply_client(&svc.store, ORG, client, spec).await;
        let hash = SecretString::new(SecretHash::of(secret).to_string());
        assert!(svc.store.set_oauth_client_secret_hash(ORG, client, Some(&hash)).await.unwrap());
    }
    svc.index_caught_up(ORG, Duration::from_secs(10)).await;
    svc
}

async fn client_token(svc: &TokenService, client: &str, secret: &str) -> String {
    let response = http_client()
        .post(svc.url(ORG, "/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("the token endpoint answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a token response");
    body["access_token"].as_str().expect("an access token").to_owned()
}

async fn auditor(svc: &TokenService) -> String {
    client_token(svc, "auditor", AUDITOR_SECRET).await
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// Asserts an RFC 9457 problem document of `status` and type `code`.
    #[track_caller]
    fn problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], format!("urn:portcullis:problem:{code}"), "{body}");
        assert_eq!(body["status"], status.as_u16());
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
        body
    }
}

async fn get(svc: &TokenService, path_and_query: &str, bearer: Option<&str>) -> Answer {
    send(svc, reqwest::Method::GET, path_and_query, bearer).await
}

async fn send(
    svc: &TokenService,
    method: reqwest::Method,
    path_and_query: &str,
    bearer: Option<&str>,
) -> Answer {
    send_json(svc, method, path_and_query, bearer, None, None).await
}

/// Sends a request with an optional JSON body and `If-Match`; the answer
/// must be one the OpenAPI document describes.
async fn send_json(
    svc: &TokenService,
    method: reqwest::Method,
    path_and_query: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    if_match: Option<&str>,
) -> Answer {
    let url = svc.url(ORG, path_and_query);
    let mut request = http_client().request(method.clone(), &url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    if let Some(if_match) = if_match {
        request = request.header("if-match", if_match);
    }
    let response = request.send().await.expect("the admin API answers");
    openapi::Answer::described(&svc.issuer(ORG), method.as_str(), response).await
}

/// Some audited writes: an administrator creates `count` users.
async fn audited_writes(svc: &TokenService, count: usize) {
    let admin = svc.store.with_audit(AuditContext::new(
        Actor::user(&svc.alice_id, ALICE, Some("console")),
        Source { address: Some("192.0.2.7".into()), user_agent: None },
    ));
    for n in 0..count {
        admin.create_user(&NewUser::new(ORG, format!("user-{n}"), UserSource::Local)).await.unwrap();
    }
}

async fn the_audit_trail_needs_the_export_audit_permission(svc: TokenService) {
    audited_writes(&svc, 1).await;
    for path in ["/api/v1/audit", "/api/v1/audit/head", "/api/v1/audit/verification", "/api/v1/audit/export"]
    {
        // No token: 401 with the bearer challenge.
        let answer = get(&svc, path, None).await;
        answer.problem(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(answer.header("www-authenticate").starts_with("Bearer"), "{path}");

        // backend holds iam.view, not iam.export-audit: 403, and no event leaks.
        let backend = client_token(&svc, "backend", BACKEND_SECRET).await;
        let answer = get(&svc, path, Some(&backend)).await;
        let body = answer.problem(StatusCode::FORBIDDEN, "forbidden");
        assert!(body["detail"].as_str().unwrap().contains("iam.export-audit"), "{body}");
        assert!(answer.header("www-authenticate").contains("insufficient_scope"));
        assert!(!answer.text.contains("user-0"));

        // A token of another organization does not open acme's trail.
        let globex = {
            let response = http_client()
                .post(svc.url(OTHER_ORG, "/token"))
                .basic_auth("backend", Some(OTHER_BACKEND_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        };
        get(&svc, path, Some(&globex)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");

        let answer = get(&svc, path, Some(&auditor(&svc).await)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    }
}

async fn the_audit_trail_pages_filters_and_verifies(svc: TokenService) {
    audited_writes(&svc, 5).await;
    let bearer = auditor(&svc).await;

    let all = get(&svc, "/api/v1/audit", Some(&bearer)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all = all.json();
    let events = all["events"].as_array().expect("events");
    let created: Vec<&Value> = events.iter().filter(|e| e["event"]["action"] == "user.create").collect();
    // alice (from the seed, by Portcullis itself) and the five users.
    assert_eq!(created.len(), 6, "{all}");
    let newest = &created[0]["event"];
    assert_eq!(newest["target"]["name"], "user-4", "newest first");
    assert_eq!(
        newest["actor"],
        json!({ "kind": "user", "subject": svc.alice_id, "name": ALICE, "client": "console" })
    );
    assert_eq!(newest["source"]["address"], "192.0.2.7");
    assert_eq!(newest["outcome"], "success");
    assert!(all.get("nextCursor").is_none(), "one page holds everything: {all}");
    let head_seq = all["head"]["seq"].as_i64().expect("a head");
    assert_eq!(events[0]["seq"].as_i64(), Some(head_seq));

    // Pages of two, by cursor, cover the same events in the same order.
    let mut paged = Vec::new();
    let mut query = "/api/v1/audit?action=user.create&limit=2".to_owned();
    loop {
        let page = get(&svc, &query, Some(&bearer)).await.json();
        let items = page["events"].as_array().expect("events").clone();
        assert!(items.len() <= 2);
        paged.extend(items.into_iter().map(|e| e["event"]["target"]["name"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("/api/v1/audit?action=user.create&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, ["user-4", "user-3", "user-2", "user-1", "user-0", ALICE]);

    // Filters: by actor, by target, by outcome.
    let by_alice = get(&svc, &format!("/api/v1/audit?actor={}", svc.alice_id), Some(&bearer)).await.json();
    assert_eq!(by_alice["events"].as_array().unwrap().len(), 5);
    let user_2 = get(&svc, "/api/v1/audit?target=user-2", Some(&bearer)).await.json();
    assert_eq!(user_2["events"].as_array().unwrap().len(), 1);
    let failures = get(&svc, "/api/v1/audit?outcome=failure", Some(&bearer)).await.json();
    assert_eq!(failures["events"], json!([]));
    let future = get(&svc, "/api/v1/audit?since=2999-01-01T00:00:00Z", Some(&bearer)).await.json();
    assert_eq!(future["events"], json!([]));

    // The head and the verification of the stored chain agree.
    let head = get(&svc, "/api/v1/audit/head", Some(&bearer)).await.json();
    assert_eq!(head["seq"].as_i64(), Some(head_seq));
    assert_eq!(head["hash"], all["head"]["hash"]);
    let verification = get(&svc, "/api/v1/audit/verification", Some(&bearer)).await.json();
    assert_eq!(verification["intact"], true, "{verification}");
    assert_eq!(verification["lastSeq"].as_i64(), Some(head_seq));
    assert_eq!(verification["head"], head["hash"]);
}

async fn bad_query_parameters_are_named_in_a_problem(svc: TokenService) {
    let bearer = auditor(&svc).await;
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("outcome=perhaps", "outcome"),
        ("since=last%20week", "since"),
        ("order=asc", "order"),
        ("actor=a&actor=b", "actor"),
    ] {
        let answer = get(&svc, &format!("/api/v1/audit?{query}"), Some(&bearer)).await;
        let body = answer.problem(StatusCode::BAD_REQUEST, "invalid-parameter");
        assert_eq!(body["errors"][0]["parameter"], parameter, "{query}: {body}");
    }
}

async fn the_export_verifies_against_the_reported_head(svc: TokenService) {
    audited_writes(&svc, 3).await;
    let bearer = auditor(&svc).await;
    let export = get(&svc, "/api/v1/audit/export", Some(&bearer)).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.header("content-type"), "application/jsonl");
    let head = export.header("portcullis-audit-head").to_owned();
    let lines: Vec<&str> = export.text.lines().collect();
    // alice, three users, and the export itself, audited as the auditor client.
    assert_eq!(lines.len(), 5, "{}", export.text);
    let last: Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(last["event"]["action"], "audit.export");
    assert_eq!(last["event"]["actor"], json!({ "kind": "client", "client": "auditor" }));
    assert_eq!(last["event"]["source"]["address"], "127.0.0.1");
    assert_eq!(last["hash"], head.as_str());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.jsonl");
    std::fs::write(&file, &export.text).unwrap();
    let verify = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap()
        })
        .await
        .unwrap()
    };
    let file_name = file.to_str().unwrap().to_owned();
    let output =
        verify(vec!["audit".into(), "verify".into(), file_name.clone(), "--head".into(), head.clone()]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // An event edited in the export: the line is named.
    std::fs::write(&file, export.text.replace("\"user-1\"", "\"user-7\"")).unwrap();
    let output = verify(vec!["audit".into(), "verify".into(), file_name.clone()]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{file_name}:3:")), "{stderr}");
}

async fn users_are_read_with_iam_view_and_deactivated_with_iam_manage(svc: TokenService) {
    audited_writes(&svc, 4).await;
    // backend holds iam.view only; manager holds iam.view and iam.manage.
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = client_token(&svc, "manager", MANAGER_SECRET).await;

    // Pages of two by cursor: every user once, by userName.
    let mut names = Vec::new();
    let mut query = "/api/v1/users?limit=2".to_owned();
    loop {
        let page = get(&svc, &query, Some(&viewer)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(!page.text.contains("argon2"), "no password hash is shown");
        let page = page.json();
        names.extend(
            page["users"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("/api/v1/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, [ALICE, "user-0", "user-1", "user-2", "user-3"]);
    // A search: userNames containing the text, any case, paged the same way;
    // LIKE's wildcards are taken literally.
    let mut found = Vec::new();
    let mut query = "/api/v1/users?search=SER-&limit=2".to_owned();
    loop {
        let page = get(&svc, &query, Some(&viewer)).await.json();
        found.extend(
            page["users"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("/api/v1/users?search=SER-&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(found, ["user-0", "user-1", "user-2", "user-3"]);
    let none = get(&svc, "/api/v1/users?search=user%25", Some(&viewer)).await.json();
    assert_eq!(none["users"], serde_json::json!([]), "`%` is not a wildcard");
    get(&svc, "/api/v1/users?search=", Some(&viewer))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    get(&svc, "/api/v1/users?cursor=%%%", Some(&viewer))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid-parameter");

    let alice = get(&svc, &format!("/api/v1/users/{}", svc.alice_id), Some(&viewer)).await;
    assert_eq!(alice.status, StatusCode::OK, "{}", alice.text);
    let alice = alice.json();
    assert_eq!((alice["userName"].as_str(), alice["active"].as_bool()), (Some(ALICE), Some(true)));
    assert_eq!(alice["emails"][0]["value"], ALICE_EMAIL);
    get(&svc, "/api/v1/users/no-such-user", Some(&viewer)).await.problem(StatusCode::NOT_FOUND, "not-found");

    // iam.view does not deactivate: 403, and alice stays active.
    let deactivate = format!("/api/v1/users/{}/deactivate", svc.alice_id);
    let refused = send(&svc, reqwest::Method::POST, &deactivate, Some(&viewer)).await;
    let body = refused.problem(StatusCode::FORBIDDEN, "forbidden");
    assert!(body["detail"].as_str().unwrap().contains("iam.manage"), "{body}");
    assert!(svc.store.get_user(ORG, &svc.alice_id).await.unwrap().unwrap().active);

    // iam.manage does, and the trail says who did it from where.
    let done = send(&svc, reqwest::Method::POST, &deactivate, Some(&manager)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.json()["active"], false);
    assert!(!svc.store.get_user(ORG, &svc.alice_id).await.unwrap().unwrap().active);
    svc.store.seal_audit(ORG).await.unwrap();
    let filter = AuditFilter { action: Some("user.deactivate".into()), ..AuditFilter::default() };
    let events = svc.store.list_audit(ORG, &filter, None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0].event;
    assert_eq!(
        (event.actor.client.as_deref(), event.target.id.as_deref()),
        (Some("manager"), Some(svc.alice_id.as_str()))
    );
    assert_eq!(event.source.address.as_deref(), Some("127.0.0.1"));

    let reactivate = format!("/api/v1/users/{}/reactivate", svc.alice_id);
    let done = send(&svc, reqwest::Method::POST, &reactivate, Some(&manager)).await;
    assert_eq!(done.json()["active"], true);
    send(&svc, reqwest::Method::POST, "/api/v1/users/no-such-user/deactivate", Some(&manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
}

async fn manager(svc: &TokenService) -> String {
    client_token(svc, "manager", MANAGER_SECRET).await
}

async fn audit_actions(svc: &TokenService, action: &str) -> Vec<portcullis::audit::AuditEvent> {
    svc.store.seal_audit(ORG).await.unwrap();
    let filter = AuditFilter { action: Some(action.into()), ..AuditFilter::default() };
    svc.store.list_audit(ORG, &filter, None, 100).await.unwrap().into_iter().map(|e| e.event).collect()
}

async fn users_are_created_updated_and_deleted_with_iam_manage(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    let post = reqwest::Method::POST;
    let bob = json!({
        "userName": "bob@acme.test",
        "displayName": "Bob",
        "emails": [{ "value": "bob@acme.test", "primary": true }],
        "password": "a long enough passphrase",
    });

    // iam.view does not create users.
    send_json(&svc, post.clone(), "/api/v1/users", Some(&viewer), Some(&bob), None)
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");

    // Bad input is named by its field; nothing is created.
    for (body, field) in [
        (json!({ "userName": "bob@acme.test", "password": "short" }), "password"),
        (json!({ "userName": "bob@acme.test", "nickname": "b" }), "nickname"),
        (json!({ "userName": "bob@acme.test", "emails": [{ "value": "nope" }] }), "emails[0].value"),
        (json!({ "userName": 7 }), "userName"),
        (json!({ "userName": "" }), "userName"),
    ] {
        let answer = send_json(&svc, post.clone(), "/api/v1/users", Some(&manager), Some(&body), None).await;
        let problem = answer.problem(StatusCode::BAD_REQUEST, "invalid-field");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    assert!(svc.store.find_user_by_name(ORG, "bob@acme.test").await.unwrap().is_none());

    // A body beyond the limit: 413 in the problem format.
    let huge = json!({ "userName": "x".repeat(100 * 1024) });
    send_json(&svc, post.clone(), "/api/v1/users", Some(&manager), Some(&huge), None)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large");

    let created = send_json(&svc, post.clone(), "/api/v1/users", Some(&manager), Some(&bob), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(!created.text.contains("passphrase") && !created.text.contains("argon2"), "{}", created.text);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["source"], "local");
    assert!(created.header("location").ends_with(&format!("/o/{ORG}/api/v1/users/{id}")));
    let etag = created.header("etag").to_owned();
    let stored = svc.store.get_user(ORG, &id).await.unwrap().unwrap();
    assert!(stored.password_hash.unwrap().expose().starts_with("$argon2id$"), "stored hashed");

    // The same userName again, in any case: 409.
    let again = json!({ "userName": "BOB@acme.test" });
    send_json(&svc, post.clone(), "/api/v1/users", Some(&manager), Some(&again), None)
        .await
        .problem(StatusCode::CONFLICT, "conflict");

    // PATCH at the version read; then the same version again is stale.
    let path = format!("/api/v1/users/{id}");
    let patch = json!({ "displayName": "Robert", "givenName": "Robert", "familyName": null });
    let updated =
        send_json(&svc, reqwest::Method::PATCH, &path, Some(&manager), Some(&patch), Some(&etag)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.json()["displayName"], "Robert");
    assert_eq!(updated.json()["emails"][0]["value"], "bob@acme.test", "untouched fields stay");
    assert_ne!(updated.header("etag"), etag);
    send_json(
        &svc,
        reqwest::Method::PATCH,
        &path,
        Some(&manager),
        Some(&json!({ "displayName": "Bobby" })),
        Some(&etag),
    )
    .await
    .problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    assert_eq!(svc.store.get_user(ORG, &id).await.unwrap().unwrap().display_name.as_deref(), Some("Robert"));

    // Audited as the manager client, from where it called.
    let create = audit_actions(&svc, "user.create").await;
    let event = create.iter().find(|e| e.target.id.as_deref() == Some(id.as_str())).expect("user.create");
    assert_eq!(event.actor.client.as_deref(), Some("manager"));
    assert_eq!(event.source.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(audit_actions(&svc, "user.update").await.len(), 1);

    // Delete: 204, then gone; iam.view cannot.
    send(&svc, reqwest::Method::DELETE, &path, Some(&viewer))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let deleted = send(&svc, reqwest::Method::DELETE, &path, Some(&manager)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    get(&svc, &path, Some(&viewer)).await.problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(audit_actions(&svc, "user.delete").await.len(), 1);
}

async fn concurrent_updates_of_one_version_let_exactly_one_win(svc: TokenService) {
    let manager = manager(&svc).await;
    let path = format!("/api/v1/users/{}", svc.alice_id);
    let read = get(&svc, &path, Some(&manager)).await;
    let etag = read.header("etag").to_owned();
    let svc = std::sync::Arc::new(svc);
    let attempts: Vec<_> = (0..8)
        .map(|n| {
            let (svc, manager, path, etag) = (svc.clone(), manager.clone(), path.clone(), etag.clone());
            tokio::spawn(async move {
                let patch = json!({ "displayName": format!("Alice {n}") });
                let answer =
                    send_json(&svc, reqwest::Method::PATCH, &path, Some(&manager), Some(&patch), Some(&etag))
                        .await;
                (n, answer)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        let (n, answer) = attempt.await.unwrap();
        match answer.status {
            StatusCode::OK => winners.push(n),
            _ => {
                answer.problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    let alice = svc.store.get_user(ORG, &svc.alice_id).await.unwrap().unwrap();
    assert_eq!(alice.display_name, Some(format!("Alice {}", winners[0])));
    assert_eq!(audit_actions(&svc, "user.update").await.len(), 1, "only the winner is audited");
}

async fn a_user_shows_its_effective_permissions_and_their_trail(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    // alice joins the internal group Auditors, which holds iam-viewer.
    let group = send_json(
        &svc,
        reqwest::Method::POST,
        "/api/v1/groups",
        Some(&manager),
        Some(&json!({ "displayName": "Auditors" })),
        None,
    )
    .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group_id = group.json()["id"].as_str().unwrap().to_owned();
    let member = format!("/api/v1/groups/{group_id}/members/{}", svc.alice_id);
    assert_eq!(send(&svc, reqwest::Method::PUT, &member, Some(&manager)).await.status, StatusCode::CREATED);
    svc.store
        .apply(&assignment(ORG, "auditors-iam", PrincipalKind::Group, "Auditors", "iam-viewer", None))
        .await
        .unwrap();
    svc.index_caught_up(ORG, Duration::from_secs(10)).await;

    let alice = get(&svc, &format!("/api/v1/users/{}", svc.alice_id), Some(&viewer)).await;
    assert_eq!(alice.status, StatusCode::OK, "{}", alice.text);
    let access = &alice.json()["access"];
    let scope = |kind: &str, workspace: Option<&str>| -> Value {
        access["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scope"]["kind"] == kind && s["scope"]["workspace"].as_str() == workspace)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {workspace:?} scope: {access}"))
    };
    let permission = |scope: &Value, name: &str| -> Value {
        scope["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["permission"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {scope}"))
    };
    let organization = scope("Organization", None);
    let names: Vec<&str> = organization["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["permission"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["iam.view", "journeys.view"]);
    let iam_view = permission(&organization, "iam.view");
    let grant = &iam_view["grants"][0];
    assert_eq!(
        grant["assignment"],
        json!({ "kind": "RoleAssignment", "namespace": ORG, "name": "auditors-iam" })
    );
    // The group as the access index keys it (names compare without case).
    assert_eq!(grant["role"], "iam-viewer");
    assert_eq!(grant["group"].as_str().map(str::to_lowercase).as_deref(), Some("auditors"));
    let view = permission(&organization, "journeys.view");
    assert_eq!(view["grants"][0]["assignment"]["name"], "alice-viewer");
    assert_eq!(view["grants"][0]["group"], Value::Null);

    // In eu, publisher's wildcard adds edit and publish, and the trail names the grant.
    let eu = scope("Workspace", Some("eu"));
    let publish = permission(&eu, "journeys.publish");
    assert_eq!(publish["grants"][0]["assignment"]["name"], "alice-eu-publisher");
    assert_eq!(publish["grants"][0]["rolePath"], json!(["publisher"]));
    assert_eq!(publish["grants"][0]["grant"], "journeys.*");
    // The same answer as the check API.
    let request = json!({ "principal": { "kind": "User", "name": ALICE }, "permission": "journeys.publish", "workspace": "eu" });
    let check = send_json(&svc, reqwest::Method::POST, "/api/v1/check", Some(&viewer), Some(&request), None)
        .await
        .json();
    assert_eq!(check["allowed"], true);
    assert_eq!(check["grant"]["role"], publish["grants"][0]["role"]);
}

async fn second_factors_and_sessions_are_revoked(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    let now = portcullis::store::now_ms();
    let totp = MfaFactor::Totp { sealed_secret: SecretString::new("sealed") };
    svc.store.add_mfa_enrolment(ORG, &svc.alice_id, Some("phone"), &totp, now).await.unwrap();
    let cookie = SecretHash::of("alice-session-cookie");
    svc.store
        .create_session(&portcullis::store::sessions::NewSession {
            id: "session-1".into(),
            secret_hash: cookie,
            organization: ORG.into(),
            user_id: svc.alice_id.clone(),
            auth_time_ms: now,
            amr: vec!["pwd".into()],
            created_ms: now,
            expires_ms: now + 3_600_000,
        })
        .await
        .unwrap();
    assert!(svc.store.find_session(ORG, &cookie, now).await.unwrap().is_some());
    // The session's application holds a refresh token, redeemed over HTTP.
    let code = issue_authorization_code(
        &svc.state,
        CodeGrant {
            organization: ORG.into(),
            client_id: "webapp".into(),
            user_id: svc.alice_id.clone(),
            redirect_uri: WEBAPP_REDIRECT.into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: Some(CodeChallenge::from_verifier(VERIFIER).unwrap().as_str().to_owned()),
            auth_time_ms: now,
            amr: vec!["pwd".into()],
            session_id: Some("session-1".into()),
        },
    )
    .await
    .unwrap();
    let refresh_token =
        redeem(&svc, &code).await["refresh_token"].as_str().expect("a refresh token").to_owned();

    let factors = format!("/api/v1/users/{}/second-factors", svc.alice_id);
    let sessions = format!("/api/v1/users/{}/sessions", svc.alice_id);
    for path in [&factors, &sessions] {
        send(&svc, reqwest::Method::DELETE, path, Some(&viewer))
            .await
            .problem(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(
        svc.store.list_mfa_enrolments(ORG, &svc.alice_id).await.unwrap().len(),
        1,
        "a refusal changes nothing"
    );

    let reset = send(&svc, reqwest::Method::DELETE, &factors, Some(&manager)).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.json()["removed"]["enrolments"], 1);
    assert!(svc.store.list_mfa_enrolments(ORG, &svc.alice_id).await.unwrap().is_empty());

    let revoked = send(&svc, reqwest::Method::DELETE, &sessions, Some(&manager)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.json()["revoked"]["sessions"], 1);
    assert_eq!(revoked.json()["revoked"]["refreshTokenFamilies"], 1);
    assert!(svc.store.find_session(ORG, &cookie, now).await.unwrap().is_none(), "the session is over");
    let refreshed = http_client()
        .post(svc.url(ORG, "/token"))
        .basic_auth("webapp", Some(WEBAPP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST, "the refresh token is revoked");
    assert_eq!(refreshed.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(audit_actions(&svc, "user.resetSecondFactors").await.len(), 1);
    assert_eq!(audit_actions(&svc, "user.revokeSessions").await.len(), 1);

    send(&svc, reqwest::Method::DELETE, "/api/v1/users/no-such-user/sessions", Some(&manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
}

async fn under_gitops_role_writes_answer_409_with_the_manifest(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    let listed = get(&svc, "/api/v1/roleAssignments", Some(&viewer)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let listed = listed.json();
    assert_eq!(listed["roleSource"], "GitOps");
    let names: Vec<&str> =
        listed["roleAssignments"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"alice-viewer"), "{listed}");
    assert_eq!(get(&svc, "/api/v1/roles/viewer", Some(&viewer)).await.json()["owner"], "manifest");

    let spec = json!({ "spec": { "principal": { "kind": "User", "name": ALICE }, "role": "publisher" } });
    for (method, path) in [
        (reqwest::Method::PUT, "/api/v1/roleAssignments/alice-viewer"),
        (reqwest::Method::PUT, "/api/v1/roleAssignments/alice-new"),
        (reqwest::Method::DELETE, "/api/v1/roleAssignments/alice-viewer"),
    ] {
        // Without iam.manage-roles: 403 before anything else.
        send_json(&svc, method.clone(), path, Some(&viewer), Some(&spec), None)
            .await
            .problem(StatusCode::FORBIDDEN, "forbidden");
        let answer = send_json(&svc, method, path, Some(&manager), Some(&spec), None).await;
        let problem = answer.problem(StatusCode::CONFLICT, "managed-in-git");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(
            problem["manifest"],
            json!({ "apiVersion": "iam.portcullis.dev/v1alpha1", "kind": "RoleAssignment", "namespace": ORG, "name": name })
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(&format!("RoleAssignment {ORG}/{name}")),
            "{problem}"
        );
    }
    send_json(
        &svc,
        reqwest::Method::PUT,
        "/api/v1/roles/editors",
        Some(&manager),
        Some(&json!({ "spec": { "permissions": ["journeys.edit"] } })),
        None,
    )
    .await
    .problem(StatusCode::CONFLICT, "managed-in-git");
    assert!(svc.store.get::<AssignmentRecord>(ORG, "alice-new").await.unwrap().is_none());
    assert!(svc.store.get::<AssignmentRecord>(ORG, "alice-viewer").await.unwrap().is_some());
}

/// Switches acme to `roleSource: API` and awaits the service seeing it.
async fn use_api_role_source(svc: &TokenService, bearer: &str) {
    let organization = svc.store.get::<OrganizationRecord>(ORG, ORG).await.unwrap().expect("acme");
    let mut spec: Value = serde_json::from_str(&organization.spec_json).unwrap();
    spec["administration"] = json!({ "roleSource": "API" });
    let mut meta = organization.meta.clone();
    meta.generation += 1;
    svc.store.apply(&OrganizationRecord { meta, spec_json: spec.to_string(), ..organization }).await.unwrap();
    eventually("the service reads roleSource API", Duration::from_secs(10), || async {
        let answer = get(svc, "/api/v1/roles", Some(bearer)).await;
        (answer.json()["roleSource"] == "API").then_some(())
    })
    .await;
}

async fn under_api_role_writes_are_stored_kept_from_syncs_and_honoured(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    use_api_role_source(&svc, &viewer).await;
    let put = reqwest::Method::PUT;

    // Schema and references are checked, by field path.
    for (path, body, field) in [
        ("/api/v1/roles/editors", json!({ "spec": {} }), "spec.permissions"),
        (
            "/api/v1/roles/editors",
            json!({ "spec": { "permissions": ["journeys.edit"], "extra": 1 } }),
            "spec.extra",
        ),
        (
            "/api/v1/roleAssignments/alice-edit",
            json!({ "spec": { "principal": { "kind": "User", "name": ALICE }, "role": "no-such-role" } }),
            "spec.role",
        ),
        (
            "/api/v1/roleAssignments/alice-edit",
            json!({ "spec": { "principal": { "kind": "User", "name": ALICE }, "role": "viewer", "scope": "Workspace" } }),
            "spec.workspace",
        ),
        (
            "/api/v1/roleAssignments/alice-edit",
            json!({ "spec": { "principal": { "kind": "User", "name": ALICE }, "role": "viewer", "scope": "Workspace", "workspace": "mars" } }),
            "spec.workspace",
        ),
    ] {
        let answer = send_json(&svc, put.clone(), path, Some(&manager), Some(&body), None).await;
        let problem = answer.problem(StatusCode::BAD_REQUEST, "invalid-field");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }

    let role = json!({ "spec": { "scope": "Organization", "permissions": ["journeys.edit"] } });
    let created =
        send_json(&svc, put.clone(), "/api/v1/roles/editors", Some(&manager), Some(&role), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json()["owner"], "api");
    let spec = json!({ "spec": { "principal": { "kind": "User", "name": "carol" }, "role": "editors" } });
    let created =
        send_json(&svc, put.clone(), "/api/v1/roleAssignments/carol-edit", Some(&manager), Some(&spec), None)
            .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let etag = created.header("etag").to_owned();

    // A second create of the name, a stale replace, a manifest's name: refused.
    send_json(&svc, put.clone(), "/api/v1/roleAssignments/carol-edit", Some(&manager), Some(&spec), None)
        .await
        .problem(StatusCode::CONFLICT, "conflict");
    send_json(
        &svc,
        put.clone(),
        "/api/v1/roleAssignments/carol-edit",
        Some(&manager),
        Some(&spec),
        Some("\"9\""),
    )
    .await
    .problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    let problem = send_json(
        &svc,
        put.clone(),
        "/api/v1/roleAssignments/alice-viewer",
        Some(&manager),
        Some(&spec),
        None,
    )
    .await
    .problem(StatusCode::CONFLICT, "managed-in-git");
    assert_eq!(problem["manifest"]["name"], "alice-viewer");

    // The access index honours it: carol may edit journeys.
    svc.index_caught_up(ORG, Duration::from_secs(10)).await;
    let check = |permission: &'static str| {
        let (svc, viewer) = (&svc, viewer.clone());
        async move {
            let request =
                json!({ "principal": { "kind": "User", "name": "carol" }, "permission": permission });
            send_json(svc, reqwest::Method::POST, "/api/v1/check", Some(&viewer), Some(&request), None)
                .await
                .json()
        }
    };
    let decision = check("journeys.edit").await;
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["grant"]["role"], "editors");

    // What a sync may remove (the operator's sweep, the folder sync) never includes it.
    let stored = svc.store.get::<AssignmentRecord>(ORG, "carol-edit").await.unwrap().expect("stored");
    assert!(!svc.store.list_uids::<AssignmentRecord>(ORG).await.unwrap().contains(&stored.meta.uid));
    assert!(
        svc.store
            .list_synced::<AssignmentRecord>(ORG)
            .await
            .unwrap()
            .iter()
            .all(|r| r.meta.name != "carol-edit")
    );
    assert!(svc.store.list_synced::<RoleRecord>(ORG).await.unwrap().iter().all(|r| r.meta.name != "editors"));

    // Replaced at its version: now in workspace eu only.
    let in_eu = json!({ "spec": { "principal": { "kind": "User", "name": "carol" }, "role": "editors", "scope": "Workspace", "workspace": "eu" } });
    let replaced = send_json(
        &svc,
        put.clone(),
        "/api/v1/roleAssignments/carol-edit",
        Some(&manager),
        Some(&in_eu),
        Some(&etag),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.json()["version"], 2);
    svc.index_caught_up(ORG, Duration::from_secs(10)).await;
    assert_eq!(check("journeys.edit").await["allowed"], false);

    // Deleted: nothing granted any more; audited all along.
    let deleted =
        send(&svc, reqwest::Method::DELETE, "/api/v1/roleAssignments/carol-edit", Some(&manager)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    send(&svc, reqwest::Method::DELETE, "/api/v1/roleAssignments/carol-edit", Some(&manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    send(&svc, reqwest::Method::DELETE, "/api/v1/roleAssignments/alice-viewer", Some(&manager))
        .await
        .problem(StatusCode::CONFLICT, "managed-in-git");
    assert_eq!(audit_actions(&svc, "roleAssignment.create").await.len(), 1);
    assert_eq!(audit_actions(&svc, "roleAssignment.update").await.len(), 1);
    assert_eq!(audit_actions(&svc, "roleAssignment.delete").await.len(), 1);
    assert_eq!(audit_actions(&svc, "role.create").await.len(), 1);
}

async fn internal_groups_are_managed_and_idp_groups_are_read_only(svc: TokenService) {
    let viewer = client_token(&svc, "backend", BACKEND_SECRET).await;
    let manager = manager(&svc).await;
    let post = reqwest::Method::POST;
    send_json(
        &svc,
        post.clone(),
        "/api/v1/groups",
        Some(&viewer),
        Some(&json!({ "displayName": "Editors" })),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN, "forbidden");
    let created = send_json(
        &svc,
        post.clone(),
        "/api/v1/groups",
        Some(&manager),
        Some(&json!({ "displayName": "Editors" })),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let group = created.json();
    assert_eq!(group["source"], "internal");
    let id = group["id"].as_str().unwrap().to_owned();
    send_json(&svc, post, "/api/v1/groups", Some(&manager), Some(&json!({ "displayName": "editors" })), None)
        .await
        .problem(StatusCode::CONFLICT, "conflict");

    let member = format!("/api/v1/groups/{id}/members/{}", svc.alice_id);
    assert_eq!(send(&svc, reqwest::Method::PUT, &member, Some(&manager)).await.status, StatusCode::CREATED);
    assert_eq!(
        send(&svc, reqwest::Method::PUT, &member, Some(&manager)).await.status,
        StatusCode::NO_CONTENT
    );
    send(&svc, reqwest::Method::PUT, &format!("/api/v1/groups/{id}/members/no-such-user"), Some(&manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    let members = get(&svc, &format!("/api/v1/groups/{id}/members"), Some(&viewer)).await.json();
    assert_eq!(members["members"], json!([{ "userId": svc.alice_id, "userName": ALICE }]));

    // A membership change moves the group's version on: the creation's ETag is stale.
    let rename = json!({ "displayName": "Journey editors" });
    let group_path = format!("/api/v1/groups/{id}");
    send_json(
        &svc,
        reqwest::Method::PATCH,
        &group_path,
        Some(&manager),
        Some(&rename),
        Some(created.header("etag")),
    )
    .await
    .problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    let current = get(&svc, &group_path, Some(&viewer)).await;
    let renamed = send_json(
        &svc,
        reqwest::Method::PATCH,
        &group_path,
        Some(&manager),
        Some(&rename),
        Some(current.header("etag")),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.json()["members"], 1);

    let removed = send(&svc, reqwest::Method::DELETE, &member, Some(&manager)).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_eq!(audit_actions(&svc, "group.create").await.len(), 1);
    assert_eq!(audit_actions(&svc, "group.update").await.len(), 1);

    // A group the identity provider okta pushes: readable, never writable here.
    svc.store
        .sync_upstream_groups(ORG, "okta", &svc.alice_id, &["Okta admins".to_owned()], false)
        .await
        .unwrap();
    let okta = svc.store.find_group_by_name(ORG, "Okta admins").await.unwrap().expect("the provider's group");
    let path = format!("/api/v1/groups/{}", okta.id);
    let read = get(&svc, &path, Some(&viewer)).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(
        (read.json()["source"].as_str(), read.json()["identityProvider"].as_str()),
        (Some("idp"), Some("okta"))
    );
    let writes = [
        (reqwest::Method::PATCH, path.clone(), Some(json!({ "displayName": "Mine now" }))),
        (reqwest::Method::DELETE, path.clone(), None),
        (reqwest::Method::PUT, format!("{path}/members/{}", svc.alice_id), None),
        (reqwest::Method::DELETE, format!("{path}/members/{}", svc.alice_id), None),
    ];
    for (method, path, body) in writes {
        let answer = send_json(&svc, method, &path, Some(&manager), body.as_ref(), None).await;
        let problem = answer.problem(StatusCode::CONFLICT, "managed-by-identity-provider");
        assert_eq!(problem["identityProvider"], "okta", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("okta"), "{problem}");
    }
    assert_eq!(svc.store.count_members(ORG, &okta.id).await.unwrap(), 1, "nothing changed");

    let deleted = send(&svc, reqwest::Method::DELETE, &format!("/api/v1/groups/{id}"), Some(&manager)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
}

async fn another_tenant_reaches_nothing_of_acme(svc: TokenService) {
    let acme_manager = manager(&svc).await;
    let globex_token = {
        let response = http_client()
            .post(svc.url(OTHER_ORG, "/token"))
            .basic_auth("backend", Some(OTHER_BACKEND_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    };
    // A globex token on acme's API: 401, whatever the route.
    let alice = format!("/api/v1/users/{}", svc.alice_id);
    for (method, path) in [
        (reqwest::Method::GET, alice.clone()),
        (reqwest::Method::PATCH, alice.clone()),
        (reqwest::Method::DELETE, alice.clone()),
        (reqwest::Method::POST, "/api/v1/users".to_owned()),
        (reqwest::Method::GET, "/api/v1/groups".to_owned()),
        (reqwest::Method::PUT, "/api/v1/roleAssignments/x".to_owned()),
        (reqwest::Method::GET, "/api/v1/invitations".to_owned()),
        (reqwest::Method::POST, "/api/v1/invitations".to_owned()),
        (reqwest::Method::POST, "/api/v1/invitations/x/revoke".to_owned()),
        (reqwest::Method::GET, "/api/v1/posture".to_owned()),
        (reqwest::Method::GET, "/api/v1/audit".to_owned()),
        (reqwest::Method::GET, "/api/v1/audit/export".to_owned()),
    ] {
        send_json(&svc, method, &path, Some(&globex_token), Some(&json!({ "userName": "mallory" })), None)
            .await
            .problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert!(svc.store.find_user_by_name(ORG, "mallory").await.unwrap().is_none());

    // acme's manager on a globex user's id, through acme's API: 404, exactly
    // as for an id that exists nowhere; the globex user is untouched.
    let globex_user =
        svc.store.create_user(&NewUser::new(OTHER_ORG, "gina@globex.test", UserSource::Local)).await.unwrap();
    let path = format!("/api/v1/users/{}", globex_user.id);
    let unknown = get(&svc, "/api/v1/users/00000000-0000-0000-0000-000000000000", Some(&acme_manager)).await;
    let foreign = get(&svc, &path, Some(&acme_manager)).await;
    foreign.problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        foreign.json()["detail"].as_str().unwrap().replace(&globex_user.id, "ID"),
        unknown.json()["detail"].as_str().unwrap().replace("00000000-0000-0000-0000-000000000000", "ID")
    );
    for method in [reqwest::Method::DELETE, reqwest::Method::PATCH] {
        send_json(&svc, method, &path, Some(&acme_manager), Some(&json!({ "displayName": "x" })), None)
            .await
            .problem(StatusCode::NOT_FOUND, "not-found");
    }
    send(&svc, reqwest::Method::DELETE, &format!("{path}/sessions"), Some(&acme_manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    let still = svc.store.get_user(OTHER_ORG, &globex_user.id).await.unwrap().expect("untouched");
    assert_eq!(still.display_name, None);

    // The same for a globex invitation: not found, and still pending.
    let invitation = svc
        .store
        .create_invitation(&NewInvitation {
            organization: OTHER_ORG.into(),
            email: "gus@globex.test".into(),
            workspace: None,
            roles: Vec::new(),
            token_hash: SecretHash::of("a globex link"),
            invited_by: "gina@globex.test".into(),
            lifetime_ms: 3_600_000,
        })
        .await
        .unwrap();
    let path = format!("/api/v1/invitations/{}", invitation.id);
    get(&svc, &path, Some(&acme_manager)).await.problem(StatusCode::NOT_FOUND, "not-found");
    // (A resend answers 409 before any lookup here: this service has no SMTP server.)
    send(&svc, reqwest::Method::POST, &format!("{path}/revoke"), Some(&acme_manager))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    let still = svc.store.get_invitation(OTHER_ORG, &invitation.id).await.unwrap().expect("untouched");
    assert_eq!((still.status, still.sends), (InvitationStatus::Pending, 1));
}

/// Every method the router answers (anything but 405) on a path that
/// `src/token/service/admin/mod.rs` registers is an operation of the OpenAPI
/// document, and every operation of the document is routed: a route added
/// without its documentation fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_is_in_the_openapi_document() {
    let svc = start_with_auditor(sqlite_store().await).await;
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/token/service/admin/mod.rs"))
            .expect("read the admin router");
    let templates: std::collections::BTreeSet<&str> = source
        .match_indices("\"/o/{org}/api/v1")
        .filter_map(|(at, _)| source[at + 1..].split('"').next())
        .collect();
    assert!(templates.len() >= 15, "the router's paths: {templates:?}");
    let document = openapi::OpenApi::of(&svc.issuer(ORG)).await;
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ];
    let mut routed = std::collections::BTreeSet::new();
    for template in &templates {
        let path = template
            .split('/')
            .map(|segment| match segment {
                "{org}" => ORG,
                s if s.starts_with('{') => "probe",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in &methods {
            // No token: whatever answers is itself described (a 401, or the document).
            let response = http_client()
                .request(method.clone(), format!("{}{path}", svc.base_url))
                .send()
                .await
                .expect("the service answers");
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            let status = response.status().as_u16();
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.text().await.expect("read the body");
            document.assert_describes(method.as_str(), &path, status, content_type.as_deref(), &body);
            let relative = template.strip_prefix("/o/{org}").expect("an issuer path");
            routed.insert((relative.to_owned(), method.as_str().to_ascii_lowercase()));
        }
    }
    let described: std::collections::BTreeSet<(String, String)> = document.document()["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("a path item").keys().map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    assert_eq!(routed, described, "routed (left) and documented (right) operations differ");
}

/// The validator the tests above rely on refuses what the document does not
/// describe: a wrong field, a missing field, a problem document without its
/// detail, an undeclared status, another media type, an unknown path or method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_validator_refuses_answers_the_document_does_not_describe() {
    let svc = start_with_auditor(sqlite_store().await).await;
    let manager = manager(&svc).await;
    let document = openapi::OpenApi::of(&svc.issuer(ORG)).await;
    let path = format!("/o/{ORG}/api/v1/users");
    let json = Some("application/json");

    let users = get(&svc, "/api/v1/users", Some(&manager)).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.text);
    document.check("GET", &path, 200, json, &users.text).expect("the real answer is described");

    let mut wrong = users.json();
    wrong["users"][0]["active"] = json!("yes");
    let finding = document.check("GET", &path, 200, json, &wrong.to_string()).unwrap_err();
    assert!(finding.contains("/users/0/active"), "{finding}");
    let mut missing = users.json();
    missing.as_object_mut().unwrap().remove("users");
    assert!(document.check("GET", &path, 200, json, &missing.to_string()).is_err());

    let refused = get(&svc, "/api/v1/users", None).await;
    let problem_type = Some("application/problem+json");
    document.check("GET", &path, 401, problem_type, &refused.text).expect("the real refusal is described");
    let mut problem = refused.json();
    problem.as_object_mut().unwrap().remove("detail");
    assert!(document.check("GET", &path, 401, problem_type, &problem.to_string()).is_err());
    assert!(document.check("GET", &path, 401, json, &refused.text).unwrap_err().contains("Content-Type"));

    let finding = document.check("GET", &path, 418, json, &users.text).unwrap_err();
    assert!(finding.contains("418"), "{finding}");
    assert!(document.check("PUT", &path, 200, json, &users.text).is_err());
    assert!(document.check("GET", &format!("/o/{ORG}/api/v1/nothing"), 200, json, "{}").is_err());
}
