//! Files the two sides of a review have alike are read into manifests once.
//! A pull request changes a few files of many, and reading YAML is most of
//! what a review costs. The sides are read on two threads, the head side
//! from its last file: each thread reads what the other has not reached,
//! and takes what it has already read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::manifests::{self, ManifestSet};

/// Manifests by the exact text of the file they were read from.
#[derive(Debug, Default)]
pub struct ParseCache {
    read: Mutex<HashMap<String, Arc<OnceLock<ManifestSet>>>>,
}

impl ParseCache {
    /// The manifests of `files` (`(name in reports, text)`), as
    /// `manifests::read_str` reads them one after the other. `from_the_end`:
    /// read the last file first.
    pub fn read_files(&self, files: Vec<(String, String)>, from_the_end: bool) -> ManifestSet {
        let mut read: Vec<Option<Arc<OnceLock<ManifestSet>>>> = vec![None; files.len()];
        let order: Vec<usize> =
            if from_the_end { (0..files.len()).rev().collect() } else { (0..files.len()).collect() };
        for at in order {
            let text = &files[at].1;
            let slot = {
                let mut cache = self.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                cache.entry(text.clone()).or_default().clone()
            };
            // The other side may be reading this text now: then this waits for it.
            slot.get_or_init(|| {
                let mut set = ManifestSet::default();
                manifests::read_str(Path::new(""), text, &mut set);
                set
            });
            read[at] = Some(slot);
        }
        let mut set = ManifestSet::default();
        for ((name, _), slot) in files.iter().zip(read) {
            let Some(parsed) = slot.as_deref().and_then(OnceLock::get) else { continue };
            set.ignored += parsed.ignored;
            set.manifests.extend(parsed.manifests.iter().map(|m| {
                let mut manifest = m.clone();
                manifest.source.file = name.into();
                manifest
            }));
            set.secrets.extend(parsed.secrets.iter().map(|s| {
                let mut secret = s.clone();
                secret.source.file = name.into();
                secret
            }));
            set.problems.extend(parsed.problems.iter().map(|p| {
                let mut problem = p.clone();
                problem.file = name.into();
                problem
            }));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {name: r, namespace: team}\n\
                        spec:\n  scope: Organization\n  permissions: [a.b]\n";

    #[test]
    fn a_text_read_once_is_named_as_each_side_names_it() {
        let cache = ParseCache::default();
        let broken = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {name: r}\nspec: {scope: Galaxy}\n";
        let base = cache.read_files(
            vec![("a:roles.yaml".into(), ROLE.into()), ("a:bad.yaml".into(), broken.into())],
            false,
        );
        let head = cache.read_files(
            vec![("b:roles.yaml".into(), ROLE.into()), ("b:bad.yaml".into(), broken.into())],
            true,
        );
        assert_eq!(cache.read.lock().unwrap().len(), 2, "each text read once");
        for (set, side) in [(&base, "a"), (&head, "b")] {
            let mut direct = ManifestSet::default();
            manifests::read_str(Path::new(&format!("{side}:roles.yaml")), ROLE, &mut direct);
            manifests::read_str(Path::new(&format!("{side}:bad.yaml")), broken, &mut direct);
            assert_eq!(set.manifests.len(), direct.manifests.len());
            assert_eq!(set.manifests[0].source, direct.manifests[0].source);
            assert_eq!(set.problems, direct.problems, "problems keep their side's file and line");
        }
    }
}
