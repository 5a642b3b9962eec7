//! Image endpoints. Each handler decodes, calls one engine function, encodes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::error::{ApiError, ApiResult};
use super::params::Params;
use super::stream::json_lines;
use crate::engine::filters::Filters;
use crate::engine::progress::Progress;
use crate::engine::reference::ImageRef;
use crate::engine::registry::{self, AuthConfig};
use crate::engine::{images, load, save, Engine, EngineError};

fn registry_auth(headers: &HeaderMap) -> Result<AuthConfig, ApiError> {
    Ok(AuthConfig::from_header(headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()))?)
}

/// The `platform` query value of save, load, push and image inspect (JSON from the docker CLI).
fn query_platform(p: &Params) -> Result<Option<crate::engine::platform::Platform>, ApiError> {
    Ok(p.get("platform").filter(|s| !s.is_empty()).map(crate::engine::platform::Platform::parse_query).transpose()?)
}

/// `GET /images/json`.
pub async fn list(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["dangling", "label", "before", "since", "reference", "until"])?;
    Ok(Json(images::list(&engine, &filters, p.bool("all"), p.bool("manifests"))?).into_response())
}

/// `POST /images/create`: pull (`fromImage`) or import (`fromSrc=-`, the archive in the body).
pub async fn create(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    p: Params,
    req: Request,
) -> ApiResult<Response> {
    if let Some(src) = p.get("fromSrc") {
        return import(engine, src, &p, req).await;
    }
    let from =
        p.get("fromImage").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let reference = ImageRef::with_tag(from, p.get("tag")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let auth = registry_auth(&headers)?;
    // No tag anywhere (not in `tag`, not in `fromImage`) means every tag, as `docker pull -a`.
    let last = from.rsplit('/').next().unwrap_or(from);
    let all_tags = p.get("tag").is_none_or(str::is_empty) && !last.contains(':') && !last.contains('@');
    let refs = if all_tags { registry::list_tags(&engine, &reference, &auth).await? } else { vec![reference] };
    let Some((first, rest)) = refs.split_first() else {
        return Err(ApiError { status: StatusCode::NOT_FOUND, message: format!("no tags to pull for {from}") });
    };
    let plan = registry::pull_prepare(&engine, first.clone(), p.get("platform"), &auth).await?;
    let (progress, rx) = Progress::channel(false);
    registry::spawn_pull(engine, plan, rest.to_vec(), auth, progress);
    Ok(json_lines(rx))
}

/// `docker import`: the body is read whole (a bad archive is answered after it, so the client
/// sees the message, not a broken pipe); the answer is one status line with the image id.
async fn import(engine: Arc<Engine>, src: &str, p: &Params, req: Request) -> ApiResult<Response> {
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "importing from a URL ({src}) is not supported: download the archive and import the file"
        )));
    }
    let tag = new_image_tag(p)?;
    let opts = crate::engine::import::ImportOptions {
        tag,
        message: p.get("message").unwrap_or_default().to_string(),
        changes: p.all("changes"),
    };
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(body));
    let id = crate::engine::blocking(move || {
        let mut reader = reader;
        let result = crate::engine::import::import(&engine, &mut reader, opts);
        // Whatever the outcome, the request body is consumed before the answer.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        result
    })
    .await?;
    let line = serde_json::json!({"status": id.to_string()}).to_string() + "\r\n";
    Ok(([(header::CONTENT_TYPE, "application/json")], line).into_response())
}

/// The `repo` and `tag` parameters of commit and import as one full tagged reference.
fn new_image_tag(p: &Params) -> Result<Option<String>, ApiError> {
    let Some(repo) = p.get("repo").filter(|r| !r.is_empty()) else { return Ok(None) };
    ImageRef::with_tag(repo, p.get("tag").filter(|t| !t.is_empty()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .full_tagged()
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("invalid reference format: {repo}")))
}

/// `POST /commit?container=…`: the container's changes as a new image; the body may carry a
/// `Config` that overrides the container's.
pub async fn commit(State(engine): State<Arc<Engine>>, p: Params, body: Bytes) -> ApiResult<Response> {
    let name =
        p.get("container").filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("container is required"))?;
    let c = engine.containers.get(name)?;
    let config: Option<serde_json::Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?)
    };
    let tag = new_image_tag(&p)?;
    let opts = crate::engine::containers::commit::CommitOptions {
        tag,
        comment: p.get("comment").unwrap_or_default().to_string(),
        author: p.get("author").unwrap_or_default().to_string(),
        pause: p.get("pause").is_none_or(|v| !matches!(v, "0" | "false" | "False")),
        changes: p.all("changes"),
        config: config.filter(|c| !c.is_null()),
        ..Default::default()
    };
    let id = crate::engine::containers::commit::commit(&engine, &c, opts).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"Id": id.to_string()}))).into_response())
}

