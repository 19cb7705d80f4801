//! The one module that owns every on-disk and wire encoding.
//!
//! Two layers:
//! - **Values** ([`encode`], [`decode`]): serde + bincode 2.0.1 (standard config: little-endian,
//!   variable-length integers), behind one leading format-version byte. A value written by a newer
//!   perdure (a higher version byte) is refused with [`Error::NewerVersion`]; it is never guessed at.
//!   Switching to another serializer later means a new version byte here and nothing elsewhere.
//! - **Frames** ([`frame`]): `[len: u32 LE][crc32: u32 LE][body: len bytes]`, used by the
//!   write-ahead log and snapshot files so that a torn or corrupted record is detected, never
//!   decoded.

use serde::{de::DeserializeOwned, Serialize};

/// The format version written by this build.
pub const FORMAT_VERSION: u8 = 2;

/// What each format version changed (versions before [`FORMAT_VERSION`] are refused, never
/// converted in place):
/// - 1: the first release.
/// - 2: inboxes, outboxes, timers and idempotency ids addressed by `Target` (entity or
///   orchestration instance); outbox entries carry their target.
pub const FORMAT_HISTORY: &[(u8, &str)] = &[
    (1, "first release"),
    (
        2,
        "messages addressed by target (entity or orchestration instance)",
    ),
];

/// Largest value the decoder accepts (guards allocations when reading damaged input).
const DECODE_LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is empty: not even a version byte.
    #[error("empty input: no format version byte")]
    Empty,
    /// The input was written by a newer perdure.
    #[error("format version {found} is newer than this build supports ({supported}); upgrade perdure to read it")]
    NewerVersion {
        /// The version byte found.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// Written by an older perdure whose format this build no longer reads.
    #[error("format version {found} was written by an older perdure; this build reads version {supported} only: export the data with the older build, or start from an empty data directory")]
    OlderVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The version byte is not one perdure ever wrote (0 is never written).
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The bytes after the version byte do not decode to the expected type.
    #[error("cannot decode {type_name}: {reason}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What bincode said.
        reason: String,
    },
    /// The value decoded but bytes were left over.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// The value cannot be encoded (for example a map with non-string keys in JSON-only types).
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// What bincode said.
        reason: String,
    },
}

