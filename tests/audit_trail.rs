//! The audit trail end to end, over real HTTP and the real `portcullis`
//! binary, on SQLite (a file) and on a real PostgreSQL server: a SCIM write
//! through the SCIM service appends an event naming the IdentityProvider and
//! the request's address; `portcullis audit verify` accepts the chain, in the
//! store and as an export, and names the line once a row of the database or
//! a line of the export is edited, removed or reordered.

#[path = "support/postgres.rs"]
mod postgres;

use std::net::SocketAddr;
use std::process::Output;

use portcullis::audit::{ActorKind, Outcome};
use portcullis::scim::service::{ScimState, router};
use portcullis::store::*;
use reqwest::StatusCode;
use serde_json::json;

const OKTA_TOKEN: &str = "okta-scim-token-for-acme";
const ORG: &str = "acme";

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("portcullis.db").display());
                    super::$case(super::Scim::start(url).await).await;
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
                    super::$case(super::Scim::start(url).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_scim_write_is_audited_and_an_edited_row_is_found,
    a_removed_or_reordered_row_is_found,
    an_edited_export_line_is_named,
    a_deleted_oldest_or_newest_row_is_found,
);

/// The SCIM service of organization `acme` (provisioning `scim`, IdP okta)
/// on a loopback port, with connect info as `portcullis scim-service` runs it.
struct Scim {
    url: String,
    base: String,
    store: Store,
    client: reqwest::Client,
}

impl Scim {
    async fn start(url: String) -> Scim {
        let store = Store::connect(&url).await.expect("open the store");
        store
            .apply(&OrganizationRecord {
                meta: ObjectMeta::new("uid-org-acme", ORG, ORG, 1),
                display_name: "Acme".into(),
                catalog: Vec::new(),
                workspaces: Vec::new(),
                spec_json: json!({"displayName": "Acme", "provisioning": {"mode": "scim"}}).to_string(),
            })
            .await
            .expect("store the organization");
        store
            .apply(&IdentityProviderRecord {
                meta: ObjectMeta::new("uid-idp-okta", ORG, "okta", 1),
                protocol: "oidc".into(),
                stage: "Enforced".into(),
                email_domains: Vec::new(),
                scim_enabled: true,
                spec_json: json!({"scim": {"enabled": true}}).to_string(),
            })
            .await
            .expect("store the identity provider");
        let hash = portcullis::secret::SecretHash::of(OKTA_TOKEN).to_string();
        assert!(store.set_scim_token_hash(ORG, "okta", Some(&hash)).await.expect("store the token hash"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let app =
            router(ScimState::new(store.clone(), &base)).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Scim { url, base, store, client: reqwest::Client::new() }
    }

    /// Okta creates a user, then deactivates it; returns the user's id.
    async fn provision(&self, user_name: &str) -> String {
        let users = format!("{}/o/{ORG}/scim/v2/Users", self.base);
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name});
        let created = self.scim_request(reqwest::Method::POST, &users, &body).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: serde_json::Value = created.json().await.expect("a JSON user");
        let id = created["id"].as_str().expect("an id").to_owned();
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        });
        let patched = self.scim_request(reqwest::Method::PATCH, &format!("{users}/{id}"), &patch).await;
        assert_eq!(patched.status(), StatusCode::OK);
        id
    }

    async fn scim_request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .request(method, url)
            .bearer_auth(OKTA_TOKEN)
            .header("user-agent", "Okta SCIM Client 1.0.0")
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("the SCIM service answers")
    }

    /// Runs the `portcullis` binary with `args`.
    async fn portcullis(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(&args)
                .env_remove("PORTCULLIS_DATABASE_URL")
                .output()
                .expect("run portcullis")
        })
        .await
        .expect("the command finished")
    }

    /// `portcullis audit verify` of the chain stored for acme.
    async fn verify_stored(&self) -> Output {
        self.portcullis(&["audit", "verify", "--database-url", &self.url, "--organization", ORG]).await
    }

    /// Runs one statement straight on the database, as someone with write
    /// access to it would, behind Portcullis's back.
    async fn tamper(&self, statement: &str) {
        if self.url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("connect to PostgreSQL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await.expect("tamper");
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("open the SQLite file");
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await.expect("tamper");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_verifies(output: &Output, events: u64) {
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "verify failed: {}{}", stdout, text(&output.stderr));
    assert!(stdout.contains(&format!("verifies: {events} events")), "{stdout}");
}

#[track_caller]
fn assert_fails_naming(output: &Output, expected: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "verify should find the change: {}{stderr}",
        text(&output.stdout)
    );
    for part in expected {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
}

async fn a_scim_write_is_audited_and_an_edited_row_is_found(scim: Scim) {
    let id = scim.provision("ann.lee@acme.example").await;

    // The events name okta as who acted, and where the request came from.
    scim.store.seal_audit(ORG).await.expect("seal");
    let events = scim.store.list_audit(ORG, &AuditFilter::default(), None, 10).await.expect("list");
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["user.update", "user.create"]);
    for sealed in &events {
        let event = &sealed.event;
        assert_eq!(event.actor.kind, ActorKind::IdentityProvider);
        assert_eq!(event.actor.identity_provider.as_deref(), Some("okta"));
        assert_eq!(event.source.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.source.user_agent.as_deref(), Some("Okta SCIM Client 1.0.0"));
        assert_eq!(event.target.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.target.name.as_deref(), Some("ann.lee@acme.example"));
        assert_eq!(event.outcome, Outcome::Success);
    }
    assert_eq!(events[0].event.details.as_ref().map(|d| d["active"].clone()), Some(json!(false)));

    assert_verifies(&scim.verify_stored().await, 2);

    // Someone with database access rewrites who was created.
    scim.tamper(
        "UPDATE audit_events SET event_json = REPLACE(event_json, 'ann.lee@', 'eve.doe@') \
         WHERE organization = 'acme' AND chain_seq = 1",
    )
    .await;
    assert_fails_naming(&scim.verify_stored().await, &["line 1:", "edited"]);
}

