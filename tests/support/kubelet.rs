//! A kubelet stand-in (with the Deployment controller's and kube-proxy's
//! parts) for the tests: there is no container runtime here, so the
//! Deployments the operator writes run as local processes of the binary
//! under test, each replica a "pod" with a loopback address of its own.
//!
//! ```text
//!  Deployments (label managed-by=portcullis-operator) ──watch──► pods, one per replica
//!     │ template changed: new pods first, an old one stopped per new one ready (a rolling update)
//!     │ deleted: its pods stopped (SIGTERM, then SIGKILL after the grace period)
//!     ▼
//!  pod = the binary, image ignored: args and env exactly as written, `$(VAR)`
//!        expanded as the kubelet does; secretKeyRef / configMapKeyRef / envFrom read
//!        from the API server when the container starts (a missing one waits, as
//!        CreateContainerConfigError); fieldRef status.podIP = the pod's loopback
//!        address (127.x.y.z); Secret volumes written to a folder of the pod's
//!        and the mount path in env and args pointed there (no mount namespace
//!        here; written at container start, not refreshed); readiness and liveness probes polled; a process that
//!        exits is restarted with backoff; status written back to the Deployment
//!  Services ──► a loopback port per service port, forwarding each connection to
//!               a ready pod its selector matches (round robin), at the target port
//! ```
//!
//! It knows nothing the Deployment does not say. What it cannot do, it
//! refuses with a reason: a `command` (the image's entrypoint is the
//! binary), volumes other than Secrets, `subPath` mounts, Service environment variables (`enableServiceLinks`
//! must be false), resource fields. Everything it started is killed when it
//! is dropped (also when the test panics), and by a watchdog if the test
//! process dies.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PodTemplateSpec, Probe, Secret, Service, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, ResourceExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

/// Deployments this stand-in runs.
const SELECTOR: &str = "app.kubernetes.io/managed-by=portcullis-operator";
/// How often desired and actual pods are compared.
const SYNC_EVERY: Duration = Duration::from_millis(200);

/// A pod as a test sees it.
#[derive(Clone, Debug)]
pub struct PodView {
    pub name: String,
    pub deployment: String,
    /// The pod template's hash: pods of the same Deployment version share it.
    pub template: String,
    pub ip: Ipv4Addr,
    pub ready: bool,
    pub restarts: u32,
    pub pid: Option<u32>,
    /// Container port by name.
    pub ports: BTreeMap<String, u16>,
}

impl PodView {
    /// `http://{ip}:{port}` of a named container port.
    pub fn url(&self, port: &str) -> String {
        format!(
            "http://{}:{}",
            self.ip,
            self.ports.get(port).unwrap_or_else(|| panic!("{}: no port {port}", self.name))
        )
    }
}

struct Pod {
    view: Mutex<PodView>,
    ready: AtomicBool,
    stop: watch::Sender<bool>,
    finished: watch::Receiver<bool>,
    labels: BTreeMap<String, String>,
}

impl Pod {
    fn view(&self) -> PodView {
        let mut view = self.view.lock().unwrap().clone();
        view.ready = self.ready.load(Ordering::SeqCst);
        view
    }
}

struct Shared {
    client: Client,
    namespace: String,
    binary: PathBuf,
    dir: PathBuf,
    /// 127.a.b.0/24 of this instance: pods take .1 to .254.
    subnet: [u8; 3],
    next_host: AtomicUsize,
    pods: Mutex<Vec<Arc<Pod>>>,
    services: Mutex<BTreeMap<String, BTreeMap<String, u16>>>,
    /// Each Service's selector, as last listed.
    selectors: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Pids of running processes, for the watchdog.
    pids: Mutex<BTreeMap<String, u32>>,
    round_robin: AtomicUsize,
}

/// The stand-in: started on a namespace, stopped (with every process it
/// runs) when dropped.
pub struct Kubelet {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    watchdog: Option<std::process::Child>,
}

