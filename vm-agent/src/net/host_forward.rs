//! Accept rules for Skiff's bridges in the host's own `FORWARD` chain (natively on a Linux host).
//!
//! Another engine on the host may own the forwarding policy: dockerd sets `FORWARD` to `DROP`
//! and enables bridge netfilter, after which every packet between two containers on one bridge
//! and every packet leaving a bridge traverses that chain and is dropped. A drop in any table is
//! final, so our own nftables table cannot override it: like libvirt and netavark, the engine
//! inserts, per bridge, `-i BRIDGE -j ACCEPT` and `-o BRIDGE` (established) `-j ACCEPT` at the
//! top of the chain through `iptables` (whichever back end dockerd uses), tagged with a comment,
//! and deletes exactly those rules when the bridge goes. Isolation is unaffected: our table's
//! drops still apply. Where there is no `iptables` (the VM), nothing else can own the policy,
//! and this does nothing.

use std::process::Command;

use super::NetError;

/// The comment that marks the rules of `bridge`.
fn tag(bridge: &str) -> String {
    format!("skiff:{bridge}")
}

/// The rules for `bridge`, as `iptables` arguments after the `-I/-C/-D FORWARD`.
fn rules(bridge: &str) -> [Vec<String>; 2] {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let t = tag(bridge);
    [
        s(&["-i", bridge, "-m", "comment", "--comment", &t, "-j", "ACCEPT"]),
        s(&[
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-m",
            "comment",
            "--comment",
            &t,
            "-j",
            "ACCEPT",
        ]),
    ]
}

fn iptables() -> Option<&'static str> {
    ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"].into_iter().find(|p| std::path::Path::new(p).exists())
}

fn run(bin: &str, op: &str, rule: &[String]) -> Result<bool, NetError> {
    let (code, _, _) = crate::runtime::reaper::output(Command::new(bin).args(["-w", op, "FORWARD"]).args(rule))
        .map_err(|e| NetError::Internal(format!("running {bin}: {e}")))?;
    Ok(code == 0)
}

/// Inserts the accept rules for `bridge` unless they are there already. Blocking.
pub fn allow(bridge: &str) -> Result<(), NetError> {
    let Some(bin) = iptables() else { return Ok(()) };
    for rule in rules(bridge) {
        if !run(bin, "-C", &rule)? && !run(bin, "-I", &rule)? {
            return Err(NetError::Internal(format!(
                "iptables could not insert a FORWARD accept rule for {bridge} (another firewall drops forwarded packets)"
            )));
        }
    }
    Ok(())
}

/// Deletes every copy of the accept rules for `bridge`. Blocking.
pub fn revoke(bridge: &str) {
    let Some(bin) = iptables() else { return };
    for rule in rules(bridge) {
        // A killed engine may have left a copy; a few rounds remove any duplicates.
        for _ in 0..8 {
            match run(bin, "-D", &rule) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(bridge, error = %e, "removing a FORWARD rule");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_only_their_bridge() {
        for rule in rules("skiff0") {
            assert_eq!(rule.iter().filter(|a| *a == "skiff0").count(), 1);
            assert!(rule.contains(&"skiff:skiff0".to_string()));
            assert_eq!(rule.last().map(String::as_str), Some("ACCEPT"));
        }
    }
}
