//! One stage of a build: its base image, then each instruction as an image on top of the last,
//! reused from the cache when everything that decides its result is the same.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::context::Context;
use super::copy::{self, Perms, Source};
use super::dockerfile::{Cmd, CopySource, Dockerfile, Step, StepKind};
use super::lex::{self, Vars};
use super::tree::{FsTree, Tree};
use super::view::ImageView;
use super::{cache, run_step, short, BuildError, BuildOptions, Built, Output, PROXY_ARGS};
use crate::engine::new_image::{self, ImageSpec};
use crate::engine::{blocking, config_changes, images, Engine};
use crate::store::digest::Digest;
use crate::store::StoredImage;

/// The PATH a stage from scratch starts with.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything a build shares between its stages.
pub(super) struct Run<'a> {
    pub engine: &'a Arc<Engine>,
    pub context: &'a Arc<Context>,
    pub dockerfile: &'a Dockerfile,
    pub global: &'a Vars,
    pub opts: &'a BuildOptions,
    pub out: &'a Output,
    pub step: usize,
    pub total: usize,
    pub cache_sources: Option<&'a HashSet<Digest>>,
    /// The build args this stage declared (for the "not consumed" warning).
    pub used_args: HashSet<String>,
}

/// A stage's state between instructions.
struct State {
    image: Option<Arc<StoredImage>>,
    /// The image config's `config` section as it stands.
    config: Value,
    /// `ARG` values declared in this stage.
    args: Vars,
    shell: Vec<String>,
    author: String,
}

