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

/// The font stacks of a Linux build: the generic families, which fontconfig maps to the desktop's
/// own fonts. Every other name in a stack costs WebKitGTK a fontconfig lookup per size and weight.
const LINUX_FONTS: &str = ":root { --ui-font: sans-serif; --mono-font: monospace; }";

/// Puts the target's font stacks into the copied style sheet (the line that defines them).
fn platform_fonts(css: &Path, target_os: &str) {
    if target_os != "linux" {
        return;
    }
    let text = std::fs::read_to_string(css).unwrap_or_else(|e| panic!("{}: {e}", css.display()));
    let Some(line) = text.lines().find(|l| l.starts_with(":root { --ui-font:")) else {
        panic!("{}: no `:root {{ --ui-font: …` line to adapt for Linux", css.display());
    };
    let adapted = text.replacen(line, LINUX_FONTS, 1);
    std::fs::write(css, adapted).unwrap_or_else(|e| panic!("{}: {e}", css.display()));
}

/// Puts the style sheet into index.html: a linked sheet holds the first paint until the page's
/// second request (through the app's custom scheme) is answered; inline, the page is painted as
/// soon as it is parsed (bench/desktop.sh). style.css stays in dist for browser mode's tests.
fn inline_style(dist: &Path) {
    let (index, css) = (dist.join("index.html"), dist.join("style.css"));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (html, style) = (read(&index), read(&css));
    let link = r#"<link rel="stylesheet" href="style.css">"#;
    assert!(html.contains(link), "{}: no `{link}` to inline", index.display());
    let inlined = html.replacen(link, &format!("<style>\n{style}</style>"), 1);
    std::fs::write(&index, inlined).unwrap_or_else(|e| panic!("{}: {e}", index.display()));
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
    platform_fonts(&dist.join("style.css"), &std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default());
    inline_style(&dist);
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
