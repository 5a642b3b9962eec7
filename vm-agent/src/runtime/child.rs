//! `skiff-agent child BUNDLE CGROUP_PROCS`: the runtime child, the short-lived, single-threaded
//! process the agent execs to start a container (like `runc init`, but it exits as soon as the
//! container runs: no shim stays behind).
//!
//! The agent starts it early: it joins the container's cgroups (`:`-separated `tasks` and
//! `cgroup.procs` files, see `join_cgroups`) while the engine prepares the rest, then waits for
//! one byte on [`GO_FD`] (EOF: the start was abandoned). Then it reads the bundle, unshares the
//! namespaces and forks the container's PID 1, which builds the container's root and waits for a
//! second byte on the same pipe (the engine wires the network meanwhile) before it runs the
//! command. This process waits for that child to `execve` (a close-on-exec pipe carries any setup
//! error back), reports
//! `{"pid":N}` or `{"error":…}` on fd 3 and exits. The agent, a child subreaper, inherits the
//! container process. Being freshly exec'd and single-threaded, this code may allocate after fork.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::syscall::{FileKind, LinuxSyscall, Syscall};
use super::{rootfs, user, ErrorKind, LaunchError};

/// Annotation carrying Docker's `--user` string, resolved inside the container.
pub const USER_ANNOTATION: &str = "org.skiff.user";
/// Annotation listing the cgroup files (`:`-separated `tasks` or `cgroup.procs`) the container
/// joins before it starts; `docker exec` joins the same.
pub const CGROUP_ANNOTATION: &str = "org.skiff.cgroup.procs";
/// Annotation listing `--group-add` groups (`,`-separated names or ids).
pub const GROUPS_ANNOTATION: &str = "org.skiff.groups";
/// Annotation asking for our init as the container's PID 1 (`docker run --init`, as docker-init).
pub const INIT_ANNOTATION: &str = "org.skiff.init";

/// The descriptor the engine's go arrives on: one byte once the bundle is complete (read by the
/// runtime child), a second once the network is wired (read by the container's PID 1).
pub const GO_FD: i32 = 5;

/// What the runtime child tells the agent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The container's PID 1, as the agent sees it.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Why it could not start.
    #[serde(default)]
    pub error: Option<LaunchError>,
    /// Settings that could not be applied as asked (e.g. clamped rlimits).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Entry point of `skiff-agent child BUNDLE CGROUP_PROCS`; never returns.
pub fn main(bundle: &Path, cgroup_procs: &str) -> ! {
    protect_report_pipe();
    make_undumpable();
    match start(bundle, cgroup_procs) {
        // PID 1 has pivoted into the container's root, and so has this process (same mount
        // namespace): "/" is the container's overlay, whose mount the engine then holds.
        Ok((pid, warnings)) => report_and_exit(
            Report { pid: Some(pid), error: None, warnings },
            nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).ok(),
        ),
        Err(e) => report_and_exit(Report { pid: None, error: Some(e), warnings: Vec::new() }, None),
    }
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

/// Entry point of `skiff-agent exec-child BUNDLE REQUEST`; never returns.
pub fn exec_main(bundle: &Path, request: &Path) -> ! {
    protect_report_pipe();
    make_undumpable();
    report_and_exit(
        match start_exec(bundle, request) {
            Ok(pid) => Report { pid: Some(pid), error: None, warnings: Vec::new() },
            Err(e) => Report { pid: None, error: Some(e), warnings: Vec::new() },
        },
        None,
    )
}

