//! The image builder (`POST /build`, the classic builder's protocol): a Dockerfile executor on our
//! own runtime and image store. Each instruction makes an image on top of the previous one (a
//! layer for `RUN`, `COPY` and `ADD`, the config only for the rest); those step images are the
//! build cache. Stages run in order, only those the target needs.
//!
//! context.rs receives the context (spooled and indexed), dockerfile.rs parses, lex.rs
//! substitutes, stage.rs runs a stage's instructions (run_step.rs for `RUN`, copy.rs for
//! `COPY`/`ADD` from a tree.rs tree: the context or an image view), cache.rs remembers.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
pub mod lex;
mod run_step;
mod stage;
pub mod tree;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::platform::Platform;
use super::progress::Progress;
use super::{Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::StoredImage;
use context::Context;
use dockerfile::StepKind;

/// What `POST /build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`dockerfile`, default `Dockerfile`).
    pub dockerfile: String,
    /// Full tagged references for the result (`t`).
    pub tags: Vec<String>,
    /// `buildargs` (a `None` value: declared without a value).
    pub build_args: BTreeMap<String, Option<String>>,
    /// `labels`: added to the result's config.
    pub labels: BTreeMap<String, String>,
    /// `target`: the stage to stop at.
    pub target: Option<String>,
    /// `nocache`.
    pub no_cache: bool,
    /// `pull`: pull base images even when present.
    pub pull: bool,
    /// `cachefrom`: only these images (and their parents) may serve as cache.
    pub cache_from: Vec<String>,
    /// `rm` (default true): remove intermediate containers after a successful step.
    pub remove: bool,
    /// `forcerm`: remove them even after a failed step.
    pub force_remove: bool,
    /// `q`: print only the image id.
    pub quiet: bool,
    /// `networkmode` for `RUN`.
    pub network_mode: Option<String>,
    /// `extrahosts` for `RUN` (`host:ip`).
    pub extra_hosts: Vec<String>,
    /// Resource limits for `RUN` containers.
    pub memory: i64,
    /// `memswap`.
    pub memory_swap: i64,
    /// `cpushares`.
    pub cpu_shares: i64,
    /// `cpusetcpus`.
    pub cpuset_cpus: String,
    /// `cpuquota` (with `cpuperiod`).
    pub nano_cpus: i64,
    /// `shmsize`.
    pub shm_size: i64,
    /// `platform`.
    pub platform: Option<String>,
}

/// Why a build failed (the client gets `errorDetail` with the message and, for a failing
/// `RUN`, its exit code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// What went wrong.
    pub message: String,
    /// The failing command's exit code.
    pub code: Option<i64>,
}

impl BuildError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: None }
    }
}

impl From<EngineError> for BuildError {
    fn from(e: EngineError) -> Self {
        Self::new(e.to_string())
    }
}

/// The build's output: `stream` lines (none when quiet), errors always.
#[derive(Debug, Clone)]
pub struct Output {
    progress: Progress,
    quiet: bool,
}

impl Output {
    /// Wraps the request's progress stream.
    pub fn new(progress: Progress, quiet: bool) -> Self {
        Self { progress, quiet }
    }

