//! Per-container cgroups on whatever the host offers: the unified v2 hierarchy (the Skiff VM), or
//! v1 controller hierarchies (hosts like these machines, where memory, cpu, pids, freezer … are v1).
//! Limits that the host cannot enforce are reported, never silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Resource limits, in Docker's units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `--memory` in bytes (0 = none).
    pub memory: i64,
    /// `--memory-swap` in bytes (memory + swap; -1 = unlimited, 0 = unset).
    pub memory_swap: i64,
    /// `--cpus` in billionths of a CPU (0 = none).
    pub nano_cpus: i64,
    /// `--cpu-shares` (0 = default).
    pub cpu_shares: i64,
    /// `--cpuset-cpus` (empty = all).
    pub cpuset_cpus: String,
    /// `--pids-limit` (0 or -1 = none).
    pub pids_limit: i64,
    /// `--cpu-rt-period` in microseconds (0 = the parent's).
    pub cpu_rt_period: i64,
    /// `--cpu-rt-runtime` in microseconds (0 = none).
    pub cpu_rt_runtime: i64,
    /// `--privileged`: every device is allowed.
    pub all_devices: bool,
}

/// Gives every group between the cpu hierarchy's root and `dir` (exclusive) the real-time
/// budget its children need with `dir` getting `runtime` µs per `period` µs: a group hands its
/// children at most its own share (new groups have none), so each ancestor needs the sum of its
/// children's shares in its own period. Computed bottom-up, written top-down (as dockerd
/// prepares its parent cgroup for `--cpu-rt-runtime`).
fn grant_rt_runtime(mount: &std::path::Path, dir: &std::path::Path, runtime: i64, period: i64) -> std::io::Result<()> {
    let Ok(rel) = dir.strip_prefix(mount) else { return Ok(()) };
    let read = |p: &std::path::Path, f: &str, default: i64| -> i64 {
        std::fs::read_to_string(p.join(f)).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    };
    // Scaled to another period, rounded up.
    let scale = |rt: i64, from: i64, to: i64| -> i64 {
        if from <= 0 || rt <= 0 {
            0
        } else {
            (rt * to + from - 1) / from
        }
    };
    let mut path = vec![mount.to_path_buf()];
    for part in rel.components() {
        let next = path.last().map(|p| p.join(part)).unwrap_or_default();
        path.push(next);
    }
    // path[0] is the root (never changed), path[last] is `dir`.
    let mut need = (runtime, period);
    let mut plan = Vec::new();
    for i in (1..path.len().saturating_sub(1)).rev() {
        let (group, child) = (&path[i], &path[i + 1]);
        let own_period = read(group, "cpu.rt_period_us", 1_000_000);
        let mut total = scale(need.0, need.1, own_period);
        for entry in std::fs::read_dir(group)?.flatten() {
            let p = entry.path();
            if p.is_dir() && p != *child {
                total += scale(read(&p, "cpu.rt_runtime_us", 0), read(&p, "cpu.rt_period_us", 1_000_000), own_period);
            }
        }
        plan.push((group.clone(), total));
        need = (total, own_period);
    }
    for (group, total) in plan.into_iter().rev() {
        if read(&group, "cpu.rt_runtime_us", 0) < total {
            write(&group.join("cpu.rt_runtime_us"), &total.to_string())?;
        }
    }
    Ok(())
}

/// Whether this host can give a group real-time CPU time (cgroup v1 with
/// `CONFIG_RT_GROUP_SCHED`; cgroup v2 has no real-time group scheduling).
pub fn supports_rt(layout: &Layout) -> bool {
    match layout {
        Layout::V2(_) => false,
        Layout::V1(m) => m.get("cpu").is_some_and(|c| c.join("cpu.rt_runtime_us").exists()),
    }
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone)]
pub enum Layout {
    /// One unified v2 hierarchy.
    V2(PathBuf),
    /// v1 controller name → mount point.
    V1(BTreeMap<String, PathBuf>),
}

/// Reads the host's layout from `/proc/self/mountinfo`.
pub fn detect() -> Layout {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mount = left.split_whitespace().nth(4).unwrap_or_default();
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or_default();
        let opts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" => v2 = v2.or(Some(PathBuf::from(mount))),
            "cgroup" => {
                for c in opts.split(',') {
                    if ["memory", "cpu", "cpuacct", "pids", "freezer", "cpuset", "devices"].contains(&c) {
                        v1.insert(c.to_string(), PathBuf::from(mount));
                    }
                }
            }
            _ => {}
        }
    }
    match v2 {
        Some(root) if v1.is_empty() || root == Path::new("/sys/fs/cgroup") => Layout::V2(root),
        Some(unified) => {
            // A hybrid host: the v2 hierarchy still takes the eBPF device filter.
            v1.insert(UNIFIED.to_string(), unified);
            Layout::V1(v1)
        }
        None => Layout::V1(v1),
    }
}

