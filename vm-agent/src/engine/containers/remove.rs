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
/// The prefix of a removed container's directory whose files are still being deleted; an engine
/// that restarts meanwhile deletes it (`Containers::open`).
pub(crate) const DISCARDED: &str = ".removing-";

/// Removes a container's directory: renamed out of the way at once (nothing can write into it
/// under its name any more), its files deleted in the background. An overlay's upper and work
/// directories take milliseconds to delete, which `docker rm` and `run --rm` need not wait for.
/// Where the rename fails, the files are deleted before this returns, as a rename cannot fail
/// silently here: the error is the caller's.
async fn discard_files(dir: &std::path::Path) -> Result<(), EngineError> {
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
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&deleting) {
            tracing::warn!(dir = %deleting.display(), error = %e, "deleting a removed container's files");
        }
    });
    Ok(())
}

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
    c.cgroup(engine).remove();
    discard_files(&c.dir).await?;
    event(engine, "destroy", &c.record(), &[]);
    c.removed.send_replace(true);
    Ok(())
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
        discard_files(&dir).await.unwrap_or_else(|e| panic!("{e}"));
        // Its name is free at once: nothing writes into it any more.
        assert!(!dir.exists());
        for _ in 0..200 {
            if std::fs::read_dir(root.path()).map(|d| d.count()).unwrap_or(1) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the removed container's files are still there");
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
