//! File-change events from the host. virtio-fs shows the guest a host edit on the next lookup or
//! read, but the guest kernel never hears of it, so file watchers in containers stay silent. The
//! host daemon watches the folders running containers bind-mount ([`watched`]) and sends each
//! change; [`raise`] hands it to our kernel module (vm-image/fsnotify), which raises the
//! inotify/fanotify event the change would have raised in the guest.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skiff_proto::control::FsEvent;

use crate::engine::containers::mounts::Kind;
use crate::engine::containers::record::Status;
use crate::engine::Engine;

/// The module's device (a misc device: devtmpfs makes the node).
const DEVICE: &str = "/dev/skiff-fsnotify";

/// The host folders bind-mounted into running containers and lying in a shared folder, with
/// folders inside another one dropped (a recursive watch on the outer one sees them).
pub fn watched(engine: &Engine, shares: &[PathBuf]) -> Vec<String> {
    let sources = engine.containers.all().into_iter().flat_map(|c| {
        let rec = c.record();
        let live = matches!(rec.state.status, Status::Running | Status::Paused | Status::Restarting);
        rec.mounts
            .into_iter()
            .filter(move |m| live && m.kind == Kind::Bind)
            .map(|m| PathBuf::from(m.source))
            .collect::<Vec<_>>()
    });
    outermost(sources.filter(|p| shares.iter().any(|s| p.starts_with(s))))
}

/// Sorted, deduplicated, without paths inside another of them.
fn outermost(paths: impl Iterator<Item = PathBuf>) -> Vec<String> {
    let all: BTreeSet<PathBuf> = paths.collect();
    let mut kept: Vec<&PathBuf> = Vec::new();
    for p in &all {
        // Sorted order puts a parent before everything inside it.
        if !kept.last().is_some_and(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept.into_iter().map(|p| p.display().to_string()).collect()
}

/// The module's record for one event: `{op u8, flags u8, len1 u16, len2 u16}` + the paths.
fn record(event: &FsEvent) -> Option<Vec<u8>> {
    let (op, dir, p1, p2): (u8, bool, &str, &str) = match event {
        FsEvent::Modified { path } => (1, false, path, ""),
        FsEvent::Attrib { path } => (2, false, path, ""),
        FsEvent::Created { path, dir } => (3, *dir, path, ""),
        FsEvent::Deleted { path, dir } => (4, *dir, path, ""),
        FsEvent::Moved { from, to, dir } => (5, *dir, from, to),
    };
    let ok = |p: &str| p.is_empty() || (p.starts_with('/') && !p.contains('\0'));
    if p1.is_empty() || !ok(p1) || !ok(p2) {
        return None;
    }
    let mut rec = vec![op, u8::from(dir)];
    rec.extend(u16::try_from(p1.len()).ok()?.to_ne_bytes());
    rec.extend(u16::try_from(p2.len()).ok()?.to_ne_bytes());
    rec.extend(p1.as_bytes());
    rec.extend(p2.as_bytes());
    Some(rec)
}

/// The device, opened once.
static DEVICE_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Raises `events` in the guest; returns how many were. Events for paths gone again since the
/// host saw them are skipped; without the module nothing is raised (said once in the log).
pub fn raise(events: &[FsEvent]) -> u32 {
    let mut dev = DEVICE_FILE.lock().unwrap_or_else(|p| p.into_inner());
    if dev.is_none() {
        match std::fs::OpenOptions::new().write(true).open(Path::new(DEVICE)) {
            Ok(f) => *dev = Some(f),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| tracing::warn!(error = %e, "no {DEVICE}: host file changes raise no events"));
                return 0;
            }
        }
    }
    let Some(file) = dev.as_mut() else { return 0 };
    let mut raised = 0;
    for event in events {
        let Some(rec) = record(event) else {
            tracing::debug!(?event, "not a raisable event");
            continue;
        };
        // One record per write(2); the module takes all of it or fails.
        match file.write(&rec) {
            Ok(n) if n == rec.len() => raised += 1,
            Ok(n) => tracing::debug!(?event, n, "event record cut short"),
            Err(e) => tracing::debug!(?event, error = %e, "event not raised"),
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_only_the_outermost_folders() {
        let paths = ["/home/me/app/src", "/home/me/app", "/home/me/other", "/home/me/app", "/home/me/apple"];
        assert_eq!(outermost(paths.iter().map(PathBuf::from)), ["/home/me/app", "/home/me/apple", "/home/me/other"]);
    }

    #[test]
    fn records_have_the_modules_layout() {
        let rec = record(&FsEvent::Moved { from: "/a/x".into(), to: "/a/yy".into(), dir: true });
        let mut want = vec![5u8, 1];
        want.extend(4u16.to_ne_bytes());
        want.extend(5u16.to_ne_bytes());
        want.extend(b"/a/x/a/yy");
        assert_eq!(rec, Some(want));
        assert_eq!(record(&FsEvent::Modified { path: "relative".into() }), None);
        assert_eq!(record(&FsEvent::Deleted { path: "/a\0b".into(), dir: false }), None);
        assert_eq!(record(&FsEvent::Attrib { path: String::new() }), None);
    }
}
