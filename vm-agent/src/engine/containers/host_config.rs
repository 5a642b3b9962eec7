//! What a container's host config asks of the host: validation, cgroup limits, log settings.

use std::path::Path;

use bollard_stubs::models::HostConfig;

use super::io;
use crate::engine::EngineError;
use crate::runtime::cgroup;

/// The cgroup limits a host config asks for.
pub fn limits_of(h: &HostConfig) -> cgroup::Limits {
    cgroup::Limits {
        memory: h.memory.unwrap_or(0),
        memory_swap: h.memory_swap.unwrap_or(0),
        nano_cpus: h.nano_cpus.unwrap_or(0),
        cpu_shares: h.cpu_shares.unwrap_or(0),
        cpuset_cpus: h.cpuset_cpus.clone().unwrap_or_default(),
        pids_limit: h.pids_limit.unwrap_or(0),
        all_devices: h.privileged.unwrap_or(false),
        cpu_rt_period: h.cpu_realtime_period.unwrap_or(0),
        cpu_rt_runtime: h.cpu_realtime_runtime.unwrap_or(0),
    }
}

/// Refuses real-time CPU limits a host cannot give, as dockerd does at create.
pub(crate) fn check_realtime(layout: &cgroup::Layout, l: &cgroup::Limits) -> Result<(), EngineError> {
    if (l.cpu_rt_period > 0 || l.cpu_rt_runtime > 0) && !cgroup::supports_rt(layout) {
        return Err(EngineError::InvalidArgument(
            "Your kernel does not support CPU real-time scheduler (cgroup v2 has no real-time group scheduling)".into(),
        ));
    }
    if l.cpu_rt_period > 0 && l.cpu_rt_runtime > l.cpu_rt_period {
        return Err(EngineError::InvalidArgument(
            "cpu real-time runtime cannot be higher than cpu real-time period".into(),
        ));
    }
    Ok(())
}

/// Limits this host cannot enforce, in words (Docker prints them as warnings at create).
pub(crate) fn unenforceable(layout: &cgroup::Layout, l: &cgroup::Limits) -> Vec<String> {
    let cgroup::Layout::V1(m) = layout else { return Vec::new() };
    let mut w = Vec::new();
    let missing = |c: &str| !m.contains_key(c);
    if l.memory > 0 && missing("memory") {
        w.push("Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.".to_string());
    }
    if (l.nano_cpus > 0 || l.cpu_shares > 0) && missing("cpu") {
        w.push(
            "Your kernel does not support CPU limits or the cgroup is not mounted. Limitation discarded.".to_string(),
        );
    }
    if l.pids_limit > 0 && missing("pids") {
        w.push(
            "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded."
                .to_string(),
        );
    }
    w
}

/// Whether the container's output is kept (`--log-driver none` keeps nothing).
pub fn keeps_logs(h: &HostConfig) -> bool {
    h.log_config.as_ref().and_then(|l| l.typ.as_deref()) != Some("none")
}

pub(crate) fn log_target<'a>(path: &'a Path, h: &HostConfig) -> Option<(&'a Path, io::LogLimits)> {
    keeps_logs(h).then(|| (path, log_limits(h)))
}

/// The json-file rotation the container asked for (validated at create).
pub(crate) fn log_limits(h: &HostConfig) -> io::LogLimits {
    h.log_config
        .as_ref()
        .and_then(|l| l.config.as_ref())
        .and_then(|o| io::LogLimits::from_options(o).ok())
        .unwrap_or_default()
}

pub(crate) fn validate_host_config(h: &HostConfig) -> Result<(), EngineError> {
    // Skiff's runtime answers to dockerd's default runtime name.
    if let Some(r) = h.runtime.as_deref().filter(|r| !["", "runc", "io.containerd.runc.v2"].contains(r)) {
        return Err(EngineError::InvalidArgument(format!("unknown or invalid runtime name: {r}")));
    }
    if let Some(lc) = &h.log_config {
        if let Some(t) = lc.typ.as_deref().filter(|t| !["", "json-file", "local", "none"].contains(t)) {
            // dockerd's exact wording: clients match it (Skiff has json-file, local and none).
            return Err(EngineError::InvalidArgument(format!("logger: no log driver named '{t}' is registered")));
        }
        if let Some(opts) = &lc.config {
            io::LogLimits::from_options(opts).map_err(EngineError::InvalidArgument)?;
        }
    }
    if h.memory.unwrap_or(0) < 0 || h.nano_cpus.unwrap_or(0) < 0 || h.cpu_shares.unwrap_or(0) < 0 {
        return Err(EngineError::InvalidArgument("invalid resource limit: values must not be negative".into()));
    }
    if let (Some(m), Some(s)) = (h.memory, h.memory_swap) {
        if m > 0 && s > 0 && s < m {
            return Err(EngineError::InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
    }
    if h.memory.is_some_and(|m| m > 0 && m < 6 * 1024 * 1024) {
        return Err(EngineError::InvalidArgument("Minimum memory limit allowed is 6MB".into()));
    }
    Ok(())
}
