//! Address management for one bridge network: which addresses are taken, by whom, and where
//! the next search starts. Persisted with the network, so an address is never handed out while
//! another container holds it, and a released address is not reused at once (the search goes on
//! from the last allocation, like Docker's, which keeps stale ARP entries from misdirecting).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::NetError;

/// The address pools new networks take their subnets from, in order (Docker's defaults).
pub fn default_pools() -> Vec<Ipv4Net> {
    let mut pools: Vec<Ipv4Net> =
        (17..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok()).collect();
    pools.extend((0..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).ok()));
    pools
}

/// Whether two subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The allocation state of one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// Its gateway (the bridge's address), never handed out.
    pub gateway: Ipv4Addr,
    /// Where container addresses come from (the subnet unless `--ip-range` narrowed it).
    pub range: Ipv4Net,
    /// Taken addresses and who holds them (a container id).
    #[serde(default)]
    pub allocated: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out; the next search starts after it.
    #[serde(default)]
    pub last: Option<Ipv4Addr>,
    /// Addresses reserved by name (`--aux-address`), never handed out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Validated state for a new network.
    pub fn new(subnet: Ipv4Net, gateway: Option<Ipv4Addr>, range: Option<Ipv4Net>) -> Result<Self, NetError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(NetError::Invalid(format!("subnet {subnet} is too small for containers (/30 at most)")));
        }
        let gateway = match gateway {
            Some(g) if !subnet.contains(&g) => {
                return Err(NetError::Invalid(format!("gateway {g} is not in subnet {subnet}")));
            }
            Some(g) if g == subnet.network() || g == subnet.broadcast() => {
                return Err(NetError::Invalid(format!(
                    "gateway {g} cannot be the subnet's network or broadcast address"
                )));
            }
            Some(g) => g,
            None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
        };
        let range = match range {
            Some(r) if !(subnet.contains(&r.network()) && subnet.contains(&r.broadcast())) => {
                return Err(NetError::Invalid(format!("ip-range {r} is not inside subnet {subnet}")));
            }
            Some(r) => r.trunc(),
            None => subnet,
        };
        Ok(Self { subnet, gateway, range, allocated: BTreeMap::new(), last: None, aux: BTreeMap::new() })
    }

    /// Reserves `aux` (name → address inside the subnet, not the gateway).
    pub fn reserve(&mut self, aux: BTreeMap<String, Ipv4Addr>) -> Result<(), NetError> {
        for (name, ip) in &aux {
            if !self.subnet.contains(ip) || *ip == self.gateway {
                return Err(NetError::Invalid(format!(
                    "auxiliary address {name}={ip} must be inside subnet {} and not its gateway",
                    self.subnet
                )));
            }
        }
        self.aux = aux;
        Ok(())
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.range.contains(&ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
            && !self.allocated.contains_key(&ip)
            && !self.aux.values().any(|a| *a == ip)
    }

    /// Takes `wanted` (when given, e.g. `--ip`) or the next free address after the last one handed out.
    pub fn allocate(&mut self, owner: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, NetError> {
        if let Some(ip) = wanted {
            if !self.subnet.contains(&ip) {
                return Err(NetError::Invalid(format!("address {ip} is not in the network's subnet {}", self.subnet)));
            }
            if self.allocated.get(&ip).is_some_and(|o| o != owner) || ip == self.gateway {
                return Err(NetError::Conflict(format!("Address already in use: {ip}")));
            }
            self.allocated.insert(ip, owner.to_string());
            return Ok(ip);
        }
        let first = u32::from(self.range.network());
        let size = u32::from(self.range.broadcast()) - first + 1;
        let start = self.last.map(u32::from).filter(|l| (first..first + size).contains(l)).map_or(0, |l| l - first + 1);
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start + i) % size);
            if self.usable(ip) {
                self.allocated.insert(ip, owner.to_string());
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(NetError::Exhausted(format!("no available IPv4 addresses on this network's address pools: {}", self.range)))
    }

    /// Gives back whatever `owner` holds.
    pub fn release_owner(&mut self, owner: &str) {
        self.allocated.retain(|_, o| o != owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|_| Ipv4Net::default())
    }

    #[test]
    fn hands_out_addresses_in_order_and_never_twice() -> Result<(), NetError> {
        let mut ipam = Ipam::new(net("10.9.0.0/29"), None, None)?;
        assert_eq!(ipam.gateway, Ipv4Addr::new(10, 9, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5).map(|i| ipam.allocate(&format!("c{i}"), None)).collect::<Result<_, _>>()?;
        assert_eq!(got, (2..=6).map(|d| Ipv4Addr::new(10, 9, 0, d)).collect::<Vec<_>>());
        assert!(matches!(ipam.allocate("c5", None), Err(NetError::Exhausted(_))));
        // A released address is reused only after the rest of the range.
        ipam.release_owner("c1");
        assert_eq!(ipam.allocate("c6", None)?, Ipv4Addr::new(10, 9, 0, 3));
        Ok(())
    }

    #[test]
    fn survives_a_round_trip_through_json() -> Result<(), NetError> {
        let mut ipam = Ipam::new(net("10.9.0.0/24"), None, None)?;
        ipam.allocate("a", None)?;
        let json = serde_json::to_string(&ipam).map_err(|e| NetError::Internal(e.to_string()))?;
        let mut back: Ipam = serde_json::from_str(&json).map_err(|e| NetError::Internal(e.to_string()))?;
        assert_eq!(back.allocate("b", None)?, Ipv4Addr::new(10, 9, 0, 3));
        Ok(())
    }

    #[test]
    fn validates_gateway_range_and_static_addresses() -> Result<(), NetError> {
        assert!(Ipam::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 8, 0, 1)), None).is_err());
        assert!(Ipam::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 0, 0)), None).is_err());
        assert!(Ipam::new(net("10.9.0.0/24"), None, Some(net("10.10.0.0/28"))).is_err());
        assert!(Ipam::new(net("10.9.0.0/31"), None, None).is_err());
        let mut ipam = Ipam::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 0, 254)), Some(net("10.9.0.128/28")))?;
        assert_eq!(ipam.allocate("a", None)?, Ipv4Addr::new(10, 9, 0, 128));
        assert_eq!(ipam.allocate("b", Some(Ipv4Addr::new(10, 9, 0, 7)))?, Ipv4Addr::new(10, 9, 0, 7));
        assert!(matches!(ipam.allocate("c", Some(Ipv4Addr::new(10, 9, 0, 7))), Err(NetError::Conflict(_))));
        assert!(ipam.allocate("c", Some(Ipv4Addr::new(10, 7, 0, 7))).is_err());
        Ok(())
    }

    #[test]
    fn overlap_is_symmetric() {
        assert!(overlaps(&net("172.17.0.0/16"), &net("172.17.5.0/24")));
        assert!(overlaps(&net("172.17.5.0/24"), &net("172.17.0.0/16")));
        assert!(!overlaps(&net("172.17.0.0/16"), &net("172.18.0.0/16")));
        assert_eq!(default_pools().len(), 31);
    }
}
