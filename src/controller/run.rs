//! The operator process: probes first, then the store, then leader election;
//! the controllers run only while this process leads.
//!
//! ```text
//!  run ──► /metrics /healthz /readyz (always)
//!      ──► Store::connect (retried until it answers)
//!      ──► loop: candidate ──acquired──► settings checked (flags; the services' keys and database
//!                                          Secrets, then every 10 s) ──► controllers (5 reflectors +
//!                                          5 controllers + workloads)
//!                    ▲                        │ lease lost / not renewed in time: stop them
//!                    └────────────────────────┘
//!          shutdown signal: stop the controllers, release the lease, return
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{KeyToPath, ObjectReference, Secret};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector;
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::leader::{LeaderElector, LeaseConfig};
use super::metrics::{self, Metrics};
use super::operator_status::{self, Changes, OperatorStatus, SettingProblem};
use super::reconcile::{self, Backoff, Context, Reconciler, Settings, system_clock};
use super::service_keys::{self, ServiceKeys};
use super::tenants::{Stores, Tenants};
use super::triggers::{self, Triggers};
use super::upstream_secrets::Mirror;
use super::{Error, FIELD_MANAGER, Result, housekeeping, principals, release, workloads};
use crate::api::{IdentityProvider, OAuthClient, Organization, Role, RoleAssignment};
use crate::error_chain::error_chain;
use crate::store::RegionalStores;

/// Everything `portcullis operator` is started with.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub database_url: String,
    /// The regional stores' URLs by region (data residency).
    pub region_urls: std::collections::BTreeMap<String, String>,
    pub settings: Settings,
    pub lease: LeaseConfig,
    pub probe_address: SocketAddr,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(config: OperatorConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let listener = metrics::bind(config.probe_address).await?;
    info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /healthz and /readyz");
    let probes = tokio::spawn(metrics::serve(listener, metrics.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let client =
        Client::try_default().await.map_err(|source| Error::KubeClient { source: Box::new(source) })?;
    let Some(store) = connect_store(&config.database_url, &config.region_urls, stop_rx.clone()).await else {
        probes.abort();
        return Ok(());
    };
    metrics.set_store_ready(true);

    let result = lead_while_elected(&config, client, store, metrics, stop_rx).await;
    probes.abort();
    result
}

/// Connects to the store, retrying with backoff while it is unavailable.
/// `None` if asked to stop first.
async fn connect_store(
    url: &str,
    region_urls: &std::collections::BTreeMap<String, String>,
    mut stop: watch::Receiver<bool>,
) -> Option<RegionalStores> {
    let mut delay = Duration::from_millis(250);
    loop {
        match RegionalStores::connect(url, region_urls).await {
            Ok(store) => {
                let regions = store.region_names().collect::<Vec<_>>().join(",");
                info!(backend = %store.default_store().backend(), %regions, "connected to the store");
                return Some(store);
            }
            Err(e) => warn!(retry_in = ?delay, "store unavailable: {}", error_chain(&e)),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn lead_while_elected(
    config: &OperatorConfig,
    client: Client,
    store: RegionalStores,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut elector = LeaderElector::new(client.clone(), config.lease.clone());
    let lease = config.lease.clone();
    loop {
        metrics.set_leader(false);
        // Candidate: try until we hold the lease.
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => debug!("another operator leads"),
                Err(e) => warn!("leader election: {}", error_chain(&e)),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(lease.retry_interval()) => {}
            }
        }
        info!(identity = %lease.identity, lease = %lease.name, "became the leader");
        metrics.set_leader(true);
        let mut controllers =
            tokio::spawn(run_controllers(client.clone(), store.clone(), metrics.clone(), config.clone()));

        // Leader: renew, until stopped or the lease is lost.
        let mut last_renewal = tokio::time::Instant::now();
        let stopping = loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break true,
                finished = &mut controllers => {
                    match finished {
                        Ok(Ok(())) => warn!("the controllers stopped"),
                        Ok(Err(e)) => error!("the controllers failed: {}", error_chain(&e)),
                        Err(e) => error!("the controllers panicked: {e}"),
                    }
                    break false;
                }
                _ = tokio::time::sleep(lease.renew_interval()) => {
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => last_renewal = tokio::time::Instant::now(),
                        Ok(false) => {
                            warn!("lost the lease to another operator");
                            break false;
                        }
                        Err(e) if last_renewal.elapsed() > lease.renew_deadline() => {
                            warn!("could not renew the lease in time, stepping down: {}", error_chain(&e));
                            break false;
                        }
                        Err(e) => warn!("could not renew the lease (will retry): {}", error_chain(&e)),
                    }
                }
            }
        };
        controllers.abort();
        let _ = (&mut controllers).await;
        metrics.set_leader(false);
        if stopping {
            // Give the lease up at once, so the other operator need not wait it out.
            match elector.release().await {
                Ok(()) => info!("released the lease"),
                Err(e) => warn!("could not release the lease: {}", error_chain(&e)),
            }
            return Ok(());
        }
        info!("standing by");
    }
}

