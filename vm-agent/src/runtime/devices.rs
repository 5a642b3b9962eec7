//! Device access control for cgroup v2: an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program allowing
//! exactly Docker's default device list, attached to the container's cgroup (cgroup v2 has no
//! `devices.allow` file). Without it, a container holding CAP_MKNOD could create and open any
//! device node — e.g. the VM's data disk.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One allowed (type, major, minor, access) rule; `None` is a wildcard.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `b'c'` or `b'b'`.
    pub kind: u8,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
}

const RWM: u32 = 7;

/// Docker's default allow-list.
pub fn docker_defaults() -> Vec<Rule> {
    let c = |major, minor, access| Rule { kind: b'c', major, minor, access };
    vec![
        Rule { kind: b'c', major: None, minor: None, access: 1 },
        Rule { kind: b'b', major: None, minor: None, access: 1 },
        c(Some(1), Some(3), RWM),
        c(Some(1), Some(5), RWM),
        c(Some(1), Some(7), RWM),
        c(Some(1), Some(8), RWM),
        c(Some(1), Some(9), RWM),
        c(Some(5), Some(0), RWM),
        c(Some(5), Some(1), RWM),
        c(Some(5), Some(2), RWM),
        c(Some(136), None, RWM),
    ]
}

/// One eBPF instruction.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

const LDX_W: u8 = 0x61;
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const MOV32_K: u8 = 0xb4;
const MOV32_X: u8 = 0xbc;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

/// Compiles the rules: r2 = device type, r3 = requested access, r4 = major, r5 = minor; each rule
/// returns 1 (allow) when it matches; nothing matching returns 0 (deny).
pub fn compile(rules: &[Rule]) -> Vec<u64> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new(); // (code, dst, src, imm, is_skip_jump)
        let kind = if r.kind == b'b' { 1 } else { 2 };
        block.push((JNE_K, 2, 0, kind, true));
        if r.access != RWM {
            block.push((MOV32_X, 1, 3, 0, false));
            block.push((AND32_K, 1, 0, !(r.access as i32), false));
            block.push((JNE_K, 1, 0, 0, true));
        }
        if let Some(m) = r.major {
            block.push((JNE_K, 4, 0, m as i32, true));
        }
        if let Some(m) = r.minor {
            block.push((JNE_K, 5, 0, m as i32, true));
        }
        block.push((MOV32_K, 0, 0, 1, false));
        block.push((EXIT, 0, 0, 0, false));
        let len = block.len();
        for (i, (code, dst, src, imm, skip)) in block.into_iter().enumerate() {
            // A failed check jumps past the rest of this rule's block.
            let off = if skip { i16::try_from(len - i - 1).unwrap_or(0) } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
    }
    p.push(insn(MOV32_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p.iter()
        .map(|i| {
            u64::from(i.code) | u64::from(i.regs) << 8 | u64::from(i.off as u16) << 16 | u64::from(i.imm as u32) << 32
        })
        .collect()
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    rest: [u8; 96],
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    rest: [u8; 44],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the device program for `rules` and attaches it to the cgroup v2 directory `cgroup`.
pub fn attach(cgroup: &Path, rules: &[Rule]) -> std::io::Result<()> {
    let prog = compile(rules);
    let license = c"Apache-2.0";
    // Load without a verifier log first (a log that overflows its buffer fails the load); only
    // on failure load again with a log, to say why.
    let load = |log: Option<&mut Vec<u8>>| {
        let (level, size, buf) = match log {
            Some(l) => (1, u32::try_from(l.len()).unwrap_or(0), l.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: u32::try_from(prog.len()).unwrap_or(0),
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: level,
            log_size: size,
            log_buf: buf,
            kern_version: 0,
            prog_flags: 0,
            rest: [0; 96],
        };
        // SAFETY: `attr` points at live buffers (instructions, license, log) for the whole call,
        // and its size is what we pass.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        }
    };
    let fd = load(None);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let mut log = vec![0u8; 1 << 20];
        let _ = load(Some(&mut log));
        let msg = String::from_utf8_lossy(&log).trim_end_matches('\0').to_string();
        return Err(std::io::Error::new(err.kind(), format!("loading the device filter: {err}: {msg}")));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) };
    let dir = std::fs::File::open(cgroup)?;
    let attach = AttachAttr {
        target_fd: u32::try_from(dir.as_raw_fd()).unwrap_or(0),
        attach_bpf_fd: u32::try_from(prog_fd.as_raw_fd()).unwrap_or(0),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        rest: [0; 44],
    };
    // SAFETY: as above, for the attach attributes.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const AttachAttr, std::mem::size_of::<AttachAttr>())
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return Err(std::io::Error::new(err.kind(), format!("attaching the device filter: {err}")));
    }
    Ok(())
}