impl Kubelet {
    /// Starts running the operator's Deployments of `namespace` with `binary`,
    /// against the API server of `kubeconfig`; pod logs go to `dir`.
    pub fn start(kubeconfig: &Path, namespace: &str, binary: &Path, dir: &Path) -> Kubelet {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("kubelet runtime");
        let client = runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
            Client::try_from(config).expect("kube client")
        });
        std::fs::create_dir_all(dir).expect("kubelet dir");
        let seed = std::process::id() as usize ^ Instant::now().elapsed().subsec_nanos() as usize;
        let shared = Arc::new(Shared {
            client,
            namespace: namespace.to_owned(),
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            subnet: [127, 1 + (seed % 250) as u8, (rand_u32() % 256) as u8],
            next_host: AtomicUsize::new(1),
            pods: Mutex::new(Vec::new()),
            services: Mutex::new(BTreeMap::new()),
            selectors: Mutex::new(HashMap::new()),
            pids: Mutex::new(BTreeMap::new()),
            round_robin: AtomicUsize::new(0),
        });
        runtime.spawn(run_deployments(shared.clone()));
        runtime.spawn(run_services(shared.clone()));
        let watchdog = start_watchdog(dir);
        Kubelet { runtime: Some(runtime), shared, watchdog }
    }

    /// The loopback port of a Service's named port, once the Service exists.
    pub fn service_port(&self, service: &str, port: &str) -> u16 {
        super::eventually(&format!("Service {service} has port {port}"), Duration::from_secs(60), || {
            self.shared
                .services
                .lock()
                .unwrap()
                .get(service)
                .and_then(|ports| ports.get(port).copied())
                .ok_or_else(|| format!("services: {:?}", self.shared.services.lock().unwrap()))
        })
    }

    /// `http://127.0.0.1:{port}` of a Service's named port.
    pub fn service_url(&self, service: &str, port: &str) -> String {
        format!("http://127.0.0.1:{}", self.service_port(service, port))
    }

    /// Every pod, running or stopping.
    pub fn pods(&self) -> Vec<PodView> {
        self.shared.pods.lock().unwrap().iter().map(|p| p.view()).collect()
    }

    /// The pods of one Deployment.
    pub fn pods_of(&self, deployment: &str) -> Vec<PodView> {
        self.pods().into_iter().filter(|p| p.deployment == deployment).collect()
    }

    /// Waits until `deployment` runs exactly `replicas` ready pods of its
    /// current template and nothing else; returns them.
    pub fn await_rollout(&self, deployment: &str, replicas: usize, deadline: Duration) -> Vec<PodView> {
        let runtime = self.runtime.as_ref().expect("running");
        let api: Api<Deployment> = Api::namespaced(self.shared.client.clone(), &self.shared.namespace);
        super::eventually(&format!("{deployment} rolled out with {replicas} ready pods"), deadline, || {
            let current = runtime
                .block_on(api.get_opt(deployment))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no Deployment {deployment} yet"))?;
            let hash = template_hash(&current.spec.template);
            let pods = self.pods_of(deployment);
            let good = pods.iter().filter(|p| p.template == hash && p.ready).count();
            if good == replicas && pods.len() == replicas {
                Ok(pods)
            } else {
                Err(format!("{good} ready of {replicas} wanted: {pods:?}"))
            }
        })
    }

    /// The last lines of every pod's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for pod in self.pods() {
            let text = std::fs::read_to_string(self.shared.dir.join(format!("{}.log", pod.name)))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- pod {} ({}) ---\n", pod.name, pod.ip));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // Dropping the tasks drops their children, which are killed on drop.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        for pid in self.shared.pids.lock().unwrap().values() {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("randomness");
    u32::from_le_bytes(bytes)
}

