//! Token endpoint throughput and latency under a closed-loop load on
//! loopback: Portcullis (in process, over a SQLite file) against the
//! `oidc-provider` npm package (a node child process), in the same run; and
//! Portcullis as two replicas on one durable PostgreSQL server (a child
//! process, `tests/support/postgres.rs`).
//!
//! ```text
//!  tokio runtime, 2 worker threads (this machine's 2 cores)
//!  ├─ generator: N keep-alive HTTP/1.1 connections ──► POST /token
//!  ├─ portcullis token service (axum, same runtime) ◄─┤
//!  ├─ two replicas of it on PostgreSQL (same runtime) ◄┤ (half the connections each)
//!  └─ fixed-answer axum endpoint (generator ceiling) ◄┤
//!  node benches/oidc-provider/server.mjs (child)     ◄┘
//! ```
//!
//! `cargo bench -p portcullis-benches --bench token_load`: every scenario 3
//! times (interleaved, so machine noise falls on all alike), each a 2 s
//! warm-up then 10 s measured; medians and ratios printed with the issue's
//! targets. Environment: TOKEN_LOAD_CONNECTIONS (32), TOKEN_LOAD_SECONDS (10),
//! TOKEN_LOAD_REPETITIONS (3), TOKEN_LOAD_SCENARIOS (comma list of names).
//! Under `cargo test -p portcullis-benches` (no `--bench`): a few hundred
//! requests against Portcullis only, never touching node.

#[path = "token_load/ceiling.rs"]
mod ceiling;
#[path = "token_load/generator.rs"]
mod generator;
#[path = "token_load/oidc_provider.rs"]
mod oidc_provider;
#[path = "token_load/portcullis.rs"]
mod portcullis;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use generator::{AnyOk, ClientCredentials, Load, Outcome, RotatingRefresh, Target};
use portcullis::Backing;

/// `--bench` and no `--test`: the rule criterion and the other benches use.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if benchmarking() {
        runtime.block_on(benchmark());
    } else {
        runtime.block_on(smoke());
    }
}

/// Few requests against our endpoint: checks that the bench still drives it.
async fn smoke() {
    let ours = portcullis::Portcullis::start(Backing::Sqlite, 4).await.expect("start the token service");
    let load =
        Load { connections: 4, warm_up: Duration::ZERO, measure: Duration::from_secs(2), max_requests: 200 };
    let (cc, _) =
        generator::run(&ours.target(), load, client_credentials(load, &ours.client_credentials_form), None)
            .await
            .expect("client_credentials load");
    let (refresh, _) =
        generator::run(&ours.target(), load, refresh(&ours.refresh_tokens, &ours.refresh_extra_form), None)
            .await
            .expect("refresh_token load");
    for (name, outcome) in [("client_credentials", &cc), ("refresh_token", &refresh)] {
        assert_eq!(outcome.errors, 0, "{name}: {:?}", outcome.first_error);
        assert!(outcome.requests >= 200, "{name}: only {} requests", outcome.requests);
        println!(
            "smoke {name}: {} requests, p50 {:.2} ms (debug build: these figures say nothing; use `cargo bench`)",
            outcome.requests,
            outcome.p50_ms()
        );
    }
}

fn client_credentials(load: Load, form: &Bytes) -> Vec<ClientCredentials> {
    (0..load.connections).map(|_| ClientCredentials { form: form.clone() }).collect()
}

fn refresh(tokens: &[String], extra_form: &str) -> Vec<RotatingRefresh> {
    tokens
        .iter()
        .map(|token| RotatingRefresh { extra_form: extra_form.to_owned(), refresh_token: token.clone() })
        .collect()
}

fn basic(client_id: &str, secret: &str) -> String {
    // RFC 6749 §2.3.1: both parts form-encoded first; ours are unreserved.
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")))
}

/// The measured runs of one scenario.
#[derive(Default)]
struct Runs {
    outcomes: Vec<Outcome>,
    failure: Option<String>,
}

impl Runs {
    fn median(&self, of: impl Fn(&Outcome) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.outcomes.iter().map(of).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }

    fn per_second(&self) -> Option<f64> {
        self.median(Outcome::per_second)
    }
}

const SCENARIOS: [&str; 7] = [
    "ceiling",
    "portcullis_client_credentials",
    "oidc_provider_client_credentials",
    "portcullis_refresh",
    "oidc_provider_refresh",
    "portcullis_postgres_client_credentials",
    "portcullis_postgres_refresh",
];

/// Replicas of the token service on PostgreSQL.
const POSTGRES_REPLICAS: usize = 2;

