//! Which containers use a volume, and a running container's hold on its option volumes
//! (tmpfs, bind … mounted once, reference-counted between the containers that run with them).

use super::{archive, mounts, Container};
use crate::engine::{Engine, EngineError};

/// The containers (ids) whose mounts use volume `name`.
pub fn volume_users(engine: &Engine, name: &str) -> Vec<String> {
    engine
        .containers
        .all()
        .into_iter()
        .filter(|c| c.record().mounts.iter().any(|m| m.name.as_deref() == Some(name)))
        .map(|c| c.id.clone())
        .collect()
}

/// Mounting and unmounting volumes by reference count (the engine's volume service; a counting
/// double in the unit tests).
pub(crate) trait VolumeMounts {
    /// Takes one reference (mounting an option volume at its first).
    fn acquire(&self, name: &str) -> Result<(), EngineError>;
    /// Drops one reference (unmounting after the last).
    fn release(&self, name: &str);
}

impl VolumeMounts for Engine {
    fn acquire(&self, name: &str) -> Result<(), EngineError> {
        let volume = self.volumes.get(name)?;
        self.volumes.acquire(&volume)
    }

    fn release(&self, name: &str) {
        self.volumes.release(name);
    }
}

/// The volumes one start of a container acquired: released exactly once, and only these (never
/// one whose acquisition failed, which may be another container's).
#[derive(Debug, Default)]
#[must_use = "a hold that is dropped without release keeps its volumes mounted"]
pub struct VolumeHold {
    names: Vec<String>,
}

impl VolumeHold {
    /// Releases every volume held, last acquired first.
    pub(crate) fn release(mut self, mounts: &impl VolumeMounts) {
        while let Some(name) = self.names.pop() {
            mounts.release(&name);
        }
    }
}

/// Acquires `names` in order; if one fails, releases those it acquired and returns the error.
pub(crate) fn acquire_all(mounts: &impl VolumeMounts, names: &[String]) -> Result<VolumeHold, EngineError> {
    let mut hold = VolumeHold::default();
    for name in names {
        if let Err(e) = mounts.acquire(name) {
            hold.release(mounts);
            return Err(e);
        }
        hold.names.push(name.clone());
    }
    Ok(hold)
}

/// The start's volume step: acquires the container's volumes and copies image content into new,
/// empty ones (once: `copy_up` is cleared in the record). On failure nothing stays acquired.
pub(crate) fn acquire_for_start(
    engine: &Engine,
    c: &Container,
    lower_dirs: &[String],
) -> Result<VolumeHold, EngineError> {
    let rec = c.record();
    let volumes: Vec<&mounts::MountRecord> =
        rec.mounts.iter().filter(|m| m.kind == mounts::Kind::Volume && m.name.is_some()).collect();
    let names: Vec<String> = volumes.iter().filter_map(|m| m.name.clone()).collect();
    let hold = acquire_all(engine, &names)?;
    let copied = volumes.iter().filter(|m| m.copy_up).try_for_each(|m| {
        let name = m.name.as_deref().unwrap_or_default();
        let fresh = engine.volumes.get(name)?.options.is_empty() && engine.volumes.is_empty(name);
        if fresh {
            archive::copy_up(c.dir(), lower_dirs, &m.destination, &engine.volumes.data_dir(name))?;
        }
        Ok(())
    });
    let cleared = copied.and_then(|()| {
        if rec.mounts.iter().any(|m| m.copy_up) {
            c.update(|r| r.mounts.iter_mut().for_each(|m| m.copy_up = false))?;
        }
        Ok(())
    });
    match cleared {
        Ok(()) => Ok(hold),
        Err(e) => {
            hold.release(engine);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// Reference counts per volume; acquiring `broken` fails.
    struct Counting {
        counts: RefCell<HashMap<String, i32>>,
        broken: &'static str,
    }

    impl VolumeMounts for Counting {
        fn acquire(&self, name: &str) -> Result<(), EngineError> {
            if name == self.broken {
                return Err(EngineError::InvalidArgument(format!("error while mounting volume '{name}'")));
            }
            *self.counts.borrow_mut().entry(name.to_string()).or_default() += 1;
            Ok(())
        }

        fn release(&self, name: &str) {
            *self.counts.borrow_mut().entry(name.to_string()).or_default() -= 1;
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failed_acquisition_releases_only_what_it_acquired() {
        // "shared" and "broken" are held once by another, running container.
        let v = Counting {
            counts: RefCell::new(HashMap::from([("shared".into(), 1), ("broken".into(), 1)])),
            broken: "broken",
        };
        let result = acquire_all(&v, &names(&["mine", "shared", "broken", "never"]));
        assert!(result.is_err());
        let counts = v.counts.borrow();
        assert_eq!(counts.get("mine"), Some(&0));
        assert_eq!(counts.get("shared"), Some(&1), "the other container's hold is untouched");
        assert_eq!(counts.get("broken"), Some(&1), "a volume it never acquired is never released");
        assert_eq!(counts.get("never"), None);
    }

    #[test]
    fn a_hold_releases_each_volume_once() {
        let v = Counting { counts: RefCell::new(HashMap::from([("shared".into(), 1)])), broken: "" };
        let hold = acquire_all(&v, &names(&["a", "shared"])).unwrap_or_default();
        assert_eq!(v.counts.borrow().get("shared"), Some(&2));
        hold.release(&v);
        assert_eq!(v.counts.borrow().get("a"), Some(&0));
        assert_eq!(v.counts.borrow().get("shared"), Some(&1));
    }
}
