//! Builds a container's root filesystem inside its fresh mount namespace: the overlay root, the
//! spec's mounts (targets resolved inside the root with `openat2(RESOLVE_IN_ROOT)`, so an image's
//! symlinks can never redirect a mount onto the host), device nodes, `pivot_root`, then Docker's
//! masked and read-only paths. Runs only in the container's init child; never in the agent.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Spec;

use super::syscall::Syscall;
use super::LaunchError;

/// One mount to make, parsed from an OCI mount entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    /// Source (device, fs name or host path).
    pub source: String,
    /// Path inside the container.
    pub destination: PathBuf,
    /// Filesystem type (`bind` for bind mounts).
    pub fstype: String,
    /// Mount flags from the options.
    pub flags: MsFlags,
    /// Options the filesystem itself interprets.
    pub data: String,
    /// Whether the target is a file (bind of a file) rather than a directory.
    pub file_target: bool,
}

/// Translates OCI mount options into flags and filesystem data.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "private" | "rprivate" | "relatime" | "" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

/// The mounts of `spec` other than the root, in order.
pub fn plan(spec: &Spec) -> Vec<MountOp> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        if m.destination() == Path::new("/") {
            continue;
        }
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
        let fstype = m.typ().clone().unwrap_or_else(|| "bind".into());
        let source = m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_else(|| fstype.clone());
        let file_target = flags.contains(MsFlags::MS_BIND) && Path::new(&source).is_file();
        out.push(MountOp { source, destination: m.destination().clone(), fstype, flags, data, file_target });
    }
    out
}

/// The overlay mount of the root, from the spec's mount with destination `/`.
fn root_overlay(spec: &Spec) -> Option<(String, String)> {
    let m = spec.mounts().as_deref()?.iter().find(|m| m.destination() == Path::new("/"))?;
    let (_, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
    Some((m.typ().clone().unwrap_or_else(|| "overlay".into()), data))
}

/// Opens (creating as a directory or empty file) `dest` inside `root`, following the image's
/// symlinks as if `root` were `/` (an absolute link restarts at the root, `..` stops there), and
/// creating what is missing where the links point. The final open refuses any symlink, so what is
/// returned is a real directory entry beneath `root`. Returns an `O_PATH` fd to mount onto.
pub fn resolve_in_root(root: &Path, dest: &Path, file_target: bool) -> Result<OwnedFd, LaunchError> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let what = || format!("resolving {}", dest.display());
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| LaunchError::sys(format!("opening rootfs {}", root.display()), e))?;
    let comps = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.to_os_string()),
                std::path::Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    };
    let mut rest: VecDeque<OsString> = comps(dest).into();
    let mut done = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = rest.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let cand = done.join(&c);
        match nix::sys::stat::fstatat(&root_fd, &cand, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                hops += 1;
                if hops > 40 {
                    return Err(LaunchError::sys(what(), nix::errno::Errno::ELOOP));
                }
                let target = nix::fcntl::readlinkat(&root_fd, &cand).map_err(|e| LaunchError::sys(what(), e))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for t in comps(&target).into_iter().rev() {
                    rest.push_front(t);
                }
            }
            Ok(_) => done = cand,
            Err(nix::errno::Errno::ENOENT) => {
                if rest.is_empty() && file_target {
                    nix::fcntl::openat(
                        &root_fd,
                        &cand,
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map_err(|e| LaunchError::sys(format!("creating mount point {}", dest.display()), e))?;
                } else {
                    match nix::sys::stat::mkdirat(&root_fd, &cand, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(LaunchError::sys(format!("creating mount point {}", dest.display()), e)),
                    }
                }
                done = cand;
            }
            Err(e) => return Err(LaunchError::sys(what(), e)),
        }
    }
    let target: &Path = if done.as_os_str().is_empty() { Path::new(".") } else { &done };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(&root_fd, target, how).map_err(|e| LaunchError::sys(what(), e))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Docker's standard device nodes: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
const DEV_LINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
    ("/proc/kcore", "core"),
];