/// Kills the processes named in `{dir}/pids` once the test process is gone.
fn start_watchdog(dir: &Path) -> Option<std::process::Child> {
    let script = format!(
        "while kill -0 {owner} 2>/dev/null; do sleep 1; done; for p in $(cat '{pids}' 2>/dev/null); do kill -KILL $p 2>/dev/null; done",
        owner = std::process::id(),
        pids = dir.join("pids").display()
    );
    std::process::Command::new("setsid")
        .args(["bash", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

impl Shared {
    fn record_pid(&self, pod: &str, pid: Option<u32>) {
        let mut pids = self.pids.lock().unwrap();
        match pid {
            Some(pid) => pids.insert(pod.to_owned(), pid),
            None => pids.remove(pod),
        };
        let text: Vec<String> = pids.values().map(u32::to_string).collect();
        let _ = std::fs::write(self.dir.join("pids"), text.join("\n"));
    }

    /// A loopback address of this instance's subnet whose `ports` are free.
    fn allocate_ip(&self, ports: &[u16]) -> Ipv4Addr {
        loop {
            let host = self.next_host.fetch_add(1, Ordering::SeqCst);
            assert!(host < 255, "more than 254 pods");
            let ip = Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host as u8);
            if ports.iter().all(|port| std::net::TcpListener::bind((ip, *port)).is_ok()) {
                return ip;
            }
        }
    }
}

/// A stable hash of a pod template: pods of one Deployment version share it.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest.as_ref()[..5].iter().map(|b| format!("{b:02x}")).collect()
}

// === Deployments → pods. ===

async fn run_deployments(shared: Arc<Shared>) {
    let api: Api<Deployment> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default().labels(SELECTOR)))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    let mut last_status: HashMap<String, serde_json::Value> = HashMap::new();
    loop {
        let deployments: Vec<Arc<Deployment>> = reader.state();
        sync_pods(&shared, &deployments);
        for deployment in &deployments {
            let status = status_of(&shared, deployment);
            let name = deployment.name_any();
            if last_status.get(&name) != Some(&status) {
                let patch = serde_json::json!({ "status": status });
                match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {
                        last_status.insert(name, status);
                    }
                    Err(e) => eprintln!("kubelet stand-in: the status of Deployment {name}: {e}"),
                }
            }
        }
        tokio::time::sleep(SYNC_EVERY).await;
    }
}

/// Starts and stops pods so that each Deployment has its replicas of its
/// current template: a rolling update keeps the old pods until new ones are
/// ready (max surge: all, max unavailable: none).
fn sync_pods(shared: &Arc<Shared>, deployments: &[Arc<Deployment>]) {
    let mut pods = shared.pods.lock().unwrap();
    // Forget pods that have finished stopping.
    pods.retain(|pod| !*pod.finished.borrow());
    for deployment in deployments {
        let name = deployment.name_any();
        let spec = &deployment.spec;
        let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
        let hash = template_hash(&spec.template);
        let running: Vec<&Arc<Pod>> =
            pods.iter().filter(|p| p.view.lock().unwrap().deployment == name && !*p.stop.borrow()).collect();
        let current: Vec<&&Arc<Pod>> =
            running.iter().filter(|p| p.view.lock().unwrap().template == hash).collect();
        let old: Vec<&&Arc<Pod>> =
            running.iter().filter(|p| p.view.lock().unwrap().template != hash).collect();
        let current_ready = current.iter().filter(|p| p.ready.load(Ordering::SeqCst)).count();
        let mut to_stop: Vec<Arc<Pod>> = Vec::new();
        // Surplus pods of the current template go first.
        for pod in current.iter().skip(wanted) {
            to_stop.push((**pod).clone());
        }
        // An old pod goes for each ready new one beyond what is still needed.
        let old_allowed = wanted.saturating_sub(current_ready.min(wanted));
        for pod in old.iter().skip(old_allowed) {
            to_stop.push((**pod).clone());
        }
        let missing = wanted.saturating_sub(current.len());
        for pod in to_stop {
            let _ = pod.stop.send(true);
        }
        for _ in 0..missing {
            let pod = start_pod(shared, &name, &hash, &spec.template);
            pods.push(pod);
        }
    }
    // Pods of Deployments that are gone.
    for pod in pods.iter() {
        let deployment = pod.view.lock().unwrap().deployment.clone();
        if !deployments.iter().any(|d| d.name_any() == deployment) {
            let _ = pod.stop.send(true);
        }
    }
}

fn status_of(shared: &Shared, deployment: &Deployment) -> serde_json::Value {
    let name = deployment.name_any();
    let spec = deployment.spec.clone();
    let hash = template_hash(&spec.template);
    let pods: Vec<PodView> = shared
        .pods
        .lock()
        .unwrap()
        .iter()
        .filter(|p| !*p.stop.borrow())
        .map(|p| p.view())
        .filter(|p| p.deployment == name)
        .collect();
    let updated = pods.iter().filter(|p| p.template == hash).count();
    let ready = pods.iter().filter(|p| p.ready).count();
    let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
    let available = ready >= wanted;
    serde_json::json!({
        "observedGeneration": deployment.metadata.generation,
        "replicas": pods.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": wanted.saturating_sub(ready),
        "conditions": [{
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": format!("{ready} of {wanted} replicas ready"),
        }],
    })
}

