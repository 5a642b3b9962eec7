//! The stdio a container process gets when it has no terminal, and the hub that serves it.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::io::{IoHub, STDERR, STDOUT};
use super::Container;
use crate::engine::EngineError;

/// Pipes for a container without a terminal: the ends it gets, and the ends the hub keeps.
pub(crate) struct Pipes {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
    pub(crate) stdin_writer: Option<OwnedFd>,
    pub(crate) readers: Vec<(OwnedFd, u8)>,
}

fn internal(what: &'static str) -> impl Fn(nix::errno::Errno) -> EngineError {
    move |e| EngineError::Internal(format!("{what}: {e}"))
}

pub(crate) fn dev_null() -> Result<OwnedFd, EngineError> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| EngineError::Internal(format!("opening /dev/null: {e}")))
}

pub(crate) fn make_pipes(open_stdin: bool) -> Result<Pipes, EngineError> {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
    let (stdin, stdin_writer) = if open_stdin {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
        (r, Some(w))
    } else {
        (dev_null()?, None)
    };
    Ok(Pipes { stdin, stdout: out_w, stderr: err_w, stdin_writer, readers: vec![(out_r, STDOUT), (err_r, STDERR)] })
}

/// Starts pumping a hub and publishes it to attach clients.
pub(crate) fn publish_hub(c: &Container, hub: &Arc<IoHub>, readers: Vec<(OwnedFd, u8)>) {
    for (fd, stream) in readers {
        tokio::spawn(hub.clone().pump(fd, stream));
    }
    c.io.send_replace(Some(hub.clone()));
}
