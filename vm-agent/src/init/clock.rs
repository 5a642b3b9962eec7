//! The guest's wall clock. The RTC gives the host's time to the second at boot; the host daemon
//! then sets it exactly over the control channel (and again after the host slept).

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_settime, ClockId};

use super::SetupError;

fn nanos(ts: TimeSpec) -> i128 {
    i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec())
}

/// Sets `CLOCK_REALTIME` to `unix_nanos`; returns how far the guest was off (guest − host, ms).
pub fn set(unix_nanos: i64) -> Result<i64, SetupError> {
    let unix_nanos = i128::from(unix_nanos);
    let before = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| SetupError::sys("clock_gettime", e))?;
    let secs = i64::try_from(unix_nanos.div_euclid(1_000_000_000))
        .map_err(|_| SetupError::Clock(format!("time out of range: {unix_nanos}")))?;
    let sub = i64::try_from(unix_nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    clock_settime(ClockId::CLOCK_REALTIME, TimeSpec::new(secs, sub))
        .map_err(|e| SetupError::sys("clock_settime", e))?;
    Ok(i64::try_from((nanos(before) - unix_nanos) / 1_000_000).unwrap_or(i64::MAX))
}

/// Milliseconds since the kernel started.
pub fn boot_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map(|t| u64::try_from(nanos(t) / 1_000_000).unwrap_or(0)).unwrap_or(0)
}
