//! Giving deleted space back to the host: the data disk is a sparse file there, and blocks the
//! guest frees stay allocated in it until they are discarded. The trimmer watches the data file
//! system's free space and, once it has grown by [`THRESHOLD`] since the last trim (images,
//! containers or volumes removed), issues `FITRIM`; QEMU (`discard=unmap`) then punches the
//! blocks out of the host's file. Batched rather than the `discard` mount option, which would
//! slow every delete.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How much free space must appear before a trim.
pub const THRESHOLD: u64 = 64 << 20;
/// How often free space is looked at (one `statvfs`).
const INTERVAL: Duration = Duration::from_secs(2);
/// How long after boot the first trim waits.
const BOOT_DELAY: Duration = Duration::from_secs(20);

/// `struct fstrim_range` (linux/fs.h).
#[repr(C)]
#[derive(Debug, Default)]
pub struct FstrimRange {
    pub start: u64,
    pub len: u64,
    pub minlen: u64,
}

nix::ioctl_readwrite!(fitrim, b'X', 121, FstrimRange);

/// Discards every free block of the file system at `mount`; returns the bytes trimmed. The file
/// system is synced first: ext4 hands blocks freed by a deletion back to its allocator (where
/// `FITRIM` finds them) only when the journal transaction that freed them commits.
pub fn trim(mount: &Path) -> std::io::Result<u64> {
    let dir = std::fs::File::open(mount)?;
    nix::unistd::syncfs(&dir).map_err(std::io::Error::from)?;
    let mut range = FstrimRange { start: 0, len: u64::MAX, minlen: 0 };
    // SAFETY: `dir` is an open descriptor for the whole call and `range` is a valid, exclusively
    // borrowed `struct fstrim_range` the kernel reads and updates.
    unsafe { fitrim(dir.as_raw_fd(), &mut range) }.map_err(std::io::Error::from)?;
    Ok(range.len)
}

/// Free bytes of the file system at `mount`.
fn free_bytes(mount: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(mount).ok()?;
    Some(s.blocks_free().saturating_mul(s.fragment_size()))
}

/// Decides when to trim from successive free-space readings.
#[derive(Debug)]
pub struct Trigger {
    /// The least free space seen since the last trim.
    low: u64,
}

impl Trigger {
    pub fn new(free: u64) -> Self {
        Self { low: free }
    }

    /// Whether `free` (the current reading) calls for a trim.
    pub fn observe(&mut self, free: u64) -> bool {
        self.low = self.low.min(free);
        free.saturating_sub(self.low) >= THRESHOLD
    }

    /// A trim happened with `free` bytes free.
    pub fn trimmed(&mut self, free: u64) {
        self.low = free;
    }
}

/// Trims once now if `at_boot` (space freed before this version trimmed, or lost to a crash),
/// then whenever enough space has been freed. Runs for the guest's life.
pub async fn run(mount: PathBuf, at_boot: bool) {
    let once = |mount: PathBuf| async move {
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || trim(&mount)).await {
            Ok(Ok(bytes)) => tracing::info!(
                mib = bytes >> 20,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "trimmed the data disk"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "trimming the data disk"),
            Err(e) => tracing::warn!(error = %e, "trimming the data disk"),
        }
    };
    if at_boot {
        // Off the path of the first requests: the whole disk is looked at once.
        tokio::time::sleep(BOOT_DELAY).await;
        once(mount.clone()).await;
    }
    let mut trigger = Trigger::new(free_bytes(&mount).unwrap_or(0));
    loop {
        tokio::time::sleep(INTERVAL).await;
        let Some(free) = free_bytes(&mount) else { continue };
        if trigger.observe(free) {
            once(mount.clone()).await;
            // The reading from before the trim: space freed while it ran (an image removed just
            // after its container) may lie in block groups it had already passed, and must count
            // towards the next trim.
            trigger.trimmed(free);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_enough_space_is_freed_after_the_low_point() {
        let gib = 1u64 << 30;
        let mut t = Trigger::new(10 * gib);
        assert!(!t.observe(10 * gib));
        // Writing lowers the mark; freeing less than the threshold does nothing.
        assert!(!t.observe(9 * gib));
        assert!(!t.observe(9 * gib + THRESHOLD - 1));
        assert!(t.observe(9 * gib + THRESHOLD));
        t.trimmed(9 * gib + THRESHOLD);
        assert!(!t.observe(9 * gib + THRESHOLD + 1));
        // Freed during that trim: the next reading calls for another.
        assert!(t.observe(9 * gib + 3 * THRESHOLD));
    }
}
