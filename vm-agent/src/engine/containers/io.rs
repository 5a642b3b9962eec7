//! A container's stdio: output is read from its pipes (or pty), written to the JSON log file and
//! broadcast to attached clients; stdin is fed from an attached client. One hub per running
//! container; the log outlives it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;

/// Which stream a chunk belongs to (the 8-byte frame header's first byte).
pub const STDOUT: u8 = 1;
/// Standard error.
pub const STDERR: u8 = 2;

/// json-file rotation (`--log-opt max-size`, `max-file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes in the current file before it is rotated.
    pub max_size: u64,
    /// Files kept, the current one included.
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self { max_size: 32 * 1024 * 1024, max_files: 2 }
    }
}

impl LogLimits {
    /// Parses Docker's `max-size` (`10m`, `512k`, `1g`, bytes) and `max-file` options.
    pub fn from_options(opts: &std::collections::HashMap<String, String>) -> Result<Self, String> {
        let mut l = Self::default();
        if let Some(v) = opts.get("max-size") {
            let v = v.trim().to_ascii_lowercase();
            let (num, mult) = match v.chars().last() {
                Some('k') => (&v[..v.len() - 1], 1024u64),
                Some('m') => (&v[..v.len() - 1], 1024 * 1024),
                Some('g') => (&v[..v.len() - 1], 1024 * 1024 * 1024),
                _ => (v.as_str(), 1),
            };
            let n: u64 = num.trim_end_matches('b').parse().map_err(|_| format!("invalid max-size: {v}"))?;
            if n == 0 {
                return Err(format!("invalid max-size: {v}"));
            }
            l.max_size = n * mult;
        }
        if let Some(v) = opts.get("max-file") {
            l.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("invalid max-file: {v}"))?;
        }
        Ok(l)
    }
}

/// The current log file and how much is in it.
#[derive(Debug)]
struct LogFile {
    file: File,
    size: u64,
}

/// The path of the `n`th rotated log (`n` = 1 is the newest).
fn rotated(path: &Path, n: u32) -> PathBuf {
    path.with_extension(format!("log.{n}"))
}

/// How many first lines of a run are kept for clients that attached before the start.
const EARLY_LINES: usize = 4096;

/// One line of output.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// `STDOUT` or `STDERR`.
    pub stream: u8,
    /// The bytes, including the trailing newline when there was one.
    pub data: Bytes,
    /// RFC 3339 time it was read.
    pub time: String,
}

/// A line of the json-file log as read back (borrowing from the file's text).
#[derive(Debug, Deserialize)]
struct LogLineRef<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
}

/// A line of the json-file log (Docker's format).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    /// The text.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When.
    pub time: String,
}

/// Output fan-out and the stdin handle of one container run.
#[derive(Debug)]
pub struct IoHub {
    tx: broadcast::Sender<Arc<Chunk>>,
    log: Mutex<Option<LogFile>>,
    limits: LogLimits,
    /// This run's first lines, for a client that attached before the start (`docker run`).
    early: Mutex<Vec<Arc<Chunk>>>,
    log_path: PathBuf,
    stdin: tokio::sync::Mutex<Option<AsyncFd<OwnedFd>>>,
    /// The pty's controlling side, for resizes.
    pub pty: Option<OwnedFd>,
    /// Streams still open; the hub is finished when this reaches zero.
    open_streams: AtomicU64,
    done: tokio::sync::watch::Sender<bool>,
}

impl IoHub {
    /// A hub appending to `log_path` with `streams` output streams to pump.
    pub fn new(
        log: Option<(&Path, LogLimits)>,
        stdin: Option<OwnedFd>,
        pty: Option<OwnedFd>,
        streams: u64,
    ) -> std::io::Result<Arc<Self>> {
        let limits = log.map(|(_, l)| l).unwrap_or_default();
        let log_path = log.map(|(p, _)| p);
        let log = match log_path {
            Some(p) => {
                let file = OpenOptions::new().create(true).append(true).open(p)?;
                let size = file.metadata()?.len();
                Some(LogFile { file, size })
            }
            None => None,
        };
        let stdin = match stdin {
            Some(fd) => Some(async_fd(fd)?),
            None => None,
        };
        Ok(Arc::new(Self {
            tx: broadcast::channel(256).0,
            log: Mutex::new(log),
            limits,
            early: Mutex::new(Vec::new()),
            log_path: log_path.map(Path::to_path_buf).unwrap_or_default(),
            stdin: tokio::sync::Mutex::new(stdin),
            pty,
            open_streams: AtomicU64::new(streams),
            done: tokio::sync::watch::channel(streams == 0).0,
        }))
    }

    /// Shifts `.log.N` files up (dropping the oldest beyond `max-file`) and starts a new log.
    fn rotate(&self) -> Option<LogFile> {
        let keep = self.limits.max_files.saturating_sub(1);
        if keep == 0 {
            let _ = std::fs::remove_file(&self.log_path);
        } else {
            let _ = std::fs::remove_file(rotated(&self.log_path, keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(rotated(&self.log_path, n), rotated(&self.log_path, n + 1));
            }
            let _ = std::fs::rename(&self.log_path, rotated(&self.log_path, 1));
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.log_path).ok()?;
        Some(LogFile { file, size: 0 })
    }

    /// Live output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Chunk>> {
        self.tx.subscribe()
    }

