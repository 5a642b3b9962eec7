//! What the Virtualization.framework back end asks the framework for, decided from a [`VmSpec`]
//! without touching the framework: a typed plan that `native.rs` turns into a
//! `VZVirtualMachineConfiguration` on a Mac, and that unit tests check on any host.
//!
//! The framework's rules the plan enforces up front, with messages that name the fix: the guest
//! runs the Mac's own architecture (no emulation: an amd64 guest needs QEMU), CPUs and memory
//! within the framework's bounds (memory in whole MiB), virtio-fs tags of at most 36 bytes, the
//! kernel uncompressed (arm64 `Image`), and the console on the virtio console (`hvc0`).

use std::path::PathBuf;

use super::super::{Share, VmError, VmSpec};
use crate::arch::GuestArch;

/// The virtio-fs tag of the Rosetta share (amd64 Linux binaries translated by Rosetta 2).
pub const ROSETTA_TAG: &str = "rosetta";

/// The longest virtio-fs tag the framework accepts (`VZVirtioFileSystemDeviceConfiguration`).
pub const MAX_TAG_BYTES: usize = 36;

/// What the Mac offers, read once by `native.rs` (fixed values in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The Mac's architecture.
    pub arch: GuestArch,
    /// Whether Rosetta 2 for Linux is installed (`VZLinuxRosettaDirectoryShare.availability`).
    pub rosetta_installed: bool,
    /// `VZVirtualMachineConfiguration.minimumAllowedCPUCount` … `maximumAllowedCPUCount`.
    pub cpus: (u32, u32),
    /// `minimumAllowedMemorySize` … `maximumAllowedMemorySize`, in bytes.
    pub memory: (u64, u64),
}

/// The data disk: a raw image, cached, every flush honoured (kill -9 safety of the data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzDisk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// One host folder on a `VZVirtioFileSystemDeviceConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzShare {
    pub tag: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// The whole machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzPlan {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// `VZLinuxBootLoader`: kernel, initial ramdisk, command line.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    /// `VZVirtioBlockDeviceConfiguration` on a `VZDiskImageStorageDeviceAttachment`.
    pub disk: VzDisk,
    /// `VZVirtioFileSystemDeviceConfiguration`s with `VZSingleDirectoryShare`s.
    pub shares: Vec<VzShare>,
    /// Rosetta's share (tag [`ROSETTA_TAG`]) when the guest can use it.
    pub rosetta: bool,
    /// The guest's console (`VZVirtioConsoleDeviceSerialPortConfiguration`) into this file.
    pub console_log: PathBuf,
    /// One `VZVirtioNetworkDeviceConfiguration` on `VZNATNetworkDeviceAttachment`.
    pub nat_network: bool,
    /// One `VZVirtioSocketDeviceConfiguration` (the engine, control and port channels).
    pub vsock: bool,
    /// `VZVirtioEntropyDeviceConfiguration` and a traditional memory balloon.
    pub entropy: bool,
    pub balloon: bool,
}

fn failed(msg: String) -> VmError {
    VmError::Failed(msg)
}

/// The command line with its `console=` words replaced by the virtio console, and Rosetta's tag
/// for the guest when it is shared.
fn cmdline(spec_cmdline: &str, rosetta: bool) -> String {
    let mut words: Vec<String> = spec_cmdline
        .split_whitespace()
        .map(|w| if w.starts_with("console=") { "console=hvc0".to_string() } else { w.to_string() })
        .collect();
    if !words.iter().any(|w| w.starts_with("console=")) {
        words.insert(0, "console=hvc0".into());
    }
    if rosetta {
        words.push(format!("skiff.rosetta={ROSETTA_TAG}"));
    }
    words.join(" ")
}

fn share(s: &Share) -> Result<VzShare, VmError> {
    if s.tag.is_empty() || s.tag.len() > MAX_TAG_BYTES || s.tag == ROSETTA_TAG {
        return Err(failed(format!(
            "virtio-fs tag {:?} for {}: Virtualization.framework needs 1 to {MAX_TAG_BYTES} bytes, and \"{ROSETTA_TAG}\" is Rosetta's",
            s.tag,
            s.path.display()
        )));
    }
    if !s.path.is_absolute() {
        return Err(failed(format!("shared folder {} is not an absolute path", s.path.display())));
    }
    Ok(VzShare { tag: s.tag.clone(), path: s.path.clone(), read_only: false })
}

