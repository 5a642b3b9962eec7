//! The `skiff-agent` binary: command-line parsing, logging, signals.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_agent::engine::{Engine, EngineConfig};

/// Where the engine keeps its state unless told otherwise.
const STANDARD_ROOT: &str = "/var/lib/skiff";

#[derive(Debug, Parser)]
#[command(name = "skiff-agent", version, about = "Skiff's container engine (Docker Engine API)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Docker Engine API on a Unix socket, natively on this Linux host (as root).
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "/run/skiff/docker.sock")]
        socket: PathBuf,
        /// Where to keep all state.
        #[arg(long, default_value = STANDARD_ROOT)]
        root: PathBuf,
        /// A registry (host[:port]) to reach over plain HTTP; repeatable. Loopback is always allowed.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// The default bridge network's device (its name must start with "skiff"; default: skiff0
        /// for the standard --root, otherwise a name derived from --root).
        #[arg(long)]
        bridge: Option<String>,
        /// The default bridge network's subnet (default: the first free one of Docker's pools).
        #[arg(long)]
        bridge_subnet: Option<ipnet::Ipv4Net>,
        /// On SIGTERM, how long running containers get to stop (their stop signal, then SIGKILL).
        #[arg(long, default_value_t = 15)]
        shutdown_timeout: u64,
        /// How clients write bind sources: `windows` for an engine in WSL 2 serving a Windows
        /// docker CLI (`C:\src` is `/mnt/c/src`).
        #[arg(long, value_enum, default_value = "posix")]
        host_paths: skiff_agent::engine::containers::host_paths::HostPaths,
        /// Write the engine's process id here (what `skiff-agent kill` reads).
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Stop the engine whose pid file is given (SIGTERM, as its shutdown), waiting for it to exit.
    Kill {
        /// The engine's pid file (`serve --pid-file`).
        #[arg(long)]
        pid_file: PathBuf,
        /// Seconds to wait before giving up (the engine's own shutdown timeout comes first).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Carry one connection to the engine over stdin/stdout (`docker system dial-stdio`'s
    /// contract: what `docker -H ssh://HOST` and Skiff's WSL back end run on the engine's side).
    DialStdio {
        /// The engine's socket.
        #[arg(long, default_value = skiff_agent::dial_stdio::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Internal: the runtime child that starts the container described by BUNDLE/config.json
    /// (run by the engine itself).
    #[command(hide = true)]
    Child {
        /// The bundle directory.
        bundle: PathBuf,
        /// The `cgroup.procs` files to join, `:`-separated.
        #[arg(default_value = "")]
        cgroup_procs: String,
    },
}

fn main() -> anyhow::Result<()> {
    skiff_agent::allocator::configure();
    // The runtime child runs before anything starts threads: it forks the container's PID 1.
    // As the VM's PID 1 (the initramfs's /init) the agent brings the guest up itself.
    if std::process::id() == 1 {
        skiff_agent::init::main();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 4 && args[1] == "child" {
        skiff_agent::runtime::child::main(std::path::Path::new(&args[2]), &args[3].to_string_lossy());
    }
    if args.len() == 2 && args[1] == "ready" {
        skiff_agent::runtime::ready::main();
    }
    if args.len() == 4 && args[1] == "exec-child" {
        skiff_agent::runtime::child::exec_main(std::path::Path::new(&args[2]), std::path::Path::new(&args[3]));
    }
    // Installed as `docker` on a host without the docker CLI: `docker -H ssh://HOST` runs
    // `docker system dial-stdio` here.
    let invoked_as = args.first().map(std::path::Path::new).and_then(|p| p.file_name()).and_then(|n| n.to_str());
    if invoked_as == Some("docker") {
        let rest: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        let host = std::env::var("DOCKER_HOST").ok();
        let socket = skiff_agent::dial_stdio::docker_invocation(&rest, host.as_deref()).map_err(anyhow::Error::msg)?;
        return Ok(skiff_agent::dial_stdio::run(&socket)?);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            socket,
            root,
            insecure_registries,
            bridge,
            bridge_subnet,
            shutdown_timeout,
            host_paths,
            pid_file,
        } => {
            let bridge =
                bridge.unwrap_or_else(|| skiff_agent::net::default_bridge(&root, std::path::Path::new(STANDARD_ROOT)));
            if !bridge.starts_with(skiff_agent::net::firewall::BRIDGE_PREFIX) || bridge.len() > 15 {
                anyhow::bail!("--bridge {bridge:?}: the name must start with \"skiff\" and have at most 15 characters");
            }
            let _claim = skiff_agent::net::claim_bridge(&bridge)?;
            let net = skiff_agent::net::NetConfig { bridge, bridge_subnet, ..Default::default() };
            let grace = std::time::Duration::from_secs(shutdown_timeout);
            if let Some(p) = &pid_file {
                std::fs::write(p, format!("{}\n", std::process::id()))
                    .with_context(|| format!("writing the pid file {}", p.display()))?;
            }
            let result = serve(socket, EngineConfig { root, insecure_registries, net, host_paths }, grace);
            if let Some(p) = &pid_file {
                let _ = std::fs::remove_file(p);
            }
            result
        }
        Command::Kill { pid_file, timeout } => {
            skiff_agent::pid_file::stop(&pid_file, std::time::Duration::from_secs(timeout))
                .with_context(|| format!("stopping the engine of {}", pid_file.display()))
        }
        Command::DialStdio { socket } => Ok(skiff_agent::dial_stdio::run(&socket)?),
        Command::Child { bundle, cgroup_procs } => skiff_agent::runtime::child::main(&bundle, &cgroup_procs),
    }
}

fn serve(socket: PathBuf, config: EngineConfig, grace: std::time::Duration) -> anyhow::Result<()> {
    let root = config.root.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        skiff_agent::runtime::reaper::start().context("becoming the containers' reaper")?;
        let engine = Engine::open(config).with_context(|| format!("opening engine state at {}", root.display()))?;
        let engine = Arc::new(engine);
        // Emulators for foreign-architecture images, where this host has them.
        skiff_agent::runtime::binfmt::register_emulators();
        // On SIGTERM: containers stop first (thawed, stop signal, SIGKILL after the grace; their
        // restart policies apply at the next start), so attached clients see them exit and the
        // server's graceful shutdown does not wait on them.
        let stopping = engine.clone();
        let shutdown = async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
            skiff_agent::engine::containers::stop_all_for_shutdown(&stopping, grace).await;
        };
        skiff_agent::engine::containers::recover(&engine).await;
        skiff_agent::engine::swarm::tasks::start(&engine);
        let served = skiff_agent::api::serve(engine.clone(), &socket, shutdown)
            .await
            .with_context(|| format!("serving on {}", socket.display()));
        // Bridges and rules go with the engine (they are set up again on first use).
        skiff_agent::engine::containers::network::release_all(&engine);
        engine.networks.shut_down().await;
        served
    })
}
