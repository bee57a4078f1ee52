//! `portcullis diff`: the access review of a change to the manifests
//! ([`crate::review`]), for a terminal, a pull-request comment or a bot.
//!
//! Exit status: 0 when the review was made (and `--fail-on` found nothing),
//! 1 when `--fail-on` matched, 2 when no review could be made (invalid
//! manifests on either side, a revision or folder that does not exist, a
//! store that cannot be read).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jiff::Timestamp;

use crate::error_chain::error_chain;
use crate::review::{self, FailOn, ReviewError, Side};
use crate::store::{AccessDirectory, Store};
use crate::validation::Severity;

/// Flags of `portcullis diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The side before the change: a folder, REV:PATH (`main:examples/acme`),
    /// a revision (the folder --path at it), or one range `BASE...HEAD`
    /// (the merge base of BASE and HEAD against HEAD, as `git diff` reads it).
    #[arg(value_name = "BASE")]
    base: String,

    /// The side after the change: a folder, REV:PATH or a revision.
    #[arg(value_name = "HEAD")]
    head: Option<String>,

    /// For sides given as bare revisions: the manifests folder, from the
    /// current directory (default: the current directory).
    #[arg(long, value_name = "PATH")]
    path: Option<String>,

    /// Expand groups into their current members, read (never written) from
    /// this store: `postgres://…`, `sqlite://…`, or a standalone data
    /// directory (holding portcullis.db).
    #[arg(long, value_name = "URL|DIR", conflicts_with = "store_file")]
    store: Option<String>,

    /// File holding the store URL (for example a CI secret), as --store.
    #[arg(long, value_name = "FILE")]
    store_file: Option<PathBuf>,

    /// How to print the review.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Exit with status 1 when the change widens access of this kind.
    #[arg(long, value_enum, value_name = "WHAT")]
    fail_on: Option<FailOnArg>,

    /// Judge expiries at this instant (RFC 3339) instead of now: what the
    /// change does on the day it is merged, say.
    #[arg(long, value_name = "TIME")]
    at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For a terminal (coloured when stdout is one).
    Text,
    /// A pull-request comment: a summary table, details collapsed.
    Markdown,
    /// Everything, for bots.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FailOnArg {
    /// Someone (or a role) gains a privileged permission (catalog `privileged`, `iam.*`, a `*` wildcard).
    Privileged,
    /// Someone (or a role) gains a permission the organization requires approval for.
    Approval,
    /// Any change of access.
    Any,
}

impl From<FailOnArg> for FailOn {
    fn from(arg: FailOnArg) -> Self {
        match arg {
            FailOnArg::Privileged => FailOn::Privileged,
            FailOnArg::Approval => FailOn::Approval,
            FailOnArg::Any => FailOn::Any,
        }
    }
}

const TROUBLE: u8 = 2;

pub fn run(args: DiffArgs) -> ExitCode {
    match diff(&args) {
        Ok(code) => code,
        Err(ReviewError::Invalid { .. }) => ExitCode::from(TROUBLE),
        Err(error) => {
            eprintln!("portcullis diff: error: {}", error_chain(&error));
            ExitCode::from(TROUBLE)
        }
    }
}

fn diff(args: &DiffArgs) -> Result<ExitCode, ReviewError> {
    let (base_spec, head_spec) =
        review::sides_from_args(&args.base, args.head.as_deref(), args.path.as_deref())?;
    // The sides are independent: read and validate them on two threads.
    let cache = review::ParseCache::default();
    let (base, head) = std::thread::scope(|scope| {
        let base = scope.spawn(|| read_and_validate("base", &base_spec, &cache, false));
        let head = read_and_validate("head", &head_spec, &cache, true);
        (base.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), head)
    });
    // Every invalid side is reported; then the first error stops the review.
    let (base, head) = (base.inspect_err(report_invalid), head.inspect_err(report_invalid));
    let (base, head) = (base?, head?);

    let directories = match store_argument(args)? {
        Some(store) => Some(read_directories(&store, &base, &head)?),
        None => None,
    };
    let at = args.at.unwrap_or_else(Timestamp::now);
    let review = review::review(&base, &head, directories.as_ref(), at);

    let rendered = match args.output {
        Output::Text => review::text::render(&review),
        Output::Markdown => review::markdown::render(&review),
        Output::Json => serde_json::to_string_pretty(&review).unwrap_or_default() + "\n",
    };
    let mut stdout = anstream::stdout().lock();
    if let Err(error) = stdout.write_all(rendered.as_bytes()).and_then(|()| stdout.flush()) {
        return Err(ReviewError::Write { source: error });
    }

    let Some(fail_on) = args.fail_on else { return Ok(ExitCode::SUCCESS) };
    let failures = review::policy::failures(&review, fail_on.into());
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let what = fail_on.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
    for failure in &failures {
        eprintln!("portcullis diff: --fail-on {what}: {failure}");
    }
    Ok(ExitCode::FAILURE)
}

fn read_and_validate(
    which: &'static str,
    spec: &review::SideSpec,
    cache: &review::ParseCache,
    from_the_end: bool,
) -> Result<Side, ReviewError> {
    let side = review::read_side(spec, cache, from_the_end)?;
    review::validate_side(which, &side)?;
    Ok(side)
}

/// Prints a side's reports as `portcullis validate` does (on stderr: stdout
/// is the review's), then which side they came from.
fn report_invalid(error: &ReviewError) {
    let ReviewError::Invalid { which, description, reports, .. } = error else { return };
    for report in reports {
        eprintln!("{report}");
    }
    let errors = reports.iter().filter(|r| r.severity == Severity::Error).count();
    eprintln!(
        "portcullis diff: the {which} side ({description}) has {errors} error(s), {} warning(s); nothing was compared",
        reports.len() - errors
    );
}

/// The store URL from --store or --store-file; a data directory becomes its
/// SQLite file.
fn store_argument(args: &DiffArgs) -> Result<Option<String>, ReviewError> {
    let given = match (&args.store, &args.store_file) {
        (Some(store), _) => store.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|source| ReviewError::Read { path: file.display().to_string(), source })?
            .trim()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    let looks_like_url = given.contains("://") || given.starts_with("sqlite:");
    let path = Path::new(&given);
    if looks_like_url || !path.is_dir() {
        return Ok(Some(given));
    }
    let database = path.join("portcullis.db");
    if !database.is_file() {
        return Err(ReviewError::NotADataDirectory { path: given });
    }
    // `rw` opens the existing file and never creates one; nothing is written.
    Ok(Some(format!("sqlite://{}?mode=rw", database.display())))
}

fn read_directories(
    url: &str,
    base: &Side,
    head: &Side,
) -> Result<BTreeMap<String, AccessDirectory>, ReviewError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ReviewError::Runtime { source })?;
    let namespaces = review::namespaces(base, head);
    runtime.block_on(async {
        let store = Store::connect_existing(url).await.map_err(|source| ReviewError::Store { source })?;
        let directories = review::load_directories(&store, &namespaces).await;
        store.close().await;
        directories
    })
}