fn start_pod(shared: &Arc<Shared>, deployment: &str, hash: &str, template: &PodTemplateSpec) -> Arc<Pod> {
    let pod_name = format!("{deployment}-{hash}-{:05x}", rand_u32() % 0x10_0000);
    let spec = template.spec.clone().unwrap_or_default();
    let container = spec.containers.first().cloned().unwrap_or_default();
    let ports: BTreeMap<String, u16> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_else(|| p.container_port.to_string()), p.container_port as u16))
        .collect();
    let ip = shared.allocate_ip(&ports.values().copied().collect::<Vec<_>>());
    let (stop, stop_rx) = watch::channel(false);
    let (finished_tx, finished) = watch::channel(false);
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let pod = Arc::new(Pod {
        view: Mutex::new(PodView {
            name: pod_name.clone(),
            deployment: deployment.to_owned(),
            template: hash.to_owned(),
            ip,
            ready: false,
            restarts: 0,
            pid: None,
            ports,
        }),
        ready: AtomicBool::new(false),
        stop,
        finished,
        labels,
    });
    let refusal = refuse_unsupported(&spec, &container);
    let shared = shared.clone();
    let running = pod.clone();
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
    tokio::spawn(async move {
        match refusal {
            Some(reason) => {
                let log = shared.dir.join(format!("{pod_name}.log"));
                let _ = std::fs::write(&log, format!("kubelet stand-in: cannot run this pod: {reason}\n"));
                eprintln!("kubelet stand-in: pod {pod_name}: cannot run it: {reason}");
                let mut stop_rx = stop_rx;
                let _ = stop_rx.wait_for(|s| *s).await;
            }
            None => {
                let volumes = spec.volumes.clone().unwrap_or_default();
                run_pod(&shared, &running, &container, &volumes, stop_rx, Duration::from_secs(grace)).await
            }
        }
        let _ = finished_tx.send(true);
    });
    pod
}

/// What this stand-in cannot do as a kubelet would, as a reason.
fn refuse_unsupported(spec: &k8s_openapi::api::core::v1::PodSpec, container: &Container) -> Option<String> {
    if spec.containers.len() != 1 || spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("only pods of one container (and no init containers) run here".into());
    }
    if container.command.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("`command` replaces the image's entrypoint, which is the binary under test".into());
    }
    if spec.volumes.iter().flatten().any(|v| v.secret.is_none()) {
        return Some("only Secret volumes are materialised here: hand the container the rest by env".into());
    }
    if container.volume_mounts.iter().flatten().any(|m| m.sub_path.is_some() || m.sub_path_expr.is_some()) {
        return Some("subPath mounts are not materialised here".into());
    }
    if spec.enable_service_links != Some(false) {
        return Some("Service environment variables are not emulated: set enableServiceLinks: false".into());
    }
    None
}

