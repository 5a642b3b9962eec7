//! Long-lived streams to the front end: engine events, container logs, an interactive terminal
//! (exec with a TTY), image pull progress, image builds and container statistics. Each runs until the front end
//! closes it or the source ends; messages are JSON, bytes travel base64-encoded.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    ResizeExecOptionsBuilder, StatsOptionsBuilder,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::backend::{message, Backend};

/// What the front end sends into a stream.
#[derive(Debug)]
pub enum Control {
    /// Keystrokes for a terminal.
    Input(Vec<u8>),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
}

/// Where a stream's messages go; `false` when the front end is gone.
pub trait Sink: Send + Sync {
    /// Delivers one message.
    fn send(&self, msg: Value) -> bool;
}

fn bytes(data: &[u8]) -> Value {
    json!({"bytes": base64::engine::general_purpose::STANDARD.encode(data)})
}

/// Runs stream `kind` until it ends; always finishes with `{"end": null|error}`.
pub async fn run(backend: Backend, kind: &str, args: Value, sink: &dyn Sink, control: mpsc::Receiver<Control>) {
    let result = match kind {
        "events" => events(&backend, &args, sink).await,
        "logs" => logs(&backend, &args, sink).await,
        "exec" => exec(&backend, &args, sink, control).await,
        "pull" => pull(&backend, &args, sink).await,
        "build" => build(&backend, &args, sink).await,
        "stats" => stats(&backend, sink).await,
        other => Err(format!("unknown stream {other:?}")),
    };
    sink.send(json!({"end": result.err()}));
}

fn id(args: &Value) -> Result<String, String> {
    args.get("id").and_then(Value::as_str).map(String::from).ok_or_else(|| "missing argument \"id\"".into())
}

/// The engine's events from now, or replayed from `since` (a timestamp, as the `boot` call gives).
async fn events(b: &Backend, args: &Value, sink: &dyn Sink) -> Result<(), String> {
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("type", vec!["container", "image", "volume", "network"])]);
    let mut opts = EventsOptionsBuilder::default().filters(&filters);
    if let Some(since) = args.get("since").and_then(Value::as_str) {
        opts = opts.since(since);
    }
    let mut s = b.docker()?.events(Some(opts.build()));
    while let Some(ev) = s.next().await {
        let ev = ev.map_err(message)?;
        if !sink.send(json!({"event": ev})) {
            break;
        }
    }
    Ok(())
}

async fn logs(b: &Backend, args: &Value, sink: &dyn Sink) -> Result<(), String> {
    let follow = args.get("follow").and_then(Value::as_bool).unwrap_or(true);
    let tail = args.get("tail").and_then(Value::as_str).unwrap_or("1000").to_string();
    let opts = LogsOptionsBuilder::default().follow(follow).stdout(true).stderr(true).tail(&tail).build();
    let mut s = b.docker()?.logs(&id(args)?, Some(opts));
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(message)?;
        if !sink.send(bytes(&chunk.into_bytes())) {
            break;
        }
    }
    Ok(())
}

async fn exec(b: &Backend, args: &Value, sink: &dyn Sink, mut control: mpsc::Receiver<Control>) -> Result<(), String> {
    let d = b.docker()?;
    let container = id(args)?;
    let cmd: Vec<String> = match args.get("cmd").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
        None => vec!["/bin/sh".into()],
    };
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(true),
        env: Some(vec!["TERM=xterm-256color".into()]),
        cmd: Some(cmd),
        ..Default::default()
    };
    let exec_id = d.create_exec(&container, config).await.map_err(message)?.id;
    let started = d
        .start_exec(&exec_id, Some(StartExecOptions { detach: false, tty: true, output_capacity: None }))
        .await
        .map_err(message)?;
    let StartExecResults::Attached { mut output, mut input } = started else {
        return Err("the engine detached the terminal".into());
    };
    let resize = |cols: u16, rows: u16| {
        let d = d.clone();
        let exec_id = exec_id.clone();
        async move {
            let opts = ResizeExecOptionsBuilder::default().w(i32::from(cols)).h(i32::from(rows)).build();
            let _ = d.resize_exec(&exec_id, opts).await;
        }
    };
    if let (Some(c), Some(r)) = (args.get("cols").and_then(Value::as_u64), args.get("rows").and_then(Value::as_u64)) {
        resize(u16::try_from(c).unwrap_or(80), u16::try_from(r).unwrap_or(24)).await;
    }
    loop {
        tokio::select! {
            out = output.next() => match out {
                Some(Ok(o)) => if !sink.send(bytes(&o.into_bytes())) { break },
                Some(Err(e)) => return Err(message(e)),
                None => break,
            },
            ctl = control.recv() => match ctl {
                Some(Control::Input(data)) => {
                    if input.write_all(&data).await.is_err() { break }
                    let _ = input.flush().await;
                }
                Some(Control::Resize(c, r)) => resize(c, r).await,
                None => break,
            },
        }
    }
    Ok(())
}

