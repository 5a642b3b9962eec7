//! Skiff's host side: the VM's lifecycle (hypervisor back ends behind one trait), the vsock
//! transport, the Docker-socket forwarder, the daemon that owns it all and the pieces the `skiff`
//! CLI uses to talk to it.

pub mod accel;
pub mod arch;
pub mod client;
pub mod config;
pub mod context;
pub mod control;
pub mod daemon;
pub mod disk;
pub mod forward;
pub mod home;
pub mod hypervisor;
pub mod image;
pub mod ports;
pub mod vsock;
pub mod wsl;
