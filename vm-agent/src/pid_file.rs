//! The engine's pid file (`serve --pid-file`) and `skiff-agent kill`, which stops the engine it
//! names the way SIGTERM does (containers stopped first). What a host that cannot signal the
//! engine's process itself uses: the WSL back end, whose `wsl.exe` is not the Linux process.

use std::path::Path;
use std::time::{Duration, Instant};

/// Why the engine could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("reading the pid file: {0}")]
    Read(std::io::Error),
    #[error("the pid file holds {0:?}, not a process id")]
    Garbage(String),
    #[error("signalling process {pid}: {source}")]
    Signal { pid: i32, source: nix::Error },
    #[error("process {0} was still running after {1:?}")]
    StillRunning(i32, Duration),
}

/// Sends SIGTERM to the engine of `pid_file` and waits until it has exited. An engine that is
/// already gone (no file, or a stale pid) counts as stopped.
pub fn stop(pid_file: &Path, timeout: Duration) -> Result<(), StopError> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StopError::Read(e)),
    };
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1).ok_or_else(|| StopError::Garbage(text.clone()))?;
    let pid = nix::unistd::Pid::from_raw(pid);
    match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(()),
        Err(source) => return Err(StopError::Signal { pid: pid.as_raw(), source }),
    }
    let deadline = Instant::now() + timeout;
    // The engine removes its pid file as its last step; a process that is gone counts too.
    while pid_file.exists() && nix::sys::signal::kill(pid, None).is_ok() {
        if Instant::now() >= deadline {
            return Err(StopError::StillRunning(pid.as_raw(), timeout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_the_process_named_and_tolerates_one_that_is_gone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("agent.pid");
        assert!(stop(&file, Duration::from_secs(1)).is_ok(), "no pid file: nothing to stop");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&file, format!("{}\n", child.id())).unwrap_or_else(|e| panic!("{e}"));
        // `sleep` leaves its pid file behind and becomes a zombie until reaped: reap it meanwhile.
        let waiter = std::thread::spawn(move || child.wait());
        assert!(stop(&file, Duration::from_secs(10)).is_ok());
        assert!(waiter.join().is_ok_and(|s| s.is_ok_and(|s| !s.success())));
        std::fs::write(&file, "garbage").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(stop(&file, Duration::from_secs(1)), Err(StopError::Garbage(_))));
    }
}
