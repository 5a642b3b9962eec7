//! One client connection carried by one dial-stdio process: the client's bytes to its stdin
//! (the client's half-close closes stdin, which dial-stdio passes on as the socket's), its stdout
//! back to the client (then the client's write side is shut).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Relays until the engine's side ends; the process is reaped (or killed) before returning.
pub async fn relay<S>(client: S, mut child: tokio::process::Child) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("dial-stdio has no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("dial-stdio has no stdout"))?;
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
    });
    let result = tokio::io::copy(&mut stdout, &mut to_client).await;
    let _ = to_client.shutdown().await;
    upstream.abort();
    if tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    result.map(drop)
}
