//! When a new image's files reach the disk. A `syncfs` before every image record (what the store
//! did) cost a build or a load more than a second per image on a busy disk, so a record is now
//! written at once, marked with the boot it was written in, and a background thread makes the
//! files durable with one `syncfs` per burst of commits, then clears the mark. Until then the
//! page cache holds the files: an engine killed (even with `kill -9`) and restarted in the same
//! boot finds them whole. Only after the machine itself stopped (another boot id) can they be
//! torn, and recovery then drops a record that still carries the mark, as if its import had
//! never finished.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::digest::Digest;

/// How long a sync waits for more commits to join it (a build's steps, a pull's images).
const GATHER: Duration = Duration::from_millis(100);

/// This boot's id (`None` where the kernel does not say: the store then syncs before each record,
/// as before).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Flushes the filesystem holding `root` (one `syncfs`).
pub fn syncfs(root: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(root)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Digest>,
    closed: bool,
}

/// The background syncer of one store.
#[derive(Debug, Default)]
pub struct Syncer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Clears the marks of the images synced (false: the store is gone, the thread ends).
pub type ClearMarks = Box<dyn Fn(Vec<Digest>) -> bool + Send>;

impl Syncer {
    /// Starts the thread for the store at `root`. It ends when the store closes the syncer (or
    /// `clear` says the store is gone).
    pub fn start(root: PathBuf, clear: ClearMarks) -> Arc<Self> {
        let syncer = Arc::new(Self::default());
        let s2 = syncer.clone();
        let spawned = std::thread::Builder::new().name("store-sync".into()).spawn(move || s2.run(&root, &clear));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "starting the store's syncer");
        }
        syncer
    }

    /// Asks for `id`'s files to be made durable.
    pub fn request(&self, id: Digest) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.pending.push(id);
        self.wake.notify_one();
    }

    /// Stops the thread once what is pending is done.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.wake.notify_one();
    }

    fn next_batch(&self) -> Option<Vec<Digest>> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while q.pending.is_empty() {
            if q.closed {
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        drop(q);
        std::thread::sleep(GATHER);
        Some(std::mem::take(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending))
    }

    fn run(&self, root: &Path, clear: &ClearMarks) {
        while let Some(batch) = self.next_batch() {
            if let Err(e) = syncfs(root) {
                tracing::warn!(error = %e, "syncing the image store; trying again in a second");
                self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending.extend(batch);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            if !clear(batch) {
                return;
            }
        }
    }
}
