//! The guest's CPU architecture: the host's by default (hardware acceleration), the other one
//! emulated by QEMU (TCG) — an arm64 guest on an amd64 machine, as on Apple silicon the other
//! way round.

use serde::{Deserialize, Serialize};

/// A guest architecture, in OCI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuestArch {
    Amd64,
    Arm64,
}

impl Default for GuestArch {
    fn default() -> Self {
        Self::host()
    }
}

impl GuestArch {
    /// The host's architecture.
    pub fn host() -> Self {
        if cfg!(target_arch = "aarch64") {
            Self::Arm64
        } else {
            Self::Amd64
        }
    }

    /// `amd64` / `arm64`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Whether the host runs it natively (a hardware accelerator can be used).
    pub fn is_native(self) -> bool {
        self == Self::host()
    }

    /// The QEMU system emulator for it.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Self::Amd64 => "qemu-system-x86_64",
            Self::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The machine QEMU models: a q35 PC, or the generic `virt` board (PCIe, GICv3, PL011).
    pub fn qemu_machine(self) -> &'static str {
        match self {
            Self::Amd64 => "q35,vmport=off,smbus=off,sata=off",
            Self::Arm64 => "virt,gic-version=max",
        }
    }

    /// The kernel's serial console.
    pub fn console(self) -> &'static str {
        match self {
            Self::Amd64 => "ttyS0",
            Self::Arm64 => "ttyAMA0",
        }
    }
}

impl std::fmt::Display for GuestArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
