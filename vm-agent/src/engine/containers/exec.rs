//! `docker exec`: extra processes in a running container. Each exec joins the container's
//! namespaces through `skiff-agent exec-child`, gets its own stdio hub (not logged), and reports its
//! exit code once it has been reaped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use bollard_stubs::models::ExecConfig;
use tokio::sync::watch;

use super::io::{IoHub, STDOUT};
use super::record::Status;
use super::stdio::{dev_null, make_pipes};
use super::Container;
use crate::engine::{Engine, EngineError};
use crate::runtime::{self, child::ExecRequest, reaper};

/// One exec session.
#[derive(Debug)]
pub struct Exec {
    /// 64 hex digits.
    pub id: String,
    /// The container it runs in.
    pub container: Arc<Container>,
    /// What was asked for.
    pub config: ExecConfig,
    /// Set when started: the stdio hub.
    pub io: watch::Sender<Option<Arc<IoHub>>>,
    /// (running, pid, exit code when done).
    state: Mutex<(bool, i32, Option<i32>)>,
    exited: watch::Sender<bool>,
}

impl Exec {
    /// (running, pid, exit code).
    pub fn state(&self) -> (bool, i32, Option<i32>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once the process has exited and its output is drained.
    pub fn exited(&self) -> watch::Receiver<bool> {
        self.exited.subscribe()
    }
}

/// All exec sessions.
#[derive(Debug, Default)]
pub struct Execs(Mutex<HashMap<String, Arc<Exec>>>);

impl Execs {
    /// Finds an exec by id.
    pub fn get(&self, id: &str) -> Result<Arc<Exec>, EngineError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    /// Drops a finished exec the engine ran for itself (health probes).
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Whether a process can be started in `c` now: it runs and is not paused (the process joins
/// the container's cgroups, and a frozen one would freeze it before it could start), as dockerd.
fn runnable_in(c: &Container) -> Result<(), EngineError> {
    match c.record().state.status {
        Status::Running => Ok(()),
        Status::Paused => {
            Err(EngineError::Conflict(format!("Container {} is paused, unpause the container before exec", c.id)))
        }
        _ => Err(EngineError::Conflict(format!("container {} is not running", c.id))),
    }
}

/// `POST /containers/{id}/exec`.
pub fn create(engine: &Engine, c: &Arc<Container>, config: ExecConfig) -> Result<String, EngineError> {
    runnable_in(c)?;
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(EngineError::InvalidArgument("No exec command specified".into()));
    }
    let id = hex::encode(rand::random::<[u8; 32]>());
    let exec = Arc::new(Exec {
        id: id.clone(),
        container: c.clone(),
        config,
        io: watch::channel(None).0,
        state: Mutex::new((false, 0, None)),
        exited: watch::channel(false).0,
    });
    engine.execs.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), exec);
    Ok(id)
}

