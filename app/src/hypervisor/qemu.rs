//! The QEMU back end: `qemu-system-*` with the accelerator chosen by probing, controlled over
//! QMP (the `qapi` crate), vsock through the kernel's vhost-vsock or `vhost-device-vsock`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{Exit, Hypervisor, RunningVm, VmError, VmSpec};
use crate::accel::Accel;
use crate::arch::GuestArch;
use crate::vsock::Vsock;

/// The QEMU back end.
#[derive(Debug, Clone)]
pub struct Qemu {
    /// QEMU for the host's architecture (`SKIFF_QEMU` overrides it); another guest architecture's
    /// emulator is looked up when such a guest starts.
    qemu: PathBuf,
    vhost_device_vsock: PathBuf,
    virtiofsd: PathBuf,
}

/// Finds `name` in `$env_var`, then on `PATH`, then in `/usr/local/bin`.
fn find_program(name: &str, env_var: &str) -> Result<PathBuf, VmError> {
    if let Some(p) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            VmError::Missing(
                name.to_owned(),
                format!("install it (scripts/install-deps.sh does) or point {env_var} at it"),
            )
        })
}

impl Qemu {
    /// Locates QEMU for this host's architecture and the vsock helper.
    pub fn locate() -> Result<Self, VmError> {
        Ok(Self {
            qemu: find_program(GuestArch::host().qemu_system(), "SKIFF_QEMU")?,
            vhost_device_vsock: find_program("vhost-device-vsock", "SKIFF_VHOST_DEVICE_VSOCK")
                .unwrap_or_else(|_| PathBuf::from("vhost-device-vsock")),
            virtiofsd: find_program("virtiofsd", "SKIFF_VIRTIOFSD").unwrap_or_else(|_| PathBuf::from("virtiofsd")),
        })
    }

    /// The QEMU binary for `arch`.
    fn qemu_for(&self, arch: GuestArch) -> Result<PathBuf, VmError> {
        if arch.is_native() {
            return Ok(self.qemu.clone());
        }
        find_program(arch.qemu_system(), "SKIFF_QEMU_FOREIGN")
    }

    /// QEMU's arguments for `spec`, given how vsock is provided.
    pub fn arguments(spec: &VmSpec, vsock_device: &[String]) -> Vec<String> {
        let mem = spec.memory_mib;
        let path = |p: &Path| p.display().to_string();
        // TCG runs every vCPU on one thread. With a thread per vCPU (QEMU 7.2, Debian 12), a
        // vCPU now and then kept running code another vCPU had just rewritten: the guest
        // kernel patches its static keys with a transient int3 (text_poke_bp), the handler
        // finds the int3 gone and retries the instruction, and QEMU ran the stale translation
        // again, forever: a guest soft lockup with both vCPUs trapping at a site whose memory
        // already held the final instruction (seen about once per CI run of the VM tests).
        let accel = match spec.accel {
            Accel::Tcg => "tcg,thread=single".to_owned(),
            a => a.qemu_name().to_owned(),
        };
        let cpu = if spec.accel == Accel::Tcg { "max" } else { "host" };
        let mut args: Vec<String> = [
            "-name",
            "skiff",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-machine",
            spec.arch.qemu_machine(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "-accel".into(),
            accel,
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            spec.cpus.to_string(),
            "-m".into(),
            format!("{mem}M"),
            // vhost-user back ends map guest memory: it must be a shareable file.
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
            "-numa".into(),
            "node,memdev=mem".into(),
            "-kernel".into(),
            path(&spec.kernel),
            "-initrd".into(),
            path(&spec.initramfs),
            "-append".into(),
            spec.cmdline.clone(),
            "-serial".into(),
            format!("file:{}", path(&spec.console_log)),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", path(&spec.run_dir.join("qmp.sock"))),
            "-pidfile".into(),
            path(&spec.run_dir.join("qemu.pid")),
            "-drive".into(),
            format!("if=none,id=data,file={},format=raw,cache=writeback,discard=unmap,werror=stop", path(&spec.disk)),
            "-device".into(),
            "virtio-blk-pci,drive=data".into(),
            "-netdev".into(),
            "user,id=net0".into(),
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
            // Pages the guest frees are reported and dropped from the host's memory.
            "-device".into(),
            "virtio-balloon-pci,free-page-reporting=on,deflate-on-oom=on".into(),
        ]);
        args.extend(vsock_device.iter().cloned());
        args
    }
}

