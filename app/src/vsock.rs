//! Reaching the guest's vsock ports from the host.
//!
//! With the kernel's vhost-vsock (`/dev/vhost-vsock`) the host opens AF_VSOCK sockets to the
//! guest's CID. Without it, `vhost-device-vsock` exposes the guest as a Unix socket speaking the
//! "hybrid vsock" handshake of Firecracker and cloud-hypervisor: `CONNECT <port>\n`, answered by
//! `OK <host port>\n`, then the raw byte stream.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A connected stream to a guest port.
pub trait GuestStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> GuestStream for T {}

/// How this host reaches the guest.
#[derive(Debug, Clone)]
pub enum Vsock {
    /// vhost-device-vsock's Unix socket.
    Hybrid(PathBuf),
    /// Kernel AF_VSOCK to this CID.
    Kernel(u32),
    /// Virtualization.framework's vsock device (macOS).
    #[cfg(target_os = "macos")]
    Vz(std::sync::Arc<crate::hypervisor::vz::machine::VzSockets>),
}

impl Vsock {
    /// Connects to guest `port` (fails at once if nothing listens there yet).
    pub async fn connect(&self, port: u32) -> io::Result<Box<dyn GuestStream>> {
        match self {
            Vsock::Hybrid(path) => {
                let mut s = tokio::net::UnixStream::connect(path).await?;
                s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
                // Read the answer byte by byte: whatever follows the line belongs to the stream.
                let mut line = Vec::with_capacity(16);
                let mut byte = [0u8; 1];
                while line.len() < 64 {
                    if s.read(&mut byte).await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!("nothing listens on guest vsock port {port} yet"),
                        ));
                    }
                    if byte[0] == b'\n' {
                        break;
                    }
                    line.push(byte[0]);
                }
                if !line.starts_with(b"OK ") {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("vsock CONNECT {port}: {}", String::from_utf8_lossy(&line)),
                    ));
                }
                Ok(Box::new(s))
            }
            Vsock::Kernel(cid) => {
                let s = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, port)).await?;
                Ok(Box::new(s))
            }
            #[cfg(target_os = "macos")]
            Vsock::Vz(sockets) => sockets.connect(port).await,
        }
    }

    /// Connects to `port`, retrying while the guest is not listening yet, up to `patience`.
    pub async fn connect_retrying(&self, port: u32, patience: Duration) -> io::Result<Box<dyn GuestStream>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let last = match tokio::time::timeout(Duration::from_secs(2), self.connect(port)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_owned(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("guest vsock port {port} did not answer within {} s ({last})", patience.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Where the host accepts connections the guest opens to host port `port`.
pub enum HostListener {
    /// vhost-device-vsock connects guest→host streams to `<uds>_<port>`.
    Hybrid(tokio::net::UnixListener),
    Kernel(tokio_vsock::VsockListener),
    /// Connections the framework's listener delegate accepted (macOS).
    #[cfg(target_os = "macos")]
    Vz(tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<tokio::net::UnixStream>>),
}

impl std::fmt::Debug for HostListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostListener::Hybrid(_) => "HostListener::Hybrid",
            HostListener::Kernel(_) => "HostListener::Kernel",
            #[cfg(target_os = "macos")]
            HostListener::Vz(_) => "HostListener::Vz",
        })
    }
}

impl HostListener {
    /// Binds host `port` for the given transport (before the guest boots).
    pub fn bind(vsock: &Vsock, port: u32) -> io::Result<Self> {
        match vsock {
            Vsock::Hybrid(uds) => {
                let path = PathBuf::from(format!("{}_{port}", uds.display()));
                let _ = std::fs::remove_file(&path);
                Ok(HostListener::Hybrid(tokio::net::UnixListener::bind(path)?))
            }
            Vsock::Kernel(_) => Ok(HostListener::Kernel(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port),
            )?)),
            #[cfg(target_os = "macos")]
            Vsock::Vz(sockets) => Ok(HostListener::Vz(tokio::sync::Mutex::new(sockets.listen(port)?))),
        }
    }

    /// The next connection from the guest.
    pub async fn accept(&self) -> io::Result<Box<dyn GuestStream>> {
        match self {
            HostListener::Hybrid(l) => Ok(Box::new(l.accept().await?.0)),
            HostListener::Kernel(l) => Ok(Box::new(l.accept().await?.0)),
            #[cfg(target_os = "macos")]
            HostListener::Vz(rx) => match rx.lock().await.recv().await {
                Some(s) => Ok(Box::new(s)),
                None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the VM's vsock listener is gone")),
            },
        }
    }
}
