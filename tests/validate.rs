//! `portcullis validate` on the examples, as a user runs it before merging.

mod support;

use std::path::Path;
use std::process::Command;

use support::{invalid_examples, repo};

fn validate(dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("validate")
        .arg(dir)
        .output()
        .expect("run portcullis");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_acme_example_validates_without_errors_or_warnings() {
    let (ok, stdout, stderr) = validate(&repo().join("examples/acme"));
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout, "", "acme should be clean");
    assert!(stderr.contains("0 error(s), 0 warning(s)"), "{stderr}");
}

/// Every mistake in `examples/invalid/` fails `validate` before merge, with
/// its expected message and a `file:line` that points into the file: the
/// cross-resource ones, and also those the API server's schema would refuse at
/// sync time (CEL rules, patterns, unknown fields).
#[test]
fn each_invalid_example_is_reported_with_file_and_line() {
    let examples = invalid_examples();
    assert!(
        examples.iter().filter(|e| e.rejected_by == "validate").count() >= 8,
        "too few validate examples"
    );
    for example in examples {
        // Alone in a folder, so each file's finding is its own.
        let dir = tempfile::tempdir().unwrap();
        let name = example.path.file_name().unwrap();
        std::fs::copy(&example.path, dir.path().join(name)).unwrap();
        let (ok, stdout, _) = validate(dir.path());
        let file = example.path.display();
        assert!(!ok, "{file}: validate passed it:\n{stdout}");
        let line = stdout
            .lines()
            .find(|l| l.contains(&example.expect))
            .unwrap_or_else(|| panic!("{file}: expected {:?} in:\n{stdout}", example.expect));
        let prefix = format!("{}:", dir.path().join(name).display());
        let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{file}: no file name in {line:?}"));
        let line_number: usize = rest.split(':').next().unwrap().parse().expect("a line number");
        let text = std::fs::read_to_string(&example.path).unwrap();
        assert!(
            line_number > 0 && line_number <= text.lines().count(),
            "{file}: line out of the file: {line}"
        );
        assert!(rest.contains(": error: "), "{file}: {line}");
    }
}

#[test]
fn validate_exits_non_zero_on_a_missing_folder() {
    let (ok, _, stderr) = validate(Path::new("/nonexistent/portcullis"));
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}
