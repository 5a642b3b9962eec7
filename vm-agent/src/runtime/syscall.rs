//! The narrow seam between the runtime's child init and the kernel (youki's `Syscall` idea): every
//! step that sets a container up (cgroup join, namespaces, mounts, `pivot_root`, hostname, identity,
//! capabilities, seccomp, `execve`) goes through [`Syscall`], so the whole sequence is unit-tested
//! with [`RecordingSyscall`] without root, and proven for real by the integration tests.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxCapabilities, Spec};

use super::LaunchError;

/// What a path holds, as the executable lookup needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A regular file with an execute bit.
    Executable,
    /// Anything else (a file without execute bits, a device…).
    Other,
}

/// Kernel operations used while building a container's root filesystem.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// `pivot_root(new_root, new_root)` followed by a lazy unmount of the old root.
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// `mknod(2)`.
    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()>;
    /// `symlink(2)`.
    fn symlink(&self, target: &str, path: &Path) -> nix::Result<()>;
    /// `mkdir -p` (inside the new root only; callers pass paths they resolved safely).
    fn mkdir_all(&self, path: &Path) -> nix::Result<()>;
    /// Writes `data` into an existing file (a cgroup's `cgroup.procs`).
    fn write_file(&self, path: &Path, data: &str) -> std::io::Result<()>;
    /// Reads a text file (the container's `/etc/passwd` and `/etc/group`).
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
    /// What `path` is (`None`: nothing there).
    fn file_kind(&self, path: &Path) -> Option<FileKind>;
    /// Joins the namespace at `path` (`setns(2)`; `kind` empty: whatever it is).
    fn setns(&self, path: &Path, kind: CloneFlags) -> nix::Result<()>;
    /// `unshare(2)`.
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// `setsid(2)`.
    fn setsid(&self) -> nix::Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// `setgroups(2)`.
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()>;
    /// `setresgid(gid, gid, gid)`.
    fn setresgid(&self, gid: u32) -> nix::Result<()>;
    /// `setresuid(uid, uid, uid)`.
    fn setresuid(&self, uid: u32) -> nix::Result<()>;
    /// Before the user switch: the bounding set reduced; a non-root `uid` keeps its permitted set
    /// across `setuid`.
    fn prepare_capabilities(&self, caps: Option<&LinuxCapabilities>, uid: u32) -> Result<(), LaunchError>;
    /// After the user switch: the effective, permitted, inheritable and ambient sets.
    fn apply_capabilities(&self, caps: Option<&LinuxCapabilities>) -> Result<(), LaunchError>;
    /// `PR_SET_NO_NEW_PRIVS`.
    fn set_no_new_privs(&self) -> nix::Result<()>;
    /// Installs the spec's seccomp filters (see `seccomp::apply`).
    fn apply_seccomp(&self, spec: &Spec, no_new_privs: bool) -> Result<(), LaunchError>;
    /// The hard limit of an rlimit this process has.
    fn hard_rlimit(&self, resource: libc::__rlimit_resource_t) -> u64;
    /// `setrlimit(2)`.
    fn setrlimit(&self, resource: libc::__rlimit_resource_t, soft: u64, hard: u64);
    /// Brings `lo` up in this (new) network namespace.
    fn loopback_up(&self);
    /// Blocks until the engine releases the container's command (its network is wired), and
    /// lets go of the go pipe; EOF on it means the start was abandoned.
    fn wait_for_release(&self) -> Result<(), LaunchError>;
    /// With a terminal: the pty made inside the container becomes stdio and goes to the engine
    /// over the console socket.
    fn setup_terminal(&self, rows: u16, cols: u16) -> Result<(), LaunchError>;
    /// Marks every descriptor from `first` on close-on-exec.
    fn close_on_exec_from(&self, first: u32);
    /// `execve(2)`: returns only on failure.
    fn execve(&self, path: &CStr, args: &[CString], env: &[CString]) -> nix::errno::Errno;
}

