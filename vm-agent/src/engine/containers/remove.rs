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

/// The prefix of a removed container's directory whose files are still being deleted; an engine
/// that restarts meanwhile deletes it (`Containers::open`).
pub(crate) const DISCARDED: &str = ".removing-";

/// Removes a container's directory: renamed out of the way at once (nothing can write into it
/// under its name any more), its files deleted on `tracker` (the engine's shutdown waits for
/// them). An overlay's upper and work directories take a millisecond or more to delete, which
/// `docker rm` and `run --rm` need not wait for. Where the rename fails, the files are deleted
/// before this returns, and an error is the caller's.
async fn discard_files(dir: &std::path::Path, tracker: &tokio_util::task::TaskTracker) -> Result<(), EngineError> {
    let discarded = dir.file_name().map(|n| dir.with_file_name(format!("{DISCARDED}{}", n.to_string_lossy())));
    let deleting = match discarded {
        Some(d) if std::fs::rename(dir, &d).is_ok() => d,
        _ => {
            let dir = dir.to_path_buf();
            return blocking(move || {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| EngineError::Internal(format!("removing container files: {e}")))
            })
            .await;
        }
    };
    tracker.spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&deleting) {
            tracing::warn!(dir = %deleting.display(), error = %e, "deleting a removed container's files");
        }
    });
    Ok(())
}

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
    let deleted = discard_files(&c.dir, &engine.background).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_removed_containers_directory_goes_at_once_and_its_files_after() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = root.path().join("c1");
        std::fs::create_dir_all(dir.join("upper/a/b")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("container.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
        let tracker = tokio_util::task::TaskTracker::new();
        discard_files(&dir, &tracker).await.unwrap_or_else(|e| panic!("{e}"));
        // Its name is free at once: nothing writes into it any more.
        assert!(!dir.exists());
        // The tracker (the engine's shutdown) sees the deletion through.
        tracker.close();
        tracker.wait().await;
        assert_eq!(std::fs::read_dir(root.path()).map(|d| d.count()).unwrap_or(1), 0);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_renamed_is_deleted_before_the_answer() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = root.path().join("gone");
        let tracker = tokio_util::task::TaskTracker::new();
        // Neither renamed nor deleted: the error is the caller's.
        assert!(discard_files(&missing, &tracker).await.is_err());
        assert!(tracker.is_empty());
    }

    #[test]
    fn an_engine_that_restarts_deletes_what_the_last_one_was_still_deleting() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let discarded = root.path().join(format!("{DISCARDED}c1"));
        std::fs::create_dir_all(discarded.join("upper")).unwrap_or_else(|e| panic!("{e}"));
        // Even with a record in it (renamed whole): it was removed.
        std::fs::write(discarded.join("container.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
        let containers = super::super::Containers::open(root.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(containers.all().is_empty());
        assert!(!discarded.exists());
    }
}