    /// Everything this run printed so far (up to a bound) plus every later line: for a client that
    /// attached before the container started.
    pub fn from_start(&self) -> (Vec<Arc<Chunk>>, broadcast::Receiver<Arc<Chunk>>) {
        let _log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (early, self.tx.subscribe())
    }

    /// The log so far plus every later line, with nothing lost or repeated in between (the log
    /// lock is held while both are taken; `record` writes and broadcasts under the same lock).
    pub fn snapshot(&self) -> (Vec<Chunk>, broadcast::Receiver<Arc<Chunk>>) {
        let _log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (read_log(&self.log_path), self.tx.subscribe())
    }

    /// Resolves when every output stream has reached end of file.
    pub fn finished(&self) -> tokio::sync::watch::Receiver<bool> {
        self.done.subscribe()
    }

    fn record(&self, stream: u8, data: &[u8]) {
        let time = super::super::now_rfc3339();
        let line = LogLine {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: if stream == STDERR { "stderr" } else { "stdout" }.into(),
            time: time.clone(),
        };
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = log.as_mut() {
                if let Ok(mut bytes) = serde_json::to_vec(&line) {
                    bytes.push(b'\n');
                    if f.file.write_all(&bytes).is_ok() {
                        f.size += bytes.len() as u64;
                    }
                }
                if f.size >= self.limits.max_size {
                    *log = self.rotate();
                }
            }
            let chunk = Arc::new(Chunk { stream, data: Bytes::copy_from_slice(data), time });
            let mut early = self.early.lock().unwrap_or_else(|p| p.into_inner());
            if early.len() < EARLY_LINES {
                early.push(chunk.clone());
            }
            let _ = self.tx.send(chunk);
        }
    }

    /// Reads `fd` until EOF, splitting it into lines for the log.
    pub async fn pump(self: Arc<Self>, fd: OwnedFd, stream: u8) {
        let result = async {
            let afd = async_fd(fd)?;
            let mut buf = vec![0u8; 16 * 1024];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let n = read_some(&afd, &mut buf).await?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    self.record(stream, &line);
                }
                if pending.len() >= 16 * 1024 {
                    let line: Vec<u8> = std::mem::take(&mut pending);
                    self.record(stream, &line);
                }
            }
            if !pending.is_empty() {
                self.record(stream, &pending);
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "output stream ended");
        }
        if self.open_streams.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.done.send_replace(true);
        }
    }

    /// Writes to the container's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        let guard = self.stdin.lock().await;
        let Some(fd) = guard.as_ref() else { return Ok(()) };
        let mut off = 0;
        while off < data.len() {
            let mut ready = fd.writable().await?;
            match ready.try_io(|inner| nix::unistd::write(inner.get_ref(), &data[off..]).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => off += n,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Closes the container's stdin (the client half-closed its side).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }
}

/// Registers an owned descriptor with the reactor, in non-blocking mode.
fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(&fd)?;
    // SAFETY: `fd` is owned by the AsyncFd from here on and stays open until it is dropped, so the
    // registration never outlives the descriptor.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

async fn read_some(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|inner| match nix::unistd::read(inner.get_ref(), buf) {
            Ok(n) => Ok(n),
            // A pty's controlling side reports EIO once every process holding the other side exited.
            Err(nix::errno::Errno::EIO) => Ok(0),
            Err(e) => Err(std::io::Error::from(e)),
        }) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Reads the json-file log at `path`, oldest rotated file first.
pub fn read_log(path: &Path) -> Vec<Chunk> {
    let mut out = Vec::new();
    OpenLog::open(path).for_each(|c| {
        out.push(c);
        true
    });
    out
}

/// The files of a json-file log, opened: what they hold stays readable after the container is
/// removed, so a client that asked for the log before the removal (docker-py's `run` asks for
/// it, waits, removes, then reads) gets all of it.
#[derive(Debug)]
pub struct OpenLog(Vec<File>);

impl OpenLog {
    /// Opens the log at `path` and its rotated files, oldest first; missing ones are skipped.
    pub fn open(path: &Path) -> Self {
        let oldest = (1..).take_while(|n| rotated(path, *n).exists()).last().unwrap_or(0);
        let files = (1..=oldest).rev().map(|n| rotated(path, n)).chain(std::iter::once(path.to_path_buf()));
        OpenLog(files.filter_map(|p| File::open(p).ok()).collect())
    }

    /// Calls `f` with each line, oldest first, until it returns false. Reads line by line: a long
    /// log is never in memory whole. A line that is not a log record (a torn last line being
    /// written) is skipped.
    pub fn for_each(self, mut f: impl FnMut(Chunk) -> bool) {
        use std::io::BufRead;
        let mut line = Vec::new();
        for file in self.0 {
            let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Ok(l) = serde_json::from_slice::<LogLineRef<'_>>(&line) else { continue };
                let stream = if l.stream == "stderr" { STDERR } else { STDOUT };
                let chunk = Chunk { stream, data: Bytes::copy_from_slice(l.log.as_bytes()), time: l.time.into_owned() };
                if !f(chunk) {
                    return;
                }
            }
        }
    }
}

/// The 8-byte stream header Docker puts before each chunk when there is no TTY.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(8 + data.len());
    v.push(stream);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(data);
    Bytes::from(v)
}

impl IoHub {
    /// Sets the pty's window size.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let Some(pty) = &self.pty else { return Ok(()) };
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize we own from a valid pty descriptor.
        if unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
