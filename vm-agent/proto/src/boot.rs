//! `skiff.*` parameters on the guest kernel's command line: what the host tells the agent before
//! any channel exists.

use std::net::Ipv4Addr;

/// The guest's boot configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootConfig {
    /// Address and prefix length of the NIC (`skiff.ip=10.0.2.15/24`).
    pub ip: Option<(Ipv4Addr, u8)>,
    /// Default gateway (`skiff.gw=`).
    pub gateway: Option<Ipv4Addr>,
    /// Upstream DNS resolver (`skiff.dns=`).
    pub dns: Option<Ipv4Addr>,
    /// The host as seen from the guest (`skiff.host=`), for `host.docker.internal`.
    pub host: Option<Ipv4Addr>,
    /// The data disk's device (`skiff.disk=/dev/vda`).
    pub disk: Option<String>,
    /// Agent log filter (`skiff.log=debug`).
    pub log: Option<String>,
    /// The host port the agent dials to open the control channel (`skiff.ctl=`); host ports are
    /// shared by every VM on a host with kernel vhost-vsock, so each daemon picks its own.
    pub host_control_port: Option<u32>,
    /// Host vsock port where the agent asks for published ports (`skiff.ports`).
    pub host_ports_port: Option<u32>,
    /// Host folders shared over virtio-fs: (tag, absolute path to mount it at, the same path as on
    /// the host), from `skiff.share=TAG:PATH` with the path percent-encoded.
    pub shares: Vec<(String, String)>,
    /// Registries the engine reaches over plain HTTP (`skiff.insecure=HOST[:PORT]`, repeated), as
    /// dockerd's `insecure-registries`.
    pub insecure_registries: Vec<String>,
    /// The virtio-fs tag of Apple's Rosetta share (`skiff.rosetta=TAG`, Virtualization.framework
    /// on Apple silicon): amd64 binaries then run translated by Rosetta instead of QEMU.
    pub rosetta: Option<String>,
}

/// Percent-encodes what cannot stand in one kernel command-line word.
fn encode_path(p: &str) -> String {
    p.bytes()
        .map(|b| match b {
            b'%' | b' ' | b'"' | b'\\' | b'\t' | b'\n' | b'=' | b':' => format!("%{b:02X}"),
            _ if !(0x20..0x7f).contains(&b) => format!("%{b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

fn decode_path(p: &str) -> Option<String> {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A `skiff.*` parameter with a value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("kernel command line: bad value for {key}: {value:?}")]
pub struct BadParam {
    pub key: String,
    pub value: String,
}

impl BootConfig {
    /// Parses `/proc/cmdline`; unknown `skiff.*` keys are ignored so an older agent boots with a
    /// newer host.
    pub fn parse(cmdline: &str) -> Result<Self, BadParam> {
        let mut cfg = BootConfig::default();
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else { continue };
            let bad = || BadParam { key: key.to_owned(), value: value.to_owned() };
            let addr = || value.parse::<Ipv4Addr>().map_err(|_| bad());
            match key {
                "skiff.ip" => {
                    let (a, p) = value.split_once('/').ok_or_else(bad)?;
                    let prefix = p.parse::<u8>().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
                    cfg.ip = Some((a.parse().map_err(|_| bad())?, prefix));
                }
                "skiff.gw" => cfg.gateway = Some(addr()?),
                "skiff.dns" => cfg.dns = Some(addr()?),
                "skiff.host" => cfg.host = Some(addr()?),
                "skiff.disk" => cfg.disk = Some(value.to_owned()),
                "skiff.log" => cfg.log = Some(value.to_owned()),
                "skiff.ctl" => cfg.host_control_port = Some(value.parse().map_err(|_| bad())?),
                "skiff.ports" => cfg.host_ports_port = Some(value.parse().map_err(|_| bad())?),
                "skiff.share" => {
                    let (tag, path) = value.split_once(':').ok_or_else(bad)?;
                    let path = decode_path(path).filter(|p| p.starts_with('/')).ok_or_else(bad)?;
                    cfg.shares.push((tag.to_owned(), path));
                }
                "skiff.rosetta" => {
                    let ok =
                        !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                    if !ok {
                        return Err(bad());
                    }
                    cfg.rosetta = Some(value.to_owned());
                }
                "skiff.insecure" => {
                    let ok =
                        !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
                    if !ok {
                        return Err(bad());
                    }
                    cfg.insecure_registries.push(value.to_owned());
                }
                _ => {}
            }
        }
        Ok(cfg)
    }

    /// The command-line words for this configuration (the inverse of [`BootConfig::parse`]).
    pub fn to_cmdline(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some((a, p)) = self.ip {
            words.push(format!("skiff.ip={a}/{p}"));
        }
        let addrs = [("skiff.gw", self.gateway), ("skiff.dns", self.dns), ("skiff.host", self.host)];
        words.extend(addrs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={v}"))));
        if let Some(d) = &self.disk {
            words.push(format!("skiff.disk={d}"));
        }
        if let Some(l) = &self.log {
            words.push(format!("skiff.log={l}"));
        }
        if let Some(p) = self.host_control_port {
            words.push(format!("skiff.ctl={p}"));
        }
        if let Some(p) = self.host_ports_port {
            words.push(format!("skiff.ports={p}"));
        }
        for (tag, path) in &self.shares {
            words.push(format!("skiff.share={tag}:{}", encode_path(path)));
        }
        words.extend(self.insecure_registries.iter().map(|r| format!("skiff.insecure={r}")));
        if let Some(tag) = &self.rosetta {
            words.push(format!("skiff.rosetta={tag}"));
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let cfg = BootConfig {
            ip: Some((Ipv4Addr::new(10, 0, 2, 15), 24)),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: Some(Ipv4Addr::new(10, 0, 2, 3)),
            host: Some(Ipv4Addr::new(10, 0, 2, 2)),
            disk: Some("/dev/vda".into()),
            log: None,
            host_control_port: Some(20001),
            host_ports_port: Some(20002),
            shares: vec![("share0".into(), "/home/dev/my project:x=1%".into())],
            insecure_registries: vec!["host.docker.internal:5000".into(), "10.0.2.2:5001".into()],
            rosetta: Some("rosetta".into()),
        };
        let line = format!("console=ttyS0 quiet {} skiff.future=1", cfg.to_cmdline().join(" "));
        assert_eq!(BootConfig::parse(&line), Ok(cfg));
    }

    #[test]
    fn bad_values_are_named() {
        for bad in [
            "skiff.ip=10.0.2.15",
            "skiff.ip=10.0.2.15/40",
            "skiff.gw=gateway",
            "skiff.insecure=a/b",
            "skiff.rosetta=a/b",
        ] {
            let err = BootConfig::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(bad.split('=').next().unwrap_or_default()), "{bad}: {err}");
        }
    }
}
