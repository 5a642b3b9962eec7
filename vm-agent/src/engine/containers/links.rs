//! Legacy container links (`--link name[:alias]`, `HostConfig.Links`), as dockerd keeps them for
//! the default bridge: at start the linking container gets `/etc/hosts` entries for the alias and
//! the name, and `ALIAS_NAME`, `ALIAS_PORT…` and `ALIAS_ENV_…` variables; `docker ps` lists the
//! target also as `/linker/alias`; `docker rm --link /linker/alias` removes the link.

use std::net::Ipv4Addr;

use super::record::{ContainerRecord, Status};
use crate::engine::{Engine, EngineError};

/// One link as the linking container sees it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target's name.
    pub name: String,
    /// The alias (the name when none was given).
    pub alias: String,
    /// The target's id.
    pub id: String,
    /// Its address (on the network both share).
    pub ip: Option<Ipv4Addr>,
    /// Its environment.
    pub env: Vec<String>,
    /// Its exposed ports (`80/tcp`).
    pub ports: Vec<(u16, String)>,
}

/// `name[:alias]` (either may start with `/`; `/linker/alias` as dockerd reports it).
pub fn parse(spec: &str) -> Result<(String, String), EngineError> {
    let (name, alias) = spec.split_once(':').unwrap_or((spec, spec));
    let name = name.trim_start_matches('/').to_string();
    let alias = alias.rsplit('/').next().unwrap_or(alias).to_string();
    if name.is_empty() || alias.is_empty() {
        return Err(EngineError::InvalidArgument(format!("invalid link format: {spec}")));
    }
    Ok((name, alias))
}

/// At create: every link names an existing container.
pub fn validate(engine: &Engine, links: &[String]) -> Result<(), EngineError> {
    for spec in links {
        let (name, _) = parse(spec)?;
        engine
            .containers
            .get(&name)
            .map_err(|_| EngineError::NotFound(format!("could not get container for {name}")))?;
    }
    Ok(())
}

/// At start: each target, which must be running.
pub fn resolve(engine: &Engine, rec: &ContainerRecord) -> Result<Vec<Link>, EngineError> {
    let mut out = Vec::new();
    for spec in rec.host_config.links.iter().flatten() {
        let (name, alias) = parse(spec)?;
        let target = engine
            .containers
            .get(&name)
            .map_err(|_| EngineError::NotFound(format!("could not get container for {name}")))?;
        let t = target.record();
        if !matches!(t.state.status, Status::Running | Status::Paused) {
            return Err(EngineError::Conflict(format!(
                "Cannot link to a non running container: /{} AS /{}/{alias}",
                t.name, rec.name
            )));
        }
        // The address on a network both are on (the default bridge for legacy links).
        let ip = rec
            .networks
            .keys()
            .find_map(|n| t.networks.get(n))
            .or_else(|| t.networks.values().next())
            .and_then(|e| e.ip.map(|ip| ip.addr()));
        let mut ports: Vec<(u16, String)> = t
            .config
            .exposed_ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                Some((port.parse().ok()?, proto.to_string()))
            })
            .collect();
        ports.sort();
        out.push(Link {
            name: t.name.clone(),
            alias,
            id: t.id.clone(),
            ip,
            env: t.config.env.clone().unwrap_or_default(),
            ports,
        });
    }
    Ok(out)
}

/// The variables a link gives the linking container (`linker` is its name).
pub fn env(links: &[Link], linker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in links {
        let prefix = l.alias.to_ascii_uppercase().replace(['-', '.'], "_");
        out.push(format!("{prefix}_NAME=/{linker}/{}", l.alias));
        if let Some(ip) = l.ip {
            if let Some((port, proto)) = l.ports.first() {
                out.push(format!("{prefix}_PORT={proto}://{ip}:{port}"));
            }
            for (port, proto) in &l.ports {
                let p = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
                out.push(format!("{p}={proto}://{ip}:{port}"));
                out.push(format!("{p}_ADDR={ip}"));
                out.push(format!("{p}_PORT={port}"));
                out.push(format!("{p}_PROTO={proto}"));
            }
        }
        for e in &l.env {
            let Some((k, v)) = e.split_once('=') else { continue };
            if ["HOME", "PATH", "HOSTNAME"].contains(&k) {
                continue;
            }
            out.push(format!("{prefix}_ENV_{k}={v}"));
        }
    }
    out
}

