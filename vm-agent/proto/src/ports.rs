//! Published ports through the VM: the agent asks the host daemon to listen, the host carries
//! every connection (or UDP peer) over its own vsock stream to the agent.
//!
//! - Requests: the agent dials the host's `skiff.ports` vsock port and sends one JSON
//!   [`PortRequest`] per line; the host answers each with one [`PortResponse`] line, in order.
//!   When that connection closes, the host drops every listener it opened for it.
//! - Data: for each accepted TCP connection, or each new UDP peer, the host connects to the
//!   guest's [`FORWARD_PORT`] and sends the binding's `id` as 8 big-endian bytes, then
//!   [`crate::stream`] frames: a byte stream for TCP (half-close kept), one frame per datagram
//!   for UDP.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Guest vsock port the host connects to for each forwarded connection.
pub const FORWARD_PORT: u32 = 1025;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// What the agent asks of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum PortRequest {
    /// Listen on `host_ip`, on the first free port of `first..=last` (`0..=0`: any free port).
    Publish {
        /// Chosen by the agent; names the binding in data connections and in `Unpublish`.
        id: u64,
        /// TCP or UDP.
        proto: Proto,
        /// Address to listen on.
        host_ip: IpAddr,
        /// First acceptable port.
        first: u16,
        /// Last acceptable port.
        last: u16,
    },
    /// Stop listening and close its connections.
    Unpublish {
        /// The binding.
        id: u64,
    },
}

/// The host's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum PortResponse {
    /// Listening on this port.
    Published {
        /// The port actually bound.
        port: u16,
    },
    /// Done.
    Unpublished,
    /// The request failed (e.g. the port is taken on the host).
    Error {
        /// Why, for the user.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_and_strict() {
        let req = PortRequest::Publish {
            id: 7,
            proto: Proto::Udp,
            host_ip: "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            first: 53,
            last: 53,
        };
        let json = String::from_utf8_lossy(&crate::control::encode(&req)).trim_end().to_string();
        assert_eq!(json, r#"{"op":"publish","id":7,"proto":"udp","host_ip":"127.0.0.1","first":53,"last":53}"#);
        assert_eq!(serde_json::from_str::<PortRequest>(&json).ok(), Some(req));
        assert!(serde_json::from_str::<PortRequest>(r#"{"op":"unpublish","id":1,"x":2}"#).is_err());
        assert!(serde_json::from_str::<PortRequest>(
            r#"{"op":"publish","id":1,"proto":"sctp","host_ip":"::","first":1,"last":1}"#
        )
        .is_err());
    }
}
