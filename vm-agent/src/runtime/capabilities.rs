//! Capability sets: the bounding set is reduced to the spec's, then effective, permitted and
//! inheritable are set. A non-root user keeps them across `setuid` only long enough for that.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use super::LaunchError;

/// Docker's default capability set.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability this kernel knows, by Docker name (`CAP_…`).
pub fn all_names() -> Vec<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

/// Whether `name` (with or without `CAP_`) is a capability.
pub fn normalise(name: &str) -> Option<String> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    Capability::from_str(&full).ok().map(|c| c.to_string())
}

fn set_of<T: serde::Serialize>(items: Option<&HashSet<T>>) -> CapsHashSet {
    items
        .into_iter()
        .flatten()
        .filter_map(|c| {
            serde_json::to_value(c).ok().and_then(|v| v.as_str().and_then(|s| Capability::from_str(s).ok()))
        })
        .collect()
}

/// Before switching user (while still privileged): reduce the bounding set, and for a non-root
/// uid keep the permitted set across `setuid`.
pub fn prepare(spec: Option<&LinuxCapabilities>, uid: u32) -> Result<(), LaunchError> {
    if let Some(c) = spec {
        let bounding = set_of(c.bounding().as_ref());
        for cap in caps::all() {
            if !bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| LaunchError::other(format!("setting bounding capabilities: {e}")))?;
            }
        }
    }
    if uid != 0 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(LaunchError::sys("PR_SET_KEEPCAPS", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// After switching user: sets the effective, permitted, inheritable and ambient sets.
pub fn apply(spec: Option<&LinuxCapabilities>) -> Result<(), LaunchError> {
    let Some(c) = spec else { return Ok(()) };
    fn err(what: &'static str) -> impl Fn(caps::errors::CapsError) -> LaunchError {
        move |e| LaunchError::other(format!("setting {what} capabilities: {e}"))
    }
    // Nothing can be granted beyond what this process holds (root here may lack e.g.
    // CAP_SYS_RESOURCE): `--privileged` means every capability that is available.
    let held = caps::read(None, CapSet::Permitted).map_err(err("permitted"))?;
    let limit = |set: CapsHashSet| -> CapsHashSet { set.intersection(&held).copied().collect() };
    caps::set(None, CapSet::Effective, &limit(set_of(c.effective().as_ref()))).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &limit(set_of(c.permitted().as_ref()))).map_err(err("permitted"))?;
    caps::set(None, CapSet::Inheritable, &limit(set_of(c.inheritable().as_ref()))).map_err(err("inheritable"))?;
    let ambient = limit(set_of(c.ambient().as_ref()));
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient).map_err(err("ambient"))?;
    }
    Ok(())
}

/// What `execve` of a binary without file capabilities does to this process's sets, applied in
/// place (for the `--init` process, which forks the command instead of exec'ing): a non-root user
/// keeps only its ambient capabilities as permitted and effective; root keeps its sets.
pub fn as_after_exec(uid: u32) -> Result<(), LaunchError> {
    if uid == 0 {
        return Ok(());
    }
    fn err(what: &'static str) -> impl Fn(caps::errors::CapsError) -> LaunchError {
        move |e| LaunchError::other(format!("dropping {what} capabilities: {e}"))
    }
    let ambient = caps::read(None, CapSet::Ambient).map_err(err("ambient"))?;
    caps::set(None, CapSet::Effective, &ambient).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &ambient).map_err(err("permitted"))?;
    Ok(())
}
