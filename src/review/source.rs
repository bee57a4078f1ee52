//! What each side of a review is, from the command line, and reading it.
//!
//! - An argument that names an existing folder (or file) is read as
//!   `portcullis validate` reads it.
//! - `REV:PATH` is the folder PATH at revision REV, in git's own syntax
//!   (PATH from the repository's root; `./` or `../` from the current
//!   directory). `main:examples/acme`, `origin/main:deploy/iam`.
//! - A bare revision (`main`, `HEAD~1`, `v1.2`) is the folder `--path` (from
//!   the current directory; by default the current directory itself) at it.
//! - One argument `A...B` is `git diff`'s: the merge base of A and B against
//!   B (what a pull request from B into A changes); `A..B` is A against B.
//!   An empty end is `HEAD`.

use std::path::{Component, Path, PathBuf};

use super::parse_cache::ParseCache;
use super::{ReviewError, git};
use crate::manifests::{self, ManifestSet};

/// One side, as asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideSpec {
    Folder(PathBuf),
    /// `path` from the repository's root.
    Revision {
        revision: String,
        path: String,
    },
    /// The merge base of two revisions.
    MergeBase {
        left: String,
        right: String,
        path: String,
    },
}

/// One side, read.
#[derive(Debug)]
pub struct Side {
    /// What it is, for the report (`main:examples/acme`, `folder x`).
    pub description: String,
    pub set: ManifestSet,
}

/// The two sides from `BASE [HEAD]` and `--path`.
pub fn sides_from_args(
    base: &str,
    head: Option<&str>,
    path: Option<&str>,
) -> Result<(SideSpec, SideSpec), ReviewError> {
    let sides = match head {
        Some(head) => (side_spec(base, path)?, side_spec(head, path)?),
        None if Path::new(base).exists() => return Err(ReviewError::OneSide { argument: base.to_owned() }),
        None => {
            let in_repository = |revision: &str| {
                let revision = if revision.is_empty() { "HEAD" } else { revision };
                Ok::<_, ReviewError>((revision.to_owned(), repository_path(base, path)?))
            };
            if let Some((left, right)) = base.split_once("...") {
                let (left, path) = in_repository(left)?;
                let (right, _) = in_repository(right)?;
                (
                    SideSpec::MergeBase { left, right: right.clone(), path: path.clone() },
                    SideSpec::Revision { revision: right, path },
                )
            } else if let Some((left, right)) = base.split_once("..") {
                let (left, path) = in_repository(left)?;
                let (right, _) = in_repository(right)?;
                (
                    SideSpec::Revision { revision: left, path: path.clone() },
                    SideSpec::Revision { revision: right, path },
                )
            } else {
                return Err(ReviewError::OneSide { argument: base.to_owned() });
            }
        }
    };
    let uses_path = |side: &SideSpec| !matches!(side, SideSpec::Folder(_));
    if path.is_some() && !uses_path(&sides.0) && !uses_path(&sides.1) {
        return Err(ReviewError::PathWithoutRevision);
    }
    Ok(sides)
}

fn side_spec(argument: &str, path: Option<&str>) -> Result<SideSpec, ReviewError> {
    if Path::new(argument).exists() {
        return Ok(SideSpec::Folder(PathBuf::from(argument)));
    }
    Ok(match argument.split_once(':') {
        Some((revision, path)) => SideSpec::Revision { revision: revision.to_owned(), path: path.to_owned() },
        None => SideSpec::Revision { revision: argument.to_owned(), path: repository_path(argument, path)? },
    })
}

/// `--path` (or the current directory) as a path from the repository's root.
fn repository_path(argument: &str, path: Option<&str>) -> Result<String, ReviewError> {
    let prefix = git::current_prefix(argument)?;
    let relative = path.unwrap_or(".");
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(&prefix).join(relative).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ReviewError::OutsideRepository { path: relative.to_owned() });
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(ReviewError::OutsideRepository { path: relative.to_owned() });
            }
        }
    }
    Ok(parts.join("/"))
}

/// Reads a side: a folder from the disk, a revision through git. Files the
/// other side has alike are read once, through `cache`; `from_the_end` reads
/// the last file first (the head side does, see [`ParseCache`]).
pub fn read_side(spec: &SideSpec, cache: &ParseCache, from_the_end: bool) -> Result<Side, ReviewError> {
    let (description, files, problems) = match spec {
        SideSpec::Folder(path) => {
            let unreadable = |source| ReviewError::Read { path: path.display().to_string(), source };
            let mut files = Vec::new();
            for file in manifests::yaml_files(path).map_err(unreadable)? {
                let text = std::fs::read_to_string(&file)
                    .map_err(|source| ReviewError::Read { path: file.display().to_string(), source })?;
                files.push((file.display().to_string(), text));
            }
            (path.display().to_string(), files, Vec::new())
        }
        SideSpec::Revision { revision, path } => {
            let commit = git::resolve_commit(revision)?;
            let (files, problems) = git::read_files(&commit, path, revision)?;
            (format!("{revision}:{path}"), files, problems)
        }
        SideSpec::MergeBase { left, right, path } => {
            let commit = git::merge_base(left, right)?;
            let short = git::short(&commit)?;
            let (files, problems) = git::read_files(&commit, path, &short)?;
            (format!("{short}:{path} (merge base of {left} and {right})"), files, problems)
        }
    };
    let mut set = cache.read_files(files, from_the_end);
    set.problems.extend(problems);
    Ok(Side { description, set })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_folder_is_a_folder_and_rev_colon_path_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        assert_eq!(side_spec(folder, None).unwrap(), SideSpec::Folder(dir.path().to_owned()));
        assert_eq!(
            side_spec("origin/main:deploy/iam", None).unwrap(),
            SideSpec::Revision { revision: "origin/main".into(), path: "deploy/iam".into() }
        );
    }

    #[test]
    fn one_argument_must_be_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        assert!(matches!(sides_from_args(folder, None, None), Err(ReviewError::OneSide { .. })));
        assert!(matches!(
            sides_from_args(folder, Some(folder), Some("x")),
            Err(ReviewError::PathWithoutRevision)
        ));
    }
}
