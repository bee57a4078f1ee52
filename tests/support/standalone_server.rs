//! The real `portcullis standalone` binary on a folder of manifests, on a
//! chosen loopback port (so that manifests can name its issuer), with
//! everything it prints kept for the test to read. Killed when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Lines a stream printed so far; `count` moves with each.
pub struct Lines {
    lines: Mutex<Vec<String>>,
    count: watch::Sender<usize>,
}

impl Lines {
    fn follow(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, echo: &'static str) -> Arc<Lines> {
        let lines = Arc::new(Lines { lines: Mutex::new(Vec::new()), count: watch::Sender::new(0) });
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{echo}] {line}");
                let count = {
                    let mut all = sink.lines.lock().unwrap();
                    all.push(line);
                    all.len()
                };
                sink.count.send_replace(count);
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line matching `wanted`, awaited until `deadline`.
    pub async fn wait_for(&self, deadline: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let mut changes = self.count.subscribe();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(line) = self.all().into_iter().find(|l| wanted(l)) {
                return line;
            }
            if tokio::time::timeout_at(until, changes.changed()).await.is_err() {
                panic!("no such line after {deadline:?}; printed so far:\n{}", self.all().join("\n"));
            }
        }
    }
}

pub struct Standalone {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    pub stdout: Arc<Lines>,
    pub stderr: Arc<Lines>,
}

/// A free loopback port (for `--listen`, chosen before the manifests are written).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Standalone {
    /// Starts `portcullis standalone` on `127.0.0.1:{port}` (served as
    /// `http://localhost:{port}`) and awaits its "serving" line.
    pub async fn start(manifests: &Path, data: &Path, port: u16, extra: &[&str]) -> Standalone {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("standalone")
            .arg("--manifests")
            .arg(manifests)
            .arg("--data")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            // Everything the service logs, to check that no secret is in it.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start portcullis standalone");
        let stdout = Lines::follow(child.stdout.take().unwrap(), "stdout");
        let stderr = Lines::follow(child.stderr.take().unwrap(), "stderr");
        let serving = stdout
            .wait_for(Duration::from_secs(60), |l| l.starts_with("Portcullis standalone: serving "))
            .await;
        let base = serving.rsplit(' ').next().unwrap().to_owned();
        Standalone { child, base, data: data.to_owned(), stdout, stderr }
    }

    pub fn issuer(&self, organization: &str) -> String {
        format!("{}/o/{organization}", self.base)
    }

    /// The generated secret of OAuthClient `client` of `namespace`.
    pub fn client_secret(&self, namespace: &str, client: &str) -> String {
        let path = self.data.join(format!("secrets/{namespace}/{client}-client-secret/client-secret"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The first word after `label` on a printed line (`password:`),
    /// awaited: the banner follows the "serving" line.
    pub async fn printed(&self, label: &str) -> String {
        let line = self.stdout.wait_for(Duration::from_secs(30), |l| l.trim_start().starts_with(label)).await;
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
    }

    /// Everything printed so far, both streams.
    pub fn output(&self) -> String {
        let mut all = self.stdout.all();
        all.extend(self.stderr.all());
        all.join("\n")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