impl State {
    /// Variables for substitution: the stage's ARGs, overridden by its ENV.
    fn vars(&self) -> Vars {
        let mut v = self.args.clone();
        for e in self.config.get("Env").and_then(Value::as_array).into_iter().flatten() {
            if let Some((k, val)) = e.as_str().and_then(|s| s.split_once('=')) {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn workdir(&self) -> String {
        self.config.get("WorkingDir").and_then(Value::as_str).filter(|w| !w.is_empty()).unwrap_or("/").to_string()
    }
}

/// `name[=default]` of an ARG, the default substituted with `vars`.
pub(super) fn arg_decl(decl: &str, vars: &Vars, escape: char) -> Result<(String, Option<String>), BuildError> {
    let (name, default) = match decl.split_once('=') {
        Some((n, d)) => (n.trim().to_string(), Some(lex::word(d, vars, escape).map_err(BuildError::new)?)),
        None => (decl.trim().to_string(), None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(BuildError::new(format!("ARG requires exactly one argument: {decl}")));
    }
    Ok((name, default))
}

impl Run<'_> {
    fn announce(&mut self, text: &str) {
        self.step += 1;
        self.out.line(format!("Step {}/{} : {text}\n", self.step, self.total));
    }

    /// Builds stage `index`; returns its image (`None`: nothing but scratch).
    pub async fn stage(
        &mut self,
        index: usize,
        built: &Built,
        last: bool,
    ) -> Result<Option<Arc<StoredImage>>, BuildError> {
        let df = self.dockerfile;
        let stage = &df.stages[index];
        self.announce(&stage.text);
        let base = lex::word(&stage.base, self.global, df.escape).map_err(BuildError::new)?;
        let image = self.base_image(&base, stage.platform.as_deref(), built).await?;
        let mut state = match &image {
            Some(img) => {
                self.out.line(format!(" ---> {}\n", short(&img.record.id)));
                let raw: Value = serde_json::from_slice(
                    &self.engine.store.read_blob(&img.record.id).map_err(|e| BuildError::new(e.to_string()))?,
                )
                .map_err(|e| BuildError::new(format!("reading the base image's config: {e}")))?;
                State {
                    image: image.clone(),
                    config: raw.get("config").cloned().filter(Value::is_object).unwrap_or_else(|| json!({})),
                    args: Vars::new(),
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    author: raw.get("author").and_then(Value::as_str).unwrap_or_default().to_string(),
                }
            }
            None => State {
                image: None,
                config: json!({"Env": [DEFAULT_PATH]}),
                args: Vars::new(),
                shell: vec!["/bin/sh".into(), "-c".into()],
                author: String::new(),
            },
        };
        if let Some(shell) = state.config.get("Shell").and_then(Value::as_array) {
            let s: Vec<String> = shell.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
            if !s.is_empty() {
                state.shell = s;
            }
        }
        // The base's ONBUILD triggers run first; the new image does not inherit them.
        let triggers: Vec<String> = state
            .config
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some(obj) = state.config.as_object_mut() {
            obj.remove("OnBuild");
        }
        if !triggers.is_empty() {
            self.out.line(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in &triggers {
                let step = super::dockerfile::parse_trigger(t)
                    .map_err(|e| BuildError::new(format!("ONBUILD trigger {t}: {e}")))?;
                self.execute(&mut state, &step, built).await?;
            }
        }
        for step in &stage.steps {
            if self.out.cancelled() {
                return Err(BuildError::new("the build was cancelled"));
            }
            self.announce(&step.text);
            self.execute(&mut state, step, built).await?;
        }
        if last && !self.opts.labels.is_empty() {
            let text: Vec<String> = self.opts.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let text = format!("LABEL {}", text.join(" "));
            self.announce(&text);
            let labels = object_at(&mut state.config, "Labels");
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), json!(v));
            }
            self.commit_config(&mut state, &format!("/bin/sh -c #(nop)  {text}")).await?;
        }
        Ok(state.image)
    }

    /// The architecture `--platform` asks for (images made from scratch are of it).
    fn target_arch(&self) -> Option<String> {
        let p = self.opts.platform.as_deref().filter(|p| !p.is_empty())?;
        crate::engine::platform::Platform::parse(p).ok()?.arch
    }

    /// The stage's base: an earlier stage, scratch, or an image (pulled when missing or asked).
    async fn base_image(
        &self,
        base: &str,
        platform: Option<&str>,
        built: &Built,
    ) -> Result<Option<Arc<StoredImage>>, BuildError> {
        let lower = base.to_ascii_lowercase();
        if let Some(i) = self.dockerfile.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
            if let Some(img) = built.get(&i) {
                return Ok(img.clone());
            }
        }
        if lower == "scratch" {
            return Ok(None);
        }
        let platform = platform.or(self.opts.platform.as_deref()).filter(|p| !p.is_empty());
        let wanted = platform.map(crate::engine::platform::Platform::parse).transpose()?;
        if !self.opts.pull {
            // A local image serves when it is of the platform asked for (`--platform`, FROM's).
            if let Ok(img) = images::resolve(self.engine, base) {
                match &wanted {
                    None => return Ok(Some(img)),
                    Some(w) => {
                        if let Some(m) = crate::engine::platform_group::for_platform(&self.engine.store, &img, w) {
                            return Ok(Some(m));
                        }
                    }
                }
            }
        }
        let reference = crate::engine::reference::ImageRef::parse(base)
            .map_err(|e| BuildError::new(format!("invalid reference format: {base}: {e}")))?;
        let auth = crate::engine::registry::AuthConfig::default();
        let pulled = async {
            let plan = crate::engine::registry::pull_prepare(self.engine, reference.clone(), platform, &auth).await?;
            crate::engine::registry::pull_run(self.engine, plan, self.out.progress()).await
        }
        .await;
        match pulled {
            Ok(()) => images::resolve_platform(self.engine, base, wanted.as_ref()).map(Some).map_err(BuildError::from),
            // With --pull, a local image still serves when the registry cannot be reached.
            Err(e) => match images::resolve(self.engine, base) {
                Ok(img) if self.opts.pull && wanted.as_ref().is_none_or(|w| w.matches(&img.config)) => Ok(Some(img)),
                Ok(img) if wanted.is_some() => Err(BuildError::new(format!(
                    "{base} is {} here, not the {} asked for, and pulling that failed: {e}",
                    crate::engine::platform::of_image(&img.config),
                    wanted.as_ref().map(|w| w.text()).unwrap_or_default()
                ))),
                _ => Err(BuildError::new(e.to_string())),
            },
        }
    }

