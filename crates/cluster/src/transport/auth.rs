//! The handshake's proofs: each side shows it knows the cluster secret without sending it.
//!
//! `proof_s = HMAC-SHA256(secret, "server" | nonce_c | nonce_s)` and
//! `proof_c = HMAC-SHA256(secret, "client" | nonce_s | nonce_c)`. Both nonces are fresh random
//! 32-byte values, so a recorded proof is useless on another connection, and the two labels keep
//! a server's proof from being reflected back as a client's.

use super::wire::NONCE_LEN;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A fresh random nonce (from the operating system's generator).
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn mac(secret: &str, label: &[u8], first: &[u8], second: &[u8]) -> HmacSha256 {
    let mut m =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(first);
    m.update(second);
    m
}

/// The server's proof.
pub(crate) fn server_proof(
    secret: &str,
    nonce_c: &[u8; NONCE_LEN],
    nonce_s: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    mac(secret, b"server", nonce_c, nonce_s)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks the server's proof (constant time).
pub(crate) fn verify_server_proof(
    secret: &str,
    nonce_c: &[u8; NONCE_LEN],
    nonce_s: &[u8; NONCE_LEN],
    proof: &[u8],
) -> bool {
    mac(secret, b"server", nonce_c, nonce_s)
        .verify_slice(proof)
        .is_ok()
}

/// The client's proof.
pub(crate) fn client_proof(
    secret: &str,
    nonce_s: &[u8; NONCE_LEN],
    nonce_c: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    mac(secret, b"client", nonce_s, nonce_c)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks the client's proof (constant time).
pub(crate) fn verify_client_proof(
    secret: &str,
    nonce_s: &[u8; NONCE_LEN],
    nonce_c: &[u8; NONCE_LEN],
    proof: &[u8],
) -> bool {
    mac(secret, b"client", nonce_s, nonce_c)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_nonces_and_role() {
        let (c, s) = (nonce(), nonce());
        assert_ne!(c, s);
        let ps = server_proof("secret-one", &c, &s);
        assert!(verify_server_proof("secret-one", &c, &s, &ps));
        assert!(!verify_server_proof("secret-two", &c, &s, &ps));
        assert!(!verify_server_proof("secret-one", &s, &c, &ps));
        let pc = client_proof("secret-one", &s, &c);
        assert!(verify_client_proof("secret-one", &s, &c, &pc));
        assert_ne!(pc, ps, "a server proof is not a client proof");
        assert!(!verify_client_proof("secret-one", &s, &c, &ps));
        assert!(!verify_client_proof("secret-one", &s, &c, &pc[..31]));
    }
}
