//! Unpacks one image layer (a tar, possibly compressed) into an empty directory, in overlayfs format.
//!
//! Every path is resolved by the kernel relative to the layer's directory fd: parents are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` and the final component is created with `*at`
//! calls that never follow it. An entry that is absolute, contains `..`, resolves outside the layer
//! (through any symlink), hard-links outside, or is a device node is refused and the whole unpack fails:
//! this module must never write outside `dest`.
//!
//! Docker/OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → a 0/0 character device `NAME`,
//! `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::compression::{self, Compression};
use super::digest::{Digest, HashingReader};

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself is malformed or could not be read.
    #[error("reading layer archive: {0}")]
    Archive(#[source] io::Error),
    /// An entry name is absolute, contains `..`, or is otherwise not a clean relative path.
    #[error("layer entry {path:?} is not a clean relative path (absolute or containing '..')")]
    UnsafePath {
        /// The entry's name as found in the tar.
        path: String,
    },
    /// Resolving the entry's parent (or a hard link's target) would leave the layer directory.
    #[error("layer entry {path:?} resolves outside the layer (through a symlink or '..')")]
    Escape {
        /// The entry's name.
        path: String,
    },
    /// A block or character device other than a whiteout.
    #[error("layer entry {path:?} is a device node, which image layers may not contain")]
    DeviceNode {
        /// The entry's name.
        path: String,
    },
    /// A hard link whose target does not exist earlier in the same layer.
    #[error("layer entry {path:?} is a hard link to {target:?}, which is not in this layer")]
    BadHardLink {
        /// The link's name.
        path: String,
        /// The link's target.
        target: String,
    },
    /// A filesystem operation failed while creating an entry.
    #[error("unpacking {path:?}: {source}")]
    Io {
        /// The entry's name.
        path: String,
        /// The failing operation's error.
        #[source]
        source: io::Error,
    },
}

/// What unpacking learned about the layer.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    /// sha256 of the uncompressed tar stream (the image config's `diff_id`).
    pub diff_id: Digest,
    /// Sum of the sizes of regular files.
    pub size: u64,
    /// How the blob was compressed.
    pub compression: Compression,
}

const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Unpacks the layer blob read from `blob` into the existing, empty directory `dest`.
pub fn unpack_layer<R: Read>(blob: R, dest: &Path) -> Result<UnpackedLayer, UnpackError> {
    let (compression, decoded) =
        compression::decompress(BufReader::with_capacity(256 * 1024, blob)).map_err(UnpackError::Archive)?;
    let mut hashing = HashingReader::new(decoded);
    let root = open_root(dest)?;
    let mut unpacker = Unpacker {
        root,
        deferred_dirs: Vec::new(),
        size: 0,
        parent_cache: None,
        whiteouts: true,
        buf: vec![0; 128 * 1024],
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(UnpackError::Archive)?;
        for entry in entries {
            let entry = entry.map_err(UnpackError::Archive)?;
            unpacker.entry(entry)?;
        }
    }
    unpacker.finish()?;
    let (diff_id, _) = hashing.drain_and_finish().map_err(UnpackError::Archive)?;
    Ok(UnpackedLayer { diff_id, size: unpacker.size, compression })
}

fn open_root(dest: &Path) -> Result<OwnedFd, UnpackError> {
    nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| UnpackError::Io { path: dest.display().to_string(), source: e.into() })
}

/// Splits a tar name into clean components; refuses absolute names and `..`.
fn clean_components(raw: &[u8]) -> Result<Vec<OsString>, UnpackError> {
    let unsafe_path = || UnpackError::UnsafePath { path: String::from_utf8_lossy(raw).into_owned() };
    if raw.first() == Some(&b'/') {
        return Err(unsafe_path());
    }
    let mut out = Vec::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(unsafe_path()),
        }
    }
    Ok(out)
}

fn io_err(path: &str) -> impl Fn(Errno) -> UnpackError + '_ {
    move |e| UnpackError::Io { path: path.to_string(), source: e.into() }
}

