//! `skiff` on Linux and macOS: start, stop and inspect the Skiff VM.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use skiff::accel::AccelChoice;
use skiff::config::{Overrides, VmConfig};
use skiff::daemon::rpc::{DaemonRequest, DaemonResponse, State, Status};
use skiff::home::Home;

#[derive(Debug, Parser)]
#[command(name = "skiff", version, about = "Skiff: a Docker engine in a lightweight VM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot the VM (if it is not running) and wait until the Docker socket answers.
    Start {
        /// Virtual CPUs (saved for later starts).
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory in MiB (saved).
        #[arg(long)]
        memory: Option<u32>,
        /// Data disk size in GiB; it can only grow (saved).
        #[arg(long)]
        disk: Option<u32>,
        /// Hardware accelerator (saved); `auto` probes and falls back to TCG.
        #[arg(long, value_enum)]
        accel: Option<AccelChoice>,
        /// A host folder to share with the VM at the same path (repeat for several; replaces the
        /// saved list, which defaults to your home directory).
        #[arg(long = "share", value_name = "PATH")]
        shares: Vec<std::path::PathBuf>,
        /// The guest's architecture (saved; default: the host's). The other one runs emulated
        /// (TCG): slower, for testing images of that architecture as their users run them.
        #[arg(long, value_enum)]
        arch: Option<skiff::arch::GuestArch>,
        /// A registry the engine may reach over plain HTTP, as HOST[:PORT] (repeat for several;
        /// replaces the saved list). A registry on this host is `host.docker.internal:PORT`.
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registries: Vec<String>,
    },
    /// Shut the VM down cleanly (hard after the timeout).
    Stop {
        /// Seconds containers get to stop before they are killed.
        #[arg(long, short = 't', default_value_t = 10)]
        timeout: u32,
    },
    /// Show whether the VM runs, and its resources.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the VM console (kernel and engine log); `--daemon` for the host daemon's log.
    Logs {
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long)]
        daemon: bool,
    },
    /// Delete the VM and its data disk (images, containers, volumes). Settings are kept.
    Delete {
        #[arg(long)]
        force: bool,
    },
    /// Internal: the host daemon (started by `skiff start`).
    #[command(hide = true)]
    Daemon,
    /// Serve a Docker socket whose every connection is carried by COMMAND's stdin/stdout (e.g.
    /// `skiff-agent dial-stdio`, or `ssh HOST skiff-agent dial-stdio`): the stdio transport of the
    /// WSL back end, usable on its own.
    #[command(name = "stdio-endpoint")]
    StdioEndpoint {
        /// The socket to serve.
        #[arg(long)]
        listen: std::path::PathBuf,
        /// The command (and its arguments) that carries one connection.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Internal: run the KVM test guest (used by the accelerator probe).
    #[command(hide = true, name = "__probe-kvm")]
    ProbeKvm,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = Home::from_env();
    let result = match cli.command {
        Command::Start { cpus, memory, disk, accel, shares, arch, insecure_registries } => {
            let shares = (!shares.is_empty())
                .then(|| shares.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect());
            let insecure_registries = (!insecure_registries.is_empty()).then_some(insecure_registries);
            start(
                &home,
                &Overrides { cpus, memory_mib: memory, disk_gib: disk, accel, shares, arch, insecure_registries },
            )
        }
        Command::Stop { timeout } => stop(&home, timeout),
        Command::Status { json } => status(&home, json),
        Command::Logs { follow, daemon } => logs(&home, follow, daemon),
        Command::Delete { force } => delete(&home, force),
        Command::Daemon => daemon(&home),
        Command::ProbeKvm => skiff::accel::run_kvm_test_guest(),
        Command::StdioEndpoint { listen, command } => stdio_endpoint(&listen, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("skiff: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn stdio_endpoint(listen: &Path, command: Vec<String>) -> Result<(), String> {
    let mut parts = command.into_iter();
    let program = parts.next().ok_or("a command is needed after --")?;
    let dial = skiff::endpoint::CommandDial { program: program.into(), args: parts.collect() };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = skiff::forward::bind(listen).map_err(|e| e.to_string())?;
        out(&format!("Docker socket: unix://{}", listen.display()));
        let dial = skiff::endpoint::Prespawned::new(dial);
        let serve = skiff::endpoint::serve::serve_unix(listener, std::sync::Arc::new(dial));
        tokio::select! {
            () = serve => Ok(()),
            r = tokio::signal::ctrl_c() => r.map_err(|e| e.to_string()),
        }
    })
}

fn out(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn query(home: &Home) -> Option<Status> {
    match skiff::client::call(&home.daemon_socket(), &DaemonRequest::Status, Duration::from_secs(5)) {
        Some(Ok(DaemonResponse::Status(s))) => Some(*s),
        _ => None,
    }
}

fn start(home: &Home, overrides: &Overrides) -> Result<(), String> {
    std::fs::create_dir_all(home.root()).map_err(|e| format!("creating {}: {e}", home.root().display()))?;
    let saved = VmConfig::load(&home.config_file()).map_err(|e| e.to_string())?;
    let cfg = saved.clone().apply(overrides).map_err(|e| e.to_string())?;
    cfg.save(&home.config_file()).map_err(|e| e.to_string())?;
    let mut child = if let Some(s) = query(home) {
        if s.state == State::Running || s.state == State::Paused {
            if cfg != saved {
                out(
                    "Skiff is already running; the new settings apply at the next start (`skiff stop && skiff start`).",
                );
            }
            return ready(home, &s);
        }
        None
    } else {
        Some(spawn_daemon(home)?)
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        std::thread::sleep(Duration::from_millis(10));
        match query(home) {
            Some(s) if s.state == State::Running => return ready(home, &s),
            Some(s) if s.state == State::Stopping => return Err("Skiff is stopping; start it again afterwards".into()),
            Some(_) => {}
            // The daemon we started exited (it takes the lock only some time after it starts, so
            // a free lock alone proves nothing yet); one started by someone else: its lock.
            None if child.as_mut().map_or_else(|| daemon_gone(home), |c| matches!(c.try_wait(), Ok(Some(_)))) => {
                let why = std::fs::read_to_string(home.run_dir().join("daemon.error"))
                    .unwrap_or_else(|_| format!("the daemon exited; see {}", home.daemon_log().display()));
                return Err(why.trim().to_owned());
            }
            None => {}
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the VM did not become ready in time; see `skiff logs` and {}",
                home.daemon_log().display()
            ));
        }
    }
}