/// `POST /images/load`.
pub async fn load_archive(State(engine): State<Arc<Engine>>, p: Params, req: Request) -> ApiResult<Response> {
    let quiet = p.bool("quiet");
    let platform = query_platform(&p)?;
    let (progress, rx) = Progress::channel(quiet);
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    let mut reader = SyncIoBridge::new(StreamReader::new(body));
    tokio::task::spawn_blocking(move || {
        let loaded = load::load_archive(&engine, &mut reader, platform.as_ref(), &progress);
        // Whatever follows the tar's end (or a bad archive) is read, so the client finishes writing.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        if let Err(e) = loaded {
            tracing::warn!(error = %e, "load failed");
            progress.error(e.to_string());
        }
        crate::allocator::trim();
    });
    Ok(json_lines(rx))
}

/// `GET /images/get?names=…` and `GET /images/{name}/get`.
pub async fn save_images(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    export(engine, p.all("names"), &p).await
}

async fn export(engine: Arc<Engine>, names: Vec<String>, p: &Params) -> ApiResult<Response> {
    let platforms = p
        .all("platform")
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| crate::engine::platform::Platform::parse_query(s))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = save::plan(&engine, &names, &platforms)?;
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    tokio::task::spawn_blocking(move || {
        let out = SyncIoBridge::new(writer);
        if let Err(e) = save::write_archive(&engine, &plan, out) {
            tracing::warn!(error = %e, "save failed mid-stream");
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(ReaderStream::with_capacity(reader, 256 * 1024)),
    )
        .into_response())
}

/// `POST /images/prune`.
pub async fn prune(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["dangling", "label", "until"])?;
    Ok(Json(images::prune(&engine, &filters).await?).into_response())
}

/// The operations addressed as `/images/{name}/…`, where `name` may itself contain slashes.
enum NamedOp {
    Inspect,
    History,
    Save,
    Tag,
    Push,
    Delete,
}

fn split_named(method: &Method, rest: &str) -> Option<(String, NamedOp)> {
    type Row = (&'static str, &'static str, fn() -> NamedOp);
    const TABLE: [Row; 5] = [
        ("GET", "/json", || NamedOp::Inspect),
        ("GET", "/history", || NamedOp::History),
        ("GET", "/get", || NamedOp::Save),
        ("POST", "/tag", || NamedOp::Tag),
        ("POST", "/push", || NamedOp::Push),
    ];
    if method == Method::DELETE {
        return Some((rest.to_string(), NamedOp::Delete));
    }
    TABLE.iter().find_map(|(m, suffix, op)| {
        (method.as_str() == *m)
            .then(|| rest.strip_suffix(suffix))
            .flatten()
            .filter(|n| !n.is_empty())
            .map(|n| (n.to_string(), op()))
    })
}

/// `/images/{name}/json|history|get|tag|push` and `DELETE /images/{name}`.
pub async fn named(
    State(engine): State<Arc<Engine>>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
    p: Params,
    _body: Bytes,
) -> ApiResult<Response> {
    let Some((name, op)) = split_named(&method, &rest) else {
        return Err(ApiError { status: StatusCode::NOT_FOUND, message: "page not found".into() });
    };
    match op {
        NamedOp::Inspect => {
            // `Parent` (dropped from the stubs' model, still read by clients): the image a commit
            // or build step made this one from, else "".
            let platform = query_platform(&p)?;
            let mut v = serde_json::to_value(images::inspect(&engine, &name, platform.as_ref())?)
                .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
            let parent = images::resolve_platform(&engine, &name, platform.as_ref())?
                .record
                .parent
                .as_ref()
                .map(ToString::to_string);
            v["Parent"] = serde_json::json!(parent.unwrap_or_default());
            Ok(Json(v).into_response())
        }
        NamedOp::History => Ok(Json(images::history(&engine, &name)?).into_response()),
        NamedOp::Save => export(engine, vec![name], &p).await,
        NamedOp::Tag => {
            let repo = p.get("repo").unwrap_or_default();
            images::tag(&engine, &name, repo, p.get("tag")).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        NamedOp::Delete => Ok(Json(images::remove(&engine, &name, p.bool("force")).await?).into_response()),
        NamedOp::Push => {
            let reference =
                ImageRef::with_tag(&name, p.get("tag")).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let full = reference.full_tagged().unwrap_or_default();
            if engine.store.by_tag(&full).is_none() {
                return Err(EngineError::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    reference.familiar_name()
                ))
                .into());
            }
            let auth = registry_auth(&headers)?;
            let platform = query_platform(&p)?;
            let (progress, rx) = Progress::channel(false);
            tokio::spawn(async move {
                if let Err(e) = registry::push(&engine, reference, platform.as_ref(), &auth, &progress).await {
                    progress.error(e.to_string());
                }
            });
            Ok(json_lines(rx))
        }
    }
}
