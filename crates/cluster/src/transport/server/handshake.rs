//! The server's half of the handshake: the Hello checked, the proof verified (or, under TLS,
//! the certificate's node), the Welcome sealed with the session key; or a refusal that says why.

use super::*;

/// The server's half of the handshake; returns the peer's node id (proven: it is part of what
/// the peer's proof covers, or, under TLS, the name its certificate `cert` is valid for) and
/// the MAC of the frames to send it (none under TLS). From here `reader` accepts only frames
/// of the session (the `Welcome` sent here is the first frame sealed with it).
pub(in crate::transport) async fn handshake<R, W>(
    reader: &mut FrameReader,
    rd: &mut R,
    wr: &mut W,
    config: &TransportConfig,
    cert: Option<&CertificateDer<'_>>,
) -> Result<(NodeId, Option<FrameMac>), Handshake>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let broken = |e: &dyn std::fmt::Display| Handshake::Broken(e.to_string());
    let me = config.node_id;
    let hello = reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| broken(&e))?;
    let (version, cluster_id, peer, partitions, nonce_c) = match hello {
        Some(Message::Hello {
            version,
            cluster_id,
            node_id,
            partitions,
            nonce,
        }) => (version, cluster_id, node_id, partitions, nonce),
        Some(other) => {
            return Err(Handshake::Broken(format!(
                "expected Hello, got {}",
                other.name()
            )))
        }
        None => return Err(Handshake::Broken("closed before Hello".into())),
    };
    tracing::Span::current().record("peer", peer);
    let refused = refusal(config, version, &cluster_id, peer, partitions).or_else(|| {
        let cert = cert?;
        tls::check_names(cert, peer)
            .err()
            .map(|e| format!("a peer claiming node {peer}: {e}"))
    });
    if let Some(reason) = refused {
        refuse(wr, &reason).await;
        return Err(Handshake::Refused(reason));
    }
    let nonce_s = auth::nonce();
    let transcript = Transcript {
        version,
        cluster_id: &config.cluster_id,
        partitions,
        client: peer,
        server: me,
        nonce_c: &nonce_c,
        nonce_s: &nonce_s,
    };
    // Under TLS, TLS proved who the peer is (and the proofs would need a secret): none.
    let tls = config.tls.is_some();
    let challenge = Message::Challenge {
        node_id: me,
        nonce: nonce_s,
        proof: match tls {
            false => transcript.server_proof(&config.secret),
            true => [0; NONCE_LEN],
        },
    };
    wire::write_one(wr, &challenge, None)
        .await
        .map_err(|e| broken(&e))?;
    let proof = match reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| broken(&e))?
    {
        Some(Message::Proof { proof }) => proof,
        Some(Message::Refused { reason }) => {
            return Err(Handshake::Refused(format!(
                "node {peer} refused this node: {reason}"
            )))
        }
        Some(other) => {
            return Err(Handshake::Broken(format!(
                "expected Proof, got {}",
                other.name()
            )))
        }
        None => {
            return Err(Handshake::Broken(
                "closed before Proof (the peer may have refused this node's proof)".into(),
            ))
        }
    };
    if tls {
        wire::write_one(wr, &Message::Welcome, None)
            .await
            .map_err(|e| broken(&e))?;
        return Ok((peer, None));
    }
    if !transcript.verify_client_proof(&config.secret, &proof) {
        let reason = "wrong cluster secret (or a relay changed the handshake)";
        refuse(wr, reason).await;
        return Err(Handshake::Refused(format!("node {peer}: {reason}")));
    }
    let mut session = transcript.session(&config.secret, Role::Server);
    wire::write_one(wr, &Message::Welcome, Some(&mut session.send))
        .await
        .map_err(|e| broken(&e))?;
    reader.authenticate(session.recv);
    Ok((peer, Some(session.send)))
}

/// Why a peer's Hello is refused, if it is: it claims this node's own id, or another protocol
/// version, cluster or partition count.
fn refusal(
    config: &TransportConfig,
    version: u32,
    cluster_id: &str,
    peer: NodeId,
    partitions: u32,
) -> Option<String> {
    let me = config.node_id;
    if peer == me {
        Some(format!("a peer claims to be this node ({me})"))
    } else if version != PROTOCOL_VERSION {
        Some(format!(
            "protocol version {version} (node {peer}) != {PROTOCOL_VERSION} (node {me})"
        ))
    } else if cluster_id != config.cluster_id {
        Some(format!(
            "cluster id {cluster_id:?} (node {peer}) != {:?} (node {me})",
            config.cluster_id
        ))
    } else if partitions != config.partitions {
        Some(format!(
            "partition count {partitions} (node {peer}) != {} (node {me})",
            config.partitions
        ))
    } else {
        None
    }
}

/// Tells the peer why it is refused (best effort: it may be gone already).
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, reason: &str) {
    let _ = wire::write_one(
        wr,
        &Message::Refused {
            reason: reason.to_string(),
        },
        None,
    )
    .await;
}
