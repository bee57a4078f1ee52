//! SCIM service measurements over real HTTP on a real PostgreSQL server
//! (`support/postgres.rs`) holding 100,000 users: `userName eq` lookups,
//! user creates per second, adding one member to a 50,000-member group, and
//! a page of 100 users under a `co` filter. Not a test: ignored, run on
//! request (see BENCHMARKS.md):
//!
//! ```text
//! cargo test --release --test scim_benchmarks -- --ignored --nocapture
//! ```

#[path = "support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use portcullis::scim::service::{ScimState, router};
use portcullis::store::*;
use serde_json::{Value, json};

const TOKEN: &str = "benchmark-scim-token";
const USERS: i64 = 100_000;
/// Of which created one by one over HTTP (the rest are loaded with SQL): the
/// first ones while the pool opens its connections and each PostgreSQL
/// backend fills its catalog caches (once per connection), reported apart;
/// then the ones timed as the sustained rate, what an IdP's import of a
/// directory sees.
const CREATED_WARMING_UP: usize = 400;
const CREATED_OVER_HTTP: usize = 6_400;
const CREATE_CONCURRENCY: usize = 16;
const GROUP_MEMBERS: i64 = 50_000;
const LOOKUPS: usize = 500;
const MEMBER_ADDS: usize = 200;
const CO_PAGES: usize = 50;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64) * p).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn report(what: &str, samples: &mut [Duration]) {
    let p50 = percentile(samples, 0.50);
    let p99 = percentile(samples, 0.99);
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms (n={})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
}

