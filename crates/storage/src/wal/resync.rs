//! Telling a torn final write from damage: is there an intact record anywhere after a bad one?
//!
//! A crash can only tear the last write, and nothing the log wrote after that write exists. So
//! a bad record in the last segment is a torn tail only when no intact record (a frame whose
//! checksum holds over a body that is a record: long enough, a known kind) starts at any byte
//! after it. Segments are not preallocated (the writer appends, see `writer.rs`), but the zeros
//! a file system may leave after a crash never look like a record: a zero length is shorter
//! than a record header.
//!
//! Every byte offset is a candidate, because a damaged length field hides where the next record
//! starts. Checking a candidate's checksum directly costs its length, which over a large
//! segment of arbitrary bytes would be quadratic; instead the CRC of any range is computed from
//! prefix CRCs kept every [`CHECKPOINT`] bytes (the CRC of `a..b` follows from the CRCs of
//! `..a` and `..b`, see [`RangeCrc::of`]), so the whole search is linear in the segment: over
//! 64 MiB after the damage, measured (release build) about 1 s for random bytes and 13 s for the
//! worst kind (bytes 0..5 only: nearly every offset is a candidate). It runs only when the last
//! segment ends in a bad record, over what follows it (for a torn write, the rest of one write).

use crc32fast::Hasher;
use perdure_types::codec::frame::{HEADER_LEN, MAX_BODY};

use super::format::RECORD_HEADER_LEN;
use super::RecordKind;

/// Bytes between two prefix CRCs.
const CHECKPOINT: usize = 256;

/// The offset of the first intact record that starts after byte `from` of `segment`, if any.
pub(crate) fn next_intact(segment: &[u8], from: usize) -> Option<usize> {
    let start = from.checked_add(1)?;
    let smallest = HEADER_LEN + RECORD_HEADER_LEN;
    let last_start = segment.len().checked_sub(smallest)?;
    if start > last_start {
        return None;
    }
    let crcs = RangeCrc::new(&segment[start + HEADER_LEN..]);
    (start..=last_start).find(|&at| {
        let len = u32_at(segment, at) as usize;
        if !(RECORD_HEADER_LEN..=MAX_BODY).contains(&len) {
            return false;
        }
        let body = at + HEADER_LEN;
        if body + len > segment.len() || RecordKind::from_byte(segment[body + 4]).is_none() {
            return false;
        }
        let from = body - (start + HEADER_LEN);
        crcs.of(from, from + len) == u32_at(segment, at + 4)
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The CRC-32 of any range of one buffer, in time independent of the range's length.
struct RangeCrc<'a> {
    bytes: &'a [u8],
    /// `marks[j]` = CRC of `bytes[..j * CHECKPOINT]`.
    marks: Vec<u32>,
}

impl<'a> RangeCrc<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut marks = Vec::with_capacity(bytes.len() / CHECKPOINT + 1);
        let mut h = Hasher::new();
        marks.push(h.clone().finalize());
        for chunk in bytes.chunks_exact(CHECKPOINT) {
            h.update(chunk);
            marks.push(h.clone().finalize());
        }
        Self { bytes, marks }
    }

    /// CRC of `bytes[..end]`.
    fn prefix(&self, end: usize) -> u32 {
        let j = end / CHECKPOINT;
        let mut h = Hasher::new_with_initial_len(self.marks[j], (j * CHECKPOINT) as u64);
        h.update(&self.bytes[j * CHECKPOINT..end]);
        h.finalize()
    }

    /// CRC of `bytes[from..to]`. CRC-32 is linear: `crc(A ++ B) = shift(crc(A), |B|) ^ crc(B)`,
    /// where `shift` multiplies by `x^(8 |B|)` modulo the polynomial; `Hasher::combine` computes
    /// exactly that expression, so combining with a zero CRC of length `|B|` is `shift`.
    fn of(&self, from: usize, to: usize) -> u32 {
        let mut a = Hasher::new_with_initial_len(self.prefix(from), 0);
        a.combine(&Hasher::new_with_initial_len(0, (to - from) as u64));
        a.finalize() ^ self.prefix(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::encode_record;
    use crate::wal::Record;
    use rand::{Rng, SeedableRng};

    #[test]
    fn range_crcs_equal_direct_crcs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let bytes: Vec<u8> = (0..5 * CHECKPOINT + 17).map(|_| rng.gen()).collect();
        let crcs = RangeCrc::new(&bytes);
        let mut ends = vec![
            0,
            1,
            CHECKPOINT - 1,
            CHECKPOINT,
            CHECKPOINT + 1,
            bytes.len(),
        ];
        ends.extend((0..200).map(|_| rng.gen_range(0..=bytes.len())));
        for &a in &ends {
            for &b in &ends {
                if a <= b {
                    assert_eq!(crcs.of(a, b), crc32fast::hash(&bytes[a..b]), "{a}..{b}");
                }
            }
        }
    }

    fn framed(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut scratch, mut starts) = (vec![0xee; 32], Vec::new(), Vec::new());
        for r in records {
            starts.push(out.len());
            encode_record(r, &mut scratch, &mut out);
        }
        (out, starts)
    }

    fn rec(i: u64, len: usize) -> Record {
        Record {
            partition: i as u32,
            kind: RecordKind::Entries,
            index: i,
            payload: vec![i as u8; len],
        }
    }

    #[test]
    fn finds_the_next_record_whatever_the_damage_hides() {
        let records: Vec<Record> = (1..=6).map(|i| rec(i, 300 * i as usize)).collect();
        let (bytes, starts) = framed(&records);
        // from any byte of a record, the next intact one is the next record
        for (k, &s) in starts.iter().enumerate() {
            let next = starts.get(k + 1).copied();
            for from in [s, s + 1, s + 3, s + 8, s + 20] {
                assert_eq!(next_intact(&bytes, from), next, "record {k} from {from}");
            }
        }
        // a length field destroyed: the record after it is still found
        let mut broken = bytes.clone();
        broken[starts[2]..starts[2] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(next_intact(&broken, starts[2]), Some(starts[3]));
        // a huge length that fits no frame, then zeros to the end: nothing
        let mut zeroed = bytes[..starts[4]].to_vec();
        zeroed.extend(std::iter::repeat_n(0u8, 3 * CHECKPOINT));
        assert_eq!(next_intact(&zeroed, starts[3]), None);
        // ... but a record after the zeros is found
        let mut hole = zeroed.clone();
        hole.extend_from_slice(&bytes[starts[4]..]);
        assert_eq!(
            next_intact(&hole, starts[3]),
            Some(starts[4] + 3 * CHECKPOINT)
        );
        // an intact frame of unknown kind or too short is not a record
        let mut junk = vec![0u8; 40];
        let mut f = Vec::new();
        perdure_types::codec::frame::encode(&[1, 2, 3, 4, 9, 0, 0, 0, 0, 0, 0, 0, 0], &mut f);
        perdure_types::codec::frame::encode(&[1, 2, 3], &mut f);
        junk.extend_from_slice(&f);
        assert_eq!(next_intact(&junk, 0), None);
        // edges
        assert_eq!(next_intact(&[], 0), None);
        assert_eq!(next_intact(&bytes, usize::MAX), None);
        assert_eq!(next_intact(&bytes, bytes.len()), None);
    }
}
