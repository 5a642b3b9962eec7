//! Address management for one bridge network: which addresses are taken, by whom, and where
//! the next search starts. Persisted with the network, so an address is never handed out while
//! another container holds it, and a released address is not reused at once (the search goes on
//! from the last allocation, like Docker's, which keeps stale ARP entries from misdirecting).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::NetError;

/// The address pools new networks take their subnets from, in order (Docker's defaults).
pub fn default_pools() -> Vec<Ipv4Net> {
    let mut pools: Vec<Ipv4Net> =
        (17..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok()).collect();
    pools.extend((0..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).ok()));
    pools
}

/// A random IPv6 unique local /64 (RFC 4193: `fd` + a 40-bit global id + a 16-bit subnet id),
/// for a network asked to have IPv6 without a subnet, as newer dockerd gives.
pub fn random_ula() -> Ipv6Net {
    let r: [u8; 7] = rand::random();
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..8].copy_from_slice(&r);
    Ipv6Net::new(Ipv6Addr::from(octets), 64).unwrap_or_default()
}

/// Whether two IPv4 subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    Ipv4Addr::nets_overlap(a, b)
}

/// An address family as the allocator sees it: addresses as integers, subnets as ranges.
pub trait Family:
    Copy + Ord + std::fmt::Debug + std::fmt::Display + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Its subnets.
    type Net: Copy + Eq + std::fmt::Debug + std::fmt::Display + Serialize + DeserializeOwned + Send + Sync;
    /// `IPv4` or `IPv6`, for messages.
    const NAME: &'static str;
    /// The longest prefix that leaves room for containers.
    const MAX_PREFIX: u8;
    /// Whether a subnet's last address is reserved (IPv4's broadcast address).
    const HAS_BROADCAST: bool;
    /// The address as an integer.
    fn bits(self) -> u128;
    /// The address of an integer (truncated to the family's width).
    fn from_bits(bits: u128) -> Self;
    /// A subnet's first address.
    fn first(net: &Self::Net) -> Self;
    /// A subnet's last address.
    fn last(net: &Self::Net) -> Self;
    /// A subnet's prefix length.
    fn prefix_len(net: &Self::Net) -> u8;
    /// The subnet with its host bits cleared.
    fn trunc(net: &Self::Net) -> Self::Net;
    /// Whether two subnets share any address.
    fn nets_overlap(a: &Self::Net, b: &Self::Net) -> bool {
        let (a0, a1, b0, b1) =
            (Self::first(a).bits(), Self::last(a).bits(), Self::first(b).bits(), Self::last(b).bits());
        a0 <= b1 && b0 <= a1
    }
    /// Whether `net` holds `ip`.
    fn net_contains(net: &Self::Net, ip: Self) -> bool {
        (Self::first(net).bits()..=Self::last(net).bits()).contains(&ip.bits())
    }
}

impl Family for Ipv4Addr {
    type Net = Ipv4Net;
    const NAME: &'static str = "IPv4";
    const MAX_PREFIX: u8 = 30;
    const HAS_BROADCAST: bool = true;
    fn bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(bits: u128) -> Self {
        // Offsets stay inside an IPv4 subnet, so the bits always fit.
        Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX))
    }
    fn first(net: &Ipv4Net) -> Self {
        net.network()
    }
    fn last(net: &Ipv4Net) -> Self {
        net.broadcast()
    }
    fn prefix_len(net: &Ipv4Net) -> u8 {
        net.prefix_len()
    }
    fn trunc(net: &Ipv4Net) -> Ipv4Net {
        net.trunc()
    }
}

impl Family for Ipv6Addr {
    type Net = Ipv6Net;
    const NAME: &'static str = "IPv6";
    const MAX_PREFIX: u8 = 126;
    const HAS_BROADCAST: bool = false;
    fn bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
    fn first(net: &Ipv6Net) -> Self {
        net.network()
    }
    fn last(net: &Ipv6Net) -> Self {
        net.broadcast()
    }
    fn prefix_len(net: &Ipv6Net) -> u8 {
        net.prefix_len()
    }
    fn trunc(net: &Ipv6Net) -> Ipv6Net {
        net.trunc()
    }
}

