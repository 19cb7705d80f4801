//! Reading one segment's bytes: its header, its records, and where and why they stop. No I/O;
//! never panics, whatever the bytes hold.
//!
//! What may end a segment early is decided here:
//! - a segment followed by another must be whole: any damage is refused;
//! - the last segment may end in a torn final write (cut short, or garbage or zeros the crash
//!   left), cut off by recovery; but damage followed by an intact record anywhere after it is
//!   damage to data that was already synced, not a torn write, and is refused
//!   ([`resync::next_intact`]).

use std::collections::HashMap;

use perdure_types::codec::frame::{self, Decoded};

use super::format::SEGMENT_HEADER_LEN;
use super::format::{check_header, decode_record, BodyError, Header, HeaderError};
use super::resync;
use super::{Record, RecordKind};

/// What one segment holds.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) records: Vec<Record>,
    /// Highest `Entries` index per partition.
    pub(crate) max_entries: HashMap<u32, u64>,
    /// End of the last whole record.
    pub(crate) valid_end: u64,
    /// Why the records stop before the end of the bytes: a torn final write (only possible for
    /// the last segment).
    pub(crate) tail: Option<String>,
    /// The previous segment's final length, from the header.
    pub(crate) prev_len: u64,
}

/// Why a segment is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not our file, or of a format this build does not read.
    Format(String),
    /// Damaged at `offset`.
    Corrupt { offset: u64, reason: String },
    /// A damaged record at `offset` with an intact one after it, at `intact_at`.
    DamagedBeforeIntact {
        offset: u64,
        intact_at: u64,
        reason: String,
    },
}

/// Reads segment `seq` from `bytes`; `last` says whether it is the last segment of the log.
pub(crate) fn parse(bytes: &[u8], seq: u64, last: bool) -> Result<Parsed, Refused> {
    let prev_len = match check_header(bytes, seq) {
        Ok(Header::Valid { prev_len }) => prev_len,
        Ok(Header::Short) => {
            // A segment is renamed into place only after its header is synced, so a short one
            // is damage, not a crash: refuse (deleting it could drop the latest vote it heads).
            return Err(Refused::Corrupt {
                offset: bytes.len() as u64,
                reason: format!(
                    "segment of {} bytes is shorter than its header (segments appear only once their header is on disk: this is damage, not a crash)",
                    bytes.len()
                ),
            });
        }
        Err(HeaderError::Format(reason)) => return Err(Refused::Format(reason)),
        Err(HeaderError::Corrupt { offset, reason }) => {
            return Err(Refused::Corrupt { offset, reason })
        }
    };
    let mut parsed = Parsed {
        records: Vec::new(),
        max_entries: HashMap::new(),
        valid_end: 0,
        tail: None,
        prev_len,
    };
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        let damage = match frame::decode(&bytes[at..]) {
            Decoded::Frame { body, len } => match decode_record(body) {
                Ok(record) => {
                    if record.kind == RecordKind::Entries {
                        let max = parsed.max_entries.entry(record.partition).or_insert(0);
                        *max = (*max).max(record.index);
                    }
                    parsed.records.push(record);
                    at += len;
                    continue;
                }
                // An intact checksum over an unknown kind is not a torn write.
                Err(e @ BodyError::UnknownKind(_)) => {
                    return Err(Refused::Corrupt {
                        offset: at as u64,
                        reason: e.to_string(),
                    })
                }
                Err(e @ BodyError::TooShort(_)) => e.to_string(),
            },
            Decoded::Incomplete => format!(
                "record incomplete: the segment ends {} bytes after its start",
                bytes.len() - at
            ),
            Decoded::Corrupt(c) => c.to_string(),
        };
        if !last {
            return Err(Refused::Corrupt {
                offset: at as u64,
                reason: format!(
                    "{damage}, yet a later segment exists (this is damage, not a torn write)"
                ),
            });
        }
        if let Some(intact_at) = resync::next_intact(bytes, at) {
            return Err(Refused::DamagedBeforeIntact {
                offset: at as u64,
                intact_at: intact_at as u64,
                reason: damage,
            });
        }
        parsed.tail = Some(damage);
        break;
    }
    parsed.valid_end = at as u64;
    Ok(parsed)
}
