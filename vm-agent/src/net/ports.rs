//! Published ports: what `-p`/`-P` asked for, and the two ways of serving them. Natively the
//! engine listens on the host itself and proxies each connection (or UDP peer) to the
//! container; in the VM it asks the host daemon to listen ([`super::tunnel`]), and connections
//! arrive over vsock. Either way a [`PortGuard`] owns the listener: dropping it (the container
//! stopped) frees the host port and ends its connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
pub use skiff_proto::ports::Proto;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use skiff_proto::proxy;
use tokio::sync::mpsc;

use super::tunnel::Tunnel;
use super::NetError;

/// One requested binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// TCP or UDP.
    pub proto: Proto,
    /// The container's port.
    pub container_port: u16,
    /// Host address as asked (`None`: the default).
    pub host_ip: Option<IpAddr>,
    /// First acceptable host port (0: any).
    pub first: u16,
    /// Last acceptable host port.
    pub last: u16,
}

/// A binding in effect, as `docker port` and inspect report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedPort {
    /// TCP or UDP.
    pub proto: Proto,
    /// The container's port.
    pub container_port: u16,
    /// The host address listened on.
    pub host_ip: IpAddr,
    /// The host port listened on.
    pub host_port: u16,
}

fn parse_key(key: &str) -> Result<(u16, Proto), NetError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(NetError::Invalid(format!(
                "invalid proto '{other}' in port {key}: only tcp and udp are supported"
            )))
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| NetError::Invalid(format!("invalid containerPort: {port}")))?;
    Ok((port, proto))
}

fn parse_host_port(s: &str) -> Result<(u16, u16), NetError> {
    let bad = || NetError::Invalid(format!("invalid hostPort: {s}"));
    if s.is_empty() {
        return Ok((0, 0));
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?);
    if a > b || (a == 0 && b != 0) {
        return Err(bad());
    }
    Ok((a, b))
}

/// The bindings a container asks for: `PortBindings`, plus every exposed port with `-P`.
pub fn requested(host: &HostConfig, config: &ContainerConfig) -> Result<Vec<PortSpec>, NetError> {
    let mut out = Vec::new();
    let bindings = host.port_bindings.clone().unwrap_or_default();
    let mut keys: Vec<&String> = bindings.keys().collect();
    keys.sort();
    for key in keys {
        let (container_port, proto) = parse_key(key)?;
        for b in bindings.get(key).cloned().flatten().unwrap_or_default() {
            let host_ip = match b.host_ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(
                    s.trim_matches(|c| c == '[' || c == ']')
                        .parse::<IpAddr>()
                        .map_err(|_| NetError::Invalid(format!("invalid host IP address: {s}")))?,
                ),
            };
            let (first, last) = parse_host_port(b.host_port.as_deref().unwrap_or("").trim())?;
            out.push(PortSpec { proto, container_port, host_ip, first, last });
        }
    }
    if host.publish_all_ports.unwrap_or(false) {
        for key in config.exposed_ports.clone().unwrap_or_default() {
            let (container_port, proto) = parse_key(&key)?;
            if !out.iter().any(|p| p.container_port == container_port && p.proto == proto) {
                out.push(PortSpec { proto, container_port, host_ip: None, first: 0, last: 0 });
            }
        }
    }
    Ok(out)
}

/// Who listens on the host.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// This process, in its own network namespace (native Linux).
    Local,
    /// The VM's host daemon, asked over vsock.
    Tunnel(Arc<Tunnel>),
}

/// Keeps a binding alive; dropping it releases the host port.
#[derive(Debug)]
pub enum PortGuard {
    /// The listener task (and its connections) of a local binding.
    Local(JoinSet<()>),
    /// A binding held by the host daemon.
    Tunnel(Arc<Tunnel>, u64),
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        if let PortGuard::Tunnel(t, id) = self {
            t.unpublish(*id);
        }
    }
}

impl Publisher {
    /// The address a binding without one listens on: every address natively (as Docker), the
    /// host's loopback through the VM (so a laptop does not expose containers to its network
    /// unless asked to with an explicit `0.0.0.0:`).
    pub fn default_ip(&self) -> IpAddr {
        match self {
            Publisher::Local => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Publisher::Tunnel(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Starts serving `spec`, forwarding to `target` (the container's address and port).
    pub async fn publish(&self, spec: &PortSpec, target: SocketAddr) -> Result<(PublishedPort, PortGuard), NetError> {
        let host_ip = spec.host_ip.unwrap_or_else(|| self.default_ip());
        match self {
            Publisher::Local => {
                let (port, guard) = publish_local(spec, host_ip, target).await?;
                Ok((
                    PublishedPort { proto: spec.proto, container_port: spec.container_port, host_ip, host_port: port },
                    guard,
                ))
            }
            Publisher::Tunnel(t) => {
                let (port, id) = t.publish(spec.proto, host_ip, spec.first, spec.last, target).await?;
                Ok((
                    PublishedPort { proto: spec.proto, container_port: spec.container_port, host_ip, host_port: port },
                    PortGuard::Tunnel(t.clone(), id),
                ))
            }
        }
    }
}

async fn publish_local(spec: &PortSpec, host_ip: IpAddr, target: SocketAddr) -> Result<(u16, PortGuard), NetError> {
    let mut tasks = JoinSet::new();
    for port in spec.first..=spec.last {
        let addr = SocketAddr::new(host_ip, port);
        match spec.proto {
            Proto::Tcp => {
                if let Ok(l) = TcpListener::bind(addr).await {
                    let port = l.local_addr().map(|a| a.port()).unwrap_or(port);
                    tasks.spawn(serve_tcp(l, target));
                    return Ok((port, PortGuard::Local(tasks)));
                }
            }
            Proto::Udp => {
                if let Ok(s) = UdpSocket::bind(addr).await {
                    let port = s.local_addr().map(|a| a.port()).unwrap_or(port);
                    tasks.spawn(serve_udp(Arc::new(s), target));
                    return Ok((port, PortGuard::Local(tasks)));
                }
            }
        }
    }
    Err(NetError::port_in_use(host_ip, spec.first, spec.last))
}

/// Proxies each connection to `target`; half-closes pass through.
pub async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    proxy::serve_tcp(listener, move |mut client| async move {
        let Ok(mut upstream) = TcpStream::connect(target).await else { return };
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    })
    .await;
}

/// Relays datagrams to `target`, one upstream socket per client address.
pub async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddr) {
    let replies_to = socket.clone();
    proxy::serve_udp(socket, move |peer, rx| udp_peer(replies_to.clone(), peer, target, rx)).await;
}

/// One UDP client's mapping: its datagrams go out from a socket of its own, and what comes back
/// on that socket goes to the client, until idle.
async fn udp_peer(socket: Arc<UdpSocket>, peer: SocketAddr, target: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    let bind: SocketAddr =
        if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let Ok(upstream) = UdpSocket::bind(bind).await else { return };
    if upstream.connect(target).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; proxy::MAX_DATAGRAM];
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => { let _ = upstream.send(&d).await; }
                None => return,
            },
            r = upstream.recv(&mut buf) => match r {
                Ok(n) => { let _ = socket.send_to(&buf[..n], peer).await; }
                Err(_) => return,
            },
            _ = tokio::time::sleep(proxy::UDP_IDLE) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use bollard_stubs::models::PortBinding;

