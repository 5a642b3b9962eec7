//! Finding the guest image (`vmlinux` + `initramfs.img`, built by vm-image/build.py).

use std::path::{Path, PathBuf};

/// The guest kernel and initramfs.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Looks in `$SKIFF_VM_IMAGE`, next to an installed binary (`../share/skiff`), then in the
/// `target/vm-image` of the source tree a development binary was built in.
pub fn locate() -> Result<GuestImage, String> {
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
    candidates.iter().find_map(|d| in_dir(d)).ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        format!(
            "the guest image (vmlinux, initramfs.img) was not found in {}; build it with vm-image/build.py \
                 or set SKIFF_VM_IMAGE",
            looked.join(", ")
        )
    })
}

fn in_dir(dir: &Path) -> Option<GuestImage> {
    let image = GuestImage { kernel: dir.join("vmlinux"), initramfs: dir.join("initramfs.img") };
    (image.kernel.is_file() && image.initramfs.is_file()).then_some(image)
}
