//! Exec endpoints: create, start (hijacked or detached), inspect, resize.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::ExecConfig;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::params::{json_body, json_body_folded, Params};
use crate::engine::containers::exec;
use crate::engine::containers::view::LogOptions;
use crate::engine::Engine;

/// `POST /containers/{id}/exec`.
pub async fn create(State(engine): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let cfg: ExecConfig = json_body_folded(&body, crate::engine::go_json::field_names::<ExecConfig>())?;
    detach_keys(&cfg)?;
    let exec_id = exec::create(&engine, &c, cfg)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"Id": exec_id}))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    tty: Option<bool>,
}

/// `POST /exec/{id}/start`.
pub async fn start(State(engine): State<Arc<Engine>>, Path(id): Path<String>, mut req: Request) -> ApiResult<Response> {
    let e = engine.execs.get(&id)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let bytes = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    let body: StartBody = json_body(&bytes)?;
    if body.detach {
        exec::start(&engine, &e).await?;
        return Ok(StatusCode::OK.into_response());
    }
    // As dockerd: the start's `Tty` decides the framing of the stream (raw or multiplexed); the
    // exec's own `Tty` (at create) decides whether the process gets a terminal.
    let tty = body.tty.unwrap_or(false);
    let detach_keys = detach_keys(&e.config)?;
    let opts = LogOptions {
        stdout: e.config.attach_stdout.unwrap_or(true),
        stderr: e.config.attach_stderr.unwrap_or(true),
        ..Default::default()
    };
    let want_stdin = e.config.attach_stdin.unwrap_or(false);
    // Hijack first, then start: a start failure is written into the stream (as Docker does) and
    // the client reads the exit code from the exec's inspect.
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        match exec::start(&engine, &e).await {
            Ok(hub) => {
                let (early, rx) = hub.from_start();
                let session = super::session::Session {
                    tty,
                    opts,
                    prelude: Vec::new(),
                    feed: Box::pin(async move { Some((hub, early, rx)) }),
                    stdin: want_stdin,
                    close_stdin_on_eof: true,
                    done: Some(e.exited()),
                    settle_before_replay: false,
                    detach_keys,
                    detach_message: Some("exec attach failed: error on attach stdin: read escape sequence"),
                };
                super::session::run(upgraded, session).await;
            }
            Err(err) => super::session::fail(upgraded, tty, &err.to_string()).await,
        }
    });
    Ok(super::session::upgrade_response(tty))
}

/// The exec's detach sequence: its `DetachKeys`, else ctrl-p ctrl-q for an interactive terminal.
fn detach_keys(cfg: &ExecConfig) -> Result<Vec<u8>, ApiError> {
    let (tty, stdin) = (cfg.tty.unwrap_or(false), cfg.attach_stdin.unwrap_or(false));
    super::session::detach_keys(cfg.detach_keys.as_deref(), tty, stdin)
}

/// `GET /exec/{id}/json`.
pub async fn inspect(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = engine.execs.get(&id)?;
    let (running, pid, code) = e.state();
    let c = &e.config;
    Ok(Json(serde_json::json!({
        "ID": e.id,
        "ContainerID": e.container.id,
        "Running": running,
        "ExitCode": code,
        "Pid": pid,
        "OpenStdin": c.attach_stdin.unwrap_or(false),
        "OpenStdout": c.attach_stdout.unwrap_or(false),
        "OpenStderr": c.attach_stderr.unwrap_or(false),
        "CanRemove": false,
        "DetachKeys": c.detach_keys.clone().unwrap_or_default(),
        "ProcessConfig": {
            "tty": c.tty.unwrap_or(false),
            "entrypoint": c.cmd.as_ref().and_then(|v| v.first()).cloned().unwrap_or_default(),
            "arguments": c.cmd.as_ref().map(|v| v.iter().skip(1).cloned().collect::<Vec<_>>()).unwrap_or_default(),
            "privileged": c.privileged.unwrap_or(false),
            "user": c.user.clone().unwrap_or_default(),
        },
    }))
    .into_response())
}

/// `POST /exec/{id}/resize`.
pub async fn resize(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let e = engine.execs.get(&id)?;
    super::session::resize(e.io.borrow().clone(), &p)?;
    Ok(StatusCode::CREATED)
}
