//! `State.Health` as the record keeps it: status, failing streak, the last probes.

use serde::{Deserialize, Serialize};

/// Probes kept in `State.Health.Log`.
pub(crate) const LOG_ENTRIES: usize = 5;

/// `starting`, `healthy` or `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Not yet passed (and not yet failed `retries` times).
    #[default]
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed (or the container stopped).
    Unhealthy,
}

impl HealthStatus {
    /// Docker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// RFC 3339 start.
    pub start: String,
    /// RFC 3339 end.
    pub end: String,
    /// 0 passed; -1 timed out or could not run.
    pub exit_code: i64,
    /// What it printed (first 4 KiB).
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Current status.
    pub status: HealthStatus,
    /// Failed probes in a row (outside the start period).
    pub failing_streak: i64,
    /// The last probes, oldest first.
    pub log: Vec<Probe>,
}

impl Health {
    /// Docker's JSON (through serde: the stubs' date type depends on features other crates of
    /// the workspace turn on).
    pub fn to_api(&self) -> Option<bollard_stubs::models::Health> {
        let log: Vec<serde_json::Value> = self
            .log
            .iter()
            .map(|p| serde_json::json!({"Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output}))
            .collect();
        let v = serde_json::json!({"Status": self.status.as_str(), "FailingStreak": self.failing_streak, "Log": log});
        serde_json::from_value(v).ok()
    }

    /// Records a probe; returns the new status when it changed. Failures inside the start period
    /// do not count until the container was healthy once (dockerd's rule).
    pub fn record(&mut self, probe: Probe, in_start_period: bool, retries: i64) -> Option<HealthStatus> {
        let before = self.status;
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !(in_start_period && self.status != HealthStatus::Healthy) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(probe);
        if self.log.len() > LOG_ENTRIES {
            let extra = self.log.len() - LOG_ENTRIES;
            self.log.drain(..extra);
        }
        (self.status != before).then_some(self.status)
    }
}
