//! Health checks (`HEALTHCHECK`, `--health-*`): a probe exec'd in the running container every
//! interval, `State.Health` (status, failing streak, the last five probes) persisted with the
//! record, and a `health_status: …` event on every change, as dockerd does.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ContainerConfig, ExecConfig, HealthConfig};

pub use super::health_state::{Health, HealthStatus, Probe};
use super::{exec, Container};
use crate::engine::{now_rfc3339, Engine, EngineError};

/// dockerd's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// The output kept of each probe.
const MAX_OUTPUT: usize = 4096;

/// A container's effective health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The probe's command line.
    pub args: Vec<String>,
    /// Between probes.
    pub interval: Duration,
    /// A probe taking longer fails.
    pub timeout: Duration,
    /// Failures during it do not count.
    pub start_period: Duration,
    /// Between probes during the start period.
    pub start_interval: Duration,
    /// Failures in a row that make it unhealthy.
    pub retries: i64,
}

fn duration(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n.unsigned_abs()),
        _ => default,
    }
}

/// The check to run, or `None` (no health check, or `NONE`).
pub fn settings(config: &ContainerConfig) -> Option<Settings> {
    let hc = config.healthcheck.as_ref()?;
    let test = hc.test.as_ref()?;
    let args = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return None,
    };
    if args.is_empty() {
        return None;
    }
    Some(Settings {
        args,
        interval: duration(hc.interval, DEFAULT_INTERVAL),
        timeout: duration(hc.timeout, DEFAULT_TIMEOUT),
        start_period: duration(hc.start_period, Duration::ZERO),
        start_interval: duration(hc.start_interval, DEFAULT_START_INTERVAL),
        retries: hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
    })
}

/// The create-time check of `--health-*` values (dockerd's messages).
pub fn validate(hc: Option<&HealthConfig>) -> Result<(), EngineError> {
    let Some(hc) = hc else { return Ok(()) };
    let min = 1_000_000; // 1 ms
    for (name, v) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        if let Some(v) = v.filter(|v| *v != 0) {
            if v < min {
                return Err(EngineError::InvalidArgument(format!("{name} in Healthcheck cannot be less than 1ms")));
            }
        }
    }
    if hc.retries.is_some_and(|r| r < 0) {
        return Err(EngineError::InvalidArgument("Retries in Healthcheck cannot be negative".into()));
    }
    if let Some(t) = &hc.test {
        if let Some(kind) = t.first().filter(|k| !["NONE", "CMD", "CMD-SHELL"].contains(&k.as_str())) {
            return Err(EngineError::InvalidArgument(format!("unknown type for Healthcheck test: {kind}")));
        }
    }
    Ok(())
}

/// A container's health as it starts: `starting` with a check, none without.
pub fn at_start(config: &ContainerConfig) -> Option<Health> {
    settings(config).map(|_| Health::default())
}

/// Starts watching a container that just started (its health begins as `starting`).
/// Its record already says so ([`at_start`], written with the start's record).
pub fn watch(engine: &Arc<Engine>, c: &Arc<Container>) {
    let Some(settings) = c.with_record(|r| settings(&r.config)) else { return };
    let run = c.exits.borrow().0;
    tokio::spawn(watch_loop(engine.clone(), c.clone(), settings, run));
}

async fn watch_loop(engine: Arc<Engine>, c: Arc<Container>, settings: Settings, run: u64) {
    let started = tokio::time::Instant::now();
    let mut exits = c.exits.subscribe();
    loop {
        let in_start = started.elapsed() < settings.start_period;
        let wait = if in_start { settings.start_interval.min(settings.interval) } else { settings.interval };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = exits.wait_for(|(n, _)| *n != run) => return,
        }
        if c.exits.borrow().0 != run || engine.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if !c.is_running() || c.record().state.status == super::record::Status::Paused {
            continue;
        }
        let probe = probe(&engine, &c, &settings).await;
        if c.exits.borrow().0 != run {
            return;
        }
        let in_start = started.elapsed() < settings.start_period;
        let mut changed = None;
        let _ = c.update(|r| {
            let h = r.state.health.get_or_insert_with(Health::default);
            changed = h.record(probe.clone(), in_start, settings.retries);
        });
        if let Some(status) = changed {
            super::event(&engine, &format!("health_status: {}", status.as_str()), &c.record(), &[]);
        }
    }
}