/// True when no daemon holds the lock (it exited, or never started).
fn daemon_gone(home: &Home) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(home.lock_file()) else { return true };
    // SAFETY: flock on a descriptor we own; released when `file` is dropped.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn spawn_daemon(home: &Home) -> Result<std::process::Child, String> {
    std::fs::create_dir_all(home.log_dir()).map_err(|e| format!("creating {}: {e}", home.log_dir().display()))?;
    std::fs::create_dir_all(home.run_dir()).map_err(|e| format!("creating {}: {e}", home.run_dir().display()))?;
    let _ = std::fs::remove_file(home.run_dir().join("daemon.error"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.daemon_log())
        .map_err(|e| format!("opening {}: {e}", home.daemon_log().display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding the skiff binary: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .env("SKIFF_HOME", home.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: setsid() in the child before exec: async-signal-safe, detaches it from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting the daemon: {e}"))
}

fn ready(home: &Home, s: &Status) -> Result<(), String> {
    let socket = home.docker_socket();
    let version =
        skiff::client::docker_version(&socket).map_err(|e| format!("the Docker socket does not answer: {e}"))?;
    if let Err(e) = skiff::context::ensure(&socket) {
        eprintln!("skiff: could not write the docker context `skiff`: {e}");
    }
    if let Some(notice) = &s.accel_notice {
        eprintln!("skiff: {notice}");
    }
    out(&format!("Skiff is running (engine {version}; {} CPUs, {} MiB).", s.cpus, s.memory_mib));
    out(&format!("Docker socket: unix://{}", socket.display()));
    out(&format!("Use it with:   docker context use skiff   or   export DOCKER_HOST=unix://{}", socket.display()));
    Ok(())
}

fn stop(home: &Home, timeout: u32) -> Result<(), String> {
    let patience = Duration::from_secs(u64::from(timeout) + 60);
    match skiff::client::call(&home.daemon_socket(), &DaemonRequest::Stop { timeout_secs: timeout }, patience) {
        None => {
            out("Skiff is not running.");
            Ok(())
        }
        Some(Ok(DaemonResponse::Stopped { clean })) => {
            // Wait for the daemon to let go of its lock (it exits right after answering).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !daemon_gone(home) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            out(if clean { "Skiff stopped." } else { "Skiff stopped (the VM had to be stopped hard)." });
            Ok(())
        }
        Some(Ok(DaemonResponse::Error { message })) => Err(message),
        Some(Ok(other)) => Err(format!("unexpected answer: {other:?}")),
        Some(Err(e)) => Err(e),
    }
}

fn status(home: &Home, json: bool) -> Result<(), String> {
    let s = query(home);
    if json {
        let v = match &s {
            Some(s) => serde_json::to_value(s).map_err(|e| e.to_string())?,
            None => serde_json::json!({ "state": "stopped" }),
        };
        out(&serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let Some(s) = s else {
        out("Skiff is stopped.");
        return Ok(());
    };
    out(&format!("state:    {:?}", s.state).to_lowercase());
    out(&format!(
        "vm:       {} {} CPUs, {} MiB memory, {} GiB disk, {} ({})",
        if s.arch.is_empty() { "?" } else { s.arch.as_str() },
        s.cpus,
        s.memory_mib,
        s.disk_gib,
        s.hypervisor,
        s.accel.map(|a| a.qemu_name()).unwrap_or("?")
    ));
    let mib = |b: Option<u64>| b.map_or("?".to_string(), |b| format!("{} MiB", b >> 20));
    out(&format!(
        "host:     {} memory, {} disk (what the VM takes from this machine now)",
        mib(s.host_memory_bytes),
        mib(s.disk_allocated_bytes)
    ));
    out(&format!("socket:   unix://{}", s.docker_socket));
    out(&format!("shares:   {}", if s.shares.is_empty() { "none".to_owned() } else { s.shares.join(", ") }));
    if let Some(ms) = s.ready_ms {
        out(&format!("boot:     engine ready {:.1} s after start", ms as f64 / 1000.0));
    }
    if let Some(r) = &s.paused_reason {
        out(&format!("paused:   {r}"));
    }
    Ok(())
}

fn logs(home: &Home, follow: bool, daemon: bool) -> Result<(), String> {
    let path = if daemon { home.daemon_log() } else { home.console_log() };
    let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stdout = std::io::stdout();
    loop {
        std::io::copy(&mut file, &mut stdout).map_err(|e| e.to_string())?;
        if !follow {
            return Ok(());
        }
        let _ = stdout.flush();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn delete(home: &Home, force: bool) -> Result<(), String> {
    if !force {
        return Err(format!(
            "this deletes the VM's disk with all images, containers and volumes in {}; run `skiff delete --force`",
            home.root().display()
        ));
    }
    if query(home).is_some() {
        stop(home, 10)?;
    }
    if !daemon_gone(home) {
        return Err("the daemon is still running; stop it first".into());
    }
    for path in [home.disk(), home.log_dir(), home.run_dir(), home.docker_socket()] {
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", path.display())),
        }
    }
    out(&format!(
        "Deleted the Skiff VM in {} (settings kept in {}).",
        home.root().display(),
        display(&home.config_file())
    ));
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn daemon(home: &Home) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cfg = VmConfig::load(&home.config_file()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(skiff::daemon::run(home.clone(), cfg)).map_err(|e| e.to_string())
}
