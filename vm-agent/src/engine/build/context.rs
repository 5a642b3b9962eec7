//! The build context: the request body (a tar, plain, gzip or zstd) kept as it came, in one
//! unnamed file under `<root>/build/` (gone with the build, or with the process after a crash),
//! and an index of its entries built while it arrives: name, type, mode, owner, time, where a
//! file's data lies in the tar, and the data's sha256. `COPY` reads files from there and its cache
//! key takes the digests, so a build never writes the context out file by file (on ext4, creating
//! and deleting thousands of files per build is what made large contexts slow). Entry names are
//! checked as image layers' are (no absolute names, no `..`, no devices, hard links only to
//! earlier entries). `.dockerignore` filters the index (the Dockerfile and `.dockerignore`
//! themselves go when it names them, as with dockerd). Only a `RUN --mount=type=bind` of the
//! context needs a directory: the tar is then extracted once, with the layers' refusals.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::ignore::Ignore;
use super::tree::{self, Kind, Node, Tree};
use crate::engine::{Engine, EngineError};

/// One entry of the context.
#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    None,
    /// A regular file: where its bytes lie in the spooled tar, and their sha256.
    File {
        offset: u64,
        digest: [u8; 32],
    },
    Symlink(PathBuf),
}

/// A received context.
#[derive(Debug)]
pub struct Context {
    /// The decompressed tar as received (an `O_TMPFILE`: it has no name to leave behind).
    spool: File,
    entries: BTreeMap<String, Entry>,
    /// `.dockerignore` once applied (a materialized copy applies it too).
    ignore: Option<Ignore>,
    build_dir: PathBuf,
    /// The extracted copy, made the first time a `RUN --mount=type=bind` needs it.
    materialized: Mutex<Option<PathBuf>>,
}

impl Drop for Context {
    fn drop(&mut self) {
        let dir = self.materialized.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(dir) = dir {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a build context");
                }
            }
        }
    }
}

fn bad(e: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidArgument(format!("invalid build context: {e}"))
}

fn dir_node(mode: u32) -> Node {
    Node { kind: Kind::Dir, mode, uid: 0, gid: 0, mtime: 0, size: 0 }
}

impl Context {
    /// Receives the archive read from `reader`: spooled and indexed in one pass. Blocking.
    pub fn receive<R: Read>(engine: &Engine, reader: R) -> Result<Self, EngineError> {
        let build_dir = engine.config.root.join("build");
        std::fs::create_dir_all(&build_dir)
            .map_err(|e| EngineError::Internal(format!("creating the build directory: {e}")))?;
        let spool = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(&build_dir)
            .map_err(|e| EngineError::Internal(format!("creating the build context's file: {e}")))?;
        let (_, decoded) = crate::store::compression::decompress(io::BufReader::new(reader)).map_err(bad)?;
        let mut tee =
            Tee { inner: TarEnds::new(decoded), out: BufWriter::with_capacity(1 << 20, &spool), failed: None };
        let indexed = index(&mut tee);
        // Writing the spool failing (a full disk) is ours, not a bad context.
        if let Some(e) = tee.failed.take() {
            return Err(EngineError::Internal(format!("writing the build context: {e}")));
        }
        let entries = indexed?;
        tee.out.flush().map_err(|e| EngineError::Internal(format!("writing the build context: {e}")))?;
        drop(tee);
        Ok(Self { spool, entries, ignore: None, build_dir, materialized: Mutex::new(None) })
    }

    /// Reads the Dockerfile at `name` (relative to the context; symlinks stay inside it). Falls
    /// back to `dockerfile` when the default name is missing, as dockerd does.
    pub fn read_dockerfile(&self, name: &str) -> Result<(String, String), EngineError> {
        let name = name.trim_start_matches("./").trim_start_matches('/');
        let candidates: Vec<&str> = if name == "Dockerfile" { vec!["Dockerfile", "dockerfile"] } else { vec![name] };
        for n in &candidates {
            if let Ok(text) = self.read(n) {
                return Ok((n.to_string(), text));
            }
        }
        Err(EngineError::InvalidArgument(format!("Cannot locate specified Dockerfile: {name}")))
    }

    /// Reads a file of the context as text (symlinks resolved inside the context).
    pub fn read(&self, rel: &str) -> Result<String, EngineError> {
        let found = tree::resolve(self, rel)
            .filter(|p| self.lstat(p).is_some_and(|n| n.kind == Kind::File))
            .ok_or_else(|| EngineError::NotFound(format!("{rel}: no such file in the build context")))?;
        let mut text = String::new();
        self.open(&found)
            .and_then(|mut r| r.read_to_string(&mut text))
            .map_err(|e| EngineError::InvalidArgument(format!("reading {rel}: {e}")))?;
        Ok(text)
    }