fn user_name(i: i64) -> String {
    format!("user-{i:06}@acme.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run on request with --ignored (BENCHMARKS.md)"]
async fn scim_with_100k_users_on_postgres() {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
    let store = Store::connect(&url).await.expect("connect");
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org", "acme", "acme", 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: json!({"displayName": "Acme", "provisioning": {"mode": "scim"}}).to_string(),
        })
        .await
        .unwrap();
    store
        .apply(&IdentityProviderRecord {
            meta: ObjectMeta::new("uid-idp", "acme", "okta", 1),
            protocol: "oidc".into(),
            stage: "Enforced".into(),
            email_domains: Vec::new(),
            scim_enabled: true,
            spec_json: "{}".into(),
        })
        .await
        .unwrap();
    let hash = portcullis::secret::SecretHash::of(TOKEN).to_string();
    assert!(store.set_scim_token_hash("acme", "okta", Some(&hash)).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(ScimState::new(store.clone(), &base));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let scim = format!("{base}/o/acme/scim/v2");
    let client = reqwest::Client::new();

    // Creates over HTTP, several clients at once: a warm-up, then the timed run.
    let warm_up = create_users(&client, &scim, 0..CREATED_WARMING_UP).await;
    let sustained = create_users(&client, &scim, CREATED_WARMING_UP..CREATED_OVER_HTTP).await;
    for (what, range, took) in [
        ("first (pool opening)", 0..CREATED_WARMING_UP, warm_up),
        ("sustained", CREATED_WARMING_UP..CREATED_OVER_HTTP, sustained),
    ] {
        println!(
            "user creates over HTTP, {what}: {:.0}/s ({} users, {CREATE_CONCURRENCY} concurrent clients, {:.2} s)",
            range.len() as f64 / took.as_secs_f64(),
            range.len(),
            took.as_secs_f64()
        );
    }

    // The rest of the 100,000 users, and a 50,000-member group, with SQL.
    let pool = sqlx::postgres::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, organization, user_name, user_name_key, given_name, family_name, active, source, \
         created_ms, updated_ms, version, provisioned_by) \
         SELECT md5(i::text), 'acme', 'user-' || lpad(i::text, 6, '0') || '@acme.example', \
         'user-' || lpad(i::text, 6, '0') || '@acme.example', 'Bench', 'User ' || i, TRUE, 'scim', 0, 0, 1, 'okta' \
         FROM generate_series($1::bigint, $2::bigint) AS i",
    )
    .bind(CREATED_OVER_HTTP as i64)
    .bind(USERS - 1)
    .execute(&pool)
    .await
    .unwrap();
    let group = client
        .post(format!("{scim}/Groups"))
        .bearer_auth(TOKEN)
        .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone"}))
        .send()
        .await
        .unwrap();
    let group: Value = group.json().await.unwrap();
    let group_id = group["id"].as_str().unwrap().to_owned();
    sqlx::query("INSERT INTO memberships (group_id, user_id) SELECT $1, id FROM users WHERE organization = 'acme' ORDER BY id LIMIT $2")
        .bind(&group_id)
        .bind(GROUP_MEMBERS)
        .execute(&pool)
        .await
        .unwrap();
    // A deployment's autovacuum keeps statistics fresh and the trigram
    // index's pending list merged; after a bulk load, do it at once.
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    assert_eq!(store.count_users("acme").await.unwrap(), USERS as u64);

    // userName eq, as Okta and Entra ID look users up.
    let mut samples = Vec::with_capacity(LOOKUPS);
    for n in 0..LOOKUPS {
        let i = (n as i64 * 7919) % USERS;
        let filter = format!("userName eq \"{}\"", user_name(i).to_uppercase());
        let started = Instant::now();
        let answer = client
            .get(format!("{scim}/Users"))
            .query(&[("filter", &filter)])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let body: Value = answer.json().await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(body["totalResults"], 1, "{filter}");
    }
    report("GET /Users?filter=userName eq, 100,000 users", &mut samples);

    // Adding one member to the 50,000-member group (Okta's PATCH shape).
    let outsiders: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE organization = 'acme' AND id NOT IN \
         (SELECT user_id FROM memberships WHERE group_id = $1) ORDER BY id LIMIT $2",
    )
    .bind(&group_id)
    .bind(MEMBER_ADDS as i64)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut samples = Vec::with_capacity(MEMBER_ADDS);
    for user in &outsiders {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}],
        });
        let started = Instant::now();
        let answer = client
            .patch(format!("{scim}/Groups/{group_id}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        samples.push(started.elapsed());
        assert_eq!(answer.status(), 204);
    }
    report("PATCH /Groups/{id} add one member, 50,000-member group", &mut samples);
    assert_eq!(
        store.count_members("acme", &group_id).await.unwrap(),
        GROUP_MEMBERS as u64 + MEMBER_ADDS as u64
    );

    // A page of 100 users under a `co` filter.
    let mut samples = Vec::with_capacity(CO_PAGES);
    for n in 0..CO_PAGES {
        let filter = format!("userName co \"r-0{}\"", n % 10);
        let started = Instant::now();
        let answer = client
            .get(format!("{scim}/Users"))
            .query(&[("filter", filter.as_str()), ("count", "100"), ("startIndex", "1")])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let body: Value = answer.json().await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(body["itemsPerPage"], 100, "{filter}");
    }
    report("GET /Users?filter=userName co …&count=100, 100,000 users", &mut samples);
    // How PostgreSQL answers the totalResults count of such a page.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT COUNT(*) FROM users u WHERE u.organization = 'acme' \
         AND (u.user_name_key IS NOT NULL AND u.user_name_key LIKE '%r-03%' ESCAPE '\\')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    println!("plan of the `co` count:\n  {}", plan.join("\n  "));
}

/// Creates the users numbered `range` with `POST /Users`, from
/// [`CREATE_CONCURRENCY`] clients at once; how long it took.
async fn create_users(client: &reqwest::Client, scim: &str, range: std::ops::Range<usize>) -> Duration {
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CREATE_CONCURRENCY {
        let (client, scim, range) = (client.clone(), scim.to_owned(), range.clone());
        workers.push(tokio::spawn(async move {
            for i in range.skip(worker).step_by(CREATE_CONCURRENCY) {
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name(i as i64),
                    "name": {"givenName": "Bench", "familyName": format!("User {i}")},
                    "emails": [{"value": user_name(i as i64), "type": "work", "primary": true}],
                });
                let answer =
                    client.post(format!("{scim}/Users")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
                assert_eq!(answer.status(), 201);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed()
}
