//! Hypervisor back ends behind one trait: QEMU (any Unix host, any accelerator) and, on macOS,
//! Virtualization.framework (`vz`, the default there). Windows runs the engine in WSL 2 instead
//! (`crate::wsl`), not behind this trait.

pub mod qemu;
pub mod vz;

use std::path::PathBuf;
use std::time::Duration;

use crate::accel::Accel;
use crate::vsock::Vsock;

/// Everything a back end needs to boot the Skiff guest.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The guest's architecture (its QEMU binary and machine).
    pub arch: crate::arch::GuestArch,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// `skiff.*` and console parameters.
    pub cmdline: String,
    /// The data disk (raw image).
    pub disk: PathBuf,
    /// Where the guest's serial console is written.
    pub console_log: PathBuf,
    /// Directory for the back end's sockets and pid files.
    pub run_dir: PathBuf,
    /// Host folders to export over virtio-fs, with their guest tags.
    pub shares: Vec<Share>,
}

/// One host folder exported to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The virtio-fs tag the guest mounts.
    pub tag: String,
    pub path: PathBuf,
}

/// Why a VM could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0} was not found: {1}")]
    Missing(String, String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Failed(String),
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The guest powered off (a clean shutdown).
    PoweredOff,
    /// The VM process ended otherwise (crash, signal, guest panic): the description says how.
    Crashed(String),
}

/// The back ends this build knows, by the name `SKIFF_HYPERVISOR` and `skiff status` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// QEMU with KVM, HVF, WHPX or TCG: every host.
    Qemu,
    /// Apple's Virtualization.framework.
    #[cfg(target_os = "macos")]
    Vz,
}

impl Backend {
    /// Every back end, the host's default first.
    #[cfg(not(target_os = "macos"))]
    pub const ALL: &'static [Backend] = &[Backend::Qemu];
    /// Every back end, the host's default first.
    #[cfg(target_os = "macos")]
    pub const ALL: &'static [Backend] = &[Backend::Vz, Backend::Qemu];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            #[cfg(target_os = "macos")]
            Backend::Vz => "vz",
        }
    }

    /// The back end called `name`.
    pub fn parse(name: &str) -> Result<Self, VmError> {
        Self::ALL.iter().copied().find(|b| b.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
            VmError::Failed(format!("unknown hypervisor {name:?}: this build has {}", known.join(", ")))
        })
    }

    /// Finds what the back end needs on this host.
    pub fn open(self) -> Result<Box<dyn Hypervisor>, VmError> {
        match self {
            Backend::Qemu => Ok(Box::new(qemu::Qemu::locate()?)),
            #[cfg(target_os = "macos")]
            Backend::Vz => Ok(Box::new(vz::machine::Vz)),
        }
    }
}

/// The hypervisor the daemon boots the guest with: `SKIFF_HYPERVISOR` if set, else the host's
/// default back end.
pub fn for_this_host() -> Result<Box<dyn Hypervisor>, VmError> {
    let backend = match std::env::var("SKIFF_HYPERVISOR") {
        Ok(name) if !name.is_empty() => Backend::parse(&name)?,
        _ => Backend::ALL[0],
    };
    backend.open()
}

/// A hypervisor that can boot the Skiff guest.
#[async_trait::async_trait]
pub trait Hypervisor: Send + Sync {
    /// A short name for logs and `skiff status`.
    fn name(&self) -> &'static str;
    /// Boots the VM; returns once it runs (not once the guest is ready).
    async fn launch(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, VmError>;
}

/// A booted VM.
#[async_trait::async_trait]
pub trait RunningVm: Send + Sync {
    /// How to reach the guest's vsock ports.
    fn vsock(&self) -> Vsock;
    /// Host processes that belong to this VM (for status and memory accounting).
    fn pids(&self) -> Vec<u32>;
    /// Asks the guest to power off as if its power button was pressed (ACPI).
    async fn power_button(&self) -> Result<(), VmError>;
    /// Host-side health: `Some(reason)` when the VM is paused by an error (e.g. host disk full).
    async fn paused_reason(&self) -> Option<String>;
    /// Resumes a VM paused by an error.
    async fn resume(&self) -> Result<(), VmError>;
    /// Ends the VM at once (the guest gets no chance to flush).
    async fn kill(&self);
    /// Resolves when the VM has ended; all its helper processes are gone by then.
    async fn wait(&self) -> Exit;
    /// Waits up to `patience` for the end.
    async fn wait_timeout(&self, patience: Duration) -> Option<Exit> {
        tokio::time::timeout(patience, self.wait()).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_ends_are_chosen_by_name_and_an_unknown_one_is_named_in_the_error() {
        assert_eq!(Backend::parse("qemu").ok(), Some(Backend::Qemu));
        let err = Backend::parse("vmware").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("\"vmware\"") && err.contains("qemu"), "{err}");
    }
}
