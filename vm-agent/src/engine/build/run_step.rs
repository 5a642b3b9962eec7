//! `RUN`: the command in a container of our runtime (the same seccomp, capabilities and
//! namespaces as `docker run`; the build's network, extra hosts and limits), its output streamed
//! to the client (stderr in red, as the classic builder does), its changes committed as a layer.
//! `--mount=type=cache|bind|tmpfs` become the container's mounts; cache mounts persist between
//! builds under `<root>/build/cache-mounts/`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::context::Context;
use super::copy::Source;
use super::{short, BuildError, BuildOptions, Built, Output};
use crate::engine::containers::{self, commit, WaitCondition};
use crate::engine::Engine;
use crate::store::digest::Digest;

/// One `RUN`.
#[derive(Debug)]
pub(super) struct Job {
    /// The image it runs in.
    pub parent: Digest,
    /// The config the resulting image gets (the stage's, not the command's).
    pub config: Value,
    /// The command.
    pub argv: Vec<String>,
    /// Build arguments as environment.
    pub env: Vec<String>,
    /// `--network` (or the build's).
    pub network: Option<String>,
    /// `--mount`s.
    pub mounts: Mounts,
    /// The history entry.
    pub created_by: String,
}

/// A `RUN`'s mounts as host config.
#[derive(Debug, Default)]
pub(super) struct Mounts {
    binds: Vec<String>,
    tmpfs: serde_json::Map<String, Value>,
}

impl Mounts {
    /// What of them decides the result (for the cache key).
    pub fn key(&self) -> String {
        format!("{:?}{:?}", self.binds, self.tmpfs)
    }
}

/// Parses `--mount` flags.
pub(super) fn mounts(
    flags: &[(String, Option<String>)],
    engine: &Engine,
    context: &Arc<Context>,
    _built: &Built,
    _df: &super::dockerfile::Dockerfile,
) -> Result<Mounts, BuildError> {
    let mut m = Mounts::default();
    for (name, value) in flags {
        match name.as_str() {
            "mount" => {}
            "network" => continue,
            "security" => return Err(BuildError::new("RUN --security is not supported: use the build's defaults")),
            other => return Err(BuildError::new(format!("RUN: unknown flag: --{other}"))),
        }
        let spec = value.clone().unwrap_or_default();
        let mut opts: Vec<(String, String)> = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            opts.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let target = get("target").or_else(|| get("dst")).or_else(|| get("destination"));
        let kind = get("type").unwrap_or_else(|| "bind".into());
        let Some(target) = target.filter(|t| t.starts_with('/')) else {
            return Err(BuildError::new(format!("--mount={spec}: an absolute target is required")));
        };
        match kind.as_str() {
            "cache" => {
                let id = get("id").unwrap_or_else(|| target.clone());
                let dir = engine.config.root.join("build").join("cache-mounts").join(hex::encode(
                    sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), id.as_bytes())),
                ));
                std::fs::create_dir_all(&dir).map_err(|e| BuildError::new(format!("creating the cache mount: {e}")))?;
                m.binds.push(format!("{}:{target}", dir.display()));
            }
            "bind" => {
                if get("from").is_some() {
                    return Err(BuildError::new(
                        "RUN --mount=type=bind,from=… is not supported yet: COPY --from the stage instead",
                    ));
                }
                let source = get("source").or_else(|| get("src")).unwrap_or_default();
                let rel = super::copy::clean_rel(&source)
                    .ok_or_else(|| BuildError::new(format!("--mount source {source} is outside the context")))?;
                let dir = context.materialize()?;
                let found = super::tree::resolve(&super::tree::FsTree::new(&dir), &rel)
                    .ok_or_else(|| BuildError::new(format!("--mount source {source} is not in the build context")))?;
                let host = dir.join(found);
                let rw = get("rw").or_else(|| get("readwrite")).is_some_and(|v| v != "false");
                m.binds.push(format!("{}:{target}{}", host.display(), if rw { "" } else { ":ro" }));
            }
            "tmpfs" => {
                let size = get("size").map(|s| format!("size={s}")).unwrap_or_default();
                m.tmpfs.insert(target, json!(size));
            }
            "secret" | "ssh" => {
                return Err(BuildError::new(format!(
                    "RUN --mount=type={kind} needs a BuildKit session, which the classic build API does not have"
                )))
            }
            other => return Err(BuildError::new(format!("--mount: unknown type {other}"))),
        }
    }
    Ok(m)
}

/// The shell script of a `RUN` with a here-document. A lone `<<EOF` runs the document as the
/// script (BuildKit's rule); otherwise the instruction's first line (after `RUN` and its flags,
/// e.g. `<<EOF cat > /file`) is followed by the document and its delimiter, as a shell reads it.
pub(super) fn heredoc_script(instruction: &str, cmd: &str, docs: &[(String, bool)]) -> String {
    if cmd.trim().is_empty() {
        return docs.first().map(|d| d.0.clone()).unwrap_or_default();
    }
    let first = instruction.lines().next().unwrap_or_default();
    let mut words = first.split_whitespace().skip(1).peekable();
    while words.peek().is_some_and(|w| w.starts_with("--")) {
        words.next();
    }
    let line: Vec<&str> = words.collect();
    let line = line.join(" ");
    let delims = heredoc_delimiters(&line);
    let mut script = format!("{line}\n");
    for (i, (content, _)) in docs.iter().enumerate() {
        script.push_str(content);
        if !content.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(delims.get(i).map(String::as_str).unwrap_or("EOF"));
        script.push('\n');
    }
    script
}

