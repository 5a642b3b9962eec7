//! The VM's real memory on the host: the proportional set size of its processes, so guest RAM
//! shared between QEMU and its vhost-user helpers (virtiofsd, the vsock device) counts once, and
//! pages the guest has given back (free page reporting) no longer count.

/// The summed PSS of `pids` in bytes; `None` where the OS does not say (only Linux has
/// `/proc/PID/smaps_rollup`) or no process could be read.
pub fn memory_bytes(pids: &[u32]) -> Option<u64> {
    let read: Vec<u64> = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|text| pss_kib(&text))
        .collect();
    (!read.is_empty()).then(|| read.iter().sum::<u64>() * 1024)
}

/// The `Pss:` line of an `smaps_rollup` (kB).
fn pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pss_line() {
        let text = "55d0a0e4e000-7ffd2b5f1000 ---p 00000000 00:00 0 [rollup]\nRss:             1234 kB\n\
                    Pss:              617 kB\nPss_Anon:         100 kB\nShared_Clean:       0 kB\n";
        assert_eq!(pss_kib(text), Some(617));
        assert_eq!(pss_kib("Rss: 1 kB\n"), None);
        assert_eq!(memory_bytes(&[]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory() {
        assert!(memory_bytes(&[std::process::id()]).is_some_and(|b| b > 0));
    }
}
