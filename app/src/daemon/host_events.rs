//! The host half of file-change events in containers: the folders running containers bind-mount
//! (the agent names them, [`Request::Watched`](skiff_proto::control::Request::Watched)) are
//! watched here (inotify on Linux, FSEvents on macOS), and each batch of changes goes to the agent,
//! which raises them in the guest (`vm-agent/src/init/host_events.rs`). Shares keep host paths in
//! the guest, so paths cross unchanged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use skiff_proto::control::FsEvent;
use tokio::sync::mpsc;

/// How long a batch gathers after its first change (an editor's save is several events).
const BATCH: Duration = Duration::from_millis(30);
/// The most events one batch carries (a checkout of thousands of files is split).
const BATCH_MAX: usize = 512;

/// The watches on the host.
#[derive(Debug)]
pub struct HostWatcher {
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

/// What the watcher reports, read by [`next_batch`].
pub type Changes = mpsc::UnboundedReceiver<notify::Result<Event>>;

impl HostWatcher {
    /// A watcher with nothing watched yet, and the receiver of what it will see.
    pub fn new() -> notify::Result<(Self, Changes)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |ev| {
            let _ = tx.send(ev);
        })?;
        Ok((Self { watcher, watched: BTreeSet::new() }, rx))
    }

    /// Watches exactly `paths` (recursively) from now on.
    pub fn set(&mut self, paths: &[String]) {
        let wanted: BTreeSet<PathBuf> = paths.iter().map(PathBuf::from).collect();
        for gone in self.watched.difference(&wanted).cloned().collect::<Vec<_>>() {
            let _ = self.watcher.unwatch(&gone);
            self.watched.remove(&gone);
            tracing::debug!(path = %gone.display(), "no longer watched");
        }
        for new in wanted.difference(&self.watched).cloned().collect::<Vec<_>>() {
            match self.watcher.watch(&new, RecursiveMode::Recursive) {
                Ok(()) => {
                    tracing::info!(path = %new.display(), "watching for changes to raise in containers");
                    self.watched.insert(new);
                }
                // Tried again at the next update (e.g. the folder appears later).
                Err(e) => tracing::warn!(path = %new.display(), error = %e, "cannot watch"),
            }
        }
    }
}

/// Gathers batches for as long as the watcher lives, each sent to `batches` (a task of its own:
/// a batch being gathered must not be dropped half-way by the daemon's other work).
pub async fn gather(mut changes: Changes, batches: mpsc::Sender<Vec<FsEvent>>) {
    while let Some(batch) = next_batch(&mut changes).await {
        if !batch.is_empty() && batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// Waits for the next change, gathers what follows within [`BATCH`], and returns it as events
/// for the guest (`None`: the watcher is gone).
pub async fn next_batch(changes: &mut Changes) -> Option<Vec<FsEvent>> {
    let first = changes.recv().await?;
    let mut raw = vec![first];
    let deadline = tokio::time::Instant::now() + BATCH;
    while raw.len() < BATCH_MAX {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Some(ev)) => raw.push(ev),
            Ok(None) | Err(_) => break,
        }
    }
    let events: Vec<Event> =
        raw.into_iter().filter_map(|r| r.map_err(|e| tracing::debug!(error = %e, "watch error")).ok()).collect();
    Some(translate(&events, |p| p.is_dir()))
}

fn text(p: &Path) -> String {
    p.display().to_string()
}

