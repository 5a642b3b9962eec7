//! System endpoints: ping, version, info, events, auth.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::{EventMessage, SystemInfo, SystemVersion, SystemVersionComponents, SystemVersionPlatform};
use futures::StreamExt;

use super::error::{ApiError, ApiResult};
use super::params::{json_body, Params};
use super::{API_VERSION, MIN_API_VERSION};
use crate::engine::containers::record::Status;
use crate::engine::filters::Filters;
use crate::engine::registry::{self, AuthConfig};
use crate::engine::Engine;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn ping_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    // The classic builder (`POST /build`); BuildKit clients are told to use it (DOCKER_BUILDKIT=0).
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(header::SERVER, HeaderValue::from_static(concat!("Skiff/", env!("CARGO_PKG_VERSION"), " (linux)")));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h
}

/// `GET /_ping`.
pub async fn ping() -> impl IntoResponse {
    (ping_headers(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK")
}

/// `HEAD /_ping`.
pub async fn ping_head() -> impl IntoResponse {
    (ping_headers(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")])
}

fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// `GET /version`.
pub async fn version() -> Json<SystemVersion> {
    let details = std::collections::HashMap::from([
        ("ApiVersion".to_string(), API_VERSION.to_string()),
        ("MinAPIVersion".to_string(), MIN_API_VERSION.to_string()),
        ("Os".to_string(), "linux".to_string()),
        ("Arch".to_string(), arch().to_string()),
        ("KernelVersion".to_string(), kernel_version()),
        ("GitCommit".to_string(), option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown").to_string()),
        ("GoVersion".to_string(), "none (Rust)".to_string()),
        ("BuildTime".to_string(), String::new()),
        ("Experimental".to_string(), "false".to_string()),
    ]);
    Json(SystemVersion {
        platform: Some(SystemVersionPlatform { name: "Skiff Engine".into() }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: VERSION.into(),
            details: Some(details),
        }]),
        version: Some(VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown").into()),
        go_version: Some("none (Rust)".into()),
        os: Some("linux".into()),
        arch: Some(arch().into()),
        kernel_version: Some(kernel_version()),
        build_time: None,
        experimental: Some(false),
    })
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}

/// `GET /info`.
pub async fn info(State(engine): State<Arc<Engine>>) -> Json<SystemInfo> {
    let images = engine.store.images().len();
    let states: Vec<Status> = engine.containers.all().iter().map(|c| c.with_record(|r| r.state.status)).collect();
    let count = |f: fn(Status) -> bool| i64::try_from(states.iter().filter(|s| f(**s)).count()).unwrap_or(0);
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    Json(SystemInfo {
        id: Some(format!("skiff-{hostname}")),
        containers: Some(count(|_| true)),
        containers_running: Some(count(|s| s == Status::Running)),
        containers_paused: Some(count(|s| s == Status::Paused)),
        containers_stopped: Some(count(|s| !matches!(s, Status::Running | Status::Paused))),
        images: Some(i64::try_from(images).unwrap_or(0)),
        driver: Some("overlay2".into()),
        driver_status: Some(vec![vec!["Backing Filesystem".into(), "extfs".into()]]),
        docker_root_dir: Some(engine.root().display().to_string()),
        ncpu: Some(i64::try_from(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap_or(1)),
        mem_total: Some(i64::try_from(crate::engine::containers::stats::mem_total()).unwrap_or(i64::MAX)),
        kernel_version: Some(kernel_version()),
        operating_system: Some(os_name()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        name: Some(hostname),
        server_version: Some(VERSION.into()),
        cgroup_driver: Some(bollard_stubs::models::SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(if cgroup_v2 {
            bollard_stubs::models::SystemInfoCgroupVersionEnum::_2
        } else {
            bollard_stubs::models::SystemInfoCgroupVersionEnum::_1
        }),
        logging_driver: Some("json-file".into()),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        experimental_build: Some(false),
        debug: Some(tracing::enabled!(tracing::Level::DEBUG)),
        nfd: Some(open_fds()),
        n_goroutines: Some(0),
        system_time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        plugins: Some(bollard_stubs::models::PluginsInfo {
            volume: Some(vec!["local".into()]),
            network: Some(vec!["bridge".into(), "host".into(), "null".into()]),
            authorization: None,
            log: Some(vec!["json-file".into(), "local".into(), "none".into()]),
        }),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(false),
        ipv4_forwarding: Some(true),
        runtimes: Some(
            [(
                "runc".to_string(),
                bollard_stubs::models::Runtime { path: Some("skiff-agent".into()), ..Default::default() },
            )]
            .into_iter()
            .collect(),
        ),
        default_runtime: Some("runc".into()),
        swarm: serde_json::from_value(engine.swarm.info()).ok(),
        live_restore_enabled: Some(false),
        init_binary: Some("skiff-agent".into()),
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        labels: Some(Vec::new()),
        warnings: Some(Vec::new()),
        ..Default::default()
    })
}

/// Descriptors the engine holds (dockerd's `NFd`).
fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| i64::try_from(d.count()).unwrap_or(0))
}

fn parse_time_nanos(s: &str) -> Option<i64> {
    if let Some((secs, frac)) = s.split_once('.') {
        let secs: i64 = secs.parse().ok()?;
        let frac = format!("{frac:0<9}");
        return Some(secs * 1_000_000_000 + frac.get(..9)?.parse::<i64>().ok()?);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs * 1_000_000_000);
    }
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| t.timestamp_nanos_opt())
}

fn event_matches(f: &Filters, e: &EventMessage) -> bool {
    let typ = e
        .typ
        .map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .unwrap_or_default();
    let action = e.action.clone().unwrap_or_default();
    let id = e.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default();
    let name =
        e.actor.as_ref().and_then(|a| a.attributes.as_ref()).and_then(|a| a.get("name").cloned()).unwrap_or_default();
    let any = |key: &str, ok: &dyn Fn(&str) -> bool| f.get(key).is_empty() || f.get(key).iter().any(|v| ok(v));
    let attrs = e.actor.as_ref().and_then(|a| a.attributes.clone()).unwrap_or_default();
    let image_attr = attrs.get("image").cloned().unwrap_or_default();
    let scope = e
        .scope
        .map(|s| serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .unwrap_or_default();
    // An object filter (`network=`, `service=`…) selects events of that object: by id prefix or name.
    let object = |key: &str, kind: &str| any(key, &|v| typ == kind && (id.starts_with(v) || name == v));
    any("type", &|v| v == typ)
        && any("event", &|v| v == action || action.starts_with(&format!("{v}:")))
        && any("image", &|v| {
            (typ == "image" && (v == id || v == name || name.starts_with(&format!("{v}:"))))
                || (typ == "container" && (image_attr == v || image_attr.starts_with(&format!("{v}:"))))
        })
        && any("container", &|v| typ == "container" && (id.starts_with(v) || name == v))
        && any("scope", &|v| v == scope)
        && object("network", "network")
        && object("volume", "volume")
        && object("service", "service")
        && object("node", "node")
        && object("secret", "secret")
        && object("config", "config")
        && f.get("daemon").is_empty()
        && f.labels_match("label", Some(&attrs))
}

/// `GET /events`: the backlog since `since`, then live events until `until` (or forever).
pub async fn events(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(
        p.get("filters"),
        &[
            "type",
            "event",
            "image",
            "container",
            "label",
            "scope",
            "network",
            "volume",
            "daemon",
            "service",
            "node",
            "secret",
            "config",
        ],
    )?;
    let since = p
        .get("since")
        .map(|s| parse_time_nanos(s).ok_or_else(|| ApiError::bad_request(format!("invalid since: {s}"))))
        .transpose()?;
    let until = p
        .get("until")
        .map(|s| parse_time_nanos(s).ok_or_else(|| ApiError::bad_request(format!("invalid until: {s}"))))
        .transpose()?;
    let (past, mut rx) = engine.events.subscribe(since);
    let (tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let encode = |e: &EventMessage| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };
        let before_until = |e: &EventMessage| until.is_none_or(|u| e.time_nano.unwrap_or(0) <= u);
        for e in past.iter().filter(|e| event_matches(&filters, e) && before_until(e)) {
            if tx.send(Ok(encode(e))).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            Duration::from_nanos(u64::try_from(u - now).unwrap_or(0))
        });
        let sleep = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                _ = tx.closed() => return,
                msg = rx.recv() => match msg {
                    Ok(e) if event_matches(&filters, &e) => {
                        if tx.send(Ok(encode(&e))).await.is_err() { return; }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        }
    });
    let stream =
        futures::stream::unfold(out_rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed();
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}

/// `POST /auth`.
pub async fn auth(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let cfg: AuthConfig = json_body(&body)?;
    registry::login(&engine, &cfg).await?;
    Ok((StatusCode::OK, Json(serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}))).into_response())
}

/// `GET /system/df`: disk use of images, containers and volumes (no build cache: no builder yet).
pub async fn disk_usage(State(engine): State<Arc<Engine>>) -> ApiResult<Response> {
    let filters = crate::engine::filters::Filters::default();
    let containers = engine.containers.all();
    let mut images = crate::engine::images::list(&engine, &filters, true, false)?;
    for img in &mut images {
        img.containers =
            i64::try_from(containers.iter().filter(|c| c.record().image_id.as_str() == img.id).count()).unwrap_or(0);
    }
    let layers_size: u64 = {
        let mut seen = std::collections::HashSet::new();
        engine
            .store
            .images()
            .iter()
            .flat_map(|i| i.record.layers.clone())
            .filter(|l| seen.insert(l.diff_id.clone()))
            .map(|l| l.unpacked_size)
            .sum()
    };
    let list = crate::engine::containers::view::list(&engine, true, None, &filters, true)?;
    let e = engine.clone();
    let volumes: Vec<serde_json::Value> = crate::engine::blocking(move || {
        Ok(e.volumes
            .list()
            .iter()
            .map(|v| crate::engine::volumes::to_json(&e, v, Some(&|n| crate::engine::containers::volume_users(&e, n))))
            .collect())
    })
    .await?;
    Ok(Json(serde_json::json!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": list,
        "Volumes": volumes,
        "BuildCache": crate::engine::images::build_cache_usage(&engine),
    }))
    .into_response())
}
