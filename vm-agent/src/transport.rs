//! The engine API on vsock: every connection carries [`skiff_proto::stream`] frames (so a
//! half-close survives any vsock back end) and is relayed to an in-memory pipe that the HTTP
//! server reads like a socket.

use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_vsock::{VsockAddr, VsockListener, VMADDR_CID_ANY};

/// Connections waiting for the HTTP server (they queue while the engine is still opening).
#[derive(Debug)]
pub struct RelayListener {
    rx: mpsc::Receiver<DuplexStream>,
}

impl axum::serve::Listener for RelayListener {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(io) => (io, ()),
            // The vsock listener is gone: nothing will ever connect again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(())
    }
}

/// Binds vsock `port` now and relays each connection into the returned listener.
pub fn listen(port: u32) -> std::io::Result<RelayListener> {
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))?;
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, port, "vsock accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (server_end, relay_end) = tokio::io::duplex(256 * 1024);
            if tx.send(server_end).await.is_err() {
                return;
            }
            tokio::spawn(async move {
                if let Err(e) = skiff_proto::stream::relay(stream, relay_end).await {
                    tracing::debug!(error = %e, "API connection ended abruptly");
                }
            });
        }
    });
    Ok(RelayListener { rx })
}
