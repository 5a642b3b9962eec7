//! Container networking, below the engine: address management, links (bridges, veth pairs,
//! network namespaces) over rtnetlink, NAT and isolation in nftables over netlink, the embedded
//! DNS server, and published ports (served locally, or by the host through the VM's tunnel).
//! The engine (`engine::networks`, `engine::containers::network`) decides; this module does.

pub mod dns;
pub mod firewall;
pub mod host_forward;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod netns_pool;
pub mod ports;
pub mod tunnel;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// What can go wrong below the engine.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Clashes with something that exists.
    #[error("{0}")]
    Conflict(String),
    /// A pool or subnet has no room left.
    #[error("{0}")]
    Exhausted(String),
    /// A host port is taken.
    #[error("{0}")]
    PortInUse(String),
    /// The system refused.
    #[error("{0}")]
    Internal(String),
}

impl NetError {
    /// The message Docker gives when a host port is taken.
    pub fn port_in_use(host_ip: std::net::IpAddr, first: u16, last: u16) -> Self {
        let ports = if first == last { first.to_string() } else { format!("{first}-{last}") };
        let addr = match host_ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{ports}"),
            std::net::IpAddr::V4(ip) => format!("{ip}:{ports}"),
        };
        Self::PortInUse(format!("Bind for {addr} failed: port is already allocated"))
    }
}

/// Engine-wide network settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The default bridge network's device (`skiff0`; its name must start with
    /// [`firewall::BRIDGE_PREFIX`]).
    pub bridge: String,
    /// The default bridge network's subnet (`None`: the first free default pool).
    pub bridge_subnet: Option<Ipv4Net>,
    /// Who listens for published ports.
    pub publisher: ports::Publisher,
    /// The host as containers reach it (`host.docker.internal`); `None`: the network's gateway.
    pub host_gateway: Option<Ipv4Addr>,
    /// In the VM: becomes `Some` once the kernel modules networking needs are loaded (or failed).
    pub kernel_ready: Option<tokio::sync::watch::Receiver<Option<Result<(), String>>>>,
}

/// The default bridge device for an engine whose state is under `root`: `skiff0` for the
/// standard root, otherwise one derived from the root's path, so two engines with different
/// roots on one host never share (and delete) each other's bridge.
pub fn default_bridge(root: &std::path::Path, standard_root: &std::path::Path) -> String {
    use sha2::Digest;
    if root == standard_root {
        return "skiff0".into();
    }
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!("{}{}", firewall::BRIDGE_PREFIX, &hex::encode(digest)[..10])
}

/// Holds the host-wide claim on a bridge name for the engine's life (an flock on
/// `/run/skiff/bridge-NAME.lock`): a second engine asking for the same bridge is refused
/// instead of taking it over.
pub fn claim_bridge(name: &str) -> Result<std::fs::File, NetError> {
    use std::os::fd::AsRawFd;
    let dir = std::path::Path::new("/run/skiff");
    std::fs::create_dir_all(dir).map_err(|e| NetError::Internal(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(format!("bridge-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NetError::Internal(format!("opening {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(NetError::Conflict(format!(
            "the bridge {name} is in use by another Skiff engine on this host; give this one its own with --bridge"
        )));
    }
    Ok(file)
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            bridge: "skiff0".into(),
            bridge_subnet: None,
            publisher: ports::Publisher::Local,
            host_gateway: None,
            kernel_ready: None,
        }
    }
}

/// What a running container holds on the network. Dropping it closes the namespace handle, the
/// DNS server and the published ports (the engine releases the addresses and veths first).
#[derive(Debug, Default)]
pub struct Sandbox {
    /// Its namespace (`None` with `--network host`).
    pub netns: Option<netns::Netns>,
    /// Host ends of its veths, by network id.
    pub veths: Vec<(String, String)>,
    /// Its embedded DNS server (user-defined networks only).
    pub dns: Option<dns::DnsServer>,
    /// Its published ports.
    pub ports: Vec<ports::PortGuard>,
    /// Interfaces created so far (`eth0`, `eth1`, …).
    pub interfaces: u32,
    /// A default IPv6 route is in place (through the first network with IPv6).
    pub ipv6_route: bool,
}
