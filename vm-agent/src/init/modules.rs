//! Kernel modules: loaded by PID 1 with `finit_module(2)`, dependencies first, as listed in the
//! image's `modules.dep` (written by vm-image/build.py from each module's own `depends=`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::SetupError;

/// The data disk's driver, loaded first so the disk check can start early.
pub const DISK: &[&str] = &["virtio_pci", "virtio_blk"];
/// Container networking's modules: loaded once the engine serves (see `init::run`).
pub const NETWORK: &[&str] = &["bridge", "veth", "nf_tables", "nft_chain_nat", "nft_masq"];
/// Giving memory back to the host (free page reporting through the balloon): loaded with the
/// network's modules, after the engine serves.
pub const RECLAIM: &[&str] = &["virtio_balloon"];
/// File-change events from the host (ours: vm-image/fsnotify, see `init::host_events`).
pub const HOST_EVENTS: &[&str] = &["skiff_fsnotify"];
/// The modules the guest needs at boot; the network stack's modules come right after.
pub const BOOT: &[&str] = &[
    "virtio_pci",
    "virtio_rng",
    "vmw_vsock_virtio_transport",
    "virtio_blk",
    "virtio_net",
    "overlay",
    "virtiofs",
    "button",
    "evdev",
    "binfmt_misc",
];

/// `modules.dep` of one kernel: module name → (file, files it depends on).
#[derive(Debug, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    by_name: HashMap<String, PathBuf>,
    deps: HashMap<PathBuf, Vec<PathBuf>>,
    builtin: HashSet<String>,
    loaded: HashSet<PathBuf>,
    /// Where the kernel lists the modules it has (`/sys/module`).
    sys_module: PathBuf,
}

/// A module's name as the kernel spells it (`nf-tables.ko` → `nf_tables`).
fn module_name(file: &Path) -> String {
    let stem = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    stem.trim_end_matches(".ko").replace('-', "_")
}

impl ModuleIndex {
    /// Parses `modules.dep` and `modules.builtin` text.
    pub fn parse(dir: &Path, modules_dep: &str, builtin: &str) -> Self {
        let mut index = ModuleIndex { dir: dir.to_path_buf(), sys_module: "/sys/module".into(), ..Default::default() };
        for line in modules_dep.lines() {
            let Some((file, deps)) = line.split_once(':') else { continue };
            let file = PathBuf::from(file.trim());
            index.by_name.insert(module_name(&file), file.clone());
            index.deps.insert(file, deps.split_whitespace().map(PathBuf::from).collect());
        }
        index.builtin = builtin.lines().map(|l| module_name(Path::new(l.trim()))).collect();
        index
    }

    /// Reads the index of the running kernel from `/lib/modules/$(uname -r)`.
    pub fn open_running() -> Result<Self, SetupError> {
        let release = nix::sys::utsname::uname().map_err(|e| SetupError::sys("uname", e))?;
        let dir = Path::new("/lib/modules").join(release.release());
        let dep = std::fs::read_to_string(dir.join("modules.dep"))
            .map_err(|e| SetupError::io(&format!("reading {}/modules.dep", dir.display()), e))?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Ok(Self::parse(&dir, &dep, &builtin))
    }

    /// The files to load for `name`, each after the modules it needs; empty if built in.
    pub fn plan(&self, name: &str) -> Result<Vec<PathBuf>, SetupError> {
        let name = name.replace('-', "_");
        if self.builtin.contains(&name) {
            return Ok(Vec::new());
        }
        let file = self.by_name.get(&name).ok_or_else(|| SetupError::Module {
            module: name.clone(),
            reason: "not in this image's modules.dep".into(),
        })?;
        let mut order = Vec::new();
        self.visit(file, &mut order, &mut HashSet::new());
        Ok(order)
    }

    fn visit(&self, file: &Path, order: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) {
        if !seen.insert(file.to_path_buf()) {
            return;
        }
        // Already in the kernel (loaded earlier, perhaps by another index whose file is gone).
        if self.sys_module.join(module_name(file)).is_dir() {
            return;
        }
        for dep in self.deps.get(file).map(Vec::as_slice).unwrap_or_default() {
            self.visit(dep, order, seen);
        }
        order.push(file.to_path_buf());
    }

    /// Loads `names` and their dependencies (each at most once).
    pub fn load(&mut self, names: &[&str]) -> Result<(), SetupError> {
        for name in names {
            for file in self.plan(name)? {
                if self.loaded.contains(&file) {
                    continue;
                }
                insert(&self.dir.join(&file))
                    .map_err(|reason| SetupError::Module { module: module_name(&file), reason })?;
                self.loaded.insert(file);
            }
        }
        Ok(())
    }

    /// Loads `names` (and their dependencies) on one thread per name: module loading is CPU-bound
    /// relocation work and the roots share no dependencies beyond what is already loaded. A
    /// dependency two threads need is safe: the kernel makes the second load wait for the first
    /// and answer EEXIST.
    pub fn load_parallel(&mut self, names: &[&str]) -> Result<(), SetupError> {
        let mut plans = Vec::new();
        for name in names {
            let plan: Vec<PathBuf> = self.plan(name)?.into_iter().filter(|f| !self.loaded.contains(f)).collect();
            plans.push(plan);
        }
        let dir = self.dir.clone();
        let results: Vec<Result<Vec<PathBuf>, SetupError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .into_iter()
                .map(|plan| {
                    let dir = dir.clone();
                    scope.spawn(move || {
                        for file in &plan {
                            insert(&dir.join(file))
                                .map_err(|reason| SetupError::Module { module: module_name(file), reason })?;
                        }
                        Ok(plan)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SetupError::Module { module: "?".into(), reason: "loader thread panicked".into() })
                    })
                })
                .collect()
        });
        for result in results {
            self.loaded.extend(result?);
        }
        Ok(())
    }
}

impl ModuleIndex {
    /// Deletes the files of loaded modules: the initramfs lives in RAM and they are not needed twice.
    pub fn release_loaded_files(&self) {
        for file in &self.loaded {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
    }
}

fn insert(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("finit_module {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko
";

    #[test]
    fn dependencies_come_first_whatever_order_modules_dep_lists_them_in() {
        let mut index = ModuleIndex::parse(Path::new("/m"), DEP, "kernel/fs/ext4/ext4.ko\n");
        index.sys_module = "/nonexistent".into();
        let plan = index.plan("virtio-net").expect("plan");
        let names: Vec<String> = plan.iter().map(|p| module_name(p)).collect();
        let pos = |n: &str| names.iter().position(|m| m == n).expect(n);
        assert_eq!(names.len(), 4);
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("net_failover") < pos("virtio_net") && pos("virtio_ring") < pos("virtio_net"));
        assert_eq!(index.plan("ext4").expect("builtin"), Vec::<PathBuf>::new());
        assert!(index.plan("nope").is_err());
    }
}
