//! The in-cluster targets (BENCHMARKS.md, "In a cluster"): Portcullis as the
//! operator deploys it (`support/cluster.rs`: real kube-apiserver and etcd,
//! the operator as its ServiceAccount, two token-service and two
//! scim-service replicas run by the kubelet stand-in) on a durable
//! PostgreSQL (fsync and synchronous_commit on).
//!
//! 1. `kubectl apply` of an edited RoleAssignment → the first token from
//!    *each* token-service replica that carries it, over 100 edits.
//! 2. The resident memory of the operator and the four service processes
//!    holding the acme tenant plus 10,000 RoleAssignments.
//! 3. client_credentials tokens per second through the operator-run Service,
//!    against `portcullis standalone` on the same tenant, in the same run.
//!
//! Not tests: ignored, run on request in release, one at a time:
//!
//! ```text
//! cargo test --release --test cluster_benchmark -- --ignored --nocapture --test-threads 1
//! ```

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/kubelet.rs"]
mod kubelet;
#[path = "support/postgres.rs"]
mod postgres;
mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use cluster::*;
use kubelet::PodView;
use support::{ControlPlane, eventually, repo};

const EDITS: usize = 100;
const ASSIGNMENTS: usize = 10_000;
/// client_credentials: closed-loop clients, rounds, and each round's window.
const CONNECTIONS: usize = 16;
const ROUNDS: usize = 5;
const WARM_UP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(3);

/// The installation with examples/acme applied and every replica serving it.
struct Running {
    installation: Installation,
    http: Http,
    client_secret: String,
    token_pods: Vec<PodView>,
}

fn running() -> Running {
    let started = Instant::now();
    let installation = Installation::start(postgres::Postgres::start_durable());
    let cp = &installation.cp;
    cp.kubectl_ok(&["apply", "--server-side", "-f", repo().join("examples/acme").to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);
    let token_pods = installation.kubelet.await_rollout(TOKEN_SERVICE, 2, Duration::from_secs(90));
    installation.kubelet.await_rollout(SCIM_SERVICE, 2, Duration::from_secs(90));
    let client_secret = secret_value(cp, "acme", "ci-deployer-client-secret", "client-secret");
    eprintln!("installed, acme applied, four replicas ready in {:.1?}", started.elapsed());
    Running { installation, http: Http::new(), client_secret, token_pods }
}

/// ci-deployer's RoleAssignment from the example, naming `role`.
fn ci_deployer_assignment(role: &str) -> String {
    let all =
        std::fs::read_to_string(repo().join("examples/acme/role-assignments.yaml")).expect("assignments");
    let start = all.find("  name: ci-deployer-integrations").expect("ci-deployer's assignment");
    let document = &all[all[..start].rfind("apiVersion").unwrap_or(0)..];
    let document = document.split("\n---").next().unwrap_or(document);
    document.replace("role: integrations", &format!("role: {role}"))
}

/// The roles of a client-credentials token from `url`.
fn token_roles(http: &Http, url: &str, secret: &str) -> Result<BTreeSet<String>, String> {
    let (status, body) = http.client_credentials(url, "ci-deployer", secret)?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let token: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(role_names(&claims(token["access_token"].as_str().unwrap_or_default())))
}

/// Asks each replica for tokens, back to back, until one carries `role`;
/// the time from `since` until every replica did.
fn until_every_replica_carries(run: &Running, role: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(10);
    for pod in &run.token_pods {
        loop {
            match token_roles(&run.http, &pod.url("http"), &run.client_secret) {
                Ok(roles) if roles.contains(role) => break,
                outcome if Instant::now() > deadline => {
                    panic!("{} still answers {outcome:?} 10 s after the edit to {role}", pod.name)
                }
                _ => {}
            }
        }
    }
    since.elapsed()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "benchmark: run on request in release (see the module docs)"]
fn apply_to_token_over_a_hundred_edits() {
    let run = running();
    let mut latencies = Vec::with_capacity(EDITS);
    for edit in 0..EDITS {
        let role = if edit % 2 == 0 { "compliance-officer" } else { "integrations" };
        // From before kubectl starts: what a user waits after typing the command.
        let applied = Instant::now();
        apply_yaml(&run.installation.cp, &format!("edit-{edit}"), &ci_deployer_assignment(role));
        latencies.push(until_every_replica_carries(&run, role, applied));
    }
    latencies.sort();
    let (p50, p90, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[EDITS - 1],
    );
    eprintln!(
        "RESULT apply → token carried by both replicas over {EDITS} edits: p50 {} p90 {} p99 {} max {} (target p99 ≤ 1 s: {})",
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
        if p99 <= Duration::from_secs(1) { "met" } else { "MISSED" }
    );
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn resident_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} for {pid}"))
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How many RoleAssignments in `namespace` the operator has reconciled at
/// their current generation.
fn reconciled_assignments(cp: &ControlPlane, namespace: &str) -> usize {
    let list: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "roleassignments.iam.portcullis.dev",
        "-n",
        namespace,
        "-o",
        "json",
    ]))
    .expect("a list");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["status"]["observedGeneration"] == item["metadata"]["generation"])
        .count()
}