    async fn execute(&mut self, state: &mut State, step: &Step, built: &Built) -> Result<(), BuildError> {
        let esc = self.dockerfile.escape;
        let word = |t: &str, state: &State| lex::word(t, &state.vars(), esc).map_err(BuildError::new);
        let nop = format!("/bin/sh -c #(nop)  {}", step.text);
        match &step.kind {
            StepKind::Arg(decl) => {
                let (name, default) = arg_decl(decl, &state.vars(), esc)?;
                self.used_args.insert(name.clone());
                let value = match self.opts.build_args.get(&name) {
                    Some(Some(v)) => Some(v.clone()),
                    _ => default.or_else(|| self.global.get(&name).cloned()),
                };
                if let Some(v) = value {
                    state.args.insert(name, v);
                }
                self.commit_config(state, &nop).await
            }
            StepKind::Env(raw) | StepKind::Label(raw) => {
                let env = matches!(step.kind, StepKind::Env(_));
                let vars = state.vars();
                let tokens = lex::split_raw(raw, esc).map_err(BuildError::new)?;
                let pairs: Vec<(String, String)> = if tokens.first().is_some_and(|t| t.contains('=')) {
                    tokens
                        .iter()
                        .map(|t| {
                            let w = lex::word(t, &vars, esc).map_err(BuildError::new)?;
                            match w.split_once('=') {
                                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                                _ => Err(BuildError::new(format!(
                                    "{} names can not be blank: {t}",
                                    if env { "ENV" } else { "LABEL" }
                                ))),
                            }
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    let (k, v) = raw.trim().split_once(char::is_whitespace).unwrap_or((raw.trim(), ""));
                    vec![(k.to_string(), lex::word(v.trim(), &vars, esc).map_err(BuildError::new)?)]
                };
                for (k, v) in pairs {
                    if env {
                        set_env(&mut state.config, &k, &v);
                    } else {
                        object_at(&mut state.config, "Labels").insert(k, json!(v));
                    }
                }
                self.commit_config(state, &nop).await
            }
            StepKind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    list.extend(lex::words(p, &state.vars(), esc).map_err(BuildError::new)?);
                }
                config_changes::apply(&mut state.config, &[format!("EXPOSE {}", list.join(" "))])?;
                self.commit_config(state, &nop).await
            }
            StepKind::Cmd(c) | StepKind::Entrypoint(c) => {
                let key = if matches!(step.kind, StepKind::Cmd(_)) { "Cmd" } else { "Entrypoint" };
                let argv = self.argv(c, state);
                if let Some(obj) = state.config.as_object_mut() {
                    obj.insert(key.into(), json!(argv));
                    // A new ENTRYPOINT resets the CMD it inherited (Docker's rule).
                    if key == "Entrypoint" {
                        obj.insert("Cmd".into(), Value::Null);
                    }
                }
                self.commit_config(state, &nop).await
            }
            StepKind::Volume(paths) => {
                let mut list = Vec::new();
                for p in paths {
                    list.push(word(p, state)?);
                }
                let volumes = object_at(&mut state.config, "Volumes");
                for v in list {
                    volumes.insert(v, json!({}));
                }
                self.commit_config(state, &nop).await
            }
            StepKind::User(u) => {
                let u = word(u, state)?;
                state.config["User"] = json!(u);
                self.commit_config(state, &nop).await
            }
            StepKind::Workdir(w) => {
                let w = word(w, state)?;
                let dir = if w.starts_with('/') { w } else { format!("{}/{w}", state.workdir().trim_end_matches('/')) };
                state.config["WorkingDir"] = json!(format!("/{}", copy::clean_rel(&dir).unwrap_or_default()));
                self.commit_config(state, &nop).await
            }
            StepKind::Stopsignal(s) => {
                let s = word(s, state)?;
                crate::engine::containers::parse_signal(&s)?;
                state.config["StopSignal"] = json!(s);
                self.commit_config(state, &nop).await
            }
            StepKind::Healthcheck { flags, cmd } => {
                state.config["Healthcheck"] = healthcheck(flags, cmd.as_ref(), state)?;
                self.commit_config(state, &nop).await
            }
            StepKind::Shell(argv) => {
                if argv.is_empty() {
                    return Err(BuildError::new("SHELL requires at least one argument"));
                }
                state.shell = argv.clone();
                state.config["Shell"] = json!(argv);
                self.commit_config(state, &nop).await
            }
            StepKind::Onbuild(trigger) => {
                let list = state.config.as_object_mut().map(|o| o.entry("OnBuild").or_insert_with(|| json!([])));
                if let Some(Value::Array(a)) = list {
                    a.push(json!(trigger));
                }
                self.commit_config(state, &nop).await
            }
            StepKind::Maintainer(m) => {
                state.author = word(m, state)?;
                self.commit_config(state, &nop).await
            }
            StepKind::Run { cmd, flags, here_docs } => self.run(state, step, cmd, flags, here_docs, built).await,
            StepKind::Copy { add, flags, sources, dest } => {
                self.copy(state, step, *add, flags, sources, dest, built).await
            }
        }
    }

