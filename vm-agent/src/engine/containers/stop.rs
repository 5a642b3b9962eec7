//! `POST /containers/{id}/stop` and the engine's shutdown stop of every container.

use std::sync::Arc;
use std::time::Duration;

use super::kill::parse_signal;
use super::record::Status;
use super::wait::wait_exit_count;
use super::{event, Container};
use crate::engine::{Engine, EngineError};

/// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after `timeout` seconds.
pub async fn stop(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<bool, EngineError> {
    let rec = c.record();
    if rec.state.status == Status::Restarting {
        // Waiting for its restart: stopping cancels it.
        c.update(|r| {
            r.stopped_by_user = true;
            r.state.status = Status::Exited;
        })?;
        return Ok(true);
    }
    if !c.is_running() {
        return Ok(false);
    }
    let before = c.exits.borrow().0;
    let sig = parse_signal(signal.or(rec.config.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
    let t = timeout.or(rec.config.stop_timeout).unwrap_or(10).max(0);
    let pid = nix::unistd::Pid::from_raw(rec.state.pid);
    c.update(|r| r.stopped_by_user = true)?;
    let _ = nix::sys::signal::kill(pid, sig);
    // A paused container is thawed to receive it (and, later, SIGKILL).
    if rec.state.status == Status::Paused {
        let _ = c.cgroup(engine).freeze(false);
    }
    if tokio::time::timeout(Duration::from_secs(u64::try_from(t).unwrap_or(0)), wait_exit_count(c, before))
        .await
        .is_err()
    {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        wait_exit_count(c, before).await;
    }
    event(engine, "stop", &c.record(), &[]);
    Ok(true)
}

/// Engine shutdown (the VM powering off): stops every running container like `docker stop`
/// (its stop signal, SIGKILL after its stop timeout, at most `grace`), all at once, without
/// marking them stopped by the user: their restart policies apply at the next engine start.
pub async fn stop_all_for_shutdown(engine: &Arc<Engine>, grace: Duration) {
    engine.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let running: Vec<_> = engine.containers.all().into_iter().filter(|c| c.is_running()).collect();
    let stops = running.iter().map(|c| async move {
        let rec = c.record();
        let before = c.exits.borrow().0;
        let _ = c.cgroup(engine).freeze(false);
        let sig = rec.config.stop_signal.as_deref().and_then(|s| parse_signal(s).ok());
        let pid = nix::unistd::Pid::from_raw(rec.state.pid);
        let _ = nix::sys::signal::kill(pid, sig.unwrap_or(nix::sys::signal::Signal::SIGTERM));
        let own = rec.config.stop_timeout.map(|t| Duration::from_secs(u64::try_from(t).unwrap_or(0)));
        let wait = own.unwrap_or(grace).min(grace);
        if tokio::time::timeout(wait, wait_exit_count(c, before)).await.is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            wait_exit_count(c, before).await;
        }
        let _ = c.update(|r| r.was_running = true);
    });
    futures::future::join_all(stops).await;
    // Clean-up still running after removals (their cgroups) ends before the engine does.
    engine.background.close();
    if tokio::time::timeout(Duration::from_secs(10), engine.background.wait()).await.is_err() {
        tracing::warn!("clean-up after removed containers did not finish before the shutdown");
    }
    // Images committed moments ago become durable now, not after the next boot's recovery.
    let store = engine.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.settle()).await;
}
