//! The authenticated session of one connection: every frame after the handshake carries a MAC.
//!
//! Each direction has its own key (derived from the handshake, see `auth.rs`) and an implicit
//! sequence number: the n-th frame a side sends in a direction (from 0) carries
//!
//! ```text
//! tag = HMAC-SHA256(key_dir, dir | seq u64 LE | len u32 LE | body)[..16]
//! ```
//!
//! appended to its body (inside the CRC frame: `[len][crc32][body | tag]`, `len` counting the
//! tag). The receiver computes the tag for the sequence number it expects next; any frame that
//! does not match is refused and the connection closed: a changed or injected frame (no key), a
//! replayed, reordered or dropped-then-replayed one (another sequence number), one from another
//! connection (another key) or reflected back to its sender (another direction). The sequence
//! number never crosses the wire. The tag is truncated to 128 bits (as in RFC 4868).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag appended to every authenticated frame's body.
pub(crate) const TAG_LEN: usize = 16;

/// Which way a frame travels (its byte is part of the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the node that connected.
    ClientToServer = 1,
    /// From the node that accepted.
    ServerToClient = 2,
}

/// Both directions of one connection, as one side sees them.
#[derive(Debug)]
pub(crate) struct Session {
    /// Seals the frames this side sends.
    pub(crate) send: FrameMac,
    /// Opens the frames this side receives.
    pub(crate) recv: FrameMac,
}

/// One direction of a session: its key (as a keyed HMAC state, cloned per frame) and the
/// sequence number of the next frame.
#[derive(Clone)]
pub(crate) struct FrameMac {
    keyed: HmacSha256,
    direction: Direction,
    next: u64,
}

impl std::fmt::Debug for FrameMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameMac")
            .field("direction", &self.direction)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A frame failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "frame {seq} failed authentication (changed, injected, replayed, reordered or from another \
     connection)"
)]
pub(crate) struct Unauthentic {
    /// The sequence number the frame should have had.
    pub(crate) seq: u64,
}

impl FrameMac {
    /// The first frame of `direction` under `key`.
    pub(crate) fn new(key: &[u8; 32], direction: Direction) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"),
            direction,
            next: 0,
        }
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut m = self.keyed.clone();
        m.update(&[self.direction as u8]);
        m.update(&self.next.to_le_bytes());
        m.update(&(body.len() as u32).to_le_bytes());
        m.update(body);
        m
    }

    /// Appends the tag of the next frame to `body`.
    pub(crate) fn seal(&mut self, body: &mut Vec<u8>) {
        let tag = self.mac(body).finalize().into_bytes();
        body.extend_from_slice(&tag[..TAG_LEN]);
        self.next += 1;
    }

    /// Checks the next frame's tag at the end of `sealed` (constant time) and returns the body
    /// before it. After a failure nothing more may be read from the connection.
    pub(crate) fn open<'a>(&mut self, sealed: &'a [u8]) -> Result<&'a [u8], Unauthentic> {
        let refused = Unauthentic { seq: self.next };
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(refused)?;
        let (body, tag) = sealed.split_at(split);
        self.mac(body)
            .verify_truncated_left(tag)
            .map_err(|_| refused)?;
        self.next += 1;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameMac, FrameMac) {
        let key = [7u8; 32];
        (
            FrameMac::new(&key, Direction::ClientToServer),
            FrameMac::new(&key, Direction::ClientToServer),
        )
    }

    fn sealed(mac: &mut FrameMac, body: &[u8]) -> Vec<u8> {
        let mut v = body.to_vec();
        mac.seal(&mut v);
        assert_eq!(v.len(), body.len() + TAG_LEN);
        v
    }

    #[test]
    fn frames_open_in_order_once() {
        let (mut tx, mut rx) = pair();
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| sealed(&mut tx, &[i; 10])).collect();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(rx.open(f).unwrap(), [i as u8; 10]);
        }
        // replayed: every earlier frame is refused now
        for f in &frames {
            assert_eq!(rx.clone().open(f), Err(Unauthentic { seq: 5 }));
        }
    }

    #[test]
    fn changed_reordered_dropped_and_foreign_frames_are_refused() {
        let (mut tx, rx) = pair();
        let first = sealed(&mut tx, b"add 5");
        let second = sealed(&mut tx, b"add 6");
        // a flipped bit, anywhere
        for i in 0..first.len() {
            let mut f = first.clone();
            f[i] ^= 1;
            assert!(rx.clone().open(&f).is_err(), "bit flipped at byte {i}");
        }
        // reordered / the first dropped
        assert_eq!(rx.clone().open(&second), Err(Unauthentic { seq: 0 }));
        // truncated, or no tag at all
        assert!(rx.clone().open(&first[..first.len() - 1]).is_err());
        assert!(rx.clone().open(&first[..3]).is_err());
        assert!(rx.clone().open(&[]).is_err());
        // another key, or the other direction
        let mut other_key = FrameMac::new(&[8u8; 32], Direction::ClientToServer);
        assert!(other_key.open(&first).is_err());
        let mut other_way = FrameMac::new(&[7u8; 32], Direction::ServerToClient);
        assert!(other_way.open(&first).is_err());
        // a refusal leaves the expected sequence number where it was
        let mut rx = rx;
        assert!(rx.open(&second).is_err());
        assert_eq!(rx.open(&first).unwrap(), b"add 5");
        assert_eq!(rx.open(&second).unwrap(), b"add 6");
    }
}
