//! The cgroup v2 eBPF device filter really allows Docker's devices and refuses the rest. Needs
//! root and a cgroup v2 hierarchy (pure, or the hybrid `unified` mount); says so and passes
//! vacuously only where the kernel offers none.

use std::path::PathBuf;
use std::process::Command;

fn v2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.starts_with("cgroup2 ") {
            left.split_whitespace().nth(4).map(PathBuf::from)
        } else {
            None
        }
    })
}

#[test]
fn device_filter_allows_dockers_list_and_denies_other_devices() {
    let Some(root) = v2_root() else {
        eprintln!("no cgroup v2 hierarchy on this host: nothing to attach a device filter to");
        return;
    };
    let cg = root.join(format!("skiff-devtest-{}", std::process::id()));
    std::fs::create_dir_all(&cg).expect("create a v2 cgroup");
    let result = skiff_agent::runtime::devices::attach(&cg, &skiff_agent::runtime::devices::docker_defaults());
    if let Err(e) = &result {
        let _ = std::fs::remove_dir(&cg);
        panic!("attaching the device filter failed: {e}");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let blk = tmp.path().join("blk");
    let script = format!(
        "echo $$ > {procs} && cat /dev/null && echo null-ok; \
         head -c1 /dev/zero >/dev/null && echo zero-ok; \
         mknod {blk} b 7 0 && echo mknod-ok; \
         head -c1 {blk} >/dev/null 2>&1 && echo blk-opened || echo blk-denied",
        procs = cg.join("cgroup.procs").display(),
        blk = blk.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().expect("sh");
    let _ = std::fs::remove_dir(&cg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("null-ok") && text.contains("zero-ok"), "allowed devices must work: {text}");
    assert!(text.contains("mknod-ok"), "mknod is allowed (c/b *:* m): {text}");
    assert!(text.contains("blk-denied"), "opening a block device must be refused: {text}");
}

#[test]
fn compiled_program_has_one_block_per_rule() {
    let rules = skiff_agent::runtime::devices::docker_defaults();
    let prog = skiff_agent::runtime::devices::compile(&rules);
    // 6 loads, then per rule: type check (+3 for an access mask) (+1 per fixed number) + 2, then 2.
    let expected: usize = 6
        + 2
        + rules
            .iter()
            .map(|r| {
                1 + if r.access != 7 { 3 } else { 0 }
                    + usize::from(r.major.is_some())
                    + usize::from(r.minor.is_some())
                    + 2
            })
            .sum::<usize>();
    assert_eq!(prog.len(), expected);
}