async fn benchmark() {
    let connections = env_number("TOKEN_LOAD_CONNECTIONS", 32) as usize;
    let load = Load {
        connections,
        warm_up: Duration::from_secs(2),
        measure: Duration::from_secs(env_number("TOKEN_LOAD_SECONDS", 10)),
        max_requests: 2_000_000,
    };
    let repetitions = env_number("TOKEN_LOAD_REPETITIONS", 3);
    let wanted: Vec<String> = std::env::var("TOKEN_LOAD_SCENARIOS")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|_| SCENARIOS.iter().map(|s| s.to_string()).collect());
    let wants = |name: &str| wanted.iter().any(|w| w == name);
    println!(
        "token_load: {connections} connections, {:?} warm-up + {:?} measured, {repetitions} repetitions",
        load.warm_up, load.measure
    );
    println!("load average before: {}", load_average());

    let ceiling_target =
        Target { addrs: vec![ceiling::start().await], path: "/token".to_owned(), authorization: None };

    // Each refresh worker keeps its own token, rotated by every answer and
    // carried from one repetition to the next.
    let ours = match portcullis::Portcullis::start(Backing::Sqlite, connections).await {
        Ok(ours) => Some(ours),
        Err(error) => {
            println!("portcullis: not measured: {error}");
            None
        }
    };
    // Durable (every commit flushed), whatever PORTCULLIS_PG_DURABLE says.
    let postgres = (wants("portcullis_postgres_client_credentials") || wants("portcullis_postgres_refresh"))
        .then(|| tokio::task::block_in_place(postgres::Postgres::start_durable));
    let ours_postgres = match &postgres {
        Some(server) => {
            let url = tokio::task::block_in_place(|| server.create_database());
            let backing = Backing::Postgres { url, replicas: POSTGRES_REPLICAS };
            match portcullis::Portcullis::start(backing, connections).await {
                Ok(ours) => Some(ours),
                Err(error) => {
                    println!("portcullis on PostgreSQL: not measured: {error}");
                    None
                }
            }
        }
        None => None,
    };
    let node = match oidc_provider::OidcProvider::start(connections).await {
        Ok(node) => {
            println!("oidc-provider {} on {} (pid {:?})", node.version, node.addr, node.pid());
            Some(node)
        }
        Err(error) => {
            println!("oidc-provider: not measured: {error}");
            None
        }
    };
    let node_target = node.as_ref().map(|node| Target {
        addrs: vec![node.addr],
        path: "/token".to_owned(),
        authorization: Some(basic(oidc_provider::CLIENT_ID, oidc_provider::CLIENT_SECRET)),
    });
    let node_pid = node.as_ref().and_then(oidc_provider::OidcProvider::pid);
    let node_cc_form = Bytes::from(format!(
        "grant_type=client_credentials&scope=api&resource={}",
        form_encode(oidc_provider::RESOURCE)
    ));
    let mut our_refresh_tokens =
        ours.as_ref().map(|ours| refresh(&ours.refresh_tokens, &ours.refresh_extra_form));
    let mut node_refresh_tokens = node.as_ref().map(|node| refresh(&node.refresh_tokens, ""));
    let mut postgres_refresh_tokens =
        ours_postgres.as_ref().map(|ours| refresh(&ours.refresh_tokens, &ours.refresh_extra_form));

    let mut runs: Vec<(&str, Runs)> = SCENARIOS.iter().map(|name| (*name, Runs::default())).collect();
    for repetition in 1..=repetitions {
        for (name, runs) in runs.iter_mut() {
            if !wants(name) {
                continue;
            }
            let measured = match *name {
                "ceiling" => {
                    let form = Bytes::from_static(b"grant_type=client_credentials");
                    let workers = (0..connections).map(|_| AnyOk { form: form.clone() }).collect();
                    Some(generator::run(&ceiling_target, load, workers, None).await.map(|(o, _)| o))
                }
                "portcullis_client_credentials" => our_client_credentials(ours.as_ref(), load).await,
                "oidc_provider_client_credentials" => match &node_target {
                    Some(target) => Some(
                        generator::run(target, load, client_credentials(load, &node_cc_form), node_pid)
                            .await
                            .map(|(o, _)| o),
                    ),
                    None => None,
                },
                "portcullis_refresh" => {
                    let target = ours.as_ref().map(portcullis::Portcullis::target);
                    rotate(target.as_ref(), &mut our_refresh_tokens, load, None).await
                }
                "portcullis_postgres_client_credentials" => {
                    our_client_credentials(ours_postgres.as_ref(), load).await
                }
                "portcullis_postgres_refresh" => {
                    let target = ours_postgres.as_ref().map(portcullis::Portcullis::target);
                    rotate(target.as_ref(), &mut postgres_refresh_tokens, load, None).await
                }
                "oidc_provider_refresh" => {
                    rotate(node_target.as_ref(), &mut node_refresh_tokens, load, node_pid).await
                }
                other => unreachable!("unknown scenario {other}"),
            };
            match measured {
                Some(Ok(outcome)) => {
                    print_run(name, repetition, &outcome);
                    runs.outcomes.push(outcome);
                }
                Some(Err(error)) => {
                    println!("{name} run {repetition}: failed: {error}");
                    runs.failure = Some(error);
                }
                None => {}
            }
        }
    }
    if let Some(node) = node {
        node.stop().await;
    }
    println!("load average after: {}", load_average());
    report(&runs);
}

