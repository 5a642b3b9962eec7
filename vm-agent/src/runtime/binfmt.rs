//! Foreign-architecture containers: QEMU's user-mode emulators registered with the kernel's
//! binfmt_misc, so an arm64 image runs on an amd64 engine and the other way round. Each handler
//! is registered with the F (fix-binary) flag: the kernel opens the emulator once, here, so it
//! works inside every container's mount namespace without being in the image. P (preserve argv[0],
//! which QEMU reads from AT_FLAGS) keeps programs that look at their own name working — busybox's
//! shell runs its applets as `/proc/self/exe` with the applet's name; C (credentials) and O
//! (open-binary) keep setuid programs and unreadable binaries working as natively.
//!
//! The agent registers what it finds when it starts (natively as root, or as the VM's init with
//! the emulators in the guest image); handlers someone else registered are left alone. On Apple
//! silicon under Virtualization.framework, Apple's Rosetta (shared into the guest over virtio-fs)
//! runs amd64 binaries instead of QEMU, registered as Apple documents it.

use std::path::{Path, PathBuf};

/// Where binfmt_misc lives.
const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
/// Where the emulators are looked for, in order (`{}`: QEMU's architecture name).
const EMULATORS: &[&str] =
    &["/usr/libexec/skiff/qemu-{}-static", "/usr/bin/qemu-{}-static", "/usr/local/bin/qemu-{}-static"];

/// The handler flags (see the module's comment); P needs a kernel that passes AT_FLAGS (5.12).
const FLAGS: &str = "POCF";
const FLAGS_WITHOUT_P: &str = "OCF";

/// Rosetta's handler, registered as Apple's documentation does (`update-binfmts --install rosetta
/// … --credentials yes --preserve no --fix-binary yes`).
const ROSETTA_HANDLER: &str = "rosetta";
const ROSETTA_FLAGS: &str = "CF";

/// The flags this kernel supports.
fn flags() -> &'static str {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let mut nums = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) >= (5, 12) {
        FLAGS
    } else {
        FLAGS_WITHOUT_P
    }
}

/// One architecture's ELF signature (magic and mask over the first 20 bytes, as QEMU's
/// `qemu-binfmt-conf.sh` gives them).
struct Signature {
    /// OCI's name (`arm64`).
    oci: &'static str,
    /// QEMU's and the kernel's name (`aarch64`).
    qemu: &'static str,
    magic: &'static [u8; 20],
    mask: &'static [u8; 20],
}

const ELF64_MASK: &[u8; 20] = b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

const SIGNATURES: &[Signature] = &[
    Signature {
        oci: "arm64",
        qemu: "aarch64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask: ELF64_MASK,
    },
    Signature {
        oci: "amd64",
        qemu: "x86_64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        mask: b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Signature {
        oci: "arm",
        qemu: "arm",
        magic: b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask: b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Signature {
        oci: "riscv64",
        qemu: "riscv64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        mask: ELF64_MASK,
    },
];

/// The architecture (OCI's name) this engine runs natively.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// OCI's architecture names as the engine compares them (`aarch64` → `arm64`, `x86_64` → `amd64`).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "aarch64" => "arm64",
        "x86_64" | "x86-64" => "amd64",
        "armhf" | "armel" => "arm",
        other => other,
    }
}

/// The handler name the agent registers for `qemu_arch`.
fn handler(qemu_arch: &str) -> String {
    format!("skiff-qemu-{qemu_arch}")
}

/// The emulator for `qemu_arch` found on this system.
fn emulator(qemu_arch: &str) -> Option<PathBuf> {
    EMULATORS.iter().map(|p| PathBuf::from(p.replace("{}", qemu_arch))).find(|p| p.is_file())
}

/// The line written to `register`: `:name:M::magic:mask:interpreter:flags`, bytes as `\xHH`.
fn register_line(name: &str, sig: &Signature, interpreter: &Path, flags: &str) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
    format!(":{name}:M::{}:{}:{}:{flags}", hex(sig.magic), hex(sig.mask), interpreter.display())
}

