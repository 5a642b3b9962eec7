//! The guest's own network: loopback and the NIC, configured over netlink with the addresses the
//! host put on the kernel command line (QEMU's user-mode network has fixed ones: no DHCP round
//! trip needed), plus `/etc/resolv.conf` and `/etc/hosts`.

use ipnet::Ipv4Net;
use skiff_proto::boot::BootConfig;

use super::SetupError;
use crate::net::link::Links;
use crate::net::NetError;

/// Configures `lo` and the first Ethernet NIC (waiting up to `wait` for its driver).
pub async fn configure(boot: &BootConfig, wait: std::time::Duration) -> Result<(), SetupError> {
    let err = |e: NetError| SetupError::Network(e.to_string());
    let links = Links::open().map_err(err)?;
    links.set_up("lo").await.map_err(err)?;
    let Some((ip, prefix)) = boot.ip else {
        tracing::info!("no skiff.ip on the kernel command line: the guest stays offline");
        return Ok(());
    };
    let address = Ipv4Net::new(ip, prefix).map_err(|e| SetupError::Network(format!("skiff.ip {ip}/{prefix}: {e}")))?;
    let deadline = tokio::time::Instant::now() + wait;
    let index = loop {
        if let Some(i) = links.first_ethernet().await.map_err(err)? {
            break i;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(SetupError::Network("no network interface appeared (virtio_net not bound?)".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    links.bring_up(index, address, boot.gateway).await.map_err(err)?;
    write_resolver_files(boot)?;
    tracing::info!(address = %ip, prefix, gateway = ?boot.gateway, "network configured");
    Ok(())
}

fn write_resolver_files(boot: &BootConfig) -> Result<(), SetupError> {
    if let Some(dns) = boot.dns {
        std::fs::write("/etc/resolv.conf", format!("nameserver {dns}\n"))
            .map_err(|e| SetupError::io("writing /etc/resolv.conf", e))?;
    }
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    if let Some(host) = boot.host {
        hosts.push_str(&format!("{host}\thost.docker.internal host.skiff.internal\n"));
    }
    std::fs::write("/etc/hosts", hosts).map_err(|e| SetupError::io("writing /etc/hosts", e))
}
