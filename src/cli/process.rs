//! What the long-running subcommands (`operator`, `token-service`,
//! `scim-service`) share: the store URL from a flag or a mounted file,
//! logging, the runtime, and the shutdown signal.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tracing_subscriber::EnvFilter;

/// Where the store is. Both have an environment variable; the file form is
/// for a mounted Secret.
#[derive(Args, Debug)]
pub struct DatabaseArgs {
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
}

impl DatabaseArgs {
    /// The store URL: the flag, or the file's trimmed contents.
    pub fn url(&self) -> Result<String, String> {
        match (&self.database_url, &self.database_url_file) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|text| text.trim().to_owned())
                .map_err(|e| format!("reading {}: {e}", file.display())),
            (None, None) => Err("--database-url or --database-url-file is required".to_owned()),
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .try_init();
}

/// Runs `main` on a multi-threaded runtime; an error is printed and fails
/// the process.
pub fn block_on(main: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
}
