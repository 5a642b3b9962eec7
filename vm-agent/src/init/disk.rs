//! The persistent data disk (virtio-blk): formatted on first boot, checked and mounted on every
//! boot, grown when the host made it bigger, unmounted cleanly at power-off.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

use super::SetupError;

/// Where the data disk is mounted; the engine's state lives below it.
pub const MOUNT_POINT: &str = "/var/lib/skiff";
const LABEL: &str = "skiff-data";

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// An empty disk was formatted.
    Formatted,
    /// The file system was clean (or its journal replayed) and is mounted.
    Mounted,
    /// `e2fsck` repaired errors before mounting.
    Repaired,
}

/// What the first blocks of the device hold.
#[derive(Debug, PartialEq, Eq)]
enum Content {
    Empty,
    Ext4,
    Unknown,
}

fn probe(head: &[u8]) -> Content {
    // The ext2/3/4 superblock starts at byte 1024; its magic 0xEF53 sits at offset 56.
    if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF {
        Content::Ext4
    } else if head.iter().all(|b| *b == 0) {
        Content::Empty
    } else {
        Content::Unknown
    }
}

/// Waits for `dev` (virtio-blk probes asynchronously), then formats, checks and mounts it.
pub fn prepare(dev: &Path) -> Result<Prepared, SetupError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dev.exists() {
        if Instant::now() > deadline {
            return Err(SetupError::Disk(format!(
                "{} did not appear within 10 s (no data disk attached?)",
                dev.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut head = vec![0u8; 64 * 1024];
    std::fs::File::open(dev)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| SetupError::io(&format!("reading {}", dev.display()), e))?;
    let outcome = match probe(&head) {
        Content::Empty => {
            tracing::info!(device = %dev.display(), "formatting the new data disk (ext4)");
            run(Command::new("/sbin/mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", LABEL, "-m", "0"])
                .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
                .arg(dev))?;
            Prepared::Formatted
        }
        Content::Ext4 if cleanly_unmounted(&head) => Prepared::Mounted,
        Content::Ext4 => check(dev)?,
        Content::Unknown => {
            return Err(SetupError::Disk(format!(
                "{} holds something that is not an ext4 file system; refusing to format it",
                dev.display()
            )))
        }
    };
    std::fs::create_dir_all(MOUNT_POINT).map_err(|e| SetupError::io(MOUNT_POINT, e))?;
    mount(Some(dev), MOUNT_POINT, Some("ext4"), MsFlags::MS_NOATIME, None::<&str>)
        .map_err(|e| SetupError::sys(&format!("mounting {} on {MOUNT_POINT}", dev.display()), e))?;
    grow_if_needed(dev)?;
    Ok(outcome)
}

/// The superblock says the file system was unmounted (or remounted read-only) cleanly, has no
/// recorded errors and no journal to replay: what `e2fsck -p` checks before skipping a clean file
/// system, read without starting a process.
fn cleanly_unmounted(head: &[u8]) -> bool {
    const SB: usize = 1024;
    let u16_at = |off: usize| u16::from_le_bytes([head[SB + off], head[SB + off + 1]]);
    let u32_at =
        |off: usize| u32::from_le_bytes([head[SB + off], head[SB + off + 1], head[SB + off + 2], head[SB + off + 3]]);
    const VALID_FS: u16 = 1;
    const ERROR_FS: u16 = 2;
    const INCOMPAT_RECOVER: u32 = 0x4;
    let state = u16_at(58);
    head.len() >= SB + 1024 && state & VALID_FS != 0 && state & ERROR_FS == 0 && u32_at(96) & INCOMPAT_RECOVER == 0
}

/// `e2fsck -p` (replays the journal after a crash, fixes what is safe); `-y` if that is not enough.
fn check(dev: &Path) -> Result<Prepared, SetupError> {
    let code = status(Command::new("/sbin/e2fsck").arg("-p").arg(dev))?;
    match code {
        0 => Ok(Prepared::Mounted),
        1 | 2 => {
            tracing::warn!(device = %dev.display(), "e2fsck fixed the data disk's file system");
            Ok(Prepared::Repaired)
        }
        _ => {
            tracing::warn!(device = %dev.display(), code, "e2fsck -p could not fix everything; running e2fsck -y");
            match status(Command::new("/sbin/e2fsck").arg("-y").arg(dev))? {
                0..=3 => Ok(Prepared::Repaired),
                code => Err(SetupError::Disk(format!(
                    "the data disk's file system has errors e2fsck cannot repair (exit code {code}); \
                     `skiff delete --force` starts over with an empty disk"
                ))),
            }
        }
    }
}

/// Grows the mounted file system when the host enlarged the disk (`skiff start --disk`).
fn grow_if_needed(dev: &Path) -> Result<(), SetupError> {
    let name = dev.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let fs = nix::sys::statvfs::statvfs(MOUNT_POINT).map_err(|e| SetupError::sys("statvfs", e))?;
    let fs_bytes = fs.blocks() * fs.fragment_size();
    // The file system is a few percent smaller than its device (metadata): grow only for real gains.
    if sectors * 512 > fs_bytes + fs_bytes / 10 + (256 << 20) {
        tracing::info!(device = %dev.display(), from = fs_bytes, to = sectors * 512, "growing the data disk's file system");
        run(Command::new("/sbin/resize2fs").arg(dev))?;
    }
    Ok(())
}

/// Flushes the data disk and leaves it clean: unmounted, or remounted read-only while the engine
/// (which is about to power off with the VM) still holds files open on it. Either way ext4
/// commits its journal and marks the file system clean, so the next boot needs no recovery.
pub fn unmount() {
    nix::unistd::sync();
    if nix::mount::umount2(MOUNT_POINT, nix::mount::MntFlags::empty()).is_err() {
        let _ = mount(None::<&str>, MOUNT_POINT, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
            .map_err(|e| tracing::warn!(error = %e, "could not remount the data disk read-only"));
    }
    nix::unistd::sync();
}

fn status(cmd: &mut Command) -> Result<i32, SetupError> {
    let out = cmd.output().map_err(|e| SetupError::io(&format!("running {cmd:?}"), e))?;
    if !out.stderr.is_empty() {
        tracing::info!(command = ?cmd, output = %String::from_utf8_lossy(&out.stderr).trim(), "disk tool");
    }
    Ok(out.status.code().unwrap_or(128))
}

/// Runs `cmd` and fails unless it exits 0.
fn run(cmd: &mut Command) -> Result<(), SetupError> {
    match status(cmd)? {
        0 => Ok(()),
        code => Err(SetupError::Disk(format!("{cmd:?} failed with exit code {code}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clean_superblock_skips_the_check() {
        let mut head = vec![0u8; 4096];
        head[1024 + 58] = 1; // s_state: valid
        assert!(cleanly_unmounted(&head));
        head[1024 + 58] = 0; // mounted, not cleanly unmounted
        assert!(!cleanly_unmounted(&head));
        head[1024 + 58] = 3; // valid, but errors recorded
        assert!(!cleanly_unmounted(&head));
        head[1024 + 58] = 1;
        head[1024 + 96] = 0x4; // journal needs recovery
        assert!(!cleanly_unmounted(&head));
    }

    #[test]
    fn empty_ext4_and_foreign_disks_are_told_apart() {
        let mut head = vec![0u8; 4096];
        assert_eq!(probe(&head), Content::Empty);
        head[1080] = 0x53;
        head[1081] = 0xEF;
        assert_eq!(probe(&head), Content::Ext4);
        head[1081] = 0;
        assert_eq!(probe(&head), Content::Unknown);
    }
}
