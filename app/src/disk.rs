//! The VM's data disk on the host: a sparse raw file, created on first start and grown (never
//! shrunk) when `--disk` asks for more; the guest grows its file system to match.

use std::path::Path;

/// A disk that cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error(
        "only {free_mib} MiB are free on the file system holding {path}; Skiff needs at least {need_mib} MiB \
         to start (free some space or set SKIFF_HOME elsewhere)"
    )]
    HostFull { path: String, free_mib: u64, need_mib: u64 },
}

/// Space the VM needs free on the host to boot and write its first data.
pub const MIN_FREE: u64 = 256 << 20;

/// Creates or grows `path` to `gib` GiB (sparse: it only takes what the guest writes).
pub fn ensure(path: &Path, gib: u32) -> Result<(), DiskError> {
    let io = |what, source| DiskError::Io { what, path: path.display().to_string(), source };
    if let (Some(dir), Some(free)) = (path.parent(), path.parent().and_then(free_bytes)) {
        if free < MIN_FREE {
            return Err(DiskError::HostFull {
                path: dir.display().to_string(),
                free_mib: free >> 20,
                need_mib: MIN_FREE >> 20,
            });
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io("opening", e))?;
    let want = u64::from(gib) << 30;
    let have = file.metadata().map_err(|e| io("reading", e))?.len();
    if have < want {
        file.set_len(want).map_err(|e| io("sizing", e))?;
        if have > 0 {
            tracing::info!(from_gib = have >> 30, to_gib = gib, "data disk grown");
        }
    }
    Ok(())
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    // The field types differ between Linux (u64) and macOS (u32).
    #[allow(clippy::useless_conversion)]
    nix::sys::statvfs::statvfs(path).ok().map(|s| u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
}

/// The bytes `path` takes on its file system (a sparse file: what was written and not discarded).
pub fn allocated_bytes(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_sparse_and_only_grown() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let disk = dir.path().join("disk.raw");
        ensure(&disk, 2)?;
        assert_eq!(std::fs::metadata(&disk)?.len(), 2 << 30);
        assert!(allocated_bytes(&disk).is_some_and(|b| b < 1 << 20), "sparse");
        ensure(&disk, 3)?;
        assert_eq!(std::fs::metadata(&disk)?.len(), 3 << 30);
        ensure(&disk, 1)?;
        assert_eq!(std::fs::metadata(&disk)?.len(), 3 << 30);
        Ok(())
    }
}
