//! The admin API over real HTTP (the token service on loopback, reqwest), on
//! SQLite and on a real PostgreSQL server: the audit trail is read, paged,
//! filtered, verified and exported with `iam.export-audit`, and refused with
//! an RFC 9457 problem document without it; the export verifies with the
//! real `portcullis audit verify` against the head the API reported.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::time::Duration;

use portcullis::audit::{Actor, AuditContext, Source};
use portcullis::secret::{SecretHash, SecretString};
use portcullis::store::*;
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
);

/// The seeded token service, plus `iam.export-audit` and `iam.manage` in
/// acme's catalog, a role `auditor` (iam.export-audit) and a role
/// `iam-manager` (iam.view, iam.manage), and clients `auditor` and `manager`
/// assigned them.
async fn start_with_auditor(store: Store) -> TokenService {
    let svc = start(store).await;
    let catalog =
        ["iam.view", "iam.export-audit", "iam.manage", "journeys.view", "journeys.edit", "journeys.publish"];
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
        ("iam-manager", vec!["iam.view", "iam.manage"], "manager", MANAGER_SECRET),
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

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
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
    let mut request = http_client().request(method, svc.url(ORG, path_and_query));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status();
    let headers = response.headers().clone();
    Answer { status, headers, text: response.text().await.expect("read the body") }
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
