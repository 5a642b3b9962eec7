//! Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`): whether a container
//! that exited runs again, and Docker's back-off.

use std::time::Duration;

use super::record::ContainerRecord;

/// The policy's name (`""` when none).
fn policy_name(rec: &ContainerRecord) -> String {
    rec.host_config
        .restart_policy
        .as_ref()
        .and_then(|p| p.name)
        .map(|n| serde_json::to_value(n).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .unwrap_or_default()
}

/// Whether the policy wants the container running again after it exited with `code`.
pub fn wants_restart(rec: &ContainerRecord, code: i32) -> bool {
    match policy_name(rec).as_str() {
        "always" | "unless-stopped" => !rec.stopped_by_user,
        "on-failure" => {
            let max = rec.host_config.restart_policy.as_ref().and_then(|p| p.maximum_retry_count).unwrap_or(0);
            !rec.stopped_by_user && code != 0 && (max == 0 || rec.restart_count < max)
        }
        _ => false,
    }
}

/// Whether a container that ran when the engine stopped starts with the next engine.
pub fn wants_start_after_engine_restart(rec: &ContainerRecord) -> bool {
    matches!(policy_name(rec).as_str(), "always" | "unless-stopped" | "on-failure") && !rec.stopped_by_user
}

/// Docker's back-off: 100 ms doubling per quick failure, up to a minute; a run longer than ten
/// seconds resets it.
pub fn backoff(rec: &ContainerRecord) -> Duration {
    let ran = chrono::DateTime::parse_from_rfc3339(&rec.state.finished_at)
        .ok()
        .zip(chrono::DateTime::parse_from_rfc3339(&rec.state.started_at).ok())
        .map(|(f, s)| (f - s).num_seconds())
        .unwrap_or(0);
    let exp = if ran > 10 { 0 } else { u32::try_from(rec.restart_count.clamp(0, 10)).unwrap_or(10) };
    Duration::from_millis(100u64.saturating_mul(1u64 << exp)).min(Duration::from_secs(60))
}