/// `POST /exec/{id}/start`: starts the process; output goes to the returned hub.
pub async fn start(engine: &Arc<Engine>, exec: &Arc<Exec>) -> Result<Arc<IoHub>, EngineError> {
    {
        let mut st = exec.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 || st.2.is_some() {
            return Err(EngineError::Conflict(format!("exec {} has already been started", exec.id)));
        }
        st.0 = true;
    }
    let c = &exec.container;
    let rec = c.record();
    if let Err(e) = runnable_in(c) {
        exec.state.lock().unwrap_or_else(|p| p.into_inner()).0 = false;
        return Err(e);
    }
    let cfg = &exec.config;
    let tty = cfg.tty.unwrap_or(false);
    let open_stdin = cfg.attach_stdin.unwrap_or(false);
    let hostname = rec.config.hostname.clone().unwrap_or_default();
    let mut env = super::spec::runtime_env(rec.config.env.clone().unwrap_or_default(), &hostname, tty);
    for e in cfg.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let req = ExecRequest {
        pid: rec.state.pid,
        args: cfg.cmd.clone().unwrap_or_default(),
        env,
        cwd: cfg
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or(rec.config.working_dir.clone())
            .unwrap_or_else(|| "/".into()),
        user: cfg.user.clone().filter(|u| !u.is_empty()).or(rec.config.user.clone()).unwrap_or_default(),
        terminal: tty,
        console_size: cfg
            .console_size
            .as_ref()
            .and_then(|s| Some((u32::try_from(*s.first()?).ok()?, u32::try_from(*s.get(1)?).ok()?))),
        privileged: cfg.privileged.unwrap_or(false),
    };
    let req_path = c.dir().join(format!("exec-{}.json", exec.id));
    crate::store::atomic::replace_json(&req_path, &req)
        .map_err(|e| EngineError::Internal(format!("writing exec request: {e}")))?;
    let (stdio, mut hub): ((OwnedFd, OwnedFd, OwnedFd), Option<Arc<IoHub>>) = if tty {
        ((dev_null()?, dev_null()?, dev_null()?), None)
    } else {
        let p = make_pipes(open_stdin)?;
        let hub = IoHub::new(None, p.stdin_writer, None, p.readers.len() as u64)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        for (fd, stream) in p.readers {
            tokio::spawn(hub.clone().pump(fd, stream));
        }
        ((p.stdin, p.stdout, p.stderr), Some(hub))
    };
    let bundle = c.dir().to_path_buf();
    let req_path2 = req_path.clone();
    let cgroup = c.cgroup(engine).v2_dir();
    let started = tokio::task::spawn_blocking(move || {
        runtime::exec(&bundle, &req_path2, [stdio.0, stdio.1, stdio.2], tty, cgroup.as_deref())
    })
    .await?;
    // The next runtime child is made now, not while this one started.
    runtime::ready::refill();
    let _ = std::fs::remove_file(&req_path);
    let mut started = match started {
        Ok(s) => s,
        Err(e) => {
            // dockerd records 126 for any exec that could not start, a missing binary included
            // (unlike `run`, where a missing command is 127).
            let code = 126;
            *exec.state.lock().unwrap_or_else(|p| p.into_inner()) = (false, 0, Some(code));
            exec.exited.send_replace(true);
            return Err(EngineError::InvalidArgument(format!(
                "OCI runtime exec failed: exec failed: unable to start container process: {}: unknown",
                e.message
            )));
        }
    };
    if tty {
        let master =
            started.pty.take().ok_or_else(|| EngineError::Internal("the exec's terminal is missing".into()))?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| EngineError::Internal(e.to_string()));
        let reader = dup(&master)?;
        let writer = if open_stdin { Some(dup(&master)?) } else { None };
        let h = IoHub::new(None, writer, Some(master), 1).map_err(|e| EngineError::Internal(e.to_string()))?;
        tokio::spawn(h.clone().pump(reader, STDOUT));
        hub = Some(h);
    }
    let hub = hub.ok_or_else(|| EngineError::Internal("no exec output hub".into()))?;
    exec.io.send_replace(Some(hub.clone()));
    exec.state.lock().unwrap_or_else(|p| p.into_inner()).1 = started.pid;
    let exit = reaper::wait_for(started.pid);
    let (exec2, hub2) = (exec.clone(), hub.clone());
    let engine2 = engine.clone();
    tokio::spawn(async move {
        let code = exit.await.unwrap_or(255);
        let mut done = hub2.finished();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), done.wait_for(|d| *d)).await;
        *exec2.state.lock().unwrap_or_else(|p| p.into_inner()) = (false, 0, Some(code));
        exec2.exited.send_replace(true);
        let attrs =
            HashMap::from([("execID".to_string(), exec2.id.clone()), ("exitCode".to_string(), code.to_string())]);
        engine2.events.publish(
            bollard_stubs::models::EventMessageTypeEnum::CONTAINER,
            "exec_die",
            &exec2.container.id,
            attrs,
        );
    });
    Ok(hub)
}
