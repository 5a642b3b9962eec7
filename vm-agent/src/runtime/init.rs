//! `skiff-agent init BUNDLE`: the short-lived, single-threaded process the agent execs to start a
//! container (like `runc init`, but it exits as soon as the container runs: no shim stays behind).
//!
//! It joins the container's cgroup, unshares the namespaces, forks the container's PID 1, waits for
//! that child to `execve` (a close-on-exec pipe carries any setup error back), reports
//! `{"pid":N}` or `{"error":…}` on fd 3 and exits. The agent, a child subreaper, inherits the
//! container process. Being freshly exec'd and single-threaded, this code may allocate after fork.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::syscall::LinuxSyscall;
use super::{rootfs, user, ErrorKind, InitError};

/// Annotation carrying Docker's `--user` string, resolved inside the container.
pub const USER_ANNOTATION: &str = "org.skiff.user";
/// Annotation listing `cgroup.procs` files (`:`-separated) the container joins before it starts.
pub const CGROUP_ANNOTATION: &str = "org.skiff.cgroup.procs";
/// Annotation listing `--group-add` groups (`,`-separated names or ids).
pub const GROUPS_ANNOTATION: &str = "org.skiff.groups";
/// Annotation asking for our reaper as the container's PID 1 (`docker run --init`).
pub const INIT_ANNOTATION: &str = "org.skiff.init";

/// What init tells the agent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The container's PID 1, as the agent sees it.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Why it could not start.
    #[serde(default)]
    pub error: Option<InitError>,
    /// Settings that could not be applied as asked (e.g. clamped rlimits).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Entry point of `skiff-agent init`; never returns.
pub fn main(bundle: &Path) -> ! {
    protect_report_pipe();
    make_undumpable();
    report_and_exit(match start(bundle) {
        Ok((pid, warnings)) => Report { pid: Some(pid), error: None, warnings },
        Err(e) => Report { pid: None, error: Some(e), warnings: Vec::new() },
    })
}

/// What `docker exec` runs, relative to the container's own spec.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The container's PID 1 (whose namespaces the process joins).
    pub pid: i32,
    /// Command line.
    pub args: Vec<String>,
    /// Full environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Docker `--user` string.
    pub user: String,
    /// Whether it gets a terminal.
    pub terminal: bool,
    /// Initial terminal size (rows, columns).
    pub console_size: Option<(u32, u32)>,
    /// Extra privileges (`docker exec --privileged`).
    pub privileged: bool,
}

/// Entry point of `skiff-agent exec-init BUNDLE REQUEST`; never returns.
pub fn exec_main(bundle: &Path, request: &Path) -> ! {
    protect_report_pipe();
    make_undumpable();
    report_and_exit(match start_exec(bundle, request) {
        Ok(pid) => Report { pid: Some(pid), error: None, warnings: Vec::new() },
        Err(e) => Report { pid: None, error: Some(e), warnings: Vec::new() },
    })
}

fn start_exec(bundle: &Path, request: &Path) -> Result<i32, InitError> {
    let mut spec = load_spec(bundle)?;
    let bytes = std::fs::read(request).map_err(|e| InitError::other(format!("reading exec request: {e}")))?;
    let req: ExecRequest =
        serde_json::from_slice(&bytes).map_err(|e| InitError::other(format!("parsing exec request: {e}")))?;
    let mut process = spec.process().clone().ok_or_else(|| InitError::other("bundle has no process"))?;
    process.set_args(Some(req.args.clone()));
    process.set_env(Some(req.env.clone()));
    process.set_cwd(PathBuf::from(if req.cwd.is_empty() { "/" } else { &req.cwd }));
    process.set_terminal(Some(req.terminal));
    if let Some((rows, cols)) = req.console_size {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(rows as u64)
            .width(cols as u64)
            .build()
            .map_err(|e| InitError::other(e.to_string()))?;
        process.set_console_size(Some(size));
    }
    if req.privileged {
        let all: std::collections::HashSet<oci_spec::runtime::Capability> = super::capabilities::all_names()
            .iter()
            .filter_map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).ok())
            .collect();
        let caps = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
            .bounding(all.clone())
            .effective(all.clone())
            .permitted(all.clone())
            .inheritable(all)
            .build()
            .map_err(|e| InitError::other(e.to_string()))?;
        process.set_capabilities(Some(caps));
    }
    spec.set_process(Some(process));
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(USER_ANNOTATION.into(), req.user.clone());
    annotations.remove(INIT_ANNOTATION);
    spec.set_annotations(Some(annotations));
    // Join every namespace of the container; the mount namespace last (it changes our root).
    for ns in ["ipc", "uts", "net", "pid", "cgroup", "mnt"] {
        let path = format!("/proc/{}/ns/{ns}", req.pid);
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| InitError::sys(format!("opening {path}"), e))?;
        nix::sched::setns(&fd, CloneFlags::empty())
            .map_err(|e| InitError::sys(format!("joining {ns} namespace"), e))?;
    }
    fork_until_exec(|| match exec_child(&spec) {
        Ok(never) => match never {},
        Err(e) => e,
    })
}