fn receiver_stream<T: Send + 'static>(
    rx: UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// The reflectors and controllers of the five kinds, and the managed
/// workloads. Runs until aborted.
async fn run_controllers(
    client: Client,
    store: RegionalStores,
    metrics: Arc<Metrics>,
    config: OperatorConfig,
) -> Result<()> {
    let (organizations, organizations_writer) = reflector::store::<Organization>();
    let (roles, roles_writer) = reflector::store::<Role>();
    let (role_assignments, role_assignments_writer) = reflector::store::<RoleAssignment>();
    let (identity_providers, identity_providers_writer) = reflector::store::<IdentityProvider>();
    let (oauth_clients, oauth_clients_writer) = reflector::store::<OAuthClient>();
    let stores = Stores {
        organizations: organizations.clone(),
        roles: roles.clone(),
        role_assignments: role_assignments.clone(),
        identity_providers: identity_providers.clone(),
        oauth_clients: oauth_clients.clone(),
    };
    let tenants = Arc::new(Tenants::default());
    let (triggers, streams) = Triggers::new(stores.clone(), tenants.clone(), metrics.clone());
    let triggers = Arc::new(triggers);

    // Aborted (with everything in it) when this future is dropped.
    let mut tasks = JoinSet::new();
    tasks.spawn(triggers::drive(
        Api::<Organization>::all(client.clone()),
        organizations_writer,
        triggers.clone(),
    ));
    tasks.spawn(triggers::drive(Api::<Role>::all(client.clone()), roles_writer, triggers.clone()));
    tasks.spawn(triggers::drive(
        Api::<RoleAssignment>::all(client.clone()),
        role_assignments_writer,
        triggers.clone(),
    ));
    tasks.spawn(triggers::drive(
        Api::<IdentityProvider>::all(client.clone()),
        identity_providers_writer,
        triggers.clone(),
    ));
    tasks.spawn(triggers::drive(
        Api::<OAuthClient>::all(client.clone()),
        oauth_clients_writer,
        triggers.clone(),
    ));

    // Cross-references need every kind: no reconcile before all are listed,
    // or an assignment would briefly report its role as missing.
    let synced = async {
        organizations.wait_until_ready().await?;
        roles.wait_until_ready().await?;
        role_assignments.wait_until_ready().await?;
        identity_providers.wait_until_ready().await?;
        oauth_clients.wait_until_ready().await
    };
    if synced.await.is_err() {
        return Ok(());
    }
    metrics.set_caches_synced(true);
    info!("caches synced; reconciling");

    let settings = config.settings.clone();
    // The flags are checked once; the Secrets they name before any
    // reconcile, and again every SETTINGS_RECHECK.
    let operator_status = Arc::new(OperatorStatus::default());
    operator_status.report(
        "settings",
        operator_status::validate_settings(
            settings.issuer_base_url.as_deref(),
            settings.scim_base_url.as_deref(),
            settings.workloads.as_ref().is_some_and(|w| w.scim_service_replicas > 0),
        ),
    );
    let (keys_tx, keys_rx) = watch::channel(None);
    let ctx = Arc::new(Context {
        client: client.clone(),
        store: store.default_store().clone(),
        regions: store,
        residency: None,
        homes: Arc::default(),
        stores,
        tenants,
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: FIELD_MANAGER.to_owned(), instance: Some(config.lease.identity.clone()) },
        ),
        metrics,
        backoff: Arc::new(Backoff::new(settings.backoff_base, settings.backoff_max)),
        settings,
        clock: system_clock(),
        operator_status,
        service_keys: keys_rx,
    });
    let first = check_secrets(&ctx, &keys_tx).await;
    announce(&ctx, &config.lease, &first.changes).await;
    for problem in ctx.operator_status.problems().iter().filter(|p| !first.changes.appeared.contains(p)) {
        error!(reason = problem.reason, "{}", problem.message);
    }
    tasks.spawn(watch_secrets(ctx.clone(), keys_tx, triggers.clone(), config.lease.clone()));

    let controller_config = controller::Config::default().concurrency(config.concurrency);
    tasks.spawn(run_one(streams.organizations, organizations, controller_config.clone(), ctx.clone()));
    tasks.spawn(run_one(streams.roles, roles, controller_config.clone(), ctx.clone()));
    tasks.spawn(run_one(streams.role_assignments, role_assignments, controller_config.clone(), ctx.clone()));
    tasks.spawn(run_one(
        streams.identity_providers,
        identity_providers,
        controller_config.clone(),
        ctx.clone(),
    ));
    tasks.spawn(super::access_request::run(ctx.clone(), controller_config.clone()));
    tasks.spawn(run_one(streams.oauth_clients, oauth_clients, controller_config, ctx.clone()));
    tasks.spawn(release::run(streams.releases, ctx.clone()));
    tasks.spawn(housekeeping::run(ctx.clone()));
    for (_, store) in ctx.regions.all() {
        tasks.spawn(crate::store::access_requests::expire_periodically(store.clone()));
        tasks.spawn(principals::run(store.clone(), triggers.clone()));
    }
    if let Some(workload_settings) = ctx.settings.workloads.clone() {
        let (items_tx, items_rx) = watch::channel(Vec::new());
        let mut mirror =
            Mirror::new(client.clone(), ctx.stores.clone(), workload_settings.namespace.clone(), items_tx);
        // The first copy before the first apply, so that pods start with it.
        mirror.pass().await;
        tasks.spawn(mirror.run());
        tasks.spawn(manage_workloads(
            client,
            workload_settings,
            ctx.settings.resync,
            ctx.service_keys.clone(),
            items_rx,
        ));
    }
    // Nothing here ends by itself.
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn run_one<K: Reconciler>(
    trigger: UnboundedReceiver<Arc<K>>,
    reader: reflector::Store<K>,
    config: controller::Config,
    ctx: Arc<Context>,
) {
    Controller::for_shared_stream(receiver_stream(trigger), reader)
        .with_config(config)
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(kind = %K::KIND, "{}", error_chain(&e));
            }
        })
        .await;
}