/// Builds the whole root filesystem at `rootfs` and pivots into it.
pub fn setup(sys: &dyn Syscall, spec: &Spec, rootfs: &Path) -> Result<(), LaunchError> {
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
        .map_err(|e| LaunchError::sys("making / private", e))?;
    if let Some((fstype, data)) = root_overlay(spec) {
        sys.mount(Some(&fstype), rootfs, Some(&fstype), MsFlags::empty(), Some(&data))
            .map_err(|e| LaunchError::sys("mounting the container's overlay root", e))?;
    }
    for op in plan(spec) {
        let target_fd = resolve_in_root(rootfs, &op.destination, op.file_target)?;
        let target = fd_path(&target_fd);
        let what = format!("mounting {} on {}", op.source, op.destination.display());
        if op.flags.contains(MsFlags::MS_BIND) {
            let bind_flags = op.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
            sys.mount(Some(&op.source), &target, None, bind_flags, None)
                .map_err(|e| LaunchError::sys(what.clone(), e))?;
            let rest = op.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
            if !rest.is_empty() {
                // The fd opened before the bind still names the directory under it: reopen the
                // target so the remount (read-only, …) applies to the new mount itself.
                let mounted_fd = resolve_in_root(rootfs, &op.destination, op.file_target)?;
                sys.mount(None, &fd_path(&mounted_fd), None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest, None)
                    .map_err(|e| LaunchError::sys(what, e))?;
            }
        } else {
            let data = (!op.data.is_empty()).then_some(op.data.as_str());
            sys.mount(Some(&op.source), &target, Some(&op.fstype), op.flags, data)
                .map_err(|e| LaunchError::sys(what, e))?;
        }
    }
    let dev = rootfs.join("dev");
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        match sys.mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(major, minor)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(LaunchError::sys(format!("creating /dev/{name}"), e)),
        }
        // mknod is subject to the umask; devices must be 0666.
        let _ = nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &p,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        );
    }
    for (target, name) in DEV_LINKS {
        match sys.symlink(target, &dev.join(name)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(LaunchError::sys(format!("creating /dev/{name}"), e)),
        }
    }
    sys.pivot_root(rootfs).map_err(|e| LaunchError::sys("pivot_root", e))?;
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().as_deref().unwrap_or(&[]) {
            mask(sys, Path::new(p))?;
        }
        for p in linux.readonly_paths().as_deref().unwrap_or(&[]) {
            let path = Path::new(p);
            if path.exists() {
                sys.mount(Some(p), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
                    .map_err(|e| LaunchError::sys(format!("read-only {p}"), e))?;
                sys.mount(
                    None,
                    path,
                    None,
                    MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    None,
                )
                .map_err(|e| LaunchError::sys(format!("read-only {p}"), e))?;
            }
        }
    }
    if spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
        sys.mount(None, Path::new("/"), None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None)
            .map_err(|e| LaunchError::sys("remounting / read-only", e))?;
    }
    Ok(())
}

/// Hides `path`: a directory gets an empty read-only tmpfs, a file `/dev/null`.
fn mask(sys: &dyn Syscall, path: &Path) -> Result<(), LaunchError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let r = if meta.is_dir() {
        sys.mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None)
    } else {
        sys.mount(Some("/dev/null"), path, None, MsFlags::MS_BIND, None)
    };
    r.map_err(|e| LaunchError::sys(format!("masking {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = parse_options(&["nosuid".into(), "noexec".into(), "mode=1777".into(), "size=65536k".into()]);
        assert_eq!(f, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(d, "mode=1777,size=65536k");
        let (f, _) = parse_options(&["rbind".into(), "ro".into()]);
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
    }

    #[test]
    fn mount_targets_stay_inside_the_root_even_through_symlinks() {
        let root = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), root.path().join("proc")).expect("hostile symlink");
        let fd = resolve_in_root(root.path(), Path::new("/proc/sys"), false).expect("resolves");
        let real = std::fs::read_link(fd_path(&fd)).expect("fd path");
        assert!(real.starts_with(root.path()), "{} escaped the root", real.display());
        assert_eq!(std::fs::read_dir(outside.path()).expect("outside").count(), 0);
    }
}