/// Mounts binfmt_misc where it is not mounted yet.
fn mount_binfmt() -> std::io::Result<()> {
    if Path::new(BINFMT).join("register").exists() {
        return Ok(());
    }
    nix::mount::mount(Some("binfmt_misc"), BINFMT, Some("binfmt_misc"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(std::io::Error::from)
}

/// Registers an emulator for every foreign architecture that has one on this system and no
/// handler yet. Returns the architectures (OCI names) now runnable through emulation.
pub fn register_emulators() -> Vec<&'static str> {
    if let Err(e) = mount_binfmt() {
        tracing::info!(error = %e, "binfmt_misc is not available: foreign-architecture images will not run");
        return Vec::new();
    }
    let mut runnable = Vec::new();
    for sig in SIGNATURES.iter().filter(|s| s.oci != host_arch()) {
        // Ours from an earlier version with other flags: replaced.
        let ours = Path::new(BINFMT).join(handler(sig.qemu));
        if std::fs::read_to_string(&ours).is_ok_and(|s| !s.lines().any(|l| l == format!("flags: {}", flags()))) {
            let _ = std::fs::write(&ours, "-1");
        }
        if handled(sig) {
            runnable.push(sig.oci);
            continue;
        }
        let Some(interpreter) = emulator(sig.qemu) else { continue };
        let line = register_line(&handler(sig.qemu), sig, &interpreter, flags());
        match std::fs::write(Path::new(BINFMT).join("register"), line) {
            Ok(()) => {
                tracing::info!(arch = sig.oci, emulator = %interpreter.display(), "registered an emulator");
                runnable.push(sig.oci);
            }
            Err(e) => tracing::warn!(arch = sig.oci, error = %e, "registering an emulator"),
        }
    }
    runnable
}

/// Registers Rosetta (`dir/rosetta`, from its virtio-fs share) for amd64 binaries, before
/// [`register_emulators`] so QEMU is not registered for them. Returns whether Rosetta now runs them.
pub fn register_rosetta(dir: &Path) -> bool {
    let interpreter = dir.join("rosetta");
    if !interpreter.is_file() {
        tracing::warn!(path = %interpreter.display(), "the Rosetta share has no rosetta binary: amd64 images run under QEMU");
        return false;
    }
    if let Err(e) = mount_binfmt() {
        tracing::warn!(error = %e, "binfmt_misc is not available: Rosetta cannot be used");
        return false;
    }
    let Some(sig) = SIGNATURES.iter().find(|s| s.oci == "amd64") else { return false };
    // A handler left by an earlier boot of this guest names the same path; replaced all the same.
    let _ = std::fs::write(Path::new(BINFMT).join(ROSETTA_HANDLER), "-1");
    let line = register_line(ROSETTA_HANDLER, sig, &interpreter, ROSETTA_FLAGS);
    match std::fs::write(Path::new(BINFMT).join("register"), line) {
        Ok(()) => {
            tracing::info!(rosetta = %interpreter.display(), "amd64 binaries run under Rosetta");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "registering Rosetta: amd64 images run under QEMU");
            false
        }
    }
}

/// The handler names that run `sig`'s binaries: ours, the system's `qemu-<arch>`, and for amd64
/// Rosetta's.
fn handler_names(sig: &Signature) -> Vec<String> {
    let mut names = vec![handler(sig.qemu), format!("qemu-{}", sig.qemu)];
    if sig.oci == "amd64" {
        names.push(ROSETTA_HANDLER.to_string());
    }
    names
}

/// Whether an enabled handler (see [`handler_names`]) runs `sig`'s binaries.
fn handled(sig: &Signature) -> bool {
    // A handler without F would look for its interpreter inside each container: not usable.
    handler_names(sig).iter().any(|name| {
        std::fs::read_to_string(Path::new(BINFMT).join(name)).is_ok_and(|s| {
            s.lines().next() == Some("enabled")
                && s.lines().any(|l| l.strip_prefix("flags: ").is_some_and(|f| f.contains('F')))
        })
    })
}

/// Whether the CPU runs `arch` itself: the host's, and the 32-bit ones it has a mode for.
fn native(arch: &str) -> bool {
    arch == host_arch() || matches!((host_arch(), arch), ("amd64", "386") | ("arm64", "arm"))
}

/// Whether this engine can run binaries of `arch` (OCI's name, `""`: unknown, assumed native).
pub fn can_run(arch: &str) -> bool {
    let arch = normalize_arch(arch);
    if arch.is_empty() || native(arch) {
        return true;
    }
    SIGNATURES.iter().find(|s| s.oci == arch).is_some_and(handled)
}

/// Why `arch` cannot run here, and what to do about it.
pub fn cannot_run_message(os: &str, arch: &str) -> String {
    let os = if os.is_empty() { "linux" } else { os };
    let qemu = SIGNATURES.iter().find(|s| s.oci == normalize_arch(arch)).map_or(arch, |s| s.qemu);
    format!(
        "exec format error: the image is for {os}/{arch} and this engine runs {os}/{host} with no emulator for {arch}: \
         install qemu-user-static (apt-get install qemu-user-static, which provides /usr/bin/qemu-{qemu}-static) \
         and restart the engine",
        host = host_arch(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_line_has_the_kernels_format() {
        let line =
            register_line("skiff-qemu-aarch64", &SIGNATURES[0], Path::new("/usr/bin/qemu-aarch64-static"), FLAGS);
        assert!(line.starts_with(":skiff-qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02"), "{line}");
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:POCF"), "{line}");
        assert_eq!(line.matches("\\x").count(), 40);
    }

    #[test]
    fn rosetta_is_registered_as_apple_documents_it_and_counts_for_amd64() {
        let amd64 = SIGNATURES.iter().find(|s| s.oci == "amd64").expect("amd64 signature");
        let line = register_line(ROSETTA_HANDLER, amd64, Path::new("/run/skiff/rosetta/rosetta"), ROSETTA_FLAGS);
        // Apple's magic and mask for x86-64 ELF executables (update-binfmts --magic/--mask).
        let magic =
            "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00";
        let mask =
            "\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff";
        assert_eq!(line, format!(":rosetta:M::{magic}:{mask}:/run/skiff/rosetta/rosetta:CF"));
        assert!(handler_names(amd64).contains(&"rosetta".to_string()));
        assert!(!handler_names(&SIGNATURES[0]).contains(&"rosetta".to_string()));
    }

    #[test]
    fn names_are_normalized_and_the_host_always_runs() {
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("x86_64"), "amd64");
        assert!(can_run(host_arch()));
        assert!(can_run(""));
        assert!(!can_run("mips64le-unknown"));
        let m = cannot_run_message("linux", "arm64");
        assert!(m.contains("linux/arm64") && m.contains("qemu-user-static"), "{m}");
    }
}