/// Keeps the managed Deployments and Services as configured, and applies
/// them again at once when the services' keys change (their pods roll) or
/// the upstream secrets they mount do.
async fn manage_workloads(
    client: Client,
    mut settings: workloads::WorkloadSettings,
    resync: Duration,
    mut keys: watch::Receiver<Option<ServiceKeys>>,
    mut upstream_items: watch::Receiver<Vec<KeyToPath>>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        settings.service_keys_checksum = keys.borrow_and_update().as_ref().map(|k| k.checksum.clone());
        settings.upstream_secret_items = upstream_items.borrow_and_update().clone();
        let applied = match workloads::resolve_owner(&client, &mut settings).await {
            Ok(()) => workloads::reconcile(&client, &settings).await,
            Err(e) => Err(e),
        };
        let wait = match applied {
            Ok(()) => {
                delay = Duration::from_secs(1);
                resync
            }
            Err(e) => {
                warn!(retry_in = ?delay, "managed workloads: {}", error_chain(&e));
                let wait = delay;
                delay = (delay * 2).min(Duration::from_secs(300));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = keys.changed() => if changed.is_err() { return },
            changed = upstream_items.changed() => if changed.is_err() { return },
        }
    }
}

/// How often the Secrets the operator's settings name are checked again.
const SETTINGS_RECHECK: Duration = Duration::from_secs(10);

/// What one check of the Secrets found.
struct SecretsChecked {
    changes: Changes,
    /// The services' keys differ from what was published before.
    keys_changed: bool,
}

/// Checks the Secrets the settings name: the services' keys (made when
/// absent, then published to the reconciles) and, when the operator runs
/// the services, the database URL they are handed.
async fn check_secrets(ctx: &Context, keys_tx: &watch::Sender<Option<ServiceKeys>>) -> SecretsChecked {
    let namespace = &ctx.settings.operator_namespace;
    let mut keys_changed = false;
    let keys_problems =
        match service_keys::ensure(&ctx.client, namespace, &ctx.settings.service_keys_secret).await {
            Ok(keys) => {
                keys_changed = keys_tx.send_if_modified(|current| {
                    let differs = current.as_ref().is_none_or(|c| c.checksum != keys.checksum);
                    if differs {
                        *current = Some(keys);
                    }
                    differs
                });
                Vec::new()
            }
            Err(problem) => vec![problem],
        };
    let mut changes = ctx.operator_status.report("service-keys", keys_problems);
    if let Some(workloads) = &ctx.settings.workloads {
        let mut problems: Vec<SettingProblem> =
            check_database_secret(&ctx.client, workloads, &workloads.database_secret, None)
                .await
                .into_iter()
                .collect();
        for (region, secret) in &workloads.region_secrets {
            problems.extend(check_database_secret(&ctx.client, workloads, secret, Some(region)).await);
        }
        let database = ctx.operator_status.report("database", problems);
        changes.appeared.extend(database.appeared);
        changes.resolved.extend(database.resolved);
    }
    SecretsChecked { changes, keys_changed }
}