    fn line(&self, text: impl Into<String>) {
        if !self.quiet {
            self.progress.stream(text);
        }
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Whether the client went away (the build is then cancelled).
    pub fn cancelled(&self) -> bool {
        self.progress.is_closed()
    }
}

/// After a crash: contexts and image views of builds that were running go (a view may still be
/// mounted on a native host).
pub fn clean_leftovers(build_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(build_dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("view-") {
            let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(e.path());
        } else if name.starts_with("context-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The short form of an image id (`Successfully built`, ` ---> `).
fn short(id: &Digest) -> String {
    id.hex().chars().take(12).collect()
}

/// The build arguments every build knows without an `ARG` in a stage (proxies), and the
/// platform arguments FROM lines may use.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `BUILDPLATFORM`, `BUILDARCH`… (this engine) and `TARGETPLATFORM`, `TARGETARCH`… (`--platform`,
/// else this engine).
fn platform_args(target: Option<&Platform>) -> lex::Vars {
    let mut v = lex::Vars::new();
    let host = Platform::host();
    for (prefix, p) in [("BUILD", &host), ("TARGET", target.unwrap_or(&host))] {
        v.insert(format!("{prefix}PLATFORM"), p.text());
        v.insert(format!("{prefix}OS"), p.os.clone());
        v.insert(format!("{prefix}ARCH"), p.arch_or_host().to_string());
        v.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
    }
    v
}

/// A build whose Dockerfile was found and parsed and whose platform is ours: nothing has been
/// printed yet, so the API can still answer a failure up to here with an HTTP error, as dockerd
/// does for errors before its first output.
#[derive(Debug)]
pub struct Checked {
    ctx: Arc<Context>,
    df: dockerfile::Dockerfile,
}

/// Finds, reads and parses the Dockerfile (and applies `.dockerignore`).
pub async fn check(ctx: Context, opts: &BuildOptions) -> Result<Checked, BuildError> {
    if let Some(p) = opts.platform.as_deref().filter(|p| !p.is_empty()) {
        check_platform(p)?;
    }
    let name = if opts.dockerfile.is_empty() { "Dockerfile".to_string() } else { opts.dockerfile.clone() };
    let (ctx, text) = super::blocking(move || {
        let mut ctx = ctx;
        let (_, text) = ctx.read_dockerfile(&name)?;
        ctx.apply_dockerignore()?;
        Ok((ctx, text))
    })
    .await?;
    let ctx = Arc::new(ctx);
    let df = dockerfile::parse(&text).map_err(|e| BuildError::new(e.to_string()))?;
    Ok(Checked { ctx, df })
}

/// Runs a checked build; returns the image it made. Blocking work runs on blocking threads.
pub async fn build(
    engine: Arc<Engine>,
    checked: Checked,
    opts: BuildOptions,
    out: Output,
) -> Result<Digest, BuildError> {
    let Checked { ctx, df } = checked;
    let target_platform = opts.platform.as_deref().filter(|p| !p.is_empty()).map(Platform::parse).transpose()?;
    let mut global = platform_args(target_platform.as_ref());
    let mut used_args: HashSet<String> = HashSet::new();
    for decl in &df.global_args {
        let (k, default) = stage::arg_decl(decl, &global, df.escape)?;
        used_args.insert(k.clone());
        if let Some(v) = opts.build_args.get(&k).cloned().flatten().or(default) {
            global.insert(k, v);
        }
    }
    let target = match opts.target.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| BuildError::new(format!("failed to reach build target {t} in Dockerfile")))?,
        None => df.stages.len() - 1,
    };
    let order = needed_stages(&df, target, &global);
    let total =
        order.iter().map(|&i| 1 + df.stages[i].steps.len()).sum::<usize>() + usize::from(!opts.labels.is_empty());
    let cache_sources = cache_sources(&engine, &opts.cache_from);
    // Step numbers are fixed up front (stage by stage), so concurrent stages print theirs.
    let mut first_step = HashMap::new();
    let mut n = 0;
    for &i in &order {
        first_step.insert(i, n);
        n += 1 + df.stages[i].steps.len();
    }
    // Stages run as soon as the stages they build on or copy from are done: independent stages
    // run at the same time.
    let mut built: Built = HashMap::new();
    let mut remaining = order.clone();
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|i| stage_deps(&df, *i, &global).iter().all(|d| built.contains_key(d)))
            .collect();
        if ready.is_empty() {
            return Err(BuildError::new("the build stages depend on each other in a circle"));
        }
        let done = &built;
        let runs = ready.iter().map(|&i| {
            let mut run = stage::Run {
                engine: &engine,
                context: &ctx,
                dockerfile: &df,
                global: &global,
                opts: &opts,
                out: &out,
                step: first_step.get(&i).copied().unwrap_or(0),
                total,
                cache_sources: cache_sources.as_ref(),
                used_args: HashSet::new(),
            };
            async move {
                let image = run.stage(i, done, i == target).await;
                (i, image, run.used_args)
            }
        });
        let results = futures::future::join_all(runs).await;
        for (i, image, used) in results {
            built.insert(i, image?);
            used_args.extend(used);
        }
        remaining.retain(|i| !ready.contains(i));
    }
    let image = built
        .remove(&target)
        .flatten()
        .ok_or_else(|| BuildError::new("No image was generated. Is your Dockerfile empty?"))?;
    let unused: Vec<&String> =
        opts.build_args.keys().filter(|k| !used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str())).collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        out.line(format!("[Warning] One or more build-args [{}] were not consumed\n", names.join(" ")));
    }
    let id = image.record.id.clone();
    let now = super::now_rfc3339();
    for t in &opts.tags {
        engine.store.tag(&id, t, &now).map_err(|e| BuildError::new(e.to_string()))?;
        engine.events.image("tag", id.as_str(), &super::reference::familiar_repo(t));
    }
    out.progress().aux(serde_json::json!({"ID": id.to_string()}));
    if out.quiet {
        out.progress().stream(format!("{id}\n"));
    } else {
        out.line(format!("Successfully built {}\n", short(&id)));
        for t in &opts.tags {
            out.line(format!("Successfully tagged {}\n", super::reference::familiar_repo(t)));
        }
    }
    Ok(id)
}

