//! The plan as a `VZVirtualMachineConfiguration` (macOS only; type-checked in CI for
//! aarch64-apple-darwin, never run here): every device the plan names, then the framework's own
//! validation, whose message is passed on as the error.

use std::path::Path;

use objc2::rc::Retained;
use objc2::AnyThread;
use objc2_foundation::{NSArray, NSError, NSString, NSURL};
use objc2_virtualization::{
    VZDirectoryShare, VZDirectorySharingDeviceConfiguration, VZDiskImageCachingMode,
    VZDiskImageStorageDeviceAttachment, VZDiskImageSynchronizationMode, VZEntropyDeviceConfiguration,
    VZFileSerialPortAttachment, VZLinuxBootLoader, VZLinuxRosettaAvailability, VZLinuxRosettaDirectoryShare,
    VZMemoryBalloonDeviceConfiguration, VZNATNetworkDeviceAttachment, VZNetworkDeviceConfiguration,
    VZSerialPortConfiguration, VZSharedDirectory, VZSingleDirectoryShare, VZSocketDeviceConfiguration,
    VZStorageDeviceConfiguration, VZVirtioBlockDeviceConfiguration, VZVirtioConsoleDeviceSerialPortConfiguration,
    VZVirtioEntropyDeviceConfiguration, VZVirtioFileSystemDeviceConfiguration, VZVirtioNetworkDeviceConfiguration,
    VZVirtioSocketDeviceConfiguration, VZVirtioTraditionalMemoryBalloonDeviceConfiguration,
    VZVirtualMachineConfiguration,
};

use super::plan::{HostFacts, VzPlan, ROSETTA_TAG};
use crate::arch::GuestArch;
use crate::hypervisor::VmError;

fn ns_error(what: &str, e: &NSError) -> VmError {
    VmError::Failed(format!("Virtualization.framework: {what}: {}", e.localizedDescription()))
}

