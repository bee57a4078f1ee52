//! The admin API's and the audit trail's speed targets (issue 16), on a
//! durable PostgreSQL server (`fsync` and `synchronous_commit` on,
//! `support/postgres.rs`):
//!
//! - pages of 100 users, and searches, at 100,000 users, over real HTTP;
//! - a user with its effective permissions and their trail (10,000 role
//!   assignments in the organization);
//! - what appending an audit event adds to a write's transaction;
//! - `portcullis audit verify` of an export of 1,000,000 events.
//!
//! Not tests: ignored, run on request (see BENCHMARKS.md):
//!
//! ```text
//! cargo test --release --workspace --test admin_benchmarks -- --ignored --nocapture --test-threads 1
//! ```

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::io::{BufWriter, Write as _};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::audit::{AuditContext, AuditEntry, AuditEvent, ChainLink, GENESIS_HASH, Target};
use portcullis::store::*;
use serde_json::Value;
use token_support::*;

const USERS: i64 = 100_000;
const ASSIGNMENTS: i64 = 10_000;
const PAGES: usize = 300;
const SEARCHES: usize = 100;
const GETS: usize = 500;
const WRITES: usize = 1_000;
const EXPORTED_EVENTS: i64 = 1_000_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64) * p).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn report(what: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.50), percentile(samples, 0.99));
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms (n={})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
    (p50, p99)
}