/// The real kernel.
#[derive(Debug, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, mode, dev)
    }

    fn symlink(&self, target: &str, path: &Path) -> nix::Result<()> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, path)
    }

    fn mkdir_all(&self, path: &Path) -> nix::Result<()> {
        std::fs::create_dir_all(path).map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn write_file(&self, path: &Path, data: &str) -> std::io::Result<()> {
        std::fs::write(path, data)
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() {
            FileKind::Directory
        } else if m.is_file() && m.permissions().mode() & 0o111 != 0 {
            FileKind::Executable
        } else {
            FileKind::Other
        })
    }

    fn setns(&self, path: &Path, kind: CloneFlags) -> nix::Result<()> {
        let fd = nix::fcntl::open(path, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())?;
        nix::sched::setns(&fd, kind)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn setsid(&self) -> nix::Result<()> {
        nix::unistd::setsid().map(drop)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        let gids: Vec<nix::unistd::Gid> = gids.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids)
    }

    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        let g = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }

    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        let u = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }

    fn prepare_capabilities(&self, caps: Option<&LinuxCapabilities>, uid: u32) -> Result<(), LaunchError> {
        super::capabilities::prepare(caps, uid)
    }

    fn apply_capabilities(&self, caps: Option<&LinuxCapabilities>) -> Result<(), LaunchError> {
        super::capabilities::apply(caps)
    }

    fn set_no_new_privs(&self) -> nix::Result<()> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(nix::errno::Errno::last());
        }
        Ok(())
    }

    fn apply_seccomp(&self, spec: &Spec, no_new_privs: bool) -> Result<(), LaunchError> {
        super::seccomp::apply(spec, no_new_privs)
    }

    fn hard_rlimit(&self, resource: libc::__rlimit_resource_t) -> u64 {
        let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        unsafe { libc::getrlimit(resource, &mut cur) };
        cur.rlim_max
    }

    fn setrlimit(&self, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: setrlimit reads the struct we own.
        unsafe { libc::setrlimit(resource, &lim) };
    }

    fn loopback_up(&self) {
        // SAFETY: plain socket + ioctl on a zeroed ifreq naming "lo"; the fd is closed by OwnedFd.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return;
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut req: libc::ifreq = std::mem::zeroed();
            req.ifr_name[0] = b'l' as libc::c_char;
            req.ifr_name[1] = b'o' as libc::c_char;
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) == 0 {
                req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
                libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req);
            }
        }
    }

    fn wait_for_release(&self) -> Result<(), LaunchError> {
        // SAFETY: the runtime child is started with the go pipe's read end on GO_FD and passes it
        // on to this process (its fork); nothing here owns it otherwise, and it closes below.
        let go = unsafe { OwnedFd::from_raw_fd(super::child::GO_FD) };
        let mut byte = [0u8; 1];
        match nix::unistd::read(&go, &mut byte) {
            Ok(1) => Ok(()),
            _ => Err(LaunchError::other("the start was abandoned before the container's command ran")),
        }
    }

    fn setup_terminal(&self, rows: u16, cols: u16) -> Result<(), LaunchError> {
        // SAFETY: the agent starts init with the console socket on this descriptor when the
        // process has a terminal; nothing else owns it.
        let console = unsafe { OwnedFd::from_raw_fd(super::pty::CONSOLE_SOCKET_FD) };
        super::pty::setup_in_container(&console, rows, cols)
    }

    fn close_on_exec_from(&self, first: u32) {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors; no memory involved.
        unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    }

    fn execve(&self, path: &CStr, args: &[CString], env: &[CString]) -> nix::errno::Errno {
        nix::unistd::execve(path, args, env).err().unwrap_or(nix::errno::Errno::UnknownErrno)
    }
}

/// Records calls instead of making them (unit tests): one line per call. Files it is asked to
/// read come from `files`; `execve` fails with ENOENT (the test then sees where the sequence ended).
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    /// One line per call.
    pub calls: RefCell<Vec<String>>,
    /// Contents of the files `read_file` may read; every path not listed reads as missing.
    pub files: std::collections::HashMap<std::path::PathBuf, String>,
    /// Paths `file_kind` reports as executables.
    pub executables: Vec<std::path::PathBuf>,
}

