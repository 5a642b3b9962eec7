//! A container's network namespace, created by the engine before the container starts and held
//! open by a descriptor: the runtime joins it by path, the engine configures it from a thread
//! that enters it. Nothing is mounted, so nothing can leak: the namespace (and the container
//! end of every veth in it, which takes the host end with it) goes away with the last user.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
}

fn thread_ns() -> std::io::Result<OwnedFd> {
    open("/proc/thread-self/ns/net", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(std::io::Error::from)
}

impl Netns {
    /// A new, empty namespace (made on a short-lived thread, so the engine's threads stay put).
    pub fn create() -> std::io::Result<Self> {
        std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET)?;
            Ok(Self { fd: thread_ns()? })
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    }

    /// The namespace of a running process (`--network container:ID`).
    pub fn of_pid(pid: i32) -> std::io::Result<Self> {
        let path = format!("/proc/{pid}/ns/net");
        let fd = open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self { fd })
    }

    /// Opens the namespace at `path` (e.g. one [`Self::path`] returned).
    pub fn at(path: &std::path::Path) -> std::io::Result<Self> {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self { fd })
    }

    /// A path other processes (the runtime) can open to join it while this handle lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd()))
    }

    /// The raw descriptor (for netlink's "move this link into that namespace").
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Runs `f` on a fresh thread inside the namespace. Sockets `f` creates belong to the
    /// namespace for their whole life, wherever they are used afterwards.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
        let fd = self.fd.try_clone()?;
        std::thread::spawn(move || {
            setns(&fd, CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    }
}
