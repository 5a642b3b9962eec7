//! The build context: the request body (a tar, plain, gzip or zstd) extracted with the same
//! refusals as image layers into a directory of its own under `<root>/build/`, the Dockerfile read
//! from it, and `.dockerignore` applied (the Dockerfile and `.dockerignore` themselves go when it
//! names them, as with dockerd). The directory is removed when the build ends, however it ends.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::ignore::Ignore;
use crate::engine::{Engine, EngineError};

/// An extracted context; removed on drop.
#[derive(Debug)]
pub struct Context {
    dir: PathBuf,
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "removing a build context");
            }
        }
    }
}

impl Context {
    /// Extracts the archive read from `reader`. Blocking.
    pub fn receive<R: Read>(engine: &Engine, reader: R) -> Result<Self, EngineError> {
        let dir = engine.config.root.join("build").join(format!("context-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::Internal(format!("creating the build context: {e}")))?;
        let ctx = Self { dir };
        let fd = open_dir(&ctx.dir)?;
        let (_, decoded) = crate::store::compression::decompress(std::io::BufReader::new(reader))
            .map_err(|e| EngineError::InvalidArgument(format!("invalid build context: {e}")))?;
        crate::store::unpack::extract_into(TarEnds::new(decoded), fd)
            .map_err(|e| EngineError::InvalidArgument(format!("invalid build context: {e}")))?;
        Ok(ctx)
    }

    /// The context's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let root = open_dir(&self.dir)?;
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(&root, rel, how).map_err(|e| EngineError::NotFound(format!("{rel}: {e}")))?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .map_err(|e| EngineError::InvalidArgument(format!("reading {rel}: {e}")))?;
        Ok(text)
    }

    /// Applies `.dockerignore`: removes what it excludes (the Dockerfile only when it names it).
    pub fn apply_dockerignore(&self, dockerfile: &str) -> Result<(), EngineError> {
        let Ok(text) = self.read(".dockerignore") else { return Ok(()) };
        let ignore = Ignore::parse(&text).map_err(EngineError::InvalidArgument)?;
        let _ = dockerfile; // removed like any other file when `.dockerignore` names it
        remove_excluded(&self.dir, "", &ignore)
            .map_err(|e| EngineError::Internal(format!("applying .dockerignore: {e}")))
    }
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
