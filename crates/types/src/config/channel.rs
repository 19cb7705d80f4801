//! Whether a cluster's node channel is secured enough to start: the `cluster.secret` rules.
//!
//! A node that has peers (`cluster.members` set) authenticates every frame with its cluster
//! secret (see the cluster crate's transport). So that no cluster runs on a guessable key:
//!
//! - with `[cluster.tls]` the channel is secured by TLS and the secret is not used: its three
//!   paths must be set (the files are read when the node starts);
//! - an empty secret, or one of the example/placeholder secrets, is refused everywhere;
//! - while every peer address (`cluster.listen_addr`, each member's `addr`) is a loopback
//!   address, at least [`MIN_LOOPBACK_CHARS`] characters are enough (a cluster on one machine);
//! - otherwise the secret must hold at least [`MIN_SECRET_BITS`] bits by the estimate of
//!   [`estimated_bits`]: 64 hex digits or 43 base64 characters of random bytes, e.g.
//!   `openssl rand -hex 32` or `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'`.
//!
//! The estimate cannot see how a string was made: it refuses short, repetitive and known
//! secrets, and accepts any long string of varied characters. Generate the secret, never type it.

use super::{ClusterConfig, ConfigError};

/// Bits a secret must hold when a peer address is not loopback (32 bytes).
pub const MIN_SECRET_BITS: u32 = 256;

/// Characters a secret must have when every peer address is loopback.
pub const MIN_LOOPBACK_CHARS: usize = 16;

/// Secrets published as examples (parts of them, case-insensitive): never accepted.
const KNOWN_WEAK: &[&str] = &[
    "local-cluster-secret-change-me",
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "your-secret",
    "example",
    "password",
];

/// How to make a good secret, for error messages.
const HOW: &str = "generate one, e.g. `openssl rand -hex 32`, and pass it as \
                   PERDURE_CLUSTER__SECRET (or use TLS: [cluster.tls], `perdure cert`)";

/// Checks `cluster.secret` (or `cluster.tls`) against the rules above (only called when
/// `members` is set).
pub(super) fn check(c: &ClusterConfig) -> Result<(), ConfigError> {
    if let Some(tls) = &c.tls {
        for (key, path) in [
            ("cluster.tls.ca", &tls.ca),
            ("cluster.tls.cert", &tls.cert),
            ("cluster.tls.key", &tls.key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new(key, "must name a PEM file"));
            }
        }
        return Ok(());
    }
    let secret = &c.secret;
    if secret.is_empty() {
        return Err(ConfigError::new(
            "cluster.secret",
            format!("required when cluster.members is set: {HOW}"),
        ));
    }
    let lower = secret.to_ascii_lowercase();
    if let Some(weak) = KNOWN_WEAK.iter().find(|w| lower.contains(*w)) {
        return Err(ConfigError::new(
            "cluster.secret",
            format!("contains {weak:?}: an example or placeholder secret is never accepted; {HOW}"),
        ));
    }
    match non_loopback(c) {
        None if secret.chars().count() >= MIN_LOOPBACK_CHARS => Ok(()),
        None => Err(ConfigError::new(
            "cluster.secret",
            format!(
                "must be at least {MIN_LOOPBACK_CHARS} characters when cluster.members is set; {HOW}"
            ),
        )),
        Some(addr) => {
            let bits = estimated_bits(secret);
            if bits >= MIN_SECRET_BITS {
                Ok(())
            } else {
                Err(ConfigError::new(
                    "cluster.secret",
                    format!(
                        "peer address {addr} is not loopback, so the node channel needs a secret \
                         of at least {MIN_SECRET_BITS} bits (32 random bytes); this one holds \
                         about {bits}; {HOW}"
                    ),
                ))
            }
        }
    }
}

/// The first peer address (this node's `listen_addr`, then the members') that is not a
/// loopback address, if any. Unparsable addresses are reported by the caller's own checks.
fn non_loopback(c: &ClusterConfig) -> Option<&str> {
    std::iter::once(c.listen_addr.as_str())
        .chain(c.members.iter().map(|m| m.addr.as_str()))
        .find(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback())
        })
}

