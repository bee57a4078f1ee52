//! `portcullis scim-service`: the SCIM 2.0 service of every organization
//! ([`crate::scim::service`]) on one listening address, until SIGTERM or
//! Ctrl-C; in-flight requests finish before it exits.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::process::{DatabaseArgs, block_on, init_logging, shutdown_signal};
use crate::scim::service::{ScimState, router};
use crate::store::Store;

/// Flags of `portcullis scim-service`. Each has an environment variable; the
/// database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct ScimServiceArgs {
    #[command(flatten)]
    database: DatabaseArgs,

    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Public base URL; an organization's SCIM base is `{base}/o/{name}/scim/v2`.
    #[arg(
        long,
        env = "PORTCULLIS_SCIM_BASE_URL",
        default_value = "http://portcullis-scim-service.portcullis.svc:8080"
    )]
    public_base_url: String,
}

pub fn run(args: ScimServiceArgs) -> ExitCode {
    init_logging();
    block_on(serve(args))
}

async fn serve(args: ScimServiceArgs) -> Result<(), String> {
    let database_url = args.database.url()?;
    let store = Store::connect(&database_url).await.map_err(|e| format!("connecting to the store: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "SCIM service listening");
    let probes = crate::probes::router(store.clone());
    let state = ScimState::new(store, &args.public_base_url);
    // Connect info: the peer address of each request, for its audit events.
    let app =
        router(state.clone()).merge(probes).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            shutdown_signal().await;
            tracing::info!("finishing requests in flight");
        })
        .await
        .map_err(|e| format!("serving: {e}"));
    // Sync health is counted in memory between writes: keep the last counts.
    state.flush_sync_health().await;
    served
}
