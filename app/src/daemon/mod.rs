//! The host daemon (`skiff daemon`, started by `skiff start`): owns the VM for its whole life.
//!
//! It holds `run/daemon.lock`, launches the hypervisor, waits for the agent over the control
//! channel, serves the user's Docker socket, answers `skiff status/stop` on its own socket and
//! watches the VM. It restarts nothing silently: when the VM dies the daemon says why (daemon
//! log, `run/daemon.error`) and exits, removing the Docker socket.

pub mod host_events;
pub mod host_memory;
pub mod rpc;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skiff_proto::boot::BootConfig;
use skiff_proto::control::{Request, Response};
use skiff_proto::jsonl::JsonLines;
use tokio::sync::{oneshot, Mutex};

use self::rpc::{DaemonRequest, DaemonResponse, State, Status};
use crate::accel::Accel;
use crate::config::VmConfig;
use crate::control::{host_time_nanos, ControlClient};
use crate::home::Home;
use crate::hypervisor::{Exit, RunningVm, Share, VmSpec};
use crate::vsock::HostListener;

/// How long the guest may take from launch to a ready engine (`SKIFF_BOOT_TIMEOUT` seconds
/// overrides it, for very slow hosts).
fn boot_timeout() -> Duration {
    let secs = std::env::var("SKIFF_BOOT_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(180);
    Duration::from_secs(secs)
}
/// After the clean-shutdown budget, how long the ACPI power button gets before a hard stop.
const BUTTON_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the guest clock is re-set (it drifts, and the host may have slept).
const TIME_SYNC_EVERY: Duration = Duration::from_secs(60);
/// How long a hardware-accelerated guest may take to open its control channel before the
/// accelerator counts as broken (a KVM boot takes about a second).
const ACCEL_WATCHDOG: Duration = Duration::from_secs(20);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("Skiff is already running for {0} (see `skiff status`)")]
    AlreadyRunning(String),
    #[error("{0}")]
    Setup(String),
    #[error("the VM did not become ready: {0}")]
    Boot(String),
    #[error("the VM stopped unexpectedly: {0}")]
    VmDied(String),
}

/// The host port this daemon's guest dials for the control channel (unique per daemon, so VMs
/// sharing the kernel's vhost-vsock do not collide).
fn host_control_port() -> u32 {
    20000 + std::process::id() % 40000
}

/// A stop request and the channel to answer it on.
type StopRequest = (Duration, oneshot::Sender<bool>);

struct Shared {
    status: Mutex<Status>,
    /// The data disk's file (its allocated size goes into each status answer).
    disk: std::path::PathBuf,
    stop: Mutex<Option<tokio::sync::mpsc::Sender<StopRequest>>>,
}

/// How often the agent is asked which host folders running containers bind-mount.
const WATCH_UPDATE_EVERY: Duration = Duration::from_secs(1);

/// Runs the daemon until the VM is stopped; records a fatal error for `skiff start` to show.
pub async fn run(home: Home, cfg: VmConfig) -> Result<(), DaemonError> {
    let lock = match lock(&home) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return Err(e);
        }
    };
    let result = run_inner(&home, cfg).await;
    clean_run_dir(&home);
    if let Err(e) = &result {
        tracing::error!("{e}");
        let _ = std::fs::write(home.run_dir().join("daemon.error"), e.to_string());
    }
    // The lock goes last: `skiff start` reads daemon.error as soon as it sees the lock free.
    drop(lock);
    result
}

fn lock(home: &Home) -> Result<std::fs::File, DaemonError> {
    let setup = |what: &str, e: std::io::Error| DaemonError::Setup(format!("{what}: {e}"));
    std::fs::create_dir_all(home.run_dir()).map_err(|e| setup("creating the run directory", e))?;
    std::fs::create_dir_all(home.log_dir()).map_err(|e| setup("creating the log directory", e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock_file())
        .map_err(|e| setup("opening the lock file", e))?;
    // SAFETY: flock on a descriptor we own; non-blocking.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(DaemonError::AlreadyRunning(home.root().display().to_string()));
    }
    Ok(file)
}