/// An upper estimate of the bits in `secret`: its length times the bits of the smallest usual
/// alphabet its characters come from (hex digits 4, digits 3.3, letters and digits 5.95,
/// printable ASCII 6.55, other Unicode 8), and 0 for a string of few distinct characters
/// (fewer than half of what random characters of that alphabet and length would show, at
/// most 8 needed).
pub fn estimated_bits(secret: &str) -> u32 {
    let chars: Vec<char> = secret.chars().collect();
    let alphabet: f64 = if chars.iter().all(char::is_ascii_digit) {
        10.0
    } else if chars.iter().all(char::is_ascii_hexdigit) {
        16.0
    } else if chars.iter().all(char::is_ascii_alphanumeric) {
        62.0
    } else if chars.iter().all(|c| c.is_ascii_graphic()) {
        94.0
    } else {
        256.0
    };
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let expected = (alphabet as usize).min(chars.len());
    if distinct.len() < (expected / 2).min(8) {
        return 0;
    }
    (chars.len() as f64 * alphabet.log2()).floor() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberConfig;

    fn cluster(host: &str, secret: &str) -> ClusterConfig {
        ClusterConfig {
            secret: secret.into(),
            listen_addr: format!("{host}:7171"),
            members: vec![MemberConfig {
                node_id: 1,
                addr: format!("{host}:7171"),
                http_addr: format!("{host}:7071"),
            }],
            ..ClusterConfig::default()
        }
    }

    const HEX_32_BYTES: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn random_secrets_of_32_bytes_pass_and_short_or_repetitive_ones_do_not() {
        assert_eq!(estimated_bits(HEX_32_BYTES), 256);
        assert!(estimated_bits("n4Qx0mZ8vB2rT6yW1pL5kJ9hG3fD7sA0eC4uI8oP2qR") >= 256);
        assert!(estimated_bits(&HEX_32_BYTES[..62]) < 256);
        assert_eq!(estimated_bits(&"a".repeat(100)), 0);
        assert_eq!(estimated_bits(&"ab".repeat(50)), 0);
        assert!(estimated_bits("a-test-secret-of-enough-length") < 256);
        assert!(estimated_bits("") == 0);
    }

    #[test]
    fn a_peer_address_off_loopback_needs_a_strong_secret_or_is_refused_naming_the_key() {
        // on loopback, 16 characters do
        check(&cluster("127.0.0.1", "a-test-secret-of-enough-length")).unwrap();
        let e = check(&cluster("127.0.0.1", "short")).unwrap_err();
        assert_eq!(e.key, "cluster.secret");
        // off loopback (or on every interface), they do not
        for host in ["10.0.0.5", "0.0.0.0", "[::]"] {
            let e = check(&cluster(host, "a-test-secret-of-enough-length")).unwrap_err();
            assert_eq!(e.key, "cluster.secret");
            assert!(e.reason.contains("not loopback"), "{}", e.reason);
            check(&cluster(host, HEX_32_BYTES)).unwrap();
        }
        // one member off loopback is enough to need it
        let mut c = cluster("127.0.0.1", "a-test-secret-of-enough-length");
        c.members[0].addr = "192.168.1.2:7171".into();
        assert!(check(&c).unwrap_err().reason.contains("192.168.1.2:7171"));
    }

    #[test]
    fn with_tls_the_secret_is_not_needed_but_every_path_is() {
        let mut c = cluster("10.0.0.5", "");
        c.tls = Some(crate::config::TlsConfig {
            ca: "ca.pem".into(),
            cert: "node-1.pem".into(),
            key: "node-1.key".into(),
        });
        check(&c).unwrap();
        c.tls.as_mut().unwrap().key = "".into();
        assert_eq!(check(&c).unwrap_err().key, "cluster.tls.key");
    }

    #[test]
    fn empty_and_example_secrets_are_refused_everywhere() {
        for host in ["127.0.0.1", "10.0.0.5"] {
            let e = check(&cluster(host, "")).unwrap_err();
            assert!(e.reason.contains("required"), "{}", e.reason);
            for weak in [
                "local-cluster-secret-change-me",
                "Please-CHANGE-ME-0123456789abcdef0123456789abcdef0123456789",
            ] {
                let e = check(&cluster(host, weak)).unwrap_err();
                assert_eq!(e.key, "cluster.secret");
                assert!(e.reason.contains("example"), "{}", e.reason);
            }
        }
    }
}