async fn run_pod(
    shared: &Arc<Shared>,
    pod: &Arc<Pod>,
    container: &Container,
    volumes: &[Volume],
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let (name, ip) = {
        let view = pod.view.lock().unwrap();
        (view.name.clone(), view.ip)
    };
    let log_path = shared.dir.join(format!("{name}.log"));
    let mut backoff = Duration::from_secs(1);
    loop {
        // The container's environment, read from the API server as it starts.
        let env = loop {
            let resolved = match resolve_env(shared, container, &name, ip).await {
                Ok(env) => mount_volumes(shared, container, volumes, &name).await.map(|mounts| (env, mounts)),
                Err(reason) => Err(reason),
            };
            match resolved {
                Ok((env, mounts)) => break remount(env, &mounts),
                Err(reason) => {
                    append_log(&log_path, &format!("kubelet stand-in: CreateContainerConfigError: {reason}"));
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let args: Vec<String> = container.args.iter().flatten().map(|a| expand(a, &env)).collect();
        // Env values were pointed at the volumes' folders; args name mount paths the same way.
        let mounts = mount_folders(shared, container, &name);
        let args: Vec<String> = args.into_iter().map(|a| relocate(&a, &mounts)).collect();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("pod log");
        let spawned = tokio::process::Command::new(&shared.binary)
            .args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOSTNAME", &name)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                append_log(&log_path, &format!("kubelet stand-in: could not start: {e}"));
                return;
            }
        };
        let pid = child.id();
        shared.record_pid(&name, pid);
        pod.view.lock().unwrap().pid = pid;
        let started = Instant::now();
        let probes = Probes::of(container, ip);
        let mut readiness_failures = 0;
        let mut liveness_failures = 0;
        let mut next_readiness = started;
        let mut next_liveness =
            started + probes.liveness.as_ref().map_or(Duration::MAX / 4, |p| p.initial_delay);
        let exit = loop {
            let now = Instant::now();
            let wake = next_readiness.min(next_liveness).max(now);
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = stop.wait_for(|s| *s) => break None,
                _ = tokio::time::sleep(wake - now) => {}
            }
            let now = Instant::now();
            if now >= next_readiness {
                match &probes.readiness {
                    None => pod.ready.store(true, Ordering::SeqCst),
                    Some(probe) if now >= started + probe.initial_delay => {
                        if probe.check().await {
                            readiness_failures = 0;
                            pod.ready.store(true, Ordering::SeqCst);
                        } else {
                            readiness_failures += 1;
                            if readiness_failures >= probe.failure_threshold
                                || !pod.ready.load(Ordering::SeqCst)
                            {
                                pod.ready.store(false, Ordering::SeqCst);
                            }
                        }
                    }
                    Some(_) => {}
                }
                next_readiness =
                    now + probes.readiness.as_ref().map_or(Duration::from_secs(3600), |p| p.period);
            }
            if now >= next_liveness {
                if let Some(probe) = &probes.liveness {
                    if probe.check().await {
                        liveness_failures = 0;
                    } else {
                        liveness_failures += 1;
                        if liveness_failures >= probe.failure_threshold {
                            append_log(&log_path, "kubelet stand-in: liveness probe failed; restarting");
                            let _ = child.start_kill();
                        }
                    }
                    next_liveness = now + probe.period;
                } else {
                    next_liveness = now + Duration::from_secs(3600);
                }
            }
        };
        pod.ready.store(false, Ordering::SeqCst);
        match exit {
            None => {
                // SIGTERM, then SIGKILL once the grace period is over.
                if let Some(pid) = pid {
                    let _ =
                        tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                shared.record_pid(&name, None);
                return;
            }
            Some(status) => {
                shared.record_pid(&name, None);
                append_log(
                    &log_path,
                    &format!(
                        "kubelet stand-in: the container exited ({status:?}); restarting in {backoff:?}"
                    ),
                );
                pod.view.lock().unwrap().restarts += 1;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn append_log(path: &Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// `$(VAR)` replaced by an earlier variable's value, `$$` by `$`; an
/// unknown reference stays as written (the kubelet's rules).
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, in order: `envFrom`, then `env`, each value
/// expanded against the variables before it.
/// Where each of the container's mounts is written: `{dir}/{pod}-volumes/{volume}`.
fn mount_folders(shared: &Shared, container: &Container, pod_name: &str) -> Vec<(String, PathBuf)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), shared.dir.join(format!("{pod_name}-volumes")).join(&m.name)))
        .collect()
}

/// Writes each mounted Secret volume's keys (or its items, at their paths)
/// into the mount's folder, as the kubelet would; an optional Secret or key
/// that is missing is left out. Returns mount path → folder.
async fn mount_volumes(
    shared: &Shared,
    container: &Container,
    volumes: &[Volume],
    pod_name: &str,
) -> Result<Vec<(String, PathBuf)>, String> {
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let folders = mount_folders(shared, container, pod_name);
    for (mount, folder) in container.volume_mounts.iter().flatten().zip(&folders) {
        let source = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .and_then(|v| v.secret.clone())
            .ok_or_else(|| format!("volume {:?} is not a Secret volume of the pod", mount.name))?;
        let name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional == Some(true);
        let data = match secrets.get_opt(&name).await.map_err(|e| e.to_string())? {
            Some(secret) => secret.data.unwrap_or_default(),
            None if optional => BTreeMap::new(),
            None => return Err(format!("secret {name:?} not found")),
        };
        let items: Vec<(String, String)> = match &source.items {
            Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone())).collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        let _ = std::fs::remove_dir_all(&folder.1);
        std::fs::create_dir_all(&folder.1).map_err(|e| e.to_string())?;
        for (key, path) in items {
            match data.get(&key) {
                Some(value) => {
                    let file = folder.1.join(&path);
                    std::fs::create_dir_all(file.parent().unwrap()).map_err(|e| e.to_string())?;
                    std::fs::write(&file, &value.0).map_err(|e| e.to_string())?;
                }
                None if optional => {}
                None => return Err(format!("secret {name:?} has no key {key:?}")),
            }
        }
    }
    Ok(folders)
}

/// `value` with a leading mount path replaced by its folder.
fn relocate(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount_path, folder) in mounts {
        if let Some(rest) = value.strip_prefix(mount_path.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", folder.display());
        }
    }
    value.to_owned()
}

