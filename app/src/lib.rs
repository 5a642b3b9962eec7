//! Skiff's host side. It will own the VM lifecycle (hypervisor backends behind one trait), the vsock
//! transports, the docker-socket and port forwarders, host shares and the desktop app.
//!
//! Nothing here is implemented yet: the engine runs natively through `skiff-agent serve` today. This
//! crate exists so the workspace has its fixed shape; it must never pretend to boot a VM it cannot boot.
