//! A container's networking: which networks it joins (decided at create, changed by connect and
//! disconnect), its sandbox while it runs (namespace, veths, addresses, DNS server, published
//! ports), its /etc/hosts and resolv.conf, and how inspect and `ps` show all that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bollard_stubs::models::{
    ContainerConfig, EndpointSettings, HostConfig, NetworkingConfig, PortSummary, PortSummaryTypeEnum,
};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::json;

pub use super::endpoint::EndpointRecord;
use super::record::{ContainerRecord, Status};
use super::Container;
use crate::engine::networks::{Driver, NetworkRecord};
use crate::engine::{Engine, EngineError};
use crate::net::link::{mac_string, InsideLink, Links};
use crate::net::netns::Netns;
use crate::net::ports;
use crate::net::{dns, Sandbox};

/// A new membership of `net` from the client's endpoint settings.
fn endpoint_record(
    net: &NetworkRecord,
    aliases: Vec<String>,
    cfg: &EndpointSettings,
) -> Result<EndpointRecord, EngineError> {
    let mac = cfg.mac_address.as_deref().filter(|m| !m.is_empty());
    let links = cfg.links.clone().unwrap_or_default();
    for l in &links {
        super::links::parse(l)?;
    }
    Ok(EndpointRecord {
        network_id: net.id.clone(),
        aliases,
        ipv4_address: ipv4_of(cfg)?,
        ipv6_address: ipv6_of(net, cfg)?,
        mac_address: mac.map(parse_mac).transpose()?,
        links,
        link_local_ips: link_local_of(cfg)?,
        driver_opts: cfg.driver_opts.clone().unwrap_or_default().into_iter().collect(),
        ..Default::default()
    })
}

/// Parses `aa:bb:cc:dd:ee:ff` (a unicast address).
pub fn parse_mac(s: &str) -> Result<[u8; 6], EngineError> {
    let bad = || EngineError::InvalidArgument(format!("invalid MAC address: {s}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| if p.len() == 2 { u8::from_str_radix(p, 16).map_err(|_| bad()) } else { Err(bad()) })
        .collect::<Result<_, _>>()?;
    let mac: [u8; 6] = parts.try_into().map_err(|_| bad())?;
    if mac[0] & 1 == 1 {
        return Err(EngineError::InvalidArgument(format!("invalid MAC address: {s} is a multicast address")));
    }
    Ok(mac)
}

/// How a container's network mode reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The engine's namespace.
    Host,
    /// Loopback only.
    None,
    /// Another container's namespace.
    Container(String),
    /// Bridge networks (default or user-defined), by name.
    Networks(String),
}

/// Parses `HostConfig.NetworkMode`.
pub fn mode(host: &HostConfig) -> Mode {
    match host.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "bridge" => Mode::Networks("bridge".into()),
        "host" => Mode::Host,
        "none" => Mode::None,
        m => match m.strip_prefix("container:") {
            Some(c) => Mode::Container(c.to_string()),
            None => Mode::Networks(m.to_string()),
        },
    }
}

/// Whether `name` is usable as a DNS name: dot-separated labels of 1–63 letters, digits, `-`, `_`.
pub fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn link_local_of(s: &EndpointSettings) -> Result<Vec<Ipv4Addr>, EngineError> {
    let asked = s.ipam_config.as_ref().and_then(|c| c.link_local_ips.clone()).unwrap_or_default();
    asked
        .iter()
        .map(|a| match a.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_link_local() => Ok(ip),
            _ => Err(EngineError::InvalidArgument(format!("invalid link-local IP address: {a} (169.254.0.0/16)"))),
        })
        .collect()
}

fn ipv4_of(s: &EndpointSettings) -> Result<Option<Ipv4Addr>, EngineError> {
    match s.ipam_config.as_ref().and_then(|c| c.ipv4_address.clone()).filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(a) => a.parse().map(Some).map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {a}"))),
    }
}

fn ipv6_of(net: &NetworkRecord, s: &EndpointSettings) -> Result<Option<Ipv6Addr>, EngineError> {
    let Some(a) = s.ipam_config.as_ref().and_then(|c| c.ipv6_address.clone()).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let ip: Ipv6Addr = a.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid IPv6 address: {a}")))?;
    match &net.ipam6 {
        None => Err(EngineError::InvalidArgument(format!(
            "invalid IPv6 address {ip}: network {} has no IPv6 (create it with --ipv6)",
            net.name
        ))),
        Some(i) if !i.subnet.contains(&ip) => Err(EngineError::InvalidArgument(format!(
            "invalid IPv6 address {ip}: it is not in network {}'s subnet {}",
            net.name, i.subnet
        ))),
        Some(_) => Ok(Some(ip)),
    }
}

