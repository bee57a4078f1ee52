//! The closed-loop HTTP load generator of `token_load`: N workers, each with
//! its own keep-alive HTTP/1.1 connection, each sending the next request as
//! soon as the previous answer has been read, timing every request.
//!
//! ```text
//!  start ── warm-up ──┬──────── measured window ────────┬── stop
//!                     │ latencies into one histogram    │ (or the request cap)
//!  worker 1: conn ─► POST ◄─ 200 ─► POST ◄─ 200 ─► …    │
//!  worker N: conn ─► POST ◄─ 200 ─► POST ◄─ 200 ─► …    │
//! ```
//!
//! What each worker sends, and whether an answer counts as a success, is an
//! [`Exchange`]: a fixed form for client_credentials, a form carrying the
//! worker's current refresh token (replaced by every answer) for refresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One worker's conversation with the token endpoint.
pub trait Exchange: Send + 'static {
    /// The form body of the next request.
    fn next_body(&mut self) -> Bytes;
    /// Checks an answer and takes from it what the next request needs.
    fn on_response(&mut self, status: StatusCode, body: &[u8]) -> Result<(), String>;
    /// Whether this worker can go on after a failed answer (a rotated-away
    /// refresh token cannot).
    fn survives_failure(&self) -> bool {
        true
    }
}

/// Where the requests go and how the client authenticates.
#[derive(Clone)]
pub struct Target {
    /// The server, or its replicas: connection `i` goes to `addrs[i % len]`.
    pub addrs: Vec<SocketAddr>,
    pub path: String,
    /// `Authorization` header value (client_secret_basic), if any.
    pub authorization: Option<String>,
}

/// How long and how hard.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub warm_up: Duration,
    pub measure: Duration,
    /// Measured requests stop once this many have completed.
    pub max_requests: u64,
}

/// What one run measured.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds per request, successes and failures alike.
    pub latency_us: Histogram<u64>,
    pub first_error: Option<String>,
    /// CPU time of this process over the measured window.
    pub own_cpu: Duration,
    /// CPU time of the peer server process over the window, when it is one.
    pub peer_cpu: Option<Duration>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p50_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }
}

struct WorkerResult<E> {
    exchange: E,
    stats: WorkerStats,
}

struct WorkerStats {
    latency_us: Histogram<u64>,
    requests: u64,
    errors: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `load` against `target`, one exchange per connection, on the
/// current tokio runtime, and gives the exchanges back (a refresh worker's
/// current token carries over to the next run). `peer_pid` is the server's
/// process, when it is not this one, to report its CPU time.
pub async fn run<E: Exchange>(
    target: &Target,
    load: Load,
    exchanges: Vec<E>,
    peer_pid: Option<u32>,
) -> Result<(Outcome, Vec<E>), String> {
    assert_eq!(exchanges.len(), load.connections, "one exchange per connection");
    let started = Instant::now();
    let measure_from = started + load.warm_up;
    let measure_until = measure_from + load.measure;
    let measured = Arc::new(AtomicU64::new(0));

    let mut workers = Vec::with_capacity(load.connections);
    for (n, exchange) in exchanges.into_iter().enumerate() {
        let addr = target.addrs[n % target.addrs.len()];
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
        tokio::spawn(connection);
        let worker = Worker {
            sender,
            exchange,
            target: target.clone(),
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a header value"),
            measured: measured.clone(),
            max_requests: load.max_requests,
        };
        workers.push(tokio::spawn(worker.run(measure_from, measure_until)));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = (cpu_time(None), peer_pid.map(|pid| cpu_time(Some(pid))));

    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
        first_error: None,
        own_cpu: Duration::ZERO,
        peer_cpu: None,
    };
    let mut last_done = measure_from;
    let mut exchanges = Vec::with_capacity(load.connections);
    for worker in workers {
        let WorkerResult { exchange, stats: result } =
            worker.await.map_err(|e| format!("worker panicked: {e}"))?;
        outcome.latency_us.add(&result.latency_us).expect("same histogram bounds");
        outcome.requests += result.requests;
        outcome.errors += result.errors;
        outcome.first_error = outcome.first_error.or(result.first_error);
        last_done = last_done.max(result.last_done.unwrap_or(measure_from));
        exchanges.push(exchange);
    }
    outcome.elapsed = last_done.saturating_duration_since(measure_from);
    outcome.own_cpu = cpu_time(None).saturating_sub(cpu_before.0);
    outcome.peer_cpu =
        peer_pid.zip(cpu_before.1).map(|(pid, before)| cpu_time(Some(pid)).saturating_sub(before));
    Ok((outcome, exchanges))
}

struct Worker<E> {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    exchange: E,
    target: Target,
    host: HeaderValue,
    measured: Arc<AtomicU64>,
    max_requests: u64,
}

impl<E: Exchange> Worker<E> {
    async fn run(mut self, measure_from: Instant, measure_until: Instant) -> WorkerResult<E> {
        let stats = self.drive(measure_from, measure_until).await;
        WorkerResult { exchange: self.exchange, stats }
    }

