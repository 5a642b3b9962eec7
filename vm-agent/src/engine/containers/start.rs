//! `POST /containers/{id}/start`: the one launch path of a container (the API, restart policies
//! and recovery all come here), run as a transaction of steps (`start_transaction.rs`): a failure
//! at any step undoes the earlier ones in reverse, exactly once.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::io::{IoHub, STDOUT};
use super::record::Status;
use super::start_transaction::{self, StartSteps, Step};
use super::volume_use::{self, VolumeHold};
use super::{event, exit, health, host_config, links, network, spec, stdio, Container};
use crate::engine::{now_rfc3339, Engine, EngineError};
use crate::runtime::{self, reaper, ErrorKind};
use crate::store::atomic;

/// Starts `c`. Returns `false` if it was already running. A container with `--rm` that fails to
/// start is removed.
pub async fn start(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<bool, EngineError> {
    let result = start_locked(engine, c).await;
    if result.is_err() && c.record().host_config.auto_remove.unwrap_or(false) {
        if let Err(e) = super::remove::remove(engine, c, true, true).await {
            tracing::warn!(container.id = %c.id, error = %e, "auto-remove after failed start");
        }
    }
    result
}

async fn start_locked(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<bool, EngineError> {
    let _op = c.op.lock().await;
    match c.record().state.status {
        Status::Running | Status::Paused => return Ok(false),
        Status::Removing | Status::Dead => {
            return Err(EngineError::Conflict(format!("container {} is being removed", c.id)))
        }
        _ => {}
    }
    let mut steps = EngineStart::new(engine, c);
    let result = start_transaction::run(&mut steps).await;
    // The next container's network namespace and runtime child are made now, not while this
    // one started.
    engine.networks.netns_pool.refill();
    runtime::ready::refill();
    match result {
        Ok(()) => Ok(true),
        Err((Step::Build | Step::Process, e)) => {
            // The process never ran: as dockerd, the container "died" with the launch's exit code.
            let code = c.record().state.exit_code;
            event(engine, "die", &c.record(), &[("exitCode", code.to_string())]);
            c.exits.send_modify(|(n, last)| {
                *n += 1;
                *last = code;
            });
            Err(e)
        }
        Err((_, e)) => Err(e),
    }
}

/// The restart policy's start, after its back-off (unless stopped meanwhile). It stays
/// "restarting" until `start` makes it "running": briefly reporting "exited" here let a watcher
/// see the final state of a restart that had not happened yet.
async fn restart_after(engine: Arc<Engine>, c: Arc<Container>, delay: Duration) {
    tokio::time::sleep(delay).await;
    if c.record().state.status != Status::Restarting || c.record().stopped_by_user {
        return;
    }
    let _ = c.update(|r| r.restart_count += 1);
    event(&engine, "restart", &c.record(), &[]);
    if let Err(e) = start(&engine, &c).await {
        tracing::warn!(container.id = %c.id, error = %e, "restart policy could not start the container");
    }
}

/// The engine's start steps and what they hand on to the later ones.
struct EngineStart<'a> {
    engine: &'a Arc<Engine>,
    c: &'a Arc<Container>,
    lower_dirs: Vec<String>,
    hostname: String,
    net: Option<network::Prepared>,
    cgroup_procs: Vec<String>,
    volumes: Option<VolumeHold>,
    stdio: Option<(OwnedFd, OwnedFd, OwnedFd)>,
    launch: Option<tokio::task::JoinHandle<Result<runtime::Launch, runtime::LaunchError>>>,
    launched: Option<runtime::Launch>,
    hub: Option<Arc<IoHub>>,
    pid: Option<i32>,
    links: Vec<links::Link>,
    /// The container's root, held until its exit or removal was answered (runtime/report.rs).
    root: Option<OwnedFd>,
}

impl<'a> EngineStart<'a> {
    fn new(engine: &'a Arc<Engine>, c: &'a Arc<Container>) -> Self {
        Self {
            engine,
            c,
            lower_dirs: Vec::new(),
            hostname: String::new(),
            net: None,
            cgroup_procs: Vec::new(),
            volumes: None,
            stdio: None,
            launch: None,
            launched: None,
            hub: None,
            pid: None,
            links: Vec::new(),
            root: None,
        }
    }

    fn layers(&mut self) -> Result<(), EngineError> {
        let rec = self.c.record();
        let image = self
            .engine
            .store
            .by_id(&rec.image_id)
            .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image)))?;
        if !crate::runtime::binfmt::can_run(&image.config.architecture) {
            return Err(EngineError::InvalidArgument(crate::runtime::binfmt::cannot_run_message(
                &image.config.os,
                &image.config.architecture,
            )));
        }
        self.lower_dirs = self.c.prepare_layers(self.engine, &image)?;
        self.hostname =
            rec.config.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| self.c.id[..12].to_string());
        Ok(())
    }

    fn etc_files(&mut self) -> Result<(), EngineError> {
        let net = self.net.as_ref().ok_or_else(|| EngineError::Internal("the network step did not run".into()))?;
        let rec = self.c.record();
        self.links = links::resolve(self.engine, &rec)?;
        network::write_etc_files(self.c.dir(), &rec, &self.hostname, net, &links::hosts(&self.links))
            .map_err(|e| EngineError::Internal(format!("writing /etc files: {e}")))
    }

    async fn cgroup(&mut self) -> Result<(), EngineError> {
        let cg = self.c.cgroup(self.engine);
        let limits = host_config::limits_of(&self.c.record().host_config);
        if let Some((warnings, procs)) = super::early_cgroup::take(self.engine, self.c, &limits).await {
            self.cgroup_made(warnings, procs);
            return Ok(());
        }
        let created = tokio::task::spawn_blocking(move || match cg.create(&limits) {
            Ok(made) => Ok(made),
            Err(e) => {
                // Whatever part of it was made (one v1 hierarchy of several) goes.
                cg.remove();
                Err(e)
            }
        })
        .await?;
        let (warnings, procs) = created.map_err(|e| EngineError::Internal(format!("setting up cgroups: {e}")))?;
        self.cgroup_made(warnings, procs);
        Ok(())
    }

    fn cgroup_made(&mut self, warnings: Vec<String>, procs: Vec<String>) {
        for w in warnings {
            tracing::warn!(container.id = %self.c.id, warning = %w, "cgroup limit not enforced");
        }
        self.cgroup_procs = procs;
    }

    fn bundle(&self) -> Result<(), EngineError> {
        let rec = self.c.record();
        let net = self.net.as_ref().ok_or_else(|| EngineError::Internal("the network step did not run".into()))?;
        let inputs = spec::SpecInputs {
            bundle: self.c.dir(),
            lower_dirs: self.lower_dirs.clone(),
            hostname: self.hostname.clone(),
            args: rec.args.clone(),
            cgroup_procs: self.cgroup_procs.clone(),
            mounts: &rec.mounts,
            netns: net.netns_path.clone(),
            extra_env: links::env(&self.links, &rec.name),
        };
        let oci = spec::build(&rec.config, &rec.host_config, &inputs)?;
        let bytes = serde_json::to_vec_pretty(&oci).map_err(|e| EngineError::Internal(e.to_string()))?;
        // Rebuilt at every start: nothing to wait for the disk for.
        atomic::replace_file(&self.c.dir().join("config.json"), &bytes)
            .map_err(|e| EngineError::Internal(format!("writing bundle: {e}")))
    }

    /// Without a terminal the hub exists before the process, so no output is missed. With one,
    /// the container allocates the pty and its hub starts in the process step (output waits in
    /// the pty meanwhile).
    fn stdio(&mut self) -> Result<(), EngineError> {
        let rec = self.c.record();
        if rec.config.tty.unwrap_or(false) {
            self.stdio = Some((stdio::dev_null()?, stdio::dev_null()?, stdio::dev_null()?));
            return Ok(());
        }
        let p = stdio::make_pipes(rec.config.open_stdin.unwrap_or(false))?;
        let limits = host_config::log_limits(&rec.host_config);
        let hub = IoHub::new(Some((&self.c.log_path(), limits)), p.stdin_writer, None, p.readers.len() as u64)
            .map_err(|e| EngineError::Internal(format!("opening log: {e}")))?;
        stdio::publish_hub(self.c, &hub, p.readers);
        self.stdio = Some((p.stdin, p.stdout, p.stderr));
        self.hub = Some(hub);
        Ok(())
    }

    /// The runtime child is started on a blocking thread while the next steps run: exec'ing it
    /// and its joining the cgroups overlap the network's setup. The process step waits for it.
    fn launch(&mut self) -> Result<(), EngineError> {
        let tty = self.c.record().config.tty.unwrap_or(false);
        let (stdin, stdout, stderr) =
            self.stdio.take().ok_or_else(|| EngineError::Internal("the stdio step did not run".into()))?;
        let (bundle, procs) = (self.c.dir().to_path_buf(), self.cgroup_procs.clone());
        self.launch = Some(tokio::task::spawn_blocking(move || {
            runtime::prepare_start(&bundle, &procs, stdin, stdout, stderr, tty)
        }));
        Ok(())
    }

    /// The go: the runtime child creates the container from the bundle and builds its root while
    /// the network is wired.
    async fn build(&mut self) -> Result<(), EngineError> {
        let launch = self.launch.take().ok_or_else(|| EngineError::Internal("the launch step did not run".into()))?;
        let launch = launch.await?.map_err(|e| self.launch_failed(e))?;
        launch.go();
        self.launched = Some(launch);
        Ok(())
    }

    async fn wiring(&mut self) -> Result<(), EngineError> {
        let net = self.net.as_ref().ok_or_else(|| EngineError::Internal("the network step did not run".into()))?;
        match &net.netns_path {
            Some(path) => network::wire(self.engine, path, &net.wiring).await,
            None => Ok(()),
        }
    }

    /// Why the container's process could not be made, as dockerd says it; the record keeps the
    /// exit code Docker shows for it.
    fn launch_failed(&self, e: runtime::LaunchError) -> EngineError {
        let code = match e.kind {
            ErrorKind::NotFound => 127,
            ErrorKind::Permission => 126,
            ErrorKind::Other => 128,
        };
        if let Err(saving) = self.c.update(|r| {
            r.state.exit_code = code;
            r.state.error = e.message.clone();
        }) {
            return saving;
        }
        let msg = format!(
            "failed to create task for container: OCI runtime create failed: unable to start container process: {}: unknown",
            e.message
        );
        if e.kind == ErrorKind::Other {
            EngineError::Internal(msg)
        } else {
            EngineError::InvalidArgument(msg)
        }
    }

    async fn process(&mut self) -> Result<(), EngineError> {
        let rec = self.c.record();
        let tty = rec.config.tty.unwrap_or(false);
        let mut launch =
            self.launched.take().ok_or_else(|| EngineError::Internal("the build step did not run".into()))?;
        // Released here, not on the blocking thread: the container's PID 1 is waiting for it.
        launch.release();
        let mut started =
            tokio::task::spawn_blocking(move || launch.finish()).await?.map_err(|e| self.launch_failed(e))?;
        for w in &started.warnings {
            tracing::warn!(container.id = %self.c.id, warning = %w, "container setting adjusted");
        }
        self.pid = Some(started.pid);
        self.root = started.root.take();
        if tty {
            let hub = started
                .pty
                .take()
                .ok_or_else(|| EngineError::Internal("the container's terminal is missing".into()))
                .and_then(|master| self.terminal_hub(master, &rec));
            match hub {
                Ok(h) => self.hub = Some(h),
                Err(e) => {
                    self.kill_process().await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn terminal_hub(&self, master: OwnedFd, rec: &super::record::ContainerRecord) -> Result<Arc<IoHub>, EngineError> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| EngineError::Internal(e.to_string()));
        let reader = dup(&master)?;
        let writer = if rec.config.open_stdin.unwrap_or(false) { Some(dup(&master)?) } else { None };
        let h = IoHub::new(host_config::log_target(&self.c.log_path(), &rec.host_config), writer, Some(master), 1)
            .map_err(|e| EngineError::Internal(format!("opening log: {e}")))?;
        stdio::publish_hub(self.c, &h, vec![(reader, STDOUT)]);
        Ok(h)
    }

    /// Ends the process this start launched and waits until the reaper has collected it.
    async fn kill_process(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let exited = reaper::wait_for(pid);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        for p in self.c.cgroup(self.engine).pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        if tokio::time::timeout(Duration::from_secs(10), exited).await.is_err() {
            tracing::warn!(container.id = %self.c.id, pid, "a process of a failed start did not exit after SIGKILL");
        }
    }

    /// The hub goes: attach clients see the end, stdin closes.
    async fn drop_hub(&mut self) {
        if let Some(h) = self.hub.take() {
            h.close_stdin().await;
        }
        self.c.io.send_replace(None);
    }

    fn running(&mut self) -> Result<(), EngineError> {
        let pid = self.pid.ok_or_else(|| EngineError::Internal("the process step did not run".into()))?;
        if self.hub.is_none() {
            return Err(EngineError::Internal("no output hub".into()));
        }
        let health = self.c.with_record(|r| health::at_start(&r.config));
        self.c.update(|r| {
            r.stopped_by_user = false;
            r.state.health = health;
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.started_at = now_rfc3339();
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
        })?;
        // From here nothing fails: the running container owns what the start set up, and its exit
        // monitor releases it.
        let Some(hub) = self.hub.take() else { return Ok(()) };
        let volumes = self.volumes.take().unwrap_or_default();
        self.pid = None;
        event(self.engine, "start", &self.c.record(), &[]);
        health::watch(self.engine, self.c);
        let (engine, c) = (self.engine.clone(), self.c.clone());
        let exited = reaper::wait_for(pid);
        // The engine's shutdown waits for exit monitors (and what they leave to the background).
        let monitor = engine.background.track_future(exit::monitor(
            engine.clone(),
            c.clone(),
            exited,
            hub,
            volumes,
            self.root.take(),
        ));
        tokio::spawn(async move {
            if let Some(delay) = monitor.await {
                restart_after(engine, c, delay).await;
            }
        });
        Ok(())
    }
}

impl StartSteps for EngineStart<'_> {
    type Error = EngineError;

    async fn apply(&mut self, step: Step) -> Result<(), EngineError> {
        match step {
            Step::Layers => self.layers(),
            Step::Launch => self.launch(),
            Step::Network => {
                self.net = Some(network::prepare(self.engine, self.c).await?);
                Ok(())
            }
            Step::EtcFiles => self.etc_files(),
            Step::Cgroup => self.cgroup().await,
            Step::Volumes => {
                self.volumes = Some(volume_use::acquire_for_start(self.engine, self.c, &self.lower_dirs)?);
                Ok(())
            }
            Step::Bundle => self.bundle(),
            Step::Build => self.build().await,
            Step::Wiring => self.wiring().await,
            Step::Stdio => self.stdio(),
            Step::Process => self.process().await,
            Step::Running => self.running(),
        }
    }

    async fn undo(&mut self, step: Step) {
        match step {
            // The bundle's directories hold the container's files; the /etc files and the spec
            // are rewritten at the next start.
            // The network step deletes the veths, made or not.
            Step::Layers | Step::EtcFiles | Step::Bundle | Step::Wiring | Step::Running => {}
            Step::Build => {
                if let Some(launch) = self.launched.take() {
                    tokio::task::spawn_blocking(move || launch.abandon()).await.ok();
                }
            }
            Step::Network => {
                self.net = None;
                network::release(self.engine, self.c);
            }
            Step::Cgroup => {
                let cg = self.c.cgroup(self.engine);
                tokio::task::spawn_blocking(move || cg.remove()).await.ok();
            }
            Step::Volumes => {
                if let Some(hold) = self.volumes.take() {
                    hold.release(self.engine.as_ref());
                }
            }
            Step::Stdio => {
                self.stdio = None;
                self.drop_hub().await;
            }
            Step::Launch => {
                if let Some(Ok(Ok(launch))) = match self.launch.take() {
                    Some(started) => Some(started.await),
                    None => None,
                } {
                    tokio::task::spawn_blocking(move || launch.abandon()).await.ok();
                }
            }
            Step::Process => {
                self.kill_process().await;
                self.drop_hub().await;
            }
        }
    }
}