    /// Applies `.dockerignore`: drops what it excludes (a directory stays while something
    /// beneath it is kept by an exception).
    pub fn apply_dockerignore(&mut self) -> Result<(), EngineError> {
        let Ok(text) = self.read(".dockerignore") else { return Ok(()) };
        let ignore = Ignore::parse(&text).map_err(EngineError::InvalidArgument)?;
        let excluded: HashSet<String> = self.entries.keys().filter(|p| ignore.excludes(p)).cloned().collect();
        if !excluded.is_empty() {
            let mut needed: HashSet<&str> = HashSet::new();
            for p in self.entries.keys().filter(|p| !excluded.contains(*p)) {
                for (i, _) in p.match_indices('/') {
                    needed.insert(&p[..i]);
                }
            }
            let needed: HashSet<String> = needed.into_iter().map(str::to_string).collect();
            self.entries.retain(|p, _| !excluded.contains(p) || needed.contains(p));
        }
        self.ignore = Some(ignore);
        Ok(())
    }

    /// The context as a directory (for `RUN --mount=type=bind`): extracted the first time it is
    /// asked for, `.dockerignore` applied, removed with the context.
    pub fn materialize(&self) -> Result<PathBuf, EngineError> {
        let mut slot = self.materialized.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = slot.as_ref() {
            return Ok(dir.clone());
        }
        let dir = self.build_dir.join(format!("context-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::Internal(format!("creating the build context: {e}")))?;
        let extracted = (|| {
            let fd = open_dir(&dir)?;
            let len = self.spool.metadata().map(|m| m.len()).unwrap_or(0);
            crate::store::unpack::extract_into(Range { file: &self.spool, pos: 0, end: len }, fd).map_err(bad)?;
            if let Some(ignore) = &self.ignore {
                remove_excluded(&dir, "", ignore)
                    .map_err(|e| EngineError::Internal(format!("applying .dockerignore: {e}")))?;
            }
            Ok(())
        })();
        if let Err(e) = extracted {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        *slot = Some(dir.clone());
        Ok(dir)
    }
}

impl Tree for Context {
    fn lstat(&self, rel: &str) -> Option<Node> {
        if rel.is_empty() {
            return Some(self.entries.get("").map_or(dir_node(0o755), |e| e.node));
        }
        self.entries.get(rel).map(|e| e.node)
    }

    fn read_link(&self, rel: &str) -> io::Result<PathBuf> {
        match self.entries.get(rel).map(|e| &e.data) {
            Some(Data::Symlink(t)) => Ok(t.clone()),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{rel} is not a symlink"))),
        }
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        if self.lstat(rel).map(|n| n.kind) != Some(Kind::Dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{rel} is not a directory")));
        }
        let children = |(p, _): (&String, &Entry)| -> Option<String> {
            let name = if rel.is_empty() { p.as_str() } else { p.strip_prefix(rel)?.strip_prefix('/')? };
            (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
        };
        Ok(if rel.is_empty() {
            self.entries.iter().filter_map(children).collect()
        } else {
            // "dir/" up to "dir0": exactly the entries beneath `dir` ('0' follows '/').
            let (from, to) = (format!("{rel}/"), format!("{rel}0"));
            self.entries.range(from..to).filter_map(children).collect()
        })
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        match self.entries.get(rel) {
            Some(Entry { node, data: Data::File { offset, .. } }) => {
                Ok(Box::new(Range { file: &self.spool, pos: *offset, end: offset + node.size }))
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, format!("{rel} is not a file in the build context"))),
        }
    }

    fn content_digest(&self, rel: &str) -> io::Result<[u8; 32]> {
        match self.entries.get(rel).map(|e| &e.data) {
            Some(Data::File { digest, .. }) => Ok(*digest),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, format!("{rel} is not a file in the build context"))),
        }
    }
}

/// A byte range of the spooled tar.
struct Range<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from((self.end - self.pos).min(buf.len() as u64)).unwrap_or(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the build context's file is short"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies what the tar reader consumes into the spool, so entry data positions in the archive
/// are positions in the spool.
struct Tee<R, W> {
    inner: R,
    out: W,
    /// Why writing the spool failed.
    failed: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let shown = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(shown);
        }
        Ok(n)
    }
}

