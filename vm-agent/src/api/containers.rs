//! Container endpoints: thin wrappers over `engine::containers`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::ContainerCreateBody;
use futures::StreamExt;

use super::error::{ApiError, ApiResult};
use super::params::{json_body, Params};
use crate::engine::containers::io::frame;
use crate::engine::containers::view::{self, LogOptions};
use crate::engine::containers::{self, WaitCondition};
use crate::engine::filters::Filters;
use crate::engine::go_json::{field_names, fold_keys};
use crate::engine::Engine;

/// API < 1.44 (docker-py, compose 1.29) sends `--mac-address` as the container-wide
/// `MacAddress`; newer clients put it in the primary network's endpoint settings: move it there.
fn legacy_mac_address(raw: &[u8], req: &mut ContainerCreateBody) {
    let Some(mac) = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("MacAddress").and_then(|m| m.as_str()).map(str::to_string))
        .filter(|m| !m.is_empty())
    else {
        return;
    };
    let mode = req.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    let primary = if mode.is_empty() || mode == "default" { "bridge".to_string() } else { mode };
    if primary.starts_with("container:") {
        return;
    }
    let networking = req.networking_config.get_or_insert_with(Default::default);
    let endpoints = networking.endpoints_config.get_or_insert_with(Default::default);
    let ep = endpoints.entry(primary).or_default();
    if ep.mac_address.as_deref().is_none_or(str::is_empty) {
        ep.mac_address = Some(mac);
    }
}

/// The create body, its keys (and `HostConfig`'s) matched case-insensitively as Go's decoder
/// does: docker-py sends `CPURealtimePeriod` for `CpuRealtimePeriod`.
fn create_body(body: &Bytes) -> Result<ContainerCreateBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ContainerCreateBody::default());
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        fold_keys(m, field_names::<ContainerCreateBody>());
        if let Some(h) = m.get_mut("HostConfig").and_then(serde_json::Value::as_object_mut) {
            fold_keys(h, field_names::<bollard_stubs::models::HostConfig>());
        }
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `POST /containers/create`.
pub async fn create(State(engine): State<Arc<Engine>>, p: Params, body: Bytes) -> ApiResult<Response> {
    let mut req: ContainerCreateBody = create_body(&body)?;
    legacy_mac_address(&body, &mut req);
    let (id, warnings) = containers::create(&engine, p.get("name"), p.get("platform"), req).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"Id": id, "Warnings": warnings}))).into_response())
}

/// `GET /containers/json`.
pub async fn list(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(
        p.get("filters"),
        &[
            "status", "name", "id", "label", "ancestor", "exited", "before", "since", "network", "volume", "health",
            "publish", "expose", "is-task",
        ],
    )?;
    let limit = p.int::<i64>("limit")?.filter(|l| *l > 0).and_then(|l| usize::try_from(l).ok());
    Ok(Json(view::list(&engine, p.bool("all"), limit, &filters, p.bool("size"))?).into_response())
}

/// `GET /containers/{id}/json`.
pub async fn inspect(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    Ok(Json(view::inspect_json(&engine, &c)).into_response())
}

/// `POST /containers/{id}/start`.
pub async fn start(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    Ok(if containers::start(&engine, &c).await? { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED })
}