/// Makes the child die with the daemon (SIGTERM: QEMU then exits in an orderly way).
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// macOS has no parent-death signal: the daemon ends its children itself (`kill_on_drop` and its
/// shutdown path); a daemon killed with SIGKILL leaves them to `skiff start`'s cleanup of `run/`.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Starts a vhost-user back end (logging to `log`, dying with the daemon) and waits for its socket.
async fn spawn_helper(
    program: &Path,
    args: &[String],
    log: &std::fs::File,
    socket: &Path,
    hint: &str,
) -> Result<Child, VmError> {
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |source| VmError::Io { what: "qemu.log".into(), source };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log.try_clone().map_err(io)?)
        .kill_on_drop(true);
    // Its own process group: what it forks (virtiofsd's sandbox) is stopped with it.
    #[cfg(unix)]
    cmd.process_group(0);
    die_with_parent(&mut cmd);
    let mut child =
        cmd.spawn().map_err(|e| VmError::Missing(program.display().to_string(), format!("{e} ({hint})")))?;
    if let Err(e) = wait_for_listener(socket, Duration::from_secs(5), &mut child, &name).await {
        // With what it forked (virtiofsd's sandbox), gone before the error is told.
        stop_helpers(&mut vec![child]).await;
        return Err(e);
    }
    Ok(child)
}

/// Waits until `path` is a listening socket. Its file appears at `bind()`, a moment before
/// `listen()`: connecting in between is refused, which made QEMU (or our QMP client) fail a
/// start now and then on a loaded host.
async fn wait_for_listener(path: &Path, patience: Duration, child: &mut Child, what: &str) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + patience;
    while !is_listening(path) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::Failed(format!("{what} exited at start ({status}); see the daemon log")));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(VmError::Failed(format!("{what} did not listen on {} in time", path.display())));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Ends the helpers of a launch that failed (with what they forked: each leads its own process
/// group) and waits until they are gone.
async fn stop_helpers(helpers: &mut Vec<Child>) {
    for h in helpers.iter_mut() {
        if let Some(pid) = h.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), h.wait()).await;
    }
    helpers.clear();
}

/// The last lines of a log, joined, for an error message (empty when there is none).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Whether a Unix socket bound at `path` is listening, read from `/proc/net/unix` so that
/// checking does not take the one connection a vhost-user back end accepts. Where there is no
/// such table, the file's existence is all there is to go on.
fn is_listening(path: &Path) -> bool {
    match std::fs::read_to_string("/proc/net/unix") {
        Ok(table) => listening_in(&table, path),
        Err(_) => path.exists(),
    }
}

/// `__SO_ACCEPTCON` in the Flags column marks a listening socket.
fn listening_in(table: &str, path: &Path) -> bool {
    const ACCEPTING: u32 = 0x0001_0000;
    let wanted = path.to_string_lossy();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7..].join(" ") == wanted
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & ACCEPTING != 0)
    })
}

#[async_trait::async_trait]
impl Hypervisor for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    async fn launch(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, VmError> {
        let mut helpers = Vec::new();
        let launched = self.launch_with(spec, &mut helpers).await;
        if launched.is_err() {
            // A launch that failed leaves no helper running behind it, nor what they forked, and
            // they are gone before the next attempt (an accelerator fallback reuses their socket
            // paths).
            stop_helpers(&mut helpers).await;
        }
        launched
    }
}

