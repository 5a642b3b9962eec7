//! Starting a runtime child: the sealed agent exec'd as `child` or `exec-child`, with its stdio
//! and the descriptors it expects, born in the container's v2 cgroup where the kernel allows.
//!
//! Moving a process into a cgroup (writing `cgroup.procs`) takes the kernel's global threadgroup
//! lock, which waits for an RCU grace period unless the hierarchy is mounted with `favordynmods`
//! (5–20 ms per container start on hosts without it). A process made by
//! `clone3(CLONE_INTO_CGROUP)` is born in the cgroup and never moves. Kernels before 5.7, or a
//! refused `clone3`, get a plain fork + exec, and the child then joins by writing `cgroup.procs`.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{child, pty, ready, reaper, sealed_exe, Launch, LaunchError};

/// `struct clone_args` of `linux/sched.h`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The child's handled signals go back to their defaults at once (Linux 5.5).
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
/// The child is made in the cgroup whose directory `CloneArgs::cgroup` refers to (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Lowest descriptor number the child parks its descriptors on before placing them.
const PARKING: RawFd = 64;

/// Execs the sealed agent as a runtime child: stdio, the report channel on fd 3, the console
/// socket (with a terminal) on [`pty::CONSOLE_SOCKET_FD`] and the go pipe on [`child::GO_FD`].
/// With `cgroup` (a v2 cgroup's directory) the child is born in it when the kernel allows.
pub(super) fn spawn(
    args: &[&OsStr],
    stdio: [OwnedFd; 3],
    terminal: bool,
    go: Option<OwnedFd>,
    cgroup: Option<&Path>,
) -> Result<Launch, LaunchError> {
    let (report_r, report_w) = super::report::channel().map_err(|e| LaunchError::sys("socketpair", e))?;
    let console = if terminal {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        Some(
            socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| LaunchError::sys("socketpair", e))?,
        )
    } else {
        None
    };
    let mut placed: Vec<(RawFd, RawFd)> = stdio.iter().zip(0..).map(|(fd, n)| (fd.as_raw_fd(), n)).collect();
    placed.push((report_w.as_raw_fd(), 3));
    if let Some((_, theirs)) = &console {
        placed.push((theirs.as_raw_fd(), pty::CONSOLE_SOCKET_FD));
    }
    if let Some(go) = &go {
        placed.push((go.as_raw_fd(), child::GO_FD));
    }
    let handed = ready::take().is_some_and(|r| match r.hand(args, &placed) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "handing a job to the ready child");
            false
        }
    });
    if !handed {
        // The reaper collects a runtime child's exit silently (the launch reads its report, not
        // its status): told so before it can exit, and once (a ready child was told when made).
        reaper::forget(start_process(args, &placed, cgroup)?);
    }
    drop((stdio, report_w, go));
    let console = console.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    Ok(Launch { report: Some(report_r), console, go: None })
}

/// Execs the sealed agent with `args`, each descriptor of `placed` on its number; born in the v2
/// cgroup `cgroup` where the kernel allows. Returns its pid.
fn start_process(args: &[&OsStr], placed: &[(RawFd, RawFd)], cgroup: Option<&Path>) -> Result<i32, LaunchError> {
    // Never the binary on disk: what enters a container runs from a sealed in-memory copy.
    let exe = sealed_exe::exec_path()?;
    let mut argv = vec![OsStr::new("skiff-agent")];
    argv.extend_from_slice(args);
    let born = match cgroup {
        Some(dir) => into_cgroup(&exe, &argv, placed, dir)?,
        None => None,
    };
    match born {
        Some(pid) => Ok(pid),
        None => fork_exec(&exe, &argv, placed),
    }
}

/// fork + exec through `std::process::Command`; `placed` are (descriptor, number in the child).
fn fork_exec(exe: &Path, argv: &[&OsStr], placed: &[(RawFd, RawFd)]) -> Result<i32, LaunchError> {
    let mut cmd = Command::new(exe);
    cmd.arg0(argv[0]).args(&argv[1..]).stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    cmd.env_clear();
    let placed = placed.to_vec();
    // SAFETY: only async-signal-safe calls (fcntl, dup2) run between fork and exec.
    unsafe { cmd.pre_exec(move || place_descriptors(&placed, &mut [0; 8]).map_err(std::io::Error::from_raw_os_error)) };
    let child = cmd.spawn().map_err(|e| LaunchError::other(format!("starting the runtime child: {e}")))?;
    Ok(i32::try_from(child.id()).unwrap_or(0))
}