fn exec_child(spec: &Spec) -> Result<Never, InitError> {
    let process = spec.process().as_ref().ok_or_else(|| InitError::other("no process"))?;
    nix::unistd::setsid().map_err(|e| InitError::sys("setsid", e))?;
    attach_terminal(process)?;
    exec_process(spec)
}

fn load_spec(bundle: &Path) -> Result<Spec, InitError> {
    let bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| InitError::other(format!("reading bundle config: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| InitError::other(format!("parsing bundle config: {e}")))
}

fn start(bundle: &Path) -> Result<(i32, Vec<String>), InitError> {
    let spec = load_spec(bundle)?;
    let pid = std::process::id().to_string();
    if let Some(files) = spec.annotations().as_ref().and_then(|a| a.get(CGROUP_ANNOTATION)) {
        for f in files.split(':').filter(|f| !f.is_empty()) {
            std::fs::write(f, &pid).map_err(|e| InitError::other(format!("joining cgroup {f}: {e}")))?;
        }
    }
    let mut flags = CloneFlags::empty();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default() {
        match ns.path() {
            // An existing namespace (the network one the engine prepared): join it.
            Some(path) => {
                let fd = nix::fcntl::open(
                    path.as_path(),
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| InitError::sys(format!("opening {}", path.display()), e))?;
                nix::sched::setns(&fd, CloneFlags::from_bits_truncate(ns.typ() as i32))
                    .map_err(|e| InitError::sys(format!("joining {}", path.display()), e))?;
            }
            None if ns.typ() != LinuxNamespaceType::User => {
                flags |= CloneFlags::from_bits_truncate(ns.typ() as i32);
            }
            None => {}
        }
    }
    nix::sched::unshare(flags).map_err(|e| InitError::sys("unshare", e))?;
    let warnings = clamp_rlimits_warnings(&spec);
    let pid = fork_until_exec(|| container_main(&spec, bundle))?;
    Ok((pid, warnings))
}

/// Forks; the child runs `child` (which only returns on failure) and its error travels back over
/// a close-on-exec pipe. Returns the child's pid once it has called `execve` (the pipe closed
/// empty), or its error.
fn fork_until_exec(child: impl FnOnce() -> InitError) -> Result<i32, InitError> {
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| InitError::sys("pipe", e))?;
    // SAFETY: this process is single-threaded (freshly exec'd, no runtime started), so the child
    // may allocate and use any library code.
    match unsafe { nix::unistd::fork() }.map_err(|e| InitError::sys("fork", e))? {
        ForkResult::Child => {
            drop(status_r);
            let err = child();
            let mut w = File::from(status_w);
            let _ = serde_json::to_writer(&mut w, &err);
            drop(w);
            std::process::exit(match err.kind {
                ErrorKind::NotFound => 127,
                ErrorKind::Permission => 126,
                ErrorKind::Other => 125,
            })
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            let mut buf = String::new();
            let _ = File::from(status_r).read_to_string(&mut buf);
            if buf.is_empty() {
                Ok(child.as_raw())
            } else {
                Err(serde_json::from_str(&buf).unwrap_or_else(|_| InitError::other(buf)))
            }
        }
    }
}

/// Writes the report on fd 3 and exits.
fn report_and_exit(report: Report) -> ! {
    // SAFETY: the agent always starts init with fd 3 open as the write end of the report pipe, and
    // nothing else in this process owns that descriptor.
    let mut report_pipe = unsafe { File::from_raw_fd(3) };
    let code = if report.error.is_some() { 1 } else { 0 };
    let _ = serde_json::to_writer(&mut report_pipe, &report);
    let _ = report_pipe.flush();
    std::process::exit(code)
}

/// The container must not inherit the report pipe (the agent reads it to EOF).
fn protect_report_pipe() {
    // SAFETY: F_SETFD on fd 3, which the agent passed; no memory involved.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Before anything joins a container: the container's processes may not open this process's
/// `/proc/PID/exe`, memory or descriptors (ptrace access checks fail for a non-dumpable process).
/// The command's `execve` makes it dumpable again; the `--init` reaper stays so.
fn make_undumpable() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Runs in the container's PID 1 until `execve`; returns only on failure.
fn container_main(spec: &Spec, bundle: &Path) -> InitError {
    match prepare_and_exec(spec, bundle) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn prepare_and_exec(spec: &Spec, bundle: &Path) -> Result<Never, InitError> {
    let process = spec.process().as_ref().ok_or_else(|| InitError::other("bundle has no process"))?;
    nix::unistd::setsid().map_err(|e| InitError::sys("setsid", e))?;
    let root_path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    let rootfs_path = if root_path.is_absolute() { root_path } else { bundle.join(root_path) };
    rootfs::setup(&LinuxSyscall, spec, &rootfs_path)?;
    attach_terminal(process)?;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| InitError::sys("sethostname", e))?;
    }
    let new_net = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if new_net {
        loopback_up();
    }
    exec_process(spec)
}

/// With a terminal: allocates the pty inside the container and hands it to the engine.
fn attach_terminal(process: &oci_spec::runtime::Process) -> Result<(), InitError> {
    if process.terminal().unwrap_or(false) {
        // SAFETY: the agent starts init with the console socket on this descriptor when the
        // process has a terminal; nothing else owns it.
        let console = unsafe { OwnedFd::from_raw_fd(super::pty::CONSOLE_SOCKET_FD) };
        let (rows, cols) = process.console_size().as_ref().map_or((0, 0), |b| (b.height(), b.width()));
        super::pty::setup_in_container(&console, u16::try_from(rows).unwrap_or(0), u16::try_from(cols).unwrap_or(0))?;
    }
    Ok(())
}

/// Inside the container's root: identity, environment, limits, privileges, then `execve`.
fn exec_process(spec: &Spec) -> Result<Never, InitError> {
    let process = spec.process().as_ref().ok_or_else(|| InitError::other("bundle has no process"))?;
    let user_spec = spec.annotations().as_ref().and_then(|a| a.get(USER_ANNOTATION)).cloned().unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut id = user::resolve(&user_spec, &passwd, &group).map_err(InitError::other)?;
    let added = spec.annotations().as_ref().and_then(|a| a.get(GROUPS_ANNOTATION)).cloned().unwrap_or_default();
    for gid in user::extra_groups(&added.split(',').collect::<Vec<_>>(), &group).map_err(InitError::other)? {
        if !id.groups.contains(&gid) {
            id.groups.push(gid);
        }
    }
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let cwd = process.cwd();
    if !cwd.as_os_str().is_empty() {
        let _ = std::fs::create_dir_all(cwd);
        nix::unistd::chdir(cwd).map_err(|e| InitError::sys(format!("chdir to {}", cwd.display()), e))?;
    }
    apply_rlimits(spec);
    let args = process.args().clone().unwrap_or_default();
    let program = args.first().ok_or_else(|| InitError::other("no command specified"))?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let exe = find_executable(program, path_var)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs {
        // While still privileged: a filter installed without no-new-privileges needs
        // CAP_SYS_ADMIN. What follows (identity, capabilities, execve) is allowed by it.
        super::seccomp::apply(spec, false)?;
    }
    let gids: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).map_err(|e| InitError::sys("setgroups", e))?;
    nix::unistd::setresgid(Gid::from_raw(id.gid), Gid::from_raw(id.gid), Gid::from_raw(id.gid))
        .map_err(|e| InitError::sys("setgid", e))?;
    super::capabilities::prepare(process.capabilities().as_ref(), id.uid)?;
    nix::unistd::setresuid(Uid::from_raw(id.uid), Uid::from_raw(id.uid), Uid::from_raw(id.uid))
        .map_err(|e| InitError::sys("setuid", e))?;
    super::capabilities::apply(process.capabilities().as_ref())?;
    if no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(InitError::sys("no_new_privs", nix::errno::Errno::last()));
        }
    }
    // Only stdio crosses into the container: every other descriptor closes at exec (the status
    // pipe included, which is how the parent learns that exec happened).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors; no memory involved.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if no_new_privs {
        super::seccomp::apply(spec, true)?;
    }
    let c_exe =
        CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|_| InitError::other("NUL in executable path"))?;
    let c_args: Vec<CString> = args.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let c_env: Vec<CString> = env.iter().filter_map(|e| CString::new(e.as_bytes()).ok()).collect();
    let with_init = spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).is_some_and(|v| v == "true");
    if with_init {
        return run_as_reaper(&c_exe, &c_args, &c_env, program, id.uid);
    }
    Err(exec_error(&c_exe, &c_args, &c_env, program))
}

