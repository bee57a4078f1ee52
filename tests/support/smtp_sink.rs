//! A real SMTP server for the mail tests: aiosmtpd (from PyPI, in the venv
//! `e2e/build-smtp-sink.sh` makes) with its Maildir handler, on a free
//! loopback port; each delivered message is a file the test reads, decoded
//! by Python's own `email` package as a mail client would.
//!
//! `e2e/run-tests.sh` exports the venv's bin directory as
//! `PORTCULLIS_SMTP_SINK_BIN`; without it the script is run here (it builds
//! the venv once, then reuses it). Stopped when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use tokio::process::{Child, Command};

/// One delivered message.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The text body, transfer encoding undone.
    pub text: String,
    /// The message as delivered (headers and encoded body).
    pub raw: String,
}

impl Mail {
    /// The first URL in the text that contains `needle`.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        self.text
            .split_whitespace()
            .find(|word| word.starts_with("http") && word.contains(needle))
            .map(str::to_owned)
    }
}

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    bin: PathBuf,
    _dir: tempfile::TempDir,
    maildir: PathBuf,
}

/// The venv's bin directory: `PORTCULLIS_SMTP_SINK_BIN`, or what the script prints.
fn sink_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_SMTP_SINK_BIN") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/build-smtp-sink.sh");
    let output =
        std::process::Command::new("bash").arg(&script).output().expect("run e2e/build-smtp-sink.sh");
    assert!(
        output.status.success(),
        "e2e/build-smtp-sink.sh could not make the SMTP sink's venv (python3 with venv is needed):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl SmtpSink {
    /// Starts the sink on a free port and awaits it. A port chosen here can
    /// be taken before the sink binds it: then the sink exits, and another
    /// port is tried.
    pub async fn start() -> SmtpSink {
        for _ in 0..5 {
            if let Some(sink) = SmtpSink::try_start_on(free_port()).await {
                return sink;
            }
        }
        panic!("the SMTP sink could not bind a port in 5 attempts");
    }

    /// Starts the sink on `port` (one a service was told before the sink ran).
    pub async fn start_on(port: u16) -> SmtpSink {
        SmtpSink::try_start_on(port)
            .await
            .unwrap_or_else(|| panic!("the SMTP sink could not bind port {port}"))
    }

    /// The sink listening on `port`, or `None` if it exited first.
    async fn try_start_on(port: u16) -> Option<SmtpSink> {
        let bin = sink_bin();
        let dir = tempfile::tempdir().expect("a temporary directory");
        // aiosmtpd's Mailbox makes the Maildir (tmp/, new/, cur/) itself.
        let maildir = dir.path().join("maildir");
        let mut child = Command::new(bin.join("python"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let until = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if child.try_wait().expect("the SMTP sink's status").is_some() {
                return None;
            }
            assert!(Instant::now() < until, "the SMTP sink did not listen on port {port} within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if child.try_wait().expect("the SMTP sink's status").is_some() {
            return None;
        }
        Some(SmtpSink { child, port, bin, _dir: dir, maildir })
    }

    /// What `--smtp-url` takes to reach it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message delivered to `to` so far, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| self.read(&path))
            .filter(|mail| mail.to.to_lowercase().contains(&to.to_lowercase()))
            .collect()
    }

    /// Awaits the `count`-th message to `to` (1 is the first).
    pub async fn wait_for_mail(&self, to: &str, count: usize, deadline: Duration) -> Mail {
        let until = Instant::now() + deadline;
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= count {
                return mails[count - 1].clone();
            }
            assert!(Instant::now() < until, "no mail number {count} to {to} within {deadline:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Parses a delivered file with Python's `email` package.
    fn read(&self, path: &Path) -> Mail {
        const PARSE: &str = "import email, email.policy, json, sys\n\
            m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n\
            body = m.get_body(('plain',))\n\
            print(json.dumps({'to': str(m['To']), 'subject': str(m['Subject']),\n\
                              'text': body.get_content() if body else ''}))";
        let output = std::process::Command::new(self.bin.join("python"))
            .args(["-c", PARSE])
            .arg(path)
            .output()
            .expect("run python to read a mail");
        assert!(
            output.status.success(),
            "reading {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("the parsed mail as JSON");
        Mail {
            to: parsed["to"].as_str().unwrap_or_default().to_owned(),
            subject: parsed["subject"].as_str().unwrap_or_default().to_owned(),
            text: parsed["text"].as_str().unwrap_or_default().to_owned(),
            raw: std::fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// Stops it (also done on drop).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
