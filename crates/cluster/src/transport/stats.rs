//! [`ChannelStats`]: what the node channel counts of its own security, for the node's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one node's transport (both sides), read by the metrics collector at scrape time.
/// Cheap to clone (shared counters); each node has its own (several may run in one process).
#[derive(Debug, Clone, Default)]
pub struct ChannelStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    frames_refused: AtomicU64,
    handshakes_refused: AtomicU64,
    handshakes_shed: AtomicU64,
}

impl ChannelStats {
    /// Frames that failed authentication after a handshake (changed, injected, replayed,
    /// reordered or from another connection); each closed its connection.
    pub fn frames_refused(&self) -> u64 {
        self.inner.frames_refused.load(Ordering::Relaxed)
    }

    /// Handshakes this node refused or was refused in (wrong secret or proof, another cluster,
    /// partition count or protocol version, a peer that is not the node it claims or was
    /// expected to be).
    pub fn handshakes_refused(&self) -> u64 {
        self.inner.handshakes_refused.load(Ordering::Relaxed)
    }

    /// Connections closed as soon as they were accepted because
    /// [`MAX_PENDING_HANDSHAKES`](super::pending::MAX_PENDING_HANDSHAKES) others were still in
    /// their handshake.
    pub fn handshakes_shed(&self) -> u64 {
        self.inner.handshakes_shed.load(Ordering::Relaxed)
    }

    pub(crate) fn handshake_shed(&self) {
        self.inner.handshakes_shed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn frame_refused(&self) {
        self.inner.frames_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_refused(&self) {
        self.inner
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
    }
}
