//! Assembles the front end (ui/ + xterm.js from ui/node_modules) into target/ui-dist, which
//! tauri.conf.json names as `frontendDist`, then runs Tauri's own build step.

use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" || name == "package.json" || name == "package-lock.json" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let repo = manifest.join("../..");
    let ui = repo.join("ui");
    let dist = repo.join("target/ui-dist");
    println!("cargo:rerun-if-changed={}", ui.display());
    let _ = std::fs::remove_dir_all(&dist);
    if let Err(e) = copy_dir(&ui, &dist) {
        panic!("copying {} to {}: {e}", ui.display(), dist.display());
    }
    let vendor = dist.join("vendor");
    let modules = ui.join("node_modules/@xterm");
    for (from, to) in [
        ("xterm/lib/xterm.js", "xterm.js"),
        ("xterm/css/xterm.css", "xterm.css"),
        ("addon-fit/lib/addon-fit.js", "addon-fit.js"),
    ] {
        let src = modules.join(from);
        if let Err(e) = std::fs::create_dir_all(&vendor).and_then(|()| std::fs::copy(&src, vendor.join(to))) {
            panic!("{}: {e} (scripts/install-deps.sh runs `npm ci` in ui/)", src.display());
        }
    }
    println!("cargo:rustc-env=SKIFF_UI_DIST={}", dist.display());
    tauri_build::build()
}
