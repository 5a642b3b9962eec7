//! Host folders shared over virtio-fs, mounted in the guest at the same absolute path as on the
//! host, so `docker run -v "$PWD":/app` needs no translation.

use std::path::PathBuf;
use std::sync::OnceLock;

use nix::mount::{mount, MsFlags};

use super::SetupError;

static MOUNTED: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// The host folders mounted in this guest (empty natively: there every host path exists).
pub fn mounted() -> &'static [PathBuf] {
    MOUNTED.get().map(Vec::as_slice).unwrap_or_default()
}

/// Mounts each `(tag, path)`; a share that fails is logged and skipped (the rest of the engine
/// works without it, and bind mounts below it then fail with a clear message).
pub fn mount_all(shares: &[(String, String)]) -> Result<(), SetupError> {
    let mut done = Vec::new();
    for (tag, path) in shares {
        if let Err(e) = std::fs::create_dir_all(path) {
            tracing::error!(tag, path, error = %e, "cannot create the share's mount point");
            continue;
        }
        match mount(Some(tag.as_str()), path.as_str(), Some("virtiofs"), MsFlags::MS_NODEV, None::<&str>) {
            Ok(()) => {
                tracing::info!(tag, path, "host folder shared");
                done.push(PathBuf::from(path));
            }
            Err(e) => tracing::error!(tag, path, error = %e, "cannot mount the host folder"),
        }
    }
    MOUNTED.set(done).map_err(|_| SetupError::Disk("shares mounted twice".into()))
}

/// Where Rosetta's share is mounted (read-only; its `rosetta` binary is the amd64 translator).
pub const ROSETTA_DIR: &str = "/run/skiff/rosetta";

/// Mounts Apple's Rosetta share (virtio-fs `tag`) at [`ROSETTA_DIR`]; `None` (logged) when it
/// cannot be, and amd64 images then run under QEMU.
pub fn mount_rosetta(tag: &str) -> Option<PathBuf> {
    if let Err(e) = std::fs::create_dir_all(ROSETTA_DIR) {
        tracing::warn!(error = %e, "cannot create Rosetta's mount point");
        return None;
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    match mount(Some(tag), ROSETTA_DIR, Some("virtiofs"), flags, None::<&str>) {
        Ok(()) => Some(PathBuf::from(ROSETTA_DIR)),
        Err(e) => {
            tracing::warn!(tag, error = %e, "cannot mount the Rosetta share: amd64 images run under QEMU");
            None
        }
    }
}
