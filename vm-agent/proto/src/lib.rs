//! The contract between the Skiff host daemon and `skiff-agent` running as the VM's PID 1.
//!
//! Both sides depend on this crate so they cannot drift apart: the vsock ports, the control
//! channel's JSON-lines messages and the `skiff.*` kernel command-line parameters.

pub mod boot;
pub mod control;
pub mod host_paths;
pub mod jsonl;
pub mod ports;
pub mod proxy;
pub mod stream;

/// The guest's vsock port serving the Docker Engine API (plain HTTP, as on a Unix socket).
pub const API_PORT: u32 = 2375;
/// The guest's vsock port for the control channel (JSON lines, see [`control`]).
pub const CONTROL_PORT: u32 = 1024;
/// The guest's vsock CID (QEMU's `guest-cid`).
pub const GUEST_CID: u32 = 3;
