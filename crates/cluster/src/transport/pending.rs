//! The cap on peer connections still in their handshake (Hardening case 13): connections that
//! were accepted but have not proven who they are (TLS, `Hello`, `Proof`) take a slot each, up
//! to [`MAX_PENDING_HANDSHAKES`]; a connection accepted over it is closed at once and counted
//! (`ChannelStats::handshakes_shed`). A flood of half-open connections (ones that never send a
//! byte) therefore holds at most that many tasks for the handshake timeout, instead of one per
//! connection; a real peer shed meanwhile reconnects with its usual backoff once they are gone.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most peer connections in their handshake at once, per node.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// The slots of connections in their handshake.
#[derive(Debug, Clone)]
pub(super) struct PendingHandshakes {
    slots: Arc<Semaphore>,
}

/// A connection's slot, held until its handshake ends (completed, refused or timed out).
pub(super) type Slot = OwnedSemaphorePermit;

impl PendingHandshakes {
    /// `max` slots.
    pub(super) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for a connection just accepted, or `None` when `max` are in their handshake.
    pub(super) fn admit(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok()
    }
}
