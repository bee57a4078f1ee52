//! The Python package `clients/python/portcullis` against the real
//! `portcullis standalone`: its pytest suite (the cases of tests/guard.rs,
//! in Flask and FastAPI services) runs in a venv from
//! `e2e/build-python-client.sh` (`e2e/run-tests.sh` exports its bin directory
//! as `PORTCULLIS_PYTHON_CLIENT_BIN`), with the package built from its
//! pyproject into a temporary folder. This test starts two servers (the
//! second with 3 s access tokens, for expiry and key rotation), prepares
//! their clients, and passes issuers, secrets and an ID token by environment.
//! Without the venv the test skips loudly, except under `CI=true`, where it
//! fails.

#[path = "support/openapi.rs"]
mod openapi;
#[path = "support/standalone.rs"]
mod standalone;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use standalone::{DEADLINE, Standalone, http, repo};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/guard").join(name)).unwrap()
}

#[tokio::test]
async fn the_python_package_passes_its_tests_against_standalone() {
    let Some(bin) = python_client_bin() else { return };
    let server = Standalone::start_acme(|folder, issuer| {
        std::fs::write(folder.join("orders-service.yaml"), fixture("orders-service.yaml")).unwrap();
        let checker = fixture("journeys-guard.yaml").replace("ISSUER", issuer);
        std::fs::write(folder.join("journeys-guard.yaml"), checker).unwrap();
    })
    .await;
    let short = Standalone::start_acme(|folder, _| {
        std::fs::write(folder.join("orders-service.yaml"), fixture("orders-service.yaml")).unwrap();
        standalone::edit_file(
            &folder.join("organization.yaml"),
            "accessTokenLifetime: 15m",
            "accessTokenLifetime: 3s",
        );
    })
    .await;

    // Every client in force before pytest starts.
    server.token_where("orders-service", |c| c["workspace_permissions"].is_object()).await;
    short.token_where("orders-service", |c| c["workspace_permissions"].is_object()).await;
    let checker_secret = server.client_secret("journeys-guard").await;
    await_check_api(&server, &checker_secret).await;
    let id_token = server.sign_in_administrator().await["id_token"].as_str().expect("an ID token").to_owned();

    let built = tempfile::tempdir().unwrap();
    let package = build_package(&bin, built.path());
    // Awaited, not blocking: the runtime must keep reading the servers'
    // output meanwhile, or their full pipes would stall them mid-test.
    let output = tokio::process::Command::new(bin.join("python"))
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-v"])
        .arg(repo().join("clients/python/portcullis/tests"))
        .env("PYTHONPATH", &package)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PORTCULLIS_ISSUER", server.issuer())
        .env("PORTCULLIS_ORDERS_SECRET", server.client_secret("orders-service").await)
        .env("PORTCULLIS_CI_SECRET", server.client_secret("ci-deployer").await)
        .env("PORTCULLIS_CHECKER_SECRET", &checker_secret)
        .env("PORTCULLIS_ID_TOKEN", &id_token)
        .env("PORTCULLIS_SHORT_ISSUER", short.issuer())
        .env("PORTCULLIS_SHORT_ORDERS_SECRET", short.client_secret("orders-service").await)
        .env("PORTCULLIS_SHORT_ORGANIZATION", short.manifests.join("organization.yaml"))
        .output()
        .await
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "pytest failed");
    assert!(stdout.contains(" passed"), "pytest ran tests");
}

/// The check API answers the guard's client (its role may land a sync after it).
async fn await_check_api(server: &Standalone, secret: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, body) = server.client_credentials("journeys-guard", secret).await;
        if let Some(token) = body["access_token"].as_str() {
            let url = format!("{}/api/v1/check", server.issuer());
            let response = http()
                .post(&url)
                .bearer_auth(token)
                .json(&json!({ "principal": { "kind": "Client", "name": "orders-service" }, "permission": "journeys.view", "workspace": "emea-marketing" }))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let text = response.text().await.unwrap();
            // Each answer, refusals too, is one the OpenAPI document describes.
            let path = reqwest::Url::parse(&url).unwrap().path().to_owned();
            openapi::OpenApi::of(&server.issuer()).await.assert_describes(
                "POST",
                &path,
                status.as_u16(),
                content_type.as_deref(),
                &text,
            );
            if status == StatusCode::OK {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < until, "the check API never answered journeys-guard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Builds the package from a copy of its folder (its pyproject, setuptools)
/// into `into`/site; the folder to put on `PYTHONPATH`.
fn build_package(bin: &Path, into: &Path) -> PathBuf {
    let source = into.join("source");
    copy_tree(&repo().join("clients/python/portcullis"), &source);
    let site = into.join("site");
    let output = Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&site)
        .arg(&source)
        .output()
        .expect("run pip");
    assert!(
        output.status.success(),
        "the package does not build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    site
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "__pycache__" || name.to_string_lossy().ends_with(".egg-info") || name == "build" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// The venv's bin directory: from `PORTCULLIS_PYTHON_CLIENT_BIN`, or made by
/// `e2e/build-python-client.sh`. `None` (skip) only outside CI.
fn python_client_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_PYTHON_CLIENT_BIN") {
        return Some(PathBuf::from(dir));
    }
    let script = repo().join("e2e/build-python-client.sh");
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
        "PORTCULLIS_PYTHON_CLIENT_BIN is not set and e2e/build-python-client.sh could not make the venv ({failure})"
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: the Python client's tests did not run !!!!!!!!!!\n{message}\n");
    None
}
