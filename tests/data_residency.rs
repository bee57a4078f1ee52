//! Data residency in the services: `portcullis token-service` and
//! `portcullis scim-service` (the real binary) on three databases of the real
//! PostgreSQL from `support/postgres.rs` — the default store and the stores
//! of regions `eu` and `us` — each organization seeded into its region's
//! store as the operator does. Every request is routed by its organization
//! to that store alone; the stores are then read directly to show that
//! nothing of one region's organization reached another store.
//!
//! ```text
//!  test ──/o/acme/…───► token-service ─┬─► eu store   (acme)
//!       ──/o/globex/…─► scim-service  ─┼─► us store   (globex, later initech)
//!                                      └─► default    (no organization)
//! ```
//!
//! Moving an organization between regions runs the script of
//! docs/data-residency.md as the guide shows it, between two of the stores.
//!
//! The operator's side (where it writes, the refused change, the unknown
//! region) is in `tests/operator.rs`. `standalone` keeps one SQLite file and
//! serves an organization with a `dataResidency` all the same.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/standalone.rs"]
mod standalone;
#[path = "support/token_service.rs"]
mod token_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use portcullis::resources::signing_keys;
use portcullis::sealing::{KeyEncryptionKey, KeyRing};
use portcullis::secret::{SecretHash, SecretString};
use portcullis::store::*;
use portcullis::token::keys::{Algorithm, RotationPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection as _, Row as _};
use token_support::{eventually, http_client};

const DEADLINE: Duration = Duration::from_secs(30);
const LOGIN_SECRET: &str = "residency-tests-share-this-login-secret-0123456789";
const CLIENT_SECRET: &str = "backend-secret-0123456789abcdefghijklmnopqrstuv";

/// A process of the binary, killed when dropped.
struct Process {
    base: String,
    metrics: String,
    _child: tokio::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// The three stores' URLs.
struct Urls {
    default: String,
    eu: String,
    us: String,
}

/// Starts `subcommand` on the default store, `eu` given by URL and `us` by a
/// file (both forms of the flag), and awaits `/readyz`.
async fn spawn(subcommand: &str, urls: &Urls, us_file: &std::path::Path, kek: &str) -> Process {
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg(subcommand)
        .args(["--database-url", &urls.default])
        .args(["--store", &format!("eu={}", urls.eu)])
        .args(["--store-file", &format!("us={}", us_file.display())])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--public-base-url", &base])
        .env("PORTCULLIS_KEY_ENCRYPTION_KEY", kek)
        .env("PORTCULLIS_LOGIN_SECRET", LOGIN_SECRET)
        .env("RUST_LOG", "warn,webauthn_rs=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start portcullis");
    let client = http_client();
    let url = format!("{base}/readyz");
    eventually(&format!("{subcommand} answers {url}"), DEADLINE, || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    Process { base, metrics: format!("http://127.0.0.1:{metrics_port}/metrics"), _child: child }
}

fn meta(namespace: &str, kind: &str, name: &str) -> ObjectMeta {
    ObjectMeta::new(format!("{namespace}-{kind}-{name}"), namespace, name, 1)
}

/// An organization as the operator writes it into its region's store: SCIM
/// provisioning from IdP `okta` (bearer `scim_token`), a client_credentials
/// client `backend`, and a first signing key sealed under `kek`.
async fn seed_organization(store: &Store, kek: &KeyRing, name: &str, scim_token: &str) {
    let spec = json!({
        "displayName": name,
        "provisioning": { "mode": "scim" },
        "tokens": { "accessTokenLifetime": "15m", "refreshTokenLifetime": "720h", "signingAlgorithm": "ES256" },
    });
    store
        .apply(&OrganizationRecord {
            meta: meta(name, "org", name),
            display_name: name.into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: spec.to_string(),
        })
        .await
        .expect("store the organization");
    store
        .apply(&IdentityProviderRecord {
            meta: meta(name, "idp", "okta"),
            protocol: "oidc".into(),
            stage: "Enforced".into(),
            email_domains: Vec::new(),
            scim_enabled: true,
            spec_json: json!({ "type": "OIDC", "scim": { "enabled": true } }).to_string(),
        })
        .await
        .expect("store the identity provider");
    let token_hash = SecretHash::of(scim_token).to_string();
    assert!(store.set_scim_token_hash(name, "okta", Some(&token_hash)).await.expect("store the SCIM token"));
    let client = json!({ "type": "Confidential", "grantTypes": ["client_credentials"] });
    store
        .apply(&OAuthClientRecord {
            meta: meta(name, "client", "backend"),
            client_type: "confidential".into(),
            redirect_uris: Vec::new(),
            spec_json: client.to_string(),
            secret_hash: None,
        })
        .await
        .expect("store the client");
    let secret = SecretString::new(SecretHash::of(CLIENT_SECRET).to_string());
    assert!(store.set_oauth_client_secret_hash(name, "backend", Some(&secret)).await.expect("client secret"));
    let rotation =
        RotationPolicy::new(Algorithm::ES256, SignedDuration::from_hours(2), SignedDuration::from_hours(1))
            .unwrap();
    signing_keys::rotate(store, kek, name, &Default::default(), &rotation, Timestamp::now())
        .await
        .expect("the organization's first signing key");
}

/// The organizations (namespaces) that have rows in each table of the store
/// at `url`, read directly with SQL.
async fn organizations_per_table(url: &str) -> BTreeMap<&'static str, Vec<String>> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect to a store");
    let mut found = BTreeMap::new();
    for (table, column) in [
        ("organizations", "namespace"),
        ("identity_providers", "namespace"),
        ("oauth_clients", "namespace"),
        ("signing_keys", "organization"),
        ("scim_tokens", "organization"),
        ("users", "organization"),
        ("revoked_access_tokens", "organization"),
        ("audit_events", "organization"),
    ] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT {column} AS organization FROM {table} ORDER BY {column}"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
        found.insert(table, rows.iter().map(|row| row.get::<String, _>("organization")).collect());
    }
    conn.close().await.ok();
    found
}

