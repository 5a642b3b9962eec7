//! Choosing the hardware accelerator: probe, don't assume. `/dev/kvm` can exist and still hang
//! every guest (broken nested virtualisation), so KVM is tried on a few instructions of real guest
//! code in a child process with a deadline, and the verdict is cached for this host boot.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the user asked for (`skiff start --accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    Auto,
    Kvm,
    Hvf,
    Whpx,
    Tcg,
}

/// The accelerator QEMU will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Hvf,
    Whpx,
    Tcg,
}

impl Accel {
    /// QEMU's `-accel` value.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Whpx => "whpx",
            Accel::Tcg => "tcg",
        }
    }
}

/// The outcome of probing: the accelerator and, when it is TCG by necessity, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub accel: Accel,
    pub notice: Option<String>,
    /// Chosen by `auto`: if the guest then fails to start under it, fall back to TCG.
    pub fallback_allowed: bool,
}

impl Decision {
    /// TCG after a hardware accelerator failed for `why`.
    pub fn tcg_because(accel: Accel, why: &str) -> Self {
        Decision {
            accel: Accel::Tcg,
            notice: Some(format!(
                "no hardware acceleration ({} {why}); using TCG software emulation, which is several times slower",
                accel.qemu_name().to_uppercase()
            )),
            fallback_allowed: false,
        }
    }
}

/// How long the KVM test guest may take before KVM counts as hanging.
const KVM_PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// Picks the accelerator for a guest of `arch`: the host's own architecture as [`decide`]
/// does; another one only under emulation (TCG), with a notice saying so.
pub fn decide_for(
    arch: crate::arch::GuestArch,
    choice: AccelChoice,
    probe_exe: &Path,
    cache: &Path,
) -> Result<Decision, String> {
    if arch.is_native() {
        return decide(choice, probe_exe, cache);
    }
    let host = crate::arch::GuestArch::host();
    match choice {
        AccelChoice::Auto | AccelChoice::Tcg => Ok(Decision {
            accel: Accel::Tcg,
            notice: Some(format!(
                "an {arch} guest on an {host} host runs emulated (TCG): expect it to be several times slower than an {host} guest"
            )),
            fallback_allowed: false,
        }),
        other => Err(format!(
            "--accel {}: a hardware accelerator runs only {host} guests here; an {arch} guest needs --accel tcg (or auto)",
            format!("{other:?}").to_lowercase()
        )),
    }
}

/// Picks the accelerator for `choice`; `probe_exe` is the `skiff` binary (re-executed to run the
/// KVM test guest in a child that can be killed if it hangs).
pub fn decide(choice: AccelChoice, probe_exe: &Path, cache: &Path) -> Result<Decision, String> {
    match choice {
        AccelChoice::Tcg => Ok(Decision { accel: Accel::Tcg, notice: None, fallback_allowed: false }),
        AccelChoice::Kvm => match probe_kvm_cached(probe_exe, cache) {
            Ok(()) => Ok(Decision { accel: Accel::Kvm, notice: None, fallback_allowed: false }),
            Err(why) => Err(format!("--accel kvm: KVM does not work here: it {why}")),
        },
        AccelChoice::Hvf => probe_hvf().map(|()| Decision { accel: Accel::Hvf, notice: None, fallback_allowed: false }),
        AccelChoice::Whpx => {
            probe_whpx().map(|()| Decision { accel: Accel::Whpx, notice: None, fallback_allowed: false })
        }
        AccelChoice::Auto => {
            let attempts: [(Accel, Result<(), String>); 1] = if cfg!(target_os = "linux") {
                [(Accel::Kvm, probe_kvm_cached(probe_exe, cache))]
            } else if cfg!(target_os = "macos") {
                [(Accel::Hvf, probe_hvf())]
            } else {
                [(Accel::Whpx, probe_whpx())]
            };
            let [(accel, outcome)] = attempts;
            match outcome {
                Ok(()) => Ok(Decision { accel, notice: None, fallback_allowed: true }),
                Err(why) => Ok(Decision::tcg_because(accel, &why)),
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    boot_id: String,
    kvm: Result<(), String>,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_owned()
}

fn probe_kvm_cached(probe_exe: &Path, cache: &Path) -> Result<(), String> {
    let id = boot_id();
    if let Some(hit) = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<CachedProbe>(&b).ok())
        .filter(|c| !id.is_empty() && c.boot_id == id)
    {
        return hit.kvm;
    }
    let kvm = probe_kvm(probe_exe);
    if let Ok(json) = serde_json::to_vec(&CachedProbe { boot_id: id, kvm: kvm.clone() }) {
        let _ = std::fs::write(cache, json);
    }
    kvm
}

/// Remembers for this host boot that KVM failed a real guest boot (the quick test guest can pass
/// where a full kernel hangs), so later starts go straight to TCG.
pub fn record_kvm_failure(cache: &Path, why: &str) {
    if let Ok(json) = serde_json::to_vec(&CachedProbe { boot_id: boot_id(), kvm: Err(why.to_owned()) }) {
        let _ = std::fs::write(cache, json);
    }
}

/// Runs `probe_exe __probe-kvm` and waits for it up to the deadline.
fn probe_kvm(probe_exe: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("is not available: no /dev/kvm".into());
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("is not usable: /dev/kvm: {e}"));
    }
    let mut child = std::process::Command::new(probe_exe)
        .arg("__probe-kvm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not be probed: {e}"))?;
    let deadline = Instant::now() + KVM_PROBE_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut msg = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut msg);
                }
                return Err(format!("failed a test guest: {}", msg.trim()));
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "hangs: a test guest did not finish in {} s (broken nested virtualisation?)",
                    KVM_PROBE_DEADLINE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not be probed: {e}")),
        }
    }
}

