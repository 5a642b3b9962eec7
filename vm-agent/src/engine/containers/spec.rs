//! Turns a container's Docker configuration into the OCI runtime spec its bundle carries: Docker's
//! default mounts, namespaces, capabilities, masked and read-only paths, rlimits and seccomp policy.

use std::path::Path;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde_json::{json, Value};

use crate::runtime::capabilities::{self, DOCKER_DEFAULT};
use crate::runtime::child::{CGROUP_ANNOTATION, GROUPS_ANNOTATION, INIT_ANNOTATION, USER_ANNOTATION};

use super::super::EngineError;

/// Docker's masked paths.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Syscalls Docker's default profile does not allow (without extra capabilities): refused with EPERM.
const DENIED_SYSCALLS: [&str; 43] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
    "vhangup",
    "iopl",
    "ioperm",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
];

/// Namespace flags `clone` may not use without CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The effective capability set for `--cap-add`, `--cap-drop` and `--privileged`.
pub fn capability_set(host: &HostConfig) -> Result<Vec<String>, EngineError> {
    if host.privileged.unwrap_or(false) {
        return Ok(capabilities::all_names());
    }
    let mut set: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    let norm = |c: &String| -> Result<Option<String>, EngineError> {
        if c.eq_ignore_ascii_case("ALL") {
            return Ok(None);
        }
        capabilities::normalise(c)
            .map(Some)
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid capability: {c}")))
    };
    for c in host.cap_drop.iter().flatten() {
        match norm(c)? {
            None => set.clear(),
            Some(n) => set.retain(|x| *x != n),
        }
    }
    for c in host.cap_add.iter().flatten() {
        match norm(c)? {
            None => set = capabilities::all_names(),
            Some(n) if !set.contains(&n) => set.push(n),
            Some(_) => {}
        }
    }
    Ok(set)
}

fn seccomp(caps: &[String]) -> Value {
    let sys_admin = caps.iter().any(|c| c == "CAP_SYS_ADMIN");
    let mut groups = vec![json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS})];
    if !sys_admin {
        groups.push(json!({"names": DENIED_SYSCALLS.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}));
        for flag in CLONE_NS_FLAGS {
            groups.push(json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}));
        }
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": groups})
}

/// The overlayfs mount data of a container's root: image layers below, its own upper layer.
pub fn overlay_data(lower_dirs: &[String], bundle: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower_dirs.join(":"),
        bundle.join("upper").display(),
        bundle.join("work").display()
    )
}

/// Everything the spec needs that is not in the Docker config.
#[derive(Debug)]
pub struct SpecInputs<'a> {
    /// The bundle directory (holds rootfs/, upper/, work/ and the /etc files).
    pub bundle: &'a Path,
    /// Image layer directories, top first.
    pub lower_dirs: Vec<String>,
    /// Hostname.
    pub hostname: String,
    /// The command line (entrypoint + cmd).
    pub args: Vec<String>,
    /// `cgroup.procs` files to join, if any.
    pub cgroup_procs: Vec<String>,
    /// Binds, volumes and tmpfs mounts (resolved at create).
    pub mounts: &'a [super::mounts::MountRecord],
    /// The network namespace to join (`None`: the engine's own, `--network host`).
    pub netns: Option<std::path::PathBuf>,
    /// Variables the engine adds (legacy links' `ALIAS_…`).
    pub extra_env: Vec<String>,
}

