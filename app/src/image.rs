//! Finding the guest image (`vmlinux` + `initramfs.img`, built by vm-image/build.py).

use std::path::{Path, PathBuf};

use crate::arch::GuestArch;

/// The guest kernel and initramfs.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Looks in `$SKIFF_VM_IMAGE`, next to an installed binary (`../share/skiff`), then in the
/// `target/vm-image` of the source tree a development binary was built in; in each, an image of
/// `arch` is either the directory itself or its `<arch>` subdirectory (vm-image/build.py puts
/// the host's architecture in the first and arm64 on an amd64 machine in the second).
pub fn locate(arch: GuestArch) -> Result<GuestImage, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SKIFF_VM_IMAGE").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin) = exe.parent() {
            candidates.push(bin.join("../share/skiff"));
            candidates.extend(bin.ancestors().filter(|a| a.ends_with("target")).map(|t| t.join("vm-image")));
        }
    }
    candidates.iter().find_map(|d| in_dir(&d.join(arch.name()), arch).or_else(|| in_dir(d, arch))).ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        format!(
            "the {arch} guest image (vmlinux, initramfs.img) was not found in {} (or their {arch}/ subdirectories); \
             build it with `vm-image/build.py --arch {arch}` or set SKIFF_VM_IMAGE",
            looked.join(", ")
        )
    })
}

/// The image in `dir` if it is one of `arch` (its manifest.json says so; an image without one
/// is taken for the host's architecture).
fn in_dir(dir: &Path, arch: GuestArch) -> Option<GuestImage> {
    let image = GuestImage { kernel: dir.join("vmlinux"), initramfs: dir.join("initramfs.img") };
    if !(image.kernel.is_file() && image.initramfs.is_file()) {
        return None;
    }
    let built_for = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m.get("arch").and_then(|a| a.as_str()).map(str::to_owned));
    let matches = match built_for {
        Some(a) => a == arch.name(),
        None => arch.is_native(),
    };
    matches.then_some(image)
}