/// `/etc/hosts` lines for the links.
pub fn hosts(links: &[Link]) -> String {
    links
        .iter()
        .filter_map(|l| {
            let ip = l.ip?;
            let short = l.id.get(..12).unwrap_or(&l.id);
            Some(if l.alias == l.name {
                format!("{ip}\t{} {short}\n", l.alias)
            } else {
                format!("{ip}\t{} {short} {}\n", l.alias, l.name)
            })
        })
        .collect()
}

/// Every link of every container, read once, so a listing names each target's `/linker/alias`
/// without reading all records again for each container it lists.
#[derive(Debug)]
pub struct LinkNames(Vec<(String, String)>);

impl LinkNames {
    /// The links of all containers: (target as the link names it, `/linker/alias`).
    pub fn collect(engine: &Engine) -> LinkNames {
        let mut links = Vec::new();
        for c in engine.containers.all() {
            c.with_record(|r| {
                for spec in r.host_config.links.iter().flatten() {
                    if let Ok((name, alias)) = parse(spec) {
                        links.push((name, format!("/{}/{alias}", r.name)));
                    }
                }
            });
        }
        LinkNames(links)
    }

    /// The other names `docker ps` lists for `target`: `/linker/alias` for each link to it.
    pub fn of(&self, target: &ContainerRecord) -> impl Iterator<Item = String> + '_ {
        let (name, id) = (target.name.clone(), target.id.clone());
        self.0.iter().filter(move |(n, _)| *n == name || id.starts_with(n.as_str())).map(|(_, full)| full.clone())
    }
}

/// `DELETE /containers/{linker}/{alias}?link=1`: removes that link from the linking container.
pub fn remove(engine: &Engine, path: &str) -> Result<(), EngineError> {
    let path = path.trim_start_matches('/');
    let (linker, alias) = path.rsplit_once('/').ok_or_else(|| {
        EngineError::InvalidArgument(format!("Conflict, cannot remove the default link name: {path}"))
    })?;
    let c = engine.containers.get(linker)?;
    let before = c.record().host_config.links.unwrap_or_default();
    let kept: Vec<String> =
        before.iter().filter(|s| parse(s).map(|(_, a)| a != alias).unwrap_or(true)).cloned().collect();
    if kept.len() == before.len() {
        return Err(EngineError::NotFound(format!("No such link: /{path}")));
    }
    c.update(|r| r.host_config.links = Some(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs_env_and_hosts() {
        assert_eq!(parse("db:database").ok(), Some(("db".to_string(), "database".to_string())));
        assert_eq!(parse("/db:/web/database").ok(), Some(("db".to_string(), "database".to_string())));
        assert_eq!(parse("db").ok(), Some(("db".to_string(), "db".to_string())));
        assert!(parse(":x").is_err());
        let l = Link {
            name: "db".into(),
            alias: "my-db".into(),
            id: "0123456789abcdef".into(),
            ip: Some(Ipv4Addr::new(172, 17, 0, 2)),
            env: vec!["FOO=1".into(), "PATH=/bin".into()],
            ports: vec![(5432, "tcp".into())],
        };
        let env = env(std::slice::from_ref(&l), "web");
        assert_eq!(
            env,
            vec![
                "MY_DB_NAME=/web/my-db",
                "MY_DB_PORT=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_ENV_FOO=1",
            ]
        );
        assert_eq!(hosts(&[l]), "172.17.0.2\tmy-db 0123456789ab db\n");
    }
}