    fn host(bindings: &[(&str, Option<&str>, &str)]) -> HostConfig {
        let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (k, ip, port) in bindings {
            map.entry(k.to_string())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding { host_ip: ip.map(str::to_string), host_port: Some(port.to_string()) });
        }
        HostConfig { port_bindings: Some(map), ..Default::default() }
    }

    #[test]
    fn parses_docker_port_bindings() -> Result<(), NetError> {
        let h =
            host(&[("80/tcp", Some(""), "8080"), ("53/udp", Some("127.0.0.1"), "5353"), ("9000", None, "7000-7010")]);
        let got = requested(&h, &ContainerConfig::default())?;
        assert_eq!(got.len(), 3);
        assert!(got.contains(&PortSpec {
            proto: Proto::Udp,
            container_port: 53,
            host_ip: Some(IpAddr::from([127, 0, 0, 1])),
            first: 5353,
            last: 5353
        }));
        assert!(got.contains(&PortSpec {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: None,
            first: 8080,
            last: 8080
        }));
        assert!(got.contains(&PortSpec {
            proto: Proto::Tcp,
            container_port: 9000,
            host_ip: None,
            first: 7000,
            last: 7010
        }));
        Ok(())
    }

    #[test]
    fn publish_all_adds_exposed_ports_on_any_port() -> Result<(), NetError> {
        let h = HostConfig { publish_all_ports: Some(true), ..host(&[("80/tcp", None, "8080")]) };
        let c = ContainerConfig { exposed_ports: Some(vec!["80/tcp".into(), "443/tcp".into()]), ..Default::default() };
        let got = requested(&h, &c)?;
        assert_eq!(got.len(), 2);
        assert!(got.contains(&PortSpec { proto: Proto::Tcp, container_port: 443, host_ip: None, first: 0, last: 0 }));
        Ok(())
    }

    #[test]
    fn rejects_bad_bindings() {
        for (k, ip, port) in [
            ("80/sctp", None, "1"),
            ("0/tcp", None, "1"),
            ("80", None, "x"),
            ("80", Some("nope"), "1"),
            ("80", None, "9-3"),
        ] {
            assert!(requested(&host(&[(k, ip, port)]), &ContainerConfig::default()).is_err(), "{k} {ip:?} {port}");
        }
    }

    #[tokio::test]
    async fn local_tcp_and_udp_forwarding_and_release() -> Result<(), Box<dyn std::error::Error>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // An echo server standing in for the container.
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let target = echo.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    let _ = s.write_all(&buf).await;
                });
            }
        });
        let spec = PortSpec {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: Some(IpAddr::from([127, 0, 0, 1])),
            first: 0,
            last: 0,
        };
        let (published, guard) = Publisher::Local.publish(&spec, target).await?;
        let mut c = TcpStream::connect(("127.0.0.1", published.host_port)).await?;
        c.write_all(b"ping").await?;
        c.shutdown().await?; // the half-close reaches the server, which then answers
        let mut back = Vec::new();
        c.read_to_end(&mut back).await?;
        assert_eq!(back, b"ping");
        // The same port cannot be published twice; after the guard is dropped it can.
        let fixed = PortSpec { first: published.host_port, last: published.host_port, ..spec };
        assert!(matches!(Publisher::Local.publish(&fixed, target).await, Err(NetError::PortInUse(_))));
        drop(guard);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _again) = Publisher::Local.publish(&fixed, target).await?;

        let udp_echo = UdpSocket::bind("127.0.0.1:0").await?;
        let udp_target = udp_echo.local_addr()?;
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, p)) = udp_echo.recv_from(&mut buf).await {
                let _ = udp_echo.send_to(&buf[..n], p).await;
            }
        });
        let uspec = PortSpec { proto: Proto::Udp, ..spec };
        let (up, _ug) = Publisher::Local.publish(&uspec, udp_target).await?;
        let client = UdpSocket::bind("127.0.0.1:0").await?;
        client.send_to(b"dgram", ("127.0.0.1", up.host_port)).await?;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf)).await??;
        assert_eq!(&buf[..n], b"dgram");
        Ok(())
    }
}
