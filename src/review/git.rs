//! Reading manifests at a git revision of the repository around the current
//! directory, with the `git` command (no library: three plumbing commands
//! do it, and the user's own git resolves revisions exactly as they expect).
//!
//! ```text
//!  rev-parse --verify REV^{commit} ─► commit ─► rev-parse commit:PATH ─► tree (or one blob)
//!  ls-tree -r -z --full-tree tree  ─► *.yaml / *.yml blobs ─► cat-file --batch ─► manifests::read_str
//! ```
//!
//! Every revision and path is passed as an argument after
//! `--end-of-options`, never through a shell.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};

use super::ReviewError;
use crate::manifests::ParseProblem;

/// The commit a revision names, as a full object name.
pub fn resolve_commit(revision: &str) -> Result<String, ReviewError> {
    ensure_repository(revision)?;
    let spec = format!("{revision}^{{commit}}");
    match run_optional(&["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])? {
        Some(oid) => Ok(oid),
        None => Err(ReviewError::RevisionNotFound { revision: revision.to_owned() }),
    }
}

/// The best common ancestor of two commits, as `git diff A...B` takes it.
pub fn merge_base(left: &str, right: &str) -> Result<String, ReviewError> {
    let (left_oid, right_oid) = (resolve_commit(left)?, resolve_commit(right)?);
    match run_optional(&["merge-base", "--end-of-options", &left_oid, &right_oid])? {
        Some(oid) => Ok(oid),
        None => Err(ReviewError::NoMergeBase { left: left.to_owned(), right: right.to_owned() }),
    }
}

/// A short name for a commit, for labels.
pub fn short(oid: &str) -> Result<String, ReviewError> {
    Ok(run_optional(&["rev-parse", "--short", "--end-of-options", oid])?.unwrap_or_else(|| oid.to_owned()))
}

/// A file's name in reports, and its text.
pub type NamedText = (String, String);

/// The YAML files under `path` at `commit`, as `(name, text)`, and a
/// problem for each that is not UTF-8 text. `path` is in git's own
/// `<rev>:<path>` syntax: from the repository's root, or from the current
/// directory when it starts with `./` or `../`. Files are named
/// `{label}:{path}/{file}` in reports, so that `git show` finds them.
pub fn read_files(
    commit: &str,
    path: &str,
    label: &str,
) -> Result<(Vec<NamedText>, Vec<ParseProblem>), ReviewError> {
    let object = format!("{commit}:{path}");
    let not_found = || ReviewError::PathNotFound { revision: label.to_owned(), path: path.to_owned() };
    let oid = run_optional(&["rev-parse", "--verify", "--quiet", "--end-of-options", &object])?
        .ok_or_else(not_found)?;
    let kind = run_optional(&["cat-file", "-t", &oid])?.ok_or_else(not_found)?;
    let shown = |file: &str| -> String {
        let dir = path.trim_end_matches('/');
        match (dir, file) {
            (dir, "") => format!("{label}:{dir}"),
            ("", file) => format!("{label}:{file}"),
            (dir, file) => format!("{label}:{dir}/{file}"),
        }
    };
    let blobs: Vec<(String, String)> = match kind.as_str() {
        "blob" => vec![(oid, shown(""))],
        "tree" => list_yaml_blobs(&oid)?.into_iter().map(|(oid, file)| (oid, shown(&file))).collect(),
        _ => return Err(not_found()),
    };
    let contents = read_blobs(blobs.iter().map(|(oid, _)| oid.as_str()))?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for ((_, name), bytes) in blobs.into_iter().zip(contents) {
        match String::from_utf8(bytes) {
            Ok(text) => files.push((name, text)),
            Err(_) => problems.push(ParseProblem {
                file: name.into(),
                line: 1,
                message: "not UTF-8 text".to_owned(),
            }),
        }
    }
    Ok((files, problems))
}

/// `(blob, path)` of every YAML file under a tree, sorted by path (as a
/// folder is read). Symbolic links and submodules are skipped.
fn list_yaml_blobs(tree: &str) -> Result<Vec<(String, String)>, ReviewError> {
    let out = run(&["ls-tree", "-r", "-z", "--full-tree", "--end-of-options", tree])?;
    let mut blobs = Vec::new();
    for entry in out.split('\0').filter(|e| !e.is_empty()) {
        // `<mode> SP <type> SP <object> TAB <path>`
        let Some((meta, file)) = entry.split_once('\t') else { continue };
        let mut fields = meta.split(' ');
        let (mode, kind, oid) = (fields.next(), fields.next(), fields.next());
        let yaml = file.ends_with(".yaml") || file.ends_with(".yml");
        if let (Some("blob"), Some(oid), true) = (kind, oid, mode != Some("120000") && yaml) {
            blobs.push((oid.to_owned(), file.to_owned()));
        }
    }
    blobs.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(blobs)
}

/// The contents of blobs, in order, through one `git cat-file --batch`.
fn read_blobs<'a>(oids: impl Iterator<Item = &'a str>) -> Result<Vec<Vec<u8>>, ReviewError> {
    let request: String = oids.map(|oid| format!("{oid}\n")).collect();
    let mut child = Command::new("git")
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ReviewError::GitUnavailable { source })?;
    let mut stdin = child.stdin.take().ok_or_else(|| git_failed("cat-file --batch", "no stdin"))?;
    // Written from another thread: git answers as it reads, and a full pipe
    // either way would otherwise wait forever.
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let mut output = Vec::new();
    let mut stdout = child.stdout.take().ok_or_else(|| git_failed("cat-file --batch", "no stdout"))?;
    stdout.read_to_end(&mut output).map_err(|e| git_failed("cat-file --batch", &e.to_string()))?;
    let written = writer.join().map_err(|_| git_failed("cat-file --batch", "the writer panicked"))?;
    let status = child.wait().map_err(|e| git_failed("cat-file --batch", &e.to_string()))?;
    written.map_err(|e| git_failed("cat-file --batch", &e.to_string()))?;
    if !status.success() {
        return Err(git_failed("cat-file --batch", &format!("exited with {status}")));
    }
    parse_batch(&output)
}