#[test]
#[ignore = "benchmark: run on request in release (see the module docs)"]
fn resident_memory_with_ten_thousand_assignments() {
    let run = running();
    let cp = &run.installation.cp;
    let mut manifest = String::new();
    for n in 0..ASSIGNMENTS {
        let role = ["workspace-viewer", "analyst-readonly", "journey-architect"][n % 3];
        let scope = if role == "workspace-viewer" {
            "Workspace\n  workspace: emea-marketing"
        } else {
            "Organization"
        };
        let _ = write!(
            manifest,
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\n\
             metadata: {{name: bench-{n:05}, namespace: acme}}\n\
             spec:\n  principal: {{kind: User, name: user-{n:05}@acme.com}}\n  role: {role}\n  scope: {scope}\n---\n"
        );
    }
    let started = Instant::now();
    apply_yaml(cp, "ten-thousand-assignments", &manifest);
    eprintln!("kubectl apply of {ASSIGNMENTS} RoleAssignments: {:.1?}", started.elapsed());
    let total = ASSIGNMENTS + 6;
    eventually("the operator reconciles every assignment", Duration::from_secs(900), || {
        match reconciled_assignments(cp, "acme") {
            n if n >= total => Ok(()),
            n => Err(format!("{n} of {total}")),
        }
    });
    eprintln!("… reconciled after {:.1?}", started.elapsed());
    // The services follow one ordered change feed: an edit made after the
    // last assignment was stored reaches them after it.
    let applied = Instant::now();
    apply_yaml(cp, "sentinel", &ci_deployer_assignment("compliance-officer"));
    until_every_replica_carries(&run, "compliance-officer", applied);
    eprintln!("… and followed by every token-service replica after {:.1?}", started.elapsed());

    let mut processes = vec![("operator".to_owned(), run.installation.operator.pid())];
    for pod in run.installation.kubelet.pods() {
        processes.push((pod.name.clone(), pod.pid.expect("a running pod")));
    }
    assert_eq!(processes.len(), 5, "the operator and four service replicas: {processes:?}");
    let (mut rss, mut peak) = (0.0, 0.0);
    for (name, pid) in &processes {
        let (now, high) = resident_mib(*pid);
        eprintln!("  {name:<48} RSS {now:6.1} MiB   peak {high:6.1} MiB");
        rss += now;
        peak += high;
    }
    eprintln!(
        "RESULT resident memory, operator + 2 token + 2 SCIM, acme + {ASSIGNMENTS} RoleAssignments: \
         {rss:.0} MiB now, {peak:.0} MiB summed peaks (target ≤ 300 MB: {})",
        if peak * 1.048_576 <= 300.0 { "met" } else { "MISSED" }
    );
}

