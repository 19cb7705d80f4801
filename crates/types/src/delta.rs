//! A state delta: an entity's new state written as the bytes that changed from its old state,
//! so a state that grows a little per operation (a list appended to) does not log its whole
//! self per batch.
//!
//! A delta is `old[..prefix] ++ middle ++ old[old_len - suffix..]`: the longest common prefix
//! and suffix of the old and the new bytes are kept, the middle replaced. It is generic (bytes,
//! whatever the entity type) and fenced: it carries the old state's length and CRC-32, and
//! [`StateDelta::apply`] refuses any other old state, so a delta can never build a state from
//! a base it was not computed on (every replica holds the same old state at the same log
//! position, so every replica refuses or applies alike).

use serde::{Deserialize, Serialize};

/// The bytes an entity's state changed by (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDelta {
    /// The length of the state it applies to.
    pub old_len: u64,
    /// The CRC-32 (IEEE) of the state it applies to.
    pub old_crc: u32,
    /// Bytes kept from the start of the old state.
    pub prefix: u64,
    /// Bytes kept from the end of the old state.
    pub suffix: u64,
    /// What replaces the rest.
    pub middle: Vec<u8>,
}

/// A delta offered to a state it was not computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the state delta does not fit the stored state (its length or checksum differs)")]
pub struct DeltaMismatch;

impl StateDelta {
    /// The delta from `old` to `new` when it saves at least half of `new`'s bytes (else the
    /// whole new state is the better record).
    pub fn between(old: &[u8], new: &[u8]) -> Option<Self> {
        let prefix = common_prefix(old, new);
        // the suffix may not overlap the prefix in either state
        let room = old.len().min(new.len()) - prefix;
        let suffix = common_prefix_rev(&old[prefix..], &new[prefix..]).min(room);
        let middle = &new[prefix..new.len() - suffix];
        if middle.len() + 32 > new.len() / 2 {
            return None;
        }
        Some(Self {
            old_len: old.len() as u64,
            old_crc: crc32fast::hash(old),
            prefix: prefix as u64,
            suffix: suffix as u64,
            middle: middle.to_vec(),
        })
    }

    /// Whether `old` is the state this delta was computed from (length and CRC-32).
    pub fn fits(&self, old: &[u8]) -> bool {
        old.len() as u64 == self.old_len
            && self.prefix.saturating_add(self.suffix) <= self.old_len
            && crc32fast::hash(old) == self.old_crc
    }

    /// The new state built on `old`, or [`DeltaMismatch`] if `old` is not the state the delta
    /// was computed from.
    pub fn apply(&self, old: &[u8]) -> Result<Vec<u8>, DeltaMismatch> {
        if !self.fits(old) {
            return Err(DeltaMismatch);
        }
        let (p, s) = (self.prefix as usize, self.suffix as usize);
        let mut out = Vec::with_capacity(p + self.middle.len() + s);
        out.extend_from_slice(&old[..p]);
        out.extend_from_slice(&self.middle);
        out.extend_from_slice(&old[old.len() - s..]);
        Ok(out)
    }
}

/// Chunks compared at once (slice equality is a `memcmp`, fast in every build profile).
const CHUNK: usize = 4096;

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + CHUNK <= n && a[i..i + CHUNK] == b[i..i + CHUNK] {
        i += CHUNK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn common_prefix_rev(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (ea, eb) = (a.len(), b.len());
    let mut i = 0;
    while i + CHUNK <= n && a[ea - i - CHUNK..ea - i] == b[eb - i - CHUNK..eb - i] {
        i += CHUNK;
    }
    while i < n && a[ea - i - 1] == b[eb - i - 1] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(old: &[u8], new: &[u8]) -> Option<StateDelta> {
        let d = StateDelta::between(old, new)?;
        assert_eq!(d.apply(old).unwrap(), new, "{old:?} -> {new:?}");
        Some(d)
    }

    #[test]
    fn an_append_to_a_list_is_logged_as_the_appended_bytes() {
        let old: Vec<u8> = format!("[{}]", vec!["\"item\""; 1000].join(",")).into_bytes();
        let mut new = old[..old.len() - 1].to_vec();
        new.extend_from_slice(b",\"next\"]");
        let d = round_trip(&old, &new).expect("worth a delta");
        assert_eq!(d.middle, b",\"next\"");
        assert_eq!(d.suffix, 1);
    }

    #[test]
    fn deltas_rebuild_the_new_state_exactly_whatever_changed() {
        let base: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let mut grown = base.clone();
        grown.extend_from_slice(b"tail");
        cases.push(grown);
        let mut front = b"head".to_vec();
        front.extend_from_slice(&base);
        cases.push(front);
        let mut mid = base.clone();
        mid[2000] ^= 1;
        cases.push(mid);
        let mut cut = base.clone();
        cut.drain(1000..1010);
        cases.push(cut);
        cases.push(base[..3990].to_vec());
        // repeated bytes: the prefix and the suffix could overlap
        let same = vec![b'a'; 4000];
        let mut more = same.clone();
        more.push(b'a');
        for new in &cases {
            round_trip(&base, new).expect("a small change is a delta");
        }
        round_trip(&same, &more).expect("one more byte");
        round_trip(&more, &same).expect("one byte less");
    }

    #[test]
    fn changes_on_either_side_of_a_chunk_boundary_are_found() {
        let base: Vec<u8> = (0..3 * CHUNK as u32 + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        for at in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, base.len() - 1] {
            let mut new = base.clone();
            new[at] ^= 0xff;
            let d = round_trip(&base, &new).expect("one byte changed");
            assert_eq!(d.middle.len(), 1, "at {at}");
            new.insert(at, 7);
            round_trip(&base, &new).expect("one byte changed, one inserted");
        }
    }

    #[test]
    fn a_large_change_is_not_a_delta() {
        let old = vec![1u8; 100];
        let new = vec![2u8; 100];
        assert!(StateDelta::between(&old, &new).is_none());
        assert!(StateDelta::between(b"", b"[1]").is_none());
    }

    #[test]
    fn a_delta_refuses_any_other_old_state() {
        let old = vec![b'x'; 1000];
        let mut new = old.clone();
        new.push(b'y');
        let d = StateDelta::between(&old, &new).unwrap();
        let mut other = old.clone();
        other[10] = b'z'; // same length, another checksum
        assert_eq!(d.apply(&other), Err(DeltaMismatch));
        assert_eq!(d.apply(&old[..999]), Err(DeltaMismatch));
        assert_eq!(d.apply(&new), Err(DeltaMismatch));
        // a forged delta whose kept regions overlap is refused, not a panic
        let bad = StateDelta {
            prefix: 900,
            suffix: 900,
            ..d.clone()
        };
        assert_eq!(bad.apply(&old), Err(DeltaMismatch));
    }
}
