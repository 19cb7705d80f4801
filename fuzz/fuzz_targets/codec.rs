//! The codec's decoders on arbitrary bytes: every on-disk and wire value type (chosen by the
//! first byte), and the checksummed frame. Decoding never panics, and whatever decodes encodes
//! and decodes back to the same value.
#![no_main]

use perdure_storage::raft_types::{Entry, LogId, Vote};
use perdure_types::codec::{self, frame};
use perdure_types::command::{Command, Proposal, ProposalResult};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// Decodes `bytes` as a `T`; if that works, the value must survive a round trip.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value encodes");
        let back: T = codec::decode(&again).expect("an encoded value decodes");
        assert_eq!(back, value);
    }
}

/// Decodes `bytes` as a `T` without `PartialEq`; the re-encoding must decode again.
fn decodes_back<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value encodes");
        codec::decode::<T>(&again).expect("an encoded value decodes");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => round_trip::<Command>(bytes),
        1 => round_trip::<Proposal>(bytes),
        2 => round_trip::<ProposalResult>(bytes),
        3 => decodes_back::<Vec<Entry>>(bytes),
        4 => round_trip::<LogId>(bytes),
        5 => round_trip::<Vote>(bytes),
        6 => round_trip::<Option<LogId>>(bytes),
        7 => round_trip::<perdure_types::message::Message>(bytes),
        8 => round_trip::<perdure_types::membership::Membership>(bytes),
        9 => round_trip::<perdure_storage::datadir::DataDirMeta>(bytes),
        10 => {
            let _ = perdure_storage::snapshot::decode(bytes, std::path::Path::new("fuzz.snap"));
        }
        _ => match frame::decode(bytes) {
            frame::Decoded::Frame { body, len } => {
                assert!(len <= bytes.len() && len == frame::HEADER_LEN + body.len());
                assert_eq!(frame::checksum(body).to_le_bytes(), bytes[4..8]);
                let mut again = Vec::new();
                frame::encode(body, &mut again);
                assert_eq!(again, bytes[..len]);
            }
            frame::Decoded::Incomplete => {}
            frame::Decoded::Corrupt(c) => {
                let _ = c.to_string();
            }
        },
    }
});
