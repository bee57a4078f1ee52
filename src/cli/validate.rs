//! `portcullis validate`: the GitOps pre-merge check.

use std::path::Path;
use std::process::ExitCode;

use crate::manifests;
use crate::validation::Severity;
use crate::validation::report::{Report, validate_set};

/// Everything wrong with the manifests under `dir`, sorted by file and line.
pub fn validate_dir(dir: &Path) -> std::io::Result<Vec<Report>> {
    Ok(validate_set(&manifests::read_dir(dir)?))
}

pub fn run(dir: &Path) -> ExitCode {
    let reports = match validate_dir(dir) {
        Ok(reports) => reports,
        Err(err) => {
            eprintln!("{}: error: cannot read: {err}", dir.display());
            return ExitCode::from(2);
        }
    };
    for report in &reports {
        println!("{report}");
    }
    let errors = reports.iter().filter(|r| r.severity == Severity::Error).count();
    let warnings = reports.len() - errors;
    eprintln!("{}: {errors} error(s), {warnings} warning(s)", dir.display());
    if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