/// `<oid> SP <type> SP <size> LF <contents> LF`, once per object.
fn parse_batch(mut output: &[u8]) -> Result<Vec<Vec<u8>>, ReviewError> {
    let mut blobs = Vec::new();
    while !output.is_empty() {
        let end = output.iter().position(|&b| b == b'\n').ok_or_else(|| batch_error("a header"))?;
        let header = std::str::from_utf8(&output[..end]).map_err(|_| batch_error("a header"))?;
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| git_failed("cat-file --batch", &format!("unexpected answer {header:?}")))?;
        let start = end + 1;
        let contents = output.get(start..start + size).ok_or_else(|| batch_error("the contents"))?;
        blobs.push(contents.to_vec());
        output = output.get(start + size + 1..).unwrap_or_default();
    }
    Ok(blobs)
}

fn batch_error(what: &str) -> ReviewError {
    git_failed("cat-file --batch", &format!("could not read {what} of its answer"))
}

/// Where the current directory is in the repository (`examples/acme/`, or
/// empty at its root). `argument` is what made us look, for the error.
pub fn current_prefix(argument: &str) -> Result<String, ReviewError> {
    ensure_repository(argument)?;
    Ok(run_optional(&["rev-parse", "--show-prefix"])?.unwrap_or_default())
}

fn ensure_repository(revision: &str) -> Result<(), ReviewError> {
    match run_optional(&["rev-parse", "--git-dir"])? {
        Some(_) => Ok(()),
        None => Err(ReviewError::NotARepository { argument: revision.to_owned() }),
    }
}

/// Runs git; `None` when it exits with an error (something asked for does
/// not exist), its trimmed output otherwise.
fn run_optional(args: &[&str]) -> Result<Option<String>, ReviewError> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ReviewError::GitUnavailable { source })?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

fn run(args: &[&str]) -> Result<String, ReviewError> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ReviewError::GitUnavailable { source })?;
    if !out.status.success() {
        return Err(git_failed(&args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git_failed(command: &str, message: &str) -> ReviewError {
    ReviewError::Git { command: command.to_owned(), message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_split_into_its_blobs() {
        let answer = b"aaa blob 5\nhello\nbbb blob 0\n\nccc blob 3\na\nb\n";
        let blobs = parse_batch(answer).expect("parse");
        assert_eq!(blobs, [b"hello".to_vec(), Vec::new(), b"a\nb".to_vec()]);
        assert!(parse_batch(b"aaa blob 9\nshort\n").is_err(), "a truncated answer is an error");
    }
}