/// Decides the machine for `spec` on a Mac with `host`.
pub fn plan(spec: &VmSpec, host: &HostFacts) -> Result<VzPlan, VmError> {
    if spec.arch != host.arch {
        return Err(failed(format!(
            "Virtualization.framework runs only {} guests on this Mac; an {} guest needs the QEMU back end \
             (SKIFF_HYPERVISOR=qemu, emulated), or `skiff start --arch {}`",
            host.arch.name(),
            spec.arch.name(),
            host.arch.name()
        )));
    }
    let (min_cpus, max_cpus) = host.cpus;
    if spec.cpus < min_cpus || spec.cpus > max_cpus {
        return Err(failed(format!("--cpus {}: this Mac allows {min_cpus} to {max_cpus}", spec.cpus)));
    }
    let memory_bytes = u64::from(spec.memory_mib) * 1024 * 1024;
    let (min_mem, max_mem) = host.memory;
    if memory_bytes < min_mem || memory_bytes > max_mem {
        return Err(failed(format!(
            "--memory {}: this Mac allows {} to {} MiB",
            spec.memory_mib,
            min_mem.div_ceil(1 << 20),
            max_mem >> 20
        )));
    }
    let rosetta = host.arch == GuestArch::Arm64 && host.rosetta_installed;
    let shares = spec.shares.iter().map(share).collect::<Result<Vec<_>, _>>()?;
    Ok(VzPlan {
        cpus: spec.cpus,
        memory_bytes,
        kernel: spec.kernel.clone(),
        initramfs: spec.initramfs.clone(),
        cmdline: cmdline(&spec.cmdline, rosetta),
        disk: VzDisk { path: spec.disk.clone(), read_only: false },
        shares,
        rosetta,
        console_log: spec.console_log.clone(),
        nat_network: true,
        vsock: true,
        entropy: true,
        balloon: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;

    fn spec(arch: GuestArch) -> VmSpec {
        VmSpec {
            arch,
            cpus: 4,
            memory_mib: 4096,
            accel: Accel::Hvf,
            kernel: "/Applications/Skiff.app/Contents/Resources/arm64/vmlinux".into(),
            initramfs: "/Applications/Skiff.app/Contents/Resources/arm64/initramfs.img".into(),
            cmdline: "console=ttyAMA0 quiet panic=-1 skiff.disk=/dev/vda".into(),
            disk: "/Users/me/.skiff/disk.raw".into(),
            console_log: "/Users/me/.skiff/logs/console.log".into(),
            run_dir: "/Users/me/.skiff/run".into(),
            shares: vec![Share { tag: "skiff0".into(), path: "/Users/me".into() }],
        }
    }

    fn mac(rosetta: bool) -> HostFacts {
        HostFacts { arch: GuestArch::Arm64, rosetta_installed: rosetta, cpus: (1, 10), memory: (128 << 20, 64 << 30) }
    }

    #[test]
    fn an_apple_silicon_mac_gets_the_arm64_guest_with_its_devices() {
        let p = plan(&spec(GuestArch::Arm64), &mac(true)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.cpus, p.memory_bytes), (4, 4 << 30));
        assert_eq!(p.cmdline, "console=hvc0 quiet panic=-1 skiff.disk=/dev/vda skiff.rosetta=rosetta");
        assert_eq!(p.shares, [VzShare { tag: "skiff0".into(), path: "/Users/me".into(), read_only: false }]);
        assert!(p.rosetta && p.vsock && p.nat_network && p.entropy && p.balloon);
        assert_eq!(p.disk, VzDisk { path: "/Users/me/.skiff/disk.raw".into(), read_only: false });
        // Without Rosetta: no share, no parameter (amd64 images then run under QEMU user mode).
        let p = plan(&spec(GuestArch::Arm64), &mac(false)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.rosetta && !p.cmdline.contains("rosetta"));
    }

    #[test]
    fn what_the_framework_would_refuse_is_refused_first_with_the_fix() {
        let err = |s: VmSpec, h: HostFacts| plan(&s, &h).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(spec(GuestArch::Amd64), mac(true)).contains("SKIFF_HYPERVISOR=qemu"));
        let mut s = spec(GuestArch::Arm64);
        s.cpus = 12;
        assert!(err(s, mac(true)).contains("1 to 10"));
        let mut s = spec(GuestArch::Arm64);
        s.memory_mib = 64;
        assert!(err(s, mac(true)).contains("128 to 65536 MiB"));
        let mut s = spec(GuestArch::Arm64);
        s.shares.push(Share { tag: "x".repeat(37), path: "/tmp".into() });
        assert!(err(s, mac(true)).contains("1 to 36 bytes"));
        let mut s = spec(GuestArch::Arm64);
        s.shares.push(Share { tag: ROSETTA_TAG.into(), path: "/tmp".into() });
        assert!(err(s, mac(true)).contains("Rosetta"));
        // An Intel Mac runs the amd64 guest, never with Rosetta.
        let intel = HostFacts { arch: GuestArch::Amd64, ..mac(true) };
        let p = plan(&spec(GuestArch::Amd64), &intel).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.rosetta);
    }
}