/// A tar entry's name as clean components joined by `/` (`""`: the root); absolute names and
/// `..` are refused.
fn clean_name(raw: &[u8]) -> Result<String, EngineError> {
    let text = String::from_utf8_lossy(raw);
    if text.starts_with('/') {
        return Err(bad(format!("entry {text:?} is an absolute path")));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad(format!("entry {text:?} contains '..'"))),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Reads every entry, spooling through `tee`, into the index.
fn index<R: Read>(reader: R) -> Result<BTreeMap<String, Entry>, EngineError> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = clean_name(&entry.path_bytes())?;
        let h = entry.header();
        let node = Node {
            kind: Kind::Other,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0),
            gid: u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            size: 0,
        };
        let e = match kind {
            EntryType::Directory => Entry { node: Node { kind: Kind::Dir, ..node }, data: Data::None },
            EntryType::Regular | EntryType::Continuous => {
                let offset = entry.raw_file_position();
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(bad)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Entry {
                    node: Node { kind: Kind::File, size, ..node },
                    data: Data::File { offset, digest: hasher.finalize().into() },
                }
            }
            EntryType::Symlink => {
                let target = entry.link_name().map_err(bad)?.map(|l| l.into_owned()).unwrap_or_default();
                Entry { node: Node { kind: Kind::Symlink, ..node }, data: Data::Symlink(target) }
            }
            EntryType::Link => {
                let raw = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                let target = clean_name(&raw)?;
                match entries.get(&target) {
                    Some(t) if t.node.kind == Kind::File => t.clone(),
                    _ => {
                        return Err(bad(format!(
                            "entry {name:?} is a hard link to {target:?}, which is not a file before it"
                        )))
                    }
                }
            }
            EntryType::Char | EntryType::Block => {
                return Err(bad(format!("entry {name:?} is a device node, which a build context may not contain")))
            }
            EntryType::GNUSparse => {
                return Err(bad(format!("entry {name:?} is a sparse file, which is not supported")))
            }
            _ => Entry { node, data: Data::None },
        };
        // Parents a tar leaves out exist as plain directories.
        for (i, _) in name.match_indices('/') {
            entries.entry(name[..i].to_string()).or_insert(Entry { node: dir_node(0o755), data: Data::None });
        }
        // An entry that replaces a directory takes its contents with it.
        if e.node.kind != Kind::Dir && entries.get(&name).is_some_and(|old| old.node.kind == Kind::Dir) {
            let (from, to) = (format!("{name}/"), format!("{name}0"));
            let inner: Vec<String> = entries.range(from..to).map(|(k, _)| k.clone()).collect();
            for k in inner {
                entries.remove(&k);
            }
        }
        entries.insert(name, e);
    }
    Ok(entries)
}

/// Completes a tar stream that stops right after its last entry's data: the docker CLI sends a
/// context without the final padding and end-of-archive blocks, which Go's reader accepts. A
/// stream that stops inside an entry's data stays truncated (and fails).
struct TarEnds<R> {
    inner: R,
    /// Bytes left in the current header block, then in the entry's data, then its padding.
    header: Vec<u8>,
    data_left: u64,
    pad_left: u64,
    /// Zeros still to emit after the inner stream ended (`None` while it has not).
    tail: Option<usize>,
}

impl<R: Read> TarEnds<R> {
    fn new(inner: R) -> Self {
        Self { inner, header: Vec::with_capacity(512), data_left: 0, pad_left: 0, tail: None }
    }

    /// Follows the tar structure over `bytes` (just read).
    fn track(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.data_left > 0 {
                let n = usize::try_from(self.data_left.min(bytes.len() as u64)).unwrap_or(0);
                self.data_left -= n as u64;
                bytes = &bytes[n..];
            } else if self.pad_left > 0 {
                let n = usize::try_from(self.pad_left.min(bytes.len() as u64)).unwrap_or(0);
                self.pad_left -= n as u64;
                bytes = &bytes[n..];
            } else {
                let n = (512 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() == 512 {
                    let size = if self.header.iter().all(|b| *b == 0) { 0 } else { tar_size(&self.header) };
                    self.data_left = size;
                    self.pad_left = (512 - size % 512) % 512;
                    self.header.clear();
                }
            }
        }
    }
}

/// The size field of a tar header (octal, or GNU base-256).
fn tar_size(h: &[u8]) -> u64 {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..].iter().fold(0u64, |acc, b| acc.saturating_mul(256).saturating_add(u64::from(*b)));
    }
    let text: String = field.iter().take_while(|b| **b != 0 && **b != b' ').map(|b| *b as char).collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

impl<R: Read> Read for TarEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(left) = self.tail.as_mut() {
            let n = (*left).min(buf.len());
            buf[..n].fill(0);
            *left -= n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.track(&buf[..n]);
            return Ok(n);
        }
        if self.data_left > 0 || !self.header.is_empty() {
            return Ok(0); // truncated inside an entry: the tar reader reports it
        }
        self.tail = Some(usize::try_from(self.pad_left).unwrap_or(0) + 1024);
        self.pad_left = 0;
        self.read(buf)
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, EngineError> {
    nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::Internal(format!("opening {}: {e}", dir.display())))
}

fn remove_excluded(dir: &Path, rel: &str, ignore: &Ignore) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let kind = entry.file_type()?;
        if ignore.excludes(&path) {
            // A directory with an exception beneath it is walked, not removed whole.
            if kind.is_dir() && ignore.has_exceptions() {
                remove_excluded(&entry.path(), &path, ignore)?;
                if std::fs::read_dir(entry.path())?.next().is_none() {
                    std::fs::remove_dir(entry.path())?;
                }
            } else if kind.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        } else if kind.is_dir() {
            remove_excluded(&entry.path(), &path, ignore)?;
        }
    }
    Ok(())
}
