//! `docker stats` and `docker top`, read from the container's cgroup and `/proc`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Container;
use crate::engine::{Engine, EngineError};

/// Host CPU time in nanoseconds (sum of `/proc/stat`'s first line), as Docker reports it.
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no memory effects.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    ticks * (1_000_000_000 / hz)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Total RAM in bytes.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One sample: (cpu ns, system ns, memory, limit, pids).
fn sample(engine: &Engine, c: &Container) -> (u64, u64, u64, u64, u64) {
    let (mem, limit, cpu, pids) = c.cgroup(engine).usage();
    let total = mem_total();
    (cpu, system_cpu_ns(), mem, if limit == 0 || limit > total { total } else { limit }, pids)
}

/// A stats document with `pre` as the previous sample.
fn document(c: &Container, now: (u64, u64, u64, u64, u64), pre: Option<(u64, u64)>) -> Value {
    let rec = c.record();
    let (cpu, sys, mem, limit, pids) = now;
    let (pcpu, psys) = pre.unwrap_or((0, 0));
    json!({
        "read": crate::engine::now_rfc3339(),
        "preread": if pre.is_some() { crate::engine::now_rfc3339() } else { "0001-01-01T00:00:00Z".to_string() },
        "name": format!("/{}", rec.name),
        "id": rec.id,
        "pids_stats": {"current": pids},
        "cpu_stats": {"cpu_usage": {"total_usage": cpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "system_cpu_usage": sys, "online_cpus": online_cpus(), "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "precpu_stats": {"cpu_usage": {"total_usage": pcpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "system_cpu_usage": psys, "online_cpus": online_cpus(), "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": mem, "limit": limit, "stats": {}},
        "blkio_stats": {},
        "networks": {},
    })
}

/// A stream of stats documents (one per second), or a single one.
pub fn stats(
    engine: Arc<Engine>,
    c: Arc<Container>,
    stream: bool,
    one_shot: bool,
) -> tokio::sync::mpsc::Receiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut pre: Option<(u64, u64)> = None;
        if !stream && !one_shot {
            let s = sample(&engine, &c);
            pre = Some((s.0, s.1));
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        loop {
            let s = sample(&engine, &c);
            if tx.send(document(&c, s, pre)).await.is_err() || !stream || !c.is_running() {
                return;
            }
            pre = Some((s.0, s.1));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    rx
}

/// `docker top`: the container's processes, as `ps -ef` columns.
pub fn top(engine: &Engine, c: &Arc<Container>) -> Result<Value, EngineError> {
    if !c.is_running() {
        return Err(EngineError::Conflict(format!("container {} is not running", c.id)));
    }
    let mut pids = c.cgroup(engine).pids();
    if pids.is_empty() {
        pids.push(c.record().state.pid);
    }
    pids.sort_unstable();
    let mut rows = Vec::new();
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let ppid = f.get(1).copied().unwrap_or("0");
        // SAFETY: sysconf has no memory effects.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
        let secs = (f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
            / hz;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:").and_then(|v| v.split_whitespace().next().map(str::to_string)))
            })
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
            .unwrap_or_default();
        rows.push(vec![
            uid,
            pid.to_string(),
            ppid.to_string(),
            "0".into(),
            "-".into(),
            "?".into(),
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            cmd,
        ]);
    }
    Ok(json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}))
}