/// `portcullis standalone` on a copy of examples/acme; killed when dropped.
struct Standalone {
    child: Child,
    url: String,
    client_secret: String,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start(http: &Http) -> Standalone {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["standalone", "--manifests", repo().join("examples/acme").to_str().unwrap()])
            .args(["--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start portcullis standalone");
        let url = format!("http://127.0.0.1:{port}");
        eventually("standalone serves acme", Duration::from_secs(60), || {
            match http.get(&format!("{url}/o/acme/.well-known/openid-configuration"))? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status}: {body}")),
            }
        });
        let secret = data.join("secrets/acme/ci-deployer-client-secret/client-secret");
        let client_secret = std::fs::read_to_string(&secret).expect("the generated client secret");
        Standalone { child, url, client_secret: client_secret.trim().to_owned(), _dir: dir }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// client_credentials tokens per second: `CONNECTIONS` closed-loop clients,
/// each on a keep-alive connection of its own, spread over `urls`; what
/// completes in `WINDOW` after `WARM_UP`. Every answer must be a token.
fn tokens_per_second(http: &Http, urls: &[String], secret: &str) -> f64 {
    http.runtime.block_on(async {
        let start = Instant::now();
        let (from, until) = (start + WARM_UP, start + WARM_UP + WINDOW);
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..CONNECTIONS {
            let url = format!("{}/o/acme/token", urls[worker % urls.len()]);
            let secret = secret.to_owned();
            workers.spawn(async move {
                let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
                let mut counted = 0u64;
                loop {
                    let response = client
                        .post(&url)
                        .basic_auth("ci-deployer", Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .expect("a token request");
                    let status = response.status();
                    let body = response.bytes().await.expect("a token response");
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let now = Instant::now();
                    if now >= until {
                        return counted;
                    }
                    if now >= from {
                        counted += 1;
                    }
                }
            });
        }
        let tokens: u64 = workers.join_all().await.into_iter().sum();
        tokens as f64 / WINDOW.as_secs_f64()
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[ignore = "benchmark: run on request in release (see the module docs)"]
fn client_credentials_through_the_operator_run_service() {
    let run = running();
    let standalone = Standalone::start(&run.http);
    let service = run.installation.kubelet.service_url(TOKEN_SERVICE, "http");
    let pods: Vec<String> = run.token_pods.iter().map(|p| p.url("http")).collect();
    let targets: [(&str, Vec<String>, &str); 3] = [
        ("standalone (SQLite, one process)", vec![standalone.url.clone()], &standalone.client_secret),
        ("operator-run, through the Service", vec![service], &run.client_secret),
        ("operator-run, straight to the two pods", pods, &run.client_secret),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        // Each round in a different order: no target always runs first.
        for i in 0..targets.len() {
            let t = (i + round) % targets.len();
            let (_, urls, secret) = &targets[t];
            rates[t].push(tokens_per_second(&run.http, urls, secret));
        }
    }
    let medians: Vec<f64> = rates.iter().map(|r| median(r.clone())).collect();
    for ((name, _, _), (median, all)) in targets.iter().zip(medians.iter().zip(&rates)) {
        let all: Vec<String> = all.iter().map(|r| format!("{r:.0}")).collect();
        eprintln!("  {name:<42} median {median:7.0} tokens/s  ({})", all.join(", "));
    }
    let ratio = medians[1] / medians[0];
    eprintln!(
        "RESULT client_credentials, {CONNECTIONS} connections, median of {ROUNDS} × {WINDOW:?}: \
         operator-run Service / standalone = {ratio:.2} (target ≥ 0.80: {}); pods direct / standalone = {:.2}",
        if ratio >= 0.8 { "met" } else { "MISSED" },
        medians[2] / medians[0]
    );
}
