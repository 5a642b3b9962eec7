//! Container networking, below the engine: address management, links (bridges, veth pairs,
//! network namespaces) over rtnetlink, NAT and isolation in nftables over netlink, the embedded
//! DNS server, and published ports (served locally, or by the host through the VM's tunnel).
//! The engine (`engine::networks`, `engine::containers::network`) decides; this module does.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
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
}
