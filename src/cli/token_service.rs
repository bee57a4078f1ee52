//! `portcullis token-service`: the OpenID provider of every organization
//! ([`crate::token::service`]) on one listening address, its metrics on
//! another, until SIGTERM or Ctrl-C; in-flight requests finish before it
//! exits.
//!
//! Signing keys come from the store, sealed under the key-encryption key
//! it is given (what the operator's Deployment hands it), or from a keys
//! directory (an exported `{org}-signing-keys` Secret). A key it cannot use
//! stops it at start with the reason, rather than serve without keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::process::{
    DatabaseArgs, ListenerArgs, LogArgs, MailArgs, PostureArgs, TrustedProxiesArgs, block_on, init_logging,
    parse_listen, serve_metrics, shutdown_signal,
};
use crate::federation::upstreams::SecretsDirectory;
use crate::http_metrics::HttpMetrics;
use crate::regional_routing::{OrganizationDirectory, route_by_organization};
use crate::sealing::{KeyEncryptionKey, KeyRing};
use crate::store::Location;
use crate::token::service::keys::{KeyDirectory, SigningKeySource};
use crate::token::service::login::{LoginConfig, LoginState};
use crate::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};

/// Flags of `portcullis token-service`. Each has an environment variable;
/// secrets also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct TokenServiceArgs {
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

    /// Public base URL; each organization's issuer is `{base}/o/{name}`.
    #[arg(long, env = "PORTCULLIS_PUBLIC_BASE_URL")]
    public_base_url: String,

    /// The key-encryption key that opens the signing keys sealed in the
    /// store: 32 bytes, base64 (the operator's `portcullis-service-keys`
    /// Secret, key `key-encryption-key`).
    #[arg(long, env = "PORTCULLIS_KEY_ENCRYPTION_KEY", hide_env_values = true, conflicts_with = "keys_dir")]
    key_encryption_key: Option<String>,

    /// File holding the key-encryption key.
    #[arg(long, env = "PORTCULLIS_KEY_ENCRYPTION_KEY_FILE", conflicts_with = "keys_dir")]
    key_encryption_key_file: Option<PathBuf>,

    /// The key-encryption key the current one replaced, while the operator
    /// re-seals the keys it sealed.
    #[arg(long, env = "PORTCULLIS_PREVIOUS_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    previous_key_encryption_key: Option<String>,

    /// Instead of the store: a directory with one subdirectory of signing keys
    /// per organization (`keys.json` and `{kid}.pem`, as in the exported
    /// `{org}-signing-keys` Secrets).
    #[arg(long, env = "PORTCULLIS_KEYS_DIR")]
    keys_dir: Option<PathBuf>,

    /// The login secret shared by replicas (CSRF and ticket keys, TOTP
    /// sealing): at least 32 bytes. Without it (or its file) each process
    /// makes a random one, which only suits a single replica that is never
    /// restarted.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_SECRET",
        hide_env_values = true,
        conflicts_with = "login_secret_file"
    )]
    login_secret: Option<String>,

    /// File with the login secret.
    #[arg(long, env = "PORTCULLIS_LOGIN_SECRET_FILE")]
    login_secret_file: Option<PathBuf>,

    #[command(flatten)]
    proxies: TrustedProxiesArgs,

    #[command(flatten)]
    mail: MailArgs,

    #[command(flatten)]
    posture: PostureArgs,

    /// Directory of the mounted Secrets that IdentityProviders name
    /// (`clientSecretRef`, `caBundleRef`): `{dir}/{namespace}/{secret}/{key}`.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_SECRETS_DIR")]
    upstream_secrets_dir: Option<PathBuf>,
}

