//! The `[grpc]` section: the Durable Task gRPC listener (`perdure-grpc`), and its checks.

use super::ConfigError;
use serde::{Deserialize, Serialize};

/// The SDKs' default address (`localhost:4001`), on loopback.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4001";

/// The Durable Task gRPC interface (what the official SDKs call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Serve it. Default true.
    pub enabled: bool,
    /// Listen address, `HOST:PORT` with a numeric host; port 0 takes a free port (logged at
    /// start). Default `127.0.0.1:4001`, the SDKs' default.
    pub addr: String,
    /// Largest message accepted (and sent), in bytes: a bigger one is refused with
    /// `RESOURCE_EXHAUSTED`. Between 64 KiB and 1 GiB. Default 16 MiB.
    pub max_message_bytes: u64,
    /// Largest work item sent to a worker (an orchestrator's whole history goes inline): a turn
    /// whose history is larger fails its instance (`HistoryTooLarge`) instead of stalling a
    /// worker at its receive limit (4 MiB in the SDKs). Default 4 MiB.
    pub max_work_item_bytes: u64,
    /// How long a worker may hold a work item before it is dispatched again (a worker that
    /// never completes it; a worker whose stream ends gives its work back at once). At least
    /// 100 ms. Default 300000 (5 minutes).
    pub lease_ms: u64,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: DEFAULT_GRPC_ADDR.into(),
            max_message_bytes: 16 << 20,
            max_work_item_bytes: 4 << 20,
            lease_ms: 300_000,
        }
    }
}

impl GrpcConfig {
    /// Checks the section; the error names the bad key (`grpc.addr`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "grpc.addr",
                format!("{:?} is not HOST:PORT with a numeric host", self.addr),
            ));
        }
        if !((64 << 10)..=(1 << 30)).contains(&self.max_message_bytes) {
            return Err(ConfigError::new(
                "grpc.max_message_bytes",
                format!(
                    "must be between 65536 (64 KiB) and 1073741824 (1 GiB), got {}",
                    self.max_message_bytes
                ),
            ));
        }
        if !((1 << 10)..=self.max_message_bytes).contains(&self.max_work_item_bytes) {
            return Err(ConfigError::new(
                "grpc.max_work_item_bytes",
                format!(
                    "must be between 1024 and grpc.max_message_bytes ({}), got {}",
                    self.max_message_bytes, self.max_work_item_bytes
                ),
            ));
        }
        if self.lease_ms < 100 {
            return Err(ConfigError::new(
                "grpc.lease_ms",
                format!("must be at least 100, got {}", self.lease_ms),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_sdks_address_and_16_mib() {
        let g = GrpcConfig::default();
        assert!(g.enabled);
        assert_eq!(g.addr, "127.0.0.1:4001");
        assert_eq!(g.max_message_bytes, 16 * 1024 * 1024);
        g.validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let bad_addr = GrpcConfig {
            addr: "localhost:4001".into(),
            ..Default::default()
        };
        assert_eq!(bad_addr.validate().unwrap_err().key, "grpc.addr");
        let port_zero = GrpcConfig {
            addr: "127.0.0.1:0".into(),
            ..Default::default()
        };
        port_zero.validate().unwrap();
        let tiny = GrpcConfig {
            max_message_bytes: 1000,
            ..Default::default()
        };
        assert_eq!(tiny.validate().unwrap_err().key, "grpc.max_message_bytes");
    }
}
