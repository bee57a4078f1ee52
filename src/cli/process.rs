//! What the long-running subcommands (`operator`, `token-service`,
//! `scim-service`, `standalone`) share: the store URL from a flag or a
//! mounted file, the limits of a listener, logging, the runtime, and the
//! shutdown signal.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::api::GoDuration;
use crate::listener::ListenerLimits;
use crate::store::RegionalStores;

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

    /// A regional store, `REGION=URL` (repeatable): the organizations whose
    /// `dataResidency` is REGION live there, and only there (docs/data-residency.md).
    #[arg(long = "store", value_name = "REGION=URL", value_parser = parse_region_pair)]
    stores: Vec<(String, String)>,

    /// A regional store whose URL is in a file, `REGION=PATH` (repeatable; a
    /// mounted Secret). Several are comma-separated in the variable.
    #[arg(
        long = "store-file",
        value_name = "REGION=PATH",
        env = "PORTCULLIS_STORE_FILES",
        value_delimiter = ',',
        value_parser = parse_region_pair
    )]
    store_files: Vec<(String, String)>,

    /// A regional store whose URL is in an environment variable,
    /// `REGION=VARIABLE` (repeatable; how the operator's Deployments hand
    /// over a Secret's key). Several are comma-separated in the variable.
    #[arg(
        long = "store-env",
        value_name = "REGION=VARIABLE",
        env = "PORTCULLIS_STORE_ENVS",
        value_delimiter = ',',
        value_parser = parse_region_pair
    )]
    store_envs: Vec<(String, String)>,
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

    /// The regional stores' URLs by region, from `--store`, `--store-file`
    /// and `--store-env`;
    /// a region given twice is refused rather than one of them guessed.
    pub fn region_urls(&self) -> Result<BTreeMap<String, String>, String> {
        let mut urls = BTreeMap::new();
        let files = self.store_files.iter().map(|(region, path)| {
            std::fs::read_to_string(path)
                .map(|text| (region, text.trim().to_owned()))
                .map_err(|e| format!("reading the store URL of region {region} from {path}: {e}"))
        });
        let flags = self.stores.iter().map(|(region, url)| Ok((region, url.clone())));
        let variables = self.store_envs.iter().map(|(region, variable)| {
            std::env::var(variable).map(|text| (region, text.trim().to_owned())).map_err(|_| {
                format!("the store URL of region {region}: environment variable {variable} is not set")
            })
        });
        for pair in flags.chain(files).chain(variables) {
            let (region, url) = pair?;
            if urls.insert(region.clone(), url).is_some() {
                return Err(format!("region {region:?} is given more than one store"));
            }
        }
        Ok(urls)
    }

    /// Connects to the default store and every regional one (each migrated).
    pub async fn connect(&self) -> Result<RegionalStores, String> {
        RegionalStores::connect(&self.url()?, &self.region_urls()?)
            .await
            .map_err(|e| format!("connecting to the store: {}", crate::error_chain::error_chain(&e)))
    }
}

/// `REGION=VALUE`; a region is written as `dataResidency` accepts it
/// (`eu`, `us-east`: two letters, then `-` and letters or digits).
pub(super) fn parse_region_pair(text: &str) -> Result<(String, String), String> {
    let (region, value) =
        text.split_once('=').ok_or("expected REGION=VALUE, such as eu=/etc/stores/eu/url")?;
    let (prefix, rest) = region.split_at_checked(2).unwrap_or((region, ""));
    let valid = region.len() <= 32
        && prefix.len() == 2
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && (rest.is_empty()
            || rest.strip_prefix('-').is_some_and(|parts| {
                parts.split('-').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
            }));
    if !valid {
        return Err(format!(
            "region {region:?} is not a dataResidency value such as eu or us-east (^[a-z]{{2}}(-[a-z0-9]+)*$)"
        ));
    }
    if value.trim().is_empty() {
        return Err(format!("region {region} has no value"));
    }
    Ok((region.to_owned(), value.trim().to_owned()))
}

/// What a listener tolerates from slow or numerous clients ([`crate::listener`]).
#[derive(Args, Debug, Clone)]
pub struct ListenerArgs {
    /// Time a client has to send a request's headers; an idle keep-alive
    /// connection is closed after it too (Go duration: `10s`, `1m`).
    #[arg(long, env = "PORTCULLIS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,

    /// Time a request may take, reading its body included; then 408.
    #[arg(long, env = "PORTCULLIS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = ListenerLimits::default().max_connections)]
    max_connections: usize,
}

impl ListenerArgs {
    pub fn limits(&self) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections.max(1),
        }
    }
}

/// A listening address, `IP:PORT`; an IPv6 address may come without
/// brackets (`fd00::5:8080`), as `$(POD_IP):8080` gives it on an IPv6 pod.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} is not IP:PORT"))?;
    let ip: IpAddr =
        host.parse().map_err(|_| format!("{text:?} is not IP:PORT ({host:?} is not an IP address)"))?;
    let port: u16 = port.parse().map_err(|_| format!("{text:?} is not IP:PORT ({port:?} is not a port)"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Binds the metrics port, if one is asked for, and serves `render` there.
pub async fn serve_metrics(
    address: Option<SocketAddr>,
    render: crate::http_metrics::Render,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(address) = address else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("binding the metrics port {address}: {e}"))?;
    tracing::info!(%address, "serving /metrics");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = crate::http_metrics::serve(listener, render).await {
            tracing::error!(%error, "the metrics port stopped");
        }
    })))
}

