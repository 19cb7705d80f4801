//! The transport's errors: what a handler answers ([`RemoteError`]) and what a caller gets
//! ([`TransportError`]).

use perdure_types::{codec, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Why a handler did not serve a request. Travels on the wire (new codes go at the end: a peer
/// that does not know a code cannot decode the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorCode {
    /// The node will not serve this request (for example: it is not the leader, or is stopping).
    Refused,
    /// The node has no service for this `kind`, or the addressed thing does not exist.
    NotFound,
    /// The handler failed.
    Handler,
    /// The handler panicked.
    Panicked,
    /// The request or its answer exceeds [`super::MAX_PAYLOAD`].
    TooLarge,
    /// The request's body did not decode.
    BadRequest,
    /// The node cannot serve it now; trying again later may work.
    Unavailable,
}

impl fmt::Display for RemoteErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RemoteErrorCode::Refused => "refused",
            RemoteErrorCode::NotFound => "not found",
            RemoteErrorCode::Handler => "handler error",
            RemoteErrorCode::Panicked => "handler panicked",
            RemoteErrorCode::TooLarge => "too large",
            RemoteErrorCode::BadRequest => "bad request",
            RemoteErrorCode::Unavailable => "unavailable",
        };
        f.write_str(s)
    }
}

/// A handler's failure, sent back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RemoteError {
    /// What kind of failure.
    pub code: RemoteErrorCode,
    /// What happened, for people.
    pub message: String,
}

impl RemoteError {
    /// A failure with `code` and `message`.
    pub fn new(code: RemoteErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// [`RemoteErrorCode::Handler`] with `message`.
    pub fn handler(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorCode::Handler, message)
    }

    /// [`RemoteErrorCode::NotFound`] for a `kind` the node does not serve.
    pub fn unknown_kind(kind: u16) -> Self {
        Self::new(
            RemoteErrorCode::NotFound,
            format!("no service for request kind {kind}"),
        )
    }
}

/// A request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached, or the connection broke before it answered. Whether the
    /// request ran there is unknown.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Why (connect error, connection lost, backing off after failures, no address known).
        reason: String,
    },
    /// The peer did not answer in time. Whether the request ran there is unknown.
    #[error("node {node} did not answer within {after:?}")]
    Timeout {
        /// The peer.
        node: NodeId,
        /// The timeout that expired.
        after: Duration,
    },
    /// The handshake failed: the peer is not of this cluster (wrong cluster id, partition
    /// count, protocol version, or secret), or is not the node expected at that address.
    #[error("connection to node {node} refused: {reason}")]
    Refused {
        /// The peer.
        node: NodeId,
        /// What differs.
        reason: String,
    },
    /// The peer's handler answered with an error.
    #[error("node {node} answered with an error: {error}")]
    Remote {
        /// The peer.
        node: NodeId,
        /// The handler's error.
        error: RemoteError,
    },
    /// The request could not be encoded, or the answer could not be decoded.
    #[error("request to node {node}: {error}")]
    Codec {
        /// The peer.
        node: NodeId,
        /// What the codec said.
        error: codec::Error,
    },
    /// The request is larger than [`super::MAX_PAYLOAD`]; it was not sent.
    #[error("request to node {node} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The peer.
        node: NodeId,
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl TransportError {
    /// The peer the request was for.
    pub fn node(&self) -> NodeId {
        match self {
            TransportError::Unreachable { node, .. }
            | TransportError::Timeout { node, .. }
            | TransportError::Refused { node, .. }
            | TransportError::Remote { node, .. }
            | TransportError::Codec { node, .. }
            | TransportError::TooLarge { node, .. } => *node,
        }
    }
}