fn check_aliases(aliases: &[String]) -> Result<(), EngineError> {
    match aliases.iter().find(|a| !valid_dns_name(a)) {
        Some(a) => Err(EngineError::InvalidArgument(format!("invalid network alias {a:?}: not a valid DNS name"))),
        None => Ok(()),
    }
}

/// Checks a container may join `net` under `name` (its name must be a valid DNS name there;
/// a swarm network takes a swarm task, or anyone when it is attachable).
fn check_joinable(net: &NetworkRecord, name: &str, task: bool) -> Result<(), EngineError> {
    if net.driver == Driver::Overlay && !net.attachable && !task {
        return Err(EngineError::Forbidden(format!(
            "Could not attach to network {}: rpc error: code = PermissionDenied desc = network {} not manually attachable",
            net.name, net.name
        )));
    }
    if net.has_dns() && !valid_dns_name(name) {
        return Err(EngineError::InvalidArgument(format!(
            "container name {name:?} is not a valid DNS name on network {}: each dot-separated part must be 1-63 characters",
            net.name
        )));
    }
    if !net.driver.is_bridge() {
        return Err(EngineError::InvalidArgument(format!(
            "container cannot be connected to the {} network alongside others",
            net.name
        )));
    }
    Ok(())
}

/// The networks a new container joins: its network mode's, plus any other `EndpointsConfig` entry.
pub fn endpoints_at_create(
    engine: &Engine,
    name: &str,
    task: bool,
    host: &HostConfig,
    networking: Option<&NetworkingConfig>,
) -> Result<BTreeMap<String, EndpointRecord>, EngineError> {
    let configs: HashMap<String, EndpointSettings> =
        networking.and_then(|n| n.endpoints_config.clone()).unwrap_or_default();
    let mut out = BTreeMap::new();
    match mode(host) {
        Mode::Container(other) => {
            engine.containers.get(&other)?;
            return Ok(out);
        }
        Mode::Host | Mode::None => {
            if configs.keys().any(|k| !["host", "none"].contains(&k.as_str())) {
                return Err(EngineError::InvalidArgument(
                    "container sharing the host's network or none cannot join other networks".into(),
                ));
            }
            return Ok(out);
        }
        Mode::Networks(primary) => {
            let mut wanted = vec![primary.clone()];
            wanted.extend(
                configs.keys().filter(|k| **k != primary && !(primary == "bridge" && *k == "default")).cloned(),
            );
            for key in wanted {
                // A 400, not a 404: the docker CLI answers a 404 from create by pulling the image.
                let net = engine
                    .networks
                    .find(&key)
                    .ok_or_else(|| EngineError::InvalidArgument(format!("network {key} not found")))?;
                check_joinable(&net, name, task)?;
                // The CLI names the default network "default" in EndpointsConfig.
                let cfg = configs
                    .get(&key)
                    .or_else(|| configs.get(&net.name))
                    .or_else(|| if key == primary { configs.get("default") } else { None })
                    .cloned()
                    .unwrap_or_default();
                let aliases = cfg.aliases.clone().unwrap_or_default();
                if !net.has_dns() && !aliases.is_empty() {
                    return Err(EngineError::InvalidArgument(
                        "network-scoped alias is supported only for containers in user defined networks".into(),
                    ));
                }
                check_aliases(&aliases)?;
                let ep = endpoint_record(&net, aliases, &cfg)?;
                out.insert(net.name.clone(), ep);
            }
        }
    }
    Ok(out)
}

/// Validates a user-given hostname (`--hostname`).
pub fn check_hostname(config: &ContainerConfig) -> Result<(), EngineError> {
    match config.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(h) if !valid_dns_name(h) => Err(EngineError::InvalidArgument(format!("invalid hostname format: {h}"))),
        _ => Ok(()),
    }
}

/// What the container's /etc files need to know.
#[derive(Debug, Default)]
pub struct EtcInfo {
    /// Its primary address.
    pub ip: Option<Ipv4Addr>,
    /// Its primary IPv6 address (on a network with IPv6).
    pub ip6: Option<Ipv6Addr>,
    /// `host.docker.internal` (and `host-gateway`).
    pub host_gateway: Option<Ipv4Addr>,
    /// It asks the embedded DNS server.
    pub embedded_dns: bool,
    /// It shares the engine's namespace.
    pub host_mode: bool,
    /// Loopback only.
    pub none: bool,
}

/// The outcome of setting a container's network up for a start.
#[derive(Debug)]
pub struct Prepared {
    /// What the runtime joins (`None`: the engine's own namespace).
    pub netns_path: Option<PathBuf>,
    /// For the /etc files.
    pub etc: EtcInfo,
    /// Copy /etc/hosts, resolv.conf and hostname from this container directory (`container:`).
    pub share_etc_from: Option<PathBuf>,
    /// The veth pairs still to make ([`wire`]), one per network joined.
    pub wiring: Vec<Wire>,
}

