//! The `[ingest]` section: stream ingestion's limits, and subscriptions declared in the config
//! file (put at start-up, like a `PUT .../subscriptions/{name}`).

use super::ConfigError;
use crate::subscription::{check_name, SubscriptionSpec};
use serde::{Deserialize, Serialize};

/// Stream ingestion (`perdure-ingest`): consumers run on the leaders of the home partitions of
/// the subscriptions' source partitions; none runs while there is no subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Run consumers on this node. Default true (nothing runs without a subscription).
    pub enabled: bool,
    /// Most records one consumer (one source partition) holds read and not yet checkpointed:
    /// past it, it stops reading until what is in flight commits (a slow cluster shows as lag,
    /// never as memory). At least 1. Default 20000.
    pub max_in_flight_records: u64,
    /// Most records asked of the broker in one read. 1 to 100000. Default 5000.
    pub fetch_max_records: u64,
    /// About the most bytes asked of the broker in one read. 1 KiB to 64 MiB. Default 4 MiB.
    pub fetch_max_bytes: u64,
    /// How often a consumer checkpoints its position (when it moved). 10 to 60000 ms.
    /// Default 100.
    pub checkpoint_interval_ms: u64,
    /// Subscriptions put at start-up (created, or replaced when their definition differs).
    pub subscriptions: Vec<ConfiguredSubscription>,
}

/// A subscription in the config file: its name and its definition, as the HTTP API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredSubscription {
    /// Its name.
    pub name: String,
    /// Its definition.
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight_records: 20_000,
            fetch_max_records: 5_000,
            fetch_max_bytes: 4 << 20,
            checkpoint_interval_ms: 100,
            subscriptions: Vec::new(),
        }
    }
}

impl IngestConfig {
    /// Checks the section; the error names the bad key (`ingest.fetch_max_records`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |key: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!("must be between {lo} and {hi}, got {v}"),
                ))
            }
        };
        range(
            "ingest.max_in_flight_records",
            self.max_in_flight_records,
            1,
            10_000_000,
        )?;
        range(
            "ingest.fetch_max_records",
            self.fetch_max_records,
            1,
            100_000,
        )?;
        range(
            "ingest.fetch_max_bytes",
            self.fetch_max_bytes,
            1 << 10,
            64 << 20,
        )?;
        range(
            "ingest.checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            10,
            60_000,
        )?;
        let mut seen = std::collections::HashSet::new();
        for s in &self.subscriptions {
            check_name(&s.name)
                .and_then(|()| s.spec.validate())
                .map_err(|e| {
                    ConfigError::new("ingest.subscriptions", format!("{:?}: {e}", s.name))
                })?;
            if !seen.insert(&s.name) {
                return Err(ConfigError::new(
                    "ingest.subscriptions",
                    format!("{:?} is declared twice", s.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        IngestConfig::default().validate().unwrap();
        let bad = IngestConfig {
            fetch_max_records: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "ingest.fetch_max_records");
    }

    #[test]
    fn subscriptions_read_from_toml() {
        let c: IngestConfig = toml::from_str(
            r#"
            [[subscriptions]]
            name = "clicks"
            source = { kafka = { brokers = ["127.0.0.1:9092"], topic = "clicks" } }
            mapping = { entity = "counter", key = "$key", operation = "add" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.subscriptions[0].name, "clicks");
        let twice = IngestConfig {
            subscriptions: vec![c.subscriptions[0].clone(), c.subscriptions[0].clone()],
            ..Default::default()
        };
        assert_eq!(twice.validate().unwrap_err().key, "ingest.subscriptions");
    }
}