impl Qemu {
    /// Starts the helpers (each put in `helpers` as soon as it runs, for the caller to stop if
    /// anything later fails), then QEMU, and connects to its QMP socket.
    async fn launch_with(&self, spec: &VmSpec, helpers: &mut Vec<Child>) -> Result<Box<dyn RunningVm>, VmError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| VmError::Io { what, source }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.run_dir.join("qemu.log"))
            .map_err(io("opening qemu.log"))?;
        let (vsock, vsock_args) = if kernel_vhost_vsock() {
            let cid = skiff_proto::GUEST_CID + std::process::id() % 100_000;
            (Vsock::Kernel(cid), vec!["-device".into(), format!("vhost-vsock-pci,guest-cid={cid}")])
        } else {
            let vhost = spec.run_dir.join("vhost-vsock.sock");
            let uds = spec.run_dir.join("vsock.sock");
            for stale in [&vhost, &uds] {
                let _ = std::fs::remove_file(stale);
            }
            let vsock_args = [
                "--guest-cid".to_owned(),
                skiff_proto::GUEST_CID.to_string(),
                "--socket".to_owned(),
                vhost.display().to_string(),
                "--uds-path".to_owned(),
                uds.display().to_string(),
                // The credit vhost-device-vsock grants each guest→host stream: the window every
                // published port and `docker` response flows through (bench/network.sh).
                "--tx-buffer-size".to_owned(),
                vsock_tx_buffer().to_string(),
            ];
            let hint = "there is no /dev/vhost-vsock, so Skiff needs vhost-device-vsock from crates.io";
            helpers.push(spawn_helper(&self.vhost_device_vsock, &vsock_args, &log, &vhost, hint).await?);
            let args = vec![
                "-chardev".into(),
                format!("socket,id=vsock0,path={}", vhost.display()),
                "-device".into(),
                "vhost-user-vsock-pci,chardev=vsock0".into(),
            ];
            (Vsock::Hybrid(uds), args)
        };
        let mut device_args = vsock_args;
        for (i, share) in spec.shares.iter().enumerate() {
            let socket = spec.run_dir.join(format!("virtiofs-{i}.sock"));
            let _ = std::fs::remove_file(&socket);
            let hint = format!("needed to share {}", share.path.display());
            helpers.push(
                spawn_helper(&self.virtiofsd, &virtiofsd_arguments(&share.path, &socket), &log, &socket, &hint).await?,
            );
            device_args.extend([
                "-chardev".into(),
                format!("socket,id=fs{i},path={}", socket.display()),
                "-device".into(),
                format!("vhost-user-fs-pci,chardev=fs{i},tag={}", share.tag),
            ]);
        }
        let qmp_path = spec.run_dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let qemu = self.qemu_for(spec.arch)?;
        let mut child = {
            let mut cmd = Command::new(&qemu);
            cmd.args(Self::arguments(spec, &device_args))
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("qemu.log"))?)
                .stderr(log)
                .kill_on_drop(true);
            die_with_parent(&mut cmd);
            tracing::info!(qemu = %qemu.display(), arch = %spec.arch, accel = spec.accel.qemu_name(), cpus = spec.cpus, memory_mib = spec.memory_mib, "launching QEMU");
            cmd.spawn().map_err(|e| VmError::Missing(qemu.display().to_string(), e.to_string()))?
        };
        let started = wait_for_listener(&qmp_path, Duration::from_secs(10), &mut child, "QEMU").await;
        if let Err(e) = started {
            // QEMU's own words go into the error.
            let said = log_tail(&spec.run_dir.join("qemu.log"));
            return Err(match e {
                VmError::Failed(m) if !said.is_empty() => VmError::Failed(format!("{m}: {said}")),
                other => other,
            });
        }
        let qmp = match connect_qmp(&qmp_path).await {
            Ok(qmp) => qmp,
            Err(e) => {
                // QEMU listens on QMP before it makes its devices: one that fails at that (seen
                // on a loaded host right after an accelerator fallback) closes the connection
                // as it exits. That is a QEMU that exited at start, with its words.
                let exited = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                // Gone before the next attempt: a QEMU that exits on its own unlinks its QMP
                // socket's path, which an accelerator fallback's QEMU has made again meanwhile.
                let _ = child.kill().await;
                return Err(match exited {
                    Ok(Ok(status)) => VmError::Failed(format!(
                        "QEMU exited at start ({status}) after {e}: {}",
                        log_tail(&spec.run_dir.join("qemu.log"))
                    )),
                    _ => e,
                });
            }
        };
        Ok(Box::new(QemuVm {
            vsock,
            qemu_pid: child.id().unwrap_or(0),
            helper_pids: helpers.iter().filter_map(Child::id).collect(),
            procs: Mutex::new(Procs { qemu: child, helpers: std::mem::take(helpers), exit: None }),
            qmp,
        }))
    }
}

