//! `skiff-desktop`: the Skiff desktop app. With no arguments it opens the window (Tauri); with
//! `--serve ADDR` it serves the same front end and backend over HTTP on a loopback address, which
//! the end-to-end tests drive with Chromium.

mod backend;
mod first_screen;
mod streams;
mod tray;
mod vm;
mod web;
mod window;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "skiff-desktop", version, about = "The Skiff desktop app")]
struct Cli {
    /// Serve the UI over HTTP on this loopback address instead of opening a window.
    #[arg(long)]
    serve: Option<SocketAddr>,
    /// Drive this engine (`unix:///path/docker.sock`, on Windows `npipe:////./pipe/NAME`) instead of
    /// Skiff's own (also: DOCKER_HOST).
    #[arg(long)]
    docker_host: Option<String>,
    /// The view to open: containers, images, volumes or vm.
    #[arg(long)]
    view: Option<String>,
    /// Start in the tray (menu bar) without showing the window, as at login.
    #[arg(long)]
    hidden: bool,
}

/// When the process started (for the first-render measurement).
pub static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn main() -> anyhow::Result<()> {
    let _ = STARTED.set(std::time::Instant::now());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    cli.docker_host = cli.docker_host.or_else(|| from_env("DOCKER_HOST"));
    cli.view = cli.view.or_else(|| from_env("SKIFF_UI_VIEW"));
    let home = skiff::home::Home::from_env();
    let backend = match cli.docker_host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => backend::Backend { socket: endpoint_path(host)?, vm: None },
        None => backend::Backend {
            socket: default_endpoint(&home),
            vm: Some(vm::Vm { home: home.clone(), skiff: vm::find_skiff() }),
        },
    };
    match cli.serve {
        Some(addr) => {
            let ui = PathBuf::from(env!("SKIFF_UI_DIST"));
            tokio::runtime::Runtime::new()?.block_on(web::serve(backend, addr, ui))
        }
        None => {
            // Accelerated compositing buys this UI nothing and costs WebKit's web process ~80 MiB
            // under software GL (bench/desktop.sh); the user's own setting wins.
            if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
                set_env("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
            }
            // The page's JavaScript is small and event-driven: JavaScriptCore's interpreter runs
            // it, and its JIT compilers (code pages and heap, ~9 MiB of the web process in
            // bench/desktop.sh) are never loaded. `JSC_useJIT=1` turns them back on.
            if cfg!(target_os = "linux") && std::env::var_os("JSC_useJIT").is_none() {
                set_env("JSC_useJIT", "0");
            }
            // Without compositing, WebKitGTK's DMA-BUF renderer has nothing to share between the
            // web process and the window, yet it still draws each frame through GL in the app's
            // own process (Mesa's heap and code, ~4.5 MiB in bench/desktop.sh); off, frames come
            // as shared-memory images. `WEBKIT_DISABLE_DMABUF_RENDERER=0` turns it back on.
            if cfg!(target_os = "linux") && std::env::var_os("WEBKIT_DISABLE_DMABUF_RENDERER").is_none() {
                set_env("WEBKIT_DISABLE_DMABUF_RENDERER", "1");
            }
            window::run(backend, cli.view, cli.hidden)
        }
    }
}

/// The endpoint a `DOCKER_HOST`-style address names.
fn endpoint_path(host: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = host.strip_prefix("unix://").filter(|_| cfg!(unix)) {
        return Ok(PathBuf::from(path));
    }
    // npipe:////./pipe/NAME → \\.\pipe\NAME
    if let Some(rest) = host.strip_prefix("npipe://").filter(|_| cfg!(windows)) {
        return Ok(PathBuf::from(rest.replace('/', "\\")));
    }
    let wanted = if cfg!(windows) { "npipe://" } else { "unix://" };
    anyhow::bail!("--docker-host {host}: only {wanted} endpoints are supported here")
}

/// Skiff's own endpoint: the VM's socket, or on Windows the WSL engine's pipe.
fn default_endpoint(home: &skiff::home::Home) -> PathBuf {
    #[cfg(windows)]
    let path = {
        let _ = home;
        PathBuf::from(skiff::endpoint::serve::PIPE_NAME)
    };
    #[cfg(unix)]
    let path = home.docker_socket();
    path
}

/// Sets a variable for the WebKit processes the window spawns (before any thread of ours exists).
#[allow(unused_unsafe)]
fn set_env(key: &str, value: &str) {
    // SAFETY: called from `main` before the runtime or any other thread starts.
    unsafe { std::env::set_var(key, value) };
}
