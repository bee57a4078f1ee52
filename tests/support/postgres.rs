//! A real PostgreSQL server for store tests, started from the machine's
//! `postgresql-15` binaries: `initdb` and `pg_ctl` run as the `postgres` user
//! (initdb refuses root) in a temporary directory, on a free loopback port,
//! with the unix socket in that directory and `fsync=off` for speed (unless
//! `PORTCULLIS_PG_DURABLE=1`).
//!
//! [`Postgres::start`] gives a server owned by the caller, stopped on drop.
//! [`Postgres::shared`] gives one server for the whole test binary; a watchdog
//! process stops it and removes its directory when the test process exits
//! (statics are never dropped). Each test takes its own database with
//! [`Postgres::create_database`].
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const USER: &str = "postgres";
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A running PostgreSQL server, stopped (`pg_ctl stop -m fast`) and its
/// directory removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    next_database: AtomicUsize,
}

impl Postgres {
    /// One server for the whole test binary, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = Postgres::start();
            server.stop_when_process_exits();
            server
        })
    }

    /// Initializes a cluster in a new temporary directory and starts it.
    /// Panics with the server log if it does not become ready in time.
    pub fn start() -> Postgres {
        Postgres::start_with(durable())
    }

    /// A server with PostgreSQL's durable defaults (every commit flushed to
    /// disk), whatever the environment says: for published figures.
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "PostgreSQL 15 is not installed ({BIN}/initdb is missing): apt-get install postgresql-15"
        );
        let dir = std::env::temp_dir().join(format!(
            "portcullis-pg-{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server directory");
        run_ok(Command::new("chown").arg(format!("{USER}:{USER}")).arg(&dir));
        let data = dir.join("data");
        run_ok(as_postgres(&format!("{BIN}/initdb")).args([
            "--pgdata",
            path_str(&data),
            "--username",
            USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));

        // The port is free when we look; another process could take it before
        // the server binds, so a failed start is retried on a new port.
        for attempt in 1..=3 {
            let port = free_port();
            let unsafe_for_speed = " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{}",
                path_str(&dir),
                if durable { "" } else { unsafe_for_speed }
            );
            let started = as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["start", "--no-wait", "--pgdata", path_str(&data), "--log"])
                .arg(dir.join("server.log"))
                .args(["--options", &options])
                .output()
                .expect("run pg_ctl start");
            let server = Postgres { dir: dir.clone(), port, next_database: AtomicUsize::new(0) };
            if started.status.success() && server.wait_ready() {
                return server;
            }
            std::mem::forget(server);
            let _ = as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["stop", "--pgdata", path_str(&data), "-m", "immediate"])
                .output();
            if attempt == 3 {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                panic!("PostgreSQL did not start:\n{}\n{log}", String::from_utf8_lossy(&started.stderr));
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Polls `pg_isready` until the server accepts connections or the
    /// deadline passes (then reports whether the server process died).
    fn wait_ready(&self) -> bool {
        let start = Instant::now();
        let mut interval = Duration::from_millis(20);
        while start.elapsed() < READY_DEADLINE {
            let ready = Command::new(format!("{BIN}/pg_isready"))
                .args(["--host", path_str(&self.dir), "--port", &self.port.to_string(), "--username", USER])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return true;
            }
            let status = as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["status", "--pgdata", path_str(&self.dir.join("data"))])
                .output();
            // Exit code 3: no server running, it gave up (port taken, bad option).
            if status.is_ok_and(|s| s.status.code() == Some(3)) && start.elapsed() > Duration::from_secs(2) {
                return false;
            }
            std::thread::sleep(interval);
            interval = (interval * 2).min(Duration::from_millis(250));
        }
        false
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("test_{}", self.next_database.fetch_add(1, Ordering::Relaxed));
        run_ok(Command::new(format!("{BIN}/createdb")).args([
            "--host",
            path_str(&self.dir),
            "--port",
            &self.port.to_string(),
            "--username",
            USER,
            &name,
        ]));
        self.url(&name)
    }

    /// URL of a database of this server, over TCP on loopback.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts a watchdog that stops the server and removes its directory once
    /// this process has exited.
    fn stop_when_process_exits(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
             runuser -u {USER} -- {BIN}/pg_ctl stop --pgdata '{data}' -m fast >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        // Backgrounded by an outer shell that exits at once, so the watchdog
        // is nobody's child here and outlives this process.
        let started = Command::new("sh")
            .args(["-c", &format!("( {script} ) &")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the PostgreSQL watchdog");
        assert!(started.success(), "the PostgreSQL watchdog did not start");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{BIN}/pg_ctl"))
            .args(["stop", "--pgdata", path_str(&self.dir.join("data")), "-m", "fast"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

/// `PORTCULLIS_PG_DURABLE=1` keeps PostgreSQL's durable defaults (every
/// commit flushed to disk): for benchmarks that want to know what a
/// production server's commits cost. Tests leave it unset.
fn durable() -> bool {
    std::env::var_os("PORTCULLIS_PG_DURABLE").is_some_and(|v| v == "1")
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", USER, "--", program]);
    command
}

fn run_ok(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
