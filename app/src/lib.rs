//! Skiff's host side: the VM's lifecycle (hypervisor back ends behind one trait), the vsock
//! transport, the Docker-socket forwarder, the daemon that owns it all and the pieces the `skiff`
//! CLI uses to talk to it. The QEMU VM and its daemon are Unix-only (Linux, macOS); Windows runs
//! the engine in WSL 2 (`wsl`) behind a named pipe (`endpoint`).

pub mod accel;
pub mod arch;
#[cfg(unix)]
pub mod client;
pub mod config;
pub mod context;
#[cfg(unix)]
pub mod control;
#[cfg(unix)]
pub mod daemon;
#[cfg(unix)]
pub mod disk;
pub mod endpoint;
#[cfg(unix)]
pub mod forward;
pub mod home;
#[cfg(unix)]
pub mod hypervisor;
pub mod image;
#[cfg(unix)]
pub mod ports;
#[cfg(unix)]
pub mod vsock;
pub mod wsl;
