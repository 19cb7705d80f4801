//! What travels on a connection: the messages, how they are framed, read and written.
//!
//! Every message is one [`codec::frame`] (`[len u32 LE][crc32 u32 LE][body]`) whose body is
//! `codec::encode(&Message)`, followed, once the handshake has made a session, by the frame's
//! MAC (`session.rs`). Payloads (`body` fields) are serialized as byte strings (one length then
//! the bytes), not as sequences of `u8`.

use super::error::RemoteError;
use super::session::{FrameMac, Unauthentic, TAG_LEN};
use perdure_types::codec::{self, frame};
use perdure_types::NodeId;
use serde::{Deserialize, Serialize};
use std::io;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bumped when the messages or their payloads change incompatibly; a peer speaking another
/// version is refused at the handshake, naming both versions. 2: payloads in codec format 2
/// (messages addressed by target, typed services with failures as `Failure`). 3: the handshake
/// binds both node ids, the cluster and the version, and every later frame carries a MAC under
/// a per-connection session key (the messages' shapes are those of 2, so peers of either
/// version still refuse each other naming both versions).
pub(crate) const PROTOCOL_VERSION: u32 = 3;

/// Largest frame body accepted before the handshake completes (an unauthenticated peer cannot
/// make this node allocate more).
pub(crate) const HANDSHAKE_FRAME_LIMIT: usize = 64 << 10;

/// Largest frame body accepted after the handshake.
pub(crate) const FRAME_LIMIT: usize = frame::MAX_BODY;

/// Largest request or response payload: a frame also holds the message's own few bytes.
pub const MAX_PAYLOAD: usize = frame::MAX_BODY - 1024;

/// The read half of a connection (plain TCP or TLS).
pub(crate) type Rd = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection (plain TCP or TLS).
pub(crate) type Wr = Box<dyn AsyncWrite + Send + Unpin>;

/// Size of the handshake nonces and proofs.
pub(crate) const NONCE_LEN: usize = 32;

/// One message on a connection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Client → server, first message.
    Hello {
        version: u32,
        cluster_id: String,
        /// The client's node id (proven by its proof, which covers it).
        node_id: NodeId,
        partitions: u32,
        nonce: [u8; NONCE_LEN],
    },
    /// Server → client: who the server is, and its proof that it knows the secret.
    Challenge {
        node_id: NodeId,
        nonce: [u8; NONCE_LEN],
        proof: [u8; NONCE_LEN],
    },
    /// Client → server: the client's proof that it knows the secret.
    Proof { proof: [u8; NONCE_LEN] },
    /// Server → client: the handshake succeeded (the first frame with a MAC: it confirms the
    /// server derived the same session).
    Welcome,
    /// Either way: the handshake failed, and why. The connection closes after it.
    Refused { reason: String },
    /// Client → server: one request.
    Request {
        id: u64,
        kind: u16,
        #[serde(with = "payload")]
        body: Vec<u8>,
    },
    /// Server → client: the answer to request `id`.
    Response {
        id: u64,
        #[serde(with = "payload")]
        body: Vec<u8>,
    },
    /// Server → client: request `id` failed on the server.
    Failure { id: u64, error: RemoteError },
    /// Client → server: are you there? (sent when the server has been silent with requests
    /// outstanding)
    Ping,
    /// Server → client: the answer to a [`Message::Ping`].
    Pong,
}

impl Message {
    /// The variant's name, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
            Message::Refused { .. } => "Refused",
            Message::Request { .. } => "Request",
            Message::Response { .. } => "Response",
            Message::Failure { .. } => "Failure",
            Message::Ping => "Ping",
            Message::Pong => "Pong",
        }
    }
}

/// `Vec<u8>` as a serde byte string.
mod payload {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("damaged frame: {0}")]
    Corrupt(frame::Corruption),
    #[error("undecodable message: {0}")]
    Codec(#[from] codec::Error),
    #[error(transparent)]
    Unauthentic(#[from] Unauthentic),
}

/// Reads messages from a byte stream, keeping what it has read but not yet decoded across calls
/// (so [`FrameReader::next`] is cancel safe: dropping it loses nothing).
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Bytes read and not yet consumed (from `pos`).
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    pos: usize,
    /// When bytes last arrived.
    last_read: Instant,
    /// Frames decoded so far: during the handshake (its first [`HANDSHAKE_FRAMES`] frames, read
    /// before the peer is authenticated), memory grows only as bytes arrive.
    decoded: u64,
    /// Once the handshake made a session: checks each frame's MAC and sequence number.
    session: Option<FrameMac>,
}

