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