/// The allocation state of one network in one address family.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, bound = "")]
pub struct Ipam<A: Family> {
    /// The network's subnet.
    pub subnet: A::Net,
    /// Its gateway (the bridge's address), never handed out.
    pub gateway: A,
    /// Where container addresses come from (the subnet unless `--ip-range` narrowed it).
    pub range: A::Net,
    /// Taken addresses and who holds them (a container id).
    #[serde(default)]
    pub allocated: BTreeMap<A, String>,
    /// The last address handed out; the next search starts after it.
    #[serde(default)]
    pub last: Option<A>,
    /// Addresses reserved by name (`--aux-address`), never handed out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, A>,
}

impl<A: Family> Ipam<A> {
    /// Validated state for a new network.
    pub fn new(subnet: A::Net, gateway: Option<A>, range: Option<A::Net>) -> Result<Self, NetError> {
        let subnet = A::trunc(&subnet);
        if A::prefix_len(&subnet) > A::MAX_PREFIX {
            return Err(NetError::Invalid(format!(
                "subnet {subnet} is too small for containers (/{} at most)",
                A::MAX_PREFIX
            )));
        }
        let (first, last) = (A::first(&subnet), A::last(&subnet));
        let gateway = match gateway {
            Some(g) if !A::net_contains(&subnet, g) => {
                return Err(NetError::Invalid(format!("gateway {g} is not in subnet {subnet}")));
            }
            Some(g) if g == first || (A::HAS_BROADCAST && g == last) => {
                return Err(NetError::Invalid(format!(
                    "gateway {g} cannot be the subnet's network or broadcast address"
                )));
            }
            Some(g) => g,
            None => A::from_bits(first.bits() + 1),
        };
        let range = match range {
            Some(r) if !(A::net_contains(&subnet, A::first(&r)) && A::net_contains(&subnet, A::last(&r))) => {
                return Err(NetError::Invalid(format!("ip-range {r} is not inside subnet {subnet}")));
            }
            Some(r) => A::trunc(&r),
            None => subnet,
        };
        Ok(Self { subnet, gateway, range, allocated: BTreeMap::new(), last: None, aux: BTreeMap::new() })
    }

    /// Reserves `aux` (name → address inside the subnet, not the gateway).
    pub fn reserve(&mut self, aux: BTreeMap<String, A>) -> Result<(), NetError> {
        for (name, ip) in &aux {
            if !A::net_contains(&self.subnet, *ip) || *ip == self.gateway {
                return Err(NetError::Invalid(format!(
                    "auxiliary address {name}={ip} must be inside subnet {} and not its gateway",
                    self.subnet
                )));
            }
        }
        self.aux = aux;
        Ok(())
    }

    fn usable(&self, ip: A) -> bool {
        A::net_contains(&self.range, ip)
            && ip != A::first(&self.subnet)
            && !(A::HAS_BROADCAST && ip == A::last(&self.subnet))
            && ip != self.gateway
            && !self.allocated.contains_key(&ip)
            && !self.aux.values().any(|a| *a == ip)
    }