/// A client_credentials run against one of our deployments, if it started.
async fn our_client_credentials(
    ours: Option<&portcullis::Portcullis>,
    load: Load,
) -> Option<Result<Outcome, String>> {
    let ours = ours?;
    let workers = client_credentials(load, &ours.client_credentials_form);
    Some(generator::run(&ours.target(), load, workers, None).await.map(|(outcome, _)| outcome))
}

/// A refresh run, if `target` started; each worker's rotated token is put
/// back in `tokens` for the next repetition.
async fn rotate(
    target: Option<&Target>,
    tokens: &mut Option<Vec<RotatingRefresh>>,
    load: Load,
    peer_pid: Option<u32>,
) -> Option<Result<Outcome, String>> {
    let (target, workers) = (target?, tokens.take()?);
    Some(generator::run(target, load, workers, peer_pid).await.map(|(outcome, workers)| {
        *tokens = Some(workers);
        outcome
    }))
}

/// CPU time per measured request, in microseconds.
fn cpu_per_request(cpu: Duration, outcome: &Outcome) -> f64 {
    cpu.as_secs_f64() * 1e6 / outcome.requests.max(1) as f64
}

fn print_run(name: &str, repetition: u64, outcome: &Outcome) {
    let per_request = |cpu: Duration| cpu_per_request(cpu, outcome);
    let peer = outcome
        .peer_cpu
        .map(|cpu| format!(", server CPU {:.0} µs/req", per_request(cpu)))
        .unwrap_or_default();
    println!(
        "{name} run {repetition}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors{}; this process CPU {:.0} µs/req{peer}",
        outcome.per_second(),
        outcome.p50_ms(),
        outcome.p99_ms(),
        outcome.requests,
        outcome.errors,
        outcome.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        per_request(outcome.own_cpu),
    );
}

fn report(runs: &[(&str, Runs)]) {
    println!();
    println!(
        "| scenario | req/s (median) | runs | p50 ms | p99 ms | errors | CPU µs/req: this process, node |"
    );
    println!("|---|--:|---|--:|--:|--:|--:|");
    for (name, runs) in runs {
        let Some(per_second) = runs.per_second() else {
            if let Some(failure) = &runs.failure {
                println!("| {name} | failed: {failure} | | | | | |");
            }
            continue;
        };
        let each: Vec<String> = runs.outcomes.iter().map(|o| format!("{:.0}", o.per_second())).collect();
        let errors: u64 = runs.outcomes.iter().map(|o| o.errors).sum();
        let own_cpu = runs.median(|o| cpu_per_request(o.own_cpu, o)).unwrap_or(f64::NAN);
        let peer_cpu = runs
            .median(|o| o.peer_cpu.map(|cpu| cpu_per_request(cpu, o)).unwrap_or(f64::NAN))
            .filter(|v| !v.is_nan())
            .map(|v| format!(", {v:.0}"))
            .unwrap_or_default();
        println!(
            "| {name} | {per_second:.0} | {} | {:.2} | {:.2} | {errors} | {own_cpu:.0}{peer_cpu} |",
            each.join(", "),
            runs.median(Outcome::p50_ms).unwrap_or(f64::NAN),
            runs.median(Outcome::p99_ms).unwrap_or(f64::NAN),
        );
    }
    let find = |name: &str| runs.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
    let rate = |name: &str| find(name).and_then(Runs::per_second);
    println!();
    let ratio = |ours: &str, theirs: &str| match (rate(ours), rate(theirs)) {
        (Some(a), Some(b)) => {
            println!("ratio {ours} / {theirs} = {:.2}x", a / b);
            Some(a / b)
        }
        _ => None,
    };
    let cc_ratio = ratio("portcullis_client_credentials", "oidc_provider_client_credentials");
    ratio("portcullis_refresh", "oidc_provider_refresh");
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let cc = rate("portcullis_client_credentials");
    let cc_p99 = find("portcullis_client_credentials").and_then(|r| r.median(Outcome::p99_ms));
    println!("target client_credentials >= 15,000/s: {}", verdict(cc.map(|v| v >= 15_000.0)));
    println!("target client_credentials p99 <= 10 ms: {}", verdict(cc_p99.map(|v| v <= 10.0)));
    println!("target client_credentials >= 5x oidc-provider: {}", verdict(cc_ratio.map(|v| v >= 5.0)));
    println!(
        "target refresh_token >= 5,000/s (SQLite): {}",
        verdict(rate("portcullis_refresh").map(|v| v >= 5_000.0))
    );
    ratio("portcullis_postgres_client_credentials", "oidc_provider_client_credentials");
    println!(
        "target refresh_token >= 3,000/s ({POSTGRES_REPLICAS} replicas on durable PostgreSQL): {}",
        verdict(rate("portcullis_postgres_refresh").map(|v| v >= 3_000.0))
    );
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
