//! A container's filesystem from the outside: `docker cp` both ways, `export`, `diff`.
//!
//! Paths are resolved inside the container's root by the kernel (`openat2(RESOLVE_IN_ROOT)` for the
//! parent, the last component never followed), and trees are walked through directory fds opened
//! with `O_NOFOLLOW`: a process in the container swapping a directory for a symlink mid-copy cannot
//! make us read or write outside the container.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use serde_json::json;

use super::Container;
use crate::engine::{Engine, EngineError};

/// Where the container's root is reachable, and what to undo afterwards.
pub struct RootAccess {
    path: PathBuf,
    mounted: bool,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for RootAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootAccess").field("path", &self.path).field("mounted", &self.mounted).finish()
    }
}

impl RootAccess {
    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RootAccess {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Gives access to the container's root: through its own mount namespace while it runs
/// (`/proc/PID/root`, with its volumes and tmpfs), else by mounting its overlay for the duration.
pub async fn access(engine: &Engine, c: &Arc<Container>) -> Result<RootAccess, EngineError> {
    let rec = c.record();
    if c.is_running() {
        return Ok(RootAccess {
            path: PathBuf::from(format!("/proc/{}/root", rec.state.pid)),
            mounted: false,
            _guard: None,
        });
    }
    let guard = c.op_lock().await;
    let image = engine
        .store
        .by_id(&rec.image_id)
        .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image)))?;
    let dir = c.dir();
    let lower = c.prepare_layers(engine, &image)?;
    let data = super::spec::overlay_data(&lower, dir);
    let target = dir.join("rootfs");
    nix::mount::mount(Some("overlay"), &target, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str()))
        .map_err(|e| EngineError::Internal(format!("mounting the container's filesystem: {e}")))?;
    // The access unmounts the whole tree (lazily) when dropped, its volumes included.
    let access = RootAccess { path: target, mounted: true, _guard: Some(guard) };
    mount_volumes(access.path(), &rec.mounts)?;
    Ok(access)
}

/// A stopped container's volumes and bind mounts, bind-mounted onto its mounted root (parents
/// before children), so `docker cp` sees what the container sees. Each mount point is resolved
/// inside the root by the kernel; a mount point the container never had is skipped.
fn mount_volumes(root: &Path, mounts: &[super::mounts::MountRecord]) -> Result<(), EngineError> {
    use nix::mount::MsFlags;
    let mut binds: Vec<&super::mounts::MountRecord> =
        mounts.iter().filter(|m| m.kind != super::mounts::Kind::Tmpfs && Path::new(&m.source).exists()).collect();
    binds.sort_by_key(|m| Path::new(&m.destination).components().count());
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::Internal(format!("opening container root: {e}")))?;
    for m in binds {
        let rel = Path::new(m.destination.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            continue;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // A mount point the image lacks (a container that never ran) is made, as the runtime
        // makes it at start, so the copy lands in the volume.
        let file_target = !Path::new(&m.source).is_dir();
        let Ok(point) = crate::runtime::rootfs::resolve_in_root(root, Path::new(&m.destination), file_target) else {
            continue;
        };
        let at = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&point)));
        let fail =
            |e: nix::errno::Errno| EngineError::Internal(format!("mounting {} for the copy: {e}", m.destination));
        nix::mount::mount(Some(m.source.as_str()), &at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(fail)?;
        if m.read_only {
            // Opened again: now the bind mount is what the path reaches.
            let top = openat2(&root_fd, rel, how).map_err(fail)?;
            let at = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&top)));
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            nix::mount::mount(None::<&str>, &at, None::<&str>, flags, None::<&str>).map_err(fail)?;
        }
    }
    Ok(())
}

fn bad_path(p: &str) -> EngineError {
    EngineError::NotFound(format!("Could not find the file {p} in container"))
}

/// Opens the parent of `path` inside `root` (following the container's symlinks within it) and
/// returns it with the final component's name (`None` for the root itself).
fn open_parent(root: &Path, path: &str) -> Result<(OwnedFd, Option<OsString>), EngineError> {
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::Internal(format!("opening container root: {e}")))?;
    let p = Path::new(path.trim_end_matches("/."));
    let name = p.file_name().map(OsStr::to_os_string);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let rel = parent.strip_prefix("/").unwrap_or(parent);
    let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root_fd, rel, how).map_err(|_| bad_path(path))?;
    Ok((fd, name))
}

/// Docker's path stat (`X-Docker-Container-Path-Stat`), with Go's `os.FileMode` bits.
fn stat_json(name: &str, st: &FileStat, link: &str) -> serde_json::Value {
    let kind = st.st_mode & libc::S_IFMT;
    let mut mode = u64::from(st.st_mode & 0o777);
    mode |= match kind {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        libc::S_IFBLK => 1 << 26,
        _ => 0,
    };
    if st.st_mode & libc::S_ISUID != 0 {
        mode |= 1 << 23;
    }
    if st.st_mode & libc::S_ISGID != 0 {
        mode |= 1 << 22;
    }
    if st.st_mode & libc::S_ISVTX != 0 {
        mode |= 1 << 20;
    }
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
    json!({"name": name, "size": st.st_size, "mode": mode, "mtime": mtime, "linkTarget": link})
}