/// In a child between fork and exec: puts each descriptor on its number, by way of a parked
/// copy (close-on-exec) so that no placement overwrites a descriptor still to be placed.
/// `parked` has room for every entry of `placed`. Async-signal-safe; returns the errno.
pub(super) fn place_descriptors(placed: &[(RawFd, RawFd)], parked: &mut [RawFd]) -> Result<(), i32> {
    if parked.len() < placed.len() {
        return Err(libc::EINVAL);
    }
    for (slot, &(fd, _)) in parked.iter_mut().zip(placed) {
        // SAFETY: fcntl on a descriptor this process holds, integer arguments.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, PARKING) };
        if *slot < 0 {
            return Err(errno());
        }
    }
    for (&copy, &(_, target)) in parked.iter().zip(placed) {
        // SAFETY: dup2 between descriptor numbers; the copy stays close-on-exec, the target not.
        if unsafe { libc::dup2(copy, target) } < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// clone3(CLONE_INTO_CGROUP) + exec. `Ok(None)`: the kernel made no child this way (too old, or
/// it refused), so the caller falls back to [`fork_exec`] and the child joins the cgroup itself.
fn into_cgroup(exe: &Path, argv: &[&OsStr], placed: &[(RawFd, RawFd)], dir: &Path) -> Result<Option<i32>, LaunchError> {
    let Ok(cgroup) = std::fs::File::open(dir) else { return Ok(None) };
    let c_string = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| LaunchError::other("NUL in an argument"));
    let c_exe = c_string(exe.as_os_str())?;
    let c_argv = argv.iter().map(|a| c_string(a)).collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut parked = vec![0; placed.len()];
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::sys("pipe", e))?;
    // SAFETY: the child runs only async-signal-safe calls (`in_child`) on memory prepared above,
    // then execs or exits.
    let ret = unsafe { fork_into(&cgroup, CLONE_CLEAR_SIGHAND) };
    if ret == Ok(0) {
        in_child(&c_exe, &argv_ptrs, &envp, placed, &mut parked, err_w.as_raw_fd());
    }
    drop(err_w);
    let pid = match ret {
        Ok(pid) => pid,
        Err(e) => {
            tracing::debug!(error = %e, "clone3(CLONE_INTO_CGROUP) refused: fork + exec");
            return Ok(None);
        }
    };
    // The pipe closes on exec (nothing read), or carries the errno of what failed first.
    let mut code = [0u8; 4];
    let mut report = std::fs::File::from(err_r);
    match report.read(&mut code) {
        Ok(0) => Ok(Some(pid)),
        _ => {
            reaper::forget(pid);
            let e = std::io::Error::from_raw_os_error(i32::from_ne_bytes(code));
            Err(LaunchError::other(format!("starting the runtime child: {e}")))
        }
    }
}

/// fork(2) with the child made in the v2 cgroup whose directory `cgroup` is (clone3 with
/// `CLONE_INTO_CGROUP` and the extra `flags`): returns 0 in the child and its pid in the parent,
/// or why the kernel made no child (older than 5.7, or a seccomp profile that refuses clone3).
///
/// # Safety
/// As with fork in a process that may have other threads: the child may only make
/// async-signal-safe calls until it execs, unless this process is single-threaded. Unlike
/// glibc's fork, it leaves glibc's cached thread id of the child's one thread at the parent's:
/// the child must not signal its own thread (`raise`, `pthread_kill`).
pub(super) unsafe fn fork_into(cgroup: &impl AsRawFd, flags: u64) -> Result<i32, nix::errno::Errno> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup.as_raw_fd()).map_err(|_| nix::errno::Errno::EBADF)?,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with a valid, fully initialised clone_args of the size given and no
    // CLONE_VM: the child gets a copy of this address space, as with fork (the caller's contract
    // covers what it may do there).
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if ret < 0 {
        return Err(nix::errno::Errno::last());
    }
    i32::try_from(ret).map_err(|_| nix::errno::Errno::EOVERFLOW)
}

/// The child of [`into_cgroup`]: places its descriptors, restores SIGPIPE's default and an
/// empty signal mask (the agent's are not a container's), execs; on failure sends the errno and
/// exits. Async-signal-safe only: no allocation, no lock.
fn in_child(
    exe: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    placed: &[(RawFd, RawFd)],
    parked: &mut [RawFd],
    err_w: RawFd,
) -> ! {
    let code = match place_descriptors(placed, parked) {
        Err(code) => code,
        Ok(()) => {
            // SAFETY: signal disposition and mask changes in this single-threaded child; execve
            // with NUL-terminated strings and null-terminated pointer arrays that outlive it.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            errno()
        }
    };
    let bytes = code.to_ne_bytes();
    // SAFETY: write to the error pipe, then _exit, which runs no handler of the parent's.
    unsafe {
        libc::write(err_w, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn clone_args_has_the_kernels_version_2_layout() {
        // CLONE_ARGS_SIZE_VER2: the kernel rejects any other size it does not know.
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    #[test]
    fn descriptors_are_placed_even_when_a_target_is_another_source() {
        // Run in a forked child: it rearranges its own descriptor table.
        let (a_r, a_w) = pipe();
        let (b_r, b_w) = pipe();
        let (a, b) = (a_w.as_raw_fd(), b_w.as_raw_fd());
        // a goes onto b's number and b onto a's: a naive dup2 order would lose one of them.
        // SAFETY: the child only rearranges descriptors, writes and exits.
        match unsafe { libc::fork() } {
            0 => {
                let ok = place_descriptors(&[(a, b), (b, a)], &mut [0; 2]).is_ok();
                // SAFETY: writes through the placed descriptors, then _exit.
                unsafe {
                    libc::write(b, b"A".as_ptr().cast(), 1);
                    libc::write(a, b"B".as_ptr().cast(), 1);
                    libc::_exit(i32::from(!ok));
                }
            }
            pid => {
                drop((a_w, b_w));
                let mut status = 0;
                // SAFETY: waits for the child forked above.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(libc::WEXITSTATUS(status), 0);
                let read = |fd: OwnedFd| {
                    let mut s = String::new();
                    std::fs::File::from(fd).read_to_string(&mut s).unwrap_or_else(|e| panic!("{e}"));
                    s
                };
                assert_eq!(read(a_r), "A");
                assert_eq!(read(b_r), "B");
            }
        }
    }

    #[test]
    fn too_few_parking_slots_is_an_error_not_a_partial_placement() {
        assert_eq!(place_descriptors(&[(0, 1), (1, 0)], &mut [0; 1]), Err(libc::EINVAL));
    }
}
