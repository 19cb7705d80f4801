//! Deterministic GUIDs: the same instance, execution and call number always give the same GUID,
//! so an orchestrator replayed from its history sees the GUIDs it saw the first time.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The `counter`-th GUID of an execution: the first 16 bytes of
/// `sha256(instance_id NUL execution_id NUL counter)`, with the version and variant bits of a
/// name-based (version 5) UUID, written `xxxxxxxx-xxxx-5xxx-yxxx-xxxxxxxxxxxx` in lower case.
pub(crate) fn deterministic_guid(instance_id: &str, execution_id: &str, counter: u64) -> String {
    let mut h = Sha256::new();
    h.update(instance_id.as_bytes());
    h.update([0u8]);
    h.update(execution_id.as_bytes());
    h.update([0u8]);
    h.update(counter.to_be_bytes());
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // version 5
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_v5_shaped_stable_and_distinct() {
        let a = deterministic_guid("order-1", "e1", 0);
        assert_eq!(a, deterministic_guid("order-1", "e1", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, deterministic_guid("order-1", "e1", 1));
        assert_ne!(a, deterministic_guid("order-1", "e2", 0));
        assert_ne!(a, deterministic_guid("order-2", "e1", 0));
    }
}