fn start_exec(bundle: &Path, request: &Path) -> Result<i32, LaunchError> {
    let mut spec = load_spec(bundle)?;
    let bytes = std::fs::read(request).map_err(|e| LaunchError::other(format!("reading exec request: {e}")))?;
    let req: ExecRequest =
        serde_json::from_slice(&bytes).map_err(|e| LaunchError::other(format!("parsing exec request: {e}")))?;
    let mut process = spec.process().clone().ok_or_else(|| LaunchError::other("bundle has no process"))?;
    process.set_args(Some(req.args.clone()));
    process.set_env(Some(req.env.clone()));
    process.set_cwd(PathBuf::from(if req.cwd.is_empty() { "/" } else { &req.cwd }));
    process.set_terminal(Some(req.terminal));
    if let Some((rows, cols)) = req.console_size {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(rows as u64)
            .width(cols as u64)
            .build()
            .map_err(|e| LaunchError::other(e.to_string()))?;
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
            .map_err(|e| LaunchError::other(e.to_string()))?;
        process.set_capabilities(Some(caps));
    }
    spec.set_process(Some(process));
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(USER_ANNOTATION.into(), req.user.clone());
    annotations.remove(INIT_ANNOTATION);
    spec.set_annotations(Some(annotations));
    // As runc exec: the process counts against the container's limits, is frozen by a pause and
    // listed by `docker top`.
    let procs = spec.annotations().as_ref().and_then(|a| a.get(CGROUP_ANNOTATION)).cloned().unwrap_or_default();
    // The v2 cgroup's directory is opened before the mount namespace changes.
    let v2 = join_cgroups(&LinuxSyscall, &procs)?.map(|p| V2Cgroup::open(&p)).transpose()?;
    join_container(&LinuxSyscall, req.pid)?;
    fork_until_exec(v2.as_ref(), || {
        match join_container_late(&LinuxSyscall, req.pid).and_then(|()| exec_child(&LinuxSyscall, &spec)) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    })
}

/// `docker exec`, before the fork: joins the namespaces of the running container whose PID 1 is
/// `pid` that the process must be made in (the pid namespace above all).
fn join_container(sys: &dyn Syscall, pid: i32) -> Result<(), LaunchError> {
    join_namespaces(sys, pid, &["ipc", "uts", "net", "pid"])
}

/// `docker exec`, in the process after the fork: the cgroup namespace (a process can be made in
/// the container's v2 cgroup only from outside it), then the mount namespace (it changes our root,
/// and the paths of the others would no longer resolve).
fn join_container_late(sys: &dyn Syscall, pid: i32) -> Result<(), LaunchError> {
    join_namespaces(sys, pid, &["cgroup", "mnt"])
}

fn join_namespaces(sys: &dyn Syscall, pid: i32, namespaces: &[&str]) -> Result<(), LaunchError> {
    for ns in namespaces {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
        sys.setns(&path, CloneFlags::empty()).map_err(|e| LaunchError::sys(format!("joining {ns} namespace"), e))?;
    }
    Ok(())
}

fn exec_child(sys: &dyn Syscall, spec: &Spec) -> Result<Never, LaunchError> {
    let process = spec.process().as_ref().ok_or_else(|| LaunchError::other("no process"))?;
    sys.setsid().map_err(|e| LaunchError::sys("setsid", e))?;
    attach_terminal(sys, process)?;
    exec_process(sys, spec)
}

fn load_spec(bundle: &Path) -> Result<Spec, LaunchError> {
    let bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| LaunchError::other(format!("reading bundle config: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| LaunchError::other(format!("parsing bundle config: {e}")))
}

fn start(bundle: &Path, cgroup_procs: &str) -> Result<(i32, Vec<String>), LaunchError> {
    let v2 = join_cgroups(&LinuxSyscall, cgroup_procs)?.map(|p| V2Cgroup::open(&p)).transpose()?;
    wait_for_go()?;
    let spec = load_spec(bundle)?;
    enter(&LinuxSyscall, &spec)?;
    let warnings = clamp_rlimits_warnings(&LinuxSyscall, &spec);
    let pid = fork_until_exec(v2.as_ref(), || container_main(&LinuxSyscall, &spec, bundle))?;
    Ok((pid, warnings))
}

/// Joins the cgroups of the `:`-separated list of files:
/// - a v1 hierarchy's `tasks`: "0" moves the calling thread, which in this single-threaded
///   process is all of it. Moving a whole process (`cgroup.procs`) takes the kernel's global
///   threadgroup lock, and taking that lock waits for an RCU grace period unless the hierarchy
///   is mounted with `favordynmods` (5–20 ms per start on a hybrid host); moving the caller's
///   own thread does not take it.
/// - a v2 hierarchy's `cgroup.procs` (a thread cannot move between v2 cgroups alone): nothing
///   when the agent made this process in that cgroup (`CLONE_INTO_CGROUP`, see [`super::spawn`]);
///   otherwise the file is returned, and the container's process is made in that cgroup at the
///   fork ([`fork_until_exec`]).
fn join_cgroups(sys: &dyn Syscall, procs: &str) -> Result<Option<PathBuf>, LaunchError> {
    let own_v2 = sys.read_file(Path::new("/proc/self/cgroup")).ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("0::")).map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
    });
    let mut v2 = None;
    for f in procs.split(':').filter(|f| !f.is_empty()) {
        let file = Path::new(f);
        match file.file_name().and_then(|n| n.to_str()) {
            Some("tasks") => {
                sys.write_file(file, "0").map_err(|e| LaunchError::other(format!("joining cgroup {f}: {e}")))?
            }
            _ if born_in(file, own_v2.as_deref()) => {}
            _ => v2 = Some(file.to_path_buf()),
        }
    }
    Ok(v2)
}

