//! Standalone mode: the whole product in one process, on SQLite, from a
//! folder of manifests instead of the Kubernetes API.
//!
//! ```text
//!  DIR/*.yaml ──watch──► sync (validation + the operator's records, keys, secrets) ──► store (DATA/portcullis.db)
//!                          │ errors: file:line on stderr, the last valid state stays      │ change feed
//!                          ▼                                                              ▼
//!                 bootstrap administrator                 one listener: token service + SCIM service
//!                 banner (credentials, shown once)        (/o/{org}/…, /o/{org}/scim/v2/…);
//!                                                         /metrics only on --metrics-listen
//! ```
//!
//! - [`data_dir`]: what is kept between runs (store, keys, generated secrets).
//! - [`sync`]: one pass from the folder to the store.
//! - [`bootstrap`]: the first administrator of each organization.
//! - [`watch`]: the folder watcher.
//! - [`banner`]: what is printed on start.

pub mod banner;
pub mod bootstrap;
pub mod data_dir;
pub mod sync;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::net::TcpListener;

use self::data_dir::DataDir;
use self::sync::{Pass, Written};
use crate::http_metrics::{self, HttpMetrics};
use crate::scim::service::ScimState;
use crate::store::Store;
use crate::token::service::login::{LoginConfig, LoginState};
use crate::token::service::{SystemClock, TokenServiceConfig, TokenServiceState};

/// What a standalone server is started with.
#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// The folder of manifests (searched recursively).
    pub manifests: PathBuf,
    /// The data directory (created if missing).
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// Timeouts and connection cap of the listener.
    pub limits: crate::listener::ListenerLimits,
    /// Where `/metrics` is served, if anywhere (never on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` the sign-in throttle believes.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Base URL clients use; when not given, `http://localhost:{port}` on a
    /// loopback address, `http://{listen address}` otherwise.
    pub public_base_url: Option<String>,
    /// Where invitation mail goes (`--smtp-url`); none: invitations are refused.
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    /// How old the served compliance posture may be (`--posture-max-age`).
    pub posture_max_age: jiff::SignedDuration,
}

/// Runs the server until `shutdown` resolves; requests in flight finish first.
pub async fn run(
    config: StandaloneConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    if !config.manifests.exists() {
        return Err(format!("{}: no such folder or file of manifests", config.manifests.display()));
    }
    let data = DataDir::open(&config.data).map_err(|e| format!("the data directory: {e}"))?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|e| format!("binding {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| format!("reading the listening address: {e}"))?;
    // A browser treats http://localhost as a secure context and WebAuthn
    // accepts it as a relying party id; an IP address is neither.
    let default_url = match local.ip().is_loopback() {
        true => format!("http://localhost:{}", local.port()),
        false => format!("http://{local}"),
    };
    let base_url = config.public_base_url.clone().unwrap_or(default_url);
    let base_url = base_url.trim_end_matches('/').to_owned();

    let store = Store::connect(&data.database_url()).await.map_err(|e| format!("opening the store: {e}"))?;
    let key_ring = data.key_ring().map_err(|e| format!("the key-encryption key: {e}"))?;
    let secret = data.login_secret().map_err(|e| format!("the login secret: {e}"))?;
    let login = LoginState::new(LoginConfig {
        secret: Some(secret),
        trusted_proxies: config.trusted_proxies.clone(),
        ..LoginConfig::default()
    });

    let mut written = Written::default();
    let first = sync::sync(&config.manifests, &store, &data, &mut written, Timestamp::now())
        .await
        .map_err(|e| format!("taking in {}: {e}", config.manifests.display()))?;
    let (applied, wake_at) = match first {
        Pass::Applied(applied) => {
            banner::print_reports(&applied.warnings);
            let administrators =
                bootstrap::ensure_administrators(&applied.set, &store, &login, Timestamp::now())
                    .await
                    .map_err(|e| format!("the bootstrap administrator: {e}"))?;
            let wake_at = applied.wake_at;
            (Some((applied, administrators)), wake_at)
        }
        Pass::Rejected(reports) => {
            banner::print_reports(&reports);
            banner::print_rejected(&config.manifests, &reports);
            (None, None)
        }
    };

    let token = TokenServiceState::new(TokenServiceConfig {
        store: store.clone(),
        public_base_url: base_url.clone(),
        keys: key_ring.into(),
        login,
        clock: Arc::new(SystemClock),
    })
    .await
    .map_err(|e| format!("starting the token service: {e}"))?;
    if let Some((applied, _)) = &applied {
        use_upstream_secrets(&token, &applied.set);
    }
    if let Some(mailer) = &config.mailer {
        token.set_mailer(mailer.clone());
    }
    token.posture_cache().set_max_age(config.posture_max_age);
    let scim = ScimState::new(store.clone(), &base_url);
    let metrics = Arc::new(HttpMetrics::new());
    let (render_http, render_scim, render_posture) = (metrics.clone(), scim.metrics.clone(), token.clone());
    let render = Arc::new(move || {
        http_metrics::concatenate(&[
            render_http.render(),
            render_scim.render(),
            render_posture.posture_cache().render(),
        ])
    });
    let metrics_port = match config.metrics_listen {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|e| format!("binding the metrics port {address}: {e}"))?;
            Some(tokio::spawn(http_metrics::serve(listener, render)))
        }
        None => None,
    };
    let app = metrics.layer(
        "standalone",
        crate::token::service::router(token.clone())
            .merge(crate::scim::service::router(scim.clone()))
            .merge(crate::probes::router(store.clone())),
    );

    banner::print_start(
        &base_url,
        &config,
        &data,
        applied.as_ref().map(|(a, admins)| (a, admins.as_slice())),
    );
    let notifications =
        tokio::spawn(crate::token::service::access_notifications::deliver_periodically(token.clone()));
    let follower =
        tokio::spawn(watch::follow(config.manifests.clone(), store.clone(), data, token, written, wake_at));
    let housekeeping = tokio::spawn(tidy_periodically(store.clone()));
    let access_expiry = tokio::spawn(crate::store::access_requests::expire_periodically(store.clone()));

    crate::listener::serve(listener, app, config.limits, async {
        shutdown.await;
        tracing::info!("finishing requests in flight");
    })
    .await;
    follower.abort();
    housekeeping.abort();
    access_expiry.abort();
    notifications.abort();
    if let Some(port) = metrics_port {
        port.abort();
    }
    // Sync health is counted in memory between writes: keep the last counts.
    scim.flush_sync_health().await;
    store.close().await;
    Ok(())
}

/// How often the store is tidied, as the leading operator does in a cluster.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The store's housekeeping ([`crate::store::purge::tidy`]): the change log,
/// tombstones and expired codes, refresh tokens and sessions, at start and
/// every [`HOUSEKEEPING_INTERVAL`].
async fn tidy_periodically(store: Store) {
    loop {
        crate::store::purge::tidy(&store, crate::store::now_ms()).await;
        tokio::time::sleep(HOUSEKEEPING_INTERVAL).await;
    }
}

/// The folder's Secrets are where IdentityProviders' client secrets and CA
/// bundles are read (`clientSecretRef`, `caBundleRef`), as a cluster's are.
fn use_upstream_secrets(token: &TokenServiceState, set: &crate::manifests::ManifestSet) {
    let values = set
        .secrets
        .iter()
        .flat_map(|secret| {
            secret.values.iter().map(|(key, value)| {
                ((secret.namespace.clone(), secret.name.clone(), key.clone()), value.clone())
            })
        })
        .collect();
    token.upstreams().set_secrets(Arc::new(crate::federation::upstreams::SecretsInMemory::new(values)));
}
