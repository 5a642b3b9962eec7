//! A container's mounts, resolved once at create: `-v` binds and volumes, `--mount`, `--tmpfs`
//! from `Mounts`, `--volumes-from`, and anonymous volumes for the remaining `Volumes` of the
//! config and the image. The result is persisted in the container record and drives the runtime
//! spec, inspect's `Mounts`, volume in-use checks and `rm -v`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use bollard_stubs::models::{ContainerConfig, HostConfig, MountType};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError};

/// What kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    Volume,
    Tmpfs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bind => "bind",
            Kind::Volume => "volume",
            Kind::Tmpfs => "tmpfs",
        }
    }
}

/// One resolved mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRecord {
    pub kind: Kind,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: Option<String>,
    /// Host path (binds) or the volume's data directory.
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// The volume was made for this container (removed with `rm -v` / `--rm`).
    #[serde(default)]
    pub anonymous: bool,
    /// Copy the image's content at the destination into the volume if it is still empty.
    #[serde(default)]
    pub copy_up: bool,
    /// tmpfs mount options (`size=…`, `mode=…`).
    #[serde(default)]
    pub options: Vec<String>,
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidArgument(msg)
}

/// Where a bind source must come from. In the VM only the host folders shared into the guest
/// exist; natively every host path does.
fn check_bind_source(src: &str) -> Result<(), EngineError> {
    if Path::new(src).exists() {
        return Ok(());
    }
    let shares = crate::init::shares::mounted();
    if shares.is_empty() {
        return Err(invalid(format!("invalid mount config for type \"bind\": bind source path does not exist: {src}")));
    }
    let shared = shares.iter().any(|s| Path::new(src).starts_with(s));
    Err(invalid(if shared {
        format!("invalid mount config for type \"bind\": bind source path does not exist: {src}")
    } else {
        format!(
            "invalid mount config for type \"bind\": bind source path does not exist in the Skiff VM: {src} \
             is outside the host folders shared with it ({}); add it with `skiff start --share {src}` \
             (the `shares` setting in $SKIFF_HOME/config.json)",
            shares.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    }))
}

fn absolute(dest: &str) -> Result<(), EngineError> {
    if dest.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(format!("invalid mount config: mount path must be absolute: '{dest}'")))
    }
}

/// Creates (or finds) volume `name` (None: anonymous) and returns its mount.
fn volume_mount(
    engine: &Engine,
    name: Option<&str>,
    destination: &str,
    read_only: bool,
    no_copy: bool,
    labels: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
) -> Result<MountRecord, EngineError> {
    let rec = engine.volumes.create(name, None, labels, options)?;
    crate::engine::events::volume_event(engine, "create", &rec.name);
    Ok(MountRecord {
        kind: Kind::Volume,
        source: engine.volumes.data_dir(&rec.name).display().to_string(),
        name: Some(rec.name),
        destination: destination.to_owned(),
        read_only,
        anonymous: rec.anonymous,
        copy_up: !no_copy,
        options: Vec::new(),
    })
}

/// Checks a create request's mounts without creating anything (create calls it first so a bad
/// request leaves no volume behind).
pub fn validate(host: &HostConfig) -> Result<(), EngineError> {
    for bind in host.binds.iter().flatten() {
        parse_bind(bind).and_then(|(src, dest, _)| {
            absolute(dest)?;
            if src.starts_with('/') {
                check_bind_source(src)?;
            }
            Ok(())
        })?;
    }
    for m in host.mounts.iter().flatten() {
        let target = m.target.clone().unwrap_or_default();
        absolute(&target)?;
        match m.typ {
            Some(MountType::BIND) => check_bind_source(m.source.as_deref().unwrap_or_default())?,
            Some(MountType::VOLUME) | Some(MountType::TMPFS) => {}
            other => {
                return Err(invalid(format!(
                    "mount type {} is not supported",
                    other.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into())
                )))
            }
        }
    }
    Ok(())
}

/// `SRC:DEST[:MODE]` → (source, destination, mode); a lone `DEST` is an anonymous volume
/// (empty source).
fn parse_bind(bind: &str) -> Result<(&str, &str, &str), EngineError> {
    let parts: Vec<&str> = bind.split(':').collect();
    match parts.as_slice() {
        [d] if d.starts_with('/') => Ok(("", d, "")),
        [s, d] if !s.is_empty() => Ok((s, d, "")),
        [s, d, m] if !s.is_empty() => Ok((s, d, m)),
        _ => Err(invalid(format!("invalid volume specification: '{bind}'"))),
    }
}

