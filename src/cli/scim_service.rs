//! `portcullis scim-service`: the SCIM 2.0 service of every organization
//! ([`crate::scim::service`]) on one listening address, until SIGTERM or
//! Ctrl-C; in-flight requests finish before it exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::scim::service::{ScimState, router};
use crate::store::Store;

/// Flags of `portcullis scim-service`. Each has an environment variable; the
/// database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct ScimServiceArgs {
    /// Store URL: `postgres://…` or `sqlite://path?mode=rwc`.
    #[arg(
        long,
        env = "PORTCULLIS_DATABASE_URL",
        hide_env_values = true,
        required_unless_present = "database_url_file"
    )]
    database_url: Option<String>,

    /// File holding the store URL (for example a mounted Secret).
    #[arg(long, env = "PORTCULLIS_DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,

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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ScimServiceArgs) -> Result<(), String> {
    let database_url = match (args.database_url, &args.database_url_file) {
        (Some(url), _) => url,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("reading {}: {e}", file.display()))?,
        (None, None) => return Err("--database-url or --database-url-file is required".into()),
    };
    let store = Store::connect(&database_url).await.map_err(|e| format!("connecting to the store: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "SCIM service listening");
    axum::serve(listener, router(ScimState::new(store, &args.public_base_url)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