/// The v2 cgroup the container's process is to be made in, opened while its path resolves.
struct V2Cgroup {
    dir: File,
    procs: PathBuf,
}

impl V2Cgroup {
    fn open(procs: &Path) -> Result<Self, LaunchError> {
        let dir = procs.parent().ok_or_else(|| LaunchError::other(format!("no cgroup in {}", procs.display())))?;
        let dir = File::open(dir).map_err(|e| LaunchError::other(format!("opening cgroup {}: {e}", dir.display())))?;
        Ok(Self { dir, procs: procs.to_path_buf() })
    }

    /// Where the kernel refuses clone3: this process joins it (the slow way), and a plain fork's
    /// child is in it too.
    fn join(&self) -> Result<(), LaunchError> {
        let joining =
            |e: nix::errno::Errno| LaunchError::other(format!("joining cgroup {}: {e}", self.procs.display()));
        let fd = nix::fcntl::openat(
            &self.dir,
            "cgroup.procs",
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(joining)?;
        nix::unistd::write(&fd, std::process::id().to_string().as_bytes()).map_err(joining)?;
        Ok(())
    }
}

/// Whether the v2 cgroup whose `cgroup.procs` is `file` is `own` (this process's own v2 cgroup,
/// relative to the hierarchy's root, from `/proc/self/cgroup`). There is one v2 hierarchy, so
/// its directory ending in `own` is enough; the root (`own` empty) is never a container's.
fn born_in(file: &Path, own: Option<&Path>) -> bool {
    match (file.parent(), own) {
        (Some(dir), Some(own)) if !own.as_os_str().is_empty() => dir.ends_with(own),
        _ => false,
    }
}

/// Blocks until the engine's go (its bundle is complete); EOF means the start was abandoned. The
/// pipe stays open: the container's PID 1 inherits it and waits on it for the second byte.
fn wait_for_go() -> Result<(), LaunchError> {
    // SAFETY: the agent starts this process with GO_FD open (the go pipe's read end), and nothing
    // in it closes that descriptor before its fork.
    let go = unsafe { std::os::fd::BorrowedFd::borrow_raw(GO_FD) };
    let mut byte = [0u8; 1];
    match nix::unistd::read(go, &mut byte) {
        Ok(1) => Ok(()),
        _ => Err(LaunchError::other("the start was abandoned before the container's process was made")),
    }
}

/// Before the fork: joins the namespaces the engine prepared (the network one) and unshares the
/// new ones, so the child is born inside them. Not a new cgroup namespace: its root is the
/// creator's cgroup, and this process may not be in the container's v2 cgroup yet (PID 1 is made
/// there): PID 1 makes it ([`new_cgroup_namespace`]).
fn enter(sys: &dyn Syscall, spec: &Spec) -> Result<(), LaunchError> {
    let mut flags = CloneFlags::empty();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default() {
        match ns.path() {
            // An existing namespace (the network one the engine prepared): join it.
            Some(path) => sys
                .setns(path, CloneFlags::from_bits_truncate(ns.typ() as i32))
                .map_err(|e| LaunchError::sys(format!("joining {}", path.display()), e))?,
            None if ns.typ() != LinuxNamespaceType::User && ns.typ() != LinuxNamespaceType::Cgroup => {
                flags |= CloneFlags::from_bits_truncate(ns.typ() as i32);
            }
            None => {}
        }
    }
    sys.unshare(flags).map_err(|e| LaunchError::sys("unshare", e))
}

/// In PID 1, which is in all of the container's cgroups: its own cgroup namespace, when the spec
/// asks for a new one, rooted there (the container sees its cgroups as `/`).
fn new_cgroup_namespace(sys: &dyn Syscall, spec: &Spec) -> Result<(), LaunchError> {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    if namespaces.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none()) {
        sys.unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| LaunchError::sys("unshare cgroup namespace", e))?;
    }
    Ok(())
}

