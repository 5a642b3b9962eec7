//! The one published-port proxy: a TCP listener or UDP socket on one side, whatever carries the
//! traffic on the other (a direct connection natively, a vsock stream from the host into the VM).
//! The accept loop and the per-peer UDP table live here; each end supplies how one connection or
//! one UDP peer reaches its target.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a UDP peer's mapping lives without traffic.
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// The largest datagram relayed.
pub const MAX_DATAGRAM: usize = 65536;

/// Accepts connections for ever; each is handed to `handle` on its own task (tasks end with the
/// proxy when it is aborted).
pub async fn serve_tcp<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                conns.spawn(handle(client));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Receives datagrams for ever; each client address gets its own peer task (made by `open_peer`
/// with the channel its datagrams arrive on), so replies find their way back. A peer task ends
/// when it has been idle for [`UDP_IDLE`]; the next datagram from that address makes a new one.
pub async fn serve_udp<H, F>(socket: Arc<UdpSocket>, open_peer: H)
where
    H: Fn(SocketAddr, mpsc::Receiver<Vec<u8>>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, peer)) = got else { continue };
                let datagram = buf[..n].to_vec();
                if let Some(tx) = peers.get(&peer) {
                    if tx.send(datagram.clone()).await.is_ok() {
                        continue;
                    }
                }
                let (tx, rx) = mpsc::channel(256);
                let _ = tx.send(datagram).await;
                peers.insert(peer, tx);
                tasks.spawn(open_peer(peer, rx));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                peers.retain(|_, tx| !tx.is_closed());
            }
        }
    }
}
