//! Hijacked connections (`attach`, `exec start`): after `101 UPGRADED` the connection carries the
//! process's output down (8-byte framed without a TTY, raw with one) and the client's input up.
//! When the client half-closes its side, the process's stdin is closed too (for `StdinOnce`), while
//! output keeps flowing until the process's streams end.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use crate::engine::containers::io::{frame, Chunk, IoHub};
use crate::engine::containers::view::LogOptions;

/// The `101` answer that turns the connection into a raw stream.
pub fn upgrade_response(tty: bool) -> Response {
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// A running process's output: its hub, what it printed before the client joined (when the client
/// should see it), and the live feed.
pub type Feed = (Arc<IoHub>, Vec<Arc<Chunk>>, broadcast::Receiver<Arc<Chunk>>);

/// How a hijacked session behaves.
pub struct Session {
    /// Raw stream (TTY) rather than 8-byte frames.
    pub tty: bool,
    /// Which streams the client wants.
    pub opts: LogOptions,
    /// Output to replay first (`logs=1`).
    pub prelude: Vec<Arc<Chunk>>,
    /// The live output: resolved after the prelude is sent (an attach may wait for a start).
    pub feed: std::pin::Pin<Box<dyn std::future::Future<Output = Option<Feed>> + Send>>,
    /// Forward the client's bytes to the process's stdin.
    pub stdin: bool,
    /// Close the process's stdin when the client half-closes.
    pub close_stdin_on_eof: bool,
    /// Resolves when the process's exit is recorded; the stream ends only after that.
    pub done: Option<tokio::sync::watch::Receiver<bool>>,
    /// Pause before replaying output that already exists (see `run`).
    pub settle_before_replay: bool,
    /// Input that ends the session without touching the process (`ctrl-p,ctrl-q`).
    pub detach_keys: Vec<u8>,
    /// Written to the client when it detaches (dockerd tells an exec's client why its stream ended).
    pub detach_message: Option<&'static str>,
}

/// The detach sequence of a session: the client's `detachKeys` (a 400 when malformed), else
/// ctrl-p ctrl-q for an interactive terminal, else none.
pub fn detach_keys(asked: Option<&str>, tty: bool, stdin: bool) -> Result<Vec<u8>, super::error::ApiError> {
    match asked.filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k)
            .ok_or_else(|| super::error::ApiError::bad_request(format!("Invalid detach keys ({k}) provided"))),
        None if tty && stdin => Ok(vec![0x10, 0x11]),
        None => Ok(Vec::new()),
    }
}

/// Parses Docker's `detachKeys` (`ctrl-p,ctrl-q`, `a`, `ctrl-@`); `None` if malformed.
pub fn parse_detach_keys(spec: &str) -> Option<Vec<u8>> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let b = c.as_bytes()[0].to_ascii_lowercase();
                    match b {
                        b'a'..=b'z' => Some(b - b'a' + 1),
                        b'@' => Some(0),
                        b'[' => Some(27),
                        b'\\' => Some(28),
                        b']' => Some(29),
                        b'^' => Some(30),
                        b'_' => Some(31),
                        _ => None,
                    }
                }
                None if k.len() == 1 => Some(k.as_bytes()[0]),
                _ => None,
            }
        })
        .collect()
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("tty", &self.tty).field("stdin", &self.stdin).finish_non_exhaustive()
    }
}

/// Runs one hijacked session until the output ends (or the client goes away).
pub async fn run(upgraded: hyper::upgrade::Upgraded, session: Session) {
    let Session {
        tty,
        opts,
        prelude,
        feed: hub,
        stdin: want_stdin,
        close_stdin_on_eof,
        done,
        settle_before_replay,
        detach_keys,
        detach_message,
    } = session;
    let (detached_tx, mut detached) = tokio::sync::watch::channel(false);
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let (mut rd, mut wr) = tokio::io::split(io);
    let enc = move |ch: &Chunk| opts.wants(ch).then(|| if tty { ch.data.clone() } else { frame(ch.stream, &ch.data) });
    let (tx, mut out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    let writer = tokio::spawn(async move {
        while let Some(Ok(b)) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
            let _ = wr.flush().await;
        }
        let _ = wr.shutdown().await;
    });
    if settle_before_replay && !prelude.is_empty() {
        // Some clients (docker-py) read the 101 response through a buffered reader and then switch
        // to the bare socket: bytes that arrive together with the response are lost to them. A
        // short pause before replaying already-produced output keeps it in its own read.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for ch in prelude {
        if let Some(b) = enc(&ch) {
            let _ = tx.send(Ok(b)).await;
        }
    }
    let hub = hub.await;
    if settle_before_replay && hub.as_ref().is_some_and(|(_, early, _)| !early.is_empty()) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if let Some((hub, early, mut rx)) = hub {
        for ch in early {
            if let Some(b) = enc(&ch) {
                let _ = tx.send(Ok(b)).await;
            }
        }
        if want_stdin {
            let hub_in = hub.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                // Bytes that may be the start of the detach sequence are held back until known.
                let mut held: Vec<u8> = Vec::new();
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut out = Vec::with_capacity(n);
                            for &b in &buf[..n] {
                                held.push(b);
                                if detach_keys.is_empty() || !detach_keys.starts_with(&held) {
                                    out.append(&mut held);
                                } else if held.len() == detach_keys.len() {
                                    let _ = hub_in.write_stdin(&out).await;
                                    detached_tx.send_replace(true);
                                    return;
                                }
                            }
                            if hub_in.write_stdin(&out).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                if close_stdin_on_eof {
                    hub_in.close_stdin().await;
                }
            });
        }
        tokio::select! {
            _ = super::live_output::forward_live(&hub, &mut rx, enc, &tx) => {}
            _ = async {
                // Only a real detach ends the session; the stdin task ending (client EOF) does not.
                if detached.wait_for(|d| *d).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {}
        }
    }
    if *detached.borrow() {
        // The process goes on: the stream ends now (the client's later bytes must not sit unread
        // in a socket that closes, which would reset the connection under them).
        if let Some(m) = detach_message {
            let text = format!("{m}\r\n");
            let bytes =
                if tty { Bytes::from(text) } else { frame(crate::engine::containers::io::STDOUT, text.as_bytes()) };
            let _ = tx.send(Ok(bytes)).await;
        }
    } else if let Some(mut done) = done {
        // The client asks for the exit code as soon as the stream ends: record it first.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), async { done.wait_for(|d| *d).await.map(|_| ()) })
                .await;
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes an error message into a hijacked stream (framed as stdout without a TTY) and closes it.
pub async fn fail(upgraded: hyper::upgrade::Upgraded, tty: bool, message: &str) {
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    let text = format!("{message}\r\n");
    let bytes = if tty { Bytes::from(text) } else { frame(crate::engine::containers::io::STDOUT, text.as_bytes()) };
    let _ = io.write_all(&bytes).await;
    let _ = io.shutdown().await;
}

/// `POST …/resize?h=&w=` for a session's terminal (a session without one ignores it).
pub fn resize(hub: Option<Arc<IoHub>>, p: &super::params::Params) -> Result<(), super::error::ApiError> {
    use super::error::ApiError;
    let dim = |k: &str| {
        p.get(k)
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid or missing {k}")))
    };
    let (h, w) = (dim("h")?, dim("w")?);
    if let Some(hub) = hub {
        hub.resize(h, w).map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() })?;
    }
    Ok(())
}
