//! The macOS back end: Apple's Virtualization.framework (no QEMU, no virtiofsd: the framework
//! has its own virtio-fs, vsock, NAT and Rosetta devices). `plan.rs` decides the machine on any
//! host; `native.rs` (macOS only) builds it with `objc2-virtualization` and validates it;
//! `machine.rs` (macOS only) runs it on a dispatch queue and carries vsock both ways.

#[cfg(target_os = "macos")]
pub mod machine;
#[cfg(target_os = "macos")]
pub mod native;
pub mod plan;
