//! Published ports through the VM, agent side (`skiff_proto::ports` has the protocol): requests
//! to the host daemon on one vsock connection, and the guest end of every forwarded connection
//! on [`FORWARD_PORT`], which connects to the container.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_proto::jsonl::JsonLines;
use skiff_proto::ports::{PortRequest, PortResponse, Proto, FORWARD_PORT};
use skiff_proto::stream::{read_frame, write_frame, MAX_FRAME};
use tokio::io::AsyncReadExt;
use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY, VMADDR_CID_HOST};

use super::NetError;

type Conn = JsonLines<VsockStream>;

/// The agent's side of the host's port service.
#[derive(Debug)]
pub struct Tunnel {
    host_port: u32,
    conn: tokio::sync::Mutex<Option<Conn>>,
    targets: Mutex<HashMap<u64, (Proto, SocketAddr)>>,
    next: AtomicU64,
}

impl Tunnel {
    /// A tunnel to the host daemon's port service on host vsock port `host_port`; starts
    /// accepting forwarded connections.
    pub fn start(host_port: u32) -> std::io::Result<Arc<Self>> {
        let tunnel = Arc::new(Self {
            host_port,
            conn: tokio::sync::Mutex::new(None),
            targets: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, FORWARD_PORT))?;
        let t = tunnel.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(forwarded(stream, t.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "forwarded-port accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(tunnel)
    }

    fn target(&self, id: u64) -> Option<(Proto, SocketAddr)> {
        self.targets.lock().map(|t| t.get(&id).copied()).unwrap_or(None)
    }

    async fn request(&self, req: &PortRequest) -> Result<PortResponse, NetError> {
        let mut conn = self.conn.lock().await;
        // One retry on a fresh connection: the host may have dropped an idle one.
        for attempt in 0..2 {
            if conn.is_none() {
                let stream = VsockStream::connect(VsockAddr::new(VMADDR_CID_HOST, self.host_port))
                    .await
                    .map_err(|e| NetError::Internal(format!("reaching the host's port service: {e}")))?;
                *conn = Some(JsonLines::new(stream));
            }
            let Some(channel) = conn.as_mut() else { continue };
            match channel.call::<_, PortResponse>(req).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(NetError::Internal(format!("bad answer from the host's port service: {e}")));
                }
                _ if attempt == 0 => *conn = None,
                Err(e) => return Err(NetError::Internal(format!("talking to the host's port service: {e}"))),
            }
        }
        Err(NetError::Internal("the host's port service is unreachable".into()))
    }

    /// Asks the host to listen on `host_ip` (a port in `first..=last`) for `target`.
    pub async fn publish(
        &self,
        proto: Proto,
        host_ip: IpAddr,
        first: u16,
        last: u16,
        target: SocketAddr,
    ) -> Result<(u16, u64), NetError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.targets.lock() {
            t.insert(id, (proto, target));
        }
        let answer = self.request(&PortRequest::Publish { id, proto, host_ip, first, last }).await;
        match answer {
            Ok(PortResponse::Published { port }) => Ok((port, id)),
            other => {
                if let Ok(mut t) = self.targets.lock() {
                    t.remove(&id);
                }
                match other {
                    Ok(PortResponse::Error { message }) if message.contains("in use") => {
                        Err(NetError::port_in_use(host_ip, first, last))
                    }
                    Ok(PortResponse::Error { message }) => Err(NetError::Internal(message)),
                    Ok(r) => Err(NetError::Internal(format!("unexpected answer from the host: {r:?}"))),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Releases binding `id` (in the background: called from drops).
    pub fn unpublish(self: &Arc<Self>, id: u64) {
        if let Ok(mut t) = self.targets.lock() {
            t.remove(&id);
        }
        let t = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = t.request(&PortRequest::Unpublish { id }).await {
                    tracing::warn!(error = %e, id, "releasing a published port");
                }
            });
        }
    }
}

/// One connection from the host: its binding's id, then frames.
async fn forwarded(mut stream: VsockStream, tunnel: Arc<Tunnel>) {
    let mut id = [0u8; 8];
    if stream.read_exact(&mut id).await.is_err() {
        return;
    }
    let Some((proto, target)) = tunnel.target(u64::from_be_bytes(id)) else { return };
    match proto {
        Proto::Tcp => {
            let Ok(conn) = tokio::net::TcpStream::connect(target).await else { return };
            let _ = conn.set_nodelay(true);
            if let Err(e) = skiff_proto::stream::relay(stream, conn).await {
                tracing::debug!(error = %e, %target, "forwarded connection ended");
            }
        }
        Proto::Udp => {
            let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
            let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else { return };
            if socket.connect(target).await.is_err() {
                return;
            }
            let (mut rx, mut tx) = tokio::io::split(stream);
            let inbound = async {
                let mut buf = vec![0u8; MAX_FRAME];
                while let Ok(Some(n)) = read_frame(&mut rx, &mut buf).await {
                    let _ = socket.send(&buf[..n]).await;
                }
            };
            let outbound = async {
                let mut buf = vec![0u8; MAX_FRAME];
                while let Ok(n) = socket.recv(&mut buf).await {
                    if n > 0 && write_frame(&mut tx, &buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            // The host closes the stream when the peer's mapping expires.
            tokio::select! {
                _ = inbound => {}
                _ = outbound => {}
            }
        }
    }
}