struct Unpacker {
    root: OwnedFd,
    /// Directories whose mtime is applied at the end (creating children changes it).
    deferred_dirs: Vec<(PathBuf, i64)>,
    size: u64,
    /// The last opened parent directory: tar entries come grouped by directory.
    parent_cache: Option<(PathBuf, OwnedFd)>,
    /// Whether `.wh.` entries are whiteouts (image layers) or ordinary names (`docker cp`).
    whiteouts: bool,
    /// One copy buffer for every file (a fresh 128 KiB buffer per file costs an mmap and page
    /// faults each time).
    buf: Vec<u8>,
}

/// Extracts a plain tar (uncompressed or compressed) into the directory `dir` (an open fd), with
/// the same refusals as layers but without whiteout conversion: `docker cp` into a container.
pub fn extract_into<R: Read>(archive: R, dir: OwnedFd) -> Result<u64, UnpackError> {
    let (_, decoded) =
        compression::decompress(BufReader::with_capacity(256 * 1024, archive)).map_err(UnpackError::Archive)?;
    let mut unpacker = Unpacker {
        root: dir,
        deferred_dirs: Vec::new(),
        size: 0,
        parent_cache: None,
        whiteouts: false,
        buf: vec![0; 128 * 1024],
    };
    let mut archive = tar::Archive::new(decoded);
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        unpacker.entry(entry.map_err(UnpackError::Archive)?)?;
    }
    unpacker.finish()?;
    Ok(unpacker.size)
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let mut comps = clean_components(&raw_path)?;
        let Some(name) = comps.pop() else {
            return Ok(()); // "./": the layer root itself keeps the store's permissions.
        };
        let parent_rel: PathBuf = comps.iter().collect();
        let name_bytes = name.as_bytes();

        if self.whiteouts && name_bytes == OPAQUE_MARKER {
            let dir = self.open_dir(&parent_rel, &shown, true)?;
            let fd = openat(&dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(io_err(&shown))?;
            return set_xattr_fd(&fd, c"trusted.overlay.opaque", b"y")
                .map_err(|e| UnpackError::Io { path: shown, source: e });
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX).filter(|_| self.whiteouts) {
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::UnsafePath { path: shown });
            }
            let parent = self.open_dir(&parent_rel, &shown, true)?;
            remove_existing(&parent, hidden, false, &shown)?;
            return mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io_err(&shown));
        }

        let header = entry.header();
        let meta = Meta {
            uid: u32::try_from(header.uid().map_err(UnpackError::Archive)?).unwrap_or(0),
            gid: u32::try_from(header.gid().map_err(UnpackError::Archive)?).unwrap_or(0),
            mode: header.mode().map_err(UnpackError::Archive)? & 0o7777,
            mtime: i64::try_from(header.mtime().map_err(UnpackError::Archive)?).unwrap_or(0),
            xattrs: xattrs_of(&mut entry)?,
        };

        let parent = self.open_dir(&parent_rel, &shown, true)?;
        match kind {
            EntryType::Directory => {
                match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st =
                            fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err(&shown))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            remove_existing(&parent, &name, false, &shown)?;
                            mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                                .map_err(io_err(&shown))?;
                        }
                    }
                    Err(e) => return Err(io_err(&shown)(e)),
                }
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err(&shown))?;
                apply_fd_meta(&fd, &meta, &shown)?;
                self.deferred_dirs.push((parent_rel.join(&name), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_existing(&parent, &name, false, &shown)?;
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_err(&shown))?;
                let mut file = File::from(fd);
                let written = copy_with(&mut self.buf, &mut entry, &mut file).map_err(UnpackError::Archive)?;
                self.size += written;
                apply_fd_meta(&file, &meta, &shown)?;
                set_times(&parent, &name, meta.mtime, &shown)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::UnsafePath { path: shown.clone() })?
                    .into_owned();
                remove_existing(&parent, &name, false, &shown)?;
                symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str()).map_err(io_err(&shown))?;
                chown_nofollow(&parent, &name, &meta, &shown)?;
                for (k, v) in &meta.xattrs {
                    set_xattr_nofollow(&parent, &name, k, v)
                        .map_err(|e| UnpackError::Io { path: shown.clone(), source: e })?;
                }
                set_times(&parent, &name, meta.mtime, &shown)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::UnsafePath { path: shown.clone() })?
                    .into_owned();
                let bad_link = || UnpackError::BadHardLink {
                    path: shown.clone(),
                    target: String::from_utf8_lossy(&target_raw).into_owned(),
                };
                let mut tcomps = clean_components(&target_raw).map_err(|_| bad_link())?;
                let tname = tcomps.pop().ok_or_else(bad_link)?;
                let tparent_rel: PathBuf = tcomps.iter().collect();
                let tparent = self.open_dir(&tparent_rel, &shown, false).map_err(|e| match e {
                    UnpackError::Escape { .. } => e,
                    _ => bad_link(),
                })?;
                let st = fstatat(&tparent, tname.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|_| bad_link())?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(bad_link());
                }
                remove_existing(&parent, &name, false, &shown)?;
                linkat(&tparent, tname.as_os_str(), &parent, name.as_os_str(), AtFlags::empty())
                    .map_err(io_err(&shown))?;
            }
            EntryType::Fifo => {
                remove_existing(&parent, &name, false, &shown)?;
                mknodat(&parent, name.as_os_str(), SFlag::S_IFIFO, Mode::from_bits_truncate(0o600), 0)
                    .map_err(io_err(&shown))?;
                chown_nofollow(&parent, &name, &meta, &shown)?;
                // We created it a moment ago as a FIFO in a directory only we write: not a symlink.
                fchmodat(&parent, name.as_os_str(), Mode::from_bits_truncate(meta.mode), FchmodatFlags::FollowSymlink)
                    .map_err(io_err(&shown))?;
                set_times(&parent, &name, meta.mtime, &shown)?;
            }
            EntryType::Char | EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if kind == EntryType::Char && major == 0 && minor == 0 {
                    // Already an overlayfs whiteout (layers produced from overlay snapshots).
                    remove_existing(&parent, &name, false, &shown)?;
                    mknodat(&parent, name.as_os_str(), SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                        .map_err(io_err(&shown))?;
                } else {
                    return Err(UnpackError::DeviceNode { path: shown });
                }
            }
            other => {
                tracing::warn!(entry = %shown, kind = ?other, "skipping unsupported tar entry type");
            }
        }
        Ok(())
    }

    /// Opens (creating if `create`) the directory `rel` beneath the layer root.
    fn open_dir(&mut self, rel: &Path, shown: &str, create: bool) -> Result<OwnedFd, UnpackError> {
        if let Some((cached, fd)) = &self.parent_cache {
            if cached == rel {
                return fd.try_clone().map_err(|e| UnpackError::Io { path: shown.to_string(), source: e });
            }
        }
        let fd = self.resolve_dir(rel, shown, create)?;
        let clone = fd.try_clone().map_err(|e| UnpackError::Io { path: shown.to_string(), source: e })?;
        self.parent_cache = Some((rel.to_path_buf(), clone));
        Ok(fd)
    }

    fn resolve_dir(&self, rel: &Path, shown: &str, create: bool) -> Result<OwnedFd, UnpackError> {
        let target: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(&self.root, target, how) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) if create => {
                let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                    return Err(io_err(shown)(Errno::ENOENT));
                };
                let pfd = self.resolve_dir(parent, shown, true)?;
                match mkdirat(&pfd, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(shown)(e)),
                }
                self.resolve_dir(rel, shown, false)
            }
            Err(Errno::EXDEV | Errno::ELOOP) => Err(UnpackError::Escape { path: shown.to_string() }),
            Err(e) => Err(io_err(shown)(e)),
        }
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        self.parent_cache = None;
        let mut dirs = std::mem::take(&mut self.deferred_dirs);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, mtime) in dirs {
            let shown = path.display().to_string();
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { continue };
            let pfd = self.resolve_dir(parent, &shown, false)?;
            set_times(&pfd, name, mtime, &shown)?;
        }
        Ok(())
    }
}

