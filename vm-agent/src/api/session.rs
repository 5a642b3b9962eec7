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

/// Runs one hijacked session until the output ends (or the client goes away).
pub async fn run(
    upgraded: hyper::upgrade::Upgraded,
    tty: bool,
    opts: LogOptions,
    prelude: Vec<Arc<Chunk>>,
    hub: Option<Feed>,
    want_stdin: bool,
    close_stdin_on_eof: bool,
) {
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
    for ch in prelude {
        if let Some(b) = enc(&ch) {
            let _ = tx.send(Ok(b)).await;
        }
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
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if hub_in.write_stdin(&buf[..n]).await.is_err() {
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
        super::containers::forward_live(&hub, &mut rx, enc, &tx).await;
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
