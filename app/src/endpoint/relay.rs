//! One client connection relayed to one [`Upstream`]: the client's bytes to the engine, whose
//! writer is closed at the client's half-close (a `dial-stdio` passes that on as the socket's);
//! the engine's bytes back, then the client's write side is shut.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Upstream;

/// Relays until the engine's side ends; a carrying process is reaped (or killed) before returning.
pub async fn relay<S>(client: S, upstream: Upstream) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Upstream { mut from_engine, mut to_engine, process } = upstream;
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let forward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_engine).await;
        let _ = to_engine.shutdown().await;
        drop(to_engine);
    });
    let result = tokio::io::copy(&mut from_engine, &mut to_client).await;
    let _ = to_client.shutdown().await;
    forward.abort();
    if let Some(mut child) = process {
        if tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    result.map(drop)
}