async fn run_inner(home: &Home, cfg: VmConfig) -> Result<(), DaemonError> {
    let started = Instant::now();
    // We hold the lock: any socket left in run/ belongs to a previous, dead daemon.
    clean_run_dir(home);
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<StopRequest>(4);
    let shared = Arc::new(Shared {
        status: Mutex::new(Status {
            state: State::Starting,
            daemon_pid: std::process::id(),
            hypervisor: "qemu".into(),
            arch: cfg.arch.name().into(),
            accel: None,
            accel_notice: None,
            cpus: cfg.cpus,
            memory_mib: cfg.memory_mib,
            disk_gib: cfg.disk_gib,
            shares: cfg.shares.iter().map(|p| p.display().to_string()).collect(),
            docker_socket: home.docker_socket().display().to_string(),
            vm_pids: Vec::new(),
            started_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            ready_ms: None,
            boot: None,
            guest: None,
            paused_reason: None,
            host_memory_bytes: None,
            disk_allocated_bytes: None,
        }),
        disk: home.disk(),
        stop: Mutex::new(Some(stop_tx)),
    });
    let rpc_listener = crate::forward::bind(&home.daemon_socket()).map_err(|e| DaemonError::Setup(e.to_string()))?;
    let rpc_task = tokio::spawn(serve_rpc(rpc_listener, shared.clone()));
    watch_signals(shared.clone());

    let exe = std::env::current_exe().map_err(|e| DaemonError::Setup(format!("finding the skiff binary: {e}")))?;
    let cache = home.accel_cache();
    let arch = cfg.arch;
    let decision = tokio::task::spawn_blocking(move || crate::accel::decide_for(arch, cfg.accel, &exe, &cache))
        .await
        .map_err(|e| DaemonError::Setup(e.to_string()))?
        .map_err(DaemonError::Setup)?;
    if let Some(notice) = &decision.notice {
        tracing::warn!("{notice}");
    }
    {
        let mut s = shared.status.lock().await;
        s.accel = Some(decision.accel);
        s.accel_notice = decision.notice.clone();
    }
    let image = crate::image::locate(cfg.arch).map_err(DaemonError::Setup)?;
    crate::disk::ensure(&home.disk(), cfg.disk_gib).map_err(|e| DaemonError::Setup(e.to_string()))?;
    rotate(&home.console_log());

    let shares: Vec<Share> = cfg
        .shares
        .iter()
        .filter(|p| p.is_dir())
        .enumerate()
        .map(|(i, p)| Share { tag: format!("skiff{i}"), path: p.clone() })
        .collect();
    let boot = BootConfig {
        ip: Some(([10, 0, 2, 15].into(), 24)),
        gateway: Some([10, 0, 2, 2].into()),
        dns: Some([10, 0, 2, 3].into()),
        host: Some([10, 0, 2, 2].into()),
        disk: Some("/dev/vda".into()),
        log: std::env::var("SKIFF_AGENT_LOG").ok(),
        host_control_port: Some(host_control_port()),
        host_ports_port: Some(host_control_port() + 1),
        shares: shares.iter().map(|s| (s.tag.clone(), s.path.display().to_string())).collect(),
        insecure_registries: cfg.insecure_registries.clone(),
        // Virtualization.framework's plan adds Rosetta's share and tag where it has one.
        rosetta: None,
    };
    let spec = VmSpec {
        arch: cfg.arch,
        cpus: cfg.cpus,
        memory_mib: cfg.memory_mib,
        accel: decision.accel,
        kernel: image.kernel,
        initramfs: image.initramfs,
        // No crypto self-tests at boot: under TCG they take seconds and can stall a starved vCPU.
        // Expedited RCU grace periods: making and tearing down a container's namespaces and
        // mounts waits for several, which otherwise take a few jiffies each.
        // Warnings reach the console log (loglevel=5), with every CPU's backtrace on a soft
        // lockup (how the stale-code loop of multi-threaded TCG was found: qemu.rs).
        cmdline: format!(
            "console={} quiet loglevel=5 softlockup_all_cpu_backtrace=1 panic=-1 cryptomgr.notests rcupdate.rcu_expedited=1 {}",
            cfg.arch.console(),
            boot.to_cmdline().join(" ")
        ),
        disk: home.disk(),
        console_log: home.console_log(),
        run_dir: home.run_dir(),
        shares,
    };
    let hypervisor = crate::hypervisor::for_this_host().map_err(|e| DaemonError::Setup(e.to_string()))?;
    shared.status.lock().await.hypervisor = hypervisor.name().into();
    let mut decision = decision;
    // A QEMU that dies the moment it starts, with nothing left to fall back to, gets one more try
    // (seen rarely on a loaded host with several VMs starting at once); the reason is logged.
    let mut retried = false;
    let (vm, mut control) = loop {
        let spec = VmSpec { accel: decision.accel, ..spec.clone() };
        let failed = match hypervisor.launch(&spec).await {
            Err(e) if decision.fallback_allowed => AttemptFailure::Launch(e.to_string()),
            Err(e) if !retried && e.to_string().contains("exited at start") => {
                tracing::warn!(error = %e, "the VM failed at launch; trying once more");
                retried = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(DaemonError::Setup(e.to_string())),
            Ok(vm) => {
                let vm: Arc<dyn RunningVm> = Arc::from(vm);
                shared.status.lock().await.vm_pids = vm.pids();
                // A hardware accelerator can pass every probe and still hang a real guest: watch it.
                let patience = if decision.accel == Accel::Tcg { boot_timeout() } else { ACCEL_WATCHDOG };
                // The agent dials the host once it is up (probing guest ports during boot can
                // wedge vhost-device-vsock); listen for that call.
                let listener = match HostListener::bind(&vm.vsock(), host_control_port()) {
                    Ok(l) => l,
                    Err(e) => {
                        let e = DaemonError::Setup(format!("listening for the guest: {e}"));
                        return fail(vm.as_ref(), home, e).await;
                    }
                };
                let dialed = async {
                    match tokio::time::timeout(patience, listener.accept()).await {
                        Ok(Ok(stream)) => Ok(ControlClient::from_stream(stream)),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("the guest did not call the host within {} s", patience.as_secs())),
                    }
                };
                let failed = tokio::select! {
                    connected = dialed => match connected {
                        Ok(control) => break (vm, control),
                        Err(_) if decision.fallback_allowed => AttemptFailure::Hang,
                        Err(e) => return fail(vm.as_ref(), home, DaemonError::Boot(format!("no control channel: {e}"))).await,
                    },
                    exit = vm.wait() => {
                        if !decision.fallback_allowed {
                            return Err(DaemonError::VmDied(describe_exit(&exit, home)));
                        }
                        AttemptFailure::Exited(describe_exit(&exit, home))
                    }
                };
                vm.kill().await;
                let _ = vm.wait().await;
                failed
            }
        };
        // Any failure of a hardware accelerator before the engine is up: say why, once, and boot
        // again with TCG (QEMU aborting at launch under nested KVM, a dead QMP socket, a hang).
        let why = failed.reason();
        crate::accel::record_kvm_failure(&home.accel_cache(), &why);
        decision = crate::accel::Decision::tcg_because(decision.accel, &why);
        tracing::warn!("{}", decision.notice.clone().unwrap_or_default());
        let mut s = shared.status.lock().await;
        s.accel = Some(decision.accel);
        s.accel_notice = decision.notice.clone();
        drop(s);
        rotate(&home.console_log());
    };
    let vsock = Arc::new(vm.vsock());
    // Published ports: the agent asks on this port once a container publishes one.
    let _ports = match HostListener::bind(&vsock, host_control_port() + 1) {
        Ok(l) => Some(crate::ports::serve(l, vsock.clone())),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve published ports: containers' ports stay unreachable from the host");
            None
        }
    };

    // The control channel answers `ready` once the engine serves.
    let ready = tokio::time::timeout(boot_timeout(), control.call(&Request::Ready));
    let timings = tokio::select! {
        r = ready => match r {
            Ok(Ok(Response::Ready { boot, agent_version, kernel })) => {
                tracing::info!(agent_version, kernel, ?boot, "engine ready");
                boot
            }
            Ok(Ok(other)) => return fail(vm.as_ref(), home, DaemonError::Boot(format!("unexpected answer {other:?}"))).await,
            Ok(Err(e)) => return fail(vm.as_ref(), home, DaemonError::Boot(e.to_string())).await,
            Err(_) => return fail(vm.as_ref(), home, DaemonError::Boot(format!("no answer within {} s", boot_timeout().as_secs()))).await,
        },
        exit = vm.wait() => return Err(DaemonError::VmDied(describe_exit(&exit, home))),
    };
    sync_time(&mut control).await;

    let docker = crate::forward::bind(&home.docker_socket()).map_err(|e| DaemonError::Setup(e.to_string()));
    let docker = match docker {
        Ok(l) => l,
        Err(e) => return fail(vm.as_ref(), home, e).await,
    };
    let forward = tokio::spawn(crate::forward::serve(docker, vsock.clone(), skiff_proto::API_PORT));
    {
        let mut s = shared.status.lock().await;
        s.state = State::Running;
        s.ready_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        s.boot = Some(timings);
    }
    tracing::info!(ready_ms = started.elapsed().as_millis(), socket = %home.docker_socket().display(), "Skiff is running");

    let mut health = tokio::time::interval(Duration::from_secs(2));
    let mut clock = tokio::time::interval(TIME_SYNC_EVERY);
    // File-change events for containers: the folders they bind-mount are watched here.
    let (batch_tx, mut batches) = tokio::sync::mpsc::channel(16);
    let mut host_watch = match host_events::HostWatcher::new() {
        Ok((w, changes)) => {
            tokio::spawn(host_events::gather(changes, batch_tx));
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch host folders: host edits raise no events in containers");
            None
        }
    };
    let mut watch_update = tokio::time::interval(WATCH_UPDATE_EVERY);
    let outcome = loop {
        tokio::select! {
            Some((grace, reply)) = stop_rx.recv() => {
                shared.status.lock().await.state = State::Stopping;
                forward.abort();
                let _ = std::fs::remove_file(home.docker_socket());
                let clean = shut_down(vm.as_ref(), &mut control, grace).await;
                let _ = reply.send(clean);
                break Ok(());
            }
            exit = vm.wait() => {
                break Err(DaemonError::VmDied(describe_exit(&exit, home)));
            }
            _ = health.tick() => {
                check_health(vm.as_ref(), &shared, home).await;
                if let Ok(Ok(Response::Stats(stats))) =
                    tokio::time::timeout(Duration::from_secs(2), control.call(&Request::Stats)).await
                {
                    shared.status.lock().await.guest = Some(stats);
                }
            }
            _ = clock.tick() => sync_time(&mut control).await,
            _ = watch_update.tick(), if host_watch.is_some() => {
                if let Ok(Ok(Response::Watched { paths })) =
                    tokio::time::timeout(Duration::from_secs(2), control.call(&Request::Watched)).await
                {
                    if let Some(w) = host_watch.as_mut() {
                        w.set(&paths);
                    }
                }
            }
            Some(events) = batches.recv() => {
                let n = events.len();
                match tokio::time::timeout(Duration::from_secs(5), control.call(&Request::FsEvents { events })).await {
                    Ok(Ok(Response::FsEventsRaised { raised })) => tracing::debug!(n, raised, "host changes raised in the guest"),
                    other => tracing::warn!(n, answer = ?other, "host changes not raised in the guest"),
                }
            }
        }
    };
    forward.abort();
    let _ = std::fs::remove_file(home.docker_socket());
    // Let the stop request's answer go out before the socket disappears.
    tokio::time::sleep(Duration::from_millis(50)).await;
    rpc_task.abort();
    outcome
}

