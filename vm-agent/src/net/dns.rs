//! The embedded DNS server of containers on user-defined networks, as Docker has it: it listens
//! on 127.0.0.11:53 (UDP and TCP) *inside* each such container's network namespace, answers
//! the names of containers that share a network with the asker (names, aliases, network-scoped
//! aliases) and relays every other query, unchanged, to the engine's own upstream resolvers.
//! Messages are parsed and built with `hickory-proto`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::netns::Netns;
use super::NetError;

/// The address containers send queries to (their resolv.conf names it).
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// Answers' time to live (Docker's).
const TTL: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// Looks names up for one asking container.
pub trait Names: Send + Sync + std::fmt::Debug {
    /// The addresses `name` (lower case, no trailing dot) has for `asker`, or `None` when it is
    /// not a container name this engine knows (the query goes upstream then).
    fn lookup(&self, asker: &str, name: &str) -> Option<Vec<std::net::IpAddr>>;
}

/// The nameservers in a resolv.conf (where upstream queries go).
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct DnsServer {
    _tasks: JoinSet<()>,
}

/// Context shared by a server's tasks.
#[derive(Debug)]
struct Ctx {
    asker: String,
    names: Arc<dyn Names>,
    upstream: Vec<SocketAddr>,
}

/// Starts a server for `asker` inside `netns` (whose `lo` must be up).
pub fn serve(
    netns: &Netns,
    asker: &str,
    names: Arc<dyn Names>,
    upstream: Vec<SocketAddr>,
) -> Result<DnsServer, NetError> {
    let addr = SocketAddr::from((RESOLVER_IP, 53));
    let (udp, tcp) = netns
        .run(move || -> std::io::Result<_> {
            let udp = std::net::UdpSocket::bind(addr)?;
            udp.set_nonblocking(true)?;
            let tcp = std::net::TcpListener::bind(addr)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })
        .and_then(|r| r)
        .map_err(|e| NetError::Internal(format!("starting the container's DNS server: {e}")))?;
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| NetError::Internal(e.to_string()))?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| NetError::Internal(e.to_string()))?;
    let ctx = Arc::new(Ctx { asker: asker.to_string(), names, upstream });
    let mut tasks = JoinSet::new();
    tasks.spawn(serve_udp(udp, ctx.clone()));
    tasks.spawn(serve_tcp(tcp, ctx));
    Ok(DnsServer { _tasks: tasks })
}