impl RecordingSyscall {
    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(format!(
            "mount {} {} {} {:?} {}",
            source.unwrap_or("-"),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ));
        Ok(())
    }
    fn umount2(&self, target: &Path, _flags: MntFlags) -> nix::Result<()> {
        self.record(format!("umount {}", target.display()));
        Ok(())
    }
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        self.record(format!("pivot_root {}", new_root.display()));
        Ok(())
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(format!("sethostname {name}"));
        Ok(())
    }
    fn mknod(&self, path: &Path, _kind: SFlag, _mode: Mode, dev: u64) -> nix::Result<()> {
        self.record(format!("mknod {} {dev}", path.display()));
        Ok(())
    }
    fn symlink(&self, target: &str, path: &Path) -> nix::Result<()> {
        self.record(format!("symlink {target} {}", path.display()));
        Ok(())
    }
    fn mkdir_all(&self, path: &Path) -> nix::Result<()> {
        self.record(format!("mkdir {}", path.display()));
        Ok(())
    }
    fn write_file(&self, path: &Path, data: &str) -> std::io::Result<()> {
        self.record(format!("write {} {data}", path.display()));
        Ok(())
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        self.executables.iter().any(|p| p == path).then_some(FileKind::Executable)
    }
    fn setns(&self, path: &Path, kind: CloneFlags) -> nix::Result<()> {
        self.record(format!("setns {} {kind:?}", path.display()));
        Ok(())
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(format!("unshare {flags:?}"));
        Ok(())
    }
    fn setsid(&self) -> nix::Result<()> {
        self.record("setsid".into());
        Ok(())
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record(format!("chdir {}", path.display()));
        Ok(())
    }
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        self.record(format!("setgroups {gids:?}"));
        Ok(())
    }
    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        self.record(format!("setresgid {gid}"));
        Ok(())
    }
    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        self.record(format!("setresuid {uid}"));
        Ok(())
    }
    fn prepare_capabilities(&self, caps: Option<&LinuxCapabilities>, uid: u32) -> Result<(), LaunchError> {
        self.record(format!("prepare_capabilities bounding={} uid={uid}", cap_count(caps, |c| c.bounding())));
        Ok(())
    }
    fn apply_capabilities(&self, caps: Option<&LinuxCapabilities>) -> Result<(), LaunchError> {
        self.record(format!("apply_capabilities effective={}", cap_count(caps, |c| c.effective())));
        Ok(())
    }
    fn set_no_new_privs(&self) -> nix::Result<()> {
        self.record("no_new_privs".into());
        Ok(())
    }
    fn apply_seccomp(&self, _spec: &Spec, no_new_privs: bool) -> Result<(), LaunchError> {
        self.record(format!("seccomp no_new_privs={no_new_privs}"));
        Ok(())
    }
    fn hard_rlimit(&self, _resource: libc::__rlimit_resource_t) -> u64 {
        4096
    }
    fn setrlimit(&self, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
        self.record(format!("setrlimit {resource} {soft} {hard}"));
    }
    fn loopback_up(&self) {
        self.record("loopback_up".into());
    }
    fn wait_for_release(&self) -> Result<(), LaunchError> {
        self.record("wait_for_release".into());
        Ok(())
    }
    fn setup_terminal(&self, rows: u16, cols: u16) -> Result<(), LaunchError> {
        self.record(format!("setup_terminal {rows}x{cols}"));
        Ok(())
    }
    fn close_on_exec_from(&self, first: u32) {
        self.record(format!("close_on_exec_from {first}"));
    }
    fn execve(&self, path: &CStr, args: &[CString], _env: &[CString]) -> nix::errno::Errno {
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        self.record(format!("execve {} {}", path.to_string_lossy(), args.join(" ")));
        nix::errno::Errno::ENOENT
    }
}

/// How many capabilities a set of the spec names (for the recording).
fn cap_count(
    caps: Option<&LinuxCapabilities>,
    set: impl Fn(&LinuxCapabilities) -> &Option<oci_spec::runtime::Capabilities>,
) -> usize {
    caps.and_then(|c| set(c).as_ref().map(|s| s.len())).unwrap_or(0)
}