/// One network's veth pair, planned by the network step and made by [`wire`] while the
/// container's root is built.
#[derive(Debug)]
pub struct Wire {
    net: NetworkRecord,
    host_if: String,
    mac: [u8; 6],
    inside: InsideLink,
}

fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n.div_ceil(2)).map(|_| rand::random::<u8>()).collect();
    hex::encode(bytes)[..n].to_string()
}

/// Sets up the network of container `c` before its start; keeps the sandbox in `c`.
pub async fn prepare(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<Prepared, EngineError> {
    let rec = c.record();
    match mode(&rec.host_config) {
        Mode::Host => {
            *c.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(Sandbox::default());
            let etc = EtcInfo {
                host_gateway: engine.networks.config.host_gateway.or(Some(Ipv4Addr::LOCALHOST)),
                host_mode: true,
                ..Default::default()
            };
            Ok(Prepared { netns_path: None, etc, share_etc_from: None, wiring: Vec::new() })
        }
        Mode::Container(other) => {
            let target = engine.containers.get(&other)?;
            let t = target.record();
            if t.state.status != Status::Running && t.state.status != Status::Paused {
                return Err(EngineError::Conflict(format!("cannot join network of a non running container: {}", t.id)));
            }
            let ns = Netns::of_pid(t.state.pid)
                .map_err(|e| EngineError::Internal(format!("joining the network of {}: {e}", t.name)))?;
            let path = ns.path();
            *c.sandbox.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Sandbox { netns: Some(ns), ..Default::default() });
            Ok(Prepared {
                netns_path: Some(path),
                etc: EtcInfo::default(),
                share_etc_from: Some(target.dir.clone()),
                wiring: Vec::new(),
            })
        }
        Mode::None => {
            let pool = engine.networks.netns_pool.clone();
            let ns = tokio::task::spawn_blocking(move || pool.take()).await??;
            let path = ns.path();
            *c.sandbox.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Sandbox { netns: Some(ns), ..Default::default() });
            Ok(Prepared {
                netns_path: Some(path),
                etc: EtcInfo { none: true, ..Default::default() },
                share_etc_from: None,
                wiring: Vec::new(),
            })
        }
        Mode::Networks(_) => {
            let mut sandbox = Sandbox::default();
            match join_networks(engine, c, &rec, &mut sandbox).await {
                Ok(prepared) => {
                    *c.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(sandbox);
                    Ok(prepared)
                }
                Err(e) => {
                    undo(engine, c, sandbox);
                    let _ = c.update(forget_endpoints);
                    Err(e)
                }
            }
        }
    }
}

