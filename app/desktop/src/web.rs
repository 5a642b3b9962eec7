//! Browser mode (`skiff-desktop --serve ADDR`): the same front end and backend as the window,
//! with HTTP instead of Tauri's IPC — `POST /api/call/{cmd}` for commands, a WebSocket at
//! `/api/stream/{kind}` for streams. End-to-end tests drive it with Chromium; it binds loopback
//! addresses only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::streams::{self, Control, Sink};

#[derive(Clone)]
struct Web {
    backend: Backend,
    ui: PathBuf,
}

/// Serves until the process is stopped.
pub async fn serve(backend: Backend, addr: SocketAddr, ui: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(addr.ip().is_loopback(), "--serve must be a loopback address (it has no authentication)");
    let app = Router::new()
        .route("/api/call/{cmd}", post(call))
        .route("/api/stream/{kind}", get(stream))
        .fallback(get(file))
        .with_state(Web { backend, ui });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the Skiff UI over HTTP");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn call(State(w): State<Web>, UrlPath(cmd): UrlPath<String>, body: Option<Json<Value>>) -> Response {
    let args = body.map(|Json(v)| v).unwrap_or(Value::Null);
    match w.backend.call(&cmd, &args).await {
        Ok(v) => Json(json!({"ok": v})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    args: Option<String>,
}

async fn stream(
    State(w): State<Web>,
    UrlPath(kind): UrlPath<String>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let args: Value = q.args.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null);
    ws.on_upgrade(move |socket| relay(socket, w.backend, kind, args))
}

struct ChannelSink(mpsc::UnboundedSender<Value>);

impl Sink for ChannelSink {
    fn send(&self, msg: Value) -> bool {
        self.0.send(msg).is_ok()
    }
}

async fn relay(socket: WebSocket, backend: Backend, kind: String, args: Value) {
    let (mut tx, mut rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>(64);
    let producer = tokio::spawn(async move {
        let sink = ChannelSink(out_tx);
        streams::run(backend, &kind, args, &sink, ctl_rx).await;
    });
    let writer = async {
        while let Some(msg) = out_rx.recv().await {
            if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                break;
            }
        }
        let _ = tx.close().await;
    };
    let reader = async {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            if let Some(data) = v.get("input").and_then(Value::as_str) {
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) {
                    let _ = ctl_tx.send(Control::Input(bytes)).await;
                }
            } else if let Some([c, r]) = v.get("resize").and_then(Value::as_array).map(Vec::as_slice) {
                let n = |x: &Value| x.as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
                let _ = ctl_tx.send(Control::Resize(n(c), n(r))).await;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    producer.abort();
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

async fn file(State(w): State<Web>, uri: axum::http::Uri) -> Response {
    let rel = uri.path().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = w.ui.join(rel);
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
