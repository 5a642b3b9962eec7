//! `skiff-agent dial-stdio`: one connection to the engine's socket carried over this process's
//! stdin and stdout — the contract of `docker system dial-stdio`, which the docker CLI runs on the
//! far side of `docker -H ssh://HOST` (and which Skiff's WSL back end runs inside its distro).
//!
//! Bytes are relayed both ways; stdin's end is passed on as a half-close of the socket (the
//! engine still answers: `docker run -i` needs it), and the engine's end of the connection ends
//! the relay. When the binary is invoked as `docker` (a symlink, for hosts without the docker
//! CLI), it answers `docker [-H|--host URL] system dial-stdio` and nothing else.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The engine's socket when nothing names one (`skiff-agent serve`'s default).
pub const DEFAULT_SOCKET: &str = "/run/skiff/docker.sock";

/// Relays `input` → `stream` and `stream` → `output` until the engine ends the connection.
/// `input`'s end half-closes the stream's write side; the other direction keeps flowing.
pub fn relay<R, W>(stream: UnixStream, mut input: R, mut output: W) -> io::Result<()>
where
    R: Read + Send + 'static,
    W: Write,
{
    let mut to_engine = stream.try_clone()?;
    // Detached: once the engine has answered and closed, the process ends with stdin still open.
    std::thread::spawn(move || {
        let _ = io::copy(&mut input, &mut to_engine);
        let _ = to_engine.shutdown(Shutdown::Write);
    });
    let mut from_engine = stream;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_engine.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
        output.flush()?;
    }
    output.flush()
}

/// Connects to `socket` and relays this process's stdin and stdout.
pub fn run(socket: &Path) -> io::Result<()> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the engine at {}: {e}", socket.display())))?;
    relay(stream, io::stdin(), io::stdout().lock())
}

/// The socket a `docker`-style invocation names: `-H`/`--host` (`unix://PATH`), else
/// `DOCKER_HOST`, else [`DEFAULT_SOCKET`]. `Err` for anything but `[-H URL] system dial-stdio`.
pub fn docker_invocation(args: &[String], docker_host: Option<&str>) -> Result<PathBuf, String> {
    let mut host = docker_host.filter(|h| !h.is_empty()).map(str::to_string);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-H" | "--host" => host = Some(it.next().cloned().ok_or("--host needs a value")?),
            a if a.starts_with("--host=") => host = Some(a["--host=".len()..].to_string()),
            a => rest.push(a),
        }
    }
    if rest != ["system", "dial-stdio"] {
        return Err(format!(
            "this `docker` is skiff-agent: it serves only `docker system dial-stdio` (what `docker -H ssh://` runs \
             on this host); got `docker {}`. Install the docker CLI for other commands.",
            args.join(" ")
        ));
    }
    match host {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
            _ => Err(format!("{h}: skiff-agent dials only unix:// sockets")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn bytes_flow_both_ways_and_stdins_end_is_a_half_close() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        // An engine that reads the whole request (to the half-close), then answers and closes.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut request = Vec::new();
            conn.read_to_end(&mut request).unwrap_or_else(|e| panic!("{e}"));
            conn.write_all(&[b"got: ".as_slice(), &request].concat()).unwrap_or_else(|e| panic!("{e}"));
        });
        let stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        relay(stream, io::Cursor::new(b"GET /_ping".to_vec()), &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, b"got: GET /_ping");
        server.join().unwrap_or_else(|_| panic!("server thread"));
    }

    #[test]
    fn as_docker_it_answers_only_dial_stdio() {
        let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(docker_invocation(&args("system dial-stdio"), None), Ok(PathBuf::from(DEFAULT_SOCKET)));
        assert_eq!(
            docker_invocation(&args("--host unix:///run/x.sock system dial-stdio"), Some("unix:///ignored")),
            Ok(PathBuf::from("/run/x.sock"))
        );
        assert_eq!(docker_invocation(&args("system dial-stdio"), Some("unix:///e.sock")), Ok(PathBuf::from("/e.sock")));
        assert!(docker_invocation(&args("ps"), None).is_err_and(|e| e.contains("dial-stdio")));
        assert!(docker_invocation(&args("-H tcp://1.2.3.4:2375 system dial-stdio"), None).is_err());
    }
}