/// Bytes asked of the socket at least per read, once a connection has delivered a frame.
const READ_CHUNK: usize = 64 << 10;
/// Bytes asked of the socket at most per read during the handshake: a connection that opens
/// and sends nothing (or a header and then nothing) holds little memory.
const FIRST_CHUNK: usize = 4 << 10;
/// Frames each side reads during the handshake (the server: Hello, Proof; the client:
/// Challenge, Welcome).
const HANDSHAKE_FRAMES: u64 = 2;
/// An idle read buffer larger than this is shrunk (after a large frame such as a snapshot).
const KEEP_BUFFER: usize = 4 << 20;

impl FrameReader {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            last_read: Instant::now(),
            decoded: 0,
            session: None,
        }
    }

    /// From now on every frame must carry the next MAC of `mac` (see `session.rs`); one that
    /// does not is a [`ReadError::Unauthentic`].
    pub(crate) fn authenticate(&mut self, mac: FrameMac) {
        self.session = Some(mac);
    }

    /// When bytes last arrived.
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Reads the next message; `None` at a clean end of stream (between frames). A frame longer
    /// than `limit` is an error as soon as its header is read (nothing is allocated for it).
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        limit: usize,
    ) -> Result<Option<Message>, ReadError> {
        loop {
            let avail = &self.buf[self.pos..];
            let mut need = frame::HEADER_LEN;
            if avail.len() >= 4 {
                let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
                if len > limit {
                    return Err(ReadError::TooLarge { len, limit });
                }
                match frame::decode(avail) {
                    frame::Decoded::Frame { body, len: used } => {
                        let body = match &mut self.session {
                            Some(mac) => mac.open(body)?,
                            None => body,
                        };
                        let message = codec::decode::<Message>(body)?;
                        self.pos += used;
                        self.decoded += 1;
                        if self.pos == self.buf.len() {
                            self.buf.clear();
                            self.pos = 0;
                            if self.buf.capacity() > KEEP_BUFFER {
                                self.buf.shrink_to(READ_CHUNK);
                            }
                        }
                        return Ok(Some(message));
                    }
                    frame::Decoded::Incomplete => need = frame::HEADER_LEN + len,
                    frame::Decoded::Corrupt(c) => return Err(ReadError::Corrupt(c)),
                }
            }
            // Move the partial frame to the front, then make room for the rest of it.
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let missing = need.saturating_sub(self.buf.len());
            if self.decoded < HANDSHAKE_FRAMES {
                // grow in small steps, and only when what arrived filled the buffer
                if self.buf.capacity() == self.buf.len() {
                    self.buf.reserve_exact(missing.clamp(1, FIRST_CHUNK));
                }
            } else {
                self.buf.reserve(missing.max(READ_CHUNK));
            }
            let n = r.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::TruncatedFrame)
                };
            }
            self.last_read = Instant::now();
        }
    }
}

/// Appends `message` as one frame to `out`, using `scratch` for the body, sealed with the next
/// MAC of `mac` if given. Fails (appending nothing, using no sequence number) if the body would
/// exceed a frame's limit.
pub(crate) fn encode(
    message: &Message,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
    mac: Option<&mut FrameMac>,
) -> Result<(), codec::Error> {
    scratch.clear();
    codec::encode_into(message, scratch)?;
    if scratch.len() + TAG_LEN > frame::MAX_BODY {
        return Err(codec::Error::Encode {
            type_name: "transport message",
            reason: format!(
                "{} bytes exceed the frame limit of {}",
                scratch.len(),
                frame::MAX_BODY
            ),
        });
    }
    if let Some(mac) = mac {
        mac.seal(scratch);
    }
    frame::encode(scratch, out);
    Ok(())
}

/// Writes one message on its own (the handshake, before the writer task exists), sealed with
/// `mac` if given.
pub(crate) async fn write_one<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Message,
    mac: Option<&mut FrameMac>,
) -> io::Result<()> {
    let mut out = Vec::new();
    encode(message, &mut Vec::new(), &mut out, mac).map_err(io::Error::other)?;
    w.write_all(&out).await
}

/// Most bytes gathered into one write.
const MAX_BATCH: usize = 1 << 20;
/// A batch buffer larger than this is shrunk after use.
const KEEP_BATCH: usize = 4 << 20;

