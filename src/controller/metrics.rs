//! Prometheus metrics and health probes, served on one port:
//! `/metrics` (OpenMetrics text), `/healthz` (the process answers),
//! `/readyz` (connected to the store, and — when leading — caches synced).
//!
//! | metric | labels |
//! |---|---|
//! | `portcullis_operator_reconciles_total` | `kind` |
//! | `portcullis_operator_reconcile_errors_total` | `kind`, `reason` |
//! | `portcullis_operator_reconcile_duration_seconds` (histogram) | `kind` |
//! | `portcullis_operator_objects` (gauge) | `kind` |
//! | `portcullis_operator_watch_errors_total` | `kind` |
//! | `portcullis_operator_leader` (gauge, 0 or 1) | |
//! | `portcullis_operator_setting_problems` (gauge) | |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::Error;
use crate::probes;
use crate::store::ResourceKind;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms … 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The operator's metrics and probe state.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: HistogramFamily,
    objects: Family<Labels, Gauge>,
    watch_errors: Family<Labels, Counter>,
    leader: Gauge,
    setting_problems: Gauge,
    store_ready: AtomicBool,
    caches_synced: AtomicBool,
    is_leader: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis_operator");
        let reconciles = Family::<Labels, Counter>::default();
        registry.register("reconciles", "Reconcile passes, by kind", reconciles.clone());
        let errors = Family::<Labels, Counter>::default();
        registry.register("reconcile_errors", "Failed reconcile passes, by kind and reason", errors.clone());
        let duration = HistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile pass took",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let objects = Family::<Labels, Gauge>::default();
        registry.register("objects", "Objects in the operator's caches, by kind", objects.clone());
        let watch_errors = Family::<Labels, Counter>::default();
        registry.register("watch_errors", "Failed watch requests, by kind", watch_errors.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this operator holds the leader Lease", leader.clone());
        let setting_problems = Gauge::default();
        registry.register(
            "setting_problems",
            "Problems with the operator's settings that keep the services from serving (see ServicesConfigured)",
            setting_problems.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            watch_errors,
            leader,
            setting_problems,
            store_ready: AtomicBool::new(false),
            caches_synced: AtomicBool::new(false),
            is_leader: AtomicBool::new(false),
        }
    }

    /// Counts one reconcile pass.
    pub fn reconciled(&self, kind: ResourceKind, took: Duration, error: Option<&Error>) {
        let labels = vec![("kind", kind.as_str().to_owned())];
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
        if let Some(error) = error {
            let labels = vec![("kind", kind.as_str().to_owned()), ("reason", error.reason().to_owned())];
            self.errors.get_or_create(&labels).inc();
        }
    }

    pub fn objects(&self, kind: ResourceKind, count: usize) {
        let labels = vec![("kind", kind.as_str().to_owned())];
        self.objects.get_or_create(&labels).set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn watch_error(&self, kind: ResourceKind) {
        self.watch_errors.get_or_create(&vec![("kind", kind.as_str().to_owned())]).inc();
    }

    pub fn set_setting_problems(&self, count: usize) {
        self.setting_problems.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        self.is_leader.store(leader, Ordering::SeqCst);
        if !leader {
            self.caches_synced.store(false, Ordering::SeqCst);
        }
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::SeqCst)
    }

    pub fn set_store_ready(&self, ready: bool) {
        self.store_ready.store(ready, Ordering::SeqCst);
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.caches_synced.store(synced, Ordering::SeqCst);
    }

    /// Ready: the store is connected and, when leading, the caches are synced.
    /// A follower standing by is ready: it can take over.
    pub fn is_ready(&self) -> bool {
        self.store_ready.load(Ordering::SeqCst)
            && (!self.is_leader() || self.caches_synced.load(Ordering::SeqCst))
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The probe and metrics routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route(probes::LIVENESS, get(|| async { "ok\n" }))
        .route(probes::READINESS, get(readyz))
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render())
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds the probe port; serving runs until the process stops.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address).await.map_err(|source| Error::Serve { address: address.to_string(), source })
}

/// Serves the routes on a bound listener, with the timeouts and connection
/// cap of every listener ([`crate::listener`]), until the process stops.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> Result<(), Error> {
    let limits = crate::listener::ListenerLimits::default();
    crate::listener::serve(listener, router(metrics), limits, std::future::pending()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format_with_their_labels() {
        let metrics = Metrics::new();
        metrics.reconciled(ResourceKind::Role, Duration::from_millis(3), None);
        metrics.reconciled(
            ResourceKind::Role,
            Duration::from_millis(3),
            Some(&Error::Generate { what: "client secret" }),
        );
        metrics.objects(ResourceKind::RoleAssignment, 6);
        metrics.set_leader(true);
        let text = metrics.render();
        assert!(text.contains(r#"portcullis_operator_reconciles_total{kind="Role"} 2"#), "{text}");
        assert!(
            text.contains(r#"portcullis_operator_reconcile_errors_total{kind="Role",reason="Generate"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"portcullis_operator_reconcile_duration_seconds_bucket{le="0.004",kind="Role"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"portcullis_operator_objects{kind="RoleAssignment"} 6"#), "{text}");
        assert!(text.contains("portcullis_operator_leader 1"), "{text}");
    }

    #[test]
    fn a_leader_is_ready_only_once_its_caches_are_synced() {
        let metrics = Metrics::new();
        assert!(!metrics.is_ready(), "no store yet");
        metrics.set_store_ready(true);
        assert!(metrics.is_ready(), "a follower standing by is ready");
        metrics.set_leader(true);
        assert!(!metrics.is_ready());
        metrics.set_caches_synced(true);
        assert!(metrics.is_ready());
    }
}
