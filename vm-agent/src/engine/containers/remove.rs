//! `DELETE /containers/{id}` and the anonymous volumes that go with a container.

use std::sync::Arc;

use super::record::{ContainerRecord, Status};
use super::volume_use::volume_users;
use super::wait::wait_exit_count;
use super::{event, Container};
use crate::engine::{blocking, Engine, EngineError};

/// Removes the anonymous volumes of a container being removed (`itself`, ignored as a user) that
/// no other container uses.
pub(crate) fn remove_anonymous_volumes(engine: &Engine, rec: &ContainerRecord, itself: Option<&str>) {
    for name in rec.mounts.iter().filter(|m| m.anonymous).filter_map(|m| m.name.as_deref()) {
        if volume_users(engine, name).iter().all(|user| Some(user.as_str()) == itself) {
            match engine.volumes.remove(name) {
                Ok(_) => crate::engine::events::volume_event(engine, "destroy", name),
                Err(e) => tracing::warn!(volume = name, error = %e, "could not remove an anonymous volume"),
            }
        }
    }
}

/// `DELETE /containers/{id}`.
/// `DELETE /containers/{id}` (`volumes`: also its anonymous volumes, as `docker rm -v` and
/// `--rm` do).
pub async fn remove(engine: &Arc<Engine>, c: &Arc<Container>, force: bool, volumes: bool) -> Result<(), EngineError> {
    if !force && c.record().state.status == Status::Restarting {
        return Err(EngineError::Conflict(format!(
            "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
            c.record().name
        )));
    }
    if c.is_running() {
        if !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.record().name
            )));
        }
        let before = c.exits.borrow().0;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.record().state.pid), nix::sys::signal::Signal::SIGKILL);
        // A frozen process cannot die: thaw a paused one.
        if c.record().state.status == Status::Paused {
            let _ = c.cgroup(engine).freeze(false);
        }
        wait_exit_count(c, before).await;
    }
    // Its anonymous volumes go first, so nobody sees the container gone and its volumes still there.
    if volumes {
        remove_anonymous_volumes(engine, &c.record(), Some(&c.id));
    }
    // Whoever takes it out of the table removes it; a concurrent remove (auto-remove racing
    // `docker rm -f`) finds it gone and does nothing, so it never writes into a dying directory.
    if engine.containers.map.write().unwrap_or_else(|p| p.into_inner()).remove(&c.id).is_none() {
        return Ok(());
    }
    c.record.lock().unwrap_or_else(|p| p.into_inner()).state.status = Status::Removing;
    let dir = c.dir.clone();
    let deleted = blocking(move || {
        std::fs::remove_dir_all(&dir).map_err(|e| EngineError::Internal(format!("removing container files: {e}")))
    })
    .await;
    if deleted.is_ok() {
        event(engine, "destroy", &c.record(), &[]);
        c.removed.send_replace(true);
    }
    remove_cgroups_later(engine, c);
    deleted?;
    Ok(())
}

/// A removed container's cgroups go after its removal was answered: nothing uses them again
/// (the container is out of the table, and they are named by its id), and removing them takes
/// about 1 ms on a host with a v1 hierarchy per controller (longer while its last processes
/// finish exiting). The engine's shutdown waits for them.
fn remove_cgroups_later(engine: &Arc<Engine>, c: &Container) {
    let cg = c.cgroup(engine);
    let early = super::early_cgroup::abandon(c);
    engine.background.spawn(async move {
        if let Some(made) = early {
            let _ = made.await;
        }
        let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
    });
}