fn probe_hvf() -> Result<(), String> {
    if !cfg!(target_os = "macos") {
        return Err("is only on macOS".into());
    }
    let out = std::process::Command::new("sysctl").args(["-n", "kern.hv_support"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "1" => Ok(()),
        _ => Err("is not supported by this Mac (kern.hv_support is not 1)".into()),
    }
}

fn probe_whpx() -> Result<(), String> {
    if !cfg!(target_os = "windows") {
        return Err("is only on Windows".into());
    }
    let out = std::process::Command::new("qemu-system-x86_64").args(["-accel", "help"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("whpx") => Ok(()),
        _ => Err("is not available (enable the Windows Hypervisor Platform feature)".into()),
    }
}

/// The child side of the KVM probe: a real-mode guest that writes one byte to a port and halts.
/// Returns when the guest did both; hangs where KVM hangs (the parent kills it then).
#[cfg(target_os = "linux")]
pub fn run_kvm_test_guest() -> Result<(), String> {
    use kvm_ioctls::{Kvm, VcpuExit};
    // mov dx, 0x3f8; mov al, 'S'; out dx, al; hlt
    const CODE: [u8; 7] = [0xba, 0xf8, 0x03, 0xb0, b'S', 0xee, 0xf4];
    const GUEST_ADDR: u64 = 0x1000;
    const SIZE: usize = 0x1000;
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // SAFETY: an anonymous private mapping of SIZE bytes; checked for MAP_FAILED below and never
    // unmapped while the VM (which this process exits right after) uses it.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `mem` is a fresh writable mapping of SIZE >= CODE.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(CODE.as_ptr(), mem.cast::<u8>(), CODE.len()) };
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: SIZE as u64,
        userspace_addr: mem as u64,
        flags: 0,
    };
    // SAFETY: the region describes the mapping above, which outlives the VM.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let regs = kvm_bindings::kvm_regs { rip: GUEST_ADDR, rflags: 2, ..Default::default() };
    vcpu.set_regs(&regs).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let mut wrote = false;
    loop {
        match vcpu.run().map_err(|e| format!("KVM_RUN: {e}"))? {
            VcpuExit::IoOut(0x3f8, data) if data == [b'S'] => wrote = true,
            VcpuExit::Hlt if wrote => return Ok(()),
            other => return Err(format!("unexpected exit {other:?}")),
        }
    }
}

/// No KVM outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn run_kvm_test_guest() -> Result<(), String> {
    Err("KVM exists only on Linux".into())
}