async fn scim_create_user(scim: &Process, organization: &str, token: &str, user_name: &str) -> Value {
    let response = http_client()
        .post(format!("{}/o/{organization}/scim/v2/Users", scim.base))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .json(&json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name }))
        .send()
        .await
        .expect("POST /Users");
    let status = response.status();
    let body: Value = response.json().await.expect("a SCIM answer");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn client_token(tokens: &Process, organization: &str) -> String {
    let response = http_client()
        .post(format!("{}/o/{organization}/token", tokens.base))
        .basic_auth("backend", Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("POST /token");
    let status = response.status();
    let body: Value = response.json().await.expect("a token answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("an access token").to_owned()
}

async fn revoke(tokens: &Process, organization: &str, token: &str) {
    let response = http_client()
        .post(format!("{}/o/{organization}/revoke", tokens.base))
        .basic_auth("backend", Some(CLIENT_SECRET))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .expect("POST /revoke");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn discovery_status(tokens: &Process, organization: &str) -> StatusCode {
    http_client()
        .get(format!("{}/o/{organization}/.well-known/openid-configuration", tokens.base))
        .send()
        .await
        .expect("GET discovery")
        .status()
}

/// Three new databases (the default store, eu, us), the us store's URL in a
/// file of the returned directory, and a key-encryption key (as text and ring).
async fn regions() -> (Urls, tempfile::TempDir, std::path::PathBuf, zeroize::Zeroizing<String>, KeyRing) {
    let urls = tokio::task::spawn_blocking(|| {
        let server = postgres::Postgres::shared();
        Urls { default: server.create_database(), eu: server.create_database(), us: server.create_database() }
    })
    .await
    .expect("create three databases");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let us_file = dir.path().join("us-url");
    std::fs::write(&us_file, format!("{}\n", urls.us)).expect("write the us store's URL file");
    let kek_text = KeyEncryptionKey::generate_text().expect("a key-encryption key");
    let kek = KeyRing::new(KeyEncryptionKey::from_text(&kek_text).unwrap(), Vec::new());
    (urls, dir, us_file, kek_text, kek)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_organization_is_served_from_and_written_to_its_regions_store_only() {
    let (urls, _dir, us_file, kek_text, kek) = regions().await;

    // The services migrate all three stores; then each organization goes to its region's.
    let tokens = spawn("token-service", &urls, &us_file, &kek_text).await;
    let scim = spawn("scim-service", &urls, &us_file, &kek_text).await;
    let eu = Store::connect(&urls.eu).await.expect("the eu store");
    let us = Store::connect(&urls.us).await.expect("the us store");
    seed_organization(&eu, &kek, "acme", "acme-scim-token-0123456789abcdef").await;
    seed_organization(&us, &kek, "globex", "globex-scim-token-0123456789abcdef").await;

    // SCIM writes and tokens of each organization, each through its own URL.
    let ada = scim_create_user(&scim, "acme", "acme-scim-token-0123456789abcdef", "ada@acme.test").await;
    scim_create_user(&scim, "globex", "globex-scim-token-0123456789abcdef", "grace@globex.test").await;
    let acme_token = client_token(&tokens, "acme").await;
    let globex_token = client_token(&tokens, "globex").await;
    revoke(&tokens, "acme", &acme_token).await;
    revoke(&tokens, "globex", &globex_token).await;
    // Read back through the service: the user is found where it was written.
    let read = http_client()
        .get(format!("{}/o/acme/scim/v2/Users/{}", scim.base, ada["id"].as_str().unwrap()))
        .bearer_auth("acme-scim-token-0123456789abcdef")
        .send()
        .await
        .expect("GET the user");
    assert_eq!(read.status(), StatusCode::OK);

    // Each store holds its region's organization and nothing of the other's.
    let (in_eu, in_us, in_default) = (
        organizations_per_table(&urls.eu).await,
        organizations_per_table(&urls.us).await,
        organizations_per_table(&urls.default).await,
    );
    for (store, found, organization) in [("eu", &in_eu, "acme"), ("us", &in_us, "globex")] {
        for (table, organizations) in found {
            assert!(
                organizations.iter().all(|o| o == organization),
                "{table} of the {store} store holds {organizations:?}"
            );
        }
        // What the requests above wrote is there.
        for table in ["organizations", "signing_keys", "scim_tokens", "users", "revoked_access_tokens"] {
            assert_eq!(found[table], [organization], "{table} of the {store} store");
        }
    }
    for (table, organizations) in &in_default {
        assert!(organizations.is_empty(), "{table} of the default store holds {organizations:?}");
    }

    // An organization unknown everywhere is the service's own 404.
    assert_eq!(discovery_status(&tokens, "initech").await, StatusCode::NOT_FOUND);
    let unknown = http_client()
        .get(format!("{}/o/initech/scim/v2/Users", scim.base))
        .bearer_auth("initech-scim-token-0123456789abcdef")
        .send()
        .await
        .expect("GET /Users");
    // (SCIM authenticates first: a token of no organization is refused.)
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    // Added while the services run, and found in two regions' stores (a
    // move left half done): served by neither until one copy is gone.
    seed_organization(&us, &kek, "initech", "initech-scim-token-0123456789abcdef").await;
    let stray = OrganizationRecord {
        meta: meta("initech", "org", "initech"),
        display_name: "initech".into(),
        catalog: Vec::new(),
        workspaces: Vec::new(),
        spec_json: json!({ "displayName": "initech" }).to_string(),
    };
    eu.apply(&stray).await.expect("a second copy of initech in the eu store");
    eventually("initech, in two stores, is served by neither", DEADLINE, || async {
        (discovery_status(&tokens, "initech").await == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    eu.delete::<OrganizationRecord>(&stray.meta).await.expect("remove the copy");
    eventually("initech is served from the us store", DEADLINE, || async {
        (discovery_status(&tokens, "initech").await == StatusCode::OK).then_some(())
    })
    .await;
    scim_create_user(&scim, "initech", "initech-scim-token-0123456789abcdef", "ines@initech.test").await;
    let initech_users: i64 = {
        let mut conn = sqlx::AnyConnection::connect(&urls.us).await.unwrap();
        sqlx::query("SELECT COUNT(*) AS n FROM users WHERE organization = 'initech'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n")
    };
    assert_eq!(initech_users, 1);

    // One service per store, one exposition per process: each family once.
    for process in [&tokens, &scim] {
        let text = http_client().get(&process.metrics).send().await.unwrap().text().await.unwrap();
        let mut families: Vec<&str> = text.lines().filter(|line| line.starts_with("# TYPE ")).collect();
        let listed = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), listed, "a metric family appears twice:\n{text}");
        assert!(text.contains("organization=\"acme\""), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_an_organization_with_a_data_residency_from_its_one_file() {
    let server = standalone::Standalone::start_acme(|folder, _| {
        let path = folder.join("organization.yaml");
        let text = std::fs::read_to_string(&path).expect("read the organization");
        assert!(text.contains("  # dataResidency: eu\n"), "the example's commented line moved");
        std::fs::write(&path, text.replace("  # dataResidency: eu\n", "  dataResidency: eu\n")).unwrap();
    })
    .await;
    let secret = server.client_secret("ci-deployer").await;
    let (status, body) = server.client_credentials("ci-deployer", &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The script of docs/data-residency.md's "Moving an organization to
/// another region", as the guide shows it.
fn move_script() -> String {
    let guide = std::fs::read_to_string(token_support::repo().join("docs/data-residency.md"))
        .expect("read docs/data-residency.md");
    let (_, after) = guide.split_once("<!-- move-organization:").expect("the script's start marker");
    let (block, _) = after.split_once("<!-- move-organization: end -->").expect("the script's end marker");
    let (_, code) = block.split_once("```bash\n").expect("the script's code block");
    code.trim_end().strip_suffix("```").expect("the code block's end").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_moves_between_regions_as_the_guide_says() {
    let (urls, _dir, us_file, kek_text, kek) = regions().await;
    const ACME_SCIM: &str = "acme-scim-token-0123456789abcdef";

    // acme lives in eu, with users, a group, a second factor and an audit trail;
    // globex in us already (the move must not disturb it).
    let (tokens, scim) = (
        spawn("token-service", &urls, &us_file, &kek_text).await,
        spawn("scim-service", &urls, &us_file, &kek_text).await,
    );
    let eu = Store::connect(&urls.eu).await.expect("the eu store");
    let us = Store::connect(&urls.us).await.expect("the us store");
    seed_organization(&eu, &kek, "acme", ACME_SCIM).await;
    seed_organization(&us, &kek, "globex", "globex-scim-token-0123456789abcdef").await;
    scim_create_user(&scim, "globex", "globex-scim-token-0123456789abcdef", "grace@globex.test").await;
    let ada = scim_create_user(&scim, "acme", ACME_SCIM, "ada@acme.test").await;
    let ada_id = ada["id"].as_str().expect("ada's id").to_owned();
    let group = http_client()
        .post(format!("{}/o/acme/scim/v2/Groups", scim.base))
        .bearer_auth(ACME_SCIM)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "members": [{ "value": ada_id }],
        }))
        .send()
        .await
        .expect("POST /Groups");
    assert_eq!(group.status(), StatusCode::CREATED);
    let group: Value = group.json().await.expect("the group");
    let totp = MfaFactor::Totp { sealed_secret: SecretString::new("sealed-by-the-test") };
    eu.add_mfa_enrolment("acme", &ada_id, Some("phone"), &totp, 1).await.expect("a second factor");
    client_token(&tokens, "acme").await;
    // Sealed now, as the services' sealers would shortly.
    eu.seal_audit("acme").await.expect("seal acme's audit trail");
    let events_before = eu.audit_head("acme").await.expect("the head").expect("acme has a trail").seq;
    assert!(events_before >= 2, "the user and the group were audited: {events_before} events");

    // 1. Traffic stopped. 2. The guide's script, eu → us.
    drop((tokens, scim));
    let moved = tokio::process::Command::new("bash")
        .args(["-c", &move_script()])
        .env("OLD", &urls.eu)
        .env("NEW", &urls.us)
        .env("ORG", "acme")
        .output()
        .await
        .expect("run the guide's script");
    assert!(moved.status.success(), "the script failed: {}", String::from_utf8_lossy(&moved.stderr));

    // Nothing of acme stays in eu.
    for (table, organizations) in organizations_per_table(&urls.eu).await {
        assert!(organizations.is_empty(), "{table} of the eu store still holds {organizations:?}");
    }
    // 3. The services, started again, serve acme from us: its signing key,
    // client, SCIM token, users, group members and second factor came along.
    let (tokens, scim) = (
        spawn("token-service", &urls, &us_file, &kek_text).await,
        spawn("scim-service", &urls, &us_file, &kek_text).await,
    );
    client_token(&tokens, "acme").await;
    let read = http_client()
        .get(format!("{}/o/acme/scim/v2/Groups/{}", scim.base, group["id"].as_str().unwrap()))
        .bearer_auth(ACME_SCIM)
        .send()
        .await
        .expect("GET the group");
    assert_eq!(read.status(), StatusCode::OK);
    let read: Value = read.json().await.expect("the group");
    assert_eq!(read["members"][0]["value"], ada_id.as_str(), "{read}");
    assert_eq!(us.list_mfa_enrolments("acme", &ada_id).await.expect("ada's factors").len(), 1);
    scim_create_user(&scim, "globex", "globex-scim-token-0123456789abcdef", "gus@globex.test").await;

    // 4. The audit chain verifies in its new store, with every event it had.
    let verified = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify", "--database-url", &urls.us, "--organization", "acme"])
        .output()
        .await
        .expect("run portcullis audit verify");
    assert!(
        verified.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let head = us.audit_head("acme").await.expect("the moved chain's head").expect("a head");
    assert!(head.seq >= events_before, "{} events after the move, {events_before} before", head.seq);
}
