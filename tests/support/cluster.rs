//! A Portcullis deployment on the real control plane, shared by the
//! in-cluster scenario (`in_cluster.rs`) and its benchmarks
//! (`cluster_benchmark.rs`): the chart's CRDs and RBAC from `config/`, the
//! operator run as its ServiceAccount, the kubelet stand-in running what the
//! operator deploys, and the small HTTP and token helpers both ask with.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::kubelet::Kubelet;
use super::postgres::Postgres;
use super::support::{ControlPlane, repo};

pub const OPERATOR_NAMESPACE: &str = "portcullis";
pub const ISSUER_BASE: &str = "https://id.portcullis.test";
pub const SCIM_BASE: &str = "https://scim.portcullis.test";
pub const TOKEN_SERVICE: &str = "portcullis-token-service";
pub const SCIM_SERVICE: &str = "portcullis-scim-service";
/// The operator's Secret of the services' keys (its default name).
pub const SERVICE_KEYS: &str = "portcullis-service-keys";
pub const KINDS: &str = "organizations.iam.portcullis.dev,roles.iam.portcullis.dev,roleassignments.iam.portcullis.dev,\
                     identityproviders.iam.portcullis.dev,oauthclients.iam.portcullis.dev";

/// Portcullis installed and running: a PostgreSQL database, the control
/// plane with the CRDs and RBAC, the operator, and the kubelet stand-in
/// running the services the operator deploys (two replicas each). Fields
/// drop in order: pods, operator, control plane, database.
pub struct Installation {
    pub kubelet: Kubelet,
    pub operator: Operator,
    pub cp: ControlPlane,
    pub database_url: String,
    pub postgres: Postgres,
}

impl Installation {
    pub fn start(postgres: Postgres) -> Installation {
        let database_url = postgres.create_database();
        let cp = cluster(&database_url);
        let kubeconfig = cp.service_account_kubeconfig(OPERATOR_NAMESPACE, "portcullis-operator");
        let operator = Operator::start(
            &cp,
            &kubeconfig,
            &database_url,
            &["--issuer-base-url", ISSUER_BASE, "--scim-base-url", SCIM_BASE],
        );
        let kubelet = Kubelet::start(
            &cp.kubeconfig,
            OPERATOR_NAMESPACE,
            Path::new(env!("CARGO_BIN_EXE_portcullis")),
            &cp.dir().join("pods"),
        );
        Installation { kubelet, operator, cp, database_url, postgres }
    }
}

/// The operator process, run as its ServiceAccount; killed when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
    pub probe_port: u16,
}

impl Operator {
    /// Starts the operator with the flags the chart gives it.
    pub fn start(cp: &ControlPlane, kubeconfig: &Path, database_url: &str, extra: &[&str]) -> Operator {
        let log = cp.dir().join("operator.log");
        let out = std::fs::File::options().create(true).append(true).open(&log).expect("operator log");
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("operator")
            .args([
                "--namespace",
                OPERATOR_NAMESPACE,
                "--identity",
                "in-cluster",
                "--lease-duration-seconds",
                "15",
            ])
            .args(["--probe-address", "127.0.0.1:0"])
            .args(["--image", "registry.test/portcullis:e2e", "--owner-deployment", "portcullis-operator"])
            .args(["--token-service-replicas", "2", "--scim-service-replicas", "2"])
            .args(extra)
            .env("PORTCULLIS_DATABASE_URL", database_url)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start portcullis operator");
        let probe_port = super::support::logged_probe_port(&log, from, &mut child);
        Operator { child, log, probe_port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.log());
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Real HTTP, on a runtime of its own (the test itself is synchronous).
pub struct Http {
    pub runtime: tokio::runtime::Runtime,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new() -> Http {
        Http {
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
        }
    }

    pub fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, String), String> {
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            Ok((status, response.text().await.map_err(|e| e.to_string())?))
        })
    }

    pub fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.send(self.client.get(url))
    }

    pub fn json(&self, url: &str) -> Value {
        let (status, body) = self.get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(status, 200, "GET {url}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
    }

    /// A client-credentials token; `(status, body)`.
    pub fn client_credentials(
        &self,
        token_url: &str,
        client: &str,
        secret: &str,
    ) -> Result<(u16, String), String> {
        self.send(
            self.client
                .post(format!("{token_url}/o/acme/token"))
                .basic_auth(client, Some(secret))
                .form(&[("grant_type", "client_credentials")]),
        )
    }
}

pub fn secret_value(cp: &ControlPlane, namespace: &str, name: &str, key: &str) -> String {
    let escaped = key.replace('.', "\\.");
    let encoded = cp.kubectl_ok(&[
        "get",
        "secret",
        name,
        "-n",
        namespace,
        "-o",
        &format!("jsonpath={{.data.{escaped}}}"),
    ]);
    String::from_utf8(STANDARD.decode(encoded.trim()).expect("base64")).expect("utf-8")
}

pub fn apply_yaml(cp: &ControlPlane, name: &str, yaml: &str) {
    let path = cp.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write manifest");
    cp.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
}

/// The example's Organization with some of its lines replaced.
pub fn organization_yaml(replacements: &[(&str, &str)]) -> String {
    let mut yaml =
        std::fs::read_to_string(repo().join("examples/acme/organization.yaml")).expect("organization.yaml");
    for (from, to) in replacements {
        assert!(yaml.contains(from), "organization.yaml has no {from:?}");
        yaml = yaml.replace(from, to);
    }
    yaml
}

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

pub fn header(token: &str) -> Value {
    let header = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON header")
}

/// Whether an ES256 token verifies with a key of `jwks` (its kid's).
pub fn verifies(token: &str, jwks: &Value) -> bool {
    let kid = header(token)["kid"].as_str().unwrap_or_default().to_owned();
    let Some(jwk) = jwks["keys"].as_array().and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
    else {
        return false;
    };
    let coordinate =
        |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap_or_default()).unwrap_or_default();
    let mut point = vec![4u8];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    let (input, signature) = token.rsplit_once('.').expect("a JWT");
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(input.as_bytes(), &signature)
        .is_ok()
}

/// The names in a token's `roles` claim.
pub fn role_names(claims: &Value) -> BTreeSet<String> {
    claims["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

pub fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// The control plane with the CRDs and RBAC of `config/` (what the chart
/// ships), the namespaces, and the database Secret the chart asks for.
pub fn cluster(database_url: &str) -> ControlPlane {
    let cp = ControlPlane::start();
    cp.kubectl_ok(&["apply", "--server-side", "-k", repo().join("config/crd").to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    for namespace in [OPERATOR_NAMESPACE, "acme"] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    cp.kubectl_ok(&["apply", "--server-side", "-k", repo().join("config/rbac").to_str().unwrap()]);
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "portcullis-database",
        "-n",
        OPERATOR_NAMESPACE,
        &format!("--from-literal=url={database_url}"),
    ]);
    // The operator's own Deployment: it owns what the operator creates, and
    // carries its Events. Not run here (its pods would be this test's operator).
    cp.kubectl_ok(&[
        "create",
        "deployment",
        "portcullis-operator",
        "--image=registry.test/portcullis:e2e",
        "-n",
        OPERATOR_NAMESPACE,
    ]);
    cp
}