/// Sets the owner of `parent/name` without following it if it is a symlink.
fn chown_nofollow(parent: &OwnedFd, name: &OsStr, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
    fchownat(parent, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(io_err(shown))
}

/// Copies through `buf` (the default 8 KiB buffer of `io::copy` costs a syscall per 8 KiB).
fn copy_with<R: Read, W: Write>(buf: &mut [u8], r: &mut R, w: &mut W) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Removes whatever `name` is in `parent` (a later tar entry replaces an earlier one).
fn remove_existing(parent: &OwnedFd, name: &OsStr, keep_dirs: bool, shown: &str) -> Result<(), UnpackError> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err(shown)(e)),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            if keep_dirs {
                return Ok(());
            }
            unlinkat(parent, name, UnlinkatFlags::RemoveDir).map_err(io_err(shown))
        }
        Ok(_) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(io_err(shown)),
    }
}

fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(CString, Vec<u8>)>, UnpackError> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions().map_err(UnpackError::Archive)? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(UnpackError::Archive)?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else { continue };
        if name.starts_with(b"trusted.overlay.") {
            // Overlay metadata (redirects, metacopy) must come from us, never from an image.
            tracing::warn!(xattr = %String::from_utf8_lossy(name), "ignoring overlay xattr in layer");
            continue;
        }
        if let Ok(c) = CString::new(name.to_vec()) {
            out.push((c, ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// Owner, then mode (chown clears set-id bits), then xattrs (chown clears file capabilities).
fn apply_fd_meta<F: AsFd>(fd: &F, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: `raw` is a valid open descriptor borrowed from `fd` for the duration of the calls.
    let rc = unsafe { libc::fchown(raw, meta.uid, meta.gid) };
    Errno::result(rc).map_err(io_err(shown))?;
    // SAFETY: as above.
    let rc = unsafe { libc::fchmod(raw, meta.mode) };
    Errno::result(rc).map_err(io_err(shown))?;
    for (k, v) in &meta.xattrs {
        if let Err(e) = set_xattr_fd(fd, k, v) {
            if k.as_bytes().starts_with(b"security.capability") || e.raw_os_error() != Some(libc::ENOTSUP) {
                return Err(UnpackError::Io { path: shown.to_string(), source: e });
            }
            tracing::warn!(entry = shown, xattr = ?k, "xattr not supported by the store's filesystem");
        }
    }
    Ok(())
}

fn set_xattr_fd<F: AsFd>(fd: &F, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: the fd is valid, `name` is NUL-terminated and `value` is a live slice of the given length.
    let rc = unsafe { libc::fsetxattr(fd.as_fd().as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an xattr on `parent/name` without following `name` if it is a symlink.
fn set_xattr_nofollow(parent: &OwnedFd, name: &OsStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated; `value` is a live slice. `name` is one component, so
    // only the magic link to our own directory fd is followed.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_times(parent: &impl AsFd, name: &OsStr, mtime: i64, shown: &str) -> Result<(), UnpackError> {
    let ts = TimeSpec::new(mtime, 0);
    utimensat(parent, name, &ts, &ts, UtimensatFlags::NoFollowSymlink).map_err(io_err(shown))
}

/// Path bytes helper for tests and callers that build names.
pub fn os(s: &[u8]) -> OsString {
    OsString::from_vec(s.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_components_refuses_escapes() {
        assert!(clean_components(b"../x").is_err());
        assert!(clean_components(b"a/../../x").is_err());
        assert!(clean_components(b"/etc/passwd").is_err());
        assert_eq!(clean_components(b"./a/b/").ok(), Some(vec![os(b"a"), os(b"b")]));
        assert_eq!(clean_components(b"./").ok(), Some(vec![]));
    }
}
