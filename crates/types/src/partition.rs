//! The key-to-partition function.
//!
//! `partition_of(entity, P) = jump(mix64(fnv1a64(entity.canonical())), P)`:
//!
//! 1. `fnv1a64`: FNV-1a, 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`) over
//!    the UTF-8 bytes of the canonical id `@name@key` (name lower-cased).
//! 2. `mix64`: the SplitMix64 finalizer (`x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27;
//!    x *= 0x94d049bb133111eb; x ^= x >> 31`), so that near-identical keys spread out.
//! 3. `jump`: Lamping and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent Hash
//!    Algorithm", 2014) into `P` buckets. Growing `P` to `P+1` would move only `1/(P+1)` of the keys;
//!    perdure nevertheless fixes `P` when a data directory is created (see the storage crate).
//!
//! The function is part of the on-disk format: changing it would send existing entities to the
//! wrong partition. The unit tests pin test vectors so it can never change silently.

use crate::ids::{EntityId, PartitionId};

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finalizer.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Jump consistent hash of `key` into `buckets` buckets (`buckets >= 1`).
pub fn jump(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "jump hash needs at least one bucket");
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // IEEE-754 double arithmetic: exact and the same on every platform.
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The partition of a raw canonical id string (`@name@key`).
pub fn partition_of_canonical(canonical: &str, partitions: u32) -> PartitionId {
    jump(mix64(fnv1a64(canonical.as_bytes())), partitions)
}

/// The partition that owns `entity` in a cluster of `partitions` partitions.
pub fn partition_of(entity: &EntityId, partitions: u32) -> PartitionId {
    partition_of_canonical(&entity.canonical(), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_matches_reference_vectors() {
        // Computed by an independent implementation of the paper's algorithm.
        assert_eq!(jump(0, 1), 0);
        assert_eq!(jump(1, 2), 0);
        assert_eq!(jump(1, 10), 6);
        assert_eq!(jump(0xdead_beef, 16), 5);
    }

    /// Pinned: if this test fails, the partition function changed and existing data directories
    /// would route entities to the wrong partitions. Do not update the vectors; revert the change.
    #[test]
    fn partition_function_is_pinned() {
        let cases: &[(&str, &str, u32, u32)] = &[
            ("counter", "a", 16, PINNED[0]),
            ("counter", "b", 16, PINNED[1]),
            ("Counter", "a", 16, PINNED[0]),
            ("register", "user-42", 16, PINNED[2]),
            ("aggregator", "é", 64, PINNED[3]),
            ("list", "x", 1, 0),
            ("counter", "a", 1024, PINNED[4]),
        ];
        for &(name, key, p, want) in cases {
            let id = EntityId::new(name, key).unwrap();
            assert_eq!(partition_of(&id, p), want, "{id} with {p} partitions");
        }
    }
    /// Computed once by an independent implementation (Python, from the published algorithms).
    const PINNED: [u32; 5] = [12, 4, 10, 34, 869];

    #[test]
    fn spreads_evenly() {
        let p = 16;
        let mut counts = vec![0u32; p as usize];
        for i in 0..16_000 {
            let id = EntityId::new("counter", &i.to_string()).unwrap();
            counts[partition_of(&id, p) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {c}");
        }
    }

    #[test]
    fn growing_moves_few_keys() {
        let moved = (0..10_000)
            .filter(|i| {
                let c = format!("@counter@{i}");
                partition_of_canonical(&c, 16) != partition_of_canonical(&c, 17)
            })
            .count();
        // ideal: 10_000 / 17 = 588
        assert!((450..750).contains(&moved), "moved {moved}");
    }
}
