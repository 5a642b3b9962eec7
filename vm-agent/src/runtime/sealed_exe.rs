//! The agent's own binary as a sealed, anonymous in-memory copy: what every process that enters a
//! container (the runtime child, its exec twin, the `--init` process) executes.
//!
//! Executing `/proc/self/exe` would put the host's binary inside the container: its root could
//! open `/proc/PID/exe` of that process and, once nothing executes the file any more, write
//! through the handle — code execution as host root at the next start (CVE-2019-5736, which runc
//! closed the same way). A memfd with write, grow, shrink and seal seals cannot be changed by
//! anyone, and it is not a path on any file system.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::LaunchError;

static SEALED: OnceLock<Result<OwnedFd, String>> = OnceLock::new();

/// The seals that make the copy immutable.
pub const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// The sealed copy, made on first use and kept for the engine's life (close-on-exec: no
/// container process inherits it).
pub fn fd() -> Result<BorrowedFd<'static>, LaunchError> {
    match SEALED.get_or_init(|| copy_sealed("/proc/self/exe").map_err(|e| e.to_string())) {
        Ok(fd) => Ok(fd.as_fd()),
        Err(e) => Err(LaunchError::other(format!("sealing a copy of the engine binary: {e}"))),
    }
}

/// The path that executes the sealed copy (valid in this process and in its children until exec).
pub fn exec_path() -> Result<PathBuf, LaunchError> {
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd()?.as_raw_fd())))
}

/// Copies `source` into a new memfd and seals it.
pub fn copy_sealed(source: &str) -> std::io::Result<OwnedFd> {
    // MFD_EXEC (Linux 6.3+) asks for an executable memfd where `vm.memfd_noexec` would make
    // it non-executable; older kernels reject the flag, and every memfd is executable there.
    const MFD_EXEC: libc::c_uint = 0x10;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let fd = match memfd(base | MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => memfd(base)?,
        other => other?,
    };
    let mut src = File::open(source)?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    // SAFETY: fcntl on a descriptor we own, integer argument.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn memfd(flags: libc::c_uint) -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; the result is a new descriptor we own.
    let fd = unsafe { libc::memfd_create(c"skiff-agent".as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_copy_is_sealed_against_every_change() -> std::io::Result<()> {
        let fd = copy_sealed("/proc/self/exe")?;
        // SAFETY: fcntl on a descriptor we own.
        let got = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(got, SEALS);
        assert_eq!(
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))?.len(),
            std::fs::metadata("/proc/self/exe")?.len()
        );
        // Writing through a fresh handle (what a container would try via /proc/PID/exe) fails.
        let mut reopened = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let err = reopened.write_all(b"\x7fELF overwritten").err().map(|e| e.raw_os_error());
        assert_eq!(err, Some(Some(libc::EPERM)));
        assert!(reopened.set_len(0).is_err());
        Ok(())
    }
}
