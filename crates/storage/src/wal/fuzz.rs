//! Entry point for the fuzz targets (`fuzz/` at the repository root): the segment reader run on
//! arbitrary bytes, with its promises checked. Not an API: it panics when a promise breaks.

use perdure_types::codec::frame::{self, Decoded};

use super::format::{decode_record, encode_header, encode_record, SEGMENT_HEADER_LEN};
use super::resync::next_intact;
use super::scan::{parse, Parsed, Refused};

/// Reads `data` as segment 1 of a log, both as its last segment and as one followed by another,
/// and panics if the reader breaks a promise: it never panics itself, returns records only from
/// intact frames and exactly the bytes up to where it stopped, cuts a tail only from the last
/// segment and only when nothing intact follows, and names a damaged record and an intact one
/// after it when it refuses for that. The first byte chooses whether `data` is a whole segment
/// (odd) or the records after a valid header (even), so the fuzzer reaches records at once.
pub fn segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        let mut b = encode_header(1, 0).to_vec();
        b.extend_from_slice(rest);
        b
    };
    let as_last = parse(&bytes, 1, true);
    let as_middle = parse(&bytes, 1, false);
    if let Ok(p) = &as_last {
        check_prefix(&bytes, p);
        match &p.tail {
            None => assert_eq!(p.valid_end, bytes.len() as u64),
            Some(_) => assert_eq!(next_intact(&bytes, p.valid_end as usize), None),
        }
    }
    if let Err(Refused::DamagedBeforeIntact {
        offset, intact_at, ..
    }) = &as_last
    {
        assert!(offset < intact_at && *offset >= SEGMENT_HEADER_LEN as u64);
        match frame::decode(&bytes[*intact_at as usize..]) {
            Decoded::Frame { body, .. } => assert!(decode_record(body).is_ok()),
            other => panic!("the intact record at {intact_at} is not one: {other:?}"),
        }
    }
    match &as_middle {
        Ok(p) => {
            check_prefix(&bytes, p);
            assert!(p.tail.is_none() && p.valid_end == bytes.len() as u64);
            assert!(matches!(&as_last, Ok(l) if l.tail.is_none()));
        }
        Err(Refused::DamagedBeforeIntact { .. }) => panic!("only the last segment is resynced"),
        Err(_) => assert!(!matches!(&as_last, Ok(l) if l.tail.is_none())),
    }
}

/// The records re-encode to exactly the bytes between the header and `valid_end`.
fn check_prefix(bytes: &[u8], p: &Parsed) {
    assert!(p.valid_end as usize >= SEGMENT_HEADER_LEN && p.valid_end as usize <= bytes.len());
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    for r in &p.records {
        encode_record(r, &mut scratch, &mut out);
    }
    assert!(out == bytes[SEGMENT_HEADER_LEN..p.valid_end as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Record, RecordKind};

    /// The fuzz target's promises hold for every cut and every flipped byte of a small log
    /// (a deterministic slice of what the fuzzer explores, so the entry point cannot rot).
    #[test]
    fn the_promises_hold_for_every_cut_and_flip_of_a_small_segment() {
        let (mut records, mut scratch) = (Vec::new(), Vec::new());
        for i in 0..6u64 {
            let r = Record {
                partition: i as u32 % 2,
                kind: [RecordKind::Entries, RecordKind::Vote, RecordKind::Committed]
                    [i as usize % 3],
                index: i,
                payload: vec![i as u8; 3 * i as usize],
            };
            encode_record(&r, &mut scratch, &mut records);
        }
        let mut input = vec![0u8];
        input.extend_from_slice(&records);
        segment(&input);
        for at in 1..input.len() {
            segment(&input[..at]);
            for bit in [0x01, 0x80] {
                let mut flipped = input.clone();
                flipped[at] ^= bit;
                segment(&flipped);
            }
        }
        let mut whole = vec![1u8];
        whole.extend_from_slice(&encode_header(1, 0));
        whole.extend_from_slice(&records);
        segment(&whole);
        segment(&[]);
        segment(&[1]);
    }
}