/// A boot that went wrong: end the VM and say why.
async fn fail(vm: &dyn RunningVm, home: &Home, e: DaemonError) -> Result<(), DaemonError> {
    vm.kill().await;
    let _ = vm.wait().await;
    let tail = console_tail(home, 15);
    Err(match e {
        DaemonError::Boot(msg) if !tail.is_empty() => DaemonError::Boot(format!("{msg}\nlast console lines:\n{tail}")),
        other => other,
    })
}

/// How a boot with a hardware accelerator failed before the engine was up.
#[derive(Debug, PartialEq, Eq)]
enum AttemptFailure {
    /// The hypervisor could not be launched (QEMU aborted, its QMP socket reset).
    Launch(String),
    /// The guest never called the host.
    Hang,
    /// The VM process ended during boot.
    Exited(String),
}

impl AttemptFailure {
    /// The clause after "KVM …" in the fallback notice.
    fn reason(&self) -> String {
        let first_line = |s: &str| s.lines().next().unwrap_or_default().to_owned();
        match self {
            Self::Launch(e) => format!("failed at launch: {}", first_line(e)),
            Self::Hang => format!("hangs: the guest did not start within {} s", ACCEL_WATCHDOG.as_secs()),
            Self::Exited(how) => format!("failed during boot: {}", first_line(how)),
        }
    }
}