/// Resolves every mount of a new container, creating the volumes it names.
pub fn resolve(engine: &Engine, config: &ContainerConfig, host: &HostConfig) -> Result<Vec<MountRecord>, EngineError> {
    validate(host)?;
    let mut out: Vec<MountRecord> = Vec::new();
    let mut taken = HashSet::new();
    let add = |m: MountRecord, out: &mut Vec<MountRecord>, taken: &mut HashSet<String>| -> Result<(), EngineError> {
        if !taken.insert(m.destination.trim_end_matches('/').to_owned()) {
            return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
        }
        out.push(m);
        Ok(())
    };
    for bind in host.binds.iter().flatten() {
        let (src, dest, mode) = parse_bind(bind)?;
        let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
        for m in &modes {
            if !matches!(
                *m,
                "ro" | "rw" | "z" | "Z" | "nocopy" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            ) {
                return Err(invalid(format!("invalid mode: {m}")));
            }
        }
        let read_only = modes.contains(&"ro");
        let m = if src.is_empty() {
            volume_mount(engine, None, dest, read_only, false, BTreeMap::new(), BTreeMap::new())?
        } else if src.starts_with('/') {
            MountRecord {
                kind: Kind::Bind,
                name: None,
                source: src.to_owned(),
                destination: dest.to_owned(),
                read_only,
                anonymous: false,
                copy_up: false,
                options: Vec::new(),
            }
        } else {
            volume_mount(
                engine,
                Some(src),
                dest,
                read_only,
                modes.contains(&"nocopy"),
                BTreeMap::new(),
                BTreeMap::new(),
            )?
        };
        add(m, &mut out, &mut taken)?;
    }
    for m in host.mounts.iter().flatten() {
        let target = m.target.clone().unwrap_or_default();
        let read_only = m.read_only.unwrap_or(false);
        let record = match m.typ {
            Some(MountType::BIND) => MountRecord {
                kind: Kind::Bind,
                name: None,
                source: m.source.clone().unwrap_or_default(),
                destination: target,
                read_only,
                anonymous: false,
                copy_up: false,
                options: Vec::new(),
            },
            Some(MountType::VOLUME) => {
                let vo = m.volume_options.clone().unwrap_or_default();
                let labels = vo.labels.unwrap_or_default().into_iter().collect();
                let options = vo.driver_config.and_then(|d| d.options).unwrap_or_default().into_iter().collect();
                let name = m.source.as_deref().filter(|s| !s.is_empty());
                volume_mount(engine, name, &target, read_only, vo.no_copy.unwrap_or(false), labels, options)?
            }
            _ => {
                let t = m.tmpfs_options.clone().unwrap_or_default();
                let mut options = Vec::new();
                if let Some(size) = t.size_bytes.filter(|s| *s > 0) {
                    options.push(format!("size={size}"));
                }
                if let Some(mode) = t.mode.filter(|m| *m > 0) {
                    options.push(format!("mode={mode:o}"));
                }
                MountRecord {
                    kind: Kind::Tmpfs,
                    name: None,
                    source: String::new(),
                    destination: target,
                    read_only,
                    anonymous: false,
                    copy_up: false,
                    options,
                }
            }
        };
        add(record, &mut out, &mut taken)?;
    }
    for from in host.volumes_from.iter().flatten() {
        let (id, mode) = from.split_once(':').unwrap_or((from.as_str(), ""));
        let other = engine.containers.get(id)?;
        for m in other.record().mounts.iter().filter(|m| m.kind != Kind::Tmpfs) {
            let mut m = m.clone();
            m.anonymous = false;
            m.copy_up = false;
            match mode {
                "ro" => m.read_only = true,
                "rw" => m.read_only = false,
                "" => {}
                other => return Err(invalid(format!("invalid mode for volumes-from: {other}"))),
            }
            if !taken.contains(m.destination.trim_end_matches('/')) {
                add(m, &mut out, &mut taken)?;
            }
        }
    }
    // The config's Volumes include the image's: each one not mounted yet gets a new volume.
    let mut wanted: Vec<String> = config.volumes.clone().unwrap_or_default();
    wanted.sort();
    for dest in wanted {
        absolute(&dest)?;
        if !taken.contains(dest.trim_end_matches('/')) {
            let m = volume_mount(engine, None, &dest, false, false, BTreeMap::new(), BTreeMap::new())?;
            add(m, &mut out, &mut taken)?;
        }
    }
    Ok(out)
}

/// `Mounts` of `docker inspect` and `docker ps`.
pub fn mount_points(mounts: &[MountRecord]) -> Vec<bollard_stubs::models::MountPoint> {
    mounts
        .iter()
        .map(|m| bollard_stubs::models::MountPoint {
            typ: Some(m.kind.as_str().to_owned()),
            name: m.name.clone(),
            source: Some(m.source.clone()),
            destination: Some(m.destination.clone()),
            driver: m.name.as_ref().map(|_| crate::engine::volumes::DRIVER.to_owned()),
            mode: Some(if m.kind == Kind::Volume { "z".into() } else { String::new() }),
            rw: Some(!m.read_only),
            propagation: Some(if m.kind == Kind::Bind { "rprivate".into() } else { String::new() }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_specs_are_parsed_and_bad_ones_named() {
        assert_eq!(parse_bind("/a:/b").ok(), Some(("/a", "/b", "")));
        assert_eq!(parse_bind("data:/b:ro,nocopy").ok(), Some(("data", "/b", "ro,nocopy")));
        assert_eq!(parse_bind("/anon").ok(), Some(("", "/anon", "")));
        for bad in ["rel", ":/b", "/a:/b:ro:x"] {
            assert!(matches!(parse_bind(bad), Err(EngineError::InvalidArgument(_))), "{bad}");
        }
        assert!(absolute("rel").is_err() && absolute("/abs").is_ok());
    }
}
