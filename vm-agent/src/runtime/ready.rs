//! A runtime child made ahead: the sealed agent exec'd as `skiff-agent ready`, waiting on a
//! socket for its job. Exec'ing the agent and its start-up (loading, relocating, the Rust
//! runtime) otherwise take 2–4 ms of every container start and `docker exec`, on their critical
//! path.
//!
//! The job is the runtime child's arguments (`child …` or `exec-child …`) and its descriptors
//! (passed with `SCM_RIGHTS`), each with the number it goes on. Then the ready child is that
//! runtime child. It was made in the agent's own cgroups: the runtime child joins v1
//! hierarchies by thread and makes the container's process in its v2 cgroup at the fork
//! (`child.rs`), so no process moves between v2 cgroups.
//!
//! At most one is held. It is made after a start or exec that took one ([`refill`]), not
//! during it (exec'ing it takes a CPU). An engine that starts nothing holds none; a ready
//! child whose engine is gone sees its socket close and exits.

use std::ffi::OsStr;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned};
use nix::sys::socket::{MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::{child, reaper, sealed_exe, spawn, LaunchError};

/// The descriptor a ready child waits for its job on (its stdin, until the job's stdin replaces
/// it).
const CONTROL_FD: RawFd = 0;
/// At most this many descriptors travel with a job (stdio, report, console, go).
const MAX_FDS: usize = 8;
/// A ready child with no job for this long exits: an engine left idle holds none. The next
/// start or exec finds it gone and makes its runtime child itself.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a ready child is told to be.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    /// The runtime child's arguments (after the program name).
    args: Vec<String>,
    /// The number each passed descriptor goes on, in the order they were passed.
    targets: Vec<RawFd>,
}

/// A ready child: our end of its socket. The reaper collects its exit silently (told when it
/// was made): as a runtime child, its report is read, not its status; one that never gets its
/// job exits as its socket closes, or on its own after [`IDLE`].
#[derive(Debug)]
pub(super) struct Ready {
    control: OwnedFd,
}

static READY: Mutex<Option<Ready>> = Mutex::new(None);
static FILLING: AtomicBool = AtomicBool::new(false);
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The ready child, if one is held (the caller hands it its job or makes a runtime child itself).
pub(super) fn take() -> Option<Ready> {
    TAKEN.store(true, Ordering::SeqCst);
    READY.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// After a start or exec: makes the next ready child on a thread of its own, unless one is
/// being made or nothing was taken since the last.
pub fn refill() {
    if !TAKEN.swap(false, Ordering::SeqCst) || FILLING.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new().name("runtime-ready".into()).spawn(|| {
        // Made only with CPU time nobody else wants (the ready child inherits the policy and
        // drops it when it gets its job): right after a start, the container runs and exits.
        let idle = set_policy(libc::SCHED_IDLE);
        let made = make();
        if idle && !set_policy(libc::SCHED_OTHER) {
            // Where leaving SCHED_IDLE is not allowed (no CAP_SYS_NICE, RLIMIT_NICE 0), the ready
            // child could not either: none is kept (it exits as its socket closes), and FILLING
            // stays set, so none is made again.
            tracing::debug!("cannot leave SCHED_IDLE: no runtime child is made ahead");
            drop(made);
            return;
        }
        match made {
            Ok(ready) => {
                let old = READY.lock().unwrap_or_else(|p| p.into_inner()).replace(ready);
                // Another one made meanwhile (it cannot be, with FILLING): let it go.
                drop(old);
            }
            Err(e) => tracing::debug!(error = %e, "making a runtime child ahead"),
        }
        FILLING.store(false, Ordering::SeqCst);
    });
    if spawned.is_err() {
        FILLING.store(false, Ordering::SeqCst);
    }
}

/// Made with posix_spawn (vfork): nothing but descriptors 0–2 to place, so no copy of the
/// engine's page tables is made (a fork holds the engine's memory map lock while it copies).
fn make() -> Result<Ready, LaunchError> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| LaunchError::sys("socketpair", e))?;
    let child = std::process::Command::new(sealed_exe::exec_path()?)
        .arg0("skiff-agent")
        .arg("ready")
        .env_clear()
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| LaunchError::other(format!("starting a runtime child ahead: {e}")))?;
    let pid = i32::try_from(child.id()).map_err(|_| LaunchError::other("pid out of range"))?;
    reaper::forget(pid);
    Ok(Ready { control: ours })
}

