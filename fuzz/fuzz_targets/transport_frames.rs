//! The node-to-node transport's frame reader on arbitrary bytes arriving in chunks; its promises
//! are checked in `perdure_cluster::transport::fuzz::read_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| perdure_cluster::transport::fuzz::read_frames(data));
