//! `portcullis operator`: flags and environment, then [`crate::controller::run`]
//! until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::process::{DatabaseArgs, LogArgs, block_on, init_logging, shutdown_signal};
use crate::controller::leader::LeaseConfig;
use crate::controller::service_keys;
use crate::controller::workloads::{self, WorkloadSettings};
use crate::controller::{OperatorConfig, Settings};
use crate::error_chain::error_chain;

/// Flags of `portcullis operator`. Each has an environment variable; the
/// database URL also a `_FILE` form (a mounted Secret).
#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(flatten)]
    database: DatabaseArgs,

    #[command(flatten)]
    log: LogArgs,

    /// Public base URL of the token service (what users and applications
    /// reach): each Organization's issuer is `{base}/o/{name}`, and the token
    /// service is run with it. Without it no issuer is served, and every
    /// Organization says so (ServicesConfigured).
    #[arg(long, env = "PORTCULLIS_ISSUER_BASE_URL")]
    issuer_base_url: Option<String>,

    /// Public base URL of the SCIM service: an organization's SCIM base is
    /// `{base}/o/{name}/scim/v2`. Needed when the SCIM service runs.
    #[arg(long, env = "PORTCULLIS_SCIM_BASE_URL")]
    scim_base_url: Option<String>,

    /// Secret in the operator's namespace holding the services' key-encryption
    /// key and login secret; made by the operator when absent.
    #[arg(long, env = "PORTCULLIS_SERVICE_KEYS_SECRET", default_value = service_keys::DEFAULT_SECRET_NAME)]
    service_keys_secret: String,

    /// Namespace the operator runs in: its Lease and the managed services live there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis")]
    namespace: String,

    /// This operator's identity in leader election (unique per replica).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "portcullis-operator")]
    lease_name: String,

    /// Seconds a leader that stopped renewing keeps the lease.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "PORTCULLIS_PROBE_ADDRESS", default_value = "0.0.0.0:8080")]
    probe_address: SocketAddr,

    /// Reconciles running at once, per kind.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,

    /// Seconds between reconciles of an unchanged object (jittered).
    #[arg(long, default_value_t = 600)]
    resync_seconds: u64,

    /// Run the token and SCIM services from this image (Deployments and
    /// Services in the operator's namespace). Without it, none are managed.
    #[arg(long, env = "PORTCULLIS_IMAGE")]
    image: Option<String>,

    /// The operator's own Deployment (in its namespace): the managed
    /// Deployments and Services get it as owner, so deleting the operator's
    /// Deployment deletes them.
    #[arg(long, env = "PORTCULLIS_OWNER_DEPLOYMENT")]
    owner_deployment: Option<String>,

    #[arg(long, default_value_t = 2)]
    token_service_replicas: i32,

    #[arg(long, default_value_t = 2)]
    scim_service_replicas: i32,

    /// Secret holding the services' database URL, and its key.
    #[arg(long, default_value = "portcullis-database")]
    database_secret: String,

    #[arg(long, default_value = "url")]
    database_secret_key: String,

    /// The Secret holding a regional store's URL (under the database
    /// secret's key), handed to the services: `REGION=SECRET`, one per region
    /// of `--store`/`--store-file`/`--store-env` (repeatable, or comma-separated in the variable).
    #[arg(long = "region-secret", value_name = "REGION=SECRET", env = "PORTCULLIS_REGION_SECRETS", value_delimiter = ',', value_parser = super::process::parse_region_pair)]
    region_secrets: Vec<(String, String)>,

    #[arg(long, default_value = "100m")]
    service_cpu_request: String,

    #[arg(long, default_value = "128Mi")]
    service_memory_request: String,

    #[arg(long, default_value = "512Mi")]
    service_memory_limit: String,

    /// `RUST_LOG` of the services (their `--log-format` is the operator's).
    #[arg(long, env = "PORTCULLIS_SERVICE_LOG_LEVEL", default_value = "info")]
    service_log_level: String,

    /// CIDR ranges of the reverse proxies in front of the token service
    /// (Ingress controller, load balancer), comma-separated: passed to it as
    /// `--trusted-proxies`, so that sign-in throttling counts the client
    /// they forwarded, not the proxy.
    #[arg(long, env = "PORTCULLIS_SERVICE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = super::process::parse_cidr)]
    service_trusted_proxies: Vec<ipnet::IpNet>,

    /// Secret in the operator's namespace whose key `smtp-url` is the SMTP
    /// server of invitation mail (`smtps://user:password@host:465`), passed
    /// to the token service as `PORTCULLIS_SMTP_URL`; without it the token
    /// service refuses invitations.
    #[arg(long, env = "PORTCULLIS_SERVICE_SMTP_SECRET")]
    service_smtp_secret: Option<String>,

    /// The sender of invitation mail (`Name <address>`), passed to the token
    /// service as `PORTCULLIS_MAIL_FROM`.
    #[arg(long, env = "PORTCULLIS_SERVICE_MAIL_FROM")]
    service_mail_from: Option<String>,

    /// The services' pod securityContext, as JSON (a Kubernetes
    /// PodSecurityContext); non-root user 65532 and seccomp RuntimeDefault
    /// when not given.
    #[arg(long, env = "PORTCULLIS_SERVICE_POD_SECURITY_CONTEXT", value_name = "JSON")]
    service_pod_security_context: Option<String>,

    /// The services' container securityContext, as JSON (a Kubernetes
    /// SecurityContext); no privilege escalation, read-only root file system
    /// and every capability dropped when not given.
    #[arg(long, env = "PORTCULLIS_SERVICE_SECURITY_CONTEXT", value_name = "JSON")]
    service_security_context: Option<String>,
}

