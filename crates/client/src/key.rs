//! Idempotency keys: 128 random-looking bits, unique per logical signal.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new idempotency key: 32 lower-case hex digits (128 bits).
///
/// Each half is a SipHash, under freshly seeded random keys ([`RandomState`]), of the wall-clock
/// time in nanoseconds, the process id and a process-wide counter; so two keys of one process
/// never share their inputs, and keys of different processes or runs differ by their seeds.
pub fn new_idempotency_key() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let pid = std::process::id();
    let half = |salt: u8| {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(salt);
        h.write_u128(nanos);
        h.write_u32(pid);
        h.write_u64(n);
        h.finish()
    };
    format!("{:016x}{:016x}", half(0), half(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_128_bit_hex() {
        let k = new_idempotency_key();
        assert_eq!(k.len(), 32);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn keys_are_unique_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..50_000)
                        .map(|_| new_idempotency_key())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            for k in t.join().unwrap() {
                assert!(all.insert(k), "duplicate key");
            }
        }
        assert_eq!(all.len(), 200_000);
    }
}
