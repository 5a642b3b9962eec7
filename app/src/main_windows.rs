//! `skiff` on Windows: the engine runs in the WSL 2 distribution `skiff` (imported from the guest
//! image's `wsl-rootfs.tar`); `skiff daemon` (started by `skiff start`, no window) serves the
//! named pipe `\\.\pipe\skiff_engine`, each connection carried by a `skiff-agent dial-stdio` in
//! the distribution. The docker CLI reaches it through the `skiff` context (`npipe://`).

use std::io::{Read, Write};
use std::os::windows::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use skiff::endpoint::serve::{PIPE_HOST, PIPE_NAME};
use skiff::home::Home;
use skiff::wsl::commands::WslExe;
use skiff::wsl::{WslConfig, WslEngine};

#[derive(Debug, Parser)]
#[command(name = "skiff", version, about = "Skiff: a Docker engine in WSL 2")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import the distribution (first time), start the engine and wait until the pipe answers.
    Start,
    /// Stop the engine (containers first) and the distribution.
    Stop {
        #[arg(long, short = 't', default_value_t = 10)]
        timeout: u32,
    },
    /// Whether the engine answers, and where.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Remove the distribution and its disk (images, containers, volumes). Settings are kept.
    Delete {
        #[arg(long)]
        force: bool,
    },
    /// Internal: serve the pipe (started by `skiff start`).
    #[command(hide = true)]
    Daemon,
}

/// Process creation flags: no console window, its own process group (Ctrl-C in the terminal
/// that ran `skiff start` does not reach it).
const CREATE_NO_WINDOW: u32 = 0x0800_0000;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = Home::from_env();
    let result = match cli.command {
        Command::Start => start(&home),
        Command::Stop { timeout } => stop(&home, timeout),
        Command::Status { json } => status(json),
        Command::Delete { force } => delete(&home, force),
        Command::Daemon => daemon(&home),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("skiff: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn out(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The distribution's root file system: `SKIFF_WSL_ROOTFS`, else `wsl-rootfs.tar` beside skiff.exe.
fn rootfs() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_WSL_ROOTFS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|d| d.join("wsl-rootfs.tar")).unwrap_or_default()
}

fn engine(home: &Home) -> WslEngine<WslExe> {
    let mut cfg = WslConfig::standard(home.wsl_dir(), rootfs());
    cfg.log = Some(home.log_dir().join("engine.log"));
    WslEngine::new(WslExe::default(), cfg)
}

/// `GET /_ping` through the pipe.
fn ping() -> bool {
    let Ok(mut pipe) = std::fs::OpenOptions::new().read(true).write(true).open(PIPE_NAME) else { return false };
    if pipe.write_all(b"GET /_ping HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"OK") {
            break;
        }
    }
    answer.starts_with(b"HTTP/1.1 200")
}

fn start(home: &Home) -> Result<(), String> {
    std::fs::create_dir_all(home.log_dir()).map_err(|e| format!("creating {}: {e}", home.log_dir().display()))?;
    if !ping() {
        let log = std::fs::File::create(home.daemon_log()).map_err(|e| format!("creating the daemon log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        std::process::Command::new(exe)
            .arg("daemon")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .creation_flags(CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP)
            .spawn()
            .map_err(|e| format!("starting the daemon: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(180);
        while !ping() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(home.daemon_log()).unwrap_or_default();
                return Err(format!("the engine did not answer within 180 s; daemon log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    skiff::context::ensure_host(PIPE_HOST).map_err(|e| format!("writing the docker context: {e}"))?;
    out(&format!("Docker endpoint: {PIPE_HOST}"));
    out(&format!("Use it with:   docker context use skiff   or   set DOCKER_HOST={PIPE_HOST}"));
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("starting the async runtime: {e}"))
}

fn stop(home: &Home, timeout: u32) -> Result<(), String> {
    let patience = Duration::from_secs(u64::from(timeout) + 10);
    runtime()?.block_on(engine(home).stop(patience)).map_err(|e| e.to_string())?;
    out("Skiff stopped.");
    Ok(())
}

fn status(json: bool) -> Result<(), String> {
    let running = ping();
    if json {
        out(&serde_json::json!({"state": if running { "running" } else { "stopped" }, "backend": "wsl", "endpoint": PIPE_HOST}).to_string());
    } else {
        out(&format!("state:    {}", if running { "running" } else { "stopped" }));
        out("backend:  wsl (distribution skiff)");
        out(&format!("endpoint: {PIPE_HOST}"));
    }
    Ok(())
}

fn delete(home: &Home, force: bool) -> Result<(), String> {
    if !force {
        return Err("this removes every image, container and volume: run `skiff delete --force`".into());
    }
    let e = engine(home);
    let _ = runtime()?.block_on(e.stop(Duration::from_secs(20)));
    skiff::wsl::commands::WslCommands::unregister(&WslExe::default(), &e.config().distro).map_err(|e| e.to_string())?;
    out("Skiff's distribution and its data were removed.");
    Ok(())
}

fn daemon(home: &Home) -> Result<(), String> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    runtime()?.block_on(async {
        let engine = Arc::new(engine(home));
        engine.start(Duration::from_secs(120)).await.map_err(|e| e.to_string())?;
        tracing::info!(endpoint = PIPE_HOST, "the engine in WSL answers");
        let dial = skiff::endpoint::Prespawned::new(engine.clone());
        let serve = skiff::endpoint::serve::serve_pipe(PIPE_NAME, Arc::new(dial));
        tokio::select! {
            r = serve => r.map_err(|e| format!("serving {PIPE_NAME}: {e}")),
            () = engine.wait() => {
                tracing::info!("the engine stopped");
                Ok(())
            }
        }
    })
}
