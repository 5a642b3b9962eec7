//! The user's Docker endpoint for the WSL engine: the named pipe `\\.\pipe\skiff_engine` on
//! Windows (what `npipe:////./pipe/skiff_engine` reaches), a Unix socket elsewhere (Linux tests
//! drive the back end through one). Each connection gets its own dial-stdio process.

use std::sync::Arc;

use super::commands::WslCommands;
use super::WslEngine;

/// The named pipe Windows clients use.
pub const PIPE_NAME: &str = r"\\.\pipe\skiff_engine";

/// The docker CLI's address for [`PIPE_NAME`].
pub const PIPE_HOST: &str = "npipe:////./pipe/skiff_engine";

async fn handle<S, W>(conn: S, engine: Arc<WslEngine<W>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    W: WslCommands + 'static,
{
    match engine.dial() {
        Ok(child) => {
            if let Err(e) = super::relay::relay(conn, child).await {
                tracing::debug!(error = %e, "docker connection ended abruptly");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach the engine in WSL"),
    }
}

/// Accepts on a Unix socket forever.
#[cfg(unix)]
pub async fn serve_unix<W: WslCommands + 'static>(listener: tokio::net::UnixListener, engine: Arc<WslEngine<W>>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(handle(conn, engine.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the docker socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the named pipe `name` forever: one pipe instance waits for the next client while
/// earlier ones are relayed. Fails only if the first instance cannot be made (e.g. another
/// engine owns the name).
#[cfg(windows)]
pub async fn serve_pipe<W: WslCommands + 'static>(name: &str, engine: Arc<WslEngine<W>>) -> std::io::Result<()> {
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
        tokio::spawn(handle(conn, engine.clone()));
    }
}
