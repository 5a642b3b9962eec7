//! A container's membership of one network, as the record keeps it.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// A container's membership of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    /// The network's id.
    pub network_id: String,
    /// Extra names on this network (`--network-alias`, compose service names).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A fixed address asked for (`--ip`).
    #[serde(default)]
    pub ipv4_address: Option<Ipv4Addr>,
    /// While running: the endpoint's id.
    #[serde(default)]
    pub endpoint_id: String,
    /// While running: address and prefix.
    #[serde(default)]
    pub ip: Option<Ipv4Net>,
    /// While running: the gateway.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// While running: the MAC address.
    #[serde(default)]
    pub mac: Option<String>,
    /// A fixed MAC address asked for (`--mac-address`), else one derived from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<[u8; 6]>,
    /// Links scoped to this network (`name:alias`): on a user network, the alias resolves to the
    /// linked container for this container only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Link-local addresses asked for (`--link-local-ip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<Ipv4Addr>,
    /// A fixed IPv6 address asked for (`--ip6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Addr>,
    /// While running, on a network with IPv6: address and prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Net>,
    /// While running, on a network with IPv6: the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Driver options of the endpoint (kept and shown; the bridge driver has none to apply).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub driver_opts: std::collections::BTreeMap<String, String>,
}
