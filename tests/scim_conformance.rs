//! The public SCIM conformance suite, scim2-tester (run as `scim2 test`, the
//! `test` command of scim2-cli from PyPI), against the SCIM service on SQLite
//! and on a real PostgreSQL server (`support/postgres.rs`). Every check must
//! be SUCCESS; the test names each one that is not.
//!
//! The suite lives in a Python venv that `e2e/build-scim2-tester.sh` makes
//! under ~/.cache/portcullis (versions pinned by
//! `e2e/tools/scim2-tester/requirements.txt`); `e2e/run-tests.sh` exports its
//! bin directory as `PORTCULLIS_SCIM2_TESTER_BIN`. Without that variable the
//! test runs the script itself; if that fails (no python3, no network), it
//! skips loudly, except under `CI=true`, where it fails.

#[path = "support/postgres.rs"]
mod postgres;

use std::path::PathBuf;
use std::process::Command;

use portcullis::scim::service::{ScimState, router};
use portcullis::store::*;
use serde_json::json;

const TOKEN: &str = "scim2-tester-token-for-acme";
/// The statuses `scim2 test` prints first on a check's line (scim2_tester.Status).
const STATUSES: [&str; 7] =
    ["SUCCESS", "COMPLIANT", "ACCEPTABLE", "DEVIATION", "ERROR", "CRITICAL", "SKIPPED"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_sqlite() {
    let Some(bin) = scim2_tester_bin() else { return };
    let store = Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store");
    run_suite(&bin, store, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_postgresql() {
    let Some(bin) = scim2_tester_bin() else { return };
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    let store = Store::connect(&url).await.expect("connect to the test PostgreSQL");
    run_suite(&bin, store, "PostgreSQL").await;
}

/// The venv's bin directory: from `PORTCULLIS_SCIM2_TESTER_BIN`, or made by
/// `e2e/build-scim2-tester.sh`. `None` (skip) only outside CI.
fn scim2_tester_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_SCIM2_TESTER_BIN") {
        return Some(PathBuf::from(dir));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/build-scim2-tester.sh");
    let failure = match Command::new("bash").arg(&script).output() {
        Ok(output) if output.status.success() => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let dir = stdout.lines().last().map(str::trim).unwrap_or_default();
            if !dir.is_empty() {
                return Some(PathBuf::from(dir));
            }
            "it printed no directory".to_owned()
        }
        Ok(output) => format!("it failed: {}", String::from_utf8_lossy(&output.stderr)),
        Err(error) => format!("it could not be started: {error}"),
    };
    let message = format!(
        "PORTCULLIS_SCIM2_TESTER_BIN is not set and e2e/build-scim2-tester.sh could not make the \
         scim2-tester venv ({failure})"
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: the SCIM conformance suite did not run !!!!!!!!!!\n{message}\n");
    None
}

/// One organization, `acme`, provisioned over SCIM with password sign-in
/// enabled (the CRD default), and its IdentityProvider `okta` holding [`TOKEN`].
async fn prepare(store: &Store) {
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("uid-org-acme", "acme", "acme", 1),
            display_name: "Acme".into(),
            catalog: Vec::new(),
            workspaces: Vec::new(),
            spec_json: json!({"displayName": "Acme", "provisioning": {"mode": "scim"}}).to_string(),
        })
        .await
        .expect("store the organization");
    store
        .apply(&IdentityProviderRecord {
            meta: ObjectMeta::new("uid-idp-acme-okta", "acme", "okta", 1),
            protocol: "oidc".into(),
            stage: "Enforced".into(),
            email_domains: Vec::new(),
            scim_enabled: true,
            spec_json: json!({"scim": {"enabled": true}}).to_string(),
        })
        .await
        .expect("store the identity provider");
    let hash = portcullis::secret::SecretHash::of(TOKEN).to_string();
    assert!(store.set_scim_token_hash("acme", "okta", Some(&hash)).await.expect("store the token hash"));
}

async fn run_suite(bin: &std::path::Path, store: Store, backend: &str) {
    prepare(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let app = router(ScimState::new(store, &base));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let scim2 = bin.join("scim2");
    let url = format!("{base}/o/acme/scim/v2");
    // The token goes in the environment, not on the command line (scim2-cli's advice).
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&scim2)
            .args(["--url", &url, "test"])
            .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", scim2.display()))
    })
    .await
    .expect("the tester ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // Each check is a line `STATUS title`, its reason on the next lines, indented.
    let mut checks: Vec<(&str, String)> = Vec::new();
    let mut not_success: Vec<String> = Vec::new();
    for line in stdout.lines() {
        if let Some((status, title)) = line.split_once(' ')
            && STATUSES.contains(&status)
        {
            checks.push((status, title.to_owned()));
            if status != "SUCCESS" {
                not_success.push(format!("{status} {title}"));
            }
        } else if line.starts_with("  ")
            && let Some(last) = not_success.last_mut()
            && checks.last().is_some_and(|(status, _)| *status != "SUCCESS")
        {
            last.push_str("\n    ");
            last.push_str(line.trim());
        }
    }
    if !not_success.is_empty() {
        eprintln!("scim2-tester's report on {backend}:\n{stdout}");
    }
    let successes = checks.iter().filter(|(status, _)| *status == "SUCCESS").count();
    eprintln!("scim2-tester on {backend}: {successes} of {} checks SUCCESS", checks.len());
    assert!(
        !checks.is_empty(),
        "scim2-tester reported no check on {backend} (exit {:?}):\n{stdout}\n{stderr}",
        output.status.code()
    );
    assert!(
        not_success.is_empty(),
        "scim2-tester on {backend}: {successes} of {} checks SUCCESS; not SUCCESS:\n{}",
        checks.len(),
        not_success.join("\n")
    );
    assert!(output.status.success(), "scim2-tester failed on {backend}:\n{stdout}\n{stderr}");
}