/// Forks; the child runs `child` (which only returns on failure) and its error travels back over
/// a close-on-exec pipe. Returns the child's pid once it has called `execve` (the pipe closed
/// empty), or its error.
fn fork_until_exec(v2: Option<&V2Cgroup>, child: impl FnOnce() -> LaunchError) -> Result<i32, LaunchError> {
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::sys("pipe", e))?;
    // The container's process is made in the v2 cgroup where this process is not (yet).
    let made_in_cgroup = match v2 {
        // SAFETY: this process is single-threaded (freshly exec'd, no runtime started), so the
        // child may allocate and use any library code; it never signals its own thread.
        Some(cg) => match unsafe { super::spawn::fork_into(&cg.dir, 0) } {
            Ok(0) => Some(ForkResult::Child),
            Ok(pid) => Some(ForkResult::Parent { child: nix::unistd::Pid::from_raw(pid) }),
            Err(_) => {
                cg.join()?;
                None
            }
        },
        None => None,
    };
    let forked = match made_in_cgroup {
        Some(f) => f,
        // SAFETY: single-threaded, as above.
        None => unsafe { nix::unistd::fork() }.map_err(|e| LaunchError::sys("fork", e))?,
    };
    match forked {
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
                Err(serde_json::from_str(&buf).unwrap_or_else(|_| LaunchError::other(buf)))
            }
        }
    }
}

/// Writes the report (and `root`, see [`super::report`]) on fd 3 and exits.
fn report_and_exit(report: Report, root: Option<OwnedFd>) -> ! {
    // SAFETY: the agent always starts this process with fd 3 open as its end of the report
    // channel, and nothing else in this process owns that descriptor.
    let channel = unsafe { OwnedFd::from_raw_fd(3) };
    let code = if report.error.is_some() { 1 } else { 0 };
    if let Ok(bytes) = serde_json::to_vec(&report) {
        super::report::send(&channel, &bytes, root.as_ref());
    }
    // Closed before the exit, which takes a while to tear this process down: the engine reads
    // to EOF and need not wait for that.
    drop(channel);
    std::process::exit(code)
}