/// Stats `path` in the container: the value of `X-Docker-Container-Path-Stat` (base64 JSON).
pub fn path_stat(root: &Path, path: &str) -> Result<String, EngineError> {
    use base64::Engine as _;
    let (parent, name) = open_parent(root, path)?;
    let (st, shown, link) = match &name {
        Some(n) => {
            let st = fstatat(&parent, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|_| bad_path(path))?;
            let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                nix::fcntl::readlinkat(&parent, n.as_os_str())
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            (st, n.to_string_lossy().into_owned(), link)
        }
        None => (fstatat(&parent, ".", AtFlags::empty()).map_err(|_| bad_path(path))?, "/".to_string(), String::new()),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(stat_json(&shown, &st, &link).to_string()))
}

/// Writes `path` (a file, a link, or a whole tree) from the container as a tar to `out`.
pub fn write_tar<W: Write>(root: &Path, path: &str, out: W) -> Result<(), EngineError> {
    let (parent, name) = open_parent(root, path)?;
    let mut tar = tar::Builder::new(out);
    let io = |e: std::io::Error| EngineError::Internal(format!("writing archive: {e}"));
    match name {
        Some(n) => add_entry(&mut tar, &parent, &n, Path::new(&n)).map_err(io)?,
        None => {
            let dir = openat(&parent, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            add_children(&mut tar, &dir, Path::new("")).map_err(io)?;
        }
    }
    tar.into_inner().map_err(io)?.flush().map_err(io)
}

fn header_for(st: &FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h
}

fn add_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    parent: &OwnedFd,
    name: &OsStr,
    tar_path: &Path,
) -> std::io::Result<()> {
    let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let mut h = header_for(&st, tar::EntryType::Directory, 0);
            tar.append_data(&mut h, tar_path, std::io::empty())?;
            let dir = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            add_children(tar, &dir, tar_path)?;
        }
        libc::S_IFREG => {
            let fd = openat(parent, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
            let f = std::fs::File::from(fd);
            let size = f.metadata()?.len();
            let mut h = header_for(&st, tar::EntryType::Regular, size);
            tar.append_data(&mut h, tar_path, f)?;
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(parent, name)?;
            let mut h = header_for(&st, tar::EntryType::Symlink, 0);
            tar.append_link(&mut h, tar_path, Path::new(&target))?;
        }
        libc::S_IFIFO => {
            let mut h = header_for(&st, tar::EntryType::Fifo, 0);
            tar.append_data(&mut h, tar_path, std::io::empty())?;
        }
        _ => {} // devices and sockets are not copied
    }
    Ok(())
}

fn add_children<W: Write>(tar: &mut tar::Builder<W>, dir: &OwnedFd, tar_path: &Path) -> std::io::Result<()> {
    let mut names: Vec<OsString> = Vec::new();
    let listing = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    for e in listing {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_os_string());
        }
    }
    names.sort();
    for n in names {
        add_entry(tar, dir, &n, &tar_path.join(&n))?;
    }
    Ok(())
}

/// Extracts the tar `archive` into the directory `path` of the container (which may be reached
/// through the container's own symlinks, resolved inside its root).
pub fn extract<R: std::io::Read>(root: &Path, path: &str, archive: R) -> Result<(), EngineError> {
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::Internal(format!("opening container root: {e}")))?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = openat2(&root_fd, rel, how).map_err(|e| match e {
        nix::errno::Errno::ENOTDIR => {
            EngineError::InvalidArgument(format!("extraction point is not a directory: {path}"))
        }
        _ => bad_path(path),
    })?;
    crate::store::unpack::extract_into(archive, dir)
        .map(|_| ())
        .map_err(|e| EngineError::InvalidArgument(format!("extracting into {path}: {e}")))
}

/// `docker diff`: (path, kind) with kind 0 = changed, 1 = added, 2 = deleted.
pub fn changes(engine: &Engine, c: &Container) -> Result<Vec<(String, u8)>, EngineError> {
    let rec = c.record();
    let upper = c.dir().join("upper");
    let lowers: Vec<PathBuf> = engine
        .store
        .by_id(&rec.image_id)
        .map(|i| i.record.layers.iter().map(|l| engine.store.layer_diff_dir(&l.diff_id)).collect())
        .unwrap_or_default();
    let Ok(top) = nix::fcntl::open(&upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    walk_changes(&top, Path::new("/"), &lowers, &mut out)
        .map_err(|e| EngineError::Internal(format!("reading changes: {e}")))?;
    // The engine's own bind-mount targets are not the user's changes (Docker hides them too); a
    // changed directory is reported only when something in it is.
    const ENGINE_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];
    out.retain(|(p, _)| !ENGINE_FILES.contains(&p.as_str()));
    let all: Vec<String> = out.iter().map(|(p, _)| p.clone()).collect();
    out.retain(|(p, k)| {
        *k != 0 || !in_lowers(&lowers, Path::new(p), true) || all.iter().any(|q| q.starts_with(&format!("{p}/")))
    });
    out.sort();
    Ok(out)
}

