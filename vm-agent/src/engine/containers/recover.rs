//! After an engine restart: end what the previous engine left running and apply restart policies.

use std::sync::Arc;
use std::time::Duration;

use super::start;
use crate::engine::Engine;

/// After the engine starts: ends what is left of containers that ran under the previous engine
/// (their processes and cgroups) and starts those whose restart policy asks for it.
pub async fn recover(engine: &Arc<Engine>) {
    for c in engine.containers.all() {
        let rec = c.record();
        let cg = c.cgroup(engine);
        // Thawed first: a frozen process cannot die.
        let _ = cg.freeze(false);
        let leftovers = cg.pids();
        for pid in &leftovers {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        if !leftovers.is_empty() {
            tracing::info!(container.id = %c.id, processes = leftovers.len(), "ended processes left by the previous engine");
            // They are not our children (the previous engine was their reaper): wait for the
            // kernel to empty the cgroup before removing it.
            for _ in 0..100 {
                if cg.pids().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::task::spawn_blocking(move || cg.remove()).await.ok();
        if rec.was_running {
            let _ = c.update(|r| r.was_running = false);
            if super::restart_policy::wants_start_after_engine_restart(&rec) {
                if let Err(e) = start(engine, &c).await {
                    tracing::warn!(container.id = %c.id, error = %e, "could not restart container after engine restart");
                }
            }
        }
    }
}
