//! Test harness: the real control plane (kube-apiserver + etcd built from
//! source, see `e2e/`), a `kubectl` bound to it, and deadline-bounded waiting.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `probe` until it returns `Ok`, or panics with the last error once
/// `deadline` has passed. Never assumes a fixed delay is enough.
pub fn eventually<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut interval = Duration::from_millis(50);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if start.elapsed() >= deadline => {
                panic!("{what}: still not true after {deadline:?}: {last}")
            }
            Err(_) => {
                std::thread::sleep(interval);
                interval = (interval * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The port an operator bound for `--probe-address 127.0.0.1:0`, read from
/// the line it logs once listening (in its log after `from` bytes): a port
/// chosen by the test and released before use could be taken meanwhile.
pub fn logged_probe_port(log: &Path, from: u64, child: &mut std::process::Child) -> u16 {
    eventually("the operator serves its probes", Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the operator exited ({status}) before serving its probes");
        }
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        let line = text
            .lines()
            .find(|l| l.contains("serving /metrics, /healthz and /readyz"))
            .ok_or_else(|| "not yet".to_owned())?;
        // Without the terminal colours tracing may put around `address=`.
        let plain = line.split('\x1b').map(|part| part.split_once('m').map_or(part, |(_, rest)| rest));
        let plain: String = if line.contains('\x1b') { plain.collect() } else { line.to_owned() };
        let address = plain.split("address=").nth(1).and_then(|rest| rest.split_whitespace().next());
        address
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .ok_or_else(|| format!("no address in {line:?}"))
    })
}

/// A running kube-apiserver and etcd on loopback, stopped when dropped (also
/// when the test panics), and by a watchdog if the test process dies.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        let dir = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().expect("temp dir");
        let bin = control_plane_bin();
        let out = Command::new("bash")
            .arg(repo().join("e2e/controlplane.sh"))
            .arg("up")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .env("PORTCULLIS_CONTROL_PLANE_BIN", &bin)
            .output()
            .expect("run e2e/controlplane.sh");
        assert!(
            out.status.success(),
            "control plane did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.path().join("kubeconfig");
        assert!(kubeconfig.exists(), "no kubeconfig written");
        ControlPlane { dir, bin, kubeconfig }
    }

    /// Runs the `kubectl` built with the control plane (same version), against it.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let kubectl = self.bin.join("kubectl");
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", kubectl.display()))
    }

    /// The kubectl binary built with the control plane.
    pub fn kubectl_bin(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    /// Runs kubectl and returns stdout, panicking with stderr on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of the source-built `kubectl`, `kube-apiserver` and `etcd`.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A kubeconfig for the ServiceAccount `namespace/account`, with a token
    /// from the TokenRequest API: a process run with it has only the
    /// permissions RBAC grants that account.
    pub fn service_account_kubeconfig(&self, namespace: &str, account: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", account, "-n", namespace, "--duration=2h"]);
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let field = |key: &str| {
            admin
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("{key} in kubeconfig"))
        };
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             users:\n- name: {account}\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {account}}}\n\
             current-context: e2e\n",
            field("server:"),
            field("certificate-authority-data:"),
            token.trim()
        );
        let path = self.dir().join(format!("{account}-kubeconfig"));
        std::fs::write(&path, kubeconfig).expect("write kubeconfig");
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("e2e/controlplane.sh"))
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}

/// The directory with the source-built binaries: from the test runner's
/// environment, or built (once, then cached) on demand.
fn control_plane_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_CONTROL_PLANE_BIN") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(repo().join("e2e/build-control-plane.sh"))
        .output()
        .expect("run e2e/build-control-plane.sh");
    assert!(out.status.success(), "control plane build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("build script prints the binary directory"))
}

/// An example in `examples/invalid/`, with what its header says about it.
pub struct InvalidExample {
    pub path: PathBuf,
    pub rejected_by: String,
    pub expect: String,
}

/// Every file of `examples/invalid/`, parsed from its `# rejected-by:` and
/// `# expect:` header lines.
pub fn invalid_examples() -> Vec<InvalidExample> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/invalid"))
        .expect("examples/invalid")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read example");
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}:")).map(|v| v.trim().to_owned()))
                    .unwrap_or_else(|| panic!("{}: missing `# {key}:` header", path.display()))
            };
            InvalidExample { rejected_by: header("rejected-by"), expect: header("expect"), path }
        })
        .collect()
}

/// Namespaces named by `namespace:` lines in a manifest.
pub fn namespaces_in(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    let mut found: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("namespace:").map(|v| v.trim().trim_matches('"').to_owned()))
        .collect();
    found.sort();
    found.dedup();
    found
}

impl ControlPlane {
    /// Stops kube-apiserver and starts it again with the same command line
    /// (etcd keeps running, so no data is lost), then waits until it is ready.
    /// Returns how long it was down.
    pub fn restart_apiserver(&self) -> Duration {
        let pid_file = self.dir.path().join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("kube-apiserver.pid").trim().to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("kube-apiserver command line");
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let stopped = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        eventually("kube-apiserver stops", Duration::from_secs(30), || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state.split_whitespace().nth(2).is_some_and(|s| s != "Z" && s != "X");
            if running { Err(format!("pid {pid} still running")) } else { Ok(()) }
        });
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .expect("kube-apiserver.log");
        // `down` stops it through the pid file; the test process reaps it on exit.
        #[allow(clippy::zombie_processes, reason = "stopped by controlplane.sh down, by pid")]
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        // `down` (and the watchdog) stop whatever this file names.
        std::fs::write(&pid_file, child.id().to_string()).expect("write kube-apiserver.pid");
        eventually("kube-apiserver is ready again", Duration::from_secs(120), || {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
        });
        stopped.elapsed()
    }
}
