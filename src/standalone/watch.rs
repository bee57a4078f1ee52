//! Following the manifests folder: every change to a YAML file under it is
//! a new [`sync`](super::sync) pass, once the burst of events an editor's
//! save makes has settled; a signing key due to change state is one too.
//!
//! ```text
//!  inotify (notify crate) ──► settle (QUIET without events) ──► sync ─┬─ applied: changes logged,
//!  signing-key wake-up ─────────────────────────────────────────────┘   new credentials printed
//!                                                                      └─ rejected: file:line on stderr,
//!                                                                         the store keeps the last valid state
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::banner;
use super::bootstrap;
use super::data_dir::DataDir;
use super::sync::{self, Pass, Written};
use crate::store::Store;
use crate::token::service::TokenServiceState;

/// How long the folder must be quiet before it is read: an editor's save is
/// several events (write a temporary file, rename it over the old one).
pub const QUIET: Duration = Duration::from_millis(50);

/// Longest wait between two passes without any event (keys change state on
/// a schedule; this bounds how late a missed wake-up can be).
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// Follows the folder until the task is dropped.
pub async fn follow(
    dir: PathBuf,
    store: Store,
    data: DataDir,
    token: TokenServiceState,
    mut written: Written,
    mut wake_at: Option<Timestamp>,
) {
    let (events, mut changes) = mpsc::unbounded_channel();
    // Kept alive for as long as the loop runs.
    let _watcher = match start_watcher(&dir, data.root(), events) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(folder = %dir.display(), %error, "cannot watch the manifests folder; edits need a restart");
            None
        }
    };
    loop {
        let wait = wake_at.map_or(LONGEST_WAIT, until).min(LONGEST_WAIT);
        tokio::select! {
            event = changes.recv() => {
                if event.is_none() {
                    // No watcher: only the key schedule is left to follow.
                    tokio::time::sleep(wait).await;
                } else {
                    settle(&mut changes).await;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
        match sync::sync(&dir, &store, &data, &mut written, Timestamp::now()).await {
            Ok(Pass::Applied(applied)) => {
                banner::print_reports(&applied.warnings);
                if applied.changed > 0 {
                    tracing::info!(changed = applied.changed, "manifests applied");
                }
                banner::print_new_credentials(&applied.credentials);
                super::use_upstream_secrets(&token, &applied.set);
                match bootstrap::ensure_administrators(&applied.set, &store, token.login(), Timestamp::now())
                    .await
                {
                    Ok(administrators) => banner::print_new_administrators(&administrators),
                    Err(error) => tracing::error!(%error, "the bootstrap administrator"),
                }
                wake_at = applied.wake_at;
            }
            Ok(Pass::Rejected(reports)) => {
                banner::print_reports(&reports);
                banner::print_rejected(&dir, &reports);
            }
            Err(error) => tracing::error!(%error, "the manifests could not be applied; the last state stays"),
        }
    }
}

/// Waits until no event came for [`QUIET`].
async fn settle(changes: &mut mpsc::UnboundedReceiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(QUIET, changes.recv()).await {}
}

fn until(at: Timestamp) -> Duration {
    let left = Timestamp::now().duration_until(at);
    Duration::try_from(left).unwrap_or_default().max(Duration::from_secs(1))
}

/// Watches `dir` (or, for a single file, its folder) and sends one `()` per
/// event that may change what the folder holds.
fn start_watcher(
    dir: &Path,
    data_root: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let data_root = std::path::absolute(data_root).unwrap_or_else(|_| data_root.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if matters(&event, &data_root) => {
            let _ = events.send(());
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "watching the manifests folder"),
    })?;
    // A file replaced by rename loses its own watch: watch its folder instead.
    let (target, mode) = match dir.is_file() {
        true => (dir.parent().unwrap_or(Path::new(".")), RecursiveMode::NonRecursive),
        false => (dir, RecursiveMode::Recursive),
    };
    watcher.watch(target, mode)?;
    Ok(watcher)
}

/// A change to a YAML file, or to a folder (which may hold some); never the
/// data directory's own writes, should it live inside the manifests folder.
fn matters(event: &notify::Event, data_root: &Path) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        if path.starts_with(data_root) {
            return false;
        }
        match path.extension() {
            Some(extension) => extension == "yaml" || extension == "yml",
            None => !path.is_file(),
        }
    })
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    use super::*;

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_yaml_files_and_folders_outside_the_data_directory_matter() {
        let data = Path::new("/m/.portcullis");
        assert!(matters(&event(EventKind::Modify(ModifyKind::Any), "/m/roles.yaml"), data));
        assert!(matters(&event(EventKind::Create(CreateKind::Any), "/m/sub/ra.yml"), data));
        assert!(matters(&event(EventKind::Create(CreateKind::Folder), "/m/new-tenant"), data));
        assert!(!matters(&event(EventKind::Modify(ModifyKind::Any), "/m/.roles.yaml.swp"), data));
        assert!(!matters(
            &event(EventKind::Modify(ModifyKind::Any), "/m/.portcullis/portcullis.db-wal"),
            data
        ));
        assert!(!matters(&event(EventKind::Modify(ModifyKind::Any), "/m/.portcullis/keys"), data));
        assert!(!matters(&event(EventKind::Access(AccessKind::Any), "/m/roles.yaml"), data));
    }
}
