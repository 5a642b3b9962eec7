//! The host end of the control channel: one JSON request line, one JSON response line.

use std::time::Duration;

use skiff_proto::control::{Request, Response};
use skiff_proto::jsonl::JsonLines;

use crate::vsock::{GuestStream, Vsock};

/// A connection to the agent's control port.
pub struct ControlClient {
    channel: JsonLines<Box<dyn GuestStream>>,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlClient")
    }
}

impl ControlClient {
    /// Connects to the guest's control port, retrying up to `patience`.
    pub async fn connect(vsock: &Vsock, patience: Duration) -> std::io::Result<Self> {
        let stream = vsock.connect_retrying(skiff_proto::CONTROL_PORT, patience).await?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps the connection the agent opened to the host once it was up.
    pub fn from_stream(stream: Box<dyn GuestStream>) -> Self {
        Self { channel: JsonLines::new(stream) }
    }

    /// Sends `req` and waits for its answer.
    pub async fn call(&mut self, req: &Request) -> std::io::Result<Response> {
        self.channel.call(req).await
    }
}

/// The host's wall clock for [`Request::SetTime`].
pub fn host_time_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
