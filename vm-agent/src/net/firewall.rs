//! NAT and isolation for bridge networks in nftables, over netlink (Mullvad's `nftnl`, one
//! atomic batch per change). Each network owns one table, `ip skiff-<bridge>`:
//!
//! ```text
//! chain nat-out { type nat hook postrouting priority srcnat;
//!     ip saddr <subnet> oifname != <bridge> masquerade }          # not for internal networks
//! chain forward { type filter hook forward priority filter; policy accept;
//!     iifname <bridge> oifname != <bridge> oifname "skiff*" drop  # other Skiff networks
//!     iifname <bridge> oifname != <bridge> drop                   # internal networks only
//!     oifname <bridge> iifname != <bridge> drop }                 # internal networks only
//! ```
//!
//! A network with IPv6 has the same table in the `ip6` family (masquerading its IPv6 subnet).
//! A drop in any table is final, so per-network tables compose, and removing a network removes
//! exactly its rules. Every Skiff bridge name starts with [`BRIDGE_PREFIX`].

use std::ffi::CString;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use nftnl::expr::InterfaceName;
use nftnl::{nft_expr, Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

use super::NetError;

/// Every bridge the engine creates is named with this prefix (the isolation rules rely on it).
pub const BRIDGE_PREFIX: &str = "skiff";

/// The rules one network needs.
#[derive(Debug, Clone)]
pub struct BridgeRules {
    /// The bridge device.
    pub bridge: String,
    /// The network's subnet (masqueraded unless internal).
    pub subnet: Ipv4Net,
    /// Its IPv6 subnet, with IPv6.
    pub subnet6: Option<Ipv6Net>,
    /// No traffic in or out of the network.
    pub internal: bool,
}

fn cstr(s: &str) -> Result<CString, NetError> {
    CString::new(s).map_err(|_| NetError::Invalid(format!("bad name {s:?}")))
}

fn table_name(bridge: &str) -> Result<CString, NetError> {
    cstr(&format!("skiff-{bridge}"))
}

fn fail(e: impl std::fmt::Display) -> NetError {
    NetError::Internal(format!("nftables: {e}"))
}

/// Installs (or replaces, atomically) the network's tables.
pub fn apply(rules: &BridgeRules) -> Result<(), NetError> {
    let name = table_name(&rules.bridge)?;
    let bridge = cstr(&rules.bridge)?;
    let mut batch = Batch::new();
    add_table(&mut batch, &name, ProtoFamily::Ipv4, &bridge, rules.internal, &|masq| {
        masq.add_expr(&nft_expr!(payload ipv4 saddr));
        masq.add_expr(&nft_expr!(bitwise mask rules.subnet.netmask(), xor Ipv4Addr::UNSPECIFIED));
        masq.add_expr(&nft_expr!(cmp == rules.subnet.network()));
    })?;
    match rules.subnet6 {
        Some(subnet6) => add_table(&mut batch, &name, ProtoFamily::Ipv6, &bridge, rules.internal, &|masq| {
            masq.add_expr(&nft_expr!(payload ipv6 saddr));
            masq.add_expr(&nft_expr!(bitwise mask subnet6.netmask(), xor Ipv6Addr::UNSPECIFIED));
            masq.add_expr(&nft_expr!(cmp == subnet6.network()));
        })?,
        None => delete_table(&mut batch, &name, ProtoFamily::Ipv6),
    }
    send(&batch.finalize())?;
    enable_forwarding("/proc/sys/net/ipv4/ip_forward")?;
    if rules.subnet6.is_some() {
        enable_forwarding("/proc/sys/net/ipv6/conf/all/forwarding")?;
    }
    Ok(())
}

/// Adds one family's table to `batch`: isolation, and (unless internal) masquerading of the
/// sources `match_subnet` selects.
fn add_table(
    batch: &mut Batch,
    name: &CString,
    family: ProtoFamily,
    bridge: &CString,
    internal: bool,
    match_subnet: &dyn Fn(&mut Rule),
) -> Result<(), NetError> {
    let table = Table::new(name, family);
    // "add; delete; add": replaces an existing table and is not an error when there is none.
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);

    let mut forward = Chain::new(c"forward", &table);
    forward.set_type(ChainType::Filter);
    forward.set_hook(Hook::Forward, 0);
    forward.set_policy(Policy::Accept);
    batch.add(&forward, MsgType::Add);

    let exact = || InterfaceName::Exact(bridge.clone());
    let mut isolate = Rule::new(&forward);
    isolate.add_expr(&nft_expr!(meta iifname));
    isolate.add_expr(&nft_expr!(cmp == exact()));
    isolate.add_expr(&nft_expr!(meta oifname));
    isolate.add_expr(&nft_expr!(cmp != exact()));
    isolate.add_expr(&nft_expr!(cmp == InterfaceName::StartingWith(cstr(BRIDGE_PREFIX)?)));
    isolate.add_expr(&nft_expr!(verdict drop));
    batch.add(&isolate, MsgType::Add);

    if internal {
        for (from, to) in [(true, false), (false, true)] {
            let mut rule = Rule::new(&forward);
            rule.add_expr(&nft_expr!(meta iifname));
            rule.add_expr(&if from { nft_expr!(cmp == exact()) } else { nft_expr!(cmp != exact()) });
            rule.add_expr(&nft_expr!(meta oifname));
            rule.add_expr(&if to { nft_expr!(cmp == exact()) } else { nft_expr!(cmp != exact()) });
            rule.add_expr(&nft_expr!(verdict drop));
            batch.add(&rule, MsgType::Add);
        }
    } else {
        let mut nat = Chain::new(c"nat-out", &table);
        nat.set_type(ChainType::Nat);
        nat.set_hook(Hook::PostRouting, 100);
        batch.add(&nat, MsgType::Add);
        let mut masq = Rule::new(&nat);
        match_subnet(&mut masq);
        masq.add_expr(&nft_expr!(meta oifname));
        masq.add_expr(&nft_expr!(cmp != exact()));
        masq.add_expr(&nft_expr!(masquerade));
        batch.add(&masq, MsgType::Add);
    }
    Ok(())
}

/// Deletes one family's table in `batch`; a missing one is fine ("add; delete").
fn delete_table(batch: &mut Batch, name: &CString, family: ProtoFamily) {
    let table = Table::new(name, family);
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
}

/// Removes the network's tables; missing ones are fine.
pub fn remove(bridge: &str) -> Result<(), NetError> {
    let name = table_name(bridge)?;
    let mut batch = Batch::new();
    delete_table(&mut batch, &name, ProtoFamily::Ipv4);
    delete_table(&mut batch, &name, ProtoFamily::Ipv6);
    send(&batch.finalize())
}

fn send(batch: &FinalizedBatch) -> Result<(), NetError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(fail)?;
    let portid = socket.portid();
    socket.send_all(batch).map_err(fail)?;
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..]).map_err(fail)? {
            let message = message.map_err(fail)?;
            let Some(seq) = expected.next() else { break };
            mnl::cb_run(message, seq, portid).map_err(fail)?;
        }
    }
    Ok(())
}

/// Containers reach the outside through the host's routing: forwarding must be on (`knob`:
/// IPv4's, or IPv6's for networks with IPv6).
fn enable_forwarding(knob: &str) -> Result<(), NetError> {
    if std::fs::read_to_string(knob).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(knob, "1").map_err(|e| NetError::Internal(format!("enabling forwarding ({knob}): {e}")))
}