async fn pull(b: &Backend, args: &Value, sink: &dyn Sink) -> Result<(), String> {
    let image =
        args.get("image").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).ok_or("missing image")?;
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    let opts = CreateImageOptionsBuilder::default().from_image(name).tag(tag).build();
    let mut s = b.docker()?.create_image(Some(opts), None, None);
    while let Some(item) = s.next().await {
        let info = item.map_err(message)?;
        if let Some(e) = info.error_detail.as_ref().and_then(|e| e.message.clone()) {
            return Err(e);
        }
        let detail = info.progress_detail.unwrap_or_default();
        let msg = json!({"progress": {"id": info.id, "status": info.status, "current": detail.current, "total": detail.total}});
        if !sink.send(msg) {
            break;
        }
    }
    Ok(())
}

/// Builds the image of a folder on this machine (its Dockerfile, or `dockerfile` in it), tagged
/// `tag` if given: the folder goes to the engine as the build context (the engine applies its
/// `.dockerignore`); the builder's output lines stream to the front end, then `{"built": id}`.
async fn build(b: &Backend, args: &Value, sink: &dyn Sink) -> Result<(), String> {
    let folder =
        args.get("path").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).ok_or("missing folder")?;
    let dir = std::path::PathBuf::from(folder);
    if !dir.is_dir() {
        return Err(format!("{folder} is not a folder on this machine"));
    }
    let dir2 = dir.clone();
    let context = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut t = tar::Builder::new(Vec::new());
        t.follow_symlinks(false);
        t.append_dir_all(".", &dir2)?;
        t.into_inner()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading {folder}: {e}"))?;
    sink.send(json!({"output": format!("Sending build context ({} KiB)\n", context.len() / 1024)}));
    let mut opts = bollard::query_parameters::BuildImageOptionsBuilder::default().rm(true);
    let dockerfile = args.get("dockerfile").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    if let Some(d) = dockerfile {
        opts = opts.dockerfile(d);
    }
    let tag = args.get("tag").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = tag {
        opts = opts.t(t);
    }
    let docker = b.docker()?;
    let mut s = docker.build_image(opts.build(), None, Some(bollard::body_full(context.into())));
    let mut built = None;
    while let Some(item) = s.next().await {
        let info = item.map_err(message)?;
        if let Some(e) = info.error_detail.as_ref().and_then(|e| e.message.clone()) {
            return Err(e);
        }
        if let Some(id) = info.aux.as_ref().and_then(|a| a.id.clone()) {
            built = Some(id);
        }
        if let Some(text) = info.stream {
            if !sink.send(json!({"output": text})) {
                return Ok(()); // the window went away: dropping the stream cancels the build
            }
        }
    }
    sink.send(json!({"built": built}));
    Ok(())
}

/// CPU and memory of running containers, pushed every two seconds while the view is open.
async fn stats(b: &Backend, sink: &dyn Sink) -> Result<(), String> {
    loop {
        let d = b.docker()?;
        let running = d
            .list_containers(Some(ListContainersOptionsBuilder::default().all(false).build()))
            .await
            .map_err(message)?;
        let mut out = serde_json::Map::new();
        for c in running {
            let Some(cid) = c.id else { continue };
            let opts = StatsOptionsBuilder::default().stream(false).one_shot(false).build();
            if let Some(Ok(s)) = d.stats(&cid, Some(opts)).next().await {
                let cpu =
                    s.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0);
                let pre =
                    s.precpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0);
                let sys = s.cpu_stats.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0);
                let presys = s.precpu_stats.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0);
                let cpus = s.cpu_stats.as_ref().and_then(|c| c.online_cpus).unwrap_or(1);
                let percent = if sys > presys && cpu >= pre {
                    (cpu - pre) as f64 / (sys - presys) as f64 * f64::from(cpus) * 100.0
                } else {
                    0.0
                };
                let mem = s.memory_stats.as_ref().and_then(|m| m.usage).unwrap_or(0);
                out.insert(cid, json!({"cpu": percent, "memory": mem}));
            }
        }
        if !sink.send(json!({"stats": out})) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