/// Whether `p` exists in one of the image's layers (as a directory, with `dir`).
fn in_lowers(lowers: &[PathBuf], p: &Path, dir: bool) -> bool {
    let rel = p.strip_prefix("/").unwrap_or(p);
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC | if dir { OFlag::O_DIRECTORY } else { OFlag::O_NOFOLLOW };
    let how = OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    lowers.iter().any(|l| {
        nix::fcntl::open(l.as_path(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .ok()
            .and_then(|fd| openat2(&fd, rel, how).ok())
            .is_some()
    })
}

fn walk_changes(dir: &OwnedFd, at: &Path, lowers: &[PathBuf], out: &mut Vec<(String, u8)>) -> std::io::Result<()> {
    let listing = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut names = Vec::new();
    for e in listing {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    for n in names {
        let p = at.join(&n);
        let st = fstatat(dir, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let is_whiteout = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0;
        if is_whiteout {
            out.push((p.display().to_string(), 2));
            continue;
        }
        out.push((p.display().to_string(), if in_lowers(lowers, &p, false) { 0 } else { 1 }));
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let sub = openat(
                dir,
                n.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            walk_changes(&sub, &p, lowers, out)?;
        }
    }
    Ok(())
}

/// Bytes the container wrote (its overlay upper layer), for `docker ps --size`.
pub fn upper_size(container_dir: &Path) -> i64 {
    fn walk(dir: &OwnedFd) -> u64 {
        let Ok(listing) = dir.try_clone().and_then(|d| nix::dir::Dir::from_fd(d).map_err(std::io::Error::from)) else {
            return 0;
        };
        let mut total = 0;
        for e in listing.into_iter().flatten() {
            let n = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
            if n == "." || n == ".." {
                continue;
            }
            let Ok(st) = fstatat(dir, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    if let Ok(sub) = openat(
                        dir,
                        n.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ) {
                        total += walk(&sub);
                    }
                }
                libc::S_IFREG => total += u64::try_from(st.st_size).unwrap_or(0),
                _ => {}
            }
        }
        total
    }
    nix::fcntl::open(
        &container_dir.join("upper"),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(|fd| i64::try_from(walk(&fd)).unwrap_or(i64::MAX))
    .unwrap_or(0)
}

/// Copies what the image holds at `destination` into an empty volume directory `data` (Docker's
/// copy-up on a volume's first use), contents, owner and mode included. `dir` is the container's
/// directory and `lower` its image layers; the root is mounted on the host for the duration.
/// Nothing to copy (no such path, or not a directory) is not an error.
pub fn copy_up(dir: &Path, lower: &[String], destination: &str, data: &Path) -> Result<(), EngineError> {
    let target = dir.join("rootfs");
    let overlay = super::spec::overlay_data(lower, dir);
    nix::mount::mount(Some("overlay"), &target, Some("overlay"), nix::mount::MsFlags::empty(), Some(overlay.as_str()))
        .map_err(|e| EngineError::Internal(format!("mounting the container's filesystem: {e}")))?;
    let result = copy_from_root(&target, destination, data);
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    result
}

fn copy_from_root(root: &Path, destination: &str, data: &Path) -> Result<(), EngineError> {
    let Ok((parent, Some(name))) = open_parent(root, destination) else { return Ok(()) };
    match nix::sys::stat::fstatat(&parent, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
        _ => return Ok(()),
    }
    let volume = data.parent().ok_or_else(|| EngineError::Internal("volume without a directory".into()))?;
    let staging = volume.join("copy-up");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| EngineError::Internal(format!("volume copy-up: {e}")))?;
    let (reader, writer) = std::io::pipe().map_err(|e| EngineError::Internal(format!("volume copy-up: {e}")))?;
    let (root_owned, dest_owned) = (root.to_path_buf(), destination.to_owned());
    let producer = std::thread::spawn(move || write_tar(&root_owned, &dest_owned, writer));
    let extracted = extract(&staging, "/", reader);
    let produced = producer.join().unwrap_or_else(|_| Err(EngineError::Internal("copy-up thread panicked".into())));
    extracted.and(produced)?;
    // The copied directory (with the image's owner and mode) becomes the volume's data.
    std::fs::remove_dir(data).map_err(|e| EngineError::Internal(format!("volume copy-up: {e}")))?;
    std::fs::rename(staging.join(&name), data).map_err(|e| EngineError::Internal(format!("volume copy-up: {e}")))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}
