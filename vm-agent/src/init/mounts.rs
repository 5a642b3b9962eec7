//! The guest's first mounts, made by PID 1 before anything else runs.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::SetupError;

/// Makes `/` a mount that `pivot_root(2)` accepts inside container namespaces.
///
/// The initramfs is the kernel's rootfs, which has no parent mount, and `pivot_root` refuses to
/// move such a root away (EINVAL). Binding it onto a directory of itself and moving that bind
/// mount over `/` (what `switch_root` does) gives a root with a parent, at no copying cost.
pub fn make_root_pivotable() -> Result<(), SetupError> {
    let staging = Path::new("/.root");
    std::fs::create_dir_all(staging).map_err(|e| SetupError::io("creating /.root", e))?;
    mount(Some("/"), staging, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| SetupError::sys("binding / onto /.root", e))?;
    nix::unistd::chdir(staging).map_err(|e| SetupError::sys("entering /.root", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| SetupError::sys("moving the root bind mount onto /", e))?;
    nix::unistd::chroot(".").map_err(|e| SetupError::sys("chroot into the new root", e))?;
    nix::unistd::chdir("/").map_err(|e| SetupError::sys("chdir /", e))?;
    // The mount point is now a plain empty directory of the new root.
    let _ = std::fs::remove_dir(staging);
    Ok(())
}

/// One mount of the early table.
struct Early {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// The kernel file systems every Linux userland expects, plus pure cgroup v2.
const EARLY: &[Early] = &[
    Early { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: "" },
    Early { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: "" },
    Early { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MsFlags::MS_NOSUID, data: "mode=0755" },
    Early {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "gid=5,mode=0620,ptmxmode=0666",
    },
    Early {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=1777",
    },
    Early {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=0755",
    },
    Early {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=1777",
    },
    Early {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        // favordynmods: moving a process into a cgroup (every container start and exec) does not
        // wait for an RCU grace period (the kernel's cgroup-migration lock favours writers).
        data: "nsdelegate,memory_recursiveprot,favordynmods",
    },
];

/// Mounts the early table and the usual `/dev` links.
pub fn early() -> Result<(), SetupError> {
    for m in EARLY {
        std::fs::create_dir_all(m.target).map_err(|e| SetupError::io(m.target, e))?;
        let data = (!m.data.is_empty()).then_some(m.data);
        let mut mounted = mount(Some(m.source), m.target, Some(m.fstype), m.flags, data);
        if let (Err(nix::errno::Errno::EINVAL), Some(basic)) = (mounted, m.data.strip_suffix(",favordynmods")) {
            // A kernel older than 6.0 has no such option: slower starts, nothing else.
            mounted = mount(Some(m.source), m.target, Some(m.fstype), m.flags, Some(basic));
        }
        mounted.map_err(|e| SetupError::sys(&format!("mounting {} on {}", m.fstype, m.target), e))?;
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    Ok(())
}

/// Points stdout and stderr at `device` (a console that appeared after boot), waiting up to a
/// second for its node.
pub fn console_to(device: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let file = loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOCTTY).open(device) {
            Ok(f) => break f,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => {
                tracing::warn!(device, error = %e, "the console did not appear");
                return;
            }
        }
    };
    for target in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors of this process; `file` stays open until
        // both are done and is then closed, leaving the duplicates.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), target) } < 0 {
            tracing::warn!(device, error = %std::io::Error::last_os_error(), "moving output to the console");
        }
    }
}