/// The key of a hybrid host's v2 hierarchy in a `Layout::V1` map.
const UNIFIED: &str = "unified";

/// A container's cgroup(s).
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: Layout,
    name: String,
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value).map_err(|e| in_context(e, format!("writing {value:?} to {}", path.display())))
}

/// `e` with what was being done. The errno goes into the message; a cgroup gone or going
/// ([`is_gone`]) keeps being told as such, as `NotFound`.
fn in_context(e: std::io::Error, what: String) -> std::io::Error {
    let kind = if is_gone(&e) { std::io::ErrorKind::NotFound } else { e.kind() };
    std::io::Error::new(kind, format!("{what}: {e}"))
}

/// Docker's device allow-list (v1 devices controller).
const DEVICE_RULES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

impl Cgroup {
    /// The cgroup of container `id` (not created yet).
    pub fn new(layout: Layout, id: &str) -> Self {
        Self { layout, name: format!("skiff/{id}") }
    }

    fn dir(&self, controller: &str) -> Option<PathBuf> {
        match &self.layout {
            Layout::V2(root) => Some(root.join(&self.name)),
            Layout::V1(m) => m.get(controller).map(|p| p.join(&self.name)),
        }
    }

    /// Creates the cgroup(s) and applies `limits`. Returns warnings for limits the host cannot
    /// enforce, and the files the container's runtime child writes to join them: a v2
    /// hierarchy's `cgroup.procs`, a v1 hierarchy's `tasks` (see [`super::child`]'s
    /// `join_cgroups`: a v1 hierarchy is joined thread by thread, without waiting for the kernel).
    pub fn create(&self, limits: &Limits) -> std::io::Result<(Vec<String>, Vec<String>)> {
        let mut warnings = Vec::new();
        let mut procs = Vec::new();
        match &self.layout {
            Layout::V2(root) => {
                let parent = root.join("skiff");
                std::fs::create_dir_all(&parent)?;
                let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let enable: Vec<String> = ["cpu", "cpuset", "memory", "pids", "io"]
                    .iter()
                    .filter(|c| available.split_whitespace().any(|a| a == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                for dir in [root.as_path(), parent.as_path()] {
                    for e in &enable {
                        let _ = write(&dir.join("cgroup.subtree_control"), e);
                    }
                }
                let dir = root.join(&self.name);
                std::fs::create_dir_all(&dir)?;
                let has = |c: &str| available.split_whitespace().any(|a| a == c);
                if limits.memory > 0 {
                    if has("memory") {
                        write(&dir.join("memory.max"), &limits.memory.to_string())?;
                        if limits.memory_swap != 0 {
                            let swap = if limits.memory_swap < 0 {
                                "max".to_string()
                            } else {
                                (limits.memory_swap - limits.memory).max(0).to_string()
                            };
                            let _ = write(&dir.join("memory.swap.max"), &swap);
                        } else {
                            let _ = write(&dir.join("memory.swap.max"), &limits.memory.to_string());
                        }
                    } else {
                        warnings.push("memory limit not applied: the memory controller is unavailable".into());
                    }
                }
                if limits.nano_cpus > 0 {
                    let period = 100_000i64;
                    write(&dir.join("cpu.max"), &format!("{} {period}", limits.nano_cpus * period / 1_000_000_000))?;
                }
                if limits.cpu_shares > 0 {
                    let weight = 1 + ((limits.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                    write(&dir.join("cpu.weight"), &weight.to_string())?;
                }
                if !limits.cpuset_cpus.is_empty() {
                    write(&dir.join("cpuset.cpus"), &limits.cpuset_cpus)?;
                }
                if limits.pids_limit > 0 {
                    write(&dir.join("pids.max"), &limits.pids_limit.to_string())?;
                }
                if !limits.all_devices {
                    super::devices::attach(&dir, &super::devices::docker_defaults())?;
                }
                procs.push(dir.join("cgroup.procs").display().to_string());
            }
            Layout::V1(mounts) => {
                for (controller, mount) in mounts {
                    if controller == "cpuacct" && mounts.get("cpu") == Some(mount) {
                        continue;
                    }
                    let dir = mount.join(&self.name);
                    std::fs::create_dir_all(&dir)?;
                    if controller == "cpuset" {
                        // A v1 cpuset child starts empty: copy the parent's before joining.
                        for f in ["cpuset.cpus", "cpuset.mems"] {
                            let mut parent = dir.clone();
                            let mut stack = Vec::new();
                            while let Some(p) = parent.parent() {
                                parent = p.to_path_buf();
                                let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                                if !v.trim().is_empty() {
                                    break;
                                }
                                stack.push(parent.clone());
                            }
                            let value = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                            for d in stack.iter().rev() {
                                let _ = write(&d.join(f), value.trim());
                            }
                            let own = if f == "cpuset.cpus" && !limits.cpuset_cpus.is_empty() {
                                limits.cpuset_cpus.clone()
                            } else {
                                value.trim().to_string()
                            };
                            write(&dir.join(f), &own)?;
                        }
                    }
                    if controller == "devices" {
                        if limits.all_devices {
                            let _ = write(&dir.join("devices.allow"), "a");
                        } else {
                            let _ = write(&dir.join("devices.deny"), "a");
                            for rule in DEVICE_RULES {
                                let _ = write(&dir.join("devices.allow"), rule);
                            }
                        }
                    }
                    if controller == UNIFIED && !limits.all_devices {
                        if let Err(e) = super::devices::attach(&dir, &super::devices::docker_defaults()) {
                            // The v1 devices controller still enforces the list on such hosts.
                            tracing::debug!(error = %e, "no eBPF device filter on the hybrid v2 hierarchy");
                        }
                    }
                    let file = if controller == UNIFIED { "cgroup.procs" } else { "tasks" };
                    procs.push(dir.join(file).display().to_string());
                }
                let dir = |c: &str| mounts.get(c).map(|m| m.join(&self.name));
                if limits.memory > 0 {
                    match dir("memory") {
                        Some(d) => {
                            write(&d.join("memory.limit_in_bytes"), &limits.memory.to_string())?;
                            let memsw = d.join("memory.memsw.limit_in_bytes");
                            if memsw.exists() {
                                let total = if limits.memory_swap < 0 {
                                    -1
                                } else if limits.memory_swap == 0 {
                                    limits.memory * 2
                                } else {
                                    limits.memory_swap
                                };
                                let _ = write(&memsw, &total.to_string());
                            } else if limits.memory_swap != 0 {
                                warnings
                                    .push("memory swap limit not applied: the kernel has no swap accounting".into());
                            }
                        }
                        None => {
                            warnings.push("memory limit not applied: no memory cgroup controller on this host".into())
                        }
                    }
                }
                if limits.nano_cpus > 0 || limits.cpu_shares > 0 {
                    match dir("cpu") {
                        Some(d) => {
                            if limits.nano_cpus > 0 {
                                write(&d.join("cpu.cfs_period_us"), "100000")?;
                                write(
                                    &d.join("cpu.cfs_quota_us"),
                                    &(limits.nano_cpus * 100_000 / 1_000_000_000).to_string(),
                                )?;
                            }
                            if limits.cpu_shares > 0 {
                                write(&d.join("cpu.shares"), &limits.cpu_shares.to_string())?;
                            }
                        }
                        None => warnings.push("CPU limits not applied: no cpu cgroup controller on this host".into()),
                    }
                }
                if limits.cpu_rt_runtime > 0 || limits.cpu_rt_period > 0 {
                    if let (Some(d), Some(mount)) = (dir("cpu"), mounts.get("cpu")) {
                        let period = if limits.cpu_rt_period > 0 {
                            limits.cpu_rt_period
                        } else {
                            std::fs::read_to_string(d.join("cpu.rt_period_us"))
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(1_000_000)
                        };
                        grant_rt_runtime(mount, &d, limits.cpu_rt_runtime, period)?;
                        if limits.cpu_rt_period > 0 {
                            write(&d.join("cpu.rt_period_us"), &limits.cpu_rt_period.to_string())?;
                        }
                        if limits.cpu_rt_runtime > 0 {
                            write(&d.join("cpu.rt_runtime_us"), &limits.cpu_rt_runtime.to_string())?;
                        }
                    }
                }
                if limits.pids_limit > 0 {
                    match dir("pids") {
                        Some(d) => write(&d.join("pids.max"), &limits.pids_limit.to_string())?,
                        None => warnings.push("pids limit not applied: no pids cgroup controller on this host".into()),
                    }
                }
                if !limits.cpuset_cpus.is_empty() && dir("cpuset").is_none() {
                    warnings.push("cpuset not applied: no cpuset cgroup controller on this host".into());
                }
            }
        }
        Ok((warnings, procs))
    }

    /// Applies new limits to an existing cgroup (`docker update`).
    pub fn update(&self, limits: &Limits) -> std::io::Result<Vec<String>> {
        self.create(limits).map(|(w, _)| w)
    }

    /// Freezes (`true`) or thaws every process. An error for which [`is_gone`] holds means the
    /// cgroup is gone or going: its processes have exited.
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        match &self.layout {
            Layout::V2(_) => {
                write(&self.dir("").unwrap_or_default().join("cgroup.freeze"), if frozen { "1" } else { "0" })
            }
            Layout::V1(_) => {
                let d = self.dir("freezer").ok_or_else(|| {
                    std::io::Error::other("pause is unavailable: no freezer cgroup controller on this host")
                })?;
                write(&d.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
            }
        }
    }

    /// How many times the OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match &self.layout {
            Layout::V2(_) => ("memory.events", "oom_kill"),
            Layout::V1(_) => ("memory.oom_control", "oom_kill"),
        };
        let Some(d) = self.dir("memory") else { return 0 };
        std::fs::read_to_string(d.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// The container's cgroup in the v2 hierarchy (on a hybrid host, the one beside the v1
    /// hierarchies), which a process can be born into (`CLONE_INTO_CGROUP`).
    pub fn v2_dir(&self) -> Option<PathBuf> {
        match &self.layout {
            Layout::V2(root) => Some(root.join(&self.name)),
            Layout::V1(m) => m.get(UNIFIED).map(|p| p.join(&self.name)),
        }
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let d = match &self.layout {
            Layout::V2(_) => self.dir(""),
            Layout::V1(m) => {
                ["pids", "memory", "freezer", "cpu"].iter().find(|c| m.contains_key(**c)).and_then(|c| self.dir(c))
            }
        };
        d.and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Raw usage numbers for stats: (memory bytes, memory limit, cpu nanoseconds, pids).
    pub fn usage(&self) -> (u64, u64, u64, u64) {
        let read =
            |c: &str, f: &str| self.dir(c).and_then(|d| std::fs::read_to_string(d.join(f)).ok()).unwrap_or_default();
        let num = |s: String| s.trim().parse::<u64>().unwrap_or(u64::MAX);
        match &self.layout {
            Layout::V2(_) => {
                let mem = num(read("", "memory.current"));
                let limit = num(read("", "memory.max"));
                let cpu = read("", "cpu.stat")
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse::<u64>().ok()))
                    .unwrap_or(0)
                    * 1000;
                let pids = num(read("", "pids.current"));
                (if mem == u64::MAX { 0 } else { mem }, limit, cpu, if pids == u64::MAX { 0 } else { pids })
            }
            Layout::V1(_) => {
                let mem = num(read("memory", "memory.usage_in_bytes"));
                let limit = num(read("memory", "memory.limit_in_bytes"));
                let cpu = num(read("cpuacct", "cpuacct.usage"));
                let pids = num(read("pids", "pids.current"));
                let z = |v: u64| if v == u64::MAX { 0 } else { v };
                (z(mem), limit, z(cpu), z(pids))
            }
        }
    }

    /// Removes the cgroup(s); processes must be gone.
    pub fn remove(&self) {
        let dirs: Vec<PathBuf> = match &self.layout {
            Layout::V2(root) => vec![root.join(&self.name)],
            Layout::V1(m) => m.values().map(|p| p.join(&self.name)).collect(),
        };
        for d in dirs {
            // Exiting processes (and zombies not yet reaped) keep a cgroup busy for a moment.
            let mut delay = std::time::Duration::from_millis(5);
            for attempt in 0.. {
                match std::fs::remove_dir(&d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 40 => {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(std::time::Duration::from_millis(100));
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(cgroup = %d.display(), error = %e, "could not remove cgroup");
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Whether an error writing or reading a cgroup's file says the cgroup is gone (`ENOENT`) or
/// being removed (`ENODEV`: its directory is still there while the kernel takes it offline, which
/// happens only after its last process exited).
pub fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

#[cfg(test)]
mod gone_tests {
    use super::{in_context, is_gone};

    #[test]
    fn a_cgroup_gone_or_going_is_told_from_other_errors_with_context_or_without() {
        let os = std::io::Error::from_raw_os_error;
        assert!(is_gone(&os(libc::ENOENT)));
        assert!(is_gone(&os(libc::ENODEV)));
        assert!(!is_gone(&os(libc::EACCES)));
        assert!(!is_gone(&os(libc::EBUSY)));
        // As the cgroup's writes report them (`write`): the errno is in the message only.
        let going = in_context(os(libc::ENODEV), "writing \"FROZEN\" to freezer.state".into());
        assert!(is_gone(&going), "{going}");
        assert!(going.to_string().contains("FROZEN") && going.to_string().contains("os error 19"), "{going}");
        assert!(!is_gone(&in_context(os(libc::EINVAL), "writing".into())));
    }
}
