//! Control-channel messages: one JSON object per line, a [`Request`] from the host answered by one
//! [`Response`] from the agent, in order, on a connection to [`crate::CONTROL_PORT`].

use serde::{Deserialize, Serialize};

/// What the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Answered once the engine serves on [`crate::API_PORT`] (at once if it already does).
    Ready,
    /// Set the guest's wall clock (the host's `CLOCK_REALTIME`, nanoseconds since the epoch).
    SetTime { unix_nanos: i64 },
    /// Guest memory and data-disk usage.
    Stats,
    /// Stop containers (each gets up to `timeout_secs` after its stop signal), sync, unmount the
    /// data disk and power off. Answered before power-off.
    Shutdown { timeout_secs: u32 },
    /// The host folders running containers bind-mount: what the host watches for changes.
    Watched,
    /// Changes the host saw in watched folders, raised in the guest as the file-change events
    /// (inotify, fanotify) a change made in the guest would have raised.
    FsEvents { events: Vec<FsEvent> },
}

/// One change on the host, by absolute path (the same in the guest: shares keep host paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FsEvent {
    /// A file's content changed (and was closed).
    Modified {
        path: String,
    },
    /// Its metadata changed (mode, owner, times).
    Attrib {
        path: String,
    },
    Created {
        path: String,
        dir: bool,
    },
    Deleted {
        path: String,
        dir: bool,
    },
    /// Renamed within the watched folders.
    Moved {
        from: String,
        to: String,
        dir: bool,
    },
}

/// How the agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The engine serves; how long the boot stages took.
    Ready { agent_version: String, kernel: String, boot: BootTimings },
    /// The clock was set; how far it was off before, in milliseconds (guest minus host).
    TimeSet { offset_ms: i64 },
    /// Usage figures.
    Stats(GuestStats),
    /// Shutdown has begun; the VM powers off when it is done.
    ShuttingDown,
    /// The folders to watch (absolute, none inside another).
    Watched { paths: Vec<String> },
    /// How many of the events were raised (a path gone again since is skipped).
    FsEventsRaised { raised: u32 },
    /// The request failed or could not be parsed.
    Error { message: String },
}

/// Milliseconds since the kernel started (`CLOCK_BOOTTIME`) at which each stage finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootTimings {
    /// PID 1 started.
    pub init_ms: u64,
    /// Kernel modules loaded.
    pub modules_ms: u64,
    /// Data disk checked (or formatted) and mounted.
    pub disk_ms: u64,
    /// Network configured.
    pub network_ms: u64,
    /// Engine open and serving.
    pub engine_ms: u64,
}

/// The guest's memory and data-disk usage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestStats {
    pub mem_total: u64,
    /// As `free` reports "used": total minus free, buffers, page cache and reclaimable slab.
    pub mem_used: u64,
    /// Shared memory (the initramfs's files, tmpfs), which `free` counts as cache but which the
    /// guest cannot drop.
    pub mem_shmem: u64,
    pub disk_total: u64,
    pub disk_used: u64,
    pub uptime_ms: u64,
}

/// Encodes one message as a line (with its `\n`).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain enums and structs cannot fail; fall back to an error line anyway.
    let mut line = serde_json::to_vec(msg).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let cases = [
            (Request::Ready, r#"{"op":"ready"}"#),
            (Request::SetTime { unix_nanos: 5 }, r#"{"op":"set_time","unix_nanos":5}"#),
            (Request::Shutdown { timeout_secs: 3 }, r#"{"op":"shutdown","timeout_secs":3}"#),
            (Request::Watched, r#"{"op":"watched"}"#),
            (
                Request::FsEvents {
                    events: vec![
                        FsEvent::Modified { path: "/a/b".into() },
                        FsEvent::Moved { from: "/a/x".into(), to: "/a/y".into(), dir: true },
                    ],
                },
                r#"{"op":"fs_events","events":[{"kind":"modified","path":"/a/b"},{"kind":"moved","from":"/a/x","to":"/a/y","dir":true}]}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(String::from_utf8_lossy(&encode(&req)).trim_end(), json);
            assert_eq!(serde_json::from_str::<Request>(json).ok(), Some(req));
        }
    }

    #[test]
    fn unknown_ops_and_bad_fields_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"shutdown","timeout_secs":1,"x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"set_time","unix_nanos":"soon"}"#).is_err());
    }
}