fn describe_exit(exit: &Exit, home: &Home) -> String {
    let what = match exit {
        Exit::PoweredOff => "the guest powered off on its own".to_owned(),
        Exit::Crashed(how) => format!("the VM process ended ({how})"),
    };
    let tail = console_tail(home, 15);
    if tail.is_empty() {
        what
    } else {
        format!("{what}; last console lines:\n{tail}")
    }
}

/// The last `n` lines of the guest console.
pub fn console_tail(home: &Home, n: usize) -> String {
    let text = std::fs::read(home.console_log()).unwrap_or_default();
    // Drop terminal escapes (SeaBIOS clears the screen) and other control characters.
    let text: String = String::from_utf8_lossy(&text)
        .split('\x1b')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.trim_start_matches(|c: char| !c.is_ascii_alphabetic()).get(1..).unwrap_or("")
            }
        })
        .collect::<String>()
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Clean shutdown through the agent, then the ACPI button, then a hard stop. True if clean.
async fn shut_down(vm: &dyn RunningVm, control: &mut ControlClient, grace: Duration) -> bool {
    tracing::info!(grace_secs = grace.as_secs(), "stopping the VM");
    if let Some(reason) = vm.paused_reason().await {
        // A paused guest cannot shut itself down: say why and stop it hard.
        tracing::warn!("{reason}; stopping it hard");
        vm.kill().await;
        let _ = vm.wait().await;
        return false;
    }
    let secs = u32::try_from(grace.as_secs()).unwrap_or(u32::MAX);
    let asked =
        tokio::time::timeout(Duration::from_secs(5), control.call(&Request::Shutdown { timeout_secs: secs })).await;
    if matches!(asked, Ok(Ok(Response::ShuttingDown))) {
        if let Some(exit) = vm.wait_timeout(grace + Duration::from_secs(20)).await {
            tracing::info!(?exit, "the VM powered off");
            return exit == Exit::PoweredOff;
        }
        tracing::warn!("the agent did not power off in time; pressing the ACPI power button");
    } else {
        tracing::warn!(answer = ?asked, "the agent did not take the shutdown request; pressing the ACPI power button");
    }
    if vm.power_button().await.is_ok() {
        if let Some(exit) = vm.wait_timeout(grace + BUTTON_TIMEOUT).await {
            return exit == Exit::PoweredOff;
        }
    }
    tracing::warn!("the VM ignored the power button; stopping it hard");
    vm.kill().await;
    let _ = vm.wait().await;
    false
}

