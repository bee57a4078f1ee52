//! `portcullis token-service`: the OpenID provider of every organization
//! ([`crate::token::service`]) on one listening address, until SIGTERM or
//! Ctrl-C; in-flight requests finish before it exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::store::Store;
use crate::token::service::keys::KeyDirectory;
use crate::token::service::login::{LoginConfig, LoginState};
use crate::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

/// Flags of `portcullis token-service`. Each has an environment variable;
/// the database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct TokenServiceArgs {
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

    /// Public base URL; each organization's issuer is `{base}/o/{name}`.
    #[arg(long, env = "PORTCULLIS_PUBLIC_BASE_URL")]
    public_base_url: String,

    /// Directory with one subdirectory of signing keys per organization
    /// (`keys.json` and `{kid}.pem`, the mounted `{org}-signing-keys` Secrets).
    #[arg(long, env = "PORTCULLIS_KEYS_DIR")]
    keys_dir: PathBuf,

    /// File with the login secret shared by replicas (CSRF and TOTP keys); a
    /// random one per process when absent.
    #[arg(long, env = "PORTCULLIS_LOGIN_SECRET_FILE")]
    login_secret_file: Option<PathBuf>,
}

pub fn run(args: TokenServiceArgs) -> ExitCode {
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

async fn serve(args: TokenServiceArgs) -> Result<(), String> {
    let database_url = match (args.database_url, &args.database_url_file) {
        (Some(url), _) => url,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("reading {}: {e}", file.display()))?,
        (None, None) => return Err("--database-url or --database-url-file is required".into()),
    };
    let secret = match &args.login_secret_file {
        Some(file) => Some(std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?),
        None => None,
    };
    let store = Store::connect(&database_url).await.map_err(|e| format!("connecting to the store: {e}"))?;
    let state = TokenServiceState::new(TokenServiceConfig {
        store,
        public_base_url: args.public_base_url,
        keys: KeyDirectory::new(args.keys_dir),
        login: LoginState::new(LoginConfig { secret, ..LoginConfig::default() }),
        clock: Arc::new(SystemClock),
    })
    .await
    .map_err(|e| format!("starting the token service: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "token service listening");
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
