//! Links over netlink (rtnetlink): bridges, veth pairs, addresses and routes, in the engine's
//! namespace and, on a socket made inside it ([`Links::open_in`]), inside a container's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures::TryStreamExt;
use ipnet::{Ipv4Net, Ipv6Net};
use rtnetlink::packet_route::address::AddressHeaderFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netns::Netns;
use super::NetError;

fn nl(what: &str, e: rtnetlink::Error) -> NetError {
    NetError::Internal(format!("{what}: {e}"))
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The MAC Docker derives from an IPv4 address (02:42 + the address): stable across restarts.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Formats a MAC address the usual way.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A netlink connection in the engine's namespace.
#[derive(Debug, Clone)]
pub struct Links {
    handle: Handle,
}

impl Links {
    /// Opens the connection (its driver runs on the current tokio runtime).
    pub fn open() -> Result<Self, NetError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| NetError::Internal(format!("opening netlink: {e}")))?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Opens a connection inside `netns` (a container's), driven on the current tokio runtime:
    /// a socket belongs to the namespace it was made in, so only making it needs a thread there.
    pub fn open_in(netns: &Netns) -> Result<Self, NetError> {
        let inside = |e: std::io::Error| NetError::Internal(format!("opening netlink in the container: {e}"));
        let socket = netns
            .run(|| rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE))
            .map_err(inside)?
            .map_err(inside)?;
        socket.set_non_blocking(true).map_err(inside)?;
        // SAFETY: the descriptor comes from `into_raw_fd`, so nothing else owns or closes it; the
        // socket is non-blocking and this runs on a tokio runtime, which `TokioSocket` requires.
        let socket = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The index of the link called `name`, if there is one.
    pub async fn index(&self, name: &str) -> Result<Option<u32>, NetError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(nl(&format!("looking up {name}"), e)),
        }
    }

    /// Brings the link called `name` up, if there is one (`lo` in a new namespace).
    pub async fn set_up(&self, name: &str) -> Result<(), NetError> {
        if let Some(i) = self.index(name).await? {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(i).up().build())
                .execute()
                .await
                .map_err(|e| nl(&format!("bringing up {name}"), e))?;
        }
        Ok(())
    }

    /// A network interface's bring-up (the guest's NIC, a container's end of its veth): the
    /// address, the link up, and the default route through `gateway`.
    pub async fn bring_up(&self, index: u32, address: Ipv4Net, gateway: Option<Ipv4Addr>) -> Result<(), NetError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .execute()
            .await
            .map_err(|e| nl(&format!("adding {address}"), e))?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl("bringing the link up", e))?;
        if let Some(gw) = gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
            self.handle.route().add(route).execute().await.map_err(|e| nl("adding the default route", e))?;
        }
        Ok(())
    }

    /// The index of the first link that is neither loopback nor virtual (it has a
    /// `/sys/class/net/NAME/device`): the guest's NIC.
    pub async fn first_ethernet(&self) -> Result<Option<u32>, NetError> {
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(|e| nl("listing links", e))? {
            let name = link.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if name.is_some_and(|n| std::path::Path::new("/sys/class/net").join(n).join("device").exists()) {
                return Ok(Some(link.header.index));
            }
        }
        Ok(None)
    }

    /// Makes sure a bridge `name` exists, carries the gateway `v4` (and `v6`, with IPv6) as its
    /// only addresses besides IPv6 link-local ones, and is up.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        v4: (Ipv4Addr, u8),
        v6: Option<(Ipv6Addr, u8)>,
    ) -> Result<(), NetError> {
        let index = match self.index(name).await? {
            Some(i) => i,
            None => {
                self.handle
                    .link()
                    .add(LinkBridge::new(name).build())
                    .execute()
                    .await
                    .map_err(|e| nl(&format!("creating bridge {name}"), e))?;
                self.index(name).await?.ok_or_else(|| NetError::Internal(format!("bridge {name} vanished")))?
            }
        };
        if v6.is_some() {
            // A bridge created while IPv6 was off for new devices would refuse the address.
            let knob = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
            if std::fs::read_to_string(&knob).is_ok_and(|v| v.trim() != "0") {
                std::fs::write(&knob, "0").map_err(|e| NetError::Internal(format!("enabling IPv6 on {name}: {e}")))?;
            }
        }
        let wanted: Vec<(IpAddr, u8)> =
            std::iter::once((IpAddr::V4(v4.0), v4.1)).chain(v6.map(|(ip, p)| (IpAddr::V6(ip), p))).collect();
        let mut present = Vec::new();
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        let mut stale = Vec::new();
        while let Some(msg) = addrs.try_next().await.map_err(|e| nl("listing addresses", e))? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::address::AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            match ip {
                Some(IpAddr::V6(ip)) if ip.is_unicast_link_local() => {}
                Some(ip) if wanted.contains(&(ip, msg.header.prefix_len)) => present.push(ip),
                Some(_) => stale.push(msg),
                None => {}
            }
        }
        for msg in stale {
            let _ = self.handle.address().del(msg).execute().await;
        }
        for (ip, prefix) in wanted.into_iter().filter(|(ip, _)| !present.contains(ip)) {
            match self.add_address(index, ip, prefix).await {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(e) => return Err(nl(&format!("addressing bridge {name} with {ip}/{prefix}"), e)),
            }
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl(&format!("bringing up {name}"), e))
    }

    /// Adds an address to a link; an IPv6 one skips duplicate address detection (the engine
    /// hands addresses out uniquely), so it is usable at once rather than after a second or two.
    async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), rtnetlink::Error> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        req.execute().await
    }

    /// Gives an interface its IPv6 address and, through `gateway`, the default IPv6 route.
    pub async fn add_ipv6(&self, index: u32, address: Ipv6Net, gateway: Option<Ipv6Addr>) -> Result<(), NetError> {
        self.add_address(index, IpAddr::V6(address.addr()), address.prefix_len())
            .await
            .map_err(|e| nl(&format!("adding {address}"), e))?;
        if let Some(gw) = gateway {
            let route = RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build();
            self.handle.route().add(route).execute().await.map_err(|e| nl("adding the default IPv6 route", e))?;
        }
        Ok(())
    }

    /// Deletes the link `name`; a missing link is fine.
    pub async fn delete(&self, name: &str) -> Result<(), NetError> {
        let Some(index) = self.index(name).await? else { return Ok(()) };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(nl(&format!("deleting {name}"), e)),
        }
    }

    /// Creates a veth pair with `host` plugged into `bridge` and up, and `peer` made directly in
    /// `netns` under its final name and with its MAC, in one request: moving a link into a
    /// namespace afterwards costs the kernel an RCU grace period (tens of milliseconds per
    /// container start), and renaming it would be a request of its own. (The peer cannot be
    /// brought up in it: the kernel opens it before the pair is joined and answers ENOTCONN.)
    pub async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        bridge: &str,
        netns: &Netns,
    ) -> Result<(), NetError> {
        let bridge_index =
            self.index(bridge).await?.ok_or_else(|| NetError::Internal(format!("bridge {bridge} is missing")))?;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer)
            .address(peer_mac.to_vec())
            .setns_by_fd(netns.raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .controller(bridge_index)
            .up()
            .build();
        self.handle.link().add(msg).execute().await.map_err(|e| nl("creating a veth pair", e))
    }

    /// The IPv4 destinations routed on this host (default routes left out): new networks avoid them.
    pub async fn routed_subnets(&self) -> Result<Vec<Ipv4Net>, NetError> {
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut out = Vec::new();
        while let Some(r) = routes.try_next().await.map_err(|e| nl("listing routes", e))? {
            let prefix = r.header.destination_prefix_length;
            if prefix == 0 {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                    if let Ok(n) = Ipv4Net::new(*ip, prefix) {
                        if !ip.is_loopback() && !ip.is_broadcast() && !ip.is_multicast() {
                            out.push(n.trunc());
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One interface to configure inside a container's namespace (made there by
/// [`Links::add_veth`], named and with its MAC).
#[derive(Debug, Clone)]
pub struct InsideLink {
    /// Its name (`eth0`, `eth1`, …).
    pub name: String,
    /// Address and prefix.
    pub address: Ipv4Net,
    /// Default route through this gateway (the first network only).
    pub gateway: Option<Ipv4Addr>,
    /// Link-local addresses it also carries (`169.254.0.0/16`).
    pub link_local: Vec<Ipv4Addr>,
    /// Its IPv6 address and prefix, on a network with IPv6.
    pub address6: Option<Ipv6Net>,
    /// Default IPv6 route through this gateway (the first network with IPv6 only).
    pub gateway6: Option<Ipv6Addr>,
}

impl Links {
    /// On a connection inside a container's namespace ([`Links::open_in`]): brings `link` up and
    /// gives it its addresses and routes.
    pub async fn configure_inside(&self, link: &InsideLink) -> Result<(), NetError> {
        let i = self
            .index(&link.name)
            .await?
            .ok_or_else(|| NetError::Internal(format!("{} is missing in the container", link.name)))?;
        self.bring_up(i, link.address, link.gateway).await?;
        if let Some(address6) = link.address6 {
            self.add_ipv6(i, address6, link.gateway6).await?;
        }
        for ip in &link.link_local {
            let net = Ipv4Net::new(*ip, 16).map_err(|e| NetError::Invalid(e.to_string()))?;
            self.add_address(i, IpAddr::V4(net.addr()), net.prefix_len())
                .await
                .map_err(|e| nl(&format!("adding link-local {ip}"), e))?;
        }
        Ok(())
    }
}

/// Brings `lo` up inside `netns`. Blocking: for a thread with no tokio runtime (the namespace
/// pool's).
pub fn loopback_up(netns: &Netns) -> Result<(), NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetError::Internal(format!("netlink runtime: {e}")))?;
    rt.block_on(async { Links::open_in(netns)?.set_up("lo").await })
}