/// The container must not inherit the report channel (the agent reads it to EOF).
fn protect_report_pipe() {
    // SAFETY: F_SETFD on fd 3, which the agent passed; no memory involved.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Before anything joins a container: the container's processes may not open this process's
/// `/proc/PID/exe`, memory or descriptors (ptrace access checks fail for a non-dumpable process).
/// The command's `execve` makes it dumpable again; the `--init` process stays so.
fn make_undumpable() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Runs in the container's PID 1 until `execve`; returns only on failure.
fn container_main(sys: &dyn Syscall, spec: &Spec, bundle: &Path) -> LaunchError {
    match prepare_and_exec(sys, spec, bundle) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

/// The container's PID 1 until `execve`: its cgroup namespace, its own session, the root filesystem, the terminal,
/// the hostname, `lo` in a new network namespace, the engine's release, then the process itself.
fn prepare_and_exec(sys: &dyn Syscall, spec: &Spec, bundle: &Path) -> Result<Never, LaunchError> {
    let process = spec.process().as_ref().ok_or_else(|| LaunchError::other("bundle has no process"))?;
    new_cgroup_namespace(sys, spec)?;
    sys.setsid().map_err(|e| LaunchError::sys("setsid", e))?;
    let root_path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    let rootfs_path = if root_path.is_absolute() { root_path } else { bundle.join(root_path) };
    rootfs::setup(sys, spec, &rootfs_path)?;
    attach_terminal(sys, process)?;
    if let Some(h) = spec.hostname() {
        sys.sethostname(h).map_err(|e| LaunchError::sys("sethostname", e))?;
    }
    let new_net = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if new_net {
        sys.loopback_up();
    }
    sys.wait_for_release()?;
    exec_process(sys, spec)
}

/// With a terminal: allocates the pty inside the container and hands it to the engine.
fn attach_terminal(sys: &dyn Syscall, process: &oci_spec::runtime::Process) -> Result<(), LaunchError> {
    if process.terminal().unwrap_or(false) {
        let (rows, cols) = process.console_size().as_ref().map_or((0, 0), |b| (b.height(), b.width()));
        sys.setup_terminal(u16::try_from(rows).unwrap_or(0), u16::try_from(cols).unwrap_or(0))?;
    }
    Ok(())
}

/// Inside the container's root: identity, environment, limits, privileges, then `execve`.
fn exec_process(sys: &dyn Syscall, spec: &Spec) -> Result<Never, LaunchError> {
    let process = spec.process().as_ref().ok_or_else(|| LaunchError::other("bundle has no process"))?;
    let user_spec = spec.annotations().as_ref().and_then(|a| a.get(USER_ANNOTATION)).cloned().unwrap_or_default();
    let passwd = sys.read_file(Path::new("/etc/passwd")).unwrap_or_default();
    let group = sys.read_file(Path::new("/etc/group")).unwrap_or_default();
    let mut id = user::resolve(&user_spec, &passwd, &group).map_err(LaunchError::other)?;
    let added = spec.annotations().as_ref().and_then(|a| a.get(GROUPS_ANNOTATION)).cloned().unwrap_or_default();
    for gid in user::extra_groups(&added.split(',').collect::<Vec<_>>(), &group).map_err(LaunchError::other)? {
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
        let _ = sys.mkdir_all(cwd);
        sys.chdir(cwd).map_err(|e| LaunchError::sys(format!("chdir to {}", cwd.display()), e))?;
    }
    apply_rlimits(sys, spec);
    let args = process.args().clone().unwrap_or_default();
    let program = args.first().ok_or_else(|| LaunchError::other("no command specified"))?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let exe = find_executable(sys, program, path_var)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs {
        // While still privileged: a filter installed without no-new-privileges needs
        // CAP_SYS_ADMIN. What follows (identity, capabilities, execve) is allowed by it.
        sys.apply_seccomp(spec, false)?;
    }
    sys.setgroups(&id.groups).map_err(|e| LaunchError::sys("setgroups", e))?;
    sys.setresgid(id.gid).map_err(|e| LaunchError::sys("setgid", e))?;
    sys.prepare_capabilities(process.capabilities().as_ref(), id.uid)?;
    sys.setresuid(id.uid).map_err(|e| LaunchError::sys("setuid", e))?;
    sys.apply_capabilities(process.capabilities().as_ref())?;
    if no_new_privs {
        sys.set_no_new_privs().map_err(|e| LaunchError::sys("no_new_privs", e))?;
    }
    // Only stdio crosses into the container: every other descriptor closes at exec (the status
    // pipe included, which is how the parent learns that exec happened).
    sys.close_on_exec_from(3);
    if no_new_privs {
        sys.apply_seccomp(spec, true)?;
    }
    let c_exe =
        CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|_| LaunchError::other("NUL in executable path"))?;
    let c_args: Vec<CString> = args.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let c_env: Vec<CString> = env.iter().filter_map(|e| CString::new(e.as_bytes()).ok()).collect();
    let with_init = spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).is_some_and(|v| v == "true");
    if with_init {
        return run_as_init(&c_exe, &c_args, &c_env, program, id.uid);
    }
    Err(exec_error(sys.execve(&c_exe, &c_args, &c_env), program))
}