impl Ready {
    /// Hands the job: the runtime child `args` with each descriptor of `placed` on its number.
    pub(super) fn hand(self, args: &[&OsStr], placed: &[(RawFd, RawFd)]) -> Result<(), LaunchError> {
        let job = Job {
            args: args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            targets: placed.iter().map(|(_, target)| *target).collect(),
        };
        let payload = serde_json::to_vec(&job).map_err(|e| LaunchError::other(e.to_string()))?;
        let fds: Vec<RawFd> = placed.iter().map(|(fd, _)| *fd).collect();
        let sent = sendmsg::<()>(
            self.control.as_raw_fd(),
            &[IoSlice::new(&payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(n) if n == payload.len() => Ok(()),
            // It is gone, or will not start: it exits when its socket closes, unreported.
            Ok(_) | Err(_) => Err(LaunchError::other("the runtime child made ahead did not take its job")),
        }
    }
}

/// Entry point of `skiff-agent ready`: waits for the job, puts its descriptors in place and
/// becomes that runtime child. Never returns; exits quietly when the engine goes first.
pub fn main() -> ! {
    let (job, fds) = match receive(CONTROL_FD) {
        Some(j) => j,
        None => std::process::exit(0),
    };
    // Made at idle priority: the container's processes must not inherit it.
    if fds.len() != job.targets.len() || job.args.len() != 3 || !set_policy(libc::SCHED_OTHER) {
        std::process::exit(125);
    }
    let placed: Vec<(RawFd, RawFd)> = fds.iter().map(|f| f.as_raw_fd()).zip(job.targets.iter().copied()).collect();
    let mut parked = vec![0; placed.len()];
    if spawn::place_descriptors(&placed, &mut parked).is_err() {
        std::process::exit(125);
    }
    for fd in parked {
        // SAFETY: the parked copies were made by place_descriptors for this process alone.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // The socket on CONTROL_FD was replaced there by the job's stdin.
    for fd in fds {
        // A received descriptor on a target's number was replaced there by dup2: not ours to close.
        if job.targets.contains(&fd.as_raw_fd()) {
            std::mem::forget(fd);
        }
    }
    match job.args[0].as_str() {
        "child" => child::main(Path::new(&job.args[1]), &job.args[2]),
        "exec-child" => child::exec_main(Path::new(&job.args[1]), Path::new(&job.args[2])),
        _ => std::process::exit(125),
    }
}

/// The job on `control` and its descriptors (close-on-exec until placed), or `None` when the
/// engine closed the socket or sent something else.
fn receive(control: RawFd) -> Option<(Job, Vec<OwnedFd>)> {
    wait_readable(control, IDLE)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(control, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(received) = c {
            // SAFETY: descriptors the kernel just installed in this process for this message.
            fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let len = msg.bytes;
    if len == 0 {
        return None;
    }
    let job = serde_json::from_slice(&buf[..len]).ok()?;
    Some((job, fds))
}

/// Waits until `fd` is readable (a job, or the engine's end closed); `None` after `limit`.
fn wait_readable(fd: RawFd, limit: std::time::Duration) -> Option<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: `fd` stays open for this call (the caller's control socket).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(limit).ok()?;
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return None,
            Ok(_) => return Some(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Sets the calling thread's scheduling policy (priority 0); whether the kernel took it.
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_job_arrives_with_its_arguments_targets_and_working_descriptors() {
        let (ours, theirs) = pair();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| panic!("{e}"));
        let ready = Ready { control: ours };
        let args = [OsStr::new("child"), OsStr::new("/bundle"), OsStr::new("/cg/tasks")];
        ready.hand(&args, &[(w.as_raw_fd(), 1), (r.as_raw_fd(), 5)]).unwrap_or_else(|e| panic!("{e}"));
        drop((r, w));
        let (job, fds) = receive(theirs.as_raw_fd()).unwrap_or_else(|| panic!("no job"));
        assert_eq!(job.args, ["child", "/bundle", "/cg/tasks"]);
        assert_eq!(job.targets, [1, 5]);
        // The descriptors are the very pipe, in the order of their targets.
        let mut fds = fds.into_iter();
        let (w, r) =
            (fds.next().unwrap_or_else(|| panic!("no writer")), fds.next().unwrap_or_else(|| panic!("no reader")));
        std::fs::File::from(w).write_all(b"through").unwrap_or_else(|e| panic!("{e}"));
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, "through");
    }

    #[test]
    fn a_ready_child_with_no_job_stops_waiting_after_its_idle_time() {
        let (ours, theirs) = pair();
        assert_eq!(wait_readable(theirs.as_raw_fd(), std::time::Duration::from_millis(20)), None);
        nix::sys::socket::send(ours.as_raw_fd(), b"x", MsgFlags::empty()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wait_readable(theirs.as_raw_fd(), std::time::Duration::from_millis(20)), Some(()));
    }

    #[test]
    fn a_closed_socket_or_a_malformed_job_is_no_job() {
        let (ours, theirs) = pair();
        drop(ours);
        assert!(receive(theirs.as_raw_fd()).is_none());
        let (ours, theirs) = pair();
        nix::sys::socket::send(ours.as_raw_fd(), b"{not json", MsgFlags::empty()).unwrap_or_else(|e| panic!("{e}"));
        assert!(receive(theirs.as_raw_fd()).is_none());
    }
}