fn user_name(i: i64) -> String {
    format!("user-{i:06}@acme.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on request with --ignored (BENCHMARKS.md)"]
async fn admin_api_with_100k_users_on_durable_postgres() {
    let server = tokio::task::spawn_blocking(postgres::Postgres::start_durable).await.unwrap();
    let url = server.create_database();
    let store = Store::connect(&url).await.expect("connect");
    let svc = start(store.clone()).await;

    // 100,000 users with SQL, and 10,000 of them assigned the viewer role
    // (every other one in workspace eu as well) through the store.
    let pool = sqlx::postgres::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, organization, user_name, user_name_key, given_name, family_name, active, source, \
         created_ms, updated_ms, version) \
         SELECT md5(i::text), 'acme', 'user-' || lpad(i::text, 6, '0') || '@acme.example', \
         'user-' || lpad(i::text, 6, '0') || '@acme.example', 'Bench', 'User ' || i, TRUE, 'scim', 0, 0, 1 \
         FROM generate_series(0::bigint, $1::bigint) AS i",
    )
    .bind(USERS - 1)
    .execute(&pool)
    .await
    .unwrap();
    let loading = Instant::now();
    for i in 0..ASSIGNMENTS {
        let workspace = (i % 2 == 1).then_some("eu");
        let name = format!("bench-{i}");
        store
            .apply(&assignment(ORG, &name, PrincipalKind::User, &user_name(i * 7), "viewer", workspace))
            .await
            .unwrap();
    }
    println!("{ASSIGNMENTS} assignments stored one by one in {:.1} s", loading.elapsed().as_secs_f64());
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    assert_eq!(store.count_users(ORG).await.unwrap(), USERS as u64 + 1, "and alice");

    let client = http_client();
    let token = {
        let answer: Value = client
            .post(svc.url(ORG, "/token"))
            .basic_auth("backend", Some(BACKEND_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    };
    let get = |path: String| {
        let request = client.get(svc.url(ORG, &path)).bearer_auth(&token);
        async move {
            let started = Instant::now();
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            let body: Value = answer.json().await.unwrap();
            (started.elapsed(), body)
        }
    };
    // The first answer builds the access index of 10,000 assignments.
    let (first, _) = get(format!("/api/v1/users/{}", svc.alice_id)).await;
    println!("first answer (access index built): {:.1} ms", first.as_secs_f64() * 1e3);

    let mut samples = Vec::with_capacity(PAGES);
    for n in 0..PAGES as i64 {
        let cursor = URL_SAFE_NO_PAD.encode(user_name((n * 7919) % USERS));
        let (took, body) = get(format!("/api/v1/users?limit=100&cursor={cursor}")).await;
        assert!(!body["users"].as_array().unwrap().is_empty());
        samples.push(took);
    }
    report("GET /api/v1/users?limit=100&cursor=…, 100,000 users", &mut samples);

    let mut samples = Vec::with_capacity(SEARCHES);
    for n in 0..SEARCHES {
        let (took, body) = get(format!("/api/v1/users?limit=100&search=r-0{}", n % 10)).await;
        assert_eq!(body["users"].as_array().unwrap().len(), 100);
        samples.push(took);
    }
    report("GET /api/v1/users?limit=100&search=r-0N (10% of users match)", &mut samples);

    let ids: Vec<String> =
        sqlx::query_scalar("SELECT md5((i * 7)::text) FROM generate_series(0::bigint, $1::bigint) AS i")
            .bind(GETS as i64 - 1)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut samples = Vec::with_capacity(GETS);
    for id in &ids {
        let (took, body) = get(format!("/api/v1/users/{id}")).await;
        let scopes = body["access"]["scopes"].as_array().unwrap();
        assert!(scopes.iter().any(|s| !s["permissions"].as_array().unwrap().is_empty()), "{body}");
        samples.push(took);
    }
    report("GET /api/v1/users/{id} with effective permissions and trail", &mut samples);
    svc.stop().await;
}

/// A write with and without its audit event, alternated on one connection
/// pool: the same user update in a transaction, plus the audit row the
/// store appends inside the write's transaction (`src/store/audit.rs`, the
/// same columns and a typical event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on request with --ignored (BENCHMARKS.md)"]
async fn audit_append_adds_to_a_write_on_durable_postgres() {
    let server = tokio::task::spawn_blocking(postgres::Postgres::start_durable).await.unwrap();
    let url = server.create_database();
    let store = Store::connect(&url).await.expect("connect and migrate");
    let user = store.create_user(&NewUser::new(ORG, ALICE, UserSource::Local)).await.unwrap();
    let pool = sqlx::postgres::PgPool::connect(&url).await.unwrap();
    let context = AuditContext::system("benchmark");
    let (mut plain, mut audited) = (Vec::with_capacity(WRITES), Vec::with_capacity(WRITES));
    for n in 0..WRITES * 2 {
        let with_audit = n % 2 == 1;
        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "UPDATE users SET display_name = $1, version = version + 1, updated_ms = $2 WHERE id = $3",
        )
        .bind(format!("Alice {n}"))
        .bind(n as i64)
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .unwrap();
        if with_audit {
            let entry = AuditEntry::success("user.update", Target::new("user", Some(&user.id), Some(ALICE)))
                .with_details(serde_json::json!({ "changed": ["displayName"] }));
            let event = AuditEvent::new(ORG, &context, entry, n as i64);
            sqlx::query(
                "INSERT INTO audit_events (organization, occurred_ms, action, outcome, actor_subject, actor_name, \
                 actor_client, actor_idp, target_type, target_id, target_name, event_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(ORG)
            .bind(n as i64)
            .bind(&event.action)
            .bind(event.outcome.as_str())
            .bind(&event.actor.subject)
            .bind(&event.actor.name)
            .bind(&event.actor.client)
            .bind(&event.actor.identity_provider)
            .bind(&event.target.kind)
            .bind(&event.target.id)
            .bind(&event.target.name)
            .bind(event.to_json())
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        if with_audit { &mut audited } else { &mut plain }.push(started.elapsed());
    }
    let (plain_p50, plain_p99) =
        report("a user update (durable commit), without its audit event", &mut plain);
    let (audited_p50, audited_p99) = report("the same update with its audit event appended", &mut audited);
    println!(
        "added by the audit append: p50 {:+.3} ms, p99 {:+.3} ms",
        (audited_p50.as_secs_f64() - plain_p50.as_secs_f64()) * 1e3,
        (audited_p99.as_secs_f64() - plain_p99.as_secs_f64()) * 1e3
    );
}

/// `portcullis audit verify` (the binary, as a user runs it) of an export
/// of 1,000,000 chained events, written here the way the store seals them.
#[test]
#[ignore = "benchmark: run on request with --ignored (BENCHMARKS.md)"]
fn audit_verify_of_a_million_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
    let context = AuditContext::system("benchmark");
    let (mut seq, mut hash) = (0_i64, GENESIS_HASH.to_owned());
    for n in 0..EXPORTED_EVENTS {
        let id = format!("user-{n}");
        let entry = AuditEntry::success("user.update", Target::new("user", Some(&id), Some(&id)));
        let event = AuditEvent::new(ORG, &context, entry, 1_780_000_000_000 + n);
        let link = ChainLink::after(seq, &hash, event.to_json());
        writeln!(out, "{}", link.to_line()).unwrap();
        (seq, hash) = (link.seq, link.hash);
    }
    out.flush().unwrap();
    drop(out);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let mut samples = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["audit", "verify", path.to_str().unwrap(), "--head", &hash])
            .output()
            .unwrap();
        samples.push(started.elapsed());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    samples.sort();
    println!(
        "portcullis audit verify, {EXPORTED_EVENTS} events ({:.0} MB): median {:.2} s of 3 runs (min {:.2} s, max {:.2} s)",
        bytes as f64 / 1e6,
        samples[1].as_secs_f64(),
        samples[0].as_secs_f64(),
        samples[2].as_secs_f64()
    );
}
