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
