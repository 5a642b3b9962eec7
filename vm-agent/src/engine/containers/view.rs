//! Read-only views of containers: `ps` summaries with filters, `inspect`, and log selection.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, DriverData,
};

use super::io::{Chunk, STDERR, STDOUT};
use super::record::{ContainerRecord, Status};
use super::Container;
use crate::engine::filters::Filters;
use crate::engine::{images, Engine, EngineError};

fn unix(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map(|t| t.timestamp()).unwrap_or(0)
}

/// Docker's "Up 3 minutes" / "Exited (0) 2 seconds ago".
fn human_since(ts: &str) -> String {
    let secs = chrono::Utc::now().timestamp() - unix(ts);
    match secs {
        s if s < 1 => "Less than a second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 3600 => format!("{} minutes", s / 60).replace("1 minutes", "About a minute"),
        s if s < 86400 => format!("{} hours", s / 3600).replace("1 hours", "About an hour"),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(r: &ContainerRecord) -> String {
    match r.state.status {
        Status::Running => {
            let health = match r.state.health.as_ref().map(|h| h.status) {
                Some(super::health::HealthStatus::Starting) => " (health: starting)",
                Some(super::health::HealthStatus::Healthy) => " (healthy)",
                Some(super::health::HealthStatus::Unhealthy) => " (unhealthy)",
                None => "",
            };
            format!("Up {}{health}", human_since(&r.state.started_at))
        }
        Status::Paused => format!("Up {} (Paused)", human_since(&r.state.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", r.state.exit_code, human_since(&r.state.finished_at)),
        Status::Created => "Created".into(),
        Status::Restarting => "Restarting".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

fn inspect_state(s: Status) -> ContainerStateStatusEnum {
    match s {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

fn matches(engine: &Engine, f: &Filters, r: &ContainerRecord) -> Result<bool, EngineError> {
    let any = |key: &str, ok: &dyn Fn(&str) -> bool| f.get(key).is_empty() || f.get(key).iter().any(|v| ok(v));
    let ancestor_ok = any("ancestor", &|v| {
        r.image == v || images::resolve(engine, v).map(|i| i.record.id == r.image_id).unwrap_or(false)
    });
    // before/since name another container: compare creation times.
    let created_of = |name: &str| -> Result<String, EngineError> { Ok(engine.containers.get(name)?.record().created) };
    let mut in_window = true;
    for v in f.get("before") {
        in_window &= r.created < created_of(v)?;
    }
    for v in f.get("since") {
        in_window &= r.created > created_of(v)?;
    }
    let networks: Vec<String> = r.networks.iter().flat_map(|(name, e)| [name.clone(), e.network_id.clone()]).collect();
    let mode = r.host_config.network_mode.clone().unwrap_or_default();
    let port_ok = |v: &str, published: bool| {
        let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
        let (lo, hi) = port.split_once('-').unwrap_or((port, port));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else { return false };
        if published {
            r.ports.iter().any(|p| p.proto.as_str() == proto && (lo..=hi).contains(&p.host_port))
        } else {
            r.config.exposed_ports.iter().flatten().any(|e| {
                let (ep, eproto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
                eproto == proto && ep.parse::<u16>().is_ok_and(|p| (lo..=hi).contains(&p))
            })
        }
    };
    let mounts = &r.mounts;
    Ok(in_window
        && any("status", &|v| v == r.state.status.as_str())
        && any("name", &|v| name_matches(v, &r.name))
        && any("id", &|v| r.id.starts_with(v))
        && any("exited", &|v| r.state.status == Status::Exited && v.parse::<i32>().ok() == Some(r.state.exit_code))
        && ancestor_ok
        && any("network", &|v| networks.iter().any(|n| n == v || (v.len() >= 12 && n.starts_with(v))) || v == mode)
        && any("volume", &|v| mounts.iter().any(|m| m.name.as_deref() == Some(v) || m.destination == v))
        && any("publish", &|v| port_ok(v, true))
        && any("expose", &|v| port_ok(v, false))
        && any("health", &|v| v == health_name(r))
        && any("is-task", &|v| v == "false")
        && f.labels_match("label", r.config.labels.as_ref()))
}

/// `GET /containers/json`.
pub fn list(
    engine: &Engine,
    all: bool,
    limit: Option<usize>,
    filters: &Filters,
    with_size: bool,
) -> Result<Vec<ContainerSummary>, EngineError> {
    for s in filters.get("status") {
        if !["created", "restarting", "running", "removing", "paused", "exited", "dead"].contains(&s.as_str()) {
            return Err(EngineError::InvalidArgument(format!("invalid filter 'status={s}'")));
        }
    }
    let mut recs: Vec<ContainerRecord> = engine.containers.all().iter().map(|c| c.record()).collect();
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    // A limit counts stopped containers too, as Docker's does.
    let show_all = all || limit.is_some() || !filters.get("status").is_empty() || !filters.get("exited").is_empty();
    let links = super::links::LinkNames::collect(engine);
    let mut out = Vec::new();
    for r in recs {
        if !show_all && !matches!(r.state.status, Status::Running | Status::Paused | Status::Restarting) {
            continue;
        }
        if !matches(engine, filters, &r)? {
            continue;
        }
        out.push(ContainerSummary {
            id: Some(r.id.clone()),
            names: Some(std::iter::once(format!("/{}", r.name)).chain(links.of(&r)).collect()),
            image: Some(r.image.clone()),
            image_id: Some(r.image_id.to_string()),
            command: Some(r.args.join(" ")),
            created: Some(unix(&r.created)),
            ports: Some(super::network::port_summaries(&r)),
            labels: Some(r.config.labels.clone().unwrap_or_default()),
            state: Some(summary_state(r.state.status)),
            status: Some(status_text(&r)),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: Some(
                    r.host_config.network_mode.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "bridge".into()),
                ),
                ..Default::default()
            }),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(super::network::summary_networks(&r)),
            }),
            mounts: Some(super::mounts::mount_points(&r.mounts)),
            size_rw: with_size.then(|| super::archive::upper_size(&engine.containers.dir_of(&r.id))),
            ..Default::default()
        });
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

/// The host config as Docker reports it: what was asked for, with the daemon's defaults filled in.
fn with_defaults(mut h: bollard_stubs::models::HostConfig) -> bollard_stubs::models::HostConfig {
    use bollard_stubs::models::{HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
    let lc = h.log_config.get_or_insert(HostConfigLogConfig { typ: None, config: None });
    if lc.typ.as_deref().is_none_or(str::is_empty) {
        lc.typ = Some("json-file".into());
    }
    lc.config.get_or_insert_with(HashMap::new);
    if h.runtime.as_deref().is_none_or(str::is_empty) {
        h.runtime = Some("runc".into());
    }
    if h.network_mode.as_deref().is_none_or(str::is_empty) {
        h.network_mode = Some("default".into());
    }
    if h.restart_policy.is_none() {
        h.restart_policy = Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: Some(0) });
    }
    h.auto_remove.get_or_insert(false);
    h.privileged.get_or_insert(false);
    h.readonly_rootfs.get_or_insert(false);
    h.binds.get_or_insert_with(Vec::new);
    h
}

/// `GET /containers/{id}/json`, as JSON: the typed response plus the network settings (which
/// carry fields the typed model no longer has but clients still read).
pub fn inspect_json(engine: &Engine, c: &Arc<Container>) -> serde_json::Value {
    let mut v = serde_json::to_value(inspect(engine, c)).unwrap_or_default();
    v["NetworkSettings"] = super::network::settings_json(engine, &c.record());
    v
}

/// `GET /containers/{id}/json` (typed; network settings left empty, see [`inspect_json`]).
pub fn inspect(engine: &Engine, c: &Arc<Container>) -> ContainerInspectResponse {
    let r = c.record();
    let lower = engine
        .store
        .by_id(&r.image_id)
        .map(|i| {
            i.record
                .layers
                .iter()
                .rev()
                .map(|l| engine.store.layer_diff_dir(&l.diff_id).display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default();
    let running = matches!(r.state.status, Status::Running | Status::Paused);
    ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: Some(r.created.clone()),
        path: r.args.first().cloned(),
        args: Some(r.args.iter().skip(1).cloned().collect()),
        state: Some(ContainerState {
            status: Some(inspect_state(r.state.status)),
            running: Some(running),
            paused: Some(r.state.status == Status::Paused),
            restarting: Some(r.state.status == Status::Restarting),
            oom_killed: Some(r.state.oom_killed),
            dead: Some(r.state.status == Status::Dead),
            pid: Some(i64::from(r.state.pid)),
            exit_code: Some(i64::from(r.state.exit_code)),
            error: Some(r.state.error.clone()),
            started_at: Some(r.state.started_at.clone()),
            finished_at: Some(r.state.finished_at.clone()),
            health: r.state.health.as_ref().and_then(|h| h.to_api()),
        }),
        image: Some(r.image_id.to_string()),
        resolv_conf_path: Some(c.dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(c.dir.join("hostname").display().to_string()),
        hosts_path: Some(c.dir.join("hosts").display().to_string()),
        log_path: Some(c.log_path().display().to_string()),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(r.restart_count),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        host_config: Some(with_defaults(r.host_config.clone())),
        graph_driver: Some(DriverData {
            name: "overlay2".into(),
            data: HashMap::from([
                ("LowerDir".to_string(), lower),
                ("UpperDir".to_string(), c.dir.join("upper").display().to_string()),
                ("WorkDir".to_string(), c.dir.join("work").display().to_string()),
                ("MergedDir".to_string(), c.dir.join("rootfs").display().to_string()),
            ]),
        }),
        mounts: Some(super::mounts::mount_points(&r.mounts)),
        config: Some({
            let mut cfg = r.config.clone();
            if cfg.hostname.as_deref().is_none_or(str::is_empty) {
                cfg.hostname = Some(r.id.chars().take(12).collect());
            }
            cfg
        }),
        network_settings: Some(Default::default()),
        ..Default::default()
    }
}

/// Which log lines `docker logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines at or after this Unix time.
    pub since: Option<f64>,
    /// Only lines before this Unix time.
    pub until: Option<f64>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

/// Parses Docker's `since`/`until`: Unix seconds (with fraction) or RFC 3339.
pub fn parse_time(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
    })
}

fn chunk_time(c: &Chunk) -> f64 {
    chrono::DateTime::parse_from_rfc3339(&c.time)
        .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
        .unwrap_or(0.0)
}

impl LogOptions {
    /// Whether `c` is wanted (stream and time window).
    pub fn wants(&self, c: &Chunk) -> bool {
        let stream_ok = (c.stream == STDOUT && self.stdout) || (c.stream == STDERR && self.stderr);
        if !stream_ok || (self.since.is_none() && self.until.is_none()) {
            return stream_ok;
        }
        let t = chunk_time(c);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Calls `f` with each stored line of `log` that is wanted (stream, time and tail), oldest
    /// first, until it returns false. Only the tail's lines are ever held.
    pub fn for_each_selected(&self, log: super::io::OpenLog, mut f: impl FnMut(Chunk) -> bool) {
        match self.tail {
            None => log.for_each(|c| !self.wants(&c) || f(c)),
            Some(0) => {}
            Some(n) => {
                let mut last = std::collections::VecDeque::new();
                log.for_each(|c| {
                    if self.wants(&c) {
                        if last.len() == n {
                            last.pop_front();
                        }
                        last.push_back(c);
                    }
                    true
                });
                for c in last {
                    if !f(c) {
                        return;
                    }
                }
            }
        }
    }

    /// Applies stream, time and tail selection to the stored log.
    pub fn select(&self, chunks: Vec<Chunk>) -> Vec<Chunk> {
        let mut v: Vec<Chunk> = chunks.into_iter().filter(|c| self.wants(c)).collect();
        if let Some(n) = self.tail {
            let skip = v.len().saturating_sub(n);
            v.drain(..skip);
        }
        v
    }

    /// The bytes to send for one line.
    pub fn render(&self, c: &Chunk) -> bytes::Bytes {
        if self.timestamps {
            let mut v = format!("{} ", c.time).into_bytes();
            v.extend_from_slice(&c.data);
            bytes::Bytes::from(v)
        } else {
            c.data.clone()
        }
    }
}

/// dockerd's `name` filter: a regular expression matched against `/name` or `name`; an invalid
/// expression matches nothing.
fn name_matches(pattern: &str, name: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|re| re.is_match(&format!("/{name}")) || re.is_match(name))
}

/// The `health` filter's view: `none`, `starting`, `healthy` or `unhealthy`.
fn health_name(r: &ContainerRecord) -> &'static str {
    r.state.health.as_ref().map_or("none", |h| h.status.as_str())
}

#[cfg(test)]
mod name_filter_tests {
    use super::name_matches;

    #[test]
    fn names_match_as_regular_expressions() {
        assert!(name_matches("web", "my-web-1"));
        assert!(name_matches("^web$", "web"));
        assert!(name_matches("^/web$", "web"));
        assert!(!name_matches("^web$", "web2"));
        assert!(name_matches("web-[0-9]+", "app_web-12"));
        assert!(!name_matches("(", "web"));
    }
}

#[cfg(test)]
mod stored_log_tests {
    use super::LogOptions;
    use crate::engine::containers::io::{Chunk, OpenLog, STDERR, STDOUT};

    /// A json-file log of `lines` (stream, text, second of 2026-01-01T00:00), newest file last,
    /// split over a rotated file (`.log.1`) and the current one, ending in a torn line.
    fn stored(dir: &std::path::Path, lines: &[(&str, &str, u32)]) -> std::path::PathBuf {
        let path = dir.join("c-json.log");
        let record = |(stream, text, s): &(&str, &str, u32)| {
            let time = format!("2026-01-01T00:00:{s:02}.000000000Z");
            serde_json::json!({"log": format!("{text}\n"), "stream": stream, "time": time}).to_string() + "\n"
        };
        let half = lines.len() / 2;
        let older: String = lines[..half].iter().map(record).collect();
        let newer: String = lines[half..].iter().map(record).collect::<String>() + "{\"log\":\"torn";
        std::fs::write(path.with_extension("log.1"), older).expect("write");
        std::fs::write(&path, newer).expect("write");
        path
    }

    fn texts(opts: &LogOptions, path: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        opts.for_each_selected(OpenLog::open(path), |c: Chunk| {
            out.push(String::from_utf8_lossy(&c.data).trim_end().to_string());
            true
        });
        out
    }

    #[test]
    fn stored_lines_are_selected_by_stream_time_and_tail_across_rotated_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let lines =
            [("stdout", "a", 1), ("stderr", "e1", 2), ("stdout", "b", 3), ("stdout", "c", 4), ("stderr", "e2", 5)];
        let path = stored(dir.path(), &lines);
        let both = LogOptions { stdout: true, stderr: true, ..Default::default() };
        assert_eq!(texts(&both, &path), ["a", "e1", "b", "c", "e2"], "oldest file first, torn line skipped");
        let out = LogOptions { stderr: false, ..both.clone() };
        assert_eq!(texts(&out, &path), ["a", "b", "c"]);
        assert_eq!(texts(&LogOptions { tail: Some(2), ..both.clone() }, &path), ["c", "e2"]);
        assert_eq!(texts(&LogOptions { tail: Some(2), ..out.clone() }, &path), ["b", "c"], "tail counts wanted lines");
        assert!(texts(&LogOptions { tail: Some(0), ..both.clone() }, &path).is_empty());
        assert_eq!(texts(&LogOptions { tail: Some(99), ..both.clone() }, &path).len(), 5);
        let t = |s: u32| 1_767_225_600.0 + f64::from(s);
        let window = LogOptions { since: Some(t(2)), until: Some(t(4)), ..both.clone() };
        assert_eq!(texts(&window, &path), ["e1", "b"], "since is inclusive, until exclusive");
        let mut first = Vec::new();
        both.for_each_selected(OpenLog::open(&path), |c| {
            first.push(c.stream);
            first.len() < 2
        });
        assert_eq!(first, [STDOUT, STDERR], "a false from the callback stops the reading");
    }

    #[test]
    fn a_log_opened_before_the_containers_removal_is_read_whole_after_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let container = dir.path().join("c1");
        std::fs::create_dir(&container).expect("mkdir");
        let path = stored(&container, &[("stdout", "a", 1), ("stdout", "b", 2), ("stderr", "c", 3)]);
        let opened = OpenLog::open(&path);
        // As the removal does: renamed out of the way, then deleted.
        let moved = dir.path().join(format!("{}c1", crate::engine::containers::remove::DISCARDED));
        std::fs::rename(&container, &moved).expect("rename");
        std::fs::remove_dir_all(&moved).expect("delete");
        let mut out = Vec::new();
        LogOptions { stdout: true, stderr: true, ..Default::default() }.for_each_selected(opened, |c| {
            out.push(String::from_utf8_lossy(&c.data).trim_end().to_string());
            true
        });
        assert_eq!(out, ["a", "b", "c"]);
    }
}