/// The virtio-fs cache mode: `never` unless `SKIFF_VIRTIOFS_CACHE` asks for `metadata`, `auto` or
/// `always`. `never` makes a change on the host visible to the next read in the guest (`auto`
/// served stale data for about a second after a host write) at the price of one round trip to
/// virtiofsd per lookup, which makes small-file work slow (see bench/volumes.sh).
fn virtiofs_cache() -> &'static str {
    match std::env::var("SKIFF_VIRTIOFS_CACHE").as_deref() {
        Ok("metadata") => "metadata",
        Ok("auto") => "auto",
        Ok("always") => "always",
        Ok("never") | Err(_) => "never",
        Ok(other) => {
            tracing::warn!(mode = other, "unknown SKIFF_VIRTIOFS_CACHE; using never");
            "never"
        }
    }
}

/// virtiofsd for one share; `--allow-mmap` keeps shared mappings working without the page cache.
/// Run by a non-root user, the user namespace maps the guest's root to that user, so files
/// containers create belong to them.
fn virtiofsd_arguments(dir: &Path, socket: &Path) -> Vec<String> {
    let cache = virtiofs_cache();
    let mut args = vec![
        "--shared-dir".to_owned(),
        dir.display().to_string(),
        "--socket-path".to_owned(),
        socket.display().to_string(),
        "--sandbox".to_owned(),
        "namespace".to_owned(),
        "--cache".to_owned(),
        cache.to_owned(),
    ];
    if matches!(cache, "never" | "metadata") {
        args.push("--allow-mmap".to_owned());
    }
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    if uid != 0 {
        args.extend([format!("--uid-map=:0:{uid}:1:"), format!("--gid-map=:0:{gid}:1:")]);
    }
    args
}

fn kernel_vhost_vsock() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/vhost-vsock").is_ok()
}

type Qmp = qapi::futures::QapiService<qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<tokio::net::UnixStream>>>;

async fn connect_qmp(path: &Path) -> Result<Qmp, VmError> {
    let stream = qapi::futures::QmpStreamTokio::open_uds(path)
        .await
        .map_err(|source| VmError::Io { what: "connecting to QMP".into(), source })?;
    let stream = stream.negotiate().await.map_err(|source| VmError::Io { what: "QMP handshake".into(), source })?;
    let (service, _driver) = stream.spawn_tokio();
    Ok(service)
}

struct Procs {
    qemu: Child,
    /// vhost-device-vsock and one virtiofsd per share.
    helpers: Vec<Child>,
    exit: Option<Exit>,
}

/// A running QEMU and its helper.
struct QemuVm {
    vsock: Vsock,
    qemu_pid: u32,
    helper_pids: Vec<u32>,
    procs: Mutex<Procs>,
    qmp: Qmp,
}

#[async_trait::async_trait]
impl RunningVm for QemuVm {
    fn vsock(&self) -> Vsock {
        self.vsock.clone()
    }

    fn pids(&self) -> Vec<u32> {
        std::iter::once(self.qemu_pid).chain(self.helper_pids.iter().copied()).collect()
    }

    async fn power_button(&self) -> Result<(), VmError> {
        self.qmp
            .execute(qapi::qmp::system_powerdown {})
            .await
            .map(|_| ())
            .map_err(|e| VmError::Failed(format!("QMP system_powerdown: {e}")))
    }

    async fn paused_reason(&self) -> Option<String> {
        let status = self.qmp.execute(qapi::qmp::query_status {}).await.ok()?;
        match status.status {
            qapi::qmp::RunState::io_error => Some(
                "the VM is paused: a write to its data disk failed on the host (is the disk holding SKIFF_HOME \
                 full?)"
                    .into(),
            ),
            qapi::qmp::RunState::internal_error => Some("the VM is paused by an internal hypervisor error".into()),
            qapi::qmp::RunState::guest_panicked => Some("the guest kernel panicked".into()),
            _ => None,
        }
    }

