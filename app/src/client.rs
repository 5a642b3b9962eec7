//! The CLI's side of the daemon socket, and the checks `skiff start` makes through the Docker
//! socket itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::daemon::rpc::{DaemonRequest, DaemonResponse};

/// Sends one request to the daemon; `None` when no daemon listens.
pub fn call(socket: &Path, req: &DaemonRequest, patience: Duration) -> Option<Result<DaemonResponse, String>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    let _ = stream.set_read_timeout(Some(patience));
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        return Some(Err(format!("talking to the daemon: {e}")));
    }
    let mut answer = String::new();
    Some(match BufReader::new(stream).read_line(&mut answer) {
        Ok(0) => Err("the daemon closed the connection".into()),
        Ok(_) => serde_json::from_str(&answer).map_err(|e| format!("bad answer from the daemon: {e}")),
        Err(e) => Err(format!("waiting for the daemon: {e}")),
    })
}

/// `GET /version` through the Docker socket: the engine's version string.
pub fn docker_version(socket: &Path) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(b"GET /version HTTP/1.0\r\nHost: skiff\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("bad /version answer: {e}"))?;
    v.get("Version").and_then(|v| v.as_str()).map(str::to_owned).ok_or_else(|| "no Version in /version".into())
}