    /// A command in the image's form: exec as is, shell form through the stage's SHELL.
    fn argv(&self, c: &Cmd, state: &State) -> Vec<String> {
        match c {
            Cmd::Exec(a) => a.clone(),
            Cmd::Shell(s) => state.shell.iter().cloned().chain([s.clone()]).collect(),
        }
    }

    /// A step that changes only the config: an image without a new layer.
    async fn commit_config(&mut self, state: &mut State, created_by: &str) -> Result<(), BuildError> {
        let config_text = serde_json::to_string(&state.config).unwrap_or_default();
        let key = cache::key(
            state.image.as_ref().map(|i| &i.record.id),
            &["config", created_by, &config_text, &state.author, &self.target_arch().unwrap_or_default()],
        );
        if let Some(hit) = self.cached(&key) {
            state.image = Some(hit);
            return Ok(());
        }
        let spec = ImageSpec {
            parent: state.image.clone(),
            config: state.config.clone(),
            author: state.author.clone(),
            comment: String::new(),
            created_by: created_by.to_string(),
            tags: Vec::new(),
            architecture: self.target_arch(),
        };
        let engine = self.engine.clone();
        let id = blocking(move || new_image::create(&engine, spec, None)).await?;
        self.adopt(state, key, id)
    }

    /// Records a new step image as the stage's current image.
    fn adopt(&self, state: &mut State, key: String, id: Digest) -> Result<(), BuildError> {
        self.engine.build_cache.put(key, id.clone());
        let img = self.engine.store.by_id(&id).ok_or_else(|| BuildError::new(format!("image {id} vanished")))?;
        self.out.line(format!(" ---> {}\n", short(&id)));
        state.image = Some(img);
        Ok(())
    }

    /// A cache hit for `key`, announced (unless `--no-cache`, or `--cache-from` does not allow it).
    fn cached(&self, key: &str) -> Option<Arc<StoredImage>> {
        if self.opts.no_cache {
            return None;
        }
        let usable = |id: &Digest| {
            self.cache_sources.is_none_or(|allowed| allowed.contains(id)) && self.engine.store.by_id(id).is_some()
        };
        let id = self.engine.build_cache.get(key, usable)?;
        let img = self.engine.store.by_id(&id)?;
        self.out.line(" ---> Using cache\n");
        self.out.line(format!(" ---> {}\n", short(&id)));
        Some(img)
    }