fn file_url(p: &Path) -> Retained<NSURL> {
    NSURL::fileURLWithPath(&NSString::from_str(&p.to_string_lossy()))
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What this Mac offers.
pub fn host_facts() -> HostFacts {
    // SAFETY: class methods without arguments; the framework allows them on any thread.
    unsafe {
        HostFacts {
            arch: GuestArch::host(),
            rosetta_installed: VZLinuxRosettaDirectoryShare::availability() == VZLinuxRosettaAvailability::Installed,
            cpus: (
                clamp_u32(VZVirtualMachineConfiguration::minimumAllowedCPUCount()),
                clamp_u32(VZVirtualMachineConfiguration::maximumAllowedCPUCount()),
            ),
            memory: (
                VZVirtualMachineConfiguration::minimumAllowedMemorySize(),
                VZVirtualMachineConfiguration::maximumAllowedMemorySize(),
            ),
        }
    }
}

/// A virtio-fs device exporting `share` under `tag`.
fn file_system_device(tag: &str, share: Retained<VZDirectoryShare>) -> Retained<VZDirectorySharingDeviceConfiguration> {
    // SAFETY: a fresh device configured on this thread before any VM exists.
    unsafe {
        let fs = VZVirtioFileSystemDeviceConfiguration::initWithTag(
            VZVirtioFileSystemDeviceConfiguration::alloc(),
            &NSString::from_str(tag),
        );
        fs.setShare(Some(&share));
        Retained::into_super(fs)
    }
}

/// Builds and validates the machine of `plan`.
pub fn configuration(plan: &VzPlan) -> Result<Retained<VZVirtualMachineConfiguration>, VmError> {
    // SAFETY: every object is created here and used on this thread only, before any VM exists;
    // arguments are live Retained references of the types the framework declares.
    unsafe {
        let config = VZVirtualMachineConfiguration::new();
        let boot = VZLinuxBootLoader::initWithKernelURL(VZLinuxBootLoader::alloc(), &file_url(&plan.kernel));
        boot.setInitialRamdiskURL(Some(&file_url(&plan.initramfs)));
        boot.setCommandLine(&NSString::from_str(&plan.cmdline));
        config.setBootLoader(Some(&boot));
        config.setCPUCount(plan.cpus as usize);
        config.setMemorySize(plan.memory_bytes);

        let disk = VZDiskImageStorageDeviceAttachment::initWithURL_readOnly_cachingMode_synchronizationMode_error(
            VZDiskImageStorageDeviceAttachment::alloc(),
            &file_url(&plan.disk.path),
            plan.disk.read_only,
            VZDiskImageCachingMode::Cached,
            VZDiskImageSynchronizationMode::Full,
        )
        .map_err(|e| ns_error(&format!("data disk {}", plan.disk.path.display()), &e))?;
        let blk =
            VZVirtioBlockDeviceConfiguration::initWithAttachment(VZVirtioBlockDeviceConfiguration::alloc(), &disk);
        let storage: Retained<VZStorageDeviceConfiguration> = Retained::into_super(blk);
        config.setStorageDevices(&NSArray::from_retained_slice(&[storage]));

        let mut shares: Vec<Retained<VZDirectorySharingDeviceConfiguration>> = Vec::new();
        for s in &plan.shares {
            let dir =
                VZSharedDirectory::initWithURL_readOnly(VZSharedDirectory::alloc(), &file_url(&s.path), s.read_only);
            let single = VZSingleDirectoryShare::initWithDirectory(VZSingleDirectoryShare::alloc(), &dir);
            shares.push(file_system_device(&s.tag, Retained::into_super(single)));
        }
        if plan.rosetta {
            let rosetta = VZLinuxRosettaDirectoryShare::initWithError(VZLinuxRosettaDirectoryShare::alloc())
                .map_err(|e| ns_error("Rosetta share", &e))?;
            shares.push(file_system_device(ROSETTA_TAG, Retained::into_super(rosetta)));
        }
        config.setDirectorySharingDevices(&NSArray::from_retained_slice(&shares));

        if plan.nat_network {
            let net = VZVirtioNetworkDeviceConfiguration::new();
            let nat = VZNATNetworkDeviceAttachment::new();
            net.setAttachment(Some(&nat));
            let net: Retained<VZNetworkDeviceConfiguration> = Retained::into_super(net);
            config.setNetworkDevices(&NSArray::from_retained_slice(&[net]));
        }
        if plan.vsock {
            let vsock: Retained<VZSocketDeviceConfiguration> =
                Retained::into_super(VZVirtioSocketDeviceConfiguration::new());
            config.setSocketDevices(&NSArray::from_retained_slice(&[vsock]));
        }
        let log = VZFileSerialPortAttachment::initWithURL_append_error(
            VZFileSerialPortAttachment::alloc(),
            &file_url(&plan.console_log),
            true,
        )
        .map_err(|e| ns_error(&format!("console log {}", plan.console_log.display()), &e))?;
        let console = VZVirtioConsoleDeviceSerialPortConfiguration::new();
        console.setAttachment(Some(&log));
        let console: Retained<VZSerialPortConfiguration> = Retained::into_super(console);
        config.setSerialPorts(&NSArray::from_retained_slice(&[console]));
        if plan.entropy {
            let e: Retained<VZEntropyDeviceConfiguration> =
                Retained::into_super(VZVirtioEntropyDeviceConfiguration::new());
            config.setEntropyDevices(&NSArray::from_retained_slice(&[e]));
        }
        if plan.balloon {
            let b: Retained<VZMemoryBalloonDeviceConfiguration> =
                Retained::into_super(VZVirtioTraditionalMemoryBalloonDeviceConfiguration::new());
            config.setMemoryBalloonDevices(&NSArray::from_retained_slice(&[b]));
        }
        config.validateWithError().map_err(|e| ns_error("the machine is not valid", &e))?;
        Ok(config)
    }
}
