//! `portcullis scim-service`: the SCIM 2.0 service of every organization
//! ([`crate::scim::service`]) on one listening address, its metrics on
//! another, until SIGTERM or Ctrl-C; in-flight requests finish before it
//! exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::process::{
    DatabaseArgs, ListenerArgs, LogArgs, block_on, init_logging, parse_listen, serve_metrics, shutdown_signal,
};
use crate::http_metrics::{self, HttpMetrics};
use crate::regional_routing::{OrganizationDirectory, route_by_organization};
use crate::scim::service::{ScimState, router};

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
    let stores = args.database.connect().await?;
    let probes = crate::probes::router(stores.default_store().clone());
    // One service per store, each seeing only its own organizations.
    let mut services = BTreeMap::new();
    let mut states: Vec<ScimState> = Vec::new();
    for (location, store) in stores.all() {
        let mut state = ScimState::new(store.clone(), &args.public_base_url);
        // One set of request counters for the process, whichever store served.
        if let Some(first) = states.first() {
            state.metrics = Arc::clone(&first.metrics);
        }
        services.insert(location, router(state.clone()));
        states.push(state);
    }
    let directory = Arc::new(OrganizationDirectory::new(stores.clone()));
    let metrics = Arc::new(HttpMetrics::new());
    let render_http = metrics.clone();
    let render_scim = states[0].metrics.clone();
    let render = Arc::new(move || http_metrics::concatenate(&[render_http.render(), render_scim.render()]));
    let metrics_port = serve_metrics(args.metrics_listen, render).await?;
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "SCIM service listening");
    let app = metrics.layer("scim-service", route_by_organization(directory, services).merge(probes));
    crate::listener::serve(listener, app, args.limits.limits(), async {
        shutdown.await;
        tracing::info!("finishing requests in flight");
    })
    .await;
    if let Some(port) = metrics_port {
        port.abort();
    }
    // Sync health is counted in memory between writes: keep the last counts.
    for state in &states {
        state.flush_sync_health().await;
    }
    Ok(())
}
