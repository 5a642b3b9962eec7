//! A container's process exited: tear down what its start set up, record the exit, and say
//! whether its restart policy wants it started again.

use std::sync::Arc;
use std::time::Duration;

use super::io::IoHub;
use super::record::Status;
use super::volume_use::VolumeHold;
use super::{event, health, network, remove, restart_policy, Container};
use crate::engine::{now_rfc3339, Engine};

/// Waits for the process of a started container to exit, then releases what its start set up
/// (cgroup, volumes, network) and records the exit. Returns the back-off after which the restart
/// policy wants it started again (the record then says "restarting").
pub(crate) async fn monitor(
    engine: Arc<Engine>,
    c: Arc<Container>,
    exit: tokio::sync::oneshot::Receiver<i32>,
    hub: Arc<IoHub>,
    volumes: VolumeHold,
    root: Option<std::os::fd::OwnedFd>,
) -> Option<Duration> {
    let code = exit.await.unwrap_or(255);
    // Give the output pumps a moment to drain what the process wrote before it exited.
    let mut done = hub.finished();
    let _ = tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d)).await;
    hub.close_stdin().await;
    let cg = c.cgroup(&engine);
    let oom = cg.oom_kills() > 0;
    for pid in cg.pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let auto_remove = c.record().host_config.auto_remove.unwrap_or(false);
    // A container with `--rm` is removed next, and its removal takes the cgroups.
    if !auto_remove {
        tokio::task::spawn_blocking(move || cg.remove()).await.ok();
    }
    volumes.release(engine.as_ref());
    network::release_unrecorded(&engine, &c);
    // One record write for the network torn down and the exit.
    let _ = c.update(|r| {
        network::forget_endpoints(r);
        r.state.status = Status::Exited;
        r.state.oom_killed = oom;
        r.state.exit_code = code;
        r.state.pid = 0;
        r.state.finished_at = now_rfc3339();
        // As dockerd: a stopped container is not healthy.
        if let Some(h) = r.state.health.as_mut() {
            h.status = health::HealthStatus::Unhealthy;
        }
    });
    c.io.send_replace(None);
    drop(hub);
    let rec = c.record();
    event(&engine, "die", &rec, &[("exitCode", code.to_string())]);
    c.exits.send_modify(|(n, last)| {
        *n += 1;
        *last = code;
    });
    let restart = if auto_remove {
        if let Err(e) = remove(&engine, &c, true, true).await {
            tracing::warn!(container.id = %c.id, error = %e, "auto-remove failed");
        }
        None
    } else if restart_policy::wants_restart(&rec, code)
        && !engine.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    {
        let _ = c.update(|r| r.state.status = Status::Restarting);
        Some(restart_policy::backoff(&rec))
    } else {
        None
    };
    // The overlay goes once waiters have their answer (`docker run --rm` waits for the removal):
    // its unmount syncs the file system under it (runtime/report.rs).
    if let Some(root) = root {
        engine.background.spawn_blocking(move || drop(root));
    }
    // Once waiters have their answer.
    crate::allocator::trim();
    restart
}
