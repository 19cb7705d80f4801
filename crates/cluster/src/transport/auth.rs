//! The handshake's cryptography: proofs that each side knows the cluster secret, bound to the
//! whole handshake, and the session keys derived from it.
//!
//! Both sides build the same [`Transcript`]: protocol version, cluster id, partition count, the
//! client's node id, the server's node id (the one the client means to reach), and both fresh
//! 32-byte nonces. Then, with `K` the cluster secret and `T` the transcript's bytes:
//!
//! ```text
//! proof_s = HMAC-SHA256(K, "server proof" | T)
//! proof_c = HMAC-SHA256(K, "client proof" | T)
//! key_c2s = HMAC-SHA256(K, "client to server frames" | T)     (see session.rs)
//! key_s2c = HMAC-SHA256(K, "server to client frames" | T)
//! ```
//!
//! So a proof is good for one connection only (the nonces), for one pair of node ids and one
//! role (a relay that rewrites the node id a side claims or expects changes `T`, and the proofs
//! no longer verify), and for one cluster and protocol; a recorded proof or key is useless on any
//! other connection. The labels keep a proof from being reflected as the other side's, or as a
//! key. Every field of `T` is fixed-size or length-prefixed, so two transcripts never share bytes.

use super::session::{Direction, FrameMac, Session};
use super::wire::NONCE_LEN;
use hmac::{Hmac, Mac};
use perdure_types::NodeId;
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A fresh random nonce (from the operating system's generator).
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// Everything a handshake decides, as both sides see it once the nonces are exchanged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transcript<'a> {
    /// The transport protocol version both speak.
    pub(crate) version: u32,
    /// The cluster's name.
    pub(crate) cluster_id: &'a str,
    /// The cluster's partition count.
    pub(crate) partitions: u32,
    /// The node that connects.
    pub(crate) client: NodeId,
    /// The node it connects to.
    pub(crate) server: NodeId,
    /// The client's nonce.
    pub(crate) nonce_c: &'a [u8; NONCE_LEN],
    /// The server's nonce.
    pub(crate) nonce_s: &'a [u8; NONCE_LEN],
}

/// Label of the server's proof.
const SERVER_PROOF: &[u8] = b"server proof";
/// Label of the client's proof.
const CLIENT_PROOF: &[u8] = b"client proof";
/// Label of the key of the frames the client sends.
const CLIENT_FRAMES: &[u8] = b"client to server frames";
/// Label of the key of the frames the server sends.
const SERVER_FRAMES: &[u8] = b"server to client frames";

impl Transcript<'_> {
    /// `HMAC(secret, label | transcript)`, ready to finalize.
    fn mac(&self, secret: &str, label: &[u8]) -> HmacSha256 {
        let mut m =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        m.update(&[label.len() as u8]);
        m.update(label);
        m.update(b"perdure transport");
        m.update(&self.version.to_le_bytes());
        m.update(&(self.cluster_id.len() as u64).to_le_bytes());
        m.update(self.cluster_id.as_bytes());
        m.update(&self.partitions.to_le_bytes());
        m.update(&self.client.to_le_bytes());
        m.update(&self.server.to_le_bytes());
        m.update(self.nonce_c);
        m.update(self.nonce_s);
        m
    }

    fn value(&self, secret: &str, label: &[u8]) -> [u8; 32] {
        self.mac(secret, label).finalize().into_bytes().into()
    }

    /// The server's proof.
    pub(crate) fn server_proof(&self, secret: &str) -> [u8; NONCE_LEN] {
        self.value(secret, SERVER_PROOF)
    }

    /// Checks the server's proof (constant time).
    pub(crate) fn verify_server_proof(&self, secret: &str, proof: &[u8]) -> bool {
        self.mac(secret, SERVER_PROOF).verify_slice(proof).is_ok()
    }

    /// The client's proof.
    pub(crate) fn client_proof(&self, secret: &str) -> [u8; NONCE_LEN] {
        self.value(secret, CLIENT_PROOF)
    }

    /// Checks the client's proof (constant time).
    pub(crate) fn verify_client_proof(&self, secret: &str, proof: &[u8]) -> bool {
        self.mac(secret, CLIENT_PROOF).verify_slice(proof).is_ok()
    }

    /// The session of the side playing `role`: the key and direction of the frames it sends and
    /// of those it receives.
    pub(crate) fn session(&self, secret: &str, role: Role) -> Session {
        let c2s = FrameMac::new(
            &self.value(secret, CLIENT_FRAMES),
            Direction::ClientToServer,
        );
        let s2c = FrameMac::new(
            &self.value(secret, SERVER_FRAMES),
            Direction::ServerToClient,
        );
        match role {
            Role::Client => Session {
                send: c2s,
                recv: s2c,
            },
            Role::Server => Session {
                send: s2c,
                recv: c2s,
            },
        }
    }
}

/// Which side of a connection a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It connected.
    Client,
    /// It accepted.
    Server,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_transcript_and_role() {
        let (c, s) = (nonce(), nonce());
        assert_ne!(c, s);
        let t = Transcript {
            version: 3,
            cluster_id: "c",
            partitions: 8,
            client: 1,
            server: 2,
            nonce_c: &c,
            nonce_s: &s,
        };
        let ps = t.server_proof("secret-one");
        assert!(t.verify_server_proof("secret-one", &ps));
        assert!(!t.verify_server_proof("secret-two", &ps));
        let pc = t.client_proof("secret-one");
        assert!(t.verify_client_proof("secret-one", &pc));
        assert_ne!(pc, ps, "a server proof is not a client proof");
        assert!(!t.verify_client_proof("secret-one", &ps));
        assert!(!t.verify_client_proof("secret-one", &pc[..31]));
        // Every field is bound: change any one and neither proof verifies.
        let other_nonce = nonce();
        let changed = [
            Transcript { version: 2, ..t },
            Transcript {
                cluster_id: "d",
                ..t
            },
            Transcript {
                partitions: 16,
                ..t
            },
            Transcript { client: 3, ..t },
            Transcript { server: 3, ..t },
            Transcript {
                client: 2,
                server: 1,
                ..t
            },
            Transcript {
                nonce_c: &other_nonce,
                ..t
            },
            Transcript {
                nonce_s: &other_nonce,
                ..t
            },
            Transcript {
                nonce_c: &s,
                nonce_s: &c,
                ..t
            },
        ];
        for (i, other) in changed.iter().enumerate() {
            assert!(!other.verify_server_proof("secret-one", &ps), "field {i}");
            assert!(!other.verify_client_proof("secret-one", &pc), "field {i}");
        }
    }

    #[test]
    fn the_two_sides_derive_matching_sessions() {
        let (c, s) = (nonce(), nonce());
        let t = Transcript {
            version: 3,
            cluster_id: "c",
            partitions: 8,
            client: 1,
            server: 2,
            nonce_c: &c,
            nonce_s: &s,
        };
        let mut client = t.session("k", Role::Client);
        let mut server = t.session("k", Role::Server);
        let mut frame = b"to the server".to_vec();
        client.send.seal(&mut frame);
        assert_eq!(server.recv.open(&frame).unwrap(), b"to the server");
        let mut frame = b"to the client".to_vec();
        server.send.seal(&mut frame);
        assert_eq!(client.recv.open(&frame).unwrap(), b"to the client");
        // A frame sent one way is not accepted the other way.
        let mut frame = b"reflected".to_vec();
        client.send.seal(&mut frame);
        assert!(client.recv.open(&frame).is_err());
    }
}