/// The guest's events for a batch of host ones, in order, each once. A rename seen whole
/// (`Name(Both)`) is one move; its halves, also reported, are dropped; a half alone is a move
/// into or out of the watched folders: a create or a delete. `is_dir` is asked where the host
/// event does not say.
pub fn translate(events: &[Event], is_dir: impl Fn(&Path) -> bool) -> Vec<FsEvent> {
    let whole: Vec<(&Path, &Path)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Modify(ModifyKind::Name(RenameMode::Both))))
        .filter_map(|e| Some((e.paths.first()?.as_path(), e.paths.get(1)?.as_path())))
        .collect();
    let mut out: Vec<FsEvent> = Vec::new();
    for e in events {
        let Some(path) = e.paths.first() else { continue };
        let p = text(path);
        let ev = match e.kind {
            EventKind::Create(CreateKind::Folder) => FsEvent::Created { path: p, dir: true },
            EventKind::Create(CreateKind::File) => FsEvent::Created { path: p, dir: false },
            EventKind::Create(_) => FsEvent::Created { dir: is_dir(path), path: p },
            EventKind::Remove(RemoveKind::Folder) => FsEvent::Deleted { path: p, dir: true },
            EventKind::Remove(_) => FsEvent::Deleted { path: p, dir: false },
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                let Some(to) = e.paths.get(1) else { continue };
                FsEvent::Moved { from: p, to: text(to), dir: is_dir(to) }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                if whole.iter().any(|(from, _)| *from == path.as_path()) {
                    continue;
                }
                FsEvent::Deleted { path: p, dir: false }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                if whole.iter().any(|(_, to)| *to == path.as_path()) {
                    continue;
                }
                FsEvent::Created { dir: is_dir(path), path: p }
            }
            // FSEvents says only "renamed": which side this path is, its existence tells.
            EventKind::Modify(ModifyKind::Name(_)) => {
                if path.exists() {
                    FsEvent::Created { dir: is_dir(path), path: p }
                } else {
                    FsEvent::Deleted { path: p, dir: false }
                }
            }
            EventKind::Modify(ModifyKind::Metadata(_)) => FsEvent::Attrib { path: p },
            EventKind::Modify(_) => {
                if is_dir(path) {
                    continue;
                }
                FsEvent::Modified { path: p }
            }
            EventKind::Access(_) | EventKind::Any | EventKind::Other => continue,
        };
        if !out.contains(&ev) {
            out.push(ev);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, DataChange, MetadataKind};

    use super::*;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        paths.iter().fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn host_events_become_the_guests() {
        let rename = |m| EventKind::Modify(ModifyKind::Name(m));
        let events = [
            ev(EventKind::Create(CreateKind::File), &["/w/new.js"]),
            ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &["/w/new.js"]),
            ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &["/w/new.js"]),
            ev(EventKind::Access(AccessKind::Close(AccessMode::Write)), &["/w/new.js"]),
            ev(EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)), &["/w/run.sh"]),
            ev(EventKind::Create(CreateKind::Folder), &["/w/lib"]),
            ev(EventKind::Remove(RemoveKind::File), &["/w/old.js"]),
            ev(EventKind::Remove(RemoveKind::Folder), &["/w/tmp"]),
            // A rename inside the watched folder: its halves and the pair.
            ev(rename(RenameMode::From), &["/w/a.txt"]),
            ev(rename(RenameMode::To), &["/w/b.txt"]),
            ev(rename(RenameMode::Both), &["/w/a.txt", "/w/b.txt"]),
            // Moved out of and into the watched folders: a half alone.
            ev(rename(RenameMode::From), &["/w/gone.txt"]),
            ev(rename(RenameMode::To), &["/w/came"]),
        ];
        let is_dir = |p: &Path| p == Path::new("/w/came");
        assert_eq!(
            translate(&events, is_dir),
            vec![
                FsEvent::Created { path: "/w/new.js".into(), dir: false },
                FsEvent::Modified { path: "/w/new.js".into() },
                FsEvent::Attrib { path: "/w/run.sh".into() },
                FsEvent::Created { path: "/w/lib".into(), dir: true },
                FsEvent::Deleted { path: "/w/old.js".into(), dir: false },
                FsEvent::Deleted { path: "/w/tmp".into(), dir: true },
                FsEvent::Moved { from: "/w/a.txt".into(), to: "/w/b.txt".into(), dir: false },
                FsEvent::Deleted { path: "/w/gone.txt".into(), dir: false },
                FsEvent::Created { path: "/w/came".into(), dir: true },
            ]
        );
    }

    #[tokio::test]
    async fn a_watched_folder_reports_a_change_and_an_unwatched_one_does_not() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let (watched, other) = (dir.path().join("app"), dir.path().join("other"));
        std::fs::create_dir_all(watched.join("src"))?;
        std::fs::create_dir_all(&other)?;
        let (mut w, mut changes) = HostWatcher::new()?;
        w.set(&[watched.display().to_string()]);
        std::fs::write(other.join("x"), "not watched")?;
        std::fs::write(watched.join("src/main.js"), "watched, recursively")?;
        let batch = tokio::time::timeout(Duration::from_secs(5), next_batch(&mut changes)).await?.unwrap_or_default();
        let main = watched.join("src/main.js").display().to_string();
        assert!(batch.contains(&FsEvent::Created { path: main.clone(), dir: false }), "{batch:?}");
        assert!(batch.iter().all(|e| !format!("{e:?}").contains("other")), "{batch:?}");
        // Unwatched: nothing more arrives.
        w.set(&[]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        while changes.try_recv().is_ok() {}
        std::fs::write(watched.join("src/main.js"), "changed")?;
        let later = tokio::time::timeout(Duration::from_millis(300), next_batch(&mut changes)).await;
        assert!(later.is_err() || later.is_ok_and(|b| b.unwrap_or_default().is_empty()), "events after unwatch");
        Ok(())
    }
}
