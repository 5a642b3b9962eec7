//! Named and anonymous volumes of the `local` driver: `<root>/volumes/<name>/_data` holds the
//! data (on the VM's data disk, so it survives restarts), `volume.json` the record. Volumes with
//! `type`/`o`/`device` options (e.g. `type=tmpfs`) are mounted onto `_data` while containers use
//! them, as Docker's local driver does, and unmounted when the last one stops.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{now_rfc3339, EngineError};
use crate::store::atomic;

/// The only driver.
pub const DRIVER: &str = "local";

/// What is persisted per volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// Driver options: `type`, `o`, `device`.
    pub options: BTreeMap<String, String>,
    pub created_at: String,
    /// Created for a container without a name (`-v /path`, an image's `VOLUME`).
    pub anonymous: bool,
}

/// The volume store.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
    /// Serializes create/remove so a name is never half-created.
    lock: Mutex<()>,
    /// How many running containers use each option-mounted volume.
    mounted: Mutex<HashMap<String, usize>>,
}

/// Docker's rule for local volume names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

impl Volumes {
    /// Opens (creating) the volume directory.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| internal(&format!("creating {}", dir.display()), e))?;
        Ok(Self { dir: dir.to_path_buf(), lock: Mutex::new(()), mounted: Mutex::new(HashMap::new()) })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a volume's data lives.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates a volume (`name` None: an anonymous one with a random name). Creating an existing
    /// name returns it unchanged, as Docker does.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord, EngineError> {
        let driver = driver.filter(|d| !d.is_empty()).unwrap_or(DRIVER);
        if driver != DRIVER {
            return Err(EngineError::NotFound(format!("plugin \"{driver}\" not found: only the local driver exists")));
        }
        for key in options.keys() {
            if !matches!(key.as_str(), "type" | "o" | "device" | "size") {
                return Err(EngineError::InvalidArgument(format!("invalid option: \"{key}\"")));
            }
        }
        if options.contains_key("device") && !options.contains_key("type") {
            return Err(EngineError::InvalidArgument("missing \"type\" option for device".into()));
        }
        let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
            Some(n) => (n.to_owned(), false),
            None => (hex::encode(rand::random::<[u8; 32]>()), true),
        };
        if !valid_name(&name) {
            return Err(EngineError::InvalidArgument(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \
                 \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        let _g = self.guard();
        if let Ok(existing) = self.read(&name) {
            return Ok(existing);
        }
        let rec = VolumeRecord {
            name: name.clone(),
            driver: DRIVER.into(),
            labels,
            options,
            created_at: now_rfc3339(),
            anonymous,
        };
        let vdir = self.dir.join(&name);
        std::fs::create_dir_all(vdir.join("_data")).map_err(|e| internal("creating the volume", e))?;
        atomic::write_json(&vdir.join("volume.json"), &rec).map_err(|e| internal("writing the volume record", e))?;
        Ok(rec)
    }

    fn read(&self, name: &str) -> Result<VolumeRecord, EngineError> {
        let not_found = || EngineError::NotFound(format!("get {name}: no such volume"));
        if !valid_name(name) {
            return Err(not_found());
        }
        let bytes = std::fs::read(self.dir.join(name).join("volume.json")).map_err(|_| not_found())?;
        serde_json::from_slice(&bytes).map_err(|e| internal(&format!("volume {name}"), e))
    }

    /// One volume.
    pub fn get(&self, name: &str) -> Result<VolumeRecord, EngineError> {
        self.read(name)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeRecord> {
        let mut out: Vec<VolumeRecord> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.read(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Deletes a volume and its data (the caller checked that no container uses it).
    pub fn remove(&self, name: &str) -> Result<u64, EngineError> {
        let _g = self.guard();
        self.read(name)?;
        let vdir = self.dir.join(name);
        let size = dir_size(&vdir.join("_data"));
        // Rename first: a crash mid-delete leaves no half-volume under its name.
        let doomed = self.dir.join(format!(".removing-{name}"));
        std::fs::rename(&vdir, &doomed).map_err(|e| internal("removing the volume", e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| internal("removing the volume's data", e))?;
        Ok(size)
    }

    /// Whether the volume holds nothing yet (Docker copies image content into empty volumes).
    pub fn is_empty(&self, name: &str) -> bool {
        std::fs::read_dir(self.data_dir(name)).map(|mut d| d.next().is_none()).unwrap_or(false)
    }

    /// A container using `rec` starts: mounts option volumes onto `_data` on first use.
    pub fn acquire(&self, rec: &VolumeRecord) -> Result<(), EngineError> {
        let Some(kind) = rec.options.get("type") else { return Ok(()) };
        let mut mounted = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        let count = mounted.entry(rec.name.clone()).or_insert(0);
        if *count == 0 {
            let device = rec.options.get("device").map(String::as_str).unwrap_or(kind.as_str());
            let mut flags = nix::mount::MsFlags::empty();
            let mut data = Vec::new();
            for o in rec.options.get("o").map(String::as_str).unwrap_or_default().split(',').filter(|o| !o.is_empty()) {
                match o {
                    "bind" => flags |= nix::mount::MsFlags::MS_BIND,
                    "ro" => flags |= nix::mount::MsFlags::MS_RDONLY,
                    other => data.push(other),
                }
            }
            if let Some(size) = rec.options.get("size") {
                data.push(size.as_str());
            }
            let data = data.join(",");
            let fstype = (!flags.contains(nix::mount::MsFlags::MS_BIND)).then_some(kind.as_str());
            nix::mount::mount(
                Some(device),
                &self.data_dir(&rec.name),
                fstype,
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .map_err(|e| {
                EngineError::InvalidArgument(format!("error while mounting volume '{}': {kind}: {e}", rec.name))
            })?;
        }
        *count += 1;
        Ok(())
    }

    /// A container using `name` stopped: unmounts an option volume after its last user.
    pub fn release(&self, name: &str) {
        let mut mounted = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = mounted.get_mut(name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                mounted.remove(name);
                let _ = nix::mount::umount2(&self.data_dir(name), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Which containers (ids) use a volume: the container service knows, the caller asks it.
pub type Users<'a> = &'a dyn Fn(&str) -> Vec<String>;

/// A volume as the Docker API shows it (`users` only with `with_usage`).
pub fn to_json(engine: &super::Engine, rec: &VolumeRecord, usage: Option<Users<'_>>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Name": rec.name,
        "Driver": rec.driver,
        "Mountpoint": engine.volumes.data_dir(&rec.name).display().to_string(),
        "CreatedAt": rec.created_at,
        "Labels": rec.labels,
        "Scope": "local",
        "Options": rec.options,
    });
    if let Some(users) = usage {
        v["UsageData"] = serde_json::json!({
            "Size": i64::try_from(dir_size(&engine.volumes.data_dir(&rec.name))).unwrap_or(i64::MAX),
            "RefCount": users(&rec.name).len(),
        });
    }
    v
}

/// `GET /volumes` with filters `name`, `label`, `driver`, `dangling`.
pub fn list(
    engine: &super::Engine,
    filters: &super::filters::Filters,
    users: Users<'_>,
) -> Result<Vec<VolumeRecord>, EngineError> {
    let dangling = filters.bool("dangling")?;
    Ok(engine
        .volumes
        .list()
        .into_iter()
        .filter(|v| filters.get("name").is_empty() || filters.get("name").iter().any(|n| v.name.contains(n.as_str())))
        .filter(|v| filters.get("driver").is_empty() || filters.get("driver").contains(&v.driver))
        .filter(|v| {
            let labels: HashMap<String, String> = v.labels.clone().into_iter().collect();
            filters.labels_match("label", Some(&labels))
        })
        .filter(|v| dangling.is_none_or(|d| d == users(&v.name).is_empty()))
        .collect())
}

/// `DELETE /volumes/{name}`: refused while any container (running or not) uses it.
pub fn remove(engine: &super::Engine, name: &str, force: bool, users: Users<'_>) -> Result<(), EngineError> {
    match engine.volumes.get(name) {
        Err(EngineError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let users = users(name);
    if !users.is_empty() {
        return Err(EngineError::Conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
    }
    engine.volumes.remove(name)?;
    super::events::volume_event(engine, "destroy", name);
    Ok(())
}

/// `POST /volumes/prune`: unused anonymous volumes (all unused ones with `all=true`), filtered by
/// labels. Returns the names removed and the bytes freed.
pub fn prune(
    engine: &super::Engine,
    filters: &super::filters::Filters,
    users: Users<'_>,
) -> Result<(Vec<String>, u64), EngineError> {
    let all = filters.bool("all")?.unwrap_or(false);
    let mut removed = Vec::new();
    let mut freed = 0;
    for v in engine.volumes.list() {
        let labels: HashMap<String, String> = v.labels.clone().into_iter().collect();
        if (!all && !v.anonymous) || !filters.labels_match("label", Some(&labels)) || !users(&v.name).is_empty() {
            continue;
        }
        freed += engine.volumes.remove(&v.name)?;
        super::events::volume_event(engine, "destroy", &v.name);
        removed.push(v.name);
    }
    Ok((removed, freed))
}

/// Bytes under `dir` (not following symlinks), for prune's SpaceReclaimed and `system df`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => todo.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_names_are_checked_and_remove_deletes_data() -> Result<(), EngineError> {
        let dir = tempfile::tempdir().map_err(|e| internal("tempdir", e))?;
        let v = Volumes::open(dir.path())?;
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let rec = v.create(Some("data"), None, labels.clone(), BTreeMap::new())?;
        assert!(!rec.anonymous && rec.labels == labels && v.is_empty("data"));
        std::fs::write(v.data_dir("data").join("f"), b"x").map_err(|e| internal("write", e))?;
        assert_eq!(v.create(Some("data"), None, BTreeMap::new(), BTreeMap::new())?, rec);
        assert!(!v.is_empty("data"));
        let anon = v.create(None, None, BTreeMap::new(), BTreeMap::new())?;
        assert!(anon.anonymous && anon.name.len() == 64);
        for bad in ["x", "-a", "a/b", "../etc", "a b"] {
            assert!(
                matches!(
                    v.create(Some(bad), None, BTreeMap::new(), BTreeMap::new()),
                    Err(EngineError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            v.create(Some("ok"), Some("nfs"), BTreeMap::new(), BTreeMap::new()),
            Err(EngineError::NotFound(_))
        ));
        let opts = BTreeMap::from([("colour".to_string(), "red".to_string())]);
        assert!(matches!(v.create(Some("ok"), None, BTreeMap::new(), opts), Err(EngineError::InvalidArgument(_))));
        assert_eq!(v.list().len(), 2);
        assert_eq!(v.remove("data")?, 1);
        assert!(matches!(v.get("data"), Err(EngineError::NotFound(_))));
        assert!(!dir.path().join("data").exists());
        Ok(())
    }
}
