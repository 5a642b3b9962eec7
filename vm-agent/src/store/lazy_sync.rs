//! Files that may reach the disk a moment after they are written. A container's record changes
//! at each step of its life (created, running, exited), and a `docker run --rm` paid an fsync of
//! the file and of its directory for each (one directory fsync could take 25 ms on a busy disk).
//! Such records are replaced atomically without waiting ([`super::atomic::replace_json`]): a
//! reader, and an engine restarted in the same boot (even after `kill -9`), sees the old record or
//! the new. A short-lived thread then makes a burst of them durable with one `syncfs`, [`GATHER`]
//! after the first. A machine that stops within that moment comes back with the previous record,
//! which recovery handles as any record it finds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a sync waits for more writes to join it.
pub const GATHER: Duration = Duration::from_millis(50);

/// Deferred `syncfs` of the file system holding one directory.
#[derive(Debug)]
pub struct LazySync {
    dir: PathBuf,
    scheduled: AtomicBool,
}

impl LazySync {
    /// For the file system holding `dir`.
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self { dir, scheduled: AtomicBool::new(false) })
    }

    /// What was written so far reaches the disk within [`GATHER`] plus one `syncfs`.
    pub fn request(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return; // a sync that has not started yet covers this write too
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("lazy-sync".into()).spawn(move || {
            std::thread::sleep(GATHER);
            // Cleared before the sync: a write after this point schedules the next one.
            me.scheduled.store(false, Ordering::SeqCst);
            me.sync_now();
        });
        if spawned.is_err() {
            self.scheduled.store(false, Ordering::SeqCst);
            self.sync_now();
        }
    }

    /// One `syncfs` now.
    pub fn sync_now(&self) {
        if let Err(e) = super::durability::syncfs(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "syncing records to disk");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_requests_schedules_one_sync_and_a_later_one_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LazySync::new(dir.path().to_path_buf());
        s.request();
        assert!(s.scheduled.load(Ordering::SeqCst));
        s.request();
        std::thread::sleep(GATHER * 4);
        assert!(!s.scheduled.load(Ordering::SeqCst), "the sync ran and cleared its flag");
        s.request();
        assert!(s.scheduled.load(Ordering::SeqCst), "a write after the sync schedules another");
    }
}
