//! `portcullis audit`: export an organization's audit trail as JSON Lines,
//! and verify a chain, from an export file or straight from the store.
//!
//! Exit codes: 0 the chain verifies, 1 it does not (the finding names the
//! line), 2 the file or the store could not be read.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::audit::verify_export;
use crate::store::{AuditStore as _, ChainCheck, MAX_AUDIT_PAGE, Store};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Write an organization's sealed events, oldest first, one JSON line each.
    Export(ExportArgs),
    /// Check that every event follows the one before it: an edited, removed
    /// or reordered event is named by its line.
    Verify(VerifyArgs),
}

/// Where the store is, and which organization's chain.
#[derive(Args, Debug)]
pub struct ChainArgs {
    /// Store URL: `postgres://…` or `sqlite://path`.
    #[arg(long, env = "PORTCULLIS_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// The organization's namespace.
    #[arg(long, short = 'n')]
    organization: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    chain: ChainArgs,

    /// Write here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// An export (`portcullis audit export`, or `GET …/api/v1/audit/export`).
    /// Without it, the chain stored for `--organization` is verified.
    file: Option<PathBuf>,

    /// The chain head to expect at the end of the file (the `hash` that
    /// `GET …/api/v1/audit/head` reported): shows that no newest event was cut off.
    #[arg(long, value_name = "HASH")]
    head: Option<String>,

    #[command(flatten)]
    chain: ChainArgs,
}

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(VerifyArgs { file: Some(file), head, .. }) => {
            verify_file(&file, head.as_deref())
        }
        AuditCommand::Verify(VerifyArgs { file: None, chain, .. }) => with_store(chain, verify_store),
        AuditCommand::Export(ExportArgs { chain, output }) => {
            with_store(chain, |store, organization| export(store, organization, output))
        }
    }
}

pub(crate) fn verify_file(file: &Path, head: Option<&str>) -> ExitCode {
    let reader = match std::fs::File::open(file) {
        Ok(reader) => BufReader::new(reader),
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match verify_export(reader, head) {
        Ok(report) => {
            println!(
                "{}: the chain of {} verifies: {} events, seq {}..{}{}, head {}",
                file.display(),
                report.organization,
                report.events,
                report.first_seq,
                report.last_seq,
                if report.complete_from_start() { "" } else { " (older events deleted by retention)" },
                report.head,
            );
            ExitCode::SUCCESS
        }
        Err(finding) => {
            // `file:line:` as every finding of the CLI.
            match finding.line() {
                Some(line) => eprintln!("{}:{line}: {finding}", file.display()),
                None => eprintln!("{}: {finding}", file.display()),
            }
            ExitCode::FAILURE
        }
    }
}

/// Opens the store and runs `job` on the organization's chain.
fn with_store<F>(chain: ChainArgs, job: impl FnOnce(Store, String) -> F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, String>>,
{
    let (Some(url), Some(organization)) = (chain.database_url, chain.organization) else {
        eprintln!("error: give an export FILE, or --database-url and --organization");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let store = Store::connect(&url).await.map_err(|e| format!("connecting to the store: {e}"))?;
        job(store, organization).await
    });
    outcome.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    })
}

async fn verify_store(store: Store, organization: String) -> Result<ExitCode, String> {
    // Seal what was appended but not linked yet: it is part of the chain.
    store.seal_audit(&organization).await.map_err(|e| format!("sealing: {e}"))?;
    match store.verify_audit(&organization).await.map_err(|e| format!("reading the chain: {e}"))? {
        ChainCheck::Empty => {
            println!("organization {organization}: no audit event is stored");
            Ok(ExitCode::SUCCESS)
        }
        ChainCheck::Intact(report) => {
            println!(
                "organization {organization}: the stored chain verifies: {} events, seq {}..{}, head {}",
                report.events, report.first_seq, report.last_seq, report.head
            );
            Ok(ExitCode::SUCCESS)
        }
        ChainCheck::Broken { first_seq, finding } => {
            eprintln!(
                "organization {organization}: the stored chain is broken (lines count from seq {first_seq}): {finding}"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn export(store: Store, organization: String, output: Option<PathBuf>) -> Result<ExitCode, String> {
    store.seal_audit(&organization).await.map_err(|e| format!("sealing: {e}"))?;
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: cannot write: {e}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = 0;
    loop {
        let links = store
            .audit_links(&organization, after, MAX_AUDIT_PAGE)
            .await
            .map_err(|e| format!("reading the chain: {e}"))?;
        let Some(last) = links.last() else { break };
        after = last.seq;
        for link in &links {
            writeln!(out, "{}", link.to_line()).map_err(|e| format!("writing the export: {e}"))?;
        }
    }
    out.flush().map_err(|e| format!("writing the export: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
