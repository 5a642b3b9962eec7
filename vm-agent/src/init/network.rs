//! The guest's own network: loopback and the NIC, configured over netlink with the addresses the
//! host put on the kernel command line (QEMU's user-mode network has fixed ones: no DHCP round
//! trip needed), plus `/etc/resolv.conf` and `/etc/hosts`.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use skiff_proto::boot::BootConfig;

use super::SetupError;

/// Configures `lo` and the first Ethernet NIC (waiting up to `wait` for its driver).
pub async fn configure(boot: &BootConfig, wait: std::time::Duration) -> Result<(), SetupError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| SetupError::io("opening netlink", e))?;
    tokio::spawn(conn);
    let err = |what: &str, e: rtnetlink::Error| SetupError::Network(format!("{what}: {e}"));
    set_up(&handle, "lo").await.map_err(|e| err("bringing up lo", e))?;
    let Some((ip, prefix)) = boot.ip else {
        tracing::info!("no skiff.ip on the kernel command line: the guest stays offline");
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + wait;
    let index = loop {
        if let Some(i) = first_ethernet(&handle).await.map_err(|e| err("listing links", e))? {
            break i;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(SetupError::Network("no network interface appeared (virtio_net not bound?)".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    handle.address().add(index, ip.into(), prefix).execute().await.map_err(|e| err("adding the address", e))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| err("bringing up the NIC", e))?;
    if let Some(gw) = boot.gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
        handle.route().add(route).execute().await.map_err(|e| err("adding the default route", e))?;
    }
    write_resolver_files(boot)?;
    tracing::info!(address = %ip, prefix, gateway = ?boot.gateway, "network configured");
    Ok(())
}

async fn set_up(handle: &rtnetlink::Handle, name: &str) -> Result<(), rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    if let Some(link) = links.try_next().await? {
        handle.link().set(LinkUnspec::new_with_index(link.header.index).up().build()).execute().await?;
    }
    Ok(())
}

/// The index of the first link that is neither loopback nor virtual (`/sys/class/net/X/device`).
async fn first_ethernet(handle: &rtnetlink::Handle) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await? {
        let name = link.attributes.iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if let Some(name) = name {
            if std::path::Path::new("/sys/class/net").join(&name).join("device").exists() {
                return Ok(Some(link.header.index));
            }
        }
    }
    Ok(None)
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
