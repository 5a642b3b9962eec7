//! The narrow seam between container setup logic and the kernel (youki's `Syscall` idea): every
//! mount, `pivot_root`, hostname change and device node goes through [`Syscall`], so the rootfs
//! plan is unit-tested with [`RecordingSyscall`] and proven for real by the integration tests.

use std::cell::RefCell;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

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
}

/// Records calls instead of making them (unit tests).
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    /// One line per call.
    pub calls: RefCell<Vec<String>>,
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
        self.calls.borrow_mut().push(format!(
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
        self.calls.borrow_mut().push(format!("umount {}", target.display()));
        Ok(())
    }
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!("pivot_root {}", new_root.display()));
        Ok(())
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!("sethostname {name}"));
        Ok(())
    }
    fn mknod(&self, path: &Path, _kind: SFlag, _mode: Mode, dev: u64) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!("mknod {} {dev}", path.display()));
        Ok(())
    }
    fn symlink(&self, target: &str, path: &Path) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!("symlink {target} {}", path.display()));
        Ok(())
    }
    fn mkdir_all(&self, path: &Path) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!("mkdir {}", path.display()));
        Ok(())
    }
}
