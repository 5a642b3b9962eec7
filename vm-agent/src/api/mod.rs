//! The Docker Engine API over a Unix socket: routing, API-version prefixes, serving, shutdown.
//! Handlers are thin: decode, call one engine function, encode. No filesystem work happens here.

pub mod build;
pub mod containers;
pub mod error;
pub mod exec;
pub mod images;
mod live_output;
pub mod networks;
pub mod params;
pub mod services;
pub mod session;
pub mod stream;
pub mod swarm;
pub mod swarm_objects;
pub mod system;
pub mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, ServiceExt};
use tower::Layer;

use crate::engine::Engine;
use error::ApiError;

/// Newest API version served.
pub const API_VERSION: &str = "1.51";
/// Oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Strips `/v1.NN` from the path (refusing versions outside our range) so routes are unversioned.
async fn strip_version(mut req: Request) -> Result<Request, Response> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else { return Ok(req) };
    let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(requested) = parse_version(ver) else { return Ok(req) };
    let max = parse_version(API_VERSION).unwrap_or((1, 51));
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    if requested > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        ))
        .into_response());
    }
    if requested < min {
        return Err(ApiError::bad_request(format!("client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version")).into_response());
    }
    let new_path = if tail.is_empty() { "/".to_string() } else { tail.to_string() };
    let pq = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    Ok(req)
}

/// Endpoints of what Skiff has not (managed plugins, registry distribution inspection, BuildKit).
const UNSUPPORTED_ROUTES: [&str; 5] = ["/plugins", "/plugins/{*rest}", "/distribution/{*rest}", "/session", "/grpc"];

async fn unsupported(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/session" || path == "/grpc" {
        return ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "BuildKit sessions are not supported by Skiff yet: use the classic builder (DOCKER_BUILDKIT=0)"
                .into(),
        }
        .into_response();
    }
    if path.starts_with("/plugins") {
        // No plugins are installed (and none can be): an empty list, or a 404 for one.
        return if path == "/plugins" {
            axum::Json(serde_json::json!([])).into_response()
        } else {
            ApiError { status: StatusCode::NOT_FOUND, message: "plugin not found".into() }.into_response()
        };
    }
    if path.starts_with("/distribution") {
        return ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "distribution inspection is not supported by Skiff yet".into(),
        }
        .into_response();
    }
    ApiError { status: StatusCode::NOT_FOUND, message: "page not found".into() }.into_response()
}

async fn not_found() -> Response {
    ApiError { status: StatusCode::NOT_FOUND, message: "page not found".into() }.into_response()
}

/// The route table.
pub fn router(engine: Arc<Engine>) -> Router {
    let router = Router::new()
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/auth", post(system::auth))
        .route("/system/df", get(system::disk_usage))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/stats", get(containers::stats))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get).head(containers::archive_get).put(containers::archive_put),
        )
        .route("/containers/{id}/export", get(containers::export))
        .route("/containers/{id}/changes", get(containers::changes))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}", axum::routing::delete(containers::remove))
        .route("/containers/{id}/{alias}", axum::routing::delete(containers::remove_link))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/commit", post(images::commit))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/images/load", post(images::load_archive))
        .route("/images/get", get(images::save_images))
        .route("/images/prune", post(images::prune))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/images/{*rest}", get(images::named).post(images::named).delete(images::named));
    let router = router
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/nodes", get(swarm::list_nodes))
        .route("/nodes/{id}", get(swarm::inspect_node).delete(swarm::remove_node))
        .route("/nodes/{id}/update", post(swarm::update_node))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route("/services/{id}", get(services::inspect).delete(services::remove))
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services::service_logs))
        .route("/tasks", get(services::list_tasks))
        .route("/tasks/{id}", get(services::inspect_task))
        .route("/tasks/{id}/logs", get(services::task_logs));
    let router = ["/secrets", "/configs"].iter().fold(router, |r, base| {
        r.route(base, get(swarm_objects::list))
            .route(&format!("{base}/create"), post(swarm_objects::create))
            .route(&format!("{base}/{{id}}"), get(swarm_objects::inspect).delete(swarm_objects::remove))
            .route(&format!("{base}/{{id}}/update"), post(swarm_objects::update))
    });
    let router = UNSUPPORTED_ROUTES.iter().fold(router, |r, path| r.route(path, axum::routing::any(unsupported)));
    router
        .fallback(not_found)
        // A known path with another method: dockerd answers "page not found" too.
        .method_not_allowed_fallback(not_found)
        .with_state(engine)
}

/// Serves the API on `socket` until `shutdown` resolves; removes the socket afterwards.
pub async fn serve(
    engine: Arc<Engine>,
    socket: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running engine", socket.display()),
            ));
        }
        std::fs::remove_file(socket)?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "serving the Docker Engine API");
    let result = serve_on(engine, listener, shutdown).await;
    let _ = std::fs::remove_file(socket);
    result
}

/// Serves the API on any listener (a Unix socket natively, relayed vsock streams in the VM)
/// until `shutdown` resolves.
pub async fn serve_on<L>(
    engine: Arc<Engine>,
    listener: L,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = axum::middleware::map_request(strip_version).layer(router(engine));
    axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
    }

    #[test]
    fn version_prefix_is_stripped_and_checked() {
        let req = Request::builder().uri("/v1.41/images/json?all=1").body(axum::body::Body::empty()).expect("request");
        let out = block(strip_version(req)).expect("in range");
        assert_eq!(out.uri().path(), "/images/json");
        assert_eq!(out.uri().query(), Some("all=1"));
        let req = Request::builder().uri("/v9.99/info").body(axum::body::Body::empty()).expect("request");
        assert!(block(strip_version(req)).is_err());
        let req = Request::builder().uri("/version").body(axum::body::Body::empty()).expect("request");
        assert_eq!(block(strip_version(req)).expect("unversioned").uri().path(), "/version");
    }
}
