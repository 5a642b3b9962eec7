//! `POST /containers/{id}/kill` and signal names.

use std::sync::Arc;
use std::time::Duration;

use super::record::Status;
use super::wait::wait_exit_count;
use super::{event, Container};
use crate::engine::{Engine, EngineError};

/// Parses a signal given as `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, EngineError> {
    use std::str::FromStr;
    let bad = || EngineError::InvalidArgument(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    nix::sys::signal::Signal::from_str(&full).map_err(|_| bad())
}

/// `POST /containers/{id}/kill`.
pub async fn kill(engine: &Arc<Engine>, c: &Arc<Container>, signal: Option<&str>) -> Result<(), EngineError> {
    let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
    let rec = c.record();
    if rec.state.status != Status::Running && rec.state.status != Status::Paused {
        return Err(EngineError::Conflict(format!(
            "Cannot kill container: {}: container {} is not running",
            c.id, c.id
        )));
    }
    c.update(|r| r.stopped_by_user = true)?;
    let before = c.exits.borrow().0;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.state.pid), sig)
        .map_err(|e| EngineError::Internal(format!("kill: {e}")))?;
    event(engine, "kill", &rec, &[("signal", (sig as i32).to_string())]);
    if sig == nix::sys::signal::Signal::SIGKILL {
        // A frozen process cannot die: thaw it. Then, as dockerd, return once it has exited.
        if rec.state.status == Status::Paused {
            let _ = c.cgroup(engine).freeze(false);
        }
        if tokio::time::timeout(Duration::from_secs(30), wait_exit_count(c, before)).await.is_err() {
            return Err(EngineError::Internal(format!("container {} did not exit after SIGKILL", c.id)));
        }
    }
    Ok(())
}
