//! `portcullis scim-service`: the SCIM 2.0 service of every organization
//! ([`crate::scim::service`]) on one listening address, its metrics on
//! another, until SIGTERM or Ctrl-C; in-flight requests finish before it
//! exits.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::process::{
    DatabaseArgs, ListenerArgs, LogArgs, block_on, init_logging, parse_listen, serve_metrics, shutdown_signal,
};
use crate::http_metrics::{self, HttpMetrics};
use crate::scim::service::{ScimState, router};
use crate::store::Store;

/// Flags of `portcullis scim-service`. Each has an environment variable; the
/// database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct ScimServiceArgs {
    #[command(flatten)]
    database: DatabaseArgs,

    #[command(flatten)]
    log: LogArgs,

    /// Address to listen on (`IP:PORT`).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "0.0.0.0:8080", value_parser = parse_listen)]
    listen: SocketAddr,

    #[command(flatten)]
    limits: ListenerArgs,
    /// Address of `GET /metrics` (`IP:PORT`), apart from the public listener;
    /// no metrics are served without it.
    #[arg(long, env = "PORTCULLIS_METRICS_LISTEN", value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,

    /// Public base URL; an organization's SCIM base is `{base}/o/{name}/scim/v2`.
    #[arg(long, env = "PORTCULLIS_SCIM_BASE_URL")]
    public_base_url: String,
}

pub fn run(args: ScimServiceArgs) -> ExitCode {
    init_logging(args.log.log_format);
    block_on(serve(args))
}

async fn serve(args: ScimServiceArgs) -> Result<(), String> {
    let database_url = args.database.url()?;
    let store = Store::connect(&database_url).await.map_err(|e| format!("connecting to the store: {e}"))?;
    let probes = crate::probes::router(store.clone());
    let state = ScimState::new(store, &args.public_base_url);
    let metrics = Arc::new(HttpMetrics::new());
    let (render_http, render_scim) = (metrics.clone(), state.metrics.clone());
    let render = Arc::new(move || http_metrics::concatenate(&[render_http.render(), render_scim.render()]));
    let metrics_port = serve_metrics(args.metrics_listen, render).await?;
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "SCIM service listening");
    let app = metrics.layer("scim-service", router(state.clone()).merge(probes));
    crate::listener::serve(listener, app, args.limits.limits(), async {
        shutdown.await;
        tracing::info!("finishing requests in flight");
    })
    .await;
    if let Some(port) = metrics_port {
        port.abort();
    }
    // Sync health is counted in memory between writes: keep the last counts.
    state.flush_sync_health().await;
    Ok(())
}
