//! `skiff-agent` as the VM's PID 1: mounts, kernel modules, the data disk, the network, then the
//! engine on vsock and the control channel; clean power-off on request or on the ACPI button.
//!
//! Order matters: the disk is prepared before the async runtime and the reaper start (the reaper
//! waits for every child, which would steal `e2fsck`'s exit status), and the vsock listeners are
//! bound before the engine opens so the host can connect as early as possible.

pub mod clock;
pub mod control;
pub mod disk;
pub mod host_events;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod power;
pub mod shares;
pub mod trim;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::boot::BootConfig;
use skiff_proto::control::BootTimings;

use crate::engine::{Engine, EngineConfig};

/// Why the guest could not come up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::errno::Errno },
    #[error("kernel module {module}: {reason}")]
    Module { module: String, reason: String },
    #[error("data disk: {0}")]
    Disk(String),
    #[error("network: {0}")]
    Network(String),
    #[error("clock: {0}")]
    Clock(String),
}

impl SetupError {
    pub(crate) fn io(what: &str, source: std::io::Error) -> Self {
        Self::Io { what: what.to_owned(), source }
    }
    pub(crate) fn sys(what: &str, errno: nix::errno::Errno) -> Self {
        Self::Sys { what: what.to_owned(), errno }
    }
}

/// The engine's state directory on the data disk.
pub const ENGINE_ROOT: &str = "/var/lib/skiff/engine";
/// How long containers get to stop when the ACPI power button is pressed.
const BUTTON_GRACE: Duration = Duration::from_secs(10);

/// Runs the guest. Never returns: the VM powers off at the end (or on a fatal error, after
/// logging why, so the host sees the VM go away instead of hanging).
pub fn main() -> ! {
    let mut timings = BootTimings { init_ms: clock::boot_ms(), ..Default::default() };
    let early = mounts::make_root_pivotable().and_then(|()| mounts::early());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let boot = BootConfig::parse(&cmdline);
    let filter = boot.as_ref().ok().and_then(|b| b.log.clone()).unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if let Err(e) = early {
        fatal(&format!("early mounts: {e}"));
    }
    let boot = boot.unwrap_or_else(|e| fatal(&e.to_string()));
    let _ = nix::unistd::sethostname("skiff");
    // The kernel gives init 1024/4096 open files; containers expect Docker's 1048576.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1 << 20, 1 << 20);

    // The disk's driver first; the disk is then checked and mounted on its own thread while the
    // other modules load (each is a few tens of milliseconds of relocation work under TCG).
    let mut modules = modules::ModuleIndex::open_running().unwrap_or_else(|e| fatal(&e.to_string()));
    if let Err(e) = modules.load(modules::DISK) {
        fatal(&e.to_string());
    }
    // Virtualization.framework's only console is virtio's (`console=hvc0`), a module in this
    // kernel: loaded first there, and the agent's output moved onto it.
    if cmdline.split_whitespace().any(|w| w == "console=hvc0") {
        match modules.load(&["virtio_console"]) {
            Ok(()) => mounts::console_to("/dev/hvc0"),
            Err(e) => tracing::warn!(error = %e, "no virtio console: the agent's log goes nowhere"),
        }
    }
    let dev = boot.disk.clone().unwrap_or_else(|| "/dev/vda".into());
    let disk = std::thread::spawn(move || {
        let outcome = disk::prepare(Path::new(&dev));
        (dev, outcome, clock::boot_ms())
    });
    if let Err(e) = modules.load_parallel(modules::BOOT) {
        fatal(&e.to_string());
    }
    timings.modules_ms = clock::boot_ms();
    // A disk formatted just now has nothing to give back yet.
    let trim_at_boot = match disk.join() {
        Ok((dev, Ok(outcome), at)) => {
            tracing::info!(device = %dev, ?outcome, "data disk ready");
            timings.disk_ms = at;
            outcome != disk::Prepared::Formatted
        }
        Ok((_, Err(e), _)) => fatal(&e.to_string()),
        Err(_) => fatal("the data disk thread panicked"),
    };
    modules.release_loaded_files();
    release_boot_tools();
    // Container networking's modules load after the engine serves (off the boot's critical path);
    // the engine waits for them before it sets up its first bridge.
    let (net_modules_tx, net_modules_rx) = tokio::sync::watch::channel(None);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(&format!("starting the async runtime: {e}")));
    runtime.block_on(run(boot, timings, (modules, net_modules_tx, net_modules_rx), trim_at_boot))
}

/// The module index and the gate the engine waits on until the network modules are in.
type NetModules = (
    modules::ModuleIndex,
    tokio::sync::watch::Sender<Option<Result<(), String>>>,
    tokio::sync::watch::Receiver<Option<Result<(), String>>>,
);

