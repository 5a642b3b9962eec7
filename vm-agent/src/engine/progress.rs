//! Docker's JSON progress stream (`JSONMessage` lines), written by long operations (load, pull,
//! push) and read by the CLI to draw progress bars.

use serde::Serialize;
use tokio::sync::mpsc;

/// One line of the stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JsonMessage {
    /// Free text (used by `load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Status text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Which layer or tag the line is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes done and total.
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    /// A text progress bar for old clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// An error, ending the stream.
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    /// The same error as plain text (older clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Auxiliary data (push digest, loaded image id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

/// Progress counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// An error inside a stream.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
    /// A failing build step's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// The sending half of a progress stream; cheap to clone. Never blocks the operation (progress
/// lines are few and small); lines are dropped once the client has gone.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<JsonMessage>>,
    quiet: bool,
}

impl Progress {
    /// A stream and its receiving end.
    pub fn channel(quiet: bool) -> (Self, mpsc::UnboundedReceiver<JsonMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx: Some(tx), quiet }, rx)
    }

    /// A sink that discards everything.
    pub fn discard() -> Self {
        Self { tx: None, quiet: true }
    }

    fn send(&self, m: JsonMessage) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(m);
        }
    }

    fn send_always(&self, m: JsonMessage) {
        self.send(m);
    }

    /// A status line, optionally about `id`.
    pub fn status(&self, id: Option<&str>, status: impl Into<String>) {
        if self.quiet {
            return;
        }
        self.send(JsonMessage {
            status: Some(status.into()),
            id: id.map(str::to_string),
            progress_detail: id.map(|_| ProgressDetail::default()),
            ..Default::default()
        });
    }

    /// A progress line: `status` with `current` of `total` bytes.
    pub fn bytes(&self, id: &str, status: &str, current: u64, total: u64) {
        if self.quiet {
            return;
        }
        self.send(JsonMessage {
            status: Some(status.to_string()),
            id: Some(id.to_string()),
            progress_detail: Some(ProgressDetail { current: Some(current), total: Some(total) }),
            progress: Some(bar(current, total)),
            ..Default::default()
        });
    }

    /// A `stream` text line (always sent, even when quiet: `docker load` prints it).
    pub fn stream(&self, text: impl Into<String>) {
        self.send_always(JsonMessage { stream: Some(text.into()), ..Default::default() });
    }

    /// Final status line (always sent).
    pub fn final_status(&self, text: impl Into<String>) {
        self.send_always(JsonMessage { status: Some(text.into()), ..Default::default() });
    }

    /// Auxiliary data (always sent).
    pub fn aux(&self, v: serde_json::Value) {
        self.send_always(JsonMessage { aux: Some(v), ..Default::default() });
    }

    /// An error ending the stream (always sent).
    pub fn error(&self, message: impl Into<String>) {
        self.error_with_code(message, None);
    }

    /// An error ending the stream, with the exit code of what failed (a build step).
    pub fn error_with_code(&self, message: impl Into<String>, code: Option<i64>) {
        let message = message.into();
        self.send_always(JsonMessage {
            error_detail: Some(ErrorDetail { message: message.clone(), code }),
            error: Some(message),
            ..Default::default()
        });
    }

    /// Whether the client has gone (its connection closed).
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_some_and(mpsc::UnboundedSender::is_closed)
    }

    /// Resolves when the client has gone (never for a discarding sink).
    pub async fn closed(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.3}{}", UNITS[u]).replace(".000", "")
}

fn bar(current: u64, total: u64) -> String {
    const WIDTH: usize = 50;
    let filled =
        (current.min(total) * WIDTH as u64).checked_div(total).and_then(|f| usize::try_from(f).ok()).unwrap_or(0);
    let mut s = String::from("[");
    s.push_str(&"=".repeat(filled.saturating_sub(1)));
    if filled > 0 {
        s.push('>');
    }
    s.push_str(&" ".repeat(WIDTH - filled));
    format!("{s}] {}/{}", human(current), human(total))
}