async fn sync_time(control: &mut ControlClient) {
    match tokio::time::timeout(
        Duration::from_secs(5),
        control.call(&Request::SetTime { unix_nanos: host_time_nanos() }),
    )
    .await
    {
        Ok(Ok(Response::TimeSet { offset_ms })) if offset_ms.abs() > 1000 => {
            tracing::info!(offset_ms, "guest clock corrected")
        }
        Ok(Ok(Response::TimeSet { .. })) => {}
        other => tracing::warn!(answer = ?other, "could not set the guest clock"),
    }
}

/// Notices a VM paused by the hypervisor (e.g. the host disk filled up), reports it and resumes
/// once there is room again.
async fn check_health(vm: &dyn RunningVm, shared: &Shared, home: &Home) {
    let reason = vm.paused_reason().await;
    let mut s = shared.status.lock().await;
    match (&reason, s.state) {
        (Some(r), State::Running) => {
            tracing::error!("{r}");
            s.state = State::Paused;
        }
        (Some(_), State::Paused)
            if crate::disk::free_bytes(home.root()).is_some_and(|free| free > crate::disk::MIN_FREE) =>
        {
            tracing::info!("space is available again on the host; resuming the VM");
            if vm.resume().await.is_ok() {
                s.state = State::Running;
            }
        }
        (None, State::Paused) => s.state = State::Running,
        _ => {}
    }
    s.paused_reason = reason;
}

