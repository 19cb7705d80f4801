//! Byte layouts of the write-ahead log: segment file names, the segment header and the record
//! body. Nothing here does I/O.
//!
//! Segment header (`SEGMENT_HEADER_LEN` = 32 bytes, all integers little-endian):
//!
//! | bytes  | field                                                               |
//! |--------|---------------------------------------------------------------------|
//! | 0..8   | magic `PERDWAL\0`                                                    |
//! | 8      | format version (1)                                                   |
//! | 9..12  | reserved, zero                                                       |
//! | 12..20 | segment sequence number (u64), equal to the file name's              |
//! | 20..28 | final length of the previous segment (u64; 0 if there was none)      |
//! | 28..32 | CRC-32 (IEEE) of bytes 0..28                                         |
//!
//! The previous segment's length lets recovery tell a segment cut short exactly at a record
//! boundary (or extended) from a whole one: every segment but the last must have exactly the
//! length its successor recorded.
//!
//! After the header come frames (`perdure_types::codec::frame`), each holding one record body:
//! `[partition u32][kind u8][index u64][payload]`.

use perdure_types::codec::frame;

use super::{Record, RecordKind};

/// The first eight bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"PERDWAL\0";
/// The segment format written by this build.
pub(crate) const VERSION: u8 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Header bytes that do not depend on the previous segment.
const FIXED_LEN: usize = 20;
const CRC_AT: usize = 28;
/// Bytes of a record body before its payload.
pub(crate) const RECORD_HEADER_LEN: usize = 4 + 1 + 8;
/// Bytes a record occupies on disk beyond its payload (frame header plus record header).
pub const RECORD_OVERHEAD: usize = frame::HEADER_LEN + RECORD_HEADER_LEN;
/// Largest payload one record may carry.
pub const MAX_PAYLOAD: usize = frame::MAX_BODY - RECORD_HEADER_LEN;

const SEGMENT_SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";
const SEQ_DIGITS: usize = 20;

/// CRC-32 (IEEE) of `bytes`: the frame codec's checksum, one for the whole project.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    frame::checksum(bytes)
}

/// The file name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

/// The name segment `seq` has while it is being created.
pub(crate) fn tmp_name(seq: u64) -> String {
    format!("{seq:020}{TMP_SUFFIX}")
}

/// What a directory entry's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileName {
    /// `{seq:020}.wal`
    Segment(u64),
    /// `{seq:020}.wal.tmp`: a segment whose creation did not finish.
    Tmp,
    /// Anything else.
    Foreign,
}

fn parse_seq(digits: &str) -> Option<u64> {
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Classifies a file name found in the log directory.
pub(crate) fn classify(name: &str) -> FileName {
    if let Some(digits) = name.strip_suffix(TMP_SUFFIX) {
        if parse_seq(digits).is_some() {
            return FileName::Tmp;
        }
    } else if let Some(digits) = name.strip_suffix(SEGMENT_SUFFIX) {
        if let Some(seq) = parse_seq(digits) {
            return FileName::Segment(seq);
        }
    }
    FileName::Foreign
}

/// The header of segment `seq`, started when segment `seq - 1` was `prev_len` bytes long.
pub(crate) fn encode_header(seq: u64, prev_len: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8] = VERSION;
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20..28].copy_from_slice(&prev_len.to_le_bytes());
    let crc = crc32(&h[..CRC_AT]);
    h[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Why a segment header is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Not our file at all (or of a format this build does not read): an `Error::Format`.
    Format(String),
    /// Our file, but damaged: an `Error::Corrupt` at the given offset.
    Corrupt { offset: u64, reason: String },
}

/// What the start of a segment file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// A whole, valid header for the expected sequence number.
    Valid {
        /// The final length of the previous segment (0 if there was none).
        prev_len: u64,
    },
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes, all consistent with the header this segment
    /// would have: a segment whose header never fully reached the disk. It holds no record.
    Short,
}

