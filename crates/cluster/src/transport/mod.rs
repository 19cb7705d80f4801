//! The node-to-node transport: authenticated, multiplexed request/response over TCP.
//!
//! Every message between nodes goes through here: the Raft RPCs of every partition, cluster
//! formation and membership, forwarded client requests. A request is `(kind, body)`: `kind`
//! names the service ([`Kind`], the one table of kinds), `body` is its payload encoded with
//! [`perdure_types::codec`]; the answer is bytes or a [`RemoteError`].
//!
//! - A request type implements [`Rpc`] (its kind and its reply type); a handler implements
//!   [`Service`]; a node's [`Services`] table maps kinds to services, and is complete before
//!   [`serve`] accepts the first peer. [`Peers::rpc`] sends a typed request.
//! - The server side is [`serve`]: it accepts peers, authenticates them, and runs a [`Handler`]
//!   for each request, concurrently, writing answers as they finish.
//! - The client side is [`Peers`]: one connection per peer, opened on first use, shared by every
//!   request to that peer (many in flight at once), reopened after it breaks with exponential
//!   backoff (requests fail fast while backing off).
//!
//! # Wire format
//!
//! Each message is one [`perdure_types::codec::frame`]: `[len u32 LE][crc32 u32 LE][body]`, the
//! body being `codec::encode` of the message enum (see `wire.rs`). A connection starts with the
//! handshake, client first (`T` is the transcript: version, cluster id, partition count, the
//! client's id, the id of the node the client means to reach, both nonces; see `auth.rs`):
//!
//! ```text
//! C → S  Hello     { version, cluster_id, node_id, partitions, nonce_c }
//! S → C  Challenge { node_id, nonce_s, proof_s = HMAC-SHA256(secret, "server proof" | T) }
//!     or Refused   { reason }          (other cluster id, partition count or protocol version,
//!                                       or a peer claiming this node's id)
//! C → S  Proof     { proof_c = HMAC-SHA256(secret, "client proof" | T) }
//!     or Refused   { reason }          (the client checks proof_s first; if it is wrong, or the
//!                                       peer is not the node expected at that address, the
//!                                       client says why and hangs up)
//! S → C  Welcome   (the first frame with a MAC)  or Refused { "wrong cluster secret" }
//! ```
//!
//! A relay that rewrites the id a side claims or expects changes `T` on one side only: the
//! proofs do not verify and the handshake is refused. From `Welcome` on, every frame's body
//! ends with a 16-byte MAC under a key of its direction derived from `T`, over the direction,
//! an implicit sequence number (from 0 per direction, never sent) and the body (`session.rs`):
//! a changed, injected, replayed, reordered, dropped-then-replayed or reflected frame, or one
//! from another connection, is refused and the connection closed (counted in [`ChannelStats`]).
//! Then, in any order and interleaved: `Request { id, kind, body }` (C → S),
//! `Response { id, body }` or `Failure { id, RemoteError }` (S → C), and `Ping`/`Pong` (the
//! client checks a silent server is still there while requests are outstanding). The secret
//! never crosses the wire. A peer that sends anything out of order, a damaged or undecodable
//! frame, or a frame over the limit (64 KiB before the handshake, [`MAX_PAYLOAD`] after) is
//! disconnected. Frames are authenticated, not encrypted: the channel hides nothing from a
//! listener on the path. At most [`MAX_PENDING_HANDSHAKES`] accepted connections are in their
//! handshake at once; one over it is closed as soon as it is accepted (`pending.rs`).
//!
//! With [`ChannelTls`] (`[cluster.tls]`) the connection is TLS 1.3 with mutual authentication
//! by certificates of the cluster's CA (`tls.rs`), and the same messages run inside it without
//! proofs (zeros) or frame MACs: the client's TLS checks that the server's certificate is for
//! the node it means to reach, the server that the client's is for the node id of its `Hello`.

mod auth;
mod client;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod kind;
mod pending;
mod server;
mod services;
mod session;
mod stats;
mod tls;
mod typed;
mod wire;

pub use client::Peers;
pub use error::{RemoteError, RemoteErrorCode, TransportError};
pub use kind::{Kind, UnknownKind};
pub use pending::MAX_PENDING_HANDSHAKES;
pub use server::serve;
pub use services::{DuplicateService, Services};
pub use stats::ChannelStats;
pub use tls::{node_name, ChannelTls, TlsError};
pub use typed::{service_fn, FnService, ReplyOf, Rpc, Service, Typed};
pub use wire::MAX_PAYLOAD;

use perdure_types::config::ClusterConfig;
use perdure_types::NodeId;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a node serves to its peers: the raw form of a service (see [`Services`] and [`Service`]
/// for the typed one).
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from the authenticated peer `from`; `kind` names the service, `body`
    /// is its codec-encoded payload. The answer is a codec-encoded payload or an error.
    ///
    /// Requests run concurrently, each in its own task; a panic becomes a
    /// [`RemoteErrorCode::Panicked`] answer.
    fn handle(
        &self,
        from: NodeId,
        kind: u16,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>>;

    /// Peer `from` just completed a handshake with this node (it is up: a connection to it that
    /// is backing off may retry at once).
    fn peer_connected(&self, _from: NodeId) {}
}

/// A [`Handler`] made of a closure (see [`handler_fn`]).
pub struct FnHandler<F>(F);

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnHandler")
    }
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(NodeId, u16, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, RemoteError>> + Send + 'static,
{
    fn handle(
        &self,
        from: NodeId,
        kind: u16,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        Box::pin((self.0)(from, kind, body))
    }
}

/// Makes a [`Handler`] of an async closure `(from, kind, body) -> Result<Vec<u8>, RemoteError>`.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(NodeId, u16, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, RemoteError>> + Send + 'static,
{
    FnHandler(f)
}

/// A node's identity and policy on the transport, the same for its server and client sides.
#[derive(Clone)]
pub struct TransportConfig {
    /// The cluster's name: a peer of another cluster is refused.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster's partition count: a peer with another count is refused.
    pub partitions: u32,
    /// The shared secret each side proves it knows (never sent), unless `tls` is set.
    pub secret: String,
    /// TLS with mutual authentication by certificates (then `secret` is not used).
    pub tls: Option<ChannelTls>,
    /// Timeout of a request that names none.
    pub rpc_timeout: Duration,
    /// What the transport counts of refused frames and handshakes (shared by clones).
    pub stats: ChannelStats,
}

impl TransportConfig {
    /// The transport settings of node `node_id` of a cluster of `partitions` partitions (with
    /// `tls`, loaded by [`ChannelTls::load`], when `[cluster.tls]` is set).
    pub fn from_cluster(
        cluster: &ClusterConfig,
        node_id: NodeId,
        partitions: u32,
        tls: Option<ChannelTls>,
    ) -> Self {
        Self {
            cluster_id: cluster.cluster_id.clone(),
            node_id,
            partitions,
            secret: cluster.secret.clone(),
            tls,
            rpc_timeout: Duration::from_millis(cluster.rpc_timeout_ms),
            stats: ChannelStats::default(),
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("partitions", &self.partitions)
            .field("secret", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .field("rpc_timeout", &self.rpc_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = TransportConfig {
            cluster_id: "c".into(),
            node_id: 1,
            partitions: 4,
            secret: "very-secret-value".into(),
            tls: None,
            rpc_timeout: Duration::from_secs(1),
            stats: ChannelStats::default(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
