//! The client's half of the handshake: `Hello`, the server's challenge, this node's proof, and
//! the server's sealed `Welcome`; what a connection must pass before it carries any request.

use super::super::auth::{self, Role, Transcript};
use super::super::session::FrameMac;
use super::super::wire::{
    self, FrameReader, Message, Rd, ReadError, Wr, HANDSHAKE_FRAME_LIMIT, NONCE_LEN,
    PROTOCOL_VERSION,
};
use super::super::TransportConfig;
use super::Failure;
use perdure_types::NodeId;
use std::fmt;

/// The client's half of the handshake with the node expected at `addr`; returns the MAC of the
/// frames to send it (none under TLS). From here `reader` accepts only frames of the session
/// (the server's `Welcome` is the first).
pub(super) async fn run(
    reader: &mut FrameReader,
    rd: &mut Rd,
    wr: &mut Wr,
    config: &TransportConfig,
    node: NodeId,
    addr: &str,
) -> Result<Option<FrameMac>, Failure> {
    let lost = |e: &dyn fmt::Display| Failure::Unreachable(format!("handshake with {addr}: {e}"));
    let nonce_c = auth::nonce();
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
        partitions: config.partitions,
        nonce: nonce_c,
    };
    wire::write_one(wr, &hello, None)
        .await
        .map_err(|e| lost(&e))?;
    let next = reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| lost(&e))?;
    let (peer, nonce_s, proof_s) = match next {
        Some(Message::Challenge {
            node_id,
            nonce,
            proof,
        }) => (node_id, nonce, proof),
        Some(Message::Refused { reason }) => return Err(Failure::Refused(reason)),
        Some(other) => return Err(lost(&format!("expected Challenge, got {}", other.name()))),
        None => return Err(lost(&"the peer closed the connection")),
    };
    // The transcript names the node this node means to reach: a relay that rewrote the id the
    // peer answered with cannot make the peer's proof cover it.
    let transcript = Transcript {
        version: PROTOCOL_VERSION,
        cluster_id: &config.cluster_id,
        partitions: config.partitions,
        client: config.node_id,
        server: node,
        nonce_c: &nonce_c,
        nonce_s: &nonce_s,
    };
    // Under TLS the server's certificate proved it is `node`; there are no proofs.
    let tls = config.tls.is_some();
    let refusal = if peer != node {
        Some(format!("{addr} is node {peer}, not node {node}"))
    } else if !tls && !transcript.verify_server_proof(&config.secret, &proof_s) {
        Some(
            "the peer does not know the cluster secret \
             (its proof does not match this node's secret: one of the two is misconfigured, \
             or a relay on the path changed the handshake)"
                .to_string(),
        )
    } else {
        None
    };
    if let Some(reason) = refusal {
        // Tell the peer why, so that it can log it too.
        let _ = wire::write_one(
            wr,
            &Message::Refused {
                reason: reason.clone(),
            },
            None,
        )
        .await;
        return Err(Failure::Refused(reason));
    }
    let proof = Message::Proof {
        proof: match tls {
            false => transcript.client_proof(&config.secret),
            true => [0; NONCE_LEN],
        },
    };
    wire::write_one(wr, &proof, None)
        .await
        .map_err(|e| lost(&e))?;
    let send = match tls {
        false => {
            let session = transcript.session(&config.secret, Role::Client);
            reader.authenticate(session.recv);
            Some(session.send)
        }
        true => None,
    };
    match reader.next(rd, HANDSHAKE_FRAME_LIMIT).await {
        Ok(Some(Message::Welcome)) => Ok(send),
        Ok(Some(Message::Refused { reason })) => Err(Failure::Refused(reason)),
        Ok(Some(other)) => Err(lost(&format!("expected Welcome, got {}", other.name()))),
        Ok(None) => Err(lost(&"the peer closed the connection")),
        // (a refusal sent after the proof is not sealed either: it can only come from a peer
        // that did not derive this session)
        Err(ReadError::Unauthentic(e)) => Err(Failure::Refused(format!(
            "the peer's Welcome is not of this session ({e}): a wrong secret, or a relay on the path"
        ))),
        Err(e) => Err(lost(&e)),
    }
}
