//! `portcullis token-service`: the OpenID provider of every organization
//! ([`crate::token::service`]) on one listening address, until SIGTERM or
//! Ctrl-C; in-flight requests finish before it exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::process::{DatabaseArgs, block_on, init_logging, shutdown_signal};
use crate::federation::upstreams::SecretsDirectory;
use crate::store::Store;
use crate::token::service::keys::KeyDirectory;
use crate::token::service::login::{LoginConfig, LoginState};
use crate::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

/// Flags of `portcullis token-service`. Each has an environment variable;
/// the database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct TokenServiceArgs {
    #[command(flatten)]
    database: DatabaseArgs,

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

    /// Directory of the mounted Secrets that IdentityProviders name
    /// (`clientSecretRef`, `caBundleRef`): `{dir}/{namespace}/{secret}/{key}`.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_SECRETS_DIR")]
    upstream_secrets_dir: Option<PathBuf>,
}

pub fn run(args: TokenServiceArgs) -> ExitCode {
    init_logging();
    block_on(serve(args))
}

async fn serve(args: TokenServiceArgs) -> Result<(), String> {
    let database_url = args.database.url()?;
    let secret = match &args.login_secret_file {
        Some(file) => Some(std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?),
        None => None,
    };
    let store = Store::connect(&database_url).await.map_err(|e| format!("connecting to the store: {e}"))?;
    let probes = crate::probes::router(store.clone());
    let state = TokenServiceState::new(TokenServiceConfig {
        store,
        public_base_url: args.public_base_url,
        keys: KeyDirectory::new(args.keys_dir),
        login: LoginState::new(LoginConfig { secret, ..LoginConfig::default() }),
        clock: Arc::new(SystemClock),
    })
    .await
    .map_err(|e| format!("starting the token service: {e}"))?;
    if let Some(dir) = args.upstream_secrets_dir {
        state.upstreams().set_secrets(Arc::new(SecretsDirectory(dir)));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "token service listening");
    axum::serve(listener, router(state).merge(probes).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            shutdown_signal().await;
            tracing::info!("finishing requests in flight");
        })
        .await
        .map_err(|e| format!("serving: {e}"))
}
