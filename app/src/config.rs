//! Persistent VM settings (`$SKIFF_HOME/config.json`): set by `skiff start` flags, applied at the
//! next boot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::accel::AccelChoice;
use crate::arch::GuestArch;

/// The VM's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    pub cpus: u32,
    pub memory_mib: u32,
    /// The data disk's size; it only grows (shrinking would lose data).
    pub disk_gib: u32,
    pub accel: AccelChoice,
    /// Host folders shared with the VM over virtio-fs, mounted at the same path in the guest so
    /// `-v "$PWD":/app` works unchanged (default: the home directory).
    pub shares: Vec<PathBuf>,
    /// The guest's architecture (default: the host's; the other one runs emulated).
    pub arch: GuestArch,
    /// Registries the engine may reach over plain HTTP (dockerd's `insecure-registries`), e.g. one
    /// on this host as `host.docker.internal:5000`.
    pub insecure_registries: Vec<String>,
}

fn default_shares() -> Vec<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).into_iter().collect()
}

impl Default for VmConfig {
    fn default() -> Self {
        let host_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self {
            cpus: u32::try_from(host_cpus).unwrap_or(2).clamp(1, 8),
            memory_mib: 2048,
            disk_gib: 64,
            accel: AccelChoice::Auto,
            shares: default_shares(),
            arch: GuestArch::host(),
            insecure_registries: Vec::new(),
        }
    }
}

/// A settings file or flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid Skiff config: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Flags of `skiff start` that override (and then persist) the settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
    pub disk_gib: Option<u32>,
    pub accel: Option<AccelChoice>,
    /// Replaces the shared folders when given.
    pub shares: Option<Vec<PathBuf>>,
    pub arch: Option<GuestArch>,
    /// Replaces the insecure registries when given.
    pub insecure_registries: Option<Vec<String>>,
}

impl VmConfig {
    /// Reads `path`, or the defaults if it does not exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ConfigError::Parse { path: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Applies flags and checks the result.
    pub fn apply(mut self, o: &Overrides) -> Result<Self, ConfigError> {
        self.cpus = o.cpus.unwrap_or(self.cpus);
        self.memory_mib = o.memory_mib.unwrap_or(self.memory_mib);
        if let Some(d) = o.disk_gib {
            if d < self.disk_gib {
                return Err(ConfigError::Invalid(format!(
                    "--disk {d}: the data disk is {} GiB and cannot shrink (`skiff delete --force` starts over)",
                    self.disk_gib
                )));
            }
            self.disk_gib = d;
        }
        self.accel = o.accel.unwrap_or(self.accel);
        self.arch = o.arch.unwrap_or(self.arch);
        if let Some(shares) = &o.shares {
            self.shares = shares.clone();
        }
        if let Some(r) = &o.insecure_registries {
            self.insecure_registries = r.clone();
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.cpus) {
            return Err(ConfigError::Invalid(format!("--cpus {}: must be between 1 and 64", self.cpus)));
        }
        if !(256..=1 << 20).contains(&self.memory_mib) {
            return Err(ConfigError::Invalid(format!(
                "--memory {}: must be between 256 and 1048576 MiB",
                self.memory_mib
            )));
        }
        for share in &self.shares {
            if !share.is_absolute() || !share.is_dir() {
                return Err(ConfigError::Invalid(format!(
                    "--share {}: must be an existing directory given as an absolute path",
                    share.display()
                )));
            }
        }
        for r in &self.insecure_registries {
            let ok = !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "--insecure-registry {r:?}: must be HOST or HOST:PORT (no scheme, no path)"
                )));
            }
        }
        if !(1..=16384).contains(&self.disk_gib) {
            return Err(ConfigError::Invalid(format!("--disk {}: must be between 1 and 16384 GiB", self.disk_gib)));
        }
        Ok(())
    }

    /// Writes the settings atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write { path: path.display().to_string(), source };
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_persist_and_bad_values_are_refused() -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let path = dir.path().join("config.json");
        let cfg =
            VmConfig::load(&path)?.apply(&Overrides { cpus: Some(1), memory_mib: Some(1024), ..Default::default() })?;
        cfg.save(&path)?;
        let again = VmConfig::load(&path)?;
        assert_eq!((again.cpus, again.memory_mib), (1, 1024));
        assert!(again.clone().apply(&Overrides { cpus: Some(0), ..Default::default() }).is_err());
        assert!(again.clone().apply(&Overrides { disk_gib: Some(1), ..Default::default() }).is_err());
        let registry = |r: &str| Overrides { insecure_registries: Some(vec![r.into()]), ..Default::default() };
        assert!(again.clone().apply(&registry("host.docker.internal:5000")).is_ok());
        assert!(again.clone().apply(&registry("http://x:5000/v2")).is_err());
        std::fs::write(&path, r#"{"cpus": 2, "gpus": 1}"#).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        assert!(matches!(VmConfig::load(&path), Err(ConfigError::Parse { .. })));
        Ok(())
    }
}