/// Checks the start of segment `seq`'s file. Never panics, whatever `bytes` holds.
pub(crate) fn check_header(bytes: &[u8], seq: u64) -> Result<Header, HeaderError> {
    let n = bytes.len().min(SEGMENT_HEADER_LEN);
    let have = &bytes[..n];
    let m = n.min(MAGIC.len());
    if have[..m] != MAGIC[..m] {
        return Err(HeaderError::Format(
            "not a perdure write-ahead log segment (wrong magic bytes)".into(),
        ));
    }
    if let Some(&version) = have.get(8) {
        if version > VERSION {
            return Err(HeaderError::Format(format!(
                "segment format version {version} was written by a newer perdure (this build reads version {VERSION}); upgrade perdure to read it"
            )));
        }
        if version != VERSION {
            return Err(HeaderError::Format(format!(
                "unknown segment format version {version}"
            )));
        }
    }
    if n < SEGMENT_HEADER_LEN {
        // Only the header of this very segment may have been cut short: anything else is not
        // a partial write of ours. (The bytes after the fixed part cannot be predicted.)
        let expected = encode_header(seq, 0);
        let fixed = n.min(FIXED_LEN);
        return if have[..fixed] == expected[..fixed] {
            Ok(Header::Short)
        } else {
            Err(HeaderError::Corrupt {
                offset: 0,
                reason: format!(
                    "segment header cut short at {n} bytes and not the header of segment {seq}"
                ),
            })
        };
    }
    let stored = u32::from_le_bytes([have[28], have[29], have[30], have[31]]);
    let computed = crc32(&have[..CRC_AT]);
    if stored != computed {
        return Err(HeaderError::Corrupt {
            offset: 0,
            reason: format!(
                "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        });
    }
    if have[9..12] != [0, 0, 0] {
        return Err(HeaderError::Corrupt {
            offset: 9,
            reason: "reserved header bytes are not zero".into(),
        });
    }
    let found = u64_at(have, 12);
    if found != seq {
        return Err(HeaderError::Format(format!(
            "the header says segment {found} but the file name says segment {seq} (renamed or copied?)"
        )));
    }
    Ok(Header::Valid {
        prev_len: u64_at(have, 20),
    })
}

/// Appends `record`, framed, to `out`. `scratch` is a reusable buffer for the body.
///
/// The payload must be at most [`MAX_PAYLOAD`] bytes (the caller checks).
pub(crate) fn encode_record(record: &Record, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(&record.partition.to_le_bytes());
    scratch.push(record.kind as u8);
    scratch.extend_from_slice(&record.index.to_le_bytes());
    scratch.extend_from_slice(&record.payload);
    frame::encode(scratch, out);
}

/// Why an intact frame's body is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Shorter than a record header (for example the zero-filled tail some file systems leave
    /// after a crash: eight zero bytes are a valid empty frame).
    TooShort(usize),
    /// The kind byte names no [`RecordKind`].
    UnknownKind(u8),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooShort(n) => write!(
                f,
                "record body of {n} bytes is shorter than a record header ({RECORD_HEADER_LEN})"
            ),
            BodyError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
        }
    }
}