/// The writer of a connection: waits for a message, then takes every other message already
/// queued (up to about [`MAX_BATCH`] bytes), and writes them all with one `write_all` of a reused
/// buffer; each message is sealed with the next MAC of the connection's session (`mac`; none
/// under TLS). Returns when every sender is gone (`Ok`) or a write fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Message>,
    mut w: W,
    mut mac: Option<FrameMac>,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 << 10);
    let mut scratch = Vec::with_capacity(4 << 10);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Err(e) = encode(&message, &mut scratch, &mut out, mac.as_mut()) {
                // The callers check sizes first; this is a bug, not a peer's fault.
                tracing::error!(message = message.name(), error = %e, "message dropped");
            }
            if out.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        w.write_all(&out).await?;
        out.clear();
        if out.capacity() > KEEP_BATCH {
            out.shrink_to(64 << 10);
        }
        if scratch.capacity() > KEEP_BATCH {
            scratch.shrink_to(4 << 10);
        }
    }
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::session::Direction;

    #[tokio::test]
    async fn messages_round_trip_through_frames() {
        let messages = vec![
            Message::Request {
                id: 7,
                kind: 3,
                body: vec![1, 2, 3],
            },
            Message::Response {
                id: 7,
                body: vec![0; 100_000],
            },
            Message::Ping,
        ];
        let key = [3u8; 32];
        let mut seal = FrameMac::new(&key, Direction::ServerToClient);
        let mut bytes = Vec::new();
        for m in &messages {
            encode(m, &mut Vec::new(), &mut bytes, Some(&mut seal)).unwrap();
        }
        // payloads are byte strings: length prefix then the bytes, nothing per byte
        assert!(bytes.len() < 100_000 + 100, "{}", bytes.len());
        // fed one byte at a time
        let (mut a, mut b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            a.write_all(&bytes).await.unwrap();
        });
        let mut reader = FrameReader::new();
        reader.authenticate(FrameMac::new(&key, Direction::ServerToClient));
        match reader.next(&mut b, FRAME_LIMIT).await.unwrap() {
            Some(Message::Request {
                id: 7,
                kind: 3,
                body,
            }) => assert_eq!(body, [1, 2, 3]),
            other => panic!("{other:?}"),
        }
        match reader.next(&mut b, FRAME_LIMIT).await.unwrap() {
            Some(Message::Response { id: 7, body }) => assert_eq!(body.len(), 100_000),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reader.next(&mut b, FRAME_LIMIT).await.unwrap(),
            Some(Message::Ping)
        ));
        writer.await.unwrap();
        assert!(reader.next(&mut b, FRAME_LIMIT).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_connection_holds_memory_only_as_its_first_bytes_arrive() {
        let reader = FrameReader::new();
        assert_eq!(reader.buf.capacity(), 0, "nothing before the first byte");
        // a peer that sends a header announcing a 60 KiB handshake frame, then a few bytes, and
        // stops: the reader holds what arrived (rounded up), not the announced length
        let mut bytes = Vec::new();
        encode(
            &Message::Response {
                id: 1,
                body: vec![7; 60 << 10],
            },
            &mut Vec::new(),
            &mut bytes,
            None,
        )
        .unwrap();
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(&bytes[..100]).await.unwrap();
        let mut reader = FrameReader::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            reader.next(&mut b, HANDSHAKE_FRAME_LIMIT),
        )
        .await;
        assert!(read.is_err(), "the frame is incomplete: still waiting");
        assert!(
            reader.buf.capacity() <= 2 * FIRST_CHUNK,
            "{} bytes held for 100 received",
            reader.buf.capacity()
        );
        // the rest arrives: the frame is read whole
        a.write_all(&bytes[100..]).await.unwrap();
        match reader.next(&mut b, HANDSHAKE_FRAME_LIMIT).await.unwrap() {
            Some(Message::Response { id: 1, body }) => assert_eq!(body.len(), 60 << 10),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_and_torn_frames_are_errors() {
        let mut bytes = Vec::new();
        encode(
            &Message::Request {
                id: 1,
                kind: 1,
                body: vec![0; 1000],
            },
            &mut Vec::new(),
            &mut bytes,
            None,
        )
        .unwrap();
        let mut reader = FrameReader::new();
        assert!(matches!(
            reader.next(&mut &bytes[..], 100).await,
            Err(ReadError::TooLarge { limit: 100, .. })
        ));
        let mut reader = FrameReader::new();
        assert!(matches!(
            reader.next(&mut &bytes[..500], FRAME_LIMIT).await,
            Err(ReadError::TruncatedFrame)
        ));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        let mut reader = FrameReader::new();
        assert!(matches!(
            reader.next(&mut &bad[..], FRAME_LIMIT).await,
            Err(ReadError::Corrupt(_))
        ));
    }
}