fn exec_error(c_exe: &CString, c_args: &[CString], c_env: &[CString], program: &str) -> InitError {
    let err = nix::unistd::execve(c_exe, c_args, c_env).err().unwrap_or(nix::errno::Errno::UnknownErrno);
    match err {
        nix::errno::Errno::ENOENT => {
            InitError { kind: ErrorKind::NotFound, message: format!("exec: \"{program}\": no such file or directory") }
        }
        nix::errno::Errno::EACCES => {
            InitError { kind: ErrorKind::Permission, message: format!("exec: \"{program}\": permission denied") }
        }
        e => InitError::sys(format!("exec {program}"), e),
    }
}

/// `--init`: stays as the container's PID 1, runs the command as its child, forwards signals to
/// it, reaps every orphan, and exits with the command's status (what tini does, in our binary).
fn run_as_reaper(
    c_exe: &CString,
    c_args: &[CString],
    c_env: &[CString],
    program: &str,
    uid: u32,
) -> Result<Never, InitError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| InitError::sys("pipe", e))?;
    let all = SigSet::all();
    // Named before the fork: the command may look at PID 1 (`ps`) the moment it runs.
    let _ = nix::sys::prctl::set_name(c"skiff-init");
    // No more privilege than the command will have after its execve (a non-root user keeps only
    // ambient capabilities), as docker-init has after its own execve.
    super::capabilities::as_after_exec(uid)?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .map_err(|e| InitError::sys("sigprocmask", e))?;
    // SAFETY: single-threaded process.
    match unsafe { nix::unistd::fork() }.map_err(|e| InitError::sys("fork", e))? {
        ForkResult::Child => {
            drop(r);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
            let err = exec_error(c_exe, c_args, c_env, program);
            let mut f = File::from(w);
            let _ = serde_json::to_writer(&mut f, &err);
            std::process::exit(if err.kind == ErrorKind::NotFound { 127 } else { 126 })
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut buf = String::new();
            let _ = File::from(r).read_to_string(&mut buf);
            if !buf.is_empty() {
                return Err(serde_json::from_str(&buf).unwrap_or_else(|_| InitError::other(buf)));
            }
            // The command runs: let go of everything but stdio (the status pipe closing tells
            // the engine the container started).
            // SAFETY: close_range on our own descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0) };
            loop {
                let Ok(sig) = all.wait() else { continue };
                if sig != Signal::SIGCHLD {
                    let _ = nix::sys::signal::kill(child, sig);
                    continue;
                }
                loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
                        Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => std::process::exit(128 + s as i32),
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

/// Docker's lookup: a name with a slash is used as is; otherwise each `PATH` entry is tried.
fn find_executable(program: &str, path_var: &str) -> Result<PathBuf, InitError> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p),
            Ok(m) if m.is_dir() => {
                Err(InitError { kind: ErrorKind::Permission, message: format!("exec: \"{program}\": is a directory") })
            }
            Ok(_) => Err(InitError {
                kind: ErrorKind::Permission,
                message: format!("exec: \"{program}\": permission denied"),
            }),
            Err(_) => Err(InitError {
                kind: ErrorKind::NotFound,
                message: format!("exec: \"{program}\": stat {program}: no such file or directory"),
            }),
        };
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(program);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    Err(InitError {
        kind: ErrorKind::NotFound,
        message: format!("exec: \"{program}\": executable file not found in $PATH"),
    })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        _ => return None,
    })
}