/// Decodes a frame body into a record.
pub(crate) fn decode_record(body: &[u8]) -> Result<Record, BodyError> {
    if body.len() < RECORD_HEADER_LEN {
        return Err(BodyError::TooShort(body.len()));
    }
    let partition = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let kind = RecordKind::from_byte(body[4]).ok_or(BodyError::UnknownKind(body[4]))?;
    let index = u64_at(body, 5);
    Ok(Record {
        partition,
        kind,
        index,
        payload: body[RECORD_HEADER_LEN..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_foreign() {
        assert_eq!(segment_name(7), "00000000000000000007.wal");
        assert_eq!(classify(&segment_name(7)), FileName::Segment(7));
        assert_eq!(
            classify(&segment_name(u64::MAX)),
            FileName::Segment(u64::MAX)
        );
        assert_eq!(classify(&tmp_name(7)), FileName::Tmp);
        for name in [
            "7.wal",
            "0000000000000000007.wal",
            "000000000000000000007.wal",
            "99999999999999999999.wal", // above u64::MAX
            "0000000000000000000a.wal",
            "+0000000000000000007.wal",
            "00000000000000000007.WAL",
            "00000000000000000007.wal.bak",
            "00000000000000000007.tmp",
            "x.wal.tmp",
            "notes.txt",
            "",
        ] {
            assert_eq!(classify(name), FileName::Foreign, "{name:?}");
        }
    }

    #[test]
    fn header_layout_is_pinned() {
        let h = encode_header(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
        assert_eq!(&h[0..8], b"PERDWAL\0");
        assert_eq!(h[8], 1);
        assert_eq!(&h[9..12], &[0, 0, 0]);
        assert_eq!(&h[12..20], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            &h[20..28],
            &[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]
        );
        assert_eq!(
            u32::from_le_bytes(h[28..32].try_into().unwrap()),
            crc32(&h[0..28])
        );
        // crc32 is the standard IEEE CRC-32
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn header_checks() {
        let h = encode_header(5, 777);
        assert_eq!(check_header(&h, 5), Ok(Header::Valid { prev_len: 777 }));
        // records after the header do not matter
        let mut long = h.to_vec();
        long.extend_from_slice(b"anything");
        assert_eq!(check_header(&long, 5), Ok(Header::Valid { prev_len: 777 }));
        // the wrong segment number
        assert!(
            matches!(check_header(&h, 6), Err(HeaderError::Format(r)) if r.contains("segment 5"))
        );
        // every prefix of our own header is a short header, never an error or valid
        for n in 0..SEGMENT_HEADER_LEN {
            assert_eq!(check_header(&h[..n], 5), Ok(Header::Short), "prefix {n}");
        }
        // a prefix of another segment's header is not ours to delete
        assert!(check_header(&h[..20], 6).is_err());
        // newer version
        let mut newer = h;
        newer[8] = 2;
        assert!(
            matches!(check_header(&newer, 5), Err(HeaderError::Format(r)) if r.contains("written by a newer perdure"))
        );
        assert!(
            matches!(check_header(&newer[..9], 5), Err(HeaderError::Format(r)) if r.contains("newer perdure"))
        );
        let mut zero = h;
        zero[8] = 0;
        assert!(matches!(
            check_header(&zero, 5),
            Err(HeaderError::Format(_))
        ));
        // magic
        let mut foreign = h;
        foreign[3] ^= 1;
        assert!(
            matches!(check_header(&foreign, 5), Err(HeaderError::Format(r)) if r.contains("not a perdure write-ahead log segment"))
        );
        assert!(matches!(
            check_header(b"PX", 5),
            Err(HeaderError::Format(_))
        ));
        // any other flipped byte is detected
        for i in 9..SEGMENT_HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert!(check_header(&bad, 5).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn record_layout_is_pinned_and_round_trips() {
        let r = Record {
            partition: 0x0a0b_0c0d,
            kind: RecordKind::Truncate,
            index: 0x1122_3344_5566_7788,
            payload: b"xyz".to_vec(),
        };
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        encode_record(&r, &mut scratch, &mut out);
        assert_eq!(out.len(), RECORD_OVERHEAD + 3);
        let body = &out[frame::HEADER_LEN..];
        assert_eq!(
            body,
            &[
                0x0d, 0x0c, 0x0b, 0x0a, 2, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, b'x',
                b'y', b'z'
            ]
        );
        match frame::decode(&out) {
            frame::Decoded::Frame { body, len } => {
                assert_eq!(len, out.len());
                assert_eq!(decode_record(body), Ok(r));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_bodies_are_errors() {
        for n in 0..RECORD_HEADER_LEN {
            assert_eq!(decode_record(&vec![1; n]), Err(BodyError::TooShort(n)));
        }
        let mut body = vec![0u8; RECORD_HEADER_LEN];
        for k in [0u8, 6, 255] {
            body[4] = k;
            assert_eq!(decode_record(&body), Err(BodyError::UnknownKind(k)));
        }
        for k in 1u8..=5 {
            body[4] = k;
            assert_eq!(decode_record(&body).unwrap().kind as u8, k);
        }
    }
}