/// Builds the OCI runtime spec for a container.
pub fn build(
    config: &ContainerConfig,
    host: &HostConfig,
    inputs: &SpecInputs<'_>,
) -> Result<oci_spec::runtime::Spec, EngineError> {
    let caps = capability_set(host)?;
    let b = inputs.bundle;
    let overlay = overlay_data(&inputs.lower_dirs, b);
    let mut mounts = vec![
        json!({"destination": "/", "type": "overlay", "source": "overlay", "options": [overlay]}),
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    }
    for f in ["resolv.conf", "hostname", "hosts"] {
        mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind", "source": b.join(f), "options": ["rbind", "rprivate"]}));
    }
    for (dest, opts) in host.tmpfs.iter().flatten() {
        let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
        options.extend(opts.split(',').filter(|o| !o.is_empty()).map(str::to_string));
        mounts.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}));
    }
    for m in inputs.mounts {
        let mut options = match m.kind {
            super::mounts::Kind::Tmpfs => {
                let mut o = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                o.extend(m.options.iter().cloned());
                o
            }
            _ => vec!["rbind".to_string()],
        };
        if m.read_only {
            options.push("ro".into());
        }
        let (typ, source) = match m.kind {
            super::mounts::Kind::Tmpfs => ("tmpfs", "tmpfs"),
            _ => ("bind", m.source.as_str()),
        };
        mounts.push(json!({"destination": m.destination, "type": typ, "source": source, "options": options}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if let Some(path) = &inputs.netns {
        namespaces.push(json!({"type": "network", "path": path}));
    }
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": 1_048_576u64, "soft": 1_048_576u64})];
    for u in host.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        let typ = format!("RLIMIT_{}", name.to_ascii_uppercase());
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        if soft < 0 || hard < 0 || soft > hard {
            return Err(EngineError::InvalidArgument(format!(
                "invalid ulimit {name}: soft {soft} must be ≤ hard {hard} and both ≥ 0"
            )));
        }
        rlimits.retain(|r| r["type"] != typ.as_str());
        rlimits.push(json!({"type": typ, "hard": hard, "soft": soft}));
    }
    let mut env = inputs.extra_env.clone();
    env.extend(config.env.clone().unwrap_or_default());
    let env = runtime_env(env, &inputs.hostname, config.tty.unwrap_or(false));
    let cwd = config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    let privileged = host.privileged.unwrap_or(false);
    let mut annotations = serde_json::Map::new();
    annotations.insert(USER_ANNOTATION.into(), json!(config.user.clone().unwrap_or_default()));
    if host.init.unwrap_or(false) {
        annotations.insert(INIT_ANNOTATION.into(), json!("true"));
    }
    if let Some(groups) = host.group_add.as_ref().filter(|g| !g.is_empty()) {
        if groups.iter().any(|g| g.contains(',') || g.contains(':')) {
            return Err(EngineError::InvalidArgument(format!("invalid --group-add value: {}", groups.join(","))));
        }
        annotations.insert(GROUPS_ANNOTATION.into(), json!(groups.join(",")));
    }
    if !inputs.cgroup_procs.is_empty() {
        annotations.insert(CGROUP_ANNOTATION.into(), json!(inputs.cgroup_procs.join(":")));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": if privileged { json!([]) } else { json!(MASKED_PATHS.to_vec()) },
        "readonlyPaths": if privileged { json!([]) } else { json!(READONLY_PATHS.to_vec()) },
    });
    if !privileged {
        linux["seccomp"] = seccomp(&caps);
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty.unwrap_or(false),
            "consoleSize": {
                "height": host.console_size.as_ref().and_then(|c| c.first().copied()).unwrap_or(0),
                "width": host.console_size.as_ref().and_then(|c| c.get(1).copied()).unwrap_or(0),
            },
            "user": {"uid": 0, "gid": 0},
            "args": inputs.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps},
            "rlimits": rlimits,
            "noNewPrivileges": no_new_privileges(host.security_opt.as_deref().unwrap_or_default()),
        },
        "root": {"path": b.join("rootfs"), "readonly": host.readonly_rootfs.unwrap_or(false)},
        "hostname": inputs.hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| EngineError::Internal(format!("building runtime spec: {e}")))
}

/// The process environment as dockerd builds it: the container's own variables, plus
/// `HOSTNAME` and, with a terminal, `TERM=xterm`, unless the container sets them.
pub(crate) fn runtime_env(mut env: Vec<String>, hostname: &str, tty: bool) -> Vec<String> {
    let has = |env: &[String], key: &str| env.iter().any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
    if tty && !has(&env, "TERM") {
        env.insert(0, "TERM=xterm".into());
    }
    if !hostname.is_empty() && !has(&env, "HOSTNAME") {
        env.insert(0, format!("HOSTNAME={hostname}"));
    }
    env
}

/// `--security-opt no-new-privileges[=true|:true]` sets it; like dockerd, containers start
/// without it otherwise (setuid programs such as `sudo` and `ping` work).
fn no_new_privileges(opts: &[String]) -> bool {
    let mut on = false;
    for o in opts {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => on = true,
            "no-new-privileges=false" | "no-new-privileges:false" => on = false,
            _ => {}
        }
    }
    on
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn hostname_and_term_are_added_unless_set() {
        let env = runtime_env(vec!["PATH=/bin".into()], "abc123", true);
        assert_eq!(env, ["HOSTNAME=abc123", "TERM=xterm", "PATH=/bin"]);
        let env = runtime_env(vec!["HOSTNAME=mine".into(), "TERM=vt100".into()], "abc123", true);
        assert_eq!(env, ["HOSTNAME=mine", "TERM=vt100"]);
        assert_eq!(runtime_env(vec![], "h", false), ["HOSTNAME=h"]);
    }

    #[test]
    fn no_new_privileges_only_when_asked() {
        assert!(!no_new_privileges(&[]));
        assert!(no_new_privileges(&["no-new-privileges".into()]));
        assert!(no_new_privileges(&["no-new-privileges:true".into()]));
        assert!(!no_new_privileges(&["no-new-privileges=true".into(), "no-new-privileges=false".into()]));
        assert!(!no_new_privileges(&["seccomp=unconfined".into()]));
    }
}