impl OperatorArgs {
    fn config(self) -> Result<OperatorConfig, String> {
        let database_url = self.database.url()?;
        let region_urls = self.database.region_urls()?;
        let region_secrets: std::collections::BTreeMap<String, String> =
            self.region_secrets.iter().cloned().collect();
        // The services must see the stores the operator writes to: the same regions on both sides.
        if self.image.is_some() && !region_urls.keys().eq(region_secrets.keys()) {
            return Err(format!(
                "the regions of the operator's stores ({}) and of --region-secret ({}) differ: the services \
                 must be handed a Secret for each region the operator writes to",
                region_urls.keys().cloned().collect::<Vec<_>>().join(","),
                region_secrets.keys().cloned().collect::<Vec<_>>().join(",")
            ));
        }
        let identity = self.identity.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".to_owned());
            format!("{host}-{}", uuid::Uuid::new_v4().simple())
        });
        let pod_security_context = match &self.service_pod_security_context {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| format!("--service-pod-security-context is not a PodSecurityContext: {e}"))?,
            None => workloads::default_pod_security_context(),
        };
        let security_context = match &self.service_security_context {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| format!("--service-security-context is not a SecurityContext: {e}"))?,
            None => workloads::default_security_context(),
        };
        let workloads = self.image.map(|image| WorkloadSettings {
            namespace: self.namespace.clone(),
            image,
            token_service_replicas: self.token_service_replicas,
            scim_service_replicas: self.scim_service_replicas,
            database_secret: self.database_secret,
            database_secret_key: self.database_secret_key,
            region_secrets,
            service_keys_secret: self.service_keys_secret.clone(),
            public_base_url: self.issuer_base_url.clone(),
            scim_base_url: self.scim_base_url.clone(),
            service_keys_checksum: None,
            cpu_request: self.service_cpu_request,
            memory_request: self.service_memory_request,
            memory_limit: self.service_memory_limit,
            log_level: self.service_log_level,
            log_format: self.log.log_format.as_str().to_owned(),
            trusted_proxies: self
                .service_trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            smtp_secret: self.service_smtp_secret.filter(|s| !s.trim().is_empty()),
            mail_from: self.service_mail_from.filter(|s| !s.trim().is_empty()),
            upstream_secret_items: Vec::new(),
            pod_security_context,
            security_context,
            owner: None,
            owner_deployment: self.owner_deployment.clone(),
        });
        Ok(OperatorConfig {
            database_url,
            region_urls,
            settings: Settings {
                issuer_base_url: self.issuer_base_url,
                scim_base_url: self.scim_base_url,
                operator_namespace: self.namespace.clone(),
                operator_deployment: self.owner_deployment,
                service_keys_secret: self.service_keys_secret,
                resync: Duration::from_secs(self.resync_seconds.max(1)),
                workloads,
                ..Settings::default()
            },
            lease: LeaseConfig {
                namespace: self.namespace,
                name: self.lease_name,
                identity,
                duration: Duration::from_secs(self.lease_duration_seconds.max(1)),
            },
            probe_address: self.probe_address,
            concurrency: self.concurrency.max(1),
        })
    }
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub fn run(args: OperatorArgs) -> ExitCode {
    init_logging(args.log.log_format);
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    block_on(async { crate::controller::run(config, shutdown_signal()).await.map_err(|e| error_chain(&e)) })
}
