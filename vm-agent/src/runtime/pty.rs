//! Terminals for `docker run -t`: the pty is allocated inside the container's own devpts instance
//! (so `tty` and `/dev/pts/N` make sense there) and its controlling side is passed back to the agent
//! over a Unix socket with `SCM_RIGHTS`, as runc's console socket does.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::LaunchError;

/// The descriptor number the console socket has in `skiff-agent child`.
pub const CONSOLE_SOCKET_FD: RawFd = 4;

/// In the container (after `pivot_root`): opens a pty from `/dev/ptmx`, makes its other side our
/// stdio and controlling terminal, and sends the controlling side to the agent.
pub fn setup_in_container(console: &OwnedFd, rows: u16, cols: u16) -> Result<(), LaunchError> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| LaunchError::sys("opening /dev/ptmx", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int we own; TIOCGPTPEER returns a new descriptor for the peer.
    let peer = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(LaunchError::sys("unlocking the pty", nix::errno::Errno::last()));
        }
        let fd = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return Err(LaunchError::sys("opening the pty peer", nix::errno::Errno::last()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    if rows > 0 && cols > 0 {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { libc::dup2(peer.as_raw_fd(), target) } < 0 {
            return Err(LaunchError::sys("attaching the pty", nix::errno::Errno::last()));
        }
    }
    // SAFETY: TIOCSCTTY on our new stdin (we are a session leader).
    unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(console.as_raw_fd(), &[IoSlice::new(b"p")], &cmsg, MsgFlags::empty(), None)
        .map_err(|e| LaunchError::sys("sending the pty to the engine", e))?;
    Ok(())
}

/// In the agent: receives the pty's controlling side (blocking).
pub fn receive(console: &OwnedFd) -> Result<OwnedFd, LaunchError> {
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(console.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| LaunchError::sys("receiving the pty", e))?;
    for c in msg.cmsgs().map_err(|e| LaunchError::sys("receiving the pty", e))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(LaunchError::other("the container did not send its terminal"))
}
