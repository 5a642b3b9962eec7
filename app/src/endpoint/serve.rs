//! Accept loops: a Unix socket, or on Windows the named pipe `\\.\pipe\skiff_engine` (what
//! `npipe:////./pipe/skiff_engine` reaches). Each connection gets its own upstream.

use std::sync::Arc;

use super::Dial;

/// The named pipe Windows clients use.
pub const PIPE_NAME: &str = r"\\.\pipe\skiff_engine";

/// The docker CLI's address for [`PIPE_NAME`].
pub const PIPE_HOST: &str = "npipe:////./pipe/skiff_engine";

/// Relays one accepted connection.
pub async fn handle<S>(conn: S, dial: Arc<dyn Dial>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match dial.dial() {
        Ok(upstream) => {
            if let Err(e) = super::relay::relay(conn, upstream).await {
                tracing::debug!(error = %e, "docker connection ended abruptly");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach the engine"),
    }
}

/// Accepts on a Unix socket forever.
#[cfg(unix)]
pub async fn serve_unix(listener: tokio::net::UnixListener, dial: Arc<dyn Dial>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(handle(conn, dial.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the docker socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the named pipe `name` forever: one pipe instance waits for the next client while
/// earlier ones are relayed. Fails only if an instance cannot be made (the first: another engine
/// owns the name).
#[cfg(windows)]
pub async fn serve_pipe(name: &str, dial: Arc<dyn Dial>) -> std::io::Result<()> {
    use tokio::net::windows::named_pipe::ServerOptions;
    let mut server = ServerOptions::new().first_pipe_instance(true).create(name)?;
    loop {
        if let Err(e) = server.connect().await {
            tracing::warn!(error = %e, "accept on the docker pipe failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        let next = ServerOptions::new().create(name)?;
        let conn = std::mem::replace(&mut server, next);
        tokio::spawn(handle(conn, dial.clone()));
    }
}

#[cfg(all(test, windows))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An engine double on an in-process stream: reads one request's head and answers as the
    /// engine's `/_ping` does.
    struct PingEngine;

    impl Dial for PingEngine {
        fn dial(&self) -> std::io::Result<super::super::Upstream> {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(theirs);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let ok = request.starts_with(b"GET /_ping HTTP/1.1\r\n");
                let answer: &[u8] = if ok {
                    b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Length: 2\r\n\r\nOK"
                } else {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = w.write_all(answer).await;
                let _ = w.shutdown().await;
            });
            Ok(super::super::Upstream::of_stream(ours))
        }
    }

    #[tokio::test]
    async fn a_named_pipe_carries_docker_api_traffic_both_ways_with_half_close() {
        let name = format!(r"\\.\pipe\skiff_test_{}", std::process::id());
        let server = tokio::spawn({
            let name = name.clone();
            async move { serve_pipe(&name, Arc::new(PingEngine)).await }
        });
        let mut client = loop {
            match tokio::net::windows::named_pipe::ClientOptions::new().open(&name) {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        client.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n").await.unwrap_or_else(|e| panic!("{e}"));
        // A named pipe has no half-close: the engine answers once the request's head is in.
        let mut answer = vec![0u8; 256];
        let n = client.read(&mut answer).await.unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with("OK"), "{text}");
        server.abort();
    }
}