/// What a failed `execve` of `program` means to the user (and the exit code Docker shows).
fn exec_error(err: nix::errno::Errno, program: &str) -> LaunchError {
    match err {
        nix::errno::Errno::ENOENT => LaunchError {
            kind: ErrorKind::NotFound,
            message: format!("exec: \"{program}\": no such file or directory"),
        },
        nix::errno::Errno::EACCES => {
            LaunchError { kind: ErrorKind::Permission, message: format!("exec: \"{program}\": permission denied") }
        }
        e => LaunchError::sys(format!("exec {program}"), e),
    }
}

/// `--init`: stays as the container's PID 1, runs the command as its child, forwards signals to
/// it, reaps every orphan, and exits with the command's status (what tini does, in our binary).
fn run_as_init(
    c_exe: &CString,
    c_args: &[CString],
    c_env: &[CString],
    program: &str,
    uid: u32,
) -> Result<Never, LaunchError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::sys("pipe", e))?;
    let all = SigSet::all();
    // Named before the fork: the command may look at PID 1 (`ps`) the moment it runs.
    let _ = nix::sys::prctl::set_name(c"skiff-init");
    // No more privilege than the command will have after its execve (a non-root user keeps only
    // ambient capabilities), as docker-init has after its own execve.
    super::capabilities::as_after_exec(uid)?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .map_err(|e| LaunchError::sys("sigprocmask", e))?;
    // SAFETY: single-threaded process.
    match unsafe { nix::unistd::fork() }.map_err(|e| LaunchError::sys("fork", e))? {
        ForkResult::Child => {
            drop(r);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
            let err = exec_error(LinuxSyscall.execve(c_exe, c_args, c_env), program);
            let mut f = File::from(w);
            let _ = serde_json::to_writer(&mut f, &err);
            std::process::exit(if err.kind == ErrorKind::NotFound { 127 } else { 126 })
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut buf = String::new();
            let _ = File::from(r).read_to_string(&mut buf);
            if !buf.is_empty() {
                return Err(serde_json::from_str(&buf).unwrap_or_else(|_| LaunchError::other(buf)));
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
fn find_executable(sys: &dyn Syscall, program: &str, path_var: &str) -> Result<PathBuf, LaunchError> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match sys.file_kind(&p) {
            Some(FileKind::Executable) => Ok(p),
            Some(FileKind::Directory) => Err(LaunchError {
                kind: ErrorKind::Permission,
                message: format!("exec: \"{program}\": is a directory"),
            }),
            Some(FileKind::Other) => Err(LaunchError {
                kind: ErrorKind::Permission,
                message: format!("exec: \"{program}\": permission denied"),
            }),
            None => Err(LaunchError {
                kind: ErrorKind::NotFound,
                message: format!("exec: \"{program}\": stat {program}: no such file or directory"),
            }),
        };
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(program);
        if sys.file_kind(&p) == Some(FileKind::Executable) {
            return Ok(p);
        }
    }
    Err(LaunchError {
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

/// Rlimits above what this process may raise to are clamped (root here lacks CAP_SYS_RESOURCE).
fn clamp_rlimits_warnings(sys: &dyn Syscall, spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    for r in spec.process().as_ref().and_then(|p| p.rlimits().clone()).unwrap_or_default() {
        let name = r.typ().to_string();
        if let Some(res) = rlimit_resource(&name) {
            let hard = sys.hard_rlimit(res);
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

fn apply_rlimits(sys: &dyn Syscall, spec: &Spec) {
    for r in spec.process().as_ref().and_then(|p| p.rlimits().clone()).unwrap_or_default() {
        let Some(res) = rlimit_resource(&r.typ().to_string()) else { continue };
        let hard = r.hard().min(sys.hard_rlimit(res));
        sys.setrlimit(res, r.soft().min(hard), hard);
    }
}

#[cfg(test)]
mod tests {
    //! The child init's sequence, recorded without root: which calls, in which order. The
    //! integration tests prove the same sequence against the kernel.

    use std::collections::HashMap;

    use super::super::syscall::RecordingSyscall;
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";

    fn spec(extra: serde_json::Value) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": ["/bin/sh", "-c", "true"],
                "env": ["PATH=/usr/bin:/bin"],
                "cwd": "/work",
                "user": {"uid": 0, "gid": 0},
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_KILL"],
                    "effective": ["CAP_CHOWN", "CAP_KILL"],
                    "permitted": ["CAP_CHOWN", "CAP_KILL"]
                }
            },
            "root": {"path": "rootfs"},
            "annotations": {},
            "linux": {"namespaces": []}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap_or_else(|e| panic!("test spec: {e}"))
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn kernel() -> RecordingSyscall {
        RecordingSyscall {
            files: HashMap::from([("/etc/passwd".into(), PASSWD.into()), ("/etc/group".into(), GROUP.into())]),
            executables: vec!["/bin/sh".into(), "/usr/bin/env".into()],
            ..Default::default()
        }
    }

    #[test]
    fn v1_hierarchies_are_joined_by_thread_and_a_v2_cgroup_the_child_is_not_in_is_left_to_the_fork() {
        let joins = |own: Option<&str>| {
            let mut sys = RecordingSyscall::default();
            if let Some(own) = own {
                sys.files.insert("/proc/self/cgroup".into(), format!("1:memory:/\n0::{own}\n"));
            }
            let left = join_cgroups(&sys, "/cg/memory/skiff/c1/tasks:/cg/unified/skiff/c1/cgroup.procs")
                .unwrap_or_else(|e| panic!("{e}"));
            (sys.calls(), left)
        };
        let v1 = vec!["write /cg/memory/skiff/c1/tasks 0".to_string()];
        let v2 = Some(PathBuf::from("/cg/unified/skiff/c1/cgroup.procs"));
        // Born in it (CLONE_INTO_CGROUP): nothing left to join.
        assert_eq!(joins(Some("/skiff/c1")), (v1.clone(), None));
        // Made elsewhere (a runtime child made ahead, an old kernel), or the root, or unreadable:
        // v1 is joined, and the container's process is to be made in the v2 cgroup.
        assert_eq!(joins(Some("/skiff/c2")), (v1.clone(), v2.clone()));
        assert_eq!(joins(Some("/")), (v1.clone(), v2.clone()));
        assert_eq!(joins(None), (v1, v2));
    }

    #[test]
    fn the_child_joins_each_cgroup_then_enter_joins_the_prepared_network_and_unshares_the_rest() {
        let sys = RecordingSyscall::default();
        join_cgroups(&sys, "/sys/fs/cgroup/memory/c1/tasks::/sys/fs/cgroup/pids/c1/tasks")
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = spec(serde_json::json!({
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "network", "path": "/run/skiff/netns/c1"},
                {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ]}
        }));
        enter(&sys, &spec).unwrap_or_else(|e| panic!("{e}"));
        // Not the cgroup namespace: PID 1 makes it, once it is in the container's cgroups.
        let expected_flags =
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS;
        assert_eq!(
            sys.calls(),
            vec![
                "write /sys/fs/cgroup/memory/c1/tasks 0".to_string(),
                "write /sys/fs/cgroup/pids/c1/tasks 0".to_string(),
                format!("setns /run/skiff/netns/c1 {:?}", CloneFlags::CLONE_NEWNET),
                format!("unshare {expected_flags:?}"),
            ]
        );
    }

    #[test]
    fn exec_joins_every_namespace_of_the_container_cgroup_and_mount_after_the_fork() {
        let joined = |late: bool| {
            let sys = RecordingSyscall::default();
            let joining = if late { join_container_late(&sys, 7) } else { join_container(&sys, 7) };
            joining.unwrap_or_else(|e| panic!("{e}"));
            let calls = sys.calls();
            assert!(calls.iter().all(|c| c.starts_with("setns /proc/7/ns/")), "{calls:?}");
            calls.iter().filter_map(|c| c.split('/').nth(4)?.split(' ').next().map(str::to_string)).collect::<Vec<_>>()
        };
        assert_eq!(joined(false), ["ipc", "uts", "net", "pid"]);
        // The mount namespace last: it changes the root the others' paths resolve in.
        assert_eq!(joined(true), ["cgroup", "mnt"]);
    }

    #[test]
    fn a_user_process_drops_privileges_in_an_order_that_keeps_them_droppable() {
        let spec = spec(serde_json::json!({"annotations": {USER_ANNOTATION: "app", GROUPS_ANNOTATION: "staff"}}));
        let sys = kernel();
        let err = match exec_process(&sys, &spec) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        // The double's execve fails with ENOENT: the sequence ran to the end.
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(
            sys.calls(),
            vec![
                "mkdir /work",
                "chdir /work",
                // Seccomp while still privileged (no no-new-privileges: setuid programs work).
                "seccomp no_new_privs=false",
                "setgroups [1000, 50]",
                "setresgid 1000",
                "prepare_capabilities bounding=2 uid=1000",
                "setresuid 1000",
                "apply_capabilities effective=2",
                "close_on_exec_from 3",
                "execve /bin/sh /bin/sh -c true",
            ]
        );
    }

    #[test]
    fn no_new_privileges_is_set_after_the_user_switch_and_seccomp_follows_it() {
        let spec = spec(serde_json::json!({"process": {"noNewPrivileges": true}}));
        let sys = kernel();
        let _ = exec_process(&sys, &spec);
        let calls = sys.calls();
        let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("no {c} in {calls:?}"));
        assert!(at("setresuid 0") < at("no_new_privs"));
        assert!(at("no_new_privs") < at("seccomp no_new_privs=true"));
        assert!(at("close_on_exec_from 3") < at("seccomp no_new_privs=true"));
        assert!(!calls.iter().any(|c| c == "seccomp no_new_privs=false"));
        assert_eq!(calls.last().map(String::as_str), Some("execve /bin/sh /bin/sh -c true"));
    }

    #[test]
    fn a_missing_command_fails_before_any_privilege_changes() {
        let spec = spec(serde_json::json!({"process": {"args": ["nosuch"]}}));
        let sys = kernel();
        let err = match exec_process(&sys, &spec) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(err.message, "exec: \"nosuch\": executable file not found in $PATH");
        assert!(!sys.calls().iter().any(|c| c.starts_with("set") || c.starts_with("execve")), "{:?}", sys.calls());
    }

    #[test]
    fn the_child_builds_its_root_names_itself_brings_lo_up_and_waits_for_the_engine_before_it_execs() {
        let bundle = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(bundle.path().join("rootfs/dev")).unwrap_or_else(|e| panic!("{e}"));
        let spec = spec(serde_json::json!({
            "hostname": "web",
            "process": {"terminal": true, "consoleSize": {"height": 24, "width": 80}},
            "mounts": [{"destination": "/", "type": "overlay", "source": "overlay",
                        "options": ["lowerdir=/l", "upperdir=/u", "workdir=/w"]}],
            "linux": {"namespaces": [{"type": "network"}, {"type": "mount"}, {"type": "cgroup"}]}
        }));
        let sys = kernel();
        let _ = prepare_and_exec(&sys, &spec, bundle.path());
        let calls = sys.calls();
        let rootfs = bundle.path().join("rootfs");
        let at = |prefix: &str| {
            calls.iter().position(|x| x.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {calls:?}"))
        };
        // PID 1's cgroup namespace first: it is rooted at PID 1's cgroups.
        assert_eq!(calls.first(), Some(&format!("unshare {:?}", CloneFlags::CLONE_NEWCGROUP)));
        assert_eq!(calls.get(1).map(String::as_str), Some("setsid"));
        assert!(calls[at("mount overlay")].contains("lowerdir=/l,upperdir=/u,workdir=/w"));
        assert!(calls[at("mount overlay")].contains(&rootfs.display().to_string()));
        assert!(at("mount overlay") < at("mknod"));
        assert!(at("mknod") < at("pivot_root"));
        assert!(at("pivot_root") < at("setup_terminal 24x80"));
        assert!(at("setup_terminal") < at("sethostname web"));
        assert!(at("sethostname") < at("loopback_up"));
        assert!(at("loopback_up") < at("wait_for_release"));
        assert!(at("wait_for_release") < at("setresuid"));
        assert_eq!(calls.last().map(String::as_str), Some("execve /bin/sh /bin/sh -c true"));
    }
}
