//! How the engine's memory allocator (glibc malloc) holds and gives back memory: an engine that
//! sits idle between bursts should hold what it uses, not what a past burst needed.
//!
//! - Two heaps (arenas) at most: one per worker thread wastes memory on a mostly idle engine.
//! - Fixed thresholds. glibc raises its mmap threshold to the size of any large block freed (up
//!   to 32 MiB) and its trim threshold to twice that; after one big buffer (a long `docker logs`,
//!   a manifest list, a layer's read buffer) an idle engine kept megabytes of freed memory for
//!   good: bench/containers.sh saw it idle at 2.2 or 5 MiB of heap depending on which thread had
//!   served such a request. Fixed, blocks from 128 KiB up are mapped and unmapped on their own,
//!   and a heap gives its free top back past 256 KiB.
//! - `trim` after large transient work (image loads, container exits) returns freed pages in
//!   the middle of the heaps too.

/// Heaps shared by all threads.
const ARENAS: i32 = 2;
/// Blocks of this size and above get their own mapping (glibc's own starting value, kept fixed).
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of a heap beyond this goes back to the kernel.
const TRIM_THRESHOLD: i32 = 256 * 1024;

/// Sets the allocator's parameters; call first thing in `main`, before any thread starts
/// (mallopt is not for concurrent use).
pub fn configure() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc's parameters, and runs before any other thread exists.
    // A rejected value leaves glibc's default in place (return value 0), which is harmless.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns freed heap pages to the kernel after large transient allocations, so the engine's
/// resident memory tracks what it actually holds.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap structures.
    unsafe {
        libc::malloc_trim(0);
    }
}