    async fn resume(&self) -> Result<(), VmError> {
        self.qmp.execute(qapi::qmp::cont {}).await.map(|_| ()).map_err(|e| VmError::Failed(format!("QMP cont: {e}")))
    }

    async fn kill(&self) {
        let mut p = self.procs.lock().await;
        let _ = p.qemu.start_kill();
    }

    async fn wait(&self) -> Exit {
        loop {
            {
                let mut p = self.procs.lock().await;
                if let Some(exit) = &p.exit {
                    return exit.clone();
                }
                if let Ok(Some(status)) = p.qemu.try_wait() {
                    for h in p.helpers.iter_mut() {
                        let group = h.id().and_then(|id| i32::try_from(id).ok());
                        let _ = h.start_kill();
                        let _ = h.wait().await;
                        if let Some(group) = group {
                            stop_group(group).await;
                        }
                    }
                    let exit =
                        if status.success() { Exit::PoweredOff } else { Exit::Crashed(format!("QEMU {status}")) };
                    p.exit = Some(exit.clone());
                    return exit;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Kills what is left of a helper's process group and waits until it is gone (at most 5 s), so
/// nothing of the VM outlives the daemon.
#[cfg(unix)]
async fn stop_group(group: i32) {
    for _ in 0..100 {
        // SAFETY: kill(2) on a process group we created; no memory involved.
        if unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
            return; // ESRCH: the group is empty.
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(group, "a helper's processes did not exit");
}

/// Elsewhere a helper has no process group: waiting for the helper itself is all there is.
#[cfg(not(unix))]
async fn stop_group(_group: i32) {}

/// vhost-device-vsock's per-stream buffer (`SKIFF_VSOCK_TX_BUFFER`, bytes). 256 KiB: published-port
/// throughput went from 47 to 65 MiB/s over the 64 KiB default; 1 MiB wedges vhost-device-vsock
/// 0.3.0's streams (measured with bench/network.sh).
fn vsock_tx_buffer() -> u32 {
    std::env::var("SKIFF_VSOCK_TX_BUFFER").ok().and_then(|v| v.parse().ok()).unwrap_or(256 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listening_socket_counts_as_ready() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000034346ef6: 00000002 00000000 00010000 0001 01 1072 /run/a/qmp.sock\n\
            0000000034346ef7: 00000002 00000000 00000000 0001 01 1073 /run/b/qmp.sock\n";
        assert!(listening_in(table, Path::new("/run/a/qmp.sock")));
        assert!(!listening_in(table, Path::new("/run/b/qmp.sock")), "bound, not yet listening");
        assert!(!listening_in(table, Path::new("/run/c/qmp.sock")));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert!(is_listening(&path));
    }

    #[test]
    fn tcg_gets_multithreading_and_vhost_user_gets_shared_memory() {
        let spec = VmSpec {
            arch: GuestArch::Amd64,
            cpus: 2,
            memory_mib: 1024,
            accel: Accel::Tcg,
            kernel: "/k".into(),
            initramfs: "/i".into(),
            cmdline: "console=ttyS0".into(),
            disk: "/d.raw".into(),
            console_log: "/c.log".into(),
            run_dir: "/run/s".into(),
            shares: Vec::new(),
        };
        let args = Qemu::arguments(&spec, &["-device".into(), "x".into()]).join(" ");
        assert!(args.contains("-accel tcg,thread=single"), "{args}");
        assert!(args.contains("memory-backend-memfd,id=mem,size=1024M,share=on"), "{args}");
        assert!(args.contains("file=/d.raw,format=raw"), "{args}");
        assert!(args.ends_with("-device x"), "{args}");
        assert!(args.contains("-machine q35"), "{args}");
        let arm = Qemu::arguments(&VmSpec { arch: GuestArch::Arm64, ..spec }, &[]).join(" ");
        assert!(arm.contains("-machine virt,gic-version=max") && arm.contains("-cpu max"), "{arm}");
    }
}