/// Encodes `value` as `[FORMAT_VERSION][bincode]`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends `[FORMAT_VERSION][bincode]` of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|e| Error::Encode {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// The length of what [`encode`] writes for `value`, counted without building it (no
/// allocation: what a history's byte count needs).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, Error> {
    let mut w = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut w, config()).map_err(|e| Error::Encode {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok(1 + w.bytes_written)
}

/// Decodes a value written by [`encode`]; the whole input must be consumed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let (&version, body) = bytes.split_first().ok_or(Error::Empty)?;
    match version {
        FORMAT_VERSION => {}
        v if v > FORMAT_VERSION => {
            return Err(Error::NewerVersion {
                found: v,
                supported: FORMAT_VERSION,
            })
        }
        v @ 1.. => {
            return Err(Error::OlderVersion {
                found: v,
                supported: FORMAT_VERSION,
            })
        }
        v => return Err(Error::UnknownVersion(v)),
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| Error::Decode {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
    if used != body.len() {
        return Err(Error::TrailingBytes(body.len() - used));
    }
    Ok(value)
}

/// Checksummed frames: `[len: u32 LE][crc32 (IEEE) of body: u32 LE][body]`.
pub mod frame {
    /// Bytes before the body.
    pub const HEADER_LEN: usize = 8;
    /// Largest body a frame may hold (a length field above it is corruption, not a big record).
    pub const MAX_BODY: usize = 256 << 20;

    /// What [`decode`] found at the start of a buffer.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Decoded<'a> {
        /// A whole, intact frame: its body and the bytes it occupies.
        Frame {
            /// The body.
            body: &'a [u8],
            /// Header plus body length.
            len: usize,
        },
        /// The buffer ends before the frame does (a torn write, or simply the end).
        Incomplete,
        /// The frame is damaged.
        Corrupt(Corruption),
    }

    /// How a frame is damaged.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Corruption {
        /// The length field exceeds [`MAX_BODY`].
        BadLength(u32),
        /// The body's checksum does not match.
        ChecksumMismatch {
            /// Stored in the header.
            stored: u32,
            /// Computed over the body.
            computed: u32,
        },
    }

    impl std::fmt::Display for Corruption {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Corruption::BadLength(l) => write!(f, "impossible record length {l}"),
                Corruption::ChecksumMismatch { stored, computed } => write!(
                    f,
                    "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
                ),
            }
        }
    }

    /// The checksum frames use (CRC-32, IEEE), for other fixed layouts that need one (the WAL's
    /// segment header), so the whole project uses one checksum.
    pub fn checksum(bytes: &[u8]) -> u32 {
        crc32fast::hash(bytes)
    }

    /// Appends a frame holding `body` to `out`.
    pub fn encode(body: &[u8], out: &mut Vec<u8>) {
        assert!(body.len() <= MAX_BODY, "frame body of {} bytes", body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&checksum(body).to_le_bytes());
        out.extend_from_slice(body);
    }

    /// Reads the frame at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded<'_> {
        if buf.len() < HEADER_LEN {
            return Decoded::Incomplete;
        }
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
        if len as usize > MAX_BODY {
            return Decoded::Corrupt(Corruption::BadLength(len));
        }
        let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
        let end = HEADER_LEN + len as usize;
        if buf.len() < end {
            return Decoded::Incomplete;
        }
        let body = &buf[HEADER_LEN..end];
        let computed = checksum(body);
        if computed != stored {
            return Decoded::Corrupt(Corruption::ChecksumMismatch { stored, computed });
        }
        Decoded::Frame { body, len: end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Option<Vec<u8>>,
    }

    fn sample() -> Sample {
        Sample {
            a: 42,
            b: "hé".into(),
            c: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn encoding_is_pinned() {
        // The bytes of a known value: a change here breaks every existing data directory.
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes, [2, 42, 3, b'h', 0xc3, 0xa9, 1, 3, 1, 2, 3]);
    }

    #[test]
    fn newer_version_is_refused() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(Error::NewerVersion {
                found: 3,
                supported: 2
            })
        ));
        // a data directory of the first format is refused, saying so
        bytes[0] = 1;
        let e = decode::<Sample>(&bytes).unwrap_err();
        assert!(matches!(
            e,
            Error::OlderVersion {
                found: 1,
                supported: 2
            }
        ));
        assert!(e.to_string().contains("older perdure"), "{e}");
        bytes[0] = 0;
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(Error::UnknownVersion(0))
        ));
        assert!(matches!(decode::<Sample>(&[]), Err(Error::Empty)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = encode(&sample()).unwrap();
        for cut in 1..bytes.len() {
            assert!(decode::<Sample>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<Sample>(&long),
            Err(Error::TrailingBytes(1))
        ));
        // a huge length prefix must not allocate
        let evil = [
            FORMAT_VERSION,
            42,
            0xfd,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        assert!(decode::<Sample>(&evil).is_err());
    }

    #[test]
    fn frames_detect_tears_and_flips() {
        let mut buf = Vec::new();
        frame::encode(b"hello world", &mut buf);
        assert_eq!(
            frame::decode(&buf),
            frame::Decoded::Frame {
                body: b"hello world",
                len: buf.len()
            }
        );
        for cut in 0..buf.len() {
            assert_eq!(frame::decode(&buf[..cut]), frame::Decoded::Incomplete);
        }
        for i in 4..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(frame::decode(&bad), frame::Decoded::Corrupt(_)),
                "flip at {i} undetected"
            );
        }
        let mut bad = buf.clone();
        bad[3] = 0xff; // length far beyond MAX_BODY
        assert!(matches!(
            frame::decode(&bad),
            frame::Decoded::Corrupt(frame::Corruption::BadLength(_))
        ));
    }
}