async fn serve_udp(socket: tokio::net::UdpSocket, ctx: Arc<Ctx>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
        let query = buf[..n].to_vec();
        let (socket, ctx) = (socket.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&query, &ctx).await {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&query, &ctx).await else { return };
                let Ok(n) = u16::try_from(reply.len()) else { return };
                if stream.write_all(&n.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The reply to one query message: ours for container names, the upstream's otherwise.
async fn answer(query: &[u8], ctx: &Ctx) -> Option<Vec<u8>> {
    let msg = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // Unparseable: a FORMERR if at least the id is there.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, hickory_proto::op::OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
    };
    if msg.message_type() != MessageType::Query {
        return None;
    }
    if let Some(reply) = local_answer(&msg, ctx) {
        return Some(reply);
    }
    match forward(query, &ctx.upstream).await {
        Some(r) => Some(r),
        None => Message::error_msg(msg.id(), msg.op_code(), ResponseCode::ServFail).to_vec().ok(),
    }
}

fn local_answer(msg: &Message, ctx: &Ctx) -> Option<Vec<u8>> {
    let q = msg.queries().first()?;
    if q.query_class() != DNSClass::IN || !matches!(q.query_type(), RecordType::A | RecordType::AAAA | RecordType::ANY)
    {
        return None;
    }
    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let ips = ctx.names.lookup(&ctx.asker, &name)?;
    let mut reply = Message::new();
    reply
        .set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_op_code(msg.op_code())
        .set_authoritative(true)
        .set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(q.clone());
    // A name with no address of the asked family gets an empty, successful answer.
    for ip in ips {
        let data = match (ip, q.query_type()) {
            (std::net::IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            (std::net::IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(q.name().clone(), TTL, data));
    }
    reply.to_vec().ok()
}

/// Relays `query` to each upstream in turn until one answers.
async fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else { continue };
        if socket.connect(server).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    #[derive(Debug)]
    struct Fixed;
    impl Names for Fixed {
        fn lookup(&self, asker: &str, name: &str) -> Option<Vec<std::net::IpAddr>> {
            let both =
                [Ipv4Addr::new(172, 18, 0, 2).into(), std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into()];
            match (asker, name) {
                ("me", "web") => Some(both[..1].to_vec()),
                ("me", "dual") => Some(both.to_vec()),
                _ => None,
            }
        }
    }

    fn query(name: &str, typ: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(42).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap_or_default(), typ));
        m.to_vec().unwrap_or_default()
    }

    fn ctx(upstream: Vec<SocketAddr>) -> Ctx {
        Ctx { asker: "me".into(), names: Arc::new(Fixed), upstream }
    }

    #[tokio::test]
    async fn answers_container_names_and_relays_the_rest() -> Result<(), Box<dyn std::error::Error>> {
        let reply = Message::from_vec(&answer(&query("WEB.", RecordType::A), &ctx(vec![])).await.ok_or("no reply")?)?;
        assert_eq!(reply.id(), 42);
        assert_eq!(reply.answers().len(), 1);
        assert_eq!(reply.answers()[0].data(), &RData::A(A(Ipv4Addr::new(172, 18, 0, 2))));
        let aaaa = Message::from_vec(&answer(&query("web.", RecordType::AAAA), &ctx(vec![])).await.ok_or("no reply")?)?;
        assert_eq!((aaaa.response_code(), aaaa.answers().len()), (ResponseCode::NoError, 0));
        // A container with IPv6 answers AAAA questions with its IPv6 address, A ones with its IPv4.
        let dual =
            Message::from_vec(&answer(&query("dual.", RecordType::AAAA), &ctx(vec![])).await.ok_or("no reply")?)?;
        assert_eq!(dual.answers().len(), 1);
        assert_eq!(dual.answers()[0].data(), &RData::AAAA(AAAA(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))));
        let dual4 = Message::from_vec(&answer(&query("dual.", RecordType::A), &ctx(vec![])).await.ok_or("no reply")?)?;
        assert_eq!(dual4.answers().len(), 1);

        // Any other name goes to the upstream, whose answer comes back unchanged.
        let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = upstream.local_addr()?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            if let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
                if let Ok(mut m) = Message::from_vec(&buf[..n]) {
                    m.set_message_type(MessageType::Response).set_response_code(ResponseCode::NXDomain);
                    let _ = upstream.send_to(&m.to_vec().unwrap_or_default(), peer).await;
                }
            }
        });
        let other = answer(&query("example.invalid.", RecordType::A), &ctx(vec![addr])).await.ok_or("no reply")?;
        assert_eq!(Message::from_vec(&other)?.response_code(), ResponseCode::NXDomain);

        // No upstream reachable: SERVFAIL, never silence. Garbage: FORMERR.
        let none = answer(&query("example.invalid.", RecordType::A), &ctx(vec![])).await.ok_or("no reply")?;
        assert_eq!(Message::from_vec(&none)?.response_code(), ResponseCode::ServFail);
        let bad = answer(&[0, 7, 0xff], &ctx(vec![])).await.ok_or("no reply")?;
        assert_eq!(Message::from_vec(&bad)?.response_code(), ResponseCode::FormErr);
        Ok(())
    }

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let got = upstreams("# c\nnameserver 10.0.2.3\nsearch x\nnameserver ::1\nnameserver bogus\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], SocketAddr::from(([10, 0, 2, 3], 53)));
    }
}
