//! The health probes of the token and SCIM services, on their service port,
//! at the paths the Deployments the operator writes ask for
//! (`controller::workloads`; the operator's own probe port uses the same):
//!
//! - [`LIVENESS`]: the process answers. Liveness does not depend on the store:
//!   a database outage must not restart every replica at once.
//! - [`READINESS`]: the store answers a trivial query within [`READY_WITHIN`];
//!   otherwise 503, and the replica is taken out of its Service until it does.
//!
//! Served next to the service's own routes, outside its authentication.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::store::Store;

pub const LIVENESS: &str = "/healthz";
pub const READINESS: &str = "/readyz";

/// Under the kubelet's default probe timeout (1 s), so a slow store reads
/// as "not ready" rather than as a probe that timed out.
const READY_WITHIN: Duration = Duration::from_millis(800);

/// `/healthz` and `/readyz`, to merge into a service's router.
pub fn router<S>(store: Store) -> Router<S> {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).with_state(store)
}

async fn readyz(State(store): State<Store>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(READY_WITHIN, store.check_reachable()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store does not answer\n")
        }
        Err(_) => {
            tracing::warn!(within = ?READY_WITHIN, "not ready: the store did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store did not answer in time\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_while_the_store_answers_and_not_once_it_is_gone() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        assert_eq!(readyz(State(store.clone())).await, (StatusCode::OK, "ready\n"));
        store.close().await;
        let (status, body) = readyz(State(store)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("not ready"), "{body}");
    }
}
