//! `portcullis standalone`: the whole product in one process on SQLite,
//! from a folder of manifests ([`crate::standalone`]), until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::process::{
    ListenerArgs, LogArgs, MailArgs, PostureArgs, TrustedProxiesArgs, block_on, init_logging, parse_listen,
    shutdown_signal,
};
use crate::standalone::{self, StandaloneConfig};

/// Flags of `portcullis standalone`.
#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Folder of manifests (searched recursively for `*.yaml`), watched for edits.
    #[arg(long, value_name = "DIR")]
    manifests: PathBuf,

    /// Where the store, signing keys and generated secrets are kept.
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_DATA", default_value = ".portcullis")]
    data: PathBuf,

    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,

    #[command(flatten)]
    limits: ListenerArgs,
    /// Address of `GET /metrics` (`IP:PORT`), apart from the public listener;
    /// no metrics are served without it.
    #[arg(long, env = "PORTCULLIS_METRICS_LISTEN", value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    log: LogArgs,

    /// Base URL clients use (behind a proxy); default `http://localhost:{port}`
    /// on a loopback address, `http://{listen address}` otherwise.
    #[arg(long, env = "PORTCULLIS_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,

    #[command(flatten)]
    proxies: TrustedProxiesArgs,

    #[command(flatten)]
    mail: MailArgs,

    #[command(flatten)]
    posture: PostureArgs,
}

pub fn run(args: StandaloneArgs) -> ExitCode {
    init_logging(args.log.log_format);
    let mailer = match args.mail.mailer() {
        Ok(mailer) => mailer,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = StandaloneConfig {
        manifests: args.manifests,
        data: args.data,
        listen: args.listen,
        limits: args.limits.limits(),
        metrics_listen: args.metrics_listen,
        public_base_url: args.public_base_url,
        trusted_proxies: args.proxies.trusted_proxies,
        mailer: mailer.map(std::sync::Arc::new),
        posture_max_age: args.posture.max_age(),
    };
    block_on(async { standalone::run(config, shutdown_signal()).await })
}