/// With `cachefrom`: the images allowed to serve as cache (those named and their parents);
/// `None`: any cached step.
fn cache_sources(engine: &Engine, names: &[String]) -> Option<HashSet<Digest>> {
    if names.is_empty() {
        return None;
    }
    let mut allowed = HashSet::new();
    for n in names {
        let Ok(img) = super::images::resolve(engine, n) else { continue };
        let mut cur = Some(img);
        while let Some(i) = cur {
            if !allowed.insert(i.record.id.clone()) {
                break;
            }
            cur = i.record.parent.as_ref().and_then(|p| engine.store.by_id(p));
        }
    }
    Some(allowed)
}

/// `linux`, `linux/amd64`, `linux/arm64/v8`…: what this engine runs, natively or emulated
/// (`RUN` steps of another architecture run through its binfmt_misc emulator).
fn check_platform(p: &str) -> Result<(), BuildError> {
    let platform = Platform::parse(p)?;
    if platform.os != "linux" {
        return Err(BuildError::new(format!("\"{p}\": unknown operating system or architecture: invalid argument")));
    }
    let arch = platform.arch_or_host();
    if !crate::runtime::binfmt::can_run(arch) {
        return Err(BuildError::new(crate::runtime::binfmt::cannot_run_message("linux", arch)));
    }
    Ok(())
}

/// The earlier stages stage `i` builds on (`FROM stage`) or copies from (`COPY --from`).
fn stage_deps(df: &dockerfile::Dockerfile, i: usize, global: &lex::Vars) -> Vec<usize> {
    let index_of = |name: &str| -> Option<usize> {
        let name = name.to_ascii_lowercase();
        df.stages.iter().position(|s| s.name.as_deref() == Some(name.as_str())).or_else(|| name.parse().ok())
    };
    let stage = &df.stages[i];
    let mut deps = Vec::new();
    let base = lex::word(&stage.base, global, df.escape).unwrap_or_default();
    if let Some(j) = index_of(&base).filter(|j| *j < i) {
        deps.push(j);
    }
    for step in &stage.steps {
        if let StepKind::Copy { flags, .. } = &step.kind {
            for (name, value) in flags {
                if name == "from" {
                    if let Some(j) = value.as_deref().and_then(index_of).filter(|j| *j < i) {
                        deps.push(j);
                    }
                }
            }
        }
    }
    deps
}

/// Which stages the target needs: itself and, recursively, the stages it depends on. Returns
/// stage indices in order.
fn needed_stages(df: &dockerfile::Dockerfile, target: usize, global: &lex::Vars) -> Vec<usize> {
    let mut needed: HashSet<usize> = HashSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(stage_deps(df, i, global));
        }
    }
    let mut order: Vec<usize> = needed.into_iter().collect();
    order.sort_unstable();
    order
}

/// Results of the stages built so far, by index.
type Built = HashMap<usize, Option<Arc<StoredImage>>>;
