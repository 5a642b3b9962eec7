//! Compiles the spec's OCI seccomp section into BPF with `seccompiler` (pure Rust, no libseccomp)
//! and installs it as the last step before `execve`.
//!
//! The engine generates Docker's default policy in deny-list form (see `engine::containers::spec`):
//! everything Docker's allow-list leaves out is refused with `EPERM` (or `ENOSYS` for `clone3`, so
//! libc falls back to `clone`), and `clone` with namespace flags is refused.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator, Spec};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::LaunchError;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// The syscall number for `SYS_<name>` on this architecture, for the syscalls our policies name.
fn lookup(sys: &str) -> Option<i64> {
    macro_rules! t {
        ($($n:ident),* $(,)?) => {
            match sys { $(stringify!($n) => Some(libc::$n),)* _ => None }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(n) = t!(SYS_iopl, SYS_ioperm, SYS_uselib, SYS_ustat, SYS_sysfs, SYS__sysctl, SYS_nfsservctl) {
            return Some(n);
        }
    }
    t!(
        SYS_acct,
        SYS_add_key,
        SYS_bpf,
        SYS_clock_adjtime,
        SYS_clock_settime,
        SYS_clone,
        SYS_clone3,
        SYS_delete_module,
        SYS_finit_module,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fsopen,
        SYS_fspick,
        SYS_init_module,
        SYS_kcmp,
        SYS_kexec_file_load,
        SYS_kexec_load,
        SYS_keyctl,
        SYS_lookup_dcookie,
        SYS_mount,
        SYS_mount_setattr,
        SYS_move_mount,
        SYS_name_to_handle_at,
        SYS_open_by_handle_at,
        SYS_open_tree,
        SYS_perf_event_open,
        SYS_pivot_root,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_ptrace,
        SYS_quotactl,
        SYS_reboot,
        SYS_request_key,
        SYS_setns,
        SYS_settimeofday,
        SYS_swapoff,
        SYS_swapon,
        SYS_syslog,
        SYS_umount2,
        SYS_unshare,
        SYS_userfaultfd,
        SYS_vhangup,
        SYS_adjtimex,
        SYS_fanotify_init,
        SYS_personality,
        SYS_move_pages,
        SYS_mbind,
        SYS_get_mempolicy,
        SYS_set_mempolicy,
        SYS_io_uring_setup,
    )
}

/// Installs the spec's seccomp filters (no-op without a seccomp section). With `no_new_privs`
/// the kernel's no-new-privileges bit is set first (any process may then install a filter);
/// without it the caller must still hold CAP_SYS_ADMIN, i.e. call this before dropping
/// privileges, as runc does, so setuid programs keep working in the container.
pub fn apply(spec: &Spec, no_new_privs: bool) -> Result<(), LaunchError> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else { return Ok(()) };
    if sc.default_action() != LinuxSeccompAction::ScmpActAllow {
        return Err(LaunchError::other("only deny-list seccomp profiles (defaultAction SCMP_ACT_ALLOW) are supported"));
    }
    // One filter per errno: the kernel applies the most restrictive verdict of all filters.
    let mut by_errno: BTreeMap<u32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for group in sc.syscalls().clone().unwrap_or_default() {
        if group.action() != LinuxSeccompAction::ScmpActErrno {
            return Err(LaunchError::other(format!("unsupported seccomp action {:?}", group.action())));
        }
        let errno = group.errno_ret().unwrap_or(libc::EPERM as u32);
        let mut conditions = Vec::new();
        for a in group.args().clone().unwrap_or_default() {
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(a.value()),
                LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
                LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
                other => return Err(LaunchError::other(format!("unsupported seccomp operator {other:?}"))),
            };
            let value = if matches!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq) {
                a.value_two().unwrap_or(0)
            } else {
                a.value()
            };
            let idx = u8::try_from(a.index()).map_err(|_| LaunchError::other("seccomp argument index out of range"))?;
            conditions.push(
                SeccompCondition::new(idx, SeccompCmpArgLen::Qword, op, value)
                    .map_err(|e| LaunchError::other(format!("seccomp condition: {e}")))?,
            );
        }
        for name in group.names() {
            let Some(nr) = lookup(&format!("SYS_{name}")) else { continue };
            let rules = by_errno.entry(errno).or_default().entry(nr).or_default();
            if !conditions.is_empty() {
                rules.push(
                    SeccompRule::new(conditions.clone())
                        .map_err(|e| LaunchError::other(format!("seccomp rule: {e}")))?,
                );
            }
        }
    }
    for (errno, rules) in by_errno {
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), ARCH)
            .map_err(|e| LaunchError::other(format!("seccomp filter: {e}")))?;
        let prog: seccompiler::BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| LaunchError::other(format!("seccomp compile: {e}")))?;
        if no_new_privs {
            seccompiler::apply_filter(&prog)
                .map_err(|e| LaunchError::other(format!("installing seccomp filter: {e}")))?;
        } else {
            install_privileged(&prog)?;
        }
    }
    Ok(())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER)` without setting no-new-privileges (needs CAP_SYS_ADMIN).
fn install_privileged(prog: &seccompiler::BpfProgram) -> Result<(), LaunchError> {
    let len = u16::try_from(prog.len()).map_err(|_| LaunchError::other("seccomp filter too long"))?;
    // `seccompiler::sock_filter` is `#[repr(C)]` with the kernel's layout, as `libc::sock_filter`.
    let fprog = libc::sock_fprog { len, filter: prog.as_ptr().cast::<libc::sock_filter>().cast_mut() };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, std::ptr::addr_of!(fprog)) };
    if rc != 0 {
        return Err(LaunchError::sys("installing seccomp filter", nix::errno::Errno::last()));
    }
    Ok(())
}