async fn a_removed_or_reordered_row_is_found(scim: Scim) {
    for n in 0..3 {
        scim.provision(&format!("user-{n}@acme.example")).await;
    }
    assert_verifies(&scim.verify_stored().await, 6);

    // Two events swap places (their seqs swapped, as if reordered).
    scim.tamper("UPDATE audit_events SET chain_seq = -1 WHERE organization = 'acme' AND chain_seq = 3").await;
    scim.tamper("UPDATE audit_events SET chain_seq = 3 WHERE organization = 'acme' AND chain_seq = 4").await;
    scim.tamper("UPDATE audit_events SET chain_seq = 4 WHERE organization = 'acme' AND chain_seq = -1").await;
    assert_fails_naming(&scim.verify_stored().await, &["line 3:"]);
    scim.tamper("UPDATE audit_events SET chain_seq = -1 WHERE organization = 'acme' AND chain_seq = 3").await;
    scim.tamper("UPDATE audit_events SET chain_seq = 3 WHERE organization = 'acme' AND chain_seq = 4").await;
    scim.tamper("UPDATE audit_events SET chain_seq = 4 WHERE organization = 'acme' AND chain_seq = -1").await;
    assert_verifies(&scim.verify_stored().await, 6);

    // An event in the middle is deleted.
    scim.tamper("DELETE FROM audit_events WHERE organization = 'acme' AND chain_seq = 4").await;
    assert_fails_naming(&scim.verify_stored().await, &["line 4:", "removed"]);
}

async fn an_edited_export_line_is_named(scim: Scim) {
    for n in 0..2 {
        scim.provision(&format!("user-{n}@acme.example")).await;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("acme-audit.jsonl");
    let file_name = file.to_str().expect("a UTF-8 path");
    let exported = scim
        .portcullis(&["audit", "export", "--database-url", &scim.url, "--organization", ORG, "-o", file_name])
        .await;
    assert!(exported.status.success(), "export failed: {}", text(&exported.stderr));
    let verified = scim.portcullis(&["audit", "verify", file_name]).await;
    assert_verifies(&verified, 4);

    // The newest events cut off: only the head tells.
    let head = scim.store.audit_head(ORG).await.expect("read the head").expect("a head");
    let lines: Vec<String> =
        std::fs::read_to_string(&file).expect("read the export").lines().map(str::to_owned).collect();
    std::fs::write(&file, lines[..3].join("\n")).expect("cut the export");
    assert_verifies(&scim.portcullis(&["audit", "verify", file_name]).await, 3);
    assert_fails_naming(
        &scim.portcullis(&["audit", "verify", file_name, "--head", &head.hash]).await,
        &[&format!("{file_name}:3:"), "expected head"],
    );

    // One line edited: named as `file:line`.
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("user-0@", "user-9@");
    assert_ne!(edited[1], lines[1]);
    std::fs::write(&file, edited.join("\n")).expect("edit the export");
    assert_fails_naming(
        &scim.portcullis(&["audit", "verify", file_name]).await,
        &[&format!("{file_name}:2:"), "edited"],
    );
}

async fn a_deleted_oldest_or_newest_row_is_found(scim: Scim) {
    for n in 0..2 {
        scim.provision(&format!("user-{n}@acme.example")).await;
    }
    assert_verifies(&scim.verify_stored().await, 4);

    // The newest event goes: the chain still links, but ends short of its head.
    scim.tamper("DELETE FROM audit_events WHERE organization = 'acme' AND chain_seq = 4").await;
    assert_fails_naming(&scim.verify_stored().await, &["expected head"]);

    // The oldest event goes: no longer anchored where retention left it.
    scim.tamper("DELETE FROM audit_events WHERE organization = 'acme' AND chain_seq = 1").await;
    assert_fails_naming(&scim.verify_stored().await, &["line 1:"]);
}