fn remount(env: Vec<(String, String)>, mounts: &[(String, PathBuf)]) -> Vec<(String, String)> {
    env.into_iter().map(|(name, value)| (name, relocate(&value, mounts))).collect()
}

async fn resolve_env(
    shared: &Shared,
    container: &Container,
    pod_name: &str,
    ip: Ipv4Addr,
) -> Result<Vec<(String, String)>, String> {
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(reference) = &source.secret_ref {
            let name = reference.name.clone();
            match secrets.get_opt(&name).await.map_err(|e| e.to_string())? {
                Some(secret) => {
                    for (key, value) in secret.data.unwrap_or_default() {
                        env.push((format!("{prefix}{key}"), text(value.0, &name, &key)?));
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("secret {name:?} not found")),
            }
        }
        if let Some(reference) = &source.config_map_ref {
            let name = reference.name.clone();
            match config_maps.get_opt(&name).await.map_err(|e| e.to_string())? {
                Some(map) => {
                    for (key, value) in map.data.unwrap_or_default() {
                        env.push((format!("{prefix}{key}"), value));
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("configmap {name:?} not found")),
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = resolve_var(var, &secrets, &config_maps, pod_name, &shared.namespace, ip).await?
        {
            let value = if var.value.is_some() { expand(&value, &env) } else { value };
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

async fn resolve_var(
    var: &EnvVar,
    secrets: &Api<Secret>,
    config_maps: &Api<ConfigMap>,
    pod_name: &str,
    namespace: &str,
    ip: Ipv4Addr,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else { return Ok(Some(var.value.clone().unwrap_or_default())) };
    if let Some(selector) = &from.secret_key_ref {
        let optional = selector.optional == Some(true);
        let secret = secrets.get_opt(&selector.name).await.map_err(|e| e.to_string())?;
        return match secret.and_then(|s| s.data).and_then(|mut d| d.remove(&selector.key)) {
            Some(value) => Ok(Some(text(value.0, &selector.name, &selector.key)?)),
            None if optional => Ok(None),
            None => {
                Err(format!("couldn't find key {} in Secret {}/{}", selector.key, namespace, selector.name))
            }
        };
    }
    if let Some(selector) = &from.config_map_key_ref {
        let optional = selector.optional == Some(true);
        let map = config_maps.get_opt(&selector.name).await.map_err(|e| e.to_string())?;
        return match map.and_then(|m| m.data).and_then(|mut d| d.remove(&selector.key)) {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {} in ConfigMap {}/{}",
                selector.key, namespace, selector.name
            )),
        };
    }
    if let Some(field) = &from.field_ref {
        return match field.field_path.as_str() {
            "metadata.name" => Ok(Some(pod_name.to_owned())),
            "metadata.namespace" => Ok(Some(namespace.to_owned())),
            "status.podIP" | "status.podIPs" => Ok(Some(ip.to_string())),
            "status.hostIP" | "status.hostIPs" => Ok(Some("127.0.0.1".to_owned())),
            "spec.nodeName" => Ok(Some("kubelet-stand-in".to_owned())),
            other => Err(format!("fieldRef {other} is not emulated here")),
        };
    }
    Err(format!("env {}: this kind of valueFrom is not emulated here", var.name))
}

fn text(bytes: Vec<u8>, source: &str, key: &str) -> Result<String, String> {
    String::from_utf8(bytes)
        .map_err(|_| format!("{source}/{key} is not UTF-8: it cannot be an environment variable"))
}

// === Probes. ===

struct HttpProbe {
    address: SocketAddr,
    path: String,
    period: Duration,
    initial_delay: Duration,
    timeout: Duration,
    failure_threshold: u32,
}

impl HttpProbe {
    fn of(probe: &Probe, container: &Container, ip: Ipv4Addr) -> Option<HttpProbe> {
        let get = probe.http_get.as_ref()?;
        let port = container_port(container, &get.port)?;
        Some(HttpProbe {
            address: SocketAddr::new(IpAddr::V4(ip), port),
            path: get.path.clone().unwrap_or_else(|| "/".to_owned()),
            period: Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64),
            initial_delay: Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            timeout: Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64),
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }

    /// An HTTP GET answered 200–399 within the timeout.
    async fn check(&self) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(self.address).await.ok()?;
            let request =
                format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.path, self.address);
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            let code: u16 = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
            Some((200..400).contains(&code))
        };
        matches!(tokio::time::timeout(self.timeout, attempt).await, Ok(Some(true)))
    }
}

struct Probes {
    readiness: Option<HttpProbe>,
    liveness: Option<HttpProbe>,
}

impl Probes {
    fn of(container: &Container, ip: Ipv4Addr) -> Probes {
        Probes {
            readiness: container.readiness_probe.as_ref().and_then(|p| HttpProbe::of(p, container, ip)),
            liveness: container.liveness_probe.as_ref().and_then(|p| HttpProbe::of(p, container, ip)),
        }
    }
}

/// A container port by number, or by the name of one of its ports.
fn container_port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(number) => Some(*number as u16),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16),
    }
}

