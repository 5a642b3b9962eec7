//! The container runtime: starts processes described by an OCI runtime spec (a bundle directory
//! with `config.json`) in new namespaces on an overlayfs root, and reaps them.
//!
//! The agent execs itself as `skiff-agent child BUNDLE` (single-threaded, so forking is safe); that
//! process sets the container up, reports the container's pid and exits. The agent is a child
//! subreaper, so it inherits and reaps the container: no shim process per container.

pub mod binfmt;
pub mod capabilities;
pub mod cgroup;
pub mod child;
pub mod devices;
pub mod pty;
pub mod ready;
pub mod reaper;
mod report;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
mod spawn;
pub mod syscall;
pub mod user;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What kind of failure stopped a container from starting (decides the exit code Docker shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The command does not exist (exit 127).
    NotFound,
    /// The command cannot be executed (exit 126).
    Permission,
    /// Anything else.
    Other,
}

/// Why a container could not start.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What failed, in words.
    pub message: String,
}

impl LaunchError {
    /// A failure of kind `Other`.
    pub fn other(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Other, message: message.into() }
    }

    /// A failed system call.
    pub fn sys(what: impl Into<String>, e: nix::errno::Errno) -> Self {
        Self::other(format!("{}: {}", what.into(), e.desc()))
    }
}

/// A container process that is running.
#[derive(Debug)]
pub struct Started {
    /// Its pid (in the agent's namespace).
    pub pid: i32,
    /// The controlling side of its terminal, when it has one.
    pub pty: Option<OwnedFd>,
    /// Settings that were adjusted (e.g. clamped rlimits).
    pub warnings: Vec<String>,
    /// Its root (`O_PATH`), which keeps its overlay mounted past its exit ([`report`]).
    pub root: Option<OwnedFd>,
}

/// Starts the runtime child of a container ahead of its bundle: it joins the container's cgroups
/// (`cgroup_procs`, see [`child`]) at once and then waits for [`Launch::go`]. Joining a cgroup can
/// wait for an RCU grace period (a v2 `cgroup.procs` without `favordynmods`: 5–20 ms), so the
/// child is born in the v2 cgroup where the kernel allows ([`spawn`]), and anything left overlaps
/// the engine's network setup instead of following it. With `terminal`, the container allocates a
/// pty and the given stdio is only init's own. Blocking: call from a blocking thread. The agent
/// must have started the [`reaper`] first.
pub fn prepare_start(
    bundle: &Path,
    cgroup_procs: &[String],
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    terminal: bool,
) -> Result<Launch, LaunchError> {
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::sys("pipe", e))?;
    let procs = cgroup_procs.join(":");
    let v2 = cgroup_procs.iter().map(Path::new).find(|f| f.ends_with("cgroup.procs")).and_then(Path::parent);
    let args = [std::ffi::OsStr::new("child"), bundle.as_os_str(), std::ffi::OsStr::new(&procs)];
    let mut launch = spawn::spawn(&args, [stdin, stdout, stderr], terminal, Some(go_r), v2)?;
    launch.go = Some(go_w);
    Ok(launch)
}

/// Starts an extra process in a running container (`docker exec`), described by the request file;
/// `cgroup` is the container's v2 cgroup, which the runtime child is born in where the kernel
/// allows.
pub fn exec(
    bundle: &Path,
    request: &Path,
    stdio: [OwnedFd; 3],
    terminal: bool,
    cgroup: Option<&Path>,
) -> Result<Started, LaunchError> {
    let args = [std::ffi::OsStr::new("exec-child"), bundle.as_os_str(), request.as_os_str()];
    spawn::spawn(&args, stdio, terminal, None, cgroup)?.finish()
}

/// A runtime child that has been started: [`Launch::go`] (its bundle is complete) then
/// [`Launch::release`] and [`Launch::finish`] (its network is wired), or [`Launch::abandon`] (the start failed before the
/// container's command ran). Dropped without either, its child exits on its own without running
/// anything.
#[derive(Debug)]
pub struct Launch {
    report: Option<OwnedFd>,
    console: Option<OwnedFd>,
    go: Option<OwnedFd>,
}

impl Launch {
    /// The bundle's `config.json` is written: the child creates the container and builds its
    /// root, then waits for [`Launch::release`]. Does not block.
    pub fn go(&self) {
        if let Some(go) = &self.go {
            // A child that already failed (joining a cgroup) has closed its end: its report says why.
            let _ = nix::unistd::write(go, &[1]);
        }
    }

    /// The container's network is wired: its command runs. Does not block; [`Launch::finish`]
    /// then waits for it.
    pub fn release(&mut self) {
        if let Some(go) = self.go.take() {
            // A container whose setup failed has closed its end: the report says why.
            let _ = nix::unistd::write(&go, &[1]);
        }
    }

    /// The start failed before the container's command ran: the child (and the container's PID 1,
    /// when [`Launch::go`] made it) exit without running anything. Returns once they have left the
    /// container's cgroups. Blocking.
    pub fn abandon(mut self) {
        self.go = None;
        if let Some(report) = self.report.take() {
            let mut rest = Vec::new();
            let _ = std::fs::File::from(report).read_to_end(&mut rest);
        }
    }

    /// Waits until the container's command runs (or failed to), after [`Launch::release`].
    /// Blocking.
    pub fn finish(mut self) -> Result<Started, LaunchError> {
        let console = self.console.take();
        let report = self.report.take().ok_or_else(|| LaunchError::other("the runtime child's report was read"))?;
        // The terminal arrives before the report: the container sends it just before execve.
        let pty = match &console {
            Some(sock) => match pty::receive(sock) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let (bytes, _) = report::receive(&report);
                    let report: Option<child::Report> = serde_json::from_slice(&bytes).ok();
                    return Err(report.and_then(|r| r.error).unwrap_or(e));
                }
            },
            None => None,
        };
        let (bytes, root) = report::receive(&report);
        let report: child::Report = serde_json::from_slice(&bytes).map_err(|_| {
            LaunchError::other(format!(
                "the runtime child failed without a report: {:?}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        match (report.pid, report.error) {
            (_, Some(e)) => Err(e),
            (Some(pid), None) => Ok(Started { pid, pty, warnings: report.warnings, root }),
            (None, None) => Err(LaunchError::other("the runtime child reported nothing")),
        }
    }
}
