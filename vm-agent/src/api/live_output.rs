//! Live output of a container or exec (attach, logs --follow) relayed to a client.

use std::sync::Arc;

use axum::body::Bytes;

use crate::engine::containers::io::{Chunk, IoHub};

/// Sends live chunks until every output stream of the run has ended.
pub(super) async fn forward_live(
    hub: &IoHub,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<Chunk>>,
    encode: impl Fn(&Chunk) -> Option<Bytes>,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
) {
    let mut finished = hub.finished();
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Ok(ch) => {
                    if let Some(b) = encode(&ch) {
                        if tx.send(Ok(b)).await.is_err() { return; }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
            r = async { finished.wait_for(|d| *d).await.map(|_| ()) } => {
                if r.is_err() { return; }
                while let Ok(ch) = rx.try_recv() {
                    if let Some(b) = encode(&ch) {
                        if tx.send(Ok(b)).await.is_err() { return; }
                    }
                }
                return;
            }
        }
    }
}