fn watch_signals(shared: Arc<Shared>) {
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal: stopping the VM");
        if let Some(tx) = shared.stop.lock().await.clone() {
            let (reply, _) = oneshot::channel();
            let _ = tx.send((Duration::from_secs(10), reply)).await;
        }
    });
}

async fn serve_rpc(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut channel = JsonLines::new(stream);
            while let Some(request) = channel.next::<DaemonRequest>().await {
                let response = match request {
                    Ok(DaemonRequest::Status) => {
                        let mut status = shared.status.lock().await.clone();
                        status.host_memory_bytes = host_memory::memory_bytes(&status.vm_pids);
                        status.disk_allocated_bytes = crate::disk::allocated_bytes(&shared.disk);
                        DaemonResponse::Status(Box::new(status))
                    }
                    Ok(DaemonRequest::Stop { timeout_secs }) => {
                        let (reply, answer) = oneshot::channel();
                        let tx = shared.stop.lock().await.clone();
                        match tx {
                            Some(tx)
                                if tx.send((Duration::from_secs(u64::from(timeout_secs)), reply)).await.is_ok() =>
                            {
                                DaemonResponse::Stopped { clean: answer.await.unwrap_or(false) }
                            }
                            _ => DaemonResponse::Error { message: "the daemon is already stopping".into() },
                        }
                    }
                    Err(e) => DaemonResponse::Error { message: format!("bad request: {e}") },
                };
                if channel.send(&response).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Removes the sockets and pid files of a daemon's life (keeping the lock, the accelerator
/// verdict, the hypervisor log and the last error).
fn clean_run_dir(home: &Home) {
    let keep = ["daemon.lock", "accel.json", "qemu.log", "daemon.error"];
    for entry in std::fs::read_dir(home.run_dir()).into_iter().flatten().flatten() {
        if !keep.iter().any(|k| entry.file_name() == *k) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Keeps the previous boot's console as `console.log.1`.
fn rotate(log: &std::path::Path) {
    if log.exists() {
        let _ = std::fs::rename(log, log.with_extension("log.1"));
    }
}
