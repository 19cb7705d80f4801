//! The write-ahead log's segment reader (header, frames, records, torn final write or damage
//! before intact records) on arbitrary bytes; its promises are checked in
//! `perdure_storage::wal::fuzz::segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| perdure_storage::wal::fuzz::segment(data));
