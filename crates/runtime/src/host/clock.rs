//! This node's wall clock, for timers and idempotency-id expiry.

/// Milliseconds since the Unix epoch, by this node's clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
