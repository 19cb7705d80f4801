//! Entry point for the transport fuzz target (`fuzz/` at the repository root): the frame reader
//! of a connection fed arbitrary bytes. Not an API: it panics when a promise breaks.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

use super::wire::{encode, FrameReader, FRAME_LIMIT, HANDSHAKE_FRAME_LIMIT};

/// Bytes that arrive at most `chunk` at a time, always at once (never pending).
struct Arriving<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Arriving<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.bytes.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Poll::Ready(Ok(()))
    }
}

/// Reads messages from `data` (after its first byte, which sets how many bytes arrive per read:
/// 1 to 255, or 0 for everything at once) the way a connection does: the first two frames
/// under the handshake's limit, the rest under the frame limit, until the end or an error.
/// Panics if the reader panics, waits on bytes that are all there, loops without consuming, or
/// returns a message that does not survive encoding and reading back.
pub fn read_frames(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut src = Arriving {
        bytes: rest,
        chunk: if chunk == 0 { usize::MAX } else { chunk.into() },
    };
    let mut reader = FrameReader::new();
    let mut cx = Context::from_waker(Waker::noop());
    for read in 0..=rest.len() {
        let limit = if read < 2 {
            HANDSHAKE_FRAME_LIMIT
        } else {
            FRAME_LIMIT
        };
        let next = pin!(reader.next(&mut src, limit));
        let Poll::Ready(result) = next.poll(&mut cx) else {
            panic!("the reader waits although every byte has arrived");
        };
        let Ok(Some(message)) = result else {
            return;
        };
        let mut framed = Vec::new();
        encode(&message, &mut Vec::new(), &mut framed, None).expect("a read message encodes");
        let (mut back, mut bytes) = (FrameReader::new(), &framed[..]);
        let again = pin!(back.next(&mut bytes, FRAME_LIMIT));
        match again.poll(&mut cx) {
            Poll::Ready(Ok(Some(m))) => assert_eq!(m.name(), message.name()),
            other => panic!("a read message does not read back: {other:?}"),
        }
    }
    panic!("more messages than bytes");
}

#[cfg(test)]
mod tests {
    use super::super::wire::Message;
    use super::*;

    /// The fuzz target's promises hold for real frames in every chunking, cut anywhere, with
    /// any byte flipped (a deterministic slice of what the fuzzer explores).
    #[test]
    fn the_promises_hold_for_real_frames_cut_and_flipped() {
        let mut frames = Vec::new();
        for m in [
            Message::Ping,
            Message::Request {
                id: 7,
                kind: 1,
                body: b"body".to_vec(),
            },
            Message::Refused {
                reason: "no".into(),
            },
            Message::Pong,
        ] {
            encode(&m, &mut Vec::new(), &mut frames, None).unwrap();
        }
        for chunk in [0u8, 1, 2, 7, 255] {
            let mut input = vec![chunk];
            input.extend_from_slice(&frames);
            read_frames(&input);
            for at in 1..input.len() {
                read_frames(&input[..at]);
                let mut flipped = input.clone();
                flipped[at] ^= 0x10;
                read_frames(&flipped);
            }
        }
        read_frames(&[]);
    }
}