async fn join_networks(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
    rec: &ContainerRecord,
    sandbox: &mut Sandbox,
) -> Result<Prepared, EngineError> {
    let pool = engine.networks.netns_pool.clone();
    let ns = tokio::task::spawn_blocking(move || pool.take()).await??;
    let path = ns.path();
    sandbox.netns = Some(ns);
    // The network mode's network first: it carries the default route.
    let primary = match mode(&rec.host_config) {
        Mode::Networks(p) => engine.networks.find(&p).map(|n| n.name).unwrap_or(p),
        _ => String::new(),
    };
    let mut order: Vec<(String, EndpointRecord)> = rec.networks.clone().into_iter().collect();
    order.sort_by_key(|(name, _)| name != &primary);
    let mut embedded_dns = false;
    let mut first: Option<(Ipv4Addr, Ipv4Addr)> = None;
    let mut wiring = Vec::new();
    for (name, ep) in order {
        let net = engine
            .networks
            .find(&ep.network_id)
            .or_else(|| engine.networks.find(&name))
            .ok_or_else(|| EngineError::NotFound(format!("network {name} not found (was it removed?)")))?;
        embedded_dns |= net.has_dns();
        let (ip, gw, w) = plan_attach(engine, c, sandbox, &net, &ep).await?;
        wiring.push(w);
        first.get_or_insert((ip, gw));
    }
    // Published ports go to the primary address.
    if let Some((ip, _)) = first {
        let specs = ports::requested(&rec.host_config, &rec.config)?;
        let mut published = Vec::new();
        for spec in specs {
            let target = SocketAddr::from((ip, spec.container_port));
            match engine.networks.config.publisher.publish(&spec, target).await {
                Ok((p, guard)) => {
                    published.push(p);
                    sandbox.ports.push(guard);
                }
                Err(crate::net::NetError::PortInUse(m)) => {
                    return Err(EngineError::Internal(format!(
                        "driver failed programming external connectivity on endpoint {}: {m}",
                        rec.name
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Nothing to save when there was and is no published port (one write less per start).
        if !published.is_empty() || c.with_record(|r| !r.ports.is_empty()) {
            c.update(|r| r.ports = published)?;
        }
    }
    if embedded_dns {
        let upstream = upstream_servers(&rec.host_config);
        let names: Arc<dyn dns::Names> = Arc::new(EngineNames(Arc::downgrade(engine)));
        if let Some(ns) = &sandbox.netns {
            sandbox.dns = Some(dns::serve(ns, &c.id, names, upstream)?);
        }
    }
    let ip6 = c.record().networks.get(&primary).and_then(|e| e.ip6).map(|n| n.addr());
    let etc = EtcInfo {
        ip: first.map(|f| f.0),
        ip6,
        host_gateway: engine.networks.config.host_gateway.or(first.map(|f| f.1)),
        embedded_dns,
        ..Default::default()
    };
    Ok(Prepared { netns_path: Some(path), etc, share_etc_from: None, wiring })
}

/// Plans joining one network: its addresses, the names and MAC of its veth pair, the record. The
/// pair is listed in the sandbox at once (a start that fails later deletes it, made or not) and
/// made by [`wire`].
async fn plan_attach(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
    sandbox: &mut Sandbox,
    net: &NetworkRecord,
    ep: &EndpointRecord,
) -> Result<(Ipv4Addr, Ipv4Addr, Wire), EngineError> {
    let net = engine.networks.ensure_up(&net.id).await?;
    let (ip, subnet, gw) = engine.networks.allocate(&net.id, &c.id, ep.ipv4_address)?;
    let v6 = match engine.networks.allocate6(&net.id, &c.id, ep.ipv6_address) {
        Ok(v6) => v6,
        Err(e) => {
            engine.networks.release(&net.id, &c.id);
            return Err(e);
        }
    };
    let host_if = format!("veth{}", random_hex(7));
    sandbox.veths.push((net.id.clone(), host_if.clone()));
    let index = sandbox.interfaces;
    sandbox.interfaces += 1;
    let mac = ep.mac_address.unwrap_or_else(|| crate::net::link::mac_for(ip));
    let address = Ipv4Net::new(ip, subnet.prefix_len()).unwrap_or(subnet);
    let address6 = v6.map(|(ip6, subnet6, _)| Ipv6Net::new(ip6, subnet6.prefix_len()).unwrap_or(subnet6));
    let gateway6 = v6.map(|(_, _, gw6)| gw6).filter(|_| !sandbox.ipv6_route);
    sandbox.ipv6_route |= gateway6.is_some();
    let inside = InsideLink {
        name: format!("eth{index}"),
        address,
        gateway: (index == 0).then_some(gw),
        link_local: ep.link_local_ips.clone(),
        address6,
        gateway6,
    };
    c.update(|r| {
        if let Some(e) = r.networks.get_mut(&net.name) {
            e.network_id = net.id.clone();
            e.endpoint_id = hex::encode(rand::random::<[u8; 32]>());
            e.ip = Some(address);
            e.gateway = Some(gw);
            e.mac = Some(mac_string(mac));
            e.ip6 = address6;
            e.gateway6 = v6.map(|(_, _, gw6)| gw6);
        }
    })?;
    Ok((ip, gw, Wire { net, host_if, mac, inside }))
}

/// Makes the planned veth pairs into the namespace at `netns` and gives their container ends
/// their addresses and routes.
pub async fn wire(engine: &Arc<Engine>, netns: &Path, wiring: &[Wire]) -> Result<(), EngineError> {
    let Some((first, rest)) = wiring.split_first() else { return Ok(()) };
    let ns = Netns::at(netns).map_err(|e| EngineError::Internal(format!("opening the container's network: {e}")))?;
    // The connection inside the namespace is opened (on a thread of its own) while the kernel
    // makes the first pair.
    let (made, inside) = tokio::join!(make_pair(engine, &ns, first), async { Links::open_in(&ns) });
    made?;
    for w in rest {
        make_pair(engine, &ns, w).await?;
    }
    let inside = inside?;
    for w in wiring {
        inside.configure_inside(&w.inside).await?;
    }
    Ok(())
}

fn upstream_servers(host: &HostConfig) -> Vec<SocketAddr> {
    let asked: Vec<SocketAddr> = host
        .dns
        .iter()
        .flatten()
        .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if !asked.is_empty() {
        return asked;
    }
    dns::upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// Undoes a partial or complete setup: the veths are deleted, and only then their addresses
/// given back (a reused address must not meet its old veth on the bridge), in the background:
/// deleting a link costs the kernel an RCU grace period (~15 ms) that `docker run --rm` need not
/// wait for. The namespace handle is dropped first, so nothing of the container holds it. The
/// caller makes the record forget the endpoints ([`forget_endpoints`]).
fn undo(engine: &Arc<Engine>, c: &Arc<Container>, sandbox: Sandbox) {
    let Sandbox { netns, veths, dns, ports, .. } = sandbox;
    drop((netns, dns, ports));
    if !veths.is_empty() {
        let (engine, id) = (engine.clone(), c.id.clone());
        tokio::spawn(async move {
            for (net_id, host_if) in &veths {
                if let Err(e) = engine.networks.delete_link(host_if).await {
                    tracing::warn!(container.id = %id, link = %host_if, error = %e, "removing a veth");
                }
                engine.networks.release(net_id, &id);
            }
        });
    }
}

/// What a container's record no longer has once its network is torn down.
pub fn forget_endpoints(r: &mut ContainerRecord) {
    r.ports.clear();
    for e in r.networks.values_mut() {
        e.endpoint_id.clear();
        e.ip = None;
        e.gateway = None;
        e.mac = None;
        e.ip6 = None;
        e.gateway6 = None;
    }
}

/// Tears the network of a container down after it stopped, or after its start failed; the record
/// forgets its endpoints at once.
pub fn release(engine: &Arc<Engine>, c: &Arc<Container>) {
    release_unrecorded(engine, c);
    let _ = c.update(forget_endpoints);
}

/// [`release`] for a caller that updates the record itself (with [`forget_endpoints`]) in the
/// same write.
pub fn release_unrecorded(engine: &Arc<Engine>, c: &Arc<Container>) {
    let sandbox = c.sandbox.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(s) = sandbox {
        undo(engine, c, s);
    }
}

async fn make_pair(engine: &Engine, ns: &Netns, w: &Wire) -> Result<(), EngineError> {
    engine.networks.add_veth(&w.net, &w.host_if, &w.inside.name, w.mac, ns).await
}

/// Joins one more network at once (`docker network connect` on a running container).
async fn attach(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
    sandbox: &mut Sandbox,
    net: &NetworkRecord,
    ep: &EndpointRecord,
) -> Result<(), EngineError> {
    let (_, _, w) = plan_attach(engine, c, sandbox, net, ep).await?;
    let ns = sandbox.netns.as_ref().ok_or_else(|| EngineError::Internal("no network namespace".into()))?;
    wire(engine, &ns.path(), &[w]).await
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    engine: &Arc<Engine>,
    network: &str,
    container: &str,
    settings: EndpointSettings,
) -> Result<(), EngineError> {
    let net = engine.networks.get(network)?;
    let c = engine.containers.get(container)?;
    let _op = c.op.lock().await;
    let rec = c.record();
    match mode(&rec.host_config) {
        Mode::Networks(_) => {}
        _ => {
            return Err(EngineError::Forbidden(
                "container sharing the host's, another container's or no network cannot be connected to networks"
                    .into(),
            ))
        }
    }
    let task = rec.config.labels.as_ref().is_some_and(|l| l.contains_key("com.docker.swarm.task.id"));
    check_joinable(&net, &rec.name, task)?;
    let aliases = settings.aliases.clone().unwrap_or_default();
    check_aliases(&aliases)?;
    if !net.has_dns() && !aliases.is_empty() {
        return Err(EngineError::InvalidArgument(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    if rec.networks.values().any(|e| e.network_id == net.id) {
        return Err(EngineError::Forbidden(format!(
            "endpoint with name {} already exists in network {}",
            rec.name, net.name
        )));
    }
    let ep = endpoint_record(&net, aliases, &settings)?;
    c.update(|r| {
        r.networks.insert(net.name.clone(), ep.clone());
    })?;
    if matches!(rec.state.status, Status::Running | Status::Paused) {
        let mut sandbox = c.sandbox.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        let result = attach(engine, &c, &mut sandbox, &net, &ep).await;
        if result.is_err() {
            // Whatever of the pair was made goes, with its addresses.
            if let Some(i) = sandbox.veths.iter().position(|(id, _)| id == &net.id) {
                let (_, host_if) = sandbox.veths.remove(i);
                if let Err(e) = engine.networks.delete_link(&host_if).await {
                    tracing::warn!(container.id = %c.id, link = %host_if, error = %e, "removing a veth");
                }
                engine.networks.release(&net.id, &c.id);
            }
        }
        if result.is_ok() && net.has_dns() && sandbox.dns.is_none() {
            if let Some(ns) = &sandbox.netns {
                let names: Arc<dyn dns::Names> = Arc::new(EngineNames(Arc::downgrade(engine)));
                match dns::serve(ns, &c.id, names, upstream_servers(&rec.host_config)) {
                    Ok(d) => {
                        sandbox.dns = Some(d);
                        // Names now come from the embedded server: point resolv.conf at it (written
                        // in place, the container sees the file through a bind mount).
                        let etc = EtcInfo { embedded_dns: true, ..Default::default() };
                        if let Err(e) = std::fs::write(c.dir.join("resolv.conf"), resolv_conf(&rec, &etc)) {
                            tracing::warn!(container.id = %c.id, error = %e, "updating resolv.conf on connect");
                        }
                    }
                    Err(e) => tracing::warn!(container.id = %c.id, error = %e, "starting the DNS server on connect"),
                }
            }
        }
        *c.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(sandbox);
        if let Err(e) = result {
            c.update(|r| {
                r.networks.remove(&net.name);
            })?;
            return Err(e);
        }
    }
    Ok(())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(engine: &Arc<Engine>, network: &str, container: &str) -> Result<(), EngineError> {
    let net = engine.networks.get(network)?;
    let c = engine.containers.get(container)?;
    let _op = c.op.lock().await;
    let rec = c.record();
    let Some(name) = rec.networks.iter().find(|(_, e)| e.network_id == net.id).map(|(n, _)| n.clone()) else {
        return Err(EngineError::Forbidden(format!("container {} is not connected to network {}", rec.name, net.name)));
    };
    let veth = {
        let mut guard = c.sandbox.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|s| {
            let i = s.veths.iter().position(|(id, _)| id == &net.id)?;
            Some(s.veths.remove(i).1)
        })
    };
    if let Some(v) = veth {
        engine.networks.delete_link(&v).await?;
    }
    engine.networks.release(&net.id, &c.id);
    c.update(|r| {
        r.networks.remove(&name);
    })
}

/// Container ids using network `id` while running (they block its removal).
pub fn running_users(engine: &Engine, id: &str) -> Vec<String> {
    engine
        .containers
        .all()
        .iter()
        .filter_map(|c| {
            c.with_record(|r| {
                let running = matches!(r.state.status, Status::Running | Status::Paused | Status::Restarting);
                (running && r.networks.values().any(|e| e.network_id == id)).then(|| r.name.clone())
            })
        })
        .collect()
}

/// Whether any container (running or not) names network `id`.
pub fn referenced(engine: &Engine, id: &str) -> bool {
    engine.containers.all().iter().any(|c| c.with_record(|r| r.networks.values().any(|e| e.network_id == id)))
}

/// The running containers on network `id`, for its inspect.
pub fn members(engine: &Engine, id: &str) -> Vec<crate::engine::networks::Member> {
    engine
        .containers
        .all()
        .iter()
        .filter_map(|c| {
            c.with_record(|r| {
                if !matches!(r.state.status, Status::Running | Status::Paused) {
                    return None;
                }
                let e = r.networks.values().find(|e| e.network_id == id)?;
                Some(crate::engine::networks::Member {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    endpoint_id: e.endpoint_id.clone(),
                    mac: e.mac.clone().unwrap_or_default(),
                    ipv4: e.ip.map(|i| i.to_string()).unwrap_or_default(),
                    ipv6: e.ip6.map(|i| i.to_string()).unwrap_or_default(),
                })
            })
        })
        .collect()
}

/// Name lookups for the embedded DNS servers.
#[derive(Debug)]
struct EngineNames(Weak<Engine>);

impl dns::Names for EngineNames {
    fn lookup(&self, asker: &str, name: &str) -> Option<Vec<IpAddr>> {
        let engine = self.0.upgrade()?;
        let me = engine.containers.get(asker).ok()?.record();
        let mine: HashMap<String, String> = me
            .networks
            .values()
            .filter_map(|e| engine.networks.find(&e.network_id))
            .filter(|n| n.has_dns())
            .map(|n| (n.id, n.name))
            .collect();
        // `name.network` asks on that network only.
        let (base, scope) = mine
            .iter()
            .find_map(|(id, n)| {
                name.strip_suffix(&format!(".{}", n.to_ascii_lowercase())).map(|b| (b, Some(id.clone())))
            })
            .unwrap_or((name, None));
        // A link on a shared network: its alias names the linked container, for the asker only.
        let linked: Vec<String> = me
            .networks
            .values()
            .flat_map(|e| e.links.iter())
            .filter_map(|l| super::links::parse(l).ok())
            .filter(|(_, alias)| alias.eq_ignore_ascii_case(base))
            .map(|(target, _)| target)
            .collect();
        let mut found = Vec::new();
        for c in engine.containers.all() {
            c.with_record(|r| {
                if !matches!(r.state.status, Status::Running | Status::Paused) {
                    return;
                }
                for e in r.networks.values() {
                    if !mine.contains_key(&e.network_id) || scope.as_ref().is_some_and(|s| s != &e.network_id) {
                        continue;
                    }
                    let hit = r.name.eq_ignore_ascii_case(base)
                        || linked.iter().any(|t| r.name.eq_ignore_ascii_case(t))
                        || r.id.get(..12).is_some_and(|s| s == base)
                        || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(base));
                    if hit {
                        found.extend(e.ip.map(|i| IpAddr::V4(i.addr())));
                        found.extend(e.ip6.map(|i| IpAddr::V6(i.addr())));
                    }
                }
            });
        }
        let unique: HashSet<IpAddr> = found.iter().copied().collect();
        (!unique.is_empty()).then(|| {
            found.dedup();
            found
        })
    }
}

/// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf for a start.
pub fn write_etc_files(
    dir: &Path,
    rec: &ContainerRecord,
    hostname: &str,
    p: &Prepared,
    links: &str,
) -> std::io::Result<()> {
    if let Some(from) = &p.share_etc_from {
        for f in ["hostname", "hosts", "resolv.conf"] {
            std::fs::copy(from.join(f), dir.join(f))?;
        }
        return Ok(());
    }
    let etc = &p.etc;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let mut hosts = if etc.host_mode {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
    };
    if !hosts.ends_with('\n') && !hosts.is_empty() {
        hosts.push('\n');
    }
    for h in rec.host_config.extra_hosts.iter().flatten() {
        if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
            let ip = if ip == "host-gateway" {
                etc.host_gateway.map(|g| g.to_string()).unwrap_or_default()
            } else {
                ip.to_string()
            };
            if !ip.is_empty() {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
    }
    hosts.push_str(links);
    if let Some(ip) = etc.ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if let Some(ip6) = etc.ip6 {
        hosts.push_str(&format!("{ip6}\t{hostname}\n"));
    }
    if let (Some(gw), false) = (etc.host_gateway, etc.none) {
        hosts.push_str(&format!("{gw}\thost.docker.internal\n"));
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    std::fs::write(dir.join("resolv.conf"), resolv_conf(rec, etc))
}

fn resolv_conf(rec: &ContainerRecord, etc: &EtcInfo) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if etc.host_mode {
        return host;
    }
    let h = &rec.host_config;
    let mut lines: Vec<String> = Vec::new();
    if etc.embedded_dns {
        lines.push(format!("nameserver {}", dns::RESOLVER_IP));
    } else if let Some(d) = h.dns.as_ref().filter(|d| !d.is_empty()) {
        lines.extend(d.iter().map(|d| format!("nameserver {d}")));
    } else {
        // The engine's own resolvers, unless they are loopback ones (unreachable from a container).
        let servers: Vec<String> = host
            .lines()
            .filter(|l| l.trim_start().starts_with("nameserver") && !l.contains(" 127.") && !l.contains(" ::1"))
            .map(str::to_string)
            .collect();
        if servers.is_empty() {
            lines.push("nameserver 8.8.8.8".into());
            lines.push("nameserver 8.8.4.4".into());
        } else {
            lines.extend(servers);
        }
    }
    match h.dns_search.as_ref().filter(|s| !s.is_empty()) {
        Some(s) => lines.push(format!("search {}", s.join(" "))),
        None => lines.extend(host.lines().filter(|l| l.trim_start().starts_with("search")).map(str::to_string)),
    }
    let mut options: Vec<String> = h.dns_options.clone().unwrap_or_default();
    if etc.embedded_dns && !options.iter().any(|o| o.starts_with("ndots")) {
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        lines.push(format!("options {}", options.join(" ")));
    }
    lines.join("\n") + "\n"
}

/// An endpoint's `IPAMConfig` (what was asked for), `null` when nothing was.
fn ipam_config_json(e: &EndpointRecord) -> serde_json::Value {
    if e.ipv4_address.is_none() && e.ipv6_address.is_none() && e.link_local_ips.is_empty() {
        return serde_json::Value::Null;
    }
    let mut v = json!({});
    if let Some(a) = e.ipv4_address {
        v["IPv4Address"] = json!(a.to_string());
    }
    if let Some(a) = e.ipv6_address {
        v["IPv6Address"] = json!(a.to_string());
    }
    if !e.link_local_ips.is_empty() {
        v["LinkLocalIPs"] = json!(e.link_local_ips.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    v
}

/// `NetworkSettings` for inspect, with the legacy top-level fields old clients read.
pub fn settings_json(engine: &Engine, rec: &ContainerRecord) -> serde_json::Value {
    let running = matches!(rec.state.status, Status::Running | Status::Paused);
    let mut ports = serde_json::Map::new();
    for e in rec.config.exposed_ports.iter().flatten() {
        let key = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
        ports.insert(key, serde_json::Value::Null);
    }
    if running {
        for p in &rec.ports {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if entry.is_null() {
                *entry = json!([]);
            }
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
            }
        }
    }
    let mut networks = serde_json::Map::new();
    for (name, e) in &rec.networks {
        let ip = e.ip.map(|i| i.addr().to_string()).unwrap_or_default();
        let mut dns_names = vec![rec.name.clone()];
        if engine.networks.find(&e.network_id).is_some_and(|n| n.has_dns()) {
            dns_names.push(rec.id[..12].to_string());
            dns_names.extend(e.aliases.iter().cloned());
        }
        networks.insert(
            name.clone(),
            json!({
                "IPAMConfig": ipam_config_json(e),
                "Links": if e.links.is_empty() { serde_json::Value::Null } else { json!(e.links) },
                "Aliases": if e.aliases.is_empty() { serde_json::Value::Null } else { json!(e.aliases) },
                "MacAddress": e.mac.clone().or_else(|| e.mac_address.map(mac_string)).unwrap_or_default(),
                "DriverOpts": if e.driver_opts.is_empty() { serde_json::Value::Null } else { json!(e.driver_opts) },
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id,
                "Gateway": e.gateway.map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": ip,
                "IPPrefixLen": e.ip.map(|i| i.prefix_len()).unwrap_or(0),
                "IPv6Gateway": e.gateway6.map(|g| g.to_string()).unwrap_or_default(),
                "GlobalIPv6Address": e.ip6.map(|i| i.addr().to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": e.ip6.map(|i| i.prefix_len()).unwrap_or(0),
                "DNSNames": if running { json!(dns_names) } else { serde_json::Value::Null },
            }),
        );
    }
    let default = rec.networks.get("bridge");
    let pick = |f: &dyn Fn(&EndpointRecord) -> String| default.map(f).unwrap_or_default();
    let sandbox = c_sandbox_key(rec);
    json!({
        "Bridge": "",
        "SandboxID": if running { rec.id.clone() } else { String::new() },
        "SandboxKey": sandbox,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": pick(&|e| e.endpoint_id.clone()),
        "Gateway": pick(&|e| e.gateway.map(|g| g.to_string()).unwrap_or_default()),
        "GlobalIPv6Address": pick(&|e| e.ip6.map(|i| i.addr().to_string()).unwrap_or_default()),
        "GlobalIPv6PrefixLen": default.and_then(|e| e.ip6).map(|i| i.prefix_len()).unwrap_or(0),
        "IPAddress": pick(&|e| e.ip.map(|i| i.addr().to_string()).unwrap_or_default()),
        "IPPrefixLen": default.and_then(|e| e.ip).map(|i| i.prefix_len()).unwrap_or(0),
        "IPv6Gateway": pick(&|e| e.gateway6.map(|g| g.to_string()).unwrap_or_default()),
        "MacAddress": pick(&|e| e.mac.clone().unwrap_or_default()),
        "Networks": networks,
    })
}

fn c_sandbox_key(rec: &ContainerRecord) -> String {
    if matches!(rec.state.status, Status::Running | Status::Paused) && rec.state.pid > 0 {
        format!("/proc/{}/ns/net", rec.state.pid)
    } else {
        String::new()
    }
}

/// `ps`'s port list.
pub fn port_summaries(rec: &ContainerRecord) -> Vec<PortSummary> {
    let running = matches!(rec.state.status, Status::Running | Status::Paused);
    let mut out: Vec<PortSummary> = Vec::new();
    if running {
        out.extend(rec.ports.iter().map(|p| PortSummary {
            ip: Some(p.host_ip.to_string()),
            private_port: p.container_port,
            public_port: Some(p.host_port),
            typ: Some(if p.proto == ports::Proto::Udp { PortSummaryTypeEnum::UDP } else { PortSummaryTypeEnum::TCP }),
        }));
    }
    for e in rec.config.exposed_ports.iter().flatten() {
        let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let Ok(port) = port.parse::<u16>() else { continue };
        let is_udp = proto == "udp";
        if !out.iter().any(|p| p.private_port == port && (p.typ == Some(PortSummaryTypeEnum::UDP)) == is_udp) {
            out.push(PortSummary {
                ip: None,
                private_port: port,
                public_port: None,
                typ: Some(if is_udp { PortSummaryTypeEnum::UDP } else { PortSummaryTypeEnum::TCP }),
            });
        }
    }
    out
}

/// `ps`'s per-network addresses.
pub fn summary_networks(rec: &ContainerRecord) -> HashMap<String, EndpointSettings> {
    rec.networks
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                EndpointSettings {
                    network_id: Some(e.network_id.clone()),
                    endpoint_id: Some(e.endpoint_id.clone()),
                    gateway: Some(e.gateway.map(|g| g.to_string()).unwrap_or_default()),
                    ip_address: Some(e.ip.map(|i| i.addr().to_string()).unwrap_or_default()),
                    ip_prefix_len: Some(i64::from(e.ip.map(|i| i.prefix_len()).unwrap_or(0))),
                    ipv6_gateway: Some(e.gateway6.map(|g| g.to_string()).unwrap_or_default()),
                    global_ipv6_address: Some(e.ip6.map(|i| i.addr().to_string()).unwrap_or_default()),
                    global_ipv6_prefix_len: Some(i64::from(e.ip6.map(|i| i.prefix_len()).unwrap_or(0))),
                    mac_address: Some(e.mac.clone().unwrap_or_default()),
                    aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// The engine stops: every running container's veths and published ports go now (its
/// processes are ended by the next engine), so nothing of ours is left on the host.
pub fn release_all(engine: &Arc<Engine>) {
    for c in engine.containers.all() {
        release(engine, &c);
    }
}
