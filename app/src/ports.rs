//! Published ports, host side (`skiff_proto::ports` has the protocol). The agent asks over one
//! guest→host connection; each binding becomes a listener here, on the address the user asked
//! for, and every accepted connection (or new UDP peer) is carried over its own vsock stream to
//! the agent, which connects to the container. It works the same for any hypervisor back end,
//! since it only needs guest ports. Closing the request connection (the VM stopped) drops every
//! listener and connection.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::jsonl::JsonLines;
use skiff_proto::ports::{PortRequest, PortResponse, Proto, FORWARD_PORT};
use skiff_proto::proxy;
use skiff_proto::stream::{read_frame, write_frame, MAX_FRAME};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::vsock::{GuestStream, HostListener, Vsock};

/// Serves the agent's requests arriving on `listener` until the VM goes away.
pub fn serve(listener: HostListener, vsock: Arc<Vsock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    tokio::spawn(session(stream, vsock.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "port service accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

async fn session(stream: Box<dyn GuestStream>, vsock: Arc<Vsock>) {
    let mut channel = JsonLines::new(stream);
    let mut bindings: HashMap<u64, AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    while let Some(request) = channel.next::<PortRequest>().await {
        let answer = match request {
            Ok(PortRequest::Publish { id, proto, host_ip, first, last }) => {
                match bind(proto, host_ip, first, last).await {
                    Ok((port, bound)) => {
                        let vsock = vsock.clone();
                        let handle = match bound {
                            Bound::Tcp(l) => tasks.spawn(serve_tcp(l, vsock, id)),
                            Bound::Udp(s) => tasks.spawn(serve_udp(Arc::new(s), vsock, id)),
                        };
                        if let Some(old) = bindings.insert(id, handle) {
                            old.abort();
                        }
                        tracing::info!(id, proto = proto.as_str(), %host_ip, port, "published a port");
                        PortResponse::Published { port }
                    }
                    Err(e) => PortResponse::Error { message: e.to_string() },
                }
            }
            Ok(PortRequest::Unpublish { id }) => {
                if let Some(h) = bindings.remove(&id) {
                    h.abort();
                }
                PortResponse::Unpublished
            }
            Err(e) => PortResponse::Error { message: format!("bad request: {e}") },
        };
        if channel.send(&answer).await.is_err() {
            break;
        }
    }
    // The agent (or the VM) went away: every listener goes with it.
    tasks.abort_all();
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the first free port of `first..=last` (`0`: any) on `ip`.
async fn bind(proto: Proto, ip: IpAddr, first: u16, last: u16) -> io::Result<(u16, Bound)> {
    let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, "address in use");
    for port in first..=last.max(first) {
        let addr = SocketAddr::new(ip, port);
        let bound = match proto {
            Proto::Tcp => TcpListener::bind(addr).await.map(Bound::Tcp),
            Proto::Udp => UdpSocket::bind(addr).await.map(Bound::Udp),
        };
        match bound {
            Ok(b) => {
                let actual = match &b {
                    Bound::Tcp(l) => l.local_addr()?.port(),
                    Bound::Udp(s) => s.local_addr()?.port(),
                };
                return Ok((actual, b));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                last_err = io::Error::new(io::ErrorKind::AddrInUse, format!("{addr}: address in use"));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{addr}: {e}"))),
        }
    }
    Err(last_err)
}

/// Opens the guest end for binding `id`.
async fn open_guest(vsock: &Vsock, id: u64) -> io::Result<Box<dyn GuestStream>> {
    let mut guest = vsock.connect(FORWARD_PORT).await?;
    guest.write_all(&id.to_be_bytes()).await?;
    Ok(guest)
}

/// Each connection becomes a vsock stream into the guest (framed, half-close preserved).
async fn serve_tcp(listener: TcpListener, vsock: Arc<Vsock>, id: u64) {
    proxy::serve_tcp(listener, move |client| {
        let vsock = vsock.clone();
        async move {
            match open_guest(&vsock, id).await {
                Ok(guest) => {
                    if let Err(e) = skiff_proto::stream::relay(guest, client).await {
                        tracing::debug!(error = %e, "forwarded connection ended");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reaching the guest for a published port"),
            }
        }
    })
    .await;
}

/// Each UDP peer gets a vsock stream into the guest carrying its datagrams as frames.
async fn serve_udp(socket: Arc<UdpSocket>, vsock: Arc<Vsock>, id: u64) {
    let replies_to = socket.clone();
    proxy::serve_udp(socket, move |peer, rx| udp_peer(vsock.clone(), id, replies_to.clone(), peer, rx)).await;
}

/// One UDP peer's stream to the guest: datagrams as frames both ways, until idle.
async fn udp_peer(
    vsock: Arc<Vsock>,
    id: u64,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let Ok(guest) = open_guest(&vsock, id).await else { return };
    let (mut grx, mut gtx) = tokio::io::split(guest);
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => if write_frame(&mut gtx, &d).await.is_err() { return },
                None => return,
            },
            f = read_frame(&mut grx, &mut buf) => match f {
                Ok(Some(n)) => { let _ = socket.send_to(&buf[..n], peer).await; }
                _ => return,
            },
            _ = tokio::time::sleep(proxy::UDP_IDLE) => return,
        }
    }
}
