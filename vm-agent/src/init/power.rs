//! Power-off: from the control channel or the ACPI power button (`system_powerdown` in QEMU).
//! Either way containers are stopped, the data disk is synced and unmounted, then the VM powers
//! off.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Asks for a shutdown; the PID-1 main loop carries it out.
#[derive(Debug, Clone)]
pub struct PowerSwitch {
    tx: Arc<watch::Sender<Option<Duration>>>,
}

impl Default for PowerSwitch {
    fn default() -> Self {
        Self { tx: Arc::new(watch::channel(None).0) }
    }
}

impl PowerSwitch {
    /// Requests a shutdown giving containers up to `grace` to stop (the first request wins).
    pub fn request(&self, grace: Duration) {
        self.tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(grace);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the grace period once a shutdown was requested.
    pub async fn requested(&self) -> Duration {
        let mut rx = self.tx.subscribe();
        let grace = rx.wait_for(Option::is_some).await.map(|v| v.unwrap_or_default());
        match grace {
            Ok(g) => g,
            Err(_) => std::future::pending().await,
        }
    }
}

/// `EV_KEY` / `KEY_POWER` from linux/input-event-codes.h.
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit: timeval (16 bytes), type, code (u16 each), value (i32).
const EVENT_SIZE: usize = 24;

/// Watches every input device for the power key (the ACPI button driver reports it there) on
/// its own thread, and requests a shutdown when it is pressed.
pub fn watch_power_button(switch: PowerSwitch, grace: Duration) {
    let Ok(entries) = std::fs::read_dir("/dev/input") else {
        tracing::warn!("no /dev/input: the ACPI power button will not shut the VM down cleanly");
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let path = entry.path();
        let switch = switch.clone();
        let spawned = std::thread::Builder::new().name("power-button".into()).spawn(move || {
            let Ok(mut dev) = std::fs::File::open(&path) else { return };
            let mut ev = [0u8; EVENT_SIZE];
            while dev.read_exact(&mut ev).is_ok() {
                let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                let code = u16::from_ne_bytes([ev[18], ev[19]]);
                let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
                if kind == EV_KEY && code == KEY_POWER && value == 1 {
                    tracing::info!("ACPI power button pressed: shutting down");
                    switch.request(grace);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch an input device");
        }
    }
}

/// Flushes and unmounts the data disk and powers the VM off (containers were stopped before).
pub async fn power_off() -> ! {
    tokio::task::spawn_blocking(super::disk::unmount).await.ok();
    tracing::info!("data disk unmounted; powering off");
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused (it does not for PID 1).
    std::process::exit(1)
}
