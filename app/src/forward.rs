//! The user's Docker socket: every connection to `$SKIFF_HOME/docker.sock` becomes its own vsock
//! stream to the engine, relayed as a plain byte pipe that honours half-close in both directions
//! (so `docker attach`, `exec` and `run -i` behave as on a local socket).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;

use crate::vsock::Vsock;

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0} is in use by another engine; stop it first (or set SKIFF_HOME to another directory)")]
    InUse(PathBuf),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Binds `socket` (mode 0600), replacing a stale socket file left by a previous run but never
/// one that something still answers on.
pub fn bind(socket: &Path) -> Result<UnixListener, ForwardError> {
    let io = |what, source| ForwardError::Io { what, path: socket.to_path_buf(), source };
    if socket.exists() || socket.is_symlink() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(ForwardError::InUse(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(|e| io("removing stale", e))?;
    }
    // Create it with a tight umask so there is no window in which it is world-connectable.
    let listener = {
        // SAFETY: umask only changes this process's file-creation mask; restored right after.
        let old = unsafe { libc::umask(0o177) };
        let l = UnixListener::bind(socket);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        l.map_err(|e| io("binding", e))?
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| io("chmod", e))?;
    Ok(listener)
}

/// Accepts forever, relaying each connection to the guest's `port`.
pub async fn serve(listener: UnixListener, vsock: Arc<Vsock>, port: u32) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept on the docker socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let vsock = vsock.clone();
        tokio::spawn(async move {
            let guest = match vsock.connect(port).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the engine in the VM");
                    return;
                }
            };
            if let Err(e) = skiff_proto::stream::relay(guest, client).await {
                tracing::debug!(error = %e, "docker socket connection ended abruptly");
            }
        });
    }
}
