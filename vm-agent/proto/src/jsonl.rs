//! The one JSON-lines channel every Skiff control connection uses (the guest's control port, the
//! published-port service, the daemon's RPC socket): one JSON message per line, typed at each end.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use crate::control::encode;

/// A JSON-lines connection over any byte stream.
#[derive(Debug)]
pub struct JsonLines<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
    line: String,
}

impl<S: AsyncRead + AsyncWrite> JsonLines<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self { reader: BufReader::new(r), writer: w, line: String::new() }
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        self.writer.write_all(&encode(msg)).await?;
        self.writer.flush().await
    }

    /// The next message: `None` once the peer has closed (or the stream failed), `Some(Err)` for a
    /// line that is not a `T` (the connection stays usable).
    pub async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, serde_json::Error>> {
        self.line.clear();
        match self.reader.read_line(&mut self.line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&self.line)),
        }
    }

    /// Sends `request` and waits for its answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(&mut self, request: &Q) -> std::io::Result<A> {
        self.send(request).await?;
        match self.next().await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(e)) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            None => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed the channel")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Request, Response};

    #[tokio::test]
    async fn requests_and_answers_cross_and_a_bad_line_leaves_the_channel_usable() {
        let (a, b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let mut ch = JsonLines::new(b);
            let mut seen = Vec::new();
            while let Some(req) = ch.next::<Request>().await {
                let answer = match req {
                    Ok(Request::Stats) => Response::ShuttingDown,
                    Ok(_) => Response::Error { message: "unexpected".into() },
                    Err(e) => Response::Error { message: format!("bad request: {e}") },
                };
                seen.push(matches!(answer, Response::Error { .. }));
                if ch.send(&answer).await.is_err() {
                    break;
                }
            }
            seen
        });
        let mut client = JsonLines::new(a);
        let answer: Response = client.call(&Request::Stats).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(answer, Response::ShuttingDown));
        let answer: Response = client.call(&"not a request").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(answer, Response::Error { message } if message.starts_with("bad request")));
        let answer: Response = client.call(&Request::Stats).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(answer, Response::ShuttingDown));
        drop(client);
        assert_eq!(server.await.ok(), Some(vec![false, true, false]));
    }
}
