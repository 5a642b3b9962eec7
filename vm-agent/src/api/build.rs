//! `POST /build` (the classic builder's protocol: the context as the body, options in the query,
//! a JSON progress stream back) and `POST /build/prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::error::{ApiError, ApiResult};
use super::params::Params;
use super::stream::json_lines;
use crate::engine::build::{self, context::Context, BuildOptions, Output};
use crate::engine::progress::Progress;
use crate::engine::reference::ImageRef;
use crate::engine::Engine;

fn json_param<T: serde::de::DeserializeOwned + Default>(p: &Params, key: &str) -> Result<T, ApiError> {
    match p.get(key).filter(|v| !v.is_empty()) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_str(v).map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}"))),
    }
}

fn int_param(p: &Params, key: &str) -> Result<i64, ApiError> {
    match p.get(key).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| ApiError::bad_request(format!("invalid {key}: {v}"))),
    }
}

/// The build's options from the query.
fn options(p: &Params) -> Result<BuildOptions, ApiError> {
    if p.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "building from a remote context (git or URL) is not supported: send the context in the request",
        ));
    }
    if p.get("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit is not supported by Skiff yet: use the classic builder (set DOCKER_BUILDKIT=0)",
        ));
    }
    if p.bool("squash") {
        return Err(ApiError::bad_request("squash is only supported with experimental mode"));
    }
    let mut tags = Vec::new();
    for t in p.all("t") {
        let r = ImageRef::parse(&t).map_err(|e| ApiError::bad_request(format!("invalid tag {t:?}: {e}")))?;
        tags.push(
            r.full_tagged()
                .ok_or_else(|| ApiError::bad_request(format!("invalid tag {t:?}: a digest is not a tag")))?,
        );
    }
    let quota = int_param(p, "cpuquota")?;
    let period = int_param(p, "cpuperiod")?;
    let nano_cpus =
        if quota > 0 { quota.saturating_mul(1_000_000_000) / if period > 0 { period } else { 100_000 } } else { 0 };
    Ok(BuildOptions {
        // The first value, as dockerd reads it (docker-py sends a second: the file's content).
        dockerfile: p.all("dockerfile").into_iter().next().unwrap_or_default(),
        tags,
        build_args: json_param::<BTreeMap<String, Option<String>>>(p, "buildargs")?,
        labels: json_param::<BTreeMap<String, String>>(p, "labels")?,
        target: p.get("target").filter(|t| !t.is_empty()).map(str::to_string),
        no_cache: p.bool("nocache"),
        pull: p.bool("pull"),
        cache_from: json_param::<Vec<String>>(p, "cachefrom")?,
        remove: p.get("rm").is_none_or(|v| !matches!(v, "0" | "false" | "False")),
        force_remove: p.bool("forcerm"),
        quiet: p.bool("q"),
        network_mode: p.get("networkmode").filter(|n| !n.is_empty()).map(str::to_string),
        extra_hosts: p
            .all("extrahosts")
            .into_iter()
            .flat_map(|h| h.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|h| !h.is_empty())
            .collect(),
        memory: int_param(p, "memory")?,
        memory_swap: int_param(p, "memswap")?,
        cpu_shares: int_param(p, "cpushares")?,
        cpuset_cpus: p.get("cpusetcpus").unwrap_or_default().to_string(),
        nano_cpus,
        shm_size: int_param(p, "shmsize")?,
        platform: p.get("platform").filter(|v| !v.is_empty()).map(str::to_string),
    })
}

/// `POST /build`: the whole context is received (and checked) before the answer starts, so a
/// client always reads a clear error rather than a broken pipe; the build then streams its
/// output. A client that goes away cancels the build.
pub async fn build(State(engine): State<Arc<Engine>>, p: Params, req: Request) -> ApiResult<Response> {
    let opts = options(&p);
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    // Large reads: every read of the bridge is a round trip to the async runtime.
    let reader = std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(StreamReader::new(body)));
    let e2 = engine.clone();
    let ctx = crate::engine::blocking(move || {
        let mut reader = reader;
        let ctx = Context::receive(&e2, &mut reader);
        // Whatever happened, the rest of the body is read before the answer.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        ctx
    })
    .await?;
    let opts = opts?;
    // Errors before the first line of output (no Dockerfile, a syntax error, another platform)
    // are the answer's status, as in dockerd; later ones go into the stream.
    let checked = build::check(ctx, &opts).await.map_err(|e| ApiError::bad_request(e.message))?;
    let (progress, rx) = Progress::channel(false);
    let out = Output::new(progress.clone(), opts.quiet);
    tokio::spawn(async move {
        if let Err(e) = build::build(engine, checked, opts, out).await {
            progress.error_with_code(e.message, e.code);
        }
        crate::allocator::trim();
    });
    Ok(json_lines(rx))
}

/// `POST /build/prune`: removes the cached step images nothing needs any more (untagged, no
/// child image, no container) and forgets cache entries whose images are gone.
pub async fn prune(State(engine): State<Arc<Engine>>) -> ApiResult<Response> {
    let e2 = engine.clone();
    let (deleted, reclaimed) =
        crate::engine::blocking(move || Ok(crate::engine::images::prune_build_cache(&e2))).await?;
    Ok(Json(serde_json::json!({"CachesDeleted": deleted, "SpaceReclaimed": reclaimed})).into_response())
}
