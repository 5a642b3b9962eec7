//! `skiff-desktop`: the Skiff desktop app. With no arguments it opens the window (Tauri); with
//! `--serve ADDR` it serves the same front end and backend over HTTP on a loopback address, which
//! the end-to-end tests drive with Chromium.

mod backend;
mod streams;
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
    /// Drive this engine (`unix:///path/docker.sock`) instead of the Skiff VM (also: DOCKER_HOST).
    #[arg(long)]
    docker_host: Option<String>,
    /// The view to open: containers, images, volumes or vm.
    #[arg(long)]
    view: Option<String>,
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
        Some(host) => {
            let path = host
                .strip_prefix("unix://")
                .ok_or_else(|| anyhow::anyhow!("--docker-host {host}: only unix:// sockets are supported"))?;
            backend::Backend { socket: PathBuf::from(path), vm: None }
        }
        None => backend::Backend {
            socket: home.docker_socket(),
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
            window::run(backend, cli.view)
        }
    }
}

/// Sets a variable for the WebKit processes the window spawns (before any thread of ours exists).
#[allow(unused_unsafe)]
fn set_env(key: &str, value: &str) {
    // SAFETY: called from `main` before the runtime or any other thread starts.
    unsafe { std::env::set_var(key, value) };
}