impl TokenServiceArgs {
    fn key_source(&self) -> Result<SigningKeySource, String> {
        let text = match (&self.key_encryption_key, &self.key_encryption_key_file) {
            (Some(text), _) if !text.trim().is_empty() => Some(text.clone()),
            (_, Some(file)) => {
                Some(std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?)
            }
            _ => None,
        };
        match (text, &self.keys_dir) {
            (Some(text), _) => {
                let current =
                    KeyEncryptionKey::from_text(&text).map_err(|e| format!("the key-encryption key: {e}"))?;
                let previous =
                    match self.previous_key_encryption_key.as_deref().filter(|t| !t.trim().is_empty()) {
                        Some(text) => vec![
                            KeyEncryptionKey::from_text(text)
                                .map_err(|e| format!("the previous key-encryption key: {e}"))?,
                        ],
                        None => Vec::new(),
                    };
                Ok(KeyRing::new(current, previous).into())
            }
            (None, Some(dir)) => Ok(KeyDirectory::new(dir).into()),
            (None, None) => Err("signing keys: give --key-encryption-key (keys sealed in the store, as the \
                                 operator keeps them) or --keys-dir"
                .to_owned()),
        }
    }

    fn login_secret(&self) -> Result<Option<Vec<u8>>, String> {
        let secret = match (&self.login_secret, &self.login_secret_file) {
            (Some(text), _) => text.trim().as_bytes().to_vec(),
            (None, Some(file)) => {
                std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?
            }
            (None, None) => {
                tracing::warn!(
                    "no login secret: this process makes its own, so other replicas reject its sign-in forms \
                     and TOTP enrolments do not survive a restart (give --login-secret)"
                );
                return Ok(None);
            }
        };
        if secret.len() < 32 {
            return Err(format!("the login secret has {} bytes; at least 32 are needed", secret.len()));
        }
        Ok(Some(secret))
    }
}

pub fn run(args: TokenServiceArgs) -> ExitCode {
    init_logging(args.log.log_format);
    block_on(serve(args))
}

async fn serve(args: TokenServiceArgs) -> Result<(), String> {
    // Checked before connecting; each store's service gets its own (its own cache).
    args.key_source()?;
    let secret = args.login_secret()?;
    let mailer = args.mail.mailer()?.map(Arc::new);
    let stores = args.database.connect().await?;
    let probes = crate::probes::router(stores.default_store().clone());
    // One service per store, each seeing only its own organizations.
    let mut services = BTreeMap::new();
    let mut states = Vec::new();
    for (location, store) in stores.all() {
        let state = TokenServiceState::new(TokenServiceConfig {
            store: store.clone(),
            public_base_url: args.public_base_url.clone(),
            keys: args.key_source()?,
            login: LoginState::new(LoginConfig {
                secret: secret.clone(),
                trusted_proxies: args.proxies.trusted_proxies.clone(),
                ..LoginConfig::default()
            }),
            clock: Arc::new(SystemClock),
        })
        .await
        .map_err(|e| format!("starting the token service{}: {e}", in_region(&location)))?;
        if let Some(mailer) = &mailer {
            state.set_mailer(mailer.clone());
        }
        state.posture_cache().set_max_age(args.posture.max_age());
        if let Some(dir) = &args.upstream_secrets_dir {
            state.upstreams().set_secrets(Arc::new(SecretsDirectory(dir.clone())));
        }
        services.insert(location, router(state.clone()));
        states.push(state);
    }
    let delivering = states.clone();
    let directory = Arc::new(OrganizationDirectory::new(stores.clone()));
    let metrics = Arc::new(HttpMetrics::new());
    let render_http = metrics.clone();
    let render = move || {
        let mut parts = vec![render_http.render()];
        parts.extend(states.iter().map(|state| state.posture_cache().render()));
        crate::http_metrics::concatenate(&parts)
    };
    let metrics_port = serve_metrics(args.metrics_listen, Arc::new(render)).await?;
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "token service listening");
    // Each store's outbox of access-request notifications, delivered by its service.
    let notifications: Vec<_> = delivering
        .into_iter()
        .map(|state| tokio::spawn(crate::token::service::access_notifications::deliver_periodically(state)))
        .collect();
    let app = metrics.layer("token-service", route_by_organization(directory, services).merge(probes));
    crate::listener::serve(listener, app, args.limits.limits(), async {
        shutdown.await;
        tracing::info!("finishing requests in flight");
    })
    .await;
    notifications.iter().for_each(tokio::task::JoinHandle::abort);
    if let Some(port) = metrics_port {
        port.abort();
    }
    Ok(())
}

/// ` (region eu)` for a regional store, nothing for the default one.
fn in_region(location: &Location) -> String {
    location.as_ref().map(|region| format!(" (region {region})")).unwrap_or_default()
}
