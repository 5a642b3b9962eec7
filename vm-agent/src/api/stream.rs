//! Streaming response bodies: JSON progress lines and raw byte pipes.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream_shim::UnboundedReceiverStream;

use crate::engine::progress::JsonMessage;

/// A `200 application/json` response whose body is one JSON object per line, as they come.
pub fn json_lines(rx: UnboundedReceiver<JsonMessage>) -> Response {
    let body = UnboundedReceiverStream::new(rx).map(|m| {
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(line))
    });
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
}

mod tokio_stream_shim {
    //! A `Stream` over an unbounded receiver (what `tokio-stream` provides, without the dependency).
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc::UnboundedReceiver;

    /// Adapts the receiver.
    #[derive(Debug)]
    pub struct UnboundedReceiverStream<T>(UnboundedReceiver<T>);

    impl<T> UnboundedReceiverStream<T> {
        /// Wraps `rx`.
        pub fn new(rx: UnboundedReceiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for UnboundedReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