async fn run(boot: BootConfig, mut timings: BootTimings, net_modules: NetModules, trim_at_boot: bool) -> ! {
    let (mut modules, net_modules_tx, net_modules_rx) = net_modules;
    if let Err(e) = crate::runtime::reaper::start() {
        fatal(&format!("starting the reaper: {e}"));
    }
    let power = power::PowerSwitch::default();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(None);
    let engine_cell = Arc::new(std::sync::OnceLock::new());
    let control = control::Control { ready: ready_rx, power: power.clone(), engine: engine_cell.clone() };
    if let Err(e) = control::listen(control.clone()) {
        fatal(&format!("binding the control port: {e}"));
    }
    control::dial_host(control, boot.host_control_port.unwrap_or(skiff_proto::CONTROL_PORT));
    let api = crate::transport::listen(skiff_proto::API_PORT)
        .unwrap_or_else(|e| fatal(&format!("binding the engine's vsock port: {e}")));
    power::watch_power_button(power.clone(), BUTTON_GRACE);

    if !boot.shares.is_empty() {
        if let Err(e) = shares::mount_all(&boot.shares) {
            tracing::error!(error = %e, "sharing host folders");
        }
    }
    // Rosetta before the emulators: then QEMU is not registered for amd64.
    if let Some(dir) = boot.rosetta.as_deref().and_then(shares::mount_rosetta) {
        crate::runtime::binfmt::register_rosetta(&dir);
    }
    // The network comes up while the engine opens its state.
    let insecure_registries = boot.insecure_registries.clone();
    let mut net = net_config(&boot);
    net.kernel_ready = Some(net_modules_rx);
    let network = tokio::spawn(async move {
        if let Err(e) = network::configure(&boot, Duration::from_secs(10)).await {
            // The engine is still useful offline (local images); say so loudly and go on.
            tracing::error!(error = %e, "the guest has no network");
        }
        clock::boot_ms()
    });

    let config = EngineConfig { root: ENGINE_ROOT.into(), insecure_registries, net, ..Default::default() };
    let engine = match Engine::open(config) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the engine's state on the data disk");
            power::power_off().await
        }
    };
    let _ = engine_cell.set(engine.clone());
    // Emulators for foreign-architecture images (the image carries them), before containers
    // restart (a few milliseconds).
    crate::runtime::binfmt::register_emulators();
    crate::engine::containers::recover(&engine).await;
    crate::engine::swarm::tasks::start(&engine);
    timings.network_ms = network.await.unwrap_or_default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::api::serve_on(engine.clone(), api, async {
        let _ = stop_rx.await;
    }));
    timings.engine_ms = clock::boot_ms();
    tracing::info!(?timings, "engine serving on vsock port {}", skiff_proto::API_PORT);
    ready_tx.send_replace(Some(timings));
    tokio::spawn(trim::run(disk::MOUNT_POINT.into(), trim_at_boot));
    tokio::task::spawn_blocking(move || {
        let loaded = modules.load_parallel(modules::NETWORK).map_err(|e| e.to_string());
        if let Err(e) = &loaded {
            tracing::error!(error = %e, "loading the container network's kernel modules");
        }
        if let Err(e) = modules.load(modules::RECLAIM) {
            tracing::warn!(error = %e, "no memory balloon: freed memory stays with the VM");
        }
        if let Err(e) = modules.load(modules::HOST_EVENTS) {
            tracing::warn!(error = %e, "host file changes will raise no events in containers");
        }
        modules.release_loaded_files();
        net_modules_tx.send_replace(Some(loaded));
    });

    let grace = power.requested().await;
    crate::engine::containers::stop_all_for_shutdown(&engine, grace).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    power::power_off().await
}

/// e2fsprogs and the libraries only it loads are needed before the data disk is mounted; the
/// initramfs's files live in RAM, so they are deleted. The agent's own libraries and the loader
/// stay: it executes itself again for every container it starts.
fn release_boot_tools() {
    for tool in ["/sbin/mke2fs", "/sbin/e2fsck", "/sbin/resize2fs", "/sbin/mkfs.ext4", "/sbin/fsck.ext4"] {
        let _ = std::fs::remove_file(tool);
    }
    for entry in std::fs::read_dir("/lib").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with("-linux-gnu") {
            for lib in ["libext2fs.so.2", "libcom_err.so.2", "libblkid.so.1", "libuuid.so.1", "libe2p.so.2"] {
                let _ = std::fs::remove_file(entry.path().join(lib));
            }
        }
    }
}

/// Logs why the guest cannot come up and powers off.
fn fatal(msg: &str) -> ! {
    tracing::error!("fatal: {msg}");
    eprintln!("skiff-agent: fatal: {msg}");
    disk::unmount();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    std::process::exit(1)
}

/// Networking in the VM: published ports are served by the host daemon (asked over vsock), and
/// `host.docker.internal` is the host as the user-mode network shows it.
fn net_config(boot: &BootConfig) -> crate::net::NetConfig {
    let publisher = match boot.host_ports_port.map(crate::net::tunnel::Tunnel::start) {
        Some(Ok(t)) => crate::net::ports::Publisher::Tunnel(t),
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot serve forwarded ports: containers' ports stay unpublished");
            crate::net::ports::Publisher::Local
        }
        None => crate::net::ports::Publisher::Local,
    };
    crate::net::NetConfig { publisher, host_gateway: boot.host, ..Default::default() }
}