/// Runs the probe once as an exec; a probe that overruns its timeout is killed.
async fn probe(engine: &Arc<Engine>, c: &Arc<Container>, settings: &Settings) -> Probe {
    let start = now_rfc3339();
    let failed = |output: String| Probe { start: start.clone(), end: now_rfc3339(), exit_code: -1, output };
    let config = ExecConfig {
        cmd: Some(settings.args.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let ex = match exec::create(engine, c, config).and_then(|id| engine.execs.get(&id)) {
        Ok(ex) => ex,
        Err(e) => return failed(e.to_string()),
    };
    let outcome = tokio::time::timeout(settings.timeout, async {
        let hub = exec::start(engine, &ex).await?;
        let (early, mut rx) = hub.from_start();
        let mut out: Vec<u8> = early.iter().flat_map(|ch| ch.data.iter().copied()).collect();
        let mut exited = ex.exited();
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Ok(ch) => out.extend_from_slice(&ch.data),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = exited.wait_for(|d| *d) => break,
            }
        }
        while let Ok(ch) = rx.try_recv() {
            out.extend_from_slice(&ch.data);
        }
        Ok::<_, EngineError>(out)
    })
    .await;
    let result = match outcome {
        Ok(Ok(mut out)) => {
            out.truncate(MAX_OUTPUT);
            let code = ex.state().2.unwrap_or(-1);
            Probe {
                start: start.clone(),
                end: now_rfc3339(),
                exit_code: i64::from(code),
                output: String::from_utf8_lossy(&out).into_owned(),
            }
        }
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => {
            let pid = ex.state().1;
            if pid > 0 {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            failed(format!("Health check exceeded timeout ({:?})", settings.timeout))
        }
    };
    engine.execs.forget(&ex.id);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i64) -> Probe {
        Probe { start: "s".into(), end: "e".into(), exit_code: code, output: String::new() }
    }

    #[test]
    fn status_follows_dockerds_rules() {
        let mut h = Health::default();
        // Failures in the start period do not count.
        assert_eq!(h.record(probe(1), true, 2), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(h.record(probe(0), true, 2), Some(HealthStatus::Healthy));
        // Once healthy, a failure counts even in the start period.
        assert_eq!(h.record(probe(1), true, 2), None);
        assert_eq!(h.failing_streak, 1);
        assert_eq!(h.record(probe(1), false, 2), Some(HealthStatus::Unhealthy));
        assert_eq!(h.record(probe(0), false, 2), Some(HealthStatus::Healthy));
        assert_eq!(h.failing_streak, 0);
        for _ in 0..10 {
            h.record(probe(0), false, 2);
        }
        assert_eq!(h.log.len(), super::super::health_state::LOG_ENTRIES);
    }

    #[test]
    fn settings_read_cmd_and_cmd_shell_with_defaults() {
        let cfg = |test: Vec<&str>| ContainerConfig {
            healthcheck: Some(HealthConfig {
                test: Some(test.into_iter().map(String::from).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = settings(&cfg(vec!["CMD-SHELL", "curl -f localhost"])).expect("a check");
        assert_eq!(s.args, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((s.interval, s.timeout, s.retries), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_RETRIES));
        assert_eq!(settings(&cfg(vec!["CMD", "true"])).map(|s| s.args), Some(vec!["true".to_string()]));
        assert_eq!(settings(&cfg(vec!["NONE"])), None);
        assert_eq!(settings(&cfg(vec![])), None);
        assert!(validate(Some(&HealthConfig { interval: Some(10), ..Default::default() })).is_err());
        assert!(validate(Some(&HealthConfig { retries: Some(-1), ..Default::default() })).is_err());
        assert!(validate(Some(&HealthConfig { test: Some(vec!["BOGUS".into()]), ..Default::default() })).is_err());
        assert!(validate(Some(&HealthConfig { interval: Some(1_000_000_000), ..Default::default() })).is_ok());
    }
}