    /// Takes `wanted` (when given, e.g. `--ip`) or the next free address after the last one handed out.
    pub fn allocate(&mut self, owner: &str, wanted: Option<A>) -> Result<A, NetError> {
        if let Some(ip) = wanted {
            if !A::net_contains(&self.subnet, ip) {
                return Err(NetError::Invalid(format!("address {ip} is not in the network's subnet {}", self.subnet)));
            }
            if self.allocated.get(&ip).is_some_and(|o| o != owner) || ip == self.gateway {
                return Err(NetError::Conflict(format!("Address already in use: {ip}")));
            }
            self.allocated.insert(ip, owner.to_string());
            return Ok(ip);
        }
        let first = A::first(&self.range).bits();
        // A whole 128-bit space has one address too many to count: its size saturates.
        let size = (A::last(&self.range).bits() - first).saturating_add(1);
        let start = self
            .last
            .map(A::bits)
            .filter(|l| *l >= first && *l - first < size)
            .map_or(0, |l| (l - first).saturating_add(1) % size);
        // Every address but the taken ones is free, so the search ends after at most that many steps.
        let bound = size.min(self.allocated.len() as u128 + self.aux.len() as u128 + 4);
        for i in 0..bound {
            // (start + i) mod size, without overflowing next to 2^128.
            let offset = if start >= size - i { start - (size - i) } else { start + i };
            let ip = A::from_bits(first + offset);
            if self.usable(ip) {
                self.allocated.insert(ip, owner.to_string());
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(NetError::Exhausted(format!(
            "no available {} addresses on this network's address pools: {}",
            A::NAME,
            self.range
        )))
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
        let mut ipam = Ipam::<Ipv4Addr>::new(net("10.9.0.0/29"), None, None)?;
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
        let mut ipam = Ipam::<Ipv4Addr>::new(net("10.9.0.0/24"), None, None)?;
        ipam.allocate("a", None)?;
        let json = serde_json::to_string(&ipam).map_err(|e| NetError::Internal(e.to_string()))?;
        let mut back: Ipam<Ipv4Addr> = serde_json::from_str(&json).map_err(|e| NetError::Internal(e.to_string()))?;
        assert_eq!(back.allocate("b", None)?, Ipv4Addr::new(10, 9, 0, 3));
        Ok(())
    }

    #[test]
    fn validates_gateway_range_and_static_addresses() -> Result<(), NetError> {
        assert!(Ipam::<Ipv4Addr>::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 8, 0, 1)), None).is_err());
        assert!(Ipam::<Ipv4Addr>::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 0, 0)), None).is_err());
        assert!(Ipam::<Ipv4Addr>::new(net("10.9.0.0/24"), None, Some(net("10.10.0.0/28"))).is_err());
        assert!(Ipam::<Ipv4Addr>::new(net("10.9.0.0/31"), None, None).is_err());
        let mut ipam =
            Ipam::<Ipv4Addr>::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 0, 254)), Some(net("10.9.0.128/28")))?;
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

    #[test]
    fn ipv6_subnets_allocate_from_a_range_and_take_fixed_addresses() -> Result<(), NetError> {
        let v6 = |s: &str| s.parse::<Ipv6Net>().unwrap_or_default();
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let mut ipam =
            Ipam::<Ipv6Addr>::new(v6("2001:389::/64"), Some(a("2001:389::ffff")), Some(v6("2001:389::/96")))?;
        assert_eq!(ipam.allocate("c1", None)?, a("2001:389::1"));
        assert_eq!(ipam.allocate("c2", Some(a("2001:389::f00d")))?, a("2001:389::f00d"));
        assert!(matches!(ipam.allocate("c3", Some(a("2001:389::f00d"))), Err(NetError::Conflict(_))));
        assert!(ipam.allocate("c3", Some(a("2001:388::1"))).is_err());
        // No broadcast address in IPv6: a /126 has three usable addresses after the network's.
        let mut small = Ipam::<Ipv6Addr>::new(v6("fd00::/126"), None, None)?;
        assert_eq!(small.gateway, a("fd00::1"));
        assert_eq!((small.allocate("x", None)?, small.allocate("y", None)?), (a("fd00::2"), a("fd00::3")));
        assert!(matches!(small.allocate("z", None), Err(NetError::Exhausted(_))));
        assert!(Ipam::<Ipv6Addr>::new(v6("fd00::/127"), None, None).is_err());
        // A huge range is searched only as far as the taken addresses reach.
        let mut huge = Ipam::<Ipv6Addr>::new(v6("::/0"), None, None)?;
        huge.last = Some(a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(huge.allocate("w", None)?, a("::2"));
        let ula = random_ula();
        assert!(ula.prefix_len() == 64 && ula.network().octets()[0] == 0xfd && ula == ula.trunc());
        Ok(())
    }
}
