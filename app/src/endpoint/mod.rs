//! The user's Docker endpoint when the engine is reached through a byte stream per connection
//! (a `dial-stdio` process: the WSL back end; later any stdio transport): a named pipe on
//! Windows, a Unix socket elsewhere. Each accepted connection asks a [`Dial`] for its own
//! upstream and is relayed with half-close kept both ways.

pub mod relay;
pub mod serve;

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// One connection to the engine: its two directions, and the process that carries it, if any
/// (reaped, or killed, once the relay ends).
pub struct Upstream {
    /// The engine's bytes.
    pub from_engine: Pin<Box<dyn AsyncRead + Send>>,
    /// The client's bytes; dropped after the client's half-close, which the engine then sees.
    pub to_engine: Pin<Box<dyn AsyncWrite + Send>>,
    /// The carrying process.
    pub process: Option<tokio::process::Child>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("process", &self.process.as_ref().and_then(|p| p.id())).finish_non_exhaustive()
    }
}

impl Upstream {
    /// A process's stdout and stdin.
    pub fn of_process(mut child: tokio::process::Child) -> std::io::Result<Self> {
        let to_engine = child.stdin.take().ok_or_else(|| std::io::Error::other("the dialler has no stdin"))?;
        let from_engine = child.stdout.take().ok_or_else(|| std::io::Error::other("the dialler has no stdout"))?;
        Ok(Self { from_engine: Box::pin(from_engine), to_engine: Box::pin(to_engine), process: Some(child) })
    }

    /// Whether the carrying process still runs (an in-process stream always counts).
    pub fn is_alive(&mut self) -> bool {
        self.process.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Both directions of one in-process stream.
    pub fn of_stream<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self { from_engine: Box::pin(r), to_engine: Box::pin(w), process: None }
    }
}

/// Opens one connection to the engine.
pub trait Dial: Send + Sync + 'static {
    fn dial(&self) -> std::io::Result<Upstream>;
}

impl<D: Dial> Dial for std::sync::Arc<D> {
    fn dial(&self) -> std::io::Result<Upstream> {
        (**self).dial()
    }
}

/// How long a spare connection may wait for a client: the engine closes connections that send
/// no request for a while, and a spare that old is replaced rather than trusted.
const SPARE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Keeps one connection dialled ahead, so a client does not wait for a carrying process to start
/// (a `dial-stdio` takes milliseconds to exec and connect; through `wsl.exe`, tens of them).
#[derive(Debug)]
pub struct Prespawned<D> {
    inner: D,
    spare: std::sync::Mutex<Option<(std::time::Instant, Upstream)>>,
}

impl<D: Dial> Prespawned<D> {
    pub fn new(inner: D) -> Self {
        Self { inner, spare: std::sync::Mutex::new(None) }
    }
}

impl<D: Dial> Dial for Prespawned<D> {
    fn dial(&self) -> std::io::Result<Upstream> {
        let mut slot = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let taken = slot.take();
        *slot = self.inner.dial().ok().map(|u| (std::time::Instant::now(), u));
        drop(slot);
        if let Some((at, mut u)) = taken {
            if at.elapsed() < SPARE_MAX_AGE && u.is_alive() {
                return Ok(u);
            }
        }
        self.inner.dial()
    }
}

/// Dials by running a command whose stdin/stdout carry the connection: `skiff-agent dial-stdio`
/// (locally, or through `ssh HOST …`), or anything with the same contract.
#[derive(Debug, Clone)]
pub struct CommandDial {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
}

impl Dial for CommandDial {
    fn dial(&self) -> std::io::Result<Upstream> {
        let child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Upstream::of_process(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Dials in-process streams, each announcing its number.
    #[derive(Default)]
    struct Numbered(AtomicUsize);

    impl Dial for Numbered {
        fn dial(&self) -> std::io::Result<Upstream> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let (ours, mut theirs) = tokio::io::duplex(64);
            tokio::spawn(async move {
                let _ = theirs.write_all(format!("{n}").as_bytes()).await;
                let _ = theirs.shutdown().await;
            });
            Ok(Upstream::of_stream(ours))
        }
    }

    async fn number(mut u: Upstream) -> String {
        let mut s = String::new();
        let _ = u.from_engine.read_to_string(&mut s).await;
        s
    }

    #[tokio::test]
    async fn a_connection_is_dialled_ahead_and_handed_to_the_next_client() {
        let p = Prespawned::new(Numbered::default());
        // The first client finds no spare: it gets a fresh connection (1) and leaves one (0) ready.
        assert_eq!(number(p.dial().unwrap_or_else(|e| panic!("{e}"))).await, "1");
        // The next client gets the spare dialled earlier, and another is dialled behind it.
        assert_eq!(number(p.dial().unwrap_or_else(|e| panic!("{e}"))).await, "0");
        assert_eq!(number(p.dial().unwrap_or_else(|e| panic!("{e}"))).await, "2");
        assert_eq!(p.inner.0.load(Ordering::SeqCst), 4);
    }
}