fn heredoc_delimiters(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cmd;
    while let Some(i) = rest.find("<<") {
        rest = &rest[i + 2..];
        let r = rest.trim_start_matches('-').trim_start_matches(['"', '\'']);
        let name: String = r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// `ADD https://…`: the file downloaded (mode 0600, as dockerd does).
pub(super) async fn download(url: &str) -> Result<Source, BuildError> {
    let fail = |e: String| BuildError::new(format!("ADD failed: downloading {url}: {e}"));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client.get(url).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map_or(0, |t| u64::try_from(t.timestamp()).unwrap_or(0));
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("download")
        .to_string();
    let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    Ok(Source::Data { name, bytes: bytes.to_vec(), mode: 0o600, mtime })
}

/// Runs the job; returns the committed image.
pub(super) async fn run(
    engine: &Arc<Engine>,
    job: Job,
    opts: &BuildOptions,
    out: &Output,
) -> Result<Digest, BuildError> {
    let mut host = json!({
        "NetworkMode": job.network.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into()),
        "ExtraHosts": opts.extra_hosts,
        "Binds": job.mounts.binds,
        "Tmpfs": job.mounts.tmpfs,
    });
    for (key, v) in [
        ("Memory", opts.memory),
        ("MemorySwap", opts.memory_swap),
        ("CpuShares", opts.cpu_shares),
        ("NanoCpus", opts.nano_cpus),
        ("ShmSize", opts.shm_size),
    ] {
        if v != 0 {
            host[key] = json!(v);
        }
    }
    if !opts.cpuset_cpus.is_empty() {
        host["CpusetCpus"] = json!(opts.cpuset_cpus);
    }
    let body = json!({
        "Image": job.parent.to_string(),
        "Cmd": job.argv,
        "Entrypoint": [],
        "Env": job.env,
        "WorkingDir": job.config.get("WorkingDir").cloned().unwrap_or(Value::Null),
        "User": job.config.get("User").cloned().unwrap_or(Value::Null),
        "Labels": {},
        "HostConfig": host,
    });
    let body: bollard_stubs::models::ContainerCreateBody =
        serde_json::from_value(body).map_err(|e| BuildError::new(format!("preparing the RUN container: {e}")))?;
    let (id, _) = containers::create(engine, None, None, body).await?;
    let c = engine.containers.get(&id)?;
    out.line(format!(" ---> Running in {}\n", &id[..12]));
    let cleanup = |force: bool| {
        let (engine, c) = (engine.clone(), c.clone());
        async move {
            if force {
                if let Err(e) = containers::remove(&engine, &c, true, true).await {
                    tracing::warn!(container.id = %c.id, error = %e, "removing a build container");
                }
            }
        }
    };
    let failed_cmd = job.argv.join(" ");
    if let Err(e) = containers::start(engine, &c).await {
        cleanup(opts.force_remove).await;
        return Err(BuildError::new(format!("The command '{failed_cmd}' could not start: {e}")));
    }
    let cancelled = stream_output(&c, out).await;
    if cancelled {
        let _ = containers::kill(engine, &c, Some("KILL")).await;
        cleanup(true).await;
        return Err(BuildError::new("the build was cancelled"));
    }
    let code = containers::wait(c.clone(), WaitCondition::NotRunning).await;
    if code != 0 {
        cleanup(opts.force_remove).await;
        return Err(BuildError {
            message: format!("The command '{failed_cmd}' returned a non-zero code: {code}"),
            code: Some(i64::from(code)),
        });
    }
    let opts_commit = commit::CommitOptions {
        exact_config: Some(job.config),
        created_by: Some(job.created_by),
        pause: false,
        ..Default::default()
    };
    let committed = commit::commit(engine, &c, opts_commit).await;
    if opts.remove || opts.force_remove || committed.is_err() {
        cleanup(true).await;
        if committed.is_ok() {
            out.line(format!("Removing intermediate container {}\n", &id[..12]));
        }
    }
    let image = committed?;
    let _ = short(&image);
    Ok(image)
}

/// Sends the container's output until it ends; `true` if the client went away first.
async fn stream_output(c: &Arc<containers::Container>, out: &Output) -> bool {
    let Some(hub) = c.io() else { return false };
    let (past, mut rx) = hub.from_start();
    for ch in past {
        send(out, &ch);
    }
    let mut finished = hub.finished();
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Ok(ch) => send(out, &ch),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return false,
            },
            r = finished.wait_for(|d| *d) => {
                if r.is_err() {
                    return false;
                }
                while let Ok(ch) = rx.try_recv() {
                    send(out, &ch);
                }
                return false;
            }
            () = out.progress().closed() => return true,
        }
    }
}

fn send(out: &Output, ch: &containers::io::Chunk) {
    let text = String::from_utf8_lossy(&ch.data);
    if ch.stream == containers::io::STDERR {
        out.line(format!("\u{1b}[91m{text}\u{1b}[0m"));
    } else {
        out.line(text.into_owned());
    }
}
