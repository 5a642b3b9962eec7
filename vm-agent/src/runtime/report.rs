//! The runtime child's report to the engine: a JSON [`child::Report`](super::child::Report) on a
//! Unix stream socket (fd 3 in the child), read to EOF, with the container's root attached
//! (`SCM_RIGHTS`, an `O_PATH` descriptor) after a start.
//!
//! Holding the root keeps the container's overlay mounted after its last process exits, so the
//! exit does not wait for the overlay's unmount, which syncs the whole upper file system (a journal
//! commit and a disk flush on the VM's data disk). The engine lets go of it after the exit or the
//! removal has been answered (`exit.rs`).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The channel: `(engine's end, child's end)`, both close-on-exec.
pub fn channel() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
}

/// In the runtime child: sends `bytes` and, with their first part, `root`. Where the descriptor
/// cannot travel, the report still does (the engine then holds no root).
pub fn send(channel: &OwnedFd, bytes: &[u8], root: Option<&OwnedFd>) {
    let fds: Vec<[RawFd; 1]> = root.map(|r| [r.as_raw_fd()]).into_iter().collect();
    let cmsg: Vec<ControlMessage<'_>> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    let mut sent =
        sendmsg::<()>(channel.as_raw_fd(), &[IoSlice::new(bytes)], &cmsg, MsgFlags::empty(), None).unwrap_or(0);
    while sent < bytes.len() {
        match nix::unistd::write(channel, &bytes[sent..]) {
            Ok(n) if n > 0 => sent += n,
            _ => return,
        }
    }
}

/// In the engine: everything the child sent, up to EOF, and the root if one came. Blocking.
pub fn receive(channel: &OwnedFd) -> (Vec<u8>, Option<OwnedFd>) {
    let mut data = Vec::new();
    let mut root = None;
    let mut buf = [0u8; 4096];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(channel.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) else {
            break;
        };
        let n = msg.bytes;
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    root.get_or_insert(fd);
                }
            }
        }
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    (data, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_arrives_whole_with_the_root_and_without_it() {
        let (engine, child) = channel().unwrap_or_else(|e| panic!("{e}"));
        let root = nix::fcntl::open("/", nix::fcntl::OFlag::O_PATH, nix::sys::stat::Mode::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        // Larger than one read, so the rest follows the descriptor's message.
        let report = vec![b'x'; 10_000];
        let sender = std::thread::spawn(move || {
            send(&child, &report, Some(&root));
            drop(child);
        });
        let (bytes, held) = receive(&engine);
        sender.join().unwrap_or_else(|_| panic!("sender"));
        assert_eq!(bytes.len(), 10_000);
        let held = held.unwrap_or_else(|| panic!("no root arrived"));
        assert_eq!(std::fs::read_link(format!("/proc/self/fd/{}", held.as_raw_fd())).ok(), Some("/".into()));

        let (engine, child) = channel().unwrap_or_else(|e| panic!("{e}"));
        send(&child, b"{}", None);
        drop(child);
        let (bytes, held) = receive(&engine);
        assert_eq!(bytes, b"{}");
        assert!(held.is_none());
    }
}
