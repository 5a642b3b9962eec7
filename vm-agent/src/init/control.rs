//! The control channel: JSON lines on vsock [`skiff_proto::CONTROL_PORT`], thin handlers over the
//! init functions.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use skiff_proto::control::{BootTimings, GuestStats, Request, Response};
use skiff_proto::jsonl::JsonLines;
use tokio::sync::watch;
use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY, VMADDR_CID_HOST};

use super::power::PowerSwitch;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct Control {
    /// `Some` once the engine serves.
    pub ready: watch::Receiver<Option<BootTimings>>,
    pub power: PowerSwitch,
    /// The engine, once open (what containers bind-mount, for [`Request::Watched`]).
    pub engine: Arc<OnceLock<Arc<crate::engine::Engine>>>,
}

/// Binds the control port and serves it for the VM's lifetime.
pub fn listen(control: Control) -> std::io::Result<()> {
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, skiff_proto::CONTROL_PORT))?;
    let control = Arc::new(control);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, control.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(())
}

/// Dials the host daemon (host CID, `port`) and serves the control protocol
/// on that connection: the host learns the guest is up the moment it connects, without probing
/// ports the guest may not listen on yet. Redials if the host goes away.
pub fn dial_host(control: Control, port: u32) {
    let control = Arc::new(control);
    tokio::spawn(async move {
        loop {
            match VsockStream::connect(VsockAddr::new(VMADDR_CID_HOST, port)).await {
                Ok(stream) => {
                    tracing::debug!("control channel to the host open");
                    serve(stream, control.clone()).await;
                }
                Err(e) => tracing::debug!(error = %e, "host control port not reachable yet"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn serve(stream: VsockStream, control: Arc<Control>) {
    let mut channel = JsonLines::new(stream);
    while let Some(request) = channel.next::<Request>().await {
        let response = match request {
            Ok(req) => handle(req, &control).await,
            Err(e) => Response::Error { message: format!("bad control request: {e}") },
        };
        if channel.send(&response).await.is_err() {
            return;
        }
    }
}

async fn handle(req: Request, control: &Control) -> Response {
    match req {
        Request::Ready => {
            let mut ready = control.ready.clone();
            let timings = ready.wait_for(Option::is_some).await.map(|t| t.clone().unwrap_or_default());
            match timings {
                Ok(boot) => Response::Ready {
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                    kernel: nix::sys::utsname::uname()
                        .map(|u| u.release().to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    boot,
                },
                Err(_) => Response::Error { message: "the engine failed to start; see `skiff logs`".into() },
            }
        }
        Request::SetTime { unix_nanos } => match super::clock::set(unix_nanos) {
            Ok(offset_ms) => Response::TimeSet { offset_ms },
            Err(e) => Response::Error { message: e.to_string() },
        },
        Request::Stats => Response::Stats(stats()),
        Request::Shutdown { timeout_secs } => {
            control.power.request(Duration::from_secs(u64::from(timeout_secs)));
            Response::ShuttingDown
        }
        Request::Watched => Response::Watched {
            paths: control
                .engine
                .get()
                .map(|e| super::host_events::watched(e, super::shares::mounted()))
                .unwrap_or_default(),
        },
        Request::FsEvents { events } => {
            let raised = tokio::task::spawn_blocking(move || super::host_events::raise(&events)).await.unwrap_or(0);
            Response::FsEventsRaised { raised }
        }
    }
}

fn stats() -> GuestStats {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // As `free` counts it: total − free − buffers − page cache − reclaimable slab.
    let total = field("MemTotal:");
    let reclaimable = field("MemFree:") + field("Buffers:") + field("Cached:") + field("SReclaimable:");
    let (disk_total, disk_used) = nix::sys::statvfs::statvfs(super::disk::MOUNT_POINT)
        .map(|s| {
            let total = s.blocks() * s.fragment_size();
            (total, total.saturating_sub(s.blocks_free() * s.fragment_size()))
        })
        .unwrap_or((0, 0));
    GuestStats {
        mem_total: total,
        mem_used: total.saturating_sub(reclaimable),
        mem_shmem: field("Shmem:"),
        disk_total,
        disk_used,
        uptime_ms: super::clock::boot_ms(),
    }
}