/// `POST /containers/{id}/stop`.
pub async fn stop(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    let t = p.int("t")?;
    Ok(if containers::stop(&engine, &c, p.get("signal"), t).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

/// `POST /containers/{id}/restart`.
pub async fn restart(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    let t = p.int("t")?;
    containers::stop(&engine, &c, p.get("signal"), t).await?;
    containers::start(&engine, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/kill`.
pub async fn kill(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    containers::kill(&engine, &c, p.get("signal")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /containers/{id}`.
pub async fn remove(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    if p.bool("link") {
        containers::links::remove(&engine, &id)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let c = engine.containers.get(&id)?;
    containers::remove(&engine, &c, p.bool("force"), p.bool("v")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /containers/{linker}/{alias}?link=1` (`docker rm --link`): the link goes, no container.
pub async fn remove_link(
    State(engine): State<Arc<Engine>>,
    Path((linker, alias)): Path<(String, String)>,
    p: Params,
) -> ApiResult<StatusCode> {
    if !p.bool("link") {
        return Err(crate::engine::EngineError::NotFound(format!("No such container: {linker}/{alias}")).into());
    }
    containers::links::remove(&engine, &format!("{linker}/{alias}"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/wait`: headers at once, the body when the condition is met.
pub async fn wait(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let cond = match p.get("condition").unwrap_or("not-running") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::bad_request(format!("invalid condition: {other:?}"))),
    };
    let body = futures::stream::once(async move {
        let code = containers::wait(c, cond).await;
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{{\"StatusCode\":{code},\"Error\":null}}\n")))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

/// `POST /containers/prune`.
pub async fn prune(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["label", "label!", "until"])?;
    let (deleted, reclaimed) = containers::prune(&engine, &filters).await?;
    Ok(Json(serde_json::json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})).into_response())
}

/// `POST /containers/{id}/resize`.
pub async fn resize(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    super::session::resize(c.io(), &p)?;
    Ok(StatusCode::OK)
}

pub(crate) fn log_options(p: &Params) -> LogOptions {
    LogOptions {
        stdout: p.bool("stdout"),
        stderr: p.bool("stderr"),
        tail: p.get("tail").filter(|t| *t != "all").and_then(|t| t.parse().ok()),
        since: p.get("since").and_then(view::parse_time).filter(|s| *s > 0.0),
        until: p.get("until").and_then(view::parse_time).filter(|s| *s > 0.0),
        timestamps: p.bool("timestamps"),
    }
}

/// `GET /containers/{id}/logs`.
pub async fn logs(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let opts = log_options(&p);
    if !containers::keeps_logs(&c.record().host_config) {
        return Err(ApiError::bad_request("configured logging driver does not support reading"));
    }
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let tty = c.record().config.tty.unwrap_or(false);
    let enc = move |opts: &LogOptions, ch: &crate::engine::containers::io::Chunk| {
        if tty {
            opts.render(ch)
        } else {
            frame(ch.stream, &opts.render(ch))
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    match (p.bool("follow"), c.io()) {
        (true, Some(hub)) => {
            let (past, mut live) = hub.snapshot();
            tokio::spawn(async move {
                let mut batches = LogBatches::new(&opts, tty);
                for ch in opts.select(past) {
                    if let Some(b) = batches.push(&ch) {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some(b) = batches.finish() {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                crate::allocator::trim();
                super::live_output::forward_live(&hub, &mut live, |ch| opts.wants(ch).then(|| enc(&opts, ch)), &tx)
                    .await;
            });
        }
        // The stored log, opened before the answer (a removal right after the request does not
        // take it away) and sent as it is read: the client starts on the first batch while the
        // rest is read, and a long log is never in memory whole.
        _ => {
            let log = crate::engine::containers::io::OpenLog::open(&c.log_path());
            tokio::task::spawn_blocking(move || {
                let mut batches = LogBatches::new(&opts, tty);
                opts.for_each_selected(log, |ch| batches.push(&ch).is_none_or(|b| tx.blocking_send(Ok(b)).is_ok()));
                if let Some(b) = batches.finish() {
                    let _ = tx.blocking_send(Ok(b));
                }
                crate::allocator::trim();
            });
        }
    }
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).boxed();
    Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(stream)).into_response())
}

/// Stored log lines go out in 64 KiB batches: one body chunk per line costs a write per line.
const LOG_BATCH: usize = 64 * 1024;

/// Encodes log lines as `docker logs` sends them (framed unless there is a TTY, optionally
/// time-stamped) straight into batches of about `LOG_BATCH` bytes.
struct LogBatches {
    tty: bool,
    timestamps: bool,
    batch: Vec<u8>,
}

impl LogBatches {
    fn new(opts: &LogOptions, tty: bool) -> Self {
        LogBatches { tty, timestamps: opts.timestamps, batch: Vec::with_capacity(LOG_BATCH) }
    }

    /// Adds one line; returns a full batch to send.
    fn push(&mut self, ch: &containers::io::Chunk) -> Option<Bytes> {
        let stamp = if self.timestamps { ch.time.len() + 1 } else { 0 };
        if !self.tty {
            let len = u32::try_from(stamp + ch.data.len()).unwrap_or(u32::MAX);
            self.batch.extend_from_slice(&[ch.stream, 0, 0, 0]);
            self.batch.extend_from_slice(&len.to_be_bytes());
        }
        if self.timestamps {
            self.batch.extend_from_slice(ch.time.as_bytes());
            self.batch.push(b' ');
        }
        self.batch.extend_from_slice(&ch.data);
        (self.batch.len() >= LOG_BATCH)
            .then(|| Bytes::from(std::mem::replace(&mut self.batch, Vec::with_capacity(LOG_BATCH))))
    }

    /// The last, partial batch.
    fn finish(&mut self) -> Option<Bytes> {
        (!self.batch.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.batch)))
    }
}

/// `POST /containers/{id}/attach`: an HTTP upgrade carrying stdin up and output down.
pub async fn attach(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
    mut req: Request,
) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let rec = c.record();
    let tty = rec.config.tty.unwrap_or(false);
    let (want_in, want_logs, want_stream) = (p.bool("stdin"), p.bool("logs"), p.bool("stream"));
    let opts = LogOptions { stdout: p.bool("stdout"), stderr: p.bool("stderr"), ..Default::default() };
    let detach_keys = super::session::detach_keys(p.get("detachKeys"), tty, want_in)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let prelude = if want_logs {
            crate::engine::containers::io::read_log(&c.log_path()).into_iter().map(Arc::new).collect()
        } else {
            Vec::new()
        };
        let stdin_once = rec.config.stdin_once.unwrap_or(false);
        let feed = async move {
            if !want_stream {
                return None;
            }
            // Attached before the start (docker run): wait for the run and take it from its first line.
            let was_running = c.io().is_some();
            let mut watch = c.io_watch();
            let mut removed = c.removed_watch();
            let hub = tokio::select! {
                h = async { watch.wait_for(|h| h.is_some()).await.ok().and_then(|h| h.clone()) } => h,
                _ = async { removed.wait_for(|r| *r).await.map(|_| ()) } => None,
            };
            hub.map(|hub| {
                let (early, rx) = if was_running { (Vec::new(), hub.subscribe()) } else { hub.from_start() };
                (hub, early, rx)
            })
        };
        let session = super::session::Session {
            tty,
            opts,
            prelude,
            feed: Box::pin(feed),
            stdin: want_in,
            close_stdin_on_eof: stdin_once,
            done: None,
            settle_before_replay: true,
            detach_keys,
            detach_message: None,
        };
        super::session::run(upgraded, session).await;
    });
    Ok(super::session::upgrade_response(tty))
}

/// `POST /containers/{id}/pause`.
pub async fn pause(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    containers::set_paused(&engine, &c, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    containers::set_paused(&engine, &c, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /containers/{id}/top`.
pub async fn top(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    Ok(Json(containers::stats::top(&engine, &c)?).into_response())
}

/// `GET /containers/{id}/stats`.
pub async fn stats(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let stream = p.get("stream").is_none() || p.bool("stream");
    let rx = containers::stats::stats(engine.clone(), c, stream, p.bool("one-shot"));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| {
            let mut line = serde_json::to_vec(&v).unwrap_or_default();
            line.push(b'\n');
            (Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx)
        })
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

/// `GET|HEAD /containers/{id}/archive?path=`: a tar of the path, with its stat in a header.
pub async fn archive_get(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    method: axum::http::Method,
    p: Params,
) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let path =
        p.get("path").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?.to_string();
    let access = containers::archive::access(&engine, &c).await?;
    let stat = containers::archive::path_stat(access.path(), &path)?;
    let stat_header = HeaderValue::from_str(&stat).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if method == axum::http::Method::HEAD {
        return Ok(([("X-Docker-Container-Path-Stat", stat_header)], StatusCode::OK).into_response());
    }
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    tokio::task::spawn_blocking(move || {
        let out = tokio_util::io::SyncIoBridge::new(writer);
        if let Err(e) = containers::archive::write_tar(access.path(), &path, out) {
            tracing::warn!(error = %e, "archive failed mid-stream");
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar")),
            (header::HeaderName::from_static("x-docker-container-path-stat"), stat_header),
        ],
        body,
    )
        .into_response())
}

/// `PUT /containers/{id}/archive?path=`: extracts the request's tar into a directory.
pub async fn archive_put(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
    req: Request,
) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    let path =
        p.get("path").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?.to_string();
    let access = containers::archive::access(&engine, &c).await?;
    let body = req.into_body().into_data_stream().map(|r| r.map_err(std::io::Error::other));
    let mut reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    tokio::task::spawn_blocking(move || {
        let extracted = containers::archive::extract(access.path(), &path, &mut reader);
        // A tar ends before its body does (the second zero block, padding): the rest is read before
        // the answer, or the connection closes under a client still writing (a broken pipe).
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        extracted
    })
    .await
    .map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() })??;
    Ok(StatusCode::OK)
}

/// `GET /containers/{id}/export`.
pub async fn export(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let access = containers::archive::access(&engine, &c).await?;
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    tokio::task::spawn_blocking(move || {
        let out = tokio_util::io::SyncIoBridge::new(writer);
        if let Err(e) = containers::archive::write_tar(access.path(), "/", out) {
            tracing::warn!(error = %e, "export failed mid-stream");
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(tokio_util::io::ReaderStream::new(reader)))
        .into_response())
}

/// `GET /containers/{id}/changes`.
pub async fn changes(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let list = containers::archive::changes(&engine, &c)?;
    Ok(Json(list.into_iter().map(|(p, k)| serde_json::json!({"Path": p, "Kind": k})).collect::<Vec<_>>())
        .into_response())
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<StatusCode> {
    let c = engine.containers.get(&id)?;
    containers::rename(&engine, &c, p.get("name").unwrap_or_default())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/update`.
pub async fn update(State(engine): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let c = engine.containers.get(&id)?;
    let req: bollard_stubs::models::ContainerUpdateBody = json_body(&body)?;
    let warnings = containers::update(&engine, &c, &req)?;
    Ok(Json(serde_json::json!({"Warnings": warnings})).into_response())
}

#[cfg(test)]
mod log_batch_tests {
    use super::{LogBatches, LOG_BATCH};
    use crate::engine::containers::io::{frame, Chunk, STDERR, STDOUT};
    use crate::engine::containers::view::LogOptions;

    fn chunk(stream: u8, n: usize) -> Chunk {
        Chunk { stream, data: format!("line {n}\n").into_bytes().into(), time: "2026-01-01T00:00:01.5Z".into() }
    }

    fn all(opts: &LogOptions, tty: bool, chunks: &[Chunk]) -> Vec<bytes::Bytes> {
        let mut b = LogBatches::new(opts, tty);
        let mut out: Vec<_> = chunks.iter().filter_map(|c| b.push(c)).collect();
        out.extend(b.finish());
        out
    }

    #[test]
    fn batches_carry_the_frames_docker_sends_line_by_line() {
        let chunks: Vec<Chunk> = (0..20_000).map(|n| chunk(if n % 3 == 0 { STDERR } else { STDOUT }, n)).collect();
        let plain = LogOptions { stdout: true, stderr: true, ..Default::default() };
        let batches = all(&plain, false, &chunks);
        assert!(batches.len() > 2);
        assert!(batches[..batches.len() - 1].iter().all(|b| b.len() >= LOG_BATCH && b.len() < LOG_BATCH + 64));
        let expected: Vec<u8> = chunks.iter().flat_map(|c| frame(c.stream, &c.data).to_vec()).collect();
        assert_eq!(batches.concat(), expected, "frames, in order, split only between lines");

        let stamped = LogOptions { timestamps: true, ..plain.clone() };
        let expected: Vec<u8> = chunks.iter().flat_map(|c| frame(c.stream, &stamped.render(c)).to_vec()).collect();
        assert_eq!(all(&stamped, false, &chunks).concat(), expected, "the time and a space are inside the frame");

        let raw: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(all(&plain, true, &chunks).concat(), raw, "with a TTY: no frame headers");
        assert!(all(&plain, false, &[]).is_empty(), "no lines, no body chunk");
    }
}