/// Reverse proxies in front of the sign-in pages.
#[derive(Args, Debug, Clone, Default)]
pub struct TrustedProxiesArgs {
    /// CIDR ranges of the reverse proxies (Ingress controller, load balancer)
    /// whose `X-Forwarded-For` is believed, comma-separated (`10.0.0.0/8,fd00::/8`).
    /// Sign-in throttling then counts the client they forwarded, not the
    /// proxy. Empty: the TCP peer is the client.
    #[arg(long, env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The compliance posture the token service serves (`token-service`, `standalone`).
#[derive(Args, Debug, Clone)]
pub struct PostureArgs {
    /// How old, in seconds, the posture the admin API and `/admin/posture`
    /// show may be before it is computed again (0: on every request).
    #[arg(long, env = "PORTCULLIS_POSTURE_MAX_AGE", default_value_t = 60)]
    pub posture_max_age: u32,
}

impl PostureArgs {
    pub fn max_age(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::from(self.posture_max_age))
    }
}

/// Outgoing mail: invitation links (`token-service`, `standalone`).
#[derive(Args, Debug, Clone, Default)]
pub struct MailArgs {
    /// SMTP server for invitation mail, as a URL: `smtps://host:465`,
    /// `smtp://host:587?tls=required` (STARTTLS), `smtp://127.0.0.1:25` (no
    /// TLS, loopback only), with `user:password@` when it needs a login.
    /// Without it, invitations are refused (their links could reach nobody).
    #[arg(long, env = "PORTCULLIS_SMTP_URL", hide_env_values = true, conflicts_with = "smtp_url_file")]
    pub smtp_url: Option<String>,
    /// File holding the SMTP URL (a mounted Secret).
    #[arg(long, env = "PORTCULLIS_SMTP_URL_FILE")]
    pub smtp_url_file: Option<std::path::PathBuf>,
    /// The sender of invitation mail: `Name <address>` or an address.
    #[arg(long, env = "PORTCULLIS_MAIL_FROM", default_value = "Portcullis <portcullis@localhost>")]
    pub mail_from: String,
}

impl MailArgs {
    /// The mailer these flags describe, or `None` without an SMTP URL.
    pub fn mailer(&self) -> Result<Option<crate::mail::Mailer>, String> {
        let url = match (&self.smtp_url, &self.smtp_url_file) {
            (Some(url), _) if !url.trim().is_empty() => url.clone(),
            (_, Some(file)) => {
                std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?
            }
            _ => return Ok(None),
        };
        let url = crate::secret::SecretString::new(url.trim());
        crate::mail::Mailer::new(&url, &self.mail_from).map(Some).map_err(|e| format!("mail settings: {e}"))
    }
}

/// An IP range (`10.0.0.0/8`), or one address (`10.1.2.3`).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP range such as 10.0.0.0/8 or an address"))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// A positive Go duration (`500ms`, `10s`, `2m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    GoDuration::new(text)
        .get()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration such as 10s or 1m"))
}

/// The logging flag of the long-running subcommands.
#[derive(Args, Debug, Clone, Copy)]
pub struct LogArgs {
    /// Log lines as `text` or `json`, on stderr, filtered by `RUST_LOG` (default `info`).
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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

/// SIGTERM or Ctrl-C. The handlers are installed when this is called (call
/// it inside the runtime, before serving), not when the future is first
/// polled: a SIGTERM arriving between "serving" and that first poll would
/// otherwise end the process the default way, with no graceful shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            () = received(terminate) => tracing::info!("SIGTERM: shutting down"),
            () = received(interrupt) => tracing::info!("interrupted: shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_bare_ipv6_as_the_downward_api_gives_it() {
        assert_eq!(parse_listen("10.1.2.3:8080").unwrap(), "10.1.2.3:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(parse_listen("[fd00::5]:8080").unwrap(), "[fd00::5]:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(parse_listen("fd00::5:8080").unwrap(), "[fd00::5]:8080".parse::<SocketAddr>().unwrap());
        assert!(parse_listen(":8080").unwrap_err().contains("not an IP address"));
        assert!(parse_listen("localhost:8080").is_err(), "an address, not a name");
        assert!(parse_listen("10.1.2.3:http").unwrap_err().contains("not a port"));
    }

    #[test]
    fn regional_stores_are_region_equals_value_with_a_dns_label() {
        assert_eq!(
            parse_region_pair("eu=postgres://h/db?a=b").unwrap(),
            ("eu".into(), "postgres://h/db?a=b".into())
        );
        assert!(parse_region_pair("postgres://h/db").unwrap_err().contains("REGION=VALUE"));
        assert_eq!(parse_region_pair("us-east-2=x").unwrap().0, "us-east-2");
        for wrong in ["EU=x", "europe=x", "e=x", "eu-=x", "eu--w=x"] {
            assert!(parse_region_pair(wrong).unwrap_err().contains("dataResidency"), "{wrong}");
        }
        assert!(parse_region_pair("eu=").unwrap_err().contains("no value"));
    }
}