fn current_hard(res: libc::__rlimit_resource_t) -> u64 {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(res, &mut cur) };
    cur.rlim_max
}

/// Rlimits above what this process may raise to are clamped (root here lacks CAP_SYS_RESOURCE).
fn clamp_rlimits_warnings(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    for r in spec.process().as_ref().and_then(|p| p.rlimits().clone()).unwrap_or_default() {
        let name = r.typ().to_string();
        if let Some(res) = rlimit_resource(&name) {
            let hard = current_hard(res);
            if r.hard() > hard {
                out.push(format!(
                    "{name} hard limit {} clamped to {hard}: raising it needs CAP_SYS_RESOURCE",
                    r.hard()
                ));
            }
        }
    }
    out
}

fn apply_rlimits(spec: &Spec) {
    for r in spec.process().as_ref().and_then(|p| p.rlimits().clone()).unwrap_or_default() {
        let Some(res) = rlimit_resource(&r.typ().to_string()) else { continue };
        let hard = r.hard().min(current_hard(res));
        let lim = libc::rlimit { rlim_cur: r.soft().min(hard), rlim_max: hard };
        // SAFETY: setrlimit reads the struct we own.
        unsafe { libc::setrlimit(res, &lim) };
    }
}

/// Brings `lo` up in a fresh network namespace.
fn loopback_up() {
    // SAFETY: plain socket + ioctl on a zeroed ifreq naming "lo"; the fd is closed by OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCGIFFLAGS, &mut req) == 0 {
            req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
            libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCSIFFLAGS, &req);
        }
    }
}