    async fn run(
        &mut self,
        state: &mut State,
        step: &Step,
        cmd: &Cmd,
        flags: &[(String, Option<String>)],
        here_docs: &[(String, bool)],
        built: &Built,
    ) -> Result<(), BuildError> {
        let Some(parent) = state.image.clone() else {
            return Err(BuildError::new(format!(
                "{}: there is nothing to run: the stage is FROM scratch and has no files",
                step.text
            )));
        };
        let argv = match cmd {
            Cmd::Shell(s) if !here_docs.is_empty() => {
                let script = run_step::heredoc_script(&step.text, s, here_docs);
                state.shell.iter().cloned().chain([script]).collect()
            }
            c => self.argv(c, state),
        };
        // Build args in effect reach the command as environment (an ENV of the same name wins).
        let env_names: HashSet<String> = state.vars().keys().cloned().collect::<HashSet<_>>();
        let configured: HashSet<String> = state
            .config
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().and_then(|s| s.split_once('=')).map(|(k, _)| k.to_string()))
            .collect();
        let mut args_env: Vec<String> =
            state.args.iter().filter(|(k, _)| !configured.contains(*k)).map(|(k, v)| format!("{k}={v}")).collect();
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.build_args.get(p) {
                if !configured.contains(p) && !state.args.contains_key(p) {
                    args_env.push(format!("{p}={v}"));
                }
            }
        }
        let _ = env_names;
        let mut created_by = argv.join(" ");
        if !args_env.is_empty() {
            created_by = format!("|{} {} {created_by}", args_env.len(), args_env.join(" "));
        }
        let mounts = run_step::mounts(flags, self.engine, self.context, built, self.dockerfile)?;
        let network = flags
            .iter()
            .find(|(n, _)| n == "network")
            .map(|(_, v)| v.clone().unwrap_or_default())
            .or_else(|| self.opts.network_mode.clone());
        let key = cache::key(
            Some(&parent.record.id),
            &[
                "run",
                &created_by,
                &serde_json::to_string(&state.config).unwrap_or_default(),
                &mounts.key(),
                network.as_deref().unwrap_or(""),
            ],
        );
        if let Some(hit) = self.cached(&key) {
            state.image = Some(hit);
            return Ok(());
        }
        let job = run_step::Job {
            parent: parent.record.id.clone(),
            config: state.config.clone(),
            argv,
            env: args_env,
            network,
            mounts,
            created_by,
        };
        let id = run_step::run(self.engine, job, self.opts, self.out).await?;
        self.adopt(state, key, id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &mut self,
        state: &mut State,
        step: &Step,
        add: bool,
        flags: &[(String, Option<String>)],
        sources: &[CopySource],
        dest: &str,
        built: &Built,
    ) -> Result<(), BuildError> {
        let what = if add { "ADD" } else { "COPY" };
        let vars = state.vars();
        let esc = self.dockerfile.escape;
        let mut from: Option<String> = None;
        let mut chown: Option<String> = None;
        let mut chmod: Option<u32> = None;
        for (name, value) in flags {
            let v = value.clone().unwrap_or_default();
            match name.as_str() {
                "from" if !add => from = Some(lex::word(&v, &vars, esc).map_err(BuildError::new)?),
                "chown" => chown = Some(lex::word(&v, &vars, esc).map_err(BuildError::new)?),
                "chmod" => {
                    chmod = Some(u32::from_str_radix(&v, 8).map_err(|_| {
                        BuildError::new(format!("invalid --chmod value {v}: an octal mode is expected"))
                    })?)
                }
                "link" | "checksum" | "keep-git-dir" => {}
                other => return Err(BuildError::new(format!("{what}: unknown flag: --{other}"))),
            }
        }
        let dest = lex::word(dest, &vars, esc).map_err(BuildError::new)?;
        let dest = if dest.starts_with('/') {
            dest
        } else {
            let wd = state.workdir();
            let trailing = if dest.ends_with('/') || dest == "." { "/" } else { "" };
            format!("{}/{}{trailing}", wd.trim_end_matches('/'), dest.trim_end_matches('/'))
        };
        // Where the sources come from: the context, or a stage's or an image's files.
        let source_image =
            match &from {
                None => None,
                Some(f) => {
                    let lower = f.to_ascii_lowercase();
                    let stage = self
                        .dockerfile
                        .stages
                        .iter()
                        .position(|s| s.name.as_deref() == Some(lower.as_str()))
                        .or_else(|| lower.parse::<usize>().ok());
                    match stage.and_then(|i| built.get(&i)) {
                        Some(img) => Some(img.clone()),
                        None => Some(Some(self.base_image(f, None, built).await?.ok_or_else(|| {
                            BuildError::new(format!("{what} --from={f}: nothing to copy from scratch"))
                        })?)),
                    }
                }
            };
        let engine = self.engine.clone();
        let context: Arc<dyn Tree> = self.context.clone();
        let current = state.image.clone();
        let srcs: Vec<CopySource> = sources.to_vec();
        let download = add && srcs.iter().any(|s| matches!(s, CopySource::Path(p) if is_url(p)));
        let mut downloaded: Vec<Source> = Vec::new();
        if download {
            for s in &srcs {
                if let CopySource::Path(p) = s {
                    if is_url(p) {
                        let url = lex::word(p, &vars, esc).map_err(BuildError::new)?;
                        downloaded.push(run_step::download(&url).await?);
                    }
                }
            }
        }
        let text = step.text.clone();
        // The cache key: what decides the layer. The parent image (in the key) decides what the
        // destination and its parents are and whom `--chown` names; the sources' names, modes
        // and contents come from the context's index, or are the source image's (an image never
        // changes: its id and the patterns name them). No image is mounted for a cache hit.
        let patterns: Vec<String> = srcs
            .iter()
            .filter_map(|s| match s {
                CopySource::Path(p) if !is_url(p) => Some(lex::word(p, &vars, esc).map_err(BuildError::new)),
                _ => None,
            })
            .collect::<Result<_, _>>()?;
        let mut resolved: Vec<Source> = downloaded;
        for s in &srcs {
            if let CopySource::HereDoc { content, expand } = s {
                let bytes = if *expand {
                    lex::word(content, &vars, '\\').unwrap_or_else(|_| content.clone())
                } else {
                    content.clone()
                };
                let name = dest.rsplit('/').next().unwrap_or("heredoc").to_string();
                resolved.push(Source::Data { name, bytes: bytes.into_bytes(), mode: 0o644, mtime: 0 });
            }
        }
        if resolved.is_empty() && patterns.is_empty() {
            return Err(BuildError::new(format!("{what} failed: no source files were specified")));
        }
        let bad = move |e: String| crate::engine::EngineError::InvalidArgument(format!("{what} failed: {e}"));
        let source_hash = match &source_image {
            Some(img) => {
                let id = img.as_ref().map_or_else(|| "scratch".to_string(), |i| i.record.id.to_string());
                let data = copy::source_hash(&*context, &resolved, add).map_err(|e| BuildError::new(e.to_string()))?;
                cache::key(None, &["from", &id, &patterns.join("\0"), &data])
            }
            None => {
                let (ctx, pats, data) = (context.clone(), patterns.clone(), resolved.clone());
                let (found, hash) = blocking(move || {
                    let mut found = data;
                    for p in &pats {
                        found.extend(copy::resolve(&*ctx, p).map_err(bad)?);
                    }
                    let hash = copy::source_hash(&*ctx, &found, add).map_err(|e| bad(e.to_string()))?;
                    Ok((found, hash))
                })
                .await?;
                resolved = found;
                hash
            }
        };
        let created_by =
            format!("/bin/sh -c #(nop) {what} {}:{source_hash} in {dest} ", if add { "file" } else { "dir" });
        let key = cache::key(
            state.image.as_ref().map(|i| &i.record.id),
            &[
                "copy",
                &text,
                &dest,
                chown.as_deref().unwrap_or_default(),
                &chmod.map(|m| format!("{m:o}")).unwrap_or_default(),
                &source_hash,
                &serde_json::to_string(&state.config).unwrap_or_default(),
                &self.target_arch().unwrap_or_default(),
            ],
        );
        if let Some(hit) = self.cached(&key) {
            state.image = Some(hit);
            return Ok(());
        }
        let spec = ImageSpec {
            parent: state.image.clone(),
            config: state.config.clone(),
            author: state.author.clone(),
            comment: String::new(),
            created_by,
            tags: Vec::new(),
            architecture: self.target_arch(),
        };
        let id = blocking(move || {
            let source_view = match &source_image {
                Some(img) => Some(ImageView::open(&engine, img.as_deref())?),
                None => None,
            };
            let tree: Arc<dyn Tree> = match &source_view {
                Some(v) => Arc::new(FsTree::new(v.path())),
                None => context,
            };
            if source_view.is_some() {
                for p in &patterns {
                    resolved.extend(copy::resolve(&*tree, p).map_err(bad)?);
                }
            }
            let target_view = ImageView::open(&engine, current.as_deref())?;
            let owner = match &chown {
                Some(spec) => Some(owner_of(spec, &target_view).map_err(bad)?),
                None => None,
            };
            let plan = copy::plan(&*tree, &resolved, &dest, Perms { owner, mode: chmod }, add, &target_view)
                .map_err(|e| bad(e.to_string()))?;
            drop(target_view);
            let w = engine.store.blob_writer()?;
            let w = copy::write(&*tree, &plan, w).map_err(|e| bad(e.to_string()))?;
            drop(tree);
            drop(source_view);
            new_image::create(&engine, spec, Some(w))
        })
        .await?;
        self.adopt(state, key, id)
    }
}

fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://")
}

/// `--chown=user[:group]` as numbers, names looked up in the image's files.
fn owner_of(spec: &str, image: &ImageView) -> Result<(u32, u32), String> {
    let passwd = image.read_text("/etc/passwd");
    let group = image.read_text("/etc/group");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |table: &str, name: &str, field: usize| -> Option<u32> {
        table
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(field)?.parse().ok())
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(&passwd, user, 2)
            .ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?,
    };
    let gid = match grp {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group, g, 2)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
        None => match user.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&passwd, user, 3).unwrap_or(0),
        },
    };
    Ok((uid, gid))
}

/// `config_changes`' helpers on the stage's config (always an object).
fn object_at<'a>(config: &'a mut Value, key: &str) -> &'a mut serde_json::Map<String, Value> {
    config_changes::object_at(as_object(config), key)
}

fn set_env(config: &mut Value, key: &str, value: &str) {
    config_changes::set_env(as_object(config), key, value);
}

fn as_object(config: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !config.is_object() {
        *config = json!({});
    }
    match config {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

/// `HEALTHCHECK` as the config's `Healthcheck`.
fn healthcheck(flags: &[(String, Option<String>)], cmd: Option<&Cmd>, state: &State) -> Result<Value, BuildError> {
    let Some(cmd) = cmd else { return Ok(json!({"Test": ["NONE"]})) };
    let test: Vec<String> = match cmd {
        Cmd::Exec(a) => std::iter::once("CMD".to_string()).chain(a.iter().cloned()).collect(),
        Cmd::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
    };
    let mut h = json!({"Test": test});
    for (name, value) in flags {
        let v = value.clone().unwrap_or_default();
        let key = match name.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                h["Retries"] =
                    json!(v.parse::<i64>().map_err(|_| BuildError::new(format!("invalid --retries value {v}")))?);
                continue;
            }
            other => return Err(BuildError::new(format!("HEALTHCHECK: unknown flag: --{other}"))),
        };
        h[key] = json!(go_duration(&v).ok_or_else(|| BuildError::new(format!("invalid --{name} duration {v}")))?);
    }
    let _ = state;
    Ok(h)
}

/// Go's duration syntax (`1m30s`, `500ms`) in nanoseconds.
fn go_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if !(0.0..9.2e18).contains(&total) {
        return None;
    }
    // In range (checked above); sub-nanosecond fractions are dropped, as Go does.
    #[allow(clippy::cast_possible_truncation)]
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_arg_declarations() {
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("500ms"), Some(500_000_000));
        assert_eq!(go_duration("5x"), None);
        let vars = Vars::from([("V".to_string(), "1.2".to_string())]);
        assert_eq!(
            arg_decl("VERSION=${V}-x", &vars, '\\').ok(),
            Some(("VERSION".to_string(), Some("1.2-x".to_string())))
        );
        assert_eq!(arg_decl("NAME", &vars, '\\').ok(), Some(("NAME".to_string(), None)));
        assert!(arg_decl("", &vars, '\\').is_err());
    }
}