/// A database Secret the services are handed (the default store's, or a
/// region's) exists and has its key.
async fn check_database_secret(
    client: &Client,
    settings: &workloads::WorkloadSettings,
    name: &str,
    region: Option<&str>,
) -> Option<SettingProblem> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let key = &settings.database_secret_key;
    let what = match region {
        None => format!(
            "Secret {}/{name} (operator flags --database-secret and --database-secret-key, chart values \
             database.existingSecret and database.key), which the services read their database URL from",
            settings.namespace
        ),
        Some(region) => format!(
            "Secret {}/{name} (operator flag --region-secret {region}={name}, chart value database.regions), \
             which the services read the store URL of region {region} from",
            settings.namespace
        ),
    };
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let has_key =
                secret.data.as_ref().and_then(|d| d.get(key.as_str())).is_some_and(|v| !v.0.is_empty());
            (!has_key)
                .then(|| SettingProblem::new("DatabaseSecretInvalid", format!("{what} has no key {key}")))
        }
        Ok(None) => Some(SettingProblem::new("DatabaseSecretMissing", format!("{what} does not exist"))),
        Err(e) => {
            Some(SettingProblem::new("DatabaseSecretUnreadable", format!("{what}: {}", error_chain(&e))))
        }
    }
}

/// Checks the Secrets again every [`SETTINGS_RECHECK`]; whatever changed
/// is announced, and every Organization reconciled again (its
/// `ServicesConfigured`, its keys sealed under a new key-encryption key).
async fn watch_secrets(
    ctx: Arc<Context>,
    keys_tx: watch::Sender<Option<ServiceKeys>>,
    triggers: Arc<Triggers>,
    lease: LeaseConfig,
) {
    loop {
        tokio::time::sleep(SETTINGS_RECHECK).await;
        let checked = check_secrets(&ctx, &keys_tx).await;
        if !checked.changes.is_empty() {
            announce(&ctx, &lease, &checked.changes).await;
        }
        if checked.keys_changed || !checked.changes.is_empty() {
            triggers.trigger_where::<Organization>(|_| true);
        }
    }
}

/// Logs what appeared and what was resolved, and says it in Events on the
/// operator's own Deployment (its Lease when it runs as none).
async fn announce(ctx: &Context, lease: &LeaseConfig, changes: &Changes) {
    let namespace = ctx.settings.operator_namespace.clone();
    let regarding = match &ctx.settings.operator_deployment {
        Some(name) => ObjectReference {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("Deployment".to_owned()),
            name: Some(name.clone()),
            namespace: Some(namespace),
            ..ObjectReference::default()
        },
        None => ObjectReference {
            api_version: Some("coordination.k8s.io/v1".to_owned()),
            kind: Some("Lease".to_owned()),
            name: Some(lease.name.clone()),
            namespace: Some(namespace),
            ..ObjectReference::default()
        },
    };
    let mut events = Vec::new();
    for problem in &changes.appeared {
        error!(reason = problem.reason, "{}", problem.message);
        events.push(Event {
            type_: EventType::Warning,
            reason: problem.reason.to_owned(),
            note: Some(problem.message.clone()),
            action: "CheckSettings".to_owned(),
            secondary: None,
        });
    }
    for problem in &changes.resolved {
        info!(reason = problem.reason, "resolved: {}", problem.message);
    }
    let remaining = ctx.operator_status.problems();
    ctx.metrics.set_setting_problems(remaining.len());
    if !changes.resolved.is_empty() && remaining.is_empty() {
        events.push(Event {
            type_: EventType::Normal,
            reason: "SettingsComplete".to_owned(),
            note: Some("every setting the services need is in place".to_owned()),
            action: "CheckSettings".to_owned(),
            secondary: None,
        });
    }
    for event in events {
        if let Err(e) = ctx.recorder.publish(&event, &regarding).await {
            warn!(reason = %event.reason, "could not publish an event: {e}");
        }
    }
}
