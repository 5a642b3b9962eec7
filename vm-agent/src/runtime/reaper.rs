//! Reaps every child of the agent (it is a child subreaper, so container processes become its
//! children once their init exits) and hands exit statuses to whoever waits for that pid.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

#[derive(Default)]
struct Table {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    exited: HashMap<i32, i32>,
    ignored: HashSet<i32>,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Table::default()))
}

fn lock() -> std::sync::MutexGuard<'static, Table> {
    table().lock().unwrap_or_else(|p| p.into_inner())
}

static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Becomes a child subreaper and starts reaping on SIGCHLD. Call once, inside the runtime.
pub fn start() -> std::io::Result<()> {
    STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sig.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

/// Exit code as Docker reports it: the code, or 128 + signal.
fn code_of(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                if let Some((pid, code)) = code_of(status) {
                    let mut t = lock();
                    if t.ignored.remove(&pid) {
                        continue;
                    }
                    match t.waiters.remove(&pid) {
                        Some(tx) => {
                            let _ = tx.send(code);
                        }
                        None => {
                            t.exited.insert(pid, code);
                        }
                    }
                }
            }
        }
    }
}

/// A future exit code of `pid` (resolves at once if it already exited).
pub fn wait_for(pid: i32) -> oneshot::Receiver<i32> {
    let (tx, rx) = oneshot::channel();
    let mut t = lock();
    match t.exited.remove(&pid) {
        Some(code) => {
            let _ = tx.send(code);
        }
        None => {
            t.waiters.insert(pid, tx);
        }
    }
    rx
}

/// Reaps `pid` silently (helper processes whose status nobody needs).
pub fn forget(pid: i32) {
    let mut t = lock();
    if t.exited.remove(&pid).is_none() {
        t.ignored.insert(pid);
    }
}

/// Runs a helper command to completion and returns its exit code and output: `Command::output`
/// cannot be used once the reaper runs (it would reap the child first: ECHILD). Blocking: call
/// from a blocking thread.
pub fn output(cmd: &mut std::process::Command) -> std::io::Result<(i32, Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let exit =
        STARTED.load(std::sync::atomic::Ordering::SeqCst).then(|| wait_for(i32::try_from(child.id()).unwrap_or(0)));
    let mut err_pipe = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err_pipe.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut out = Vec::new();
    if let Some(o) = child.stdout.as_mut() {
        o.read_to_end(&mut out)?;
    }
    let err = errors.join().unwrap_or_default();
    let code = match exit {
        Some(rx) => rx.blocking_recv().unwrap_or(255),
        None => child.wait()?.code().unwrap_or(255),
    };
    Ok((code, out, err))
}