    async fn drive(&mut self, measure_from: Instant, measure_until: Instant) -> WorkerStats {
        let authorization = self
            .target
            .authorization
            .as_deref()
            .map(|value| HeaderValue::from_str(value).expect("an Authorization header value"));
        let form = HeaderValue::from_static("application/x-www-form-urlencoded");
        let mut result = WorkerStats {
            latency_us: histogram(),
            requests: 0,
            errors: 0,
            last_done: None,
            first_error: None,
        };
        loop {
            let sent = Instant::now();
            if sent >= measure_until || self.measured.load(Ordering::Relaxed) >= self.max_requests {
                return result;
            }
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.target.path.as_str())
                .header(HOST, self.host.clone())
                .header(CONTENT_TYPE, form.clone());
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let request = request.body(Full::new(self.exchange.next_body())).expect("a well-formed request");
            let answer = self.exchange_once(request).await;
            let done = Instant::now();
            let in_window = sent >= measure_from;
            if in_window {
                self.measured.fetch_add(1, Ordering::Relaxed);
                result.requests += 1;
                result.last_done = Some(done);
                let micros = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                result.latency_us.saturating_record(micros.max(1));
            }
            if let Err(error) = answer {
                if in_window {
                    result.errors += 1;
                }
                result.first_error.get_or_insert(error);
                if !self.exchange.survives_failure() || self.sender.is_closed() {
                    // A worker without a token or a connection stops; the
                    // error count and the first error say why.
                    return result;
                }
            }
        }
    }

    async fn exchange_once(&mut self, request: Request<Full<Bytes>>) -> Result<(), String> {
        self.sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let response = self.sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body =
            response.into_body().collect().await.map_err(|e| format!("response body: {e}"))?.to_bytes();
        self.exchange.on_response(status, &body)
    }
}

/// User plus system CPU time of a process (this one when `None`), from
/// `/proc/<pid>/stat`; zero where that cannot be read.
fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else { return Duration::ZERO };
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th and stime the 13th, in clock ticks of 1/100 s.
    let Some((_, after_name)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |at: usize| fields.get(at).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// client_credentials: the same form every time; success is a 200 with an
/// access token.
pub struct ClientCredentials {
    pub form: Bytes,
}

impl Exchange for ClientCredentials {
    fn next_body(&mut self) -> Bytes {
        self.form.clone()
    }

    fn on_response(&mut self, status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status == StatusCode::OK && contains(body, b"\"access_token\"") {
            Ok(())
        } else {
            Err(describe(status, body))
        }
    }
}

/// refresh_token with rotation: every answer carries the refresh token the
/// next request uses.
pub struct RotatingRefresh {
    /// Form fields sent besides grant_type and refresh_token, URL-encoded,
    /// starting with `&` (or empty).
    pub extra_form: String,
    pub refresh_token: String,
}

#[derive(serde::Deserialize)]
struct RefreshAnswer<'a> {
    #[serde(borrow)]
    access_token: Option<&'a str>,
    #[serde(borrow)]
    refresh_token: Option<&'a str>,
}

impl Exchange for RotatingRefresh {
    fn next_body(&mut self) -> Bytes {
        let mut form = String::with_capacity(64 + self.refresh_token.len() + self.extra_form.len());
        form.push_str("grant_type=refresh_token&refresh_token=");
        push_form_encoded(&mut form, &self.refresh_token);
        form.push_str(&self.extra_form);
        Bytes::from(form)
    }

    fn on_response(&mut self, status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(describe(status, body));
        }
        let answer: RefreshAnswer<'_> =
            serde_json::from_slice(body).map_err(|e| format!("token answer: {e}"))?;
        match (answer.access_token, answer.refresh_token) {
            (Some(_), Some(next)) => {
                next.clone_into(&mut self.refresh_token);
                Ok(())
            }
            _ => Err(format!(
                "200 without an access token and a new refresh token: {}",
                describe(status, body)
            )),
        }
    }

    fn survives_failure(&self) -> bool {
        false
    }
}

/// Accepts any 200 (the generator's own ceiling against a fixed answer).
pub struct AnyOk {
    pub form: Bytes,
}

impl Exchange for AnyOk {
    fn next_body(&mut self) -> Bytes {
        self.form.clone()
    }

    fn on_response(&mut self, status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status == StatusCode::OK { Ok(()) } else { Err(describe(status, body)) }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn describe(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    format!("HTTP {status}: {text}")
}

/// `application/x-www-form-urlencoded` value encoding (unreserved bytes kept).
fn push_form_encoded(form: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            form.push(char::from(byte));
        } else {
            form.push('%');
            form.push(char::from(HEX[usize::from(byte >> 4)]));
            form.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
}