// === Services → loopback ports. ===

async fn run_services(shared: Arc<Shared>) {
    let api: Api<Service> = Api::namespaced(shared.client.clone(), &shared.namespace);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for service in list {
                let name = service.name_any();
                let Some(spec) = service.spec.clone() else { continue };
                shared
                    .selectors
                    .lock()
                    .unwrap()
                    .insert(name.clone(), spec.selector.clone().unwrap_or_default());
                for port in spec.ports.clone().unwrap_or_default() {
                    let port_name = port.name.clone().unwrap_or_else(|| port.port.to_string());
                    let known = shared
                        .services
                        .lock()
                        .unwrap()
                        .get(&name)
                        .is_some_and(|p| p.contains_key(&port_name));
                    if known {
                        continue;
                    }
                    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else { continue };
                    let local = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                    shared.services.lock().unwrap().entry(name.clone()).or_default().insert(port_name, local);
                    let target = port.target_port.clone().unwrap_or(IntOrString::Int(port.port));
                    tokio::spawn(proxy(shared.clone(), listener, name.clone(), target));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Forwards each connection to a ready pod the Service selects, at the target port.
async fn proxy(shared: Arc<Shared>, listener: tokio::net::TcpListener, service: String, target: IntOrString) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        let selector = shared.selectors.lock().unwrap().get(&service).cloned().unwrap_or_default();
        let endpoints: Vec<SocketAddr> = shared
            .pods
            .lock()
            .unwrap()
            .iter()
            .filter(|pod| pod.ready.load(Ordering::SeqCst) && !*pod.stop.borrow())
            .filter(|pod| !selector.is_empty() && selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
            .filter_map(|pod| {
                let view = pod.view.lock().unwrap();
                let port = match &target {
                    IntOrString::Int(n) => Some(*n as u16),
                    IntOrString::String(name) => view.ports.get(name).copied(),
                }?;
                Some(SocketAddr::new(IpAddr::V4(view.ip), port))
            })
            .collect();
        if endpoints.is_empty() {
            continue; // dropped: the connection is refused, as with no endpoints
        }
        let endpoint = endpoints[shared.round_robin.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(endpoint).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod expand_tests {
    #[test]
    fn references_expand_like_the_kubelet() {
        let env = vec![("POD_IP".to_owned(), "127.9.0.1".to_owned())];
        assert_eq!(super::expand("--listen=$(POD_IP):8080", &env), "--listen=127.9.0.1:8080");
        assert_eq!(super::expand("$$(POD_IP)", &env), "$(POD_IP)");
        assert_eq!(super::expand("$(NOPE) $", &env), "$(NOPE) $");
    }
}
